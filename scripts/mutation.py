"""Mutation testing: plant known bugs in a copy of the repository and check that tests catch them.

    python scripts/mutation.py                 # every mutant, on the committed HEAD
    python scripts/mutation.py --list          # the mutants and the tests each one runs
    python scripts/mutation.py nesterov-as-momentum average-partition-0-only
    python scripts/mutation.py --rev HEAD~3    # another commit

Each mutant is a small list of exact text replacements (one bug, sometimes written into a
kernel and its NumPy twin alike, so that the comparison of the two cannot see it) and the
test files that should catch it.  The script never touches the checkout it is run from:
it exports the commit (``git archive``) into a temporary directory, runs the tests there
once unchanged (they must pass, or no mutant can be judged), then for each mutant applies
it, runs only its tests (``pytest -x``), and puts the file back.  A mutant is *killed*
when its tests fail (or time out), *survived* when they pass, *stale* when its text is no
longer in the source (update the list).  Survivors are printed at the end and make the
exit status 1.

Numba's disk cache does not notice that a function called from another file changed, so
a mutant of compiled code (fastnn/kernels, fastnn/config.py) runs with an empty
NUMBA_CACHE_DIR of its own and compiles everything (most of the run time); the others
share the cache warmed by the unchanged run (the files it compiled are restored with
their time stamps, so it stays valid).  The compiled code reads nothing of
fastnn/optimizers.py but OPTIMIZER_CODES, which no mutant here changes.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OPTIMIZER_TESTS = ("tests/test_update_rules.py", "tests/test_optimizers.py")
AVERAGING_TESTS = ("tests/test_averaging.py", "tests/test_distributed.py")
TRAINER_TESTS = ("tests/test_resume.py", "tests/test_update_rules.py", "tests/test_trainer_api.py")


@dataclass(frozen=True)
class Mutant:
    """A named bug: replacements (path, old text, new text), each old text found exactly once."""

    name: str
    edits: tuple
    tests: tuple

    @property
    def compiled(self):
        return any(path.startswith("fastnn/kernels/") or path == "fastnn/config.py"
                   for path, _, _ in self.edits)


KERNEL, TWIN = "fastnn/kernels/optimizers.py", "fastnn/reference.py"

MUTANTS = [
    # The three that survived the suite of issue 18, and their neighbours.
    Mutant("rmsprop-without-1-minus-rho", (
        (KERNEL, "s[q] = rho * s[q] + (one - rho) * g[q] * g[q]\n        p[q] -= lr",
         "s[q] = rho * s[q] + g[q] * g[q]\n        p[q] -= lr"),
        (TWIN, "s[0] = rho * s[0] + (1 - rho) * g * g\n        p -= lr * g",
         "s[0] = rho * s[0] + g * g\n        p -= lr * g")), OPTIMIZER_TESTS),
    Mutant("nesterov-as-momentum", (
        (KERNEL, "p[q] += momentum * v[q] - lr * g[q]", "p[q] += v[q]"),
        (TWIN, "p += momentum * s[0] - lr * g if nesterov else s[0]", "p += s[0]")),
        OPTIMIZER_TESTS),
    Mutant("average-partition-0-only", (
        ("fastnn/distributed.py", "params[:], optimizer.slots[:] = mean, slots",
         'params[:], optimizer.slots[:] = results[0]["params"], results[0]["slots"]'),),
        AVERAGING_TESTS),
    Mutant("adam-without-bias-correction", (
        (KERNEL, "lr_t = dtype(lr * math.sqrt(1.0 - hyper[1] ** step)"
                 " / (1.0 - hyper[0] ** step))", "lr_t = dtype(lr)"),
        (TWIN, "lr_t = dtype(float(lr) * np.sqrt(1.0 - hyper[1] ** step)"
               " / (1.0 - hyper[0] ** step))", "lr_t = dtype(lr)")), OPTIMIZER_TESTS),
    Mutant("adadelta-second-moment-of-g", (
        (KERNEL, "u[q] = rho * u[q] + (one - rho) * d * d",
         "u[q] = rho * u[q] + (one - rho) * g[q] * g[q]"),
        (TWIN, "s[1] = rho * s[1] + (1 - rho) * d * d", "s[1] = rho * s[1] + (1 - rho) * g * g")),
        OPTIMIZER_TESTS),
    Mutant("l2-gradient-halved", (
        (KERNEL, "g[q] += l2 * p[q]", "g[q] += 0.5 * l2 * p[q]"),
        (TWIN, "    grads[start:stop] += l2 * p\n", "    grads[start:stop] += 0.5 * l2 * p\n")),
        ("tests/test_optimizers.py",)),
    Mutant("l2-gradient-halved-in-the-twin-only", (
        (TWIN, "    grads[start:stop] += l2 * p\n", "    grads[start:stop] += 0.5 * l2 * p\n"),),
        ("tests/test_optimizers.py",)),
    Mutant("tanh-derivative-without-square", (
        ("fastnn/kernels/activations.py", "delta[i, j] *= one - a[i, j] * a[i, j]",
         "delta[i, j] *= one - a[i, j]"),), ("tests/test_kernels.py",)),
    Mutant("gemm-narrow-columns-skipped", (
        ("fastnn/kernels/gemm.py", "    for j0 in range(two_stop, n, lanes):",
         "    for j0 in range(two_stop + lanes, n, lanes):"),), ("tests/test_kernels.py",)),
    Mutant("gemm-partial-row-tile-one-short", (
        ("fastnn/kernels/gemm.py", "k, min(MR, m - i0), nr, init, lr, copy,",
         "k, min(MR - 1, m - i0), nr, init, lr, copy,"),), ("tests/test_kernels.py",)),
    Mutant("gemm-packed-blocks-restart", (
        ("fastnn/kernels/gemm.py", "start = init - sgd if p0 == 0 else np.int64(ACCUMULATE)",
         "start = init - sgd"),),
        ("tests/test_kernels.py",)),
    Mutant("gemm-packed-panel-row-short", (
        ("fastnn/kernels/gemm.py", "_pack_panel(b, p0 * ldb + j0, ldb, panel, kc)",
         "_pack_panel(b, p0 * ldb + j0, ldb, panel, kc - 1)"),), ("tests/test_kernels.py",)),
    Mutant("dense-forward-without-bias", (
        ("fastnn/kernels/dense.py", "gemm(a_prev, W, out, b, np.int64(BIAS))",
         "gemm(a_prev, W, out, b, np.int64(ZERO))"),), ("tests/test_kernels.py",)),
    Mutant("transposed-panels-one-row-short", (
        ("fastnn/kernels/epoch.py", "k1 = max(row_start, p * nr), min(row_stop, p * nr + nr)",
         "k1 = max(row_start, p * nr), min(row_stop, p * nr + nr - 1)"),),
        ("tests/test_kernels.py",)),
    Mutant("epoch-loss-weighted-by-row-count", (
        ("fastnn/kernels/epoch.py", "totals[1] += batch_weight", "totals[1] += n_rows"),),
        ("tests/test_optimizers.py",)),
    # Skipping the refresh only when an epoch resumes (first_row > 0), this bug's first
    # form, is now an equivalent mutant: every fit's first call of the epoch is an empty
    # one from row 0 (the compile call in trainer.LocalEpochs), which refreshes the copies.
    Mutant("weight-copies-not-refreshed-at-epoch-start", (
        ("fastnn/kernels/epoch.py",
         "for layer in range(sizes.shape[0] - 1):\n        if has_copies(X_csr, layer):",
         "for layer in range(0):\n        if has_copies(X_csr, layer):"),),
        ("tests/test_resume.py",)),
    Mutant("average-rows-ignored", (
        ("fastnn/distributed.py", 'mean += (r["rows"] / total) * r["params"]',
         'mean += r["params"] / len(results)'),), AVERAGING_TESTS),
    Mutant("average-state-of-partition-0", (
        ("fastnn/distributed.py", "params[:], optimizer.slots[:] = mean, slots",
         'params[:], optimizer.slots[:] = mean, results[0]["slots"]'),), AVERAGING_TESTS),
    Mutant("average-step-count-min", (
        ("fastnn/distributed.py", "optimizer.iterations = max(", "optimizer.iterations = min("),),
        AVERAGING_TESTS),
    Mutant("sgd-state-without-momentum", (
        ("fastnn/optimizers.py", "return 1 if self.momentum > 0 else 0", "return 1"),),
        OPTIMIZER_TESTS),
    Mutant("adadelta-default-rho", (
        ("fastnn/optimizers.py", "lr: float = 1.0\n    rho: float = 0.95",
         "lr: float = 1.0\n    rho: float = 0.9"),), OPTIMIZER_TESTS),
    Mutant("rmsprop-default-eps", (
        ("fastnn/optimizers.py", "rho: float = 0.9\n    eps: float = 1e-7",
         "rho: float = 0.9\n    eps: float = 1e-8"),), OPTIMIZER_TESTS),
    Mutant("schedule-one-epoch-late", (
        ("fastnn/trainer.py", "lr_epoch = schedule(epoch - 1, optimizer.lr, history.history)",
         "lr_epoch = schedule(epoch, optimizer.lr, history.history)"),), TRAINER_TESTS),
    Mutant("step-count-floor-of-partial-batch", (
        ("fastnn/trainer.py",
         "optimizer.iterations += -(-(next_row - partial.next_row) // self.batch_size)",
         "optimizer.iterations += (next_row - partial.next_row) // self.batch_size"),),
        TRAINER_TESTS),
    Mutant("resumed-epoch-forgets-its-sums", (
        ("fastnn/trainer.py", "stop, partial.totals, lr,", "stop, epoch_totals(), lr,"),),
        TRAINER_TESTS),
    Mutant("interrupt-one-batch-late", (
        ("fastnn/trainer.py", "order[:first_row + scheduled[0] * batch_size]",
         "order[:first_row + (scheduled[0] + 1) * batch_size]"),), ("tests/test_resume.py",)),
    # The first run's compilation in two processes (compilation.compile_aside).
    Mutant("aside-child-compiles-nothing", (
        ("fastnn/compilation.py", "            job()\n", ""),), ("tests/test_cache.py",)),
    Mutant("tanh-without-its-taylor-branch", (
        ("fastnn/kernels/activations.py", "return taylor if abs(x) < small else r", "return r"),),
        ("tests/test_kernels.py",)),
    Mutant("expm1-without-its-taylor-branch", (
        ("fastnn/kernels/activations.py",
         "return x * p if abs(x) < small else fast_exp(x) - one", "return fast_exp(x) - one"),),
        ("tests/test_kernels.py",)),
    Mutant("log1p-without-its-range-reduction", (
        ("fastnn/kernels/activations.py", "big = x > sqrt2_minus_1", "big = x > one"),),
        ("tests/test_kernels.py",)),
    Mutant("normal-cdf-tail-without-its-reflection", (
        ("fastnn/kernels/activations.py", "tail = tail if u > 0 else 1.0 - tail", "tail = tail"),),
        ("tests/test_kernels.py",)),
    Mutant("no-copies-refreshed-on-sparse-x", (
        ("fastnn/kernels/epoch.py", "    return layer > 0 or X_csr is None",
         "    return X_csr is None"),),
        ("tests/test_sparse.py",)),
    Mutant("every-unfused-activation-compiled", (
        ("fastnn/kernels/activations.py", "tuple(True if code in present else None",
         "tuple(True if code in present or True else None"),),
        ("tests/test_activations.py",)),
    Mutant("declared-return-type-unchecked", (
        ("fastnn/kernels/workers.py", "if self._type is not None and self._type != compiled:",
         "if False:"),), ("tests/test_workers.py",)),
    Mutant("workers-keep-subnormals", (
        ("fastnn/kernels/workers.py", "        saved = _flush_subnormals(builder)\n        status",
         "        saved = None\n        status"),), ("tests/test_workers.py",)),
    Mutant("subnormals-flushed-after-the-worker", (
        ("fastnn/kernels/workers.py", "        _restore_subnormals(builder, saved)\n        with",
         "        with"),), ("tests/test_workers.py",)),
    Mutant("panel-copies-without-their-partial-panel", (
        ("fastnn/kernels/epoch.py",
         "        for j in range(n_full * nr, n):\n            P[n_full, i, j - n_full * nr]",
         "        for j in range(0):\n            P[n_full, i, j - n_full * nr]"),),
        ("tests/test_kernels.py",)),
    Mutant("delta-panels-of-hidden-layers-not-stored", (
        ("fastnn/kernels/epoch.py",
         "        store_delta_panels(deltas, widths, layer, batch_size, n_rows, r0, r1, panels)\n",
         ""),),
        ("tests/test_kernels.py",)),
    Mutant("sgd-step-in-product-rounded-once", (
        ("fastnn/kernels/gemm.py",
         '_SGD_FLAGS = tuple(sorted(config.UPDATE_JIT_OPTIONS["fastmath"]))',
         "_SGD_FLAGS = ()"),), ("tests/test_kernels.py",)),
    Mutant("sgd-step-in-product-forgets-the-bias-row", (
        ("fastnn/kernels/epoch.py",
         "        start = offsets[layer] + max(row_start, fan_in) * fan_out\n",
         "        start = stop\n"),), ("tests/test_reference.py", "tests/test_kernels.py")),
    Mutant("sgd-step-on-every-block-of-k", (
        ("fastnn/kernels/gemm.py", "            if p0 + kc == k:\n                start += sgd\n",
         "            start += sgd\n"),), ("tests/test_kernels.py",)),
    Mutant("delta-panel-copies-overlap", (
        ("fastnn/kernels/epoch.py", "    for l in range(1, stop):\n        if deltas_in_panels(",
         "    for l in range(2, stop):\n        if deltas_in_panels("),),
        ("tests/test_kernels.py",)),
    Mutant("through-w-scratch-arrays-overlap", (
        ("fastnn/kernels/dense.py",
         "    out_t = scratch[fan_out * n : (fan_out + fan_in) * n].reshape((fan_in, n))\n",
         "    out_t = scratch[: fan_in * n].reshape((fan_in, n))\n"),), ("tests/test_kernels.py",)),
    Mutant("w-transposed-for-products-as-large", (
        ("fastnn/kernels/dense.py", "    return fan_in * fan_out < n * (fan_in + fan_out)\n",
         "    return fan_in * fan_out <= n * (fan_in + fan_out)\n"),), ("tests/test_kernels.py",)),
    Mutant("thread-clocks-in-the-region-column", (
        ("fastnn/kernels/clocks.py", "clocks[row, 1 + numba.get_thread_id()] += ",
         "clocks[row, 0] += "),), ("tests/test_profiling.py",)),
    Mutant("region-clocks-of-the-slowest-epoch", (
        ("fastnn/profiling.py", "    return ordered[len(ordered) // 2]\n",
         "    return ordered[-1]\n"),), ("tests/test_profiling.py",)),
    Mutant("panels-of-w-restart-the-sums", (
        ("fastnn/kernels/dense.py",
         "start = np.int64(ZERO) if p == 0 else np.int64(ACCUMULATE)",
         "start = np.int64(ZERO)"),), ("tests/test_kernels.py",)),
    Mutant("backward-reads-one-panel-less", (
        ("fastnn/kernels/dense.py", "    for p in range(W.shape[0]):\n",
         "    for p in range(W.shape[0] - 1):\n"),), ("tests/test_kernels.py",)),
    Mutant("through-w-for-one-row-more", (
        ("fastnn/kernels/epoch.py", " if large_network(sizes, dtype) else THROUGH_W_MAX_ROWS\n",
         " if large_network(sizes, dtype) else THROUGH_W_MAX_ROWS + 1\n"),),
        ("tests/test_kernels.py",)),
    Mutant("large-networks-through-w-for-one-row-more", (
        ("fastnn/kernels/epoch.py", "    limit = LARGE_THROUGH_W_MAX_ROWS if",
         "    limit = LARGE_THROUGH_W_MAX_ROWS + 1 if"),), ("tests/test_kernels.py",)),
    Mutant("large-chunks-numbered-as-small-ones", (
        ("fastnn/kernels/epoch.py", "c1, c = min(c0 + chunk, r1), (micro_start + c0) // chunk",
         "c1, c = min(c0 + chunk, r1), (micro_start + c0) // config.CHUNK_ROWS"),),
        ("tests/test_kernels.py",)),
    Mutant("chunk-losses-numbered-within-the-micro-batch", (
        ("fastnn/kernels/epoch.py", "c1, c = min(c0 + chunk, r1), (micro_start + c0) // chunk",
         "c1, c = min(c0 + chunk, r1), c0 // chunk"),), ("tests/test_kernels.py",)),
    Mutant("blocks-leave-out-the-last-chunk", (
        ("fastnn/kernels/epoch.py", "min((block + 1) * n_chunks // n_blocks * chunk, n_rows)",
         "min((block + 1) * n_chunks // n_blocks * chunk, n_rows - 1)"),),
        ("tests/test_kernels.py",)),
    Mutant("panel-copy-all-in-the-first-panel", (
        ("fastnn/kernels/gemm.py", "    return j0 // nr * copy_stride + i0 * nr + j0 % nr, nr",
         "    return i0 * nr + j0 % nr, nr"),), ("tests/test_kernels.py",)),
    Mutant("panels-neither-stepped-nor-refreshed", (
        ("fastnn/kernels/epoch.py",
         "        w_panels = panel_rows(params, panels, sizes, layer, row_start, row_stop)",
         "        w_panels = panel_rows(params, panels, sizes, layer, row_start, row_start)"),),
        ("tests/test_kernels.py", "tests/test_reference.py")),
    Mutant("prediction-tests-each-column-in-the-last-row-only", (
        ("fastnn/kernels/epoch.py", "        tests[j] += value - value\n",
         "        tests[j] = value - value\n"),), ("tests/test_trainer_api.py",)),
    Mutant("prediction-tests-all-but-the-last-column", (
        ("fastnn/kernels/epoch.py", "    for j in range(n_features):\n        if tests[j] != 0:",
         "    for j in range(n_features - 1):\n        if tests[j] != 0:"),),
        ("tests/test_trainer_api.py",)),
    Mutant("epoch-leaves-the-stepped-panels-in-the-panels", (
        ("fastnn/kernels/epoch.py",
         "        unpack_all_weights(params, offsets, sizes, X_csr, panels)\n",
         "        pass\n"),), ("tests/test_kernels.py", "tests/test_reference.py")),
    Mutant("transposed-copy-from-stale-rows", (
        ("fastnn/kernels/epoch.py",
         "            if panels_stepped:\n                unpack_weights(",
         "            if panels_stepped and False:\n                unpack_weights("),),
        ("tests/test_kernels.py", "tests/test_reference.py")),
    Mutant("steps-in-panels-chosen-per-batch", (
        ("fastnn/kernels/epoch.py", "sgd_in_product(optimizer, slots.shape[0], l2)\n",
         "sgd_in_product(optimizer, slots.shape[0], l2_scaled)\n"),),
        ("tests/test_trainer_api.py",)),
    Mutant("large-chunks-from-one-byte-less", (
        ("fastnn/kernels/epoch.py", "    return weight_bytes > LARGE_WEIGHT_BYTES",
         "    return weight_bytes >= LARGE_WEIGHT_BYTES"),), ("tests/test_kernels.py",)),
    Mutant("transpose-forgets-the-last-edge-row", (
        ("fastnn/kernels/gemm.py", "    for i in range(m_full, m):\n        for j in range(n):\n",
         "    for i in range(m_full, m - 1):\n        for j in range(n):\n"),),
        ("tests/test_kernels.py",)),
    Mutant("two-vector-tiles-over-a-single-vector", (
        ("fastnn/kernels/gemm.py",
         "two_stop = wide_stop + (n - wide_stop) // (2 * lanes) * 2 * lanes",
         "two_stop = wide_stop + (n - wide_stop) // lanes * lanes"),), ("tests/test_kernels.py",)),
    Mutant("exp-clamp-turns-nan-into-a-number", (
        ("fastnn/kernels/activations.py", "        xc = lo if x < lo else x\n",
         "        xc = x if x > lo else lo\n"),), ("tests/test_kernels.py",)),
    Mutant("pade-exp-one-degree-short", (
        ("fastnn/kernels/activations.py", "_PADE_EXP_FLOAT64 = _pade_exp(6)",
         "_PADE_EXP_FLOAT64 = _pade_exp(5)"),), ("tests/test_kernels.py",)),
    Mutant("exp-scale-from-a-shifter-too-small", (
        ("fastnn/kernels/activations.py", "    shifter = float_type(1.5 * 2.0 ** mantissa_bits)",
         "    shifter = float_type(2.0 ** mantissa_bits)"),), ("tests/test_kernels.py",)),
    Mutant("partial-tile-loads-b-unmasked-to-its-end", (
        ("fastnn/kernels/gemm.py", "                    whole = builder.sub(k, rows_at_end)",
         "                    whole = k"),), ("tests/test_kernels.py",)),
    Mutant("buffers-left-unaligned", (
        ("fastnn/network.py", "    start = (-buffer.ctypes.data % CACHE_LINE_BYTES) // itemsize",
         "    start = 0"),), ("tests/test_network.py",)),
    Mutant("weight-rows-fetched-past-the-tasks-rows", (
        ("fastnn/kernels/gemm.py", "i_next, j_next, rows = i0 + MR, j0, min(MR, m - i0 - MR)",
         "i_next, j_next, rows = i0 + MR, j0, MR"),), ("tests/test_kernels.py",)),
    Mutant("the-panel-in-use-fetched-again", (
        ("fastnn/kernels/gemm.py", "return FETCH_B, (j0 // nr + 1) * panel_stride",
         "return FETCH_B, j0 // nr * panel_stride"),), ("tests/test_kernels.py",)),
    Mutant("narrow-layer-tasks-in-layer-order", (
        ("fastnn/kernels/epoch.py",
         "for tasks in [in_order] + narrow for i, task in enumerate(tasks)]",
         "for tasks in [in_order] + narrow for i, task in enumerate(tasks)]\n"
         "    placed = [(0, task) for tasks in [in_order] + narrow for task in tasks]"),),
        ("tests/test_kernels.py",)),
]


def run_tests(src, tests, cache, timeout):
    """(passed, seconds, last lines of the output) of pytest -x on tests, in src."""
    env = dict(os.environ, PYTHONPATH=str(src), NUMBA_CACHE_DIR=str(cache))
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=src, env=env, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - start, f"timed out after {timeout} s"
    lines = [line for line in (result.stdout + result.stderr).splitlines()
             if line.startswith(("FAILED", "ERROR")) or " passed" in line or " failed" in line]
    return result.returncode == 0, time.perf_counter() - start, "\n".join(lines[-3:])


def apply(src, mutant):
    """Apply the mutant's edits in src; return what restore() needs, or None if stale."""
    saved = {}
    for path, old, new in mutant.edits:
        file = src / path
        if path not in saved:
            saved[path] = (file.read_text(), file.stat())
        text = file.read_text()
        if text.count(old) != 1:
            restore(src, saved)
            return None
        file.write_text(text.replace(old, new))
    return saved


