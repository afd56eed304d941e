"""fastnn's gemm against single-threaded BLAS on the products a training epoch runs.

For each product of the W1 and W2 networks (forward and delta propagation on a
chunk of ``config.CHUNK_ROWS`` rows, the latter also through W as small batches run
it, weight gradient on a whole mini-batch, the forward of a prediction chunk), in
float32 and float64: GFLOP/s of

* ``in place`` and ``packed``: ``fastnn.kernels.gemm.gemm_with`` reading b in place
  or packing its panels first (``gemm`` chooses between them by a rule on the
  vector width and the rows of a; ``rule`` says which it takes), called from a
  compiled loop;
* ``panels``: ``gemm`` with b given in panel layout (``gemm.to_panels``), as the
  training's forward pass and delta propagation read the weights
  (``epoch.weight_copies``);
* ``blas``: ``np.dot`` into a preallocated output inside the same kind of compiled
  loop (Numba calls SciPy's BLAS ``sgemm``/``dgemm``), with BLAS on one thread.

Both are timed in thread CPU time (``time.thread_time``), best of several repeats,
so that another process on the machine costs as little as possible.  The
``blas / gemm`` column is what a shape rule would gain by calling BLAS there (> 1:
BLAS is faster, against the faster of gemm's two paths).  The engine uses gemm on
every shape; rerun this on a new CPU before changing that or the packing rule
(``docs/benchmarks`` records both).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/gemm_vs_blas.py
    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES= NUMBA_CACHE_DIR=/tmp/numba-avx2 \
        python scripts/gemm_vs_blas.py

(AVX2 code on an AVX-512 machine: NUMBA_CPU_FEATURES must be set, empty for the CPU
name's own features; unset, Numba adds the host's, AVX-512 included.)
"""

import argparse
import json
import os
import time

# One BLAS thread from the start: SciPy's OpenBLAS, which Numba's np.dot calls, is
# not always reached by threadpoolctl's limits, and idle pool threads spinning on
# a 2-core machine distort thread-time measurements.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from fastnn import config  # noqa: E402
from fastnn.kernels import gemm as gemm_module  # noqa: E402

CHUNK = config.CHUNK_ROWS
#: (label, m, k, n, transposed a): the products of one mini-batch of each network.
SHAPES = [
    ("W1 forward 64->128", CHUNK, 64, 128, False),
    ("W1 forward 128->128", CHUNK, 128, 128, False),
    ("W1 forward 128->10", CHUNK, 128, 10, False),
    ("W1 backward 128->128", CHUNK, 128, 128, False),
    ("W1 backward through W 128->128", 128, 128, CHUNK, False),  # dense.delta_product
    ("W1 gradient 64x128x128", 128, 64, 128, True),
    ("W1 gradient task 32x64x128", 32, 64, 128, True),
    ("W1a gradient task 32x1617x128", 32, 1617, 128, True),
    ("W2 forward 784->512", CHUNK, 784, 512, False),
    ("W2 forward 512->512", CHUNK, 512, 512, False),
    ("W2 backward 512->512", CHUNK, 512, 512, False),
    ("W2 gradient 128x784x512", 784, 128, 512, True),
    ("W2 gradient task 8x128x512", 8, 128, 512, True),
    ("infer forward 256x784->512", 256, 784, 512, False),
]


@njit(nogil=True)
def repeat_gemm(a, b, c, bias, count, pack):
    init = np.int64(gemm_module.ZERO)
    for _ in range(count):
        gemm_module.gemm_with(a, b, c, bias, init, pack)


@njit(nogil=True)
def repeat_panels(a, panels, c, bias, count):
    init = np.int64(gemm_module.ZERO)
    for _ in range(count):
        gemm_module.gemm(a, panels, c, bias, init)


@njit(nogil=True)
def repeat_blas(a, b, c, count):
    for _ in range(count):
        np.dot(a, b, c)


def gflops(fn, flops, budget_s=0.05, repeats=7):
    """Best GFLOP/s of fn(count) over repeats, count chosen to take about budget_s."""
    fn(1)
    start = time.thread_time()
    fn(1)
    count = max(1, int(budget_s / max(time.thread_time() - start, 1e-6)))
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        fn(count)
        best = min(best, (time.thread_time() - start) / count)
    return flops / best / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results to this path")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    target = gemm_module.numba_target()
    print(f"# Numba target CPU {target['cpu']}, AVX-512 instructions "
          f"{'allowed' if target['avx512'] else 'not allowed'}; gemm vector width "
          f"{gemm_module.VECTOR_BITS} bits, tile {gemm_module.MR} x {gemm_module.NV} vectors; "
          f"BLAS on 1 thread; GFLOP/s in thread CPU time")
    print(f"{'product':>30} {'dtype':>8} {'in place':>8} {'packed':>7} {'panels':>7} {'rule':>8} "
          f"{'blas':>7} {'blas/gemm':>9}")
    results = []
    with threadpool_limits(1, user_api="blas"):
        for label, m, k, n, transposed in SHAPES:
            for dtype in ("float32", "float64"):
                # A transposed a is how the weight gradient reads the layer's input.
                a = (rng.standard_normal((k, m)).astype(dtype).T if transposed
                     else rng.standard_normal((m, k)).astype(dtype))
                b = rng.standard_normal((k, n)).astype(dtype)
                c, bias = np.empty((m, n), dtype), np.zeros(n, dtype)
                flops = 2 * m * k * n
                in_place = gflops(lambda count: repeat_gemm(a, b, c, bias, count, False), flops)
                packed = gflops(lambda count: repeat_gemm(a, b, c, bias, count, True), flops)
                panels = gemm_module.to_panels(b)
                from_panels = gflops(lambda count: repeat_panels(a, panels, c, bias, count), flops)
                blas = gflops(lambda count: repeat_blas(a, b, c, count), flops)
                rule = ("packed" if gemm_module.PACK_B and m >= gemm_module.PACK_MIN_ROWS
                        and k >= gemm_module.PACK_MIN_DEPTH else "in place")
                print(f"{label:>30} {dtype:>8} {in_place:8.1f} {packed:7.1f} {from_panels:7.1f} "
                      f"{rule:>8} {blas:7.1f} {blas / max(in_place, packed):9.2f}")
                results.append(dict(product=label, dtype=dtype, m=m, k=k, n=n, rule=rule,
                                    in_place_gflops=in_place, packed_gflops=packed,
                                    panels_gflops=from_panels, blas_gflops=blas))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(vector_bits=gemm_module.VECTOR_BITS, numba_target=target,
                           results=results), f, indent=1)


if __name__ == "__main__":
    main()
