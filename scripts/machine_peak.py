"""Measure this machine's GEMM ceiling, so that "% of peak" is measured, not assumed.

Per dtype and thread count: the best GFLOP/s of NumPy's BLAS on a large square product
(n x n @ n x n, 2 n^3 FLOPs), the practical limit any dense-layer kernel runs against.

And the raw FMA throughput of the arithmetic units: 12 independent chains of 512-bit
vector fused multiply-adds (<16 x float> / <8 x double>, ``llvm.fma``) emitted as LLVM IR
by a Numba intrinsic, so the accumulators live in registers (a plain Numba loop over an
array of accumulators measured the loads and stores instead: 39 GFLOP/s).  One chain
per thread runs from several Python threads at once (the kernel releases the GIL).
This is the hardware's limit; the GEMM ceiling is the practical one the kernels are
judged against.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/machine_peak.py --json peak.json

(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE select an older, slower OpenBLAS kernel on some
machines; unset them only in a command like this one.)  Pass the float32 GEMM ceiling to
``compare_peers.py --peak-gflops`` for its "% peak" column.
"""

import argparse
import concurrent.futures
import json
import os
import time

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.extending import intrinsic
from threadpoolctl import threadpool_info, threadpool_limits

#: Independent accumulators: enough to cover the FMA latency (4-5 cycles) times the
#: number of FMA pipes (2) with a margin, few enough to stay in the 32 vector registers.
FMA_CHAINS = 12
VECTOR_BYTES = 64


def gemm_gflops(dtype, threads, n=1024, repeats=5):
    """Best GFLOP/s of n x n @ n x n through NumPy's BLAS with `threads` threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    with threadpool_limits(threads, user_api="blas"):
        a @ b
        best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


@intrinsic
def _fma_chains(typingctx, n_iter, seed):
    """Run FMA_CHAINS chains of acc = fma(acc, m, c) on 512-bit vectors n_iter times.

    Returns the sum of all lanes of all accumulators (so the work cannot be removed).
    The vector type follows the seed's dtype: <16 x float> or <8 x double>.
    """
    if not isinstance(seed, types.Float):
        return None
    sig = seed(n_iter, seed)

    def codegen(context, builder, signature, args):
        n_value, seed_value = args
        fty = context.get_value_type(signature.args[1])
        lanes = VECTOR_BYTES // (signature.args[1].bitwidth // 8)
        vty = ir.VectorType(fty, lanes)
        suffix = f"v{lanes}f{signature.args[1].bitwidth}"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                             "llvm.fma." + suffix)
        # A multiplier just below 1 and a tiny addend keep every value normal and finite.
        mul = ir.Constant(vty, [0.999999] * lanes)
        add = ir.Constant(vty, [1e-7] * lanes)
        undef = ir.Constant(vty, ir.Undefined)
        splat = builder.shuffle_vector(
            builder.insert_element(undef, seed_value, ir.Constant(ir.IntType(32), 0)), undef,
            ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))
        slots = []
        for chain in range(FMA_CHAINS):
            slot = cgutils.alloca_once(builder, vty)
            offset = ir.Constant(vty, [float(chain * lanes + lane) for lane in range(lanes)])
            builder.store(builder.fadd(splat, offset), slot)
            slots.append(slot)
        with cgutils.for_range(builder, n_value):
            for slot in slots:
                builder.store(builder.call(fma, [builder.load(slot), mul, add]), slot)
        total = builder.load(slots[0])
        for slot in slots[1:]:
            total = builder.fadd(total, builder.load(slot))
        result = builder.extract_element(total, ir.Constant(ir.IntType(32), 0))
        for lane in range(1, lanes):
            result = builder.fadd(result, builder.extract_element(total, ir.Constant(ir.IntType(32), lane)))
        return result

    return sig, codegen


@njit(nogil=True)
def fma_kernel(n_iter, seed):
    """FMA_CHAINS x n_iter 512-bit FMAs of seed's dtype; returns a checksum."""
    return _fma_chains(n_iter, seed)


def fma_gflops(dtype, threads, n_iter=50_000_000, repeats=3):
    """Best GFLOP/s (2 per FMA lane) of fma_kernel run on `threads` Python threads at once."""
    seed = np.dtype(dtype).type(0.5)
    fma_kernel(10, seed)  # compile outside the timing
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    flops = 2 * FMA_CHAINS * lanes * n_iter * threads
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        def run():
            list(pool.map(fma_kernel, [n_iter] * threads, [seed] * threads))

        run()
        best = min(_seconds(run) for _ in range(repeats))
    return flops / best / 1e9


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
    print(f"{'dtype':>8} {'threads':>7} {'GEMM GFLOP/s':>13} {'FMA GFLOP/s':>12} {'GEMM/FMA':>9}")
    results = []
    for dtype in ("float32", "float64"):
        for threads in counts:
            gemm = gemm_gflops(dtype, threads)
            fma = fma_gflops(dtype, threads)
            print(f"{dtype:>8} {threads:>7} {gemm:>13.1f} {fma:>12.1f} {gemm / fma:>9.2f}")
            results.append(dict(dtype=dtype, threads=threads, gemm_gflops=gemm, fma_gflops=fma))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cpus=os.cpu_count(), blas=blas, results=results), f, indent=1)


if __name__ == "__main__":
    main()
