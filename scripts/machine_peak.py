"""Measure this machine's GEMM ceiling, so that "% of peak" is measured, not assumed.

Per dtype and thread count: the best GFLOP/s of NumPy's BLAS on a large square product
(n x n @ n x n, 2 n^3 FLOPs), the practical limit any dense-layer kernel runs against.

Not measured here yet: the raw FMA throughput of the arithmetic units.  A first
attempt (a Numba loop over an array of accumulators) measured the loads and stores
instead (39 GFLOP/s, below the GEMM), because LLVM keeps array elements in memory,
not registers; a plain C loop printed 350 GFLOP/s per core, which no kernel here
approaches.  The GEMM ceiling is the number the kernels are judged against.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/machine_peak.py --json peak.json

(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE select an older, slower OpenBLAS kernel on some
machines; unset them only in a command like this one.)  Pass the float32 GEMM ceiling to
``compare_peers.py --peak-gflops`` for its "% peak" column.
"""

import argparse
import json
import os
import time

import numba
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def gemm_gflops(dtype, threads, n=1024, repeats=5):
    """Best GFLOP/s of n x n @ n x n through NumPy's BLAS with `threads` threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    with threadpool_limits(threads, user_api="blas"):
        a @ b
        best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts (default: 1 and all)")
    parser.add_argument("--json", default=None, help="write the results to this path")
    args = parser.parse_args(argv)
    all_threads = numba.config.NUMBA_NUM_THREADS
    counts = ([int(t) for t in args.threads.split(",")] if args.threads
              else sorted({1, all_threads}))
    blas = [(i["internal_api"], i.get("version"), i.get("architecture")) for i in threadpool_info()
            if i["user_api"] == "blas"]
    print(f"# {os.cpu_count()} CPUs; BLAS {blas}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    print(f"{'dtype':>8} {'threads':>7} {'GEMM GFLOP/s':>13}")
    results = []
    for dtype in ("float32", "float64"):
        for threads in counts:
            gemm = gemm_gflops(dtype, threads)
            print(f"{dtype:>8} {threads:>7} {gemm:>13.1f}")
            results.append(dict(dtype=dtype, threads=threads, gemm_gflops=gemm))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cpus=os.cpu_count(), blas=blas, results=results), f, indent=1)


if __name__ == "__main__":
    main()
