"""Roofline of fastnn's serial kernels on the W1 and W2 shapes, one thread.

Per kernel and layer shape: FLOPs, bytes moved, measured time, GFLOP/s, % of the GEMM
ceiling and arithmetic intensity (FLOP / byte).

Model (simple on purpose):

* FLOPs count the multiply-adds of the matrix products (2 per term), the bias
  sum of param_grad (1 per delta element) and the plain SGD step that param_grad's
  product applies to the weights (2 per weight); the activation and its derivative
  (a few dozen instructions per element in fast_exp) are not counted, so kernels
  that fuse them look slightly slower than they are.
* Bytes: every input array read once and every output written once (an array that
  is read and written, like the weights the step updates, counts twice); caches,
  re-reads inside the blocked loops and write-allocate traffic are ignored.  The
  intensity is therefore an upper bound of the real one, which is what a roofline
  needs.
* Time: ``fastnn.profiling.kernel_times``, the same calls that ``--profile``
  estimates an epoch from: median per call over batches of calls in this one
  process, each kernel called directly as a Numba dispatcher, less the cost of the
  same call on no rows (the dispatch).

Shapes and operands are the epoch's, on one thread (``kernel_times``): the forward
pass and the delta propagation of a micro-batch's rows as one block (W1: 64 rows,
W2: 128), reading each W as the epoch does (a wide layer's from its panels, the
others in place) and propagating through W itself or through W.T by the epoch's
rule; the weight gradient of each layer summed over its update tasks on the
mini-batch, with the SGD step in the product and the deltas read from panels where
the epoch does.  dense_backward only runs on layers after the first (the input
needs no delta).  The networks are the peers' (scripts/compare_peers.py): sigmoid
hidden layers and a softmax head.

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

from fastnn import SGD, Architecture, init_params  # noqa: E402
from fastnn.profiling import kernel_times  # noqa: E402

#: kernel_times' timing of each kernel: batches of calls of at least this many seconds,
#: the median of this many batches.
TIMING = (2e-3, 15)
LR = 0.1
WORKLOADS = {  # name: (layer sizes, batch rows, dtypes)
    "W1": ((64, 128, 128, 10), 64, ("float32", "float64")),
    "W2": ((784, 512, 512, 10), 128, ("float32",)),
}


def kernel_cases(sizes, batch, dtype):
    """(kernel name, shape label, seconds, FLOPs, bytes) of every layer's kernels, as an
    epoch of mini-batches of batch rows calls them on one thread (``kernel_times``)."""
    rng = np.random.default_rng(0)
    item = np.dtype(dtype).itemsize
    arch = Architecture(sizes, "sigmoid", "softmax", dtype)
    params = init_params(arch, "glorot_uniform", 0)
    X = rng.random((batch, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], batch)]
    times = kernel_times(arch, params, SGD(lr=LR), 0.0, X, Y, batch, LR, threads=1,
                         timing=TIMING)
    block = times["block_rows"]
    cases = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        mm = 2 * block * fan_in * fan_out
        cases.append(("dense_forward", f"{block}x{fan_in}->{fan_out}",
                      times["forward_layers"][layer], mm,
                      item * (block * fan_in + fan_in * fan_out + fan_out + block * fan_out)))
        if layer > 0:
            cases.append(("dense_backward", f"{block}x{fan_out}->{fan_in}",
                          times["backward_layers"][layer], mm,
                          item * (block * fan_out + fan_out * fan_in + 2 * block * fan_in)))
        gradient = sum(g for (g, _), task_layer in zip(times["tasks"], times["task_layers"])
                       if task_layer == layer)
        cases.append(("param_grad", f"{batch}x{fan_in}x{fan_out}", gradient,
                      2 * batch * fan_in * fan_out + batch * fan_out + 2 * fan_in * fan_out,
                      item * (batch * fan_in + batch * fan_out + 2 * (fan_in + 1) * fan_out)))
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
            for name, shape, seconds, flops, nbytes in kernel_cases(sizes, batch, dtype):
                gflops = flops / seconds / 1e9
                row = dict(workload=workload, dtype=dtype, kernel=name, shape=shape, flops=flops,
                           bytes=nbytes, seconds=seconds, gflops=gflops,
                           pct_gemm=100 * gflops / gemm[dtype], intensity=flops / nbytes)
                rows.append(row)
                print(f"{workload:>8} {dtype:>7} {name:>14} {shape:>16} {flops / 1e6:>9.3f} "
                      f"{nbytes / 1e3:>8.1f} {seconds * 1e6:>9.2f} {gflops:>8.1f} "
                      f"{row['pct_gemm']:>6.1f}% {row['intensity']:>7.2f}")
    result = dict(gemm_gflops_1thread=gemm, fma_gflops_1thread=fma, copy_gbs=copy_gbs,
                  triad_gbs=triad_gbs, bandwidth_gbs=bandwidth, rows=rows)
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
    markers = {"dense_forward": "o", "dense_backward": "s", "param_grad": "^"}
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