def restore(src, saved):
    for path, (text, stat) in saved.items():
        file = src / path
        file.write_text(text)
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--rev", default="HEAD", help="commit to test (default: HEAD)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown mutants {unknown}; see --list")
    mutants = [known[name] for name in args.names] if args.names else MUTANTS
    if args.list:
        for m in mutants:
            print(f"{m.name:40s} {' '.join(sorted({p for p, _, _ in m.edits}))}  ->  "
                  f"{' '.join(m.tests)}")
        return 0

    work = Path(tempfile.mkdtemp(prefix="fastnn-mutation-"))
    src, warm = work / "src", work / "cache-warm"
    try:
        archive = subprocess.run(["git", "archive", args.rev], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        src.mkdir()
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        tests = sorted({t for m in mutants for t in m.tests})
        print(f"mutation: {args.rev} exported to {src}; unchanged run of {len(tests)} test files",
              flush=True)
        passed, seconds, tail = run_tests(src, tests, warm, args.timeout)
        if not passed:
            print(f"mutation: the tests fail without any mutant ({seconds:.0f} s):\n{tail}")
            return 2
        print(f"mutation: unchanged: passed in {seconds:.0f} s", flush=True)
        results = []
        for i, mutant in enumerate(mutants):
            saved = apply(src, mutant)
            if saved is None:
                status, seconds, tail = "stale", 0.0, "text not found: update the mutant"
            else:
                cache = work / f"cache-{i}" if mutant.compiled else warm
                try:
                    passed, seconds, tail = run_tests(src, mutant.tests, cache, args.timeout)
                finally:
                    restore(src, saved)
                    if mutant.compiled:
                        shutil.rmtree(cache, ignore_errors=True)
                status = "SURVIVED" if passed else "killed"
            results.append((mutant, status))
            first = tail.splitlines()[0] if tail else ""
            print(f"{status:8s} {mutant.name:40s} {seconds:5.0f} s  {first}", flush=True)
        survivors = [m.name for m, status in results if status == "SURVIVED"]
        stale = [m.name for m, status in results if status == "stale"]
        killed = sum(status == "killed" for _, status in results)
        print(f"mutation: {killed} killed, {len(survivors)} survived, {len(stale)} stale, "
              f"of {len(results)}")
        for name in survivors:
            print(f"survivor: {name}")
        for name in stale:
            print(f"stale: {name}")
        return 1 if survivors or stale else 0
    finally:
        if args.keep:
            print(f"mutation: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
