"""Roofline of fastnn's serial kernels on the W1 and W2 shapes, one thread.

Per kernel and layer shape: FLOPs, bytes moved, measured time, GFLOP/s, % of the GEMM
ceiling and arithmetic intensity (FLOP / byte).

Model (simple on purpose):

* FLOPs count the multiply-adds of the matrix products (2 per term), the bias
  sum of param_grad (1 per delta element) and 2 per parameter of sgd_update; the
  activation and its derivative (a few dozen instructions per element in fast_exp)
  are not counted, so kernels that fuse them look slightly slower than they are.
* Bytes: every input array read once and every output written once (an array that
  is read and written, like matmul_acc's c, counts twice); caches, re-reads inside
  the blocked loops and write-allocate traffic are ignored.  The intensity is
  therefore an upper bound of the real one, which is what a roofline needs.
* Time: median per call over many batches of calls in this one process, each
  kernel called directly as a Numba dispatcher (the dispatch costs about 0.2-0.4 us
  per call, visible only on the smallest calls: sgd_update and the W1 shapes).

Shapes: the forward and backward passes and matmul_acc run on chunks of 16 rows
(config.CHUNK_ROWS), param_grad on a whole mini-batch (W1: 64 rows, W2: 128) and
sgd_update on one layer's (fan_in + 1) * fan_out parameters.  dense_backward only runs
on layers after the first (the input needs no delta).

The ceilings, measured in the same run: the GEMM ceiling from
machine_peak.gemm_gflops (NumPy's BLAS, 1024^3, 1 thread) per dtype, or --peak-gflops;
the memory bandwidth from a large-array copy and a triad (a = b + s * c, two NumPy
passes: 5 arrays of traffic) with NumPy, best of a few; optionally (--fma) the
register-only FMA throughput of machine_peak.fma_gflops.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/roofline.py \\
        --json roofline.json --plot benchmarks/plots/roofline.png
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_peak import fma_gflops, gemm_gflops  # noqa: E402  (a sibling script)

from fastnn import config  # noqa: E402
from fastnn.profiling import median_seconds  # noqa: E402
from fastnn.kernels import (dense_backward, dense_forward, matmul_acc,  # noqa: E402
                            optimizer_step, param_grad)
from fastnn.network import ACTIVATION_CODES  # noqa: E402
from fastnn.optimizers import OPTIMIZER_CODES  # noqa: E402

SIGMOID = int(ACTIVATION_CODES["sigmoid"])
SGD_CODE = OPTIMIZER_CODES["sgd"]
WORKLOADS = {  # name: (layer sizes, batch rows, dtypes)
    "W1": ((64, 128, 128, 10), 64, ("float32", "float64")),
    "W2": ((784, 512, 512, 10), 128, ("float32",)),
}


def kernel_cases(sizes, batch, dtype):
    """(kernel name, shape label, callable, args, FLOPs, bytes) for every layer of a network."""
    rng = np.random.default_rng(0)
    item = np.dtype(dtype).itemsize
    chunk = config.CHUNK_ROWS
    cases = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        a_prev = rng.random((chunk, fan_in)).astype(dtype)
        W = (rng.random((fan_in, fan_out)) - 0.5).astype(dtype)
        WT = np.ascontiguousarray(W.T)
        b = rng.random(fan_out).astype(dtype)
        delta = (rng.random((chunk, fan_out)) - 0.5).astype(dtype)
        out = np.empty((chunk, fan_out), dtype)
        mm = 2 * chunk * fan_in * fan_out
        shape = f"{chunk}x{fan_in}->{fan_out}"
        cases.append(("dense_forward", shape, dense_forward, (a_prev, W, b, SIGMOID, out), mm,
                      item * (chunk * fan_in + fan_in * fan_out + fan_out + chunk * fan_out)))
        cases.append(("matmul_acc", shape, matmul_acc, (a_prev, W, out), mm,
                      item * (chunk * fan_in + fan_in * fan_out + 2 * chunk * fan_out)))
        if layer > 0:
            out_bwd = np.empty((chunk, fan_in), dtype)
            cases.append(("dense_backward", f"{chunk}x{fan_out}->{fan_in}", dense_backward,
                          (delta, WT, a_prev, SIGMOID, out_bwd), mm,
                          item * (chunk * fan_out + fan_out * fan_in + 2 * chunk * fan_in)))
        a_batch = rng.random((batch, fan_in)).astype(dtype)
        d_batch = (rng.random((batch, fan_out)) - 0.5).astype(dtype)
        grad = np.empty((fan_in + 1, fan_out), dtype)
        cases.append(("param_grad", f"{batch}x{fan_in}x{fan_out}", param_grad,
                      (a_batch, d_batch, 0, fan_in + 1, grad),
                      2 * batch * fan_in * fan_out + batch * fan_out,
                      item * (batch * fan_in + batch * fan_out + (fan_in + 1) * fan_out)))
        n_params = (fan_in + 1) * fan_out
        flat_params = rng.random(n_params).astype(dtype)
        flat_grads = rng.random(n_params).astype(dtype)
        cases.append(("sgd_update", f"{n_params} params", optimizer_step,
                      (flat_params, flat_grads, np.zeros((0, n_params), dtype), 0, n_params,
                       SGD_CODE, np.zeros(3), np.dtype(dtype).type(1e-9), 1),
                      2 * n_params, item * 3 * n_params))
    return cases


def memory_bandwidth(n_bytes=256 * 2**20, repeats=5):
    """Best GB/s of a NumPy copy and of a two-pass triad on arrays much larger than the caches."""
    n = n_bytes // 8
    rng = np.random.default_rng(0)
    a, b, c = np.empty(n), rng.random(n), rng.random(n)
    copy, triad = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(a, b)
        copy.append(2 * n_bytes / (time.perf_counter() - start) / 1e9)
        start = time.perf_counter()
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        triad.append(5 * n_bytes / (time.perf_counter() - start) / 1e9)
    return max(copy), max(triad)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="float32 GEMM ceiling to use instead of measuring it (float64: half)")
    parser.add_argument("--fma", action="store_true",
                        help="also measure the 1-thread FMA throughput and draw it")
    parser.add_argument("--json", default=None, help="write the results to this path")
    parser.add_argument("--plot", default=None, help="write a roofline PNG to this path")
    args = parser.parse_args(argv)

    dtypes = sorted({d for _, _, ds in WORKLOADS.values() for d in ds})
    if args.peak_gflops:
        gemm = {d: args.peak_gflops * (0.5 if d == "float64" else 1.0) for d in dtypes}
    else:
        gemm = {d: gemm_gflops(d, 1) for d in dtypes}
    fma = {d: fma_gflops(d, 1) for d in dtypes} if args.fma else {}
    copy_gbs, triad_gbs = memory_bandwidth()
    bandwidth = max(copy_gbs, triad_gbs)
    print(f"# 1 thread; GEMM ceiling {', '.join(f'{d} {g:.1f}' for d, g in gemm.items())} "
          f"GFLOP/s; " + (f"FMA {', '.join(f'{d} {g:.1f}' for d, g in fma.items())} GFLOP/s; "
                          if fma else "")
          + f"memory bandwidth: copy {copy_gbs:.1f} GB/s, triad {triad_gbs:.1f} GB/s")
    header = (f"{'workload':>8} {'dtype':>7} {'kernel':>14} {'shape':>16} {'MFLOP':>9} "
              f"{'KB':>8} {'us/call':>9} {'GFLOP/s':>8} {'% GEMM':>7} {'FLOP/B':>7}")
    print(header)
    rows = []
    for workload, (sizes, batch, wl_dtypes) in WORKLOADS.items():
        for dtype in wl_dtypes:
            for name, shape, fn, fn_args, flops, nbytes in kernel_cases(sizes, batch, dtype):
                seconds = median_seconds(fn, fn_args, min_batch_s=2e-3, batches=25)
                gflops = flops / seconds / 1e9
                row = dict(workload=workload, dtype=dtype, kernel=name, shape=shape, flops=flops,
                           bytes=nbytes, seconds=seconds, gflops=gflops,
                           pct_gemm=100 * gflops / gemm[dtype], intensity=flops / nbytes)
                rows.append(row)
                print(f"{workload:>8} {dtype:>7} {name:>14} {shape:>16} {flops / 1e6:>9.3f} "
                      f"{nbytes / 1e3:>8.1f} {seconds * 1e6:>9.2f} {gflops:>8.1f} "
                      f"{row['pct_gemm']:>6.1f}% {row['intensity']:>7.2f}")
    result = dict(gemm_gflops_1thread=gemm, fma_gflops_1thread=fma, copy_gbs=copy_gbs,
                  triad_gbs=triad_gbs, bandwidth_gbs=bandwidth, chunk_rows=config.CHUNK_ROWS,
                  rows=rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot_roofline(result, args.plot)


def plot_roofline(result, path):
    """Log-log roofline: the kernels' points, the GEMM (and FMA) ceilings, the bandwidth slope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=90)
    intensity = np.logspace(-2, 3, 200)
    bandwidth = result["bandwidth_gbs"]
    colors = {"float32": "tab:blue", "float64": "tab:red"}
    for dtype, ceiling in result["gemm_gflops_1thread"].items():
        ax.plot(intensity, np.minimum(bandwidth * intensity, ceiling), color=colors[dtype],
                lw=1, label=f"GEMM ceiling {dtype} {ceiling:.0f} GFLOP/s")
    for dtype, ceiling in result.get("fma_gflops_1thread", {}).items():
        ax.axhline(ceiling, color=colors[dtype], ls=":", lw=1,
                   label=f"FMA peak {dtype} {ceiling:.0f} GFLOP/s")
    ax.plot(intensity, bandwidth * intensity, color="gray", ls="--", lw=0.8,
            label=f"memory {bandwidth:.0f} GB/s (NumPy copy/triad)")
    markers = {"dense_forward": "o", "dense_backward": "s", "param_grad": "^",
               "sgd_update": "v", "matmul_acc": "x"}
    for kernel, marker in markers.items():
        for dtype, color in colors.items():
            pts = [r for r in result["rows"] if r["kernel"] == kernel and r["dtype"] == dtype]
            if pts:
                ax.scatter([r["intensity"] for r in pts], [r["gflops"] for r in pts], s=22,
                           marker=marker, color=color, alpha=0.8,
                           label=kernel if dtype == "float32" else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.05, 500)
    ax.set_ylim(0.5, 1.6 * max([*result["gemm_gflops_1thread"].values(),
                                 *result.get("fma_gflops_1thread", {}).values()]))
    ax.set_xlabel("arithmetic intensity (FLOP / byte, every array moved once)")
    ax.set_ylabel("GFLOP/s (1 thread)")
    ax.set_title("fastnn kernels on W1 / W2 shapes (blue float32, red float64)", fontsize=10)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
