"""Numba flags and execution settings, in one place.

Every compiled kernel takes its flags from here instead of hard-coding them, so
that a change of policy (fastmath set, caching) is one edit.

Environment overrides
---------------------
FASTNN_CACHE=0
    Do not cache compiled kernels on disk (default: cache, see below).
FASTNN_COMPILE_ASIDE=0
    Compile every kernel in this process (default: a cold run on Linux with more
    than one CPU compiles its largest kernel in a forked child process meanwhile,
    ``compilation.compile_aside``).
NUMBA_CACHE_DIR
    Numba's own variable: where the on-disk cache lives.  Numba takes the first
    writable directory of: NUMBA_CACHE_DIR, the package's ``__pycache__``, a
    per-user cache directory.  It skips an unwritable NUMBA_CACHE_DIR silently;
    fastnn warns then, naming the directory used instead, and warns as well when
    none is writable (the kernels are then compiled in memory on every run).

Threading
---------
The compiled epoch uses a few very short parallel regions per mini-batch, so the
cost of starting a region matters.  Measured on the 2-core development machine:
about 0.6 us per region with Numba's ``omp`` layer against about 42 us with
``workqueue``.  We therefore ask Numba for ``omp`` first, ``tbb`` next and fall
back to ``workqueue`` (always available, correct but slow for small batches).
"""

import os
import warnings

import numba

# No `nnan`/`ninf`: they would let LLVM fold away the NaN/inf checks that detect
# divergence. `reassoc` is left out as well: the kernels are written so that the
# loops LLVM vectorises need no reassociation, which keeps the summation order
# fixed by the source code.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})

def _numba_cache_path():
    """The directory where Numba would cache fastnn's kernels, or None if none is writable.

    Asks Numba's own cache locators (NUMBA_CACHE_DIR, the package's __pycache__, the
    user's cache directory), with this function standing in for a kernel.  Without the
    check, a machine where none is writable fails at the first call of a kernel.
    """
    from numba.core.caching import FunctionCache

    try:
        locator = FunctionCache(_numba_cache_path)._impl.locator
        locator.ensure_cache_path()
    except (RuntimeError, OSError):
        return None
    return locator.get_cache_path()


CACHE = os.environ.get("FASTNN_CACHE", "1") != "0"
COMPILE_ASIDE = os.environ.get("FASTNN_COMPILE_ASIDE", "1") != "0"
#: The directory under which Numba caches fastnn's kernels (NUMBA_CACHE_DIR, the
#: package's directory for its __pycache__ folders, or a per-user one); None without
#: a cache.
CACHE_PATH = None
if CACHE:
    _cache_path = _numba_cache_path()
    CACHE_PATH = None if _cache_path is None else os.path.dirname(_cache_path)
    if _cache_path is None:
        CACHE = False
        warnings.warn(
            "fastnn: Numba has no writable cache directory, so the kernels are compiled in "
            "memory on every run (slower start-up). Set NUMBA_CACHE_DIR to a writable "
            "directory to cache them.",
            RuntimeWarning,
            stacklevel=2,
        )
    elif numba.config.CACHE_DIR and os.path.commonpath(
            [os.path.abspath(numba.config.CACHE_DIR), os.path.abspath(_cache_path)]
    ) != os.path.abspath(numba.config.CACHE_DIR):
        warnings.warn(
            f"fastnn: NUMBA_CACHE_DIR={numba.config.CACHE_DIR} is not writable, so Numba "
            f"ignores it and caches the kernels elsewhere (such as {_cache_path}).",
            RuntimeWarning,
            stacklevel=2,
        )

#: Options shared by every serial kernel.  error_model="numpy": a float division
#: by zero gives inf/NaN as in NumPy instead of a Python exception; the check that
#: Python semantics need also stops LLVM from vectorising every loop that divides.
#: no_cfunc_wrapper: Numba would also build a C-ABI wrapper of every function, for
#: use as a first-class function value, which fastnn never does (its drivers call
#: workers through their native entry points, ``kernels.workers``).
JIT_OPTIONS = dict(nogil=True, fastmath=set(FASTMATH), error_model="numpy", cache=CACHE,
                   no_cfunc_wrapper=True)

#: The optimizers' update rules, without "contract": in an expression such as
#: b1 * m + (1 - b1) * g, LLVM may fuse either product into a multiply-add, and it
#: chose differently in a fresh compile and in the code loaded from Numba's cache
#: (Adam's weights 1 ulp apart from the second step on).  Unfused, every compile
#: rounds alike; the updates are memory-bound, so fusing gains nothing there.
UPDATE_JIT_OPTIONS = dict(JIT_OPTIONS, fastmath=set(FASTMATH - {"contract"}))

#: Options of the parallel drivers (``prange`` over fixed chunks).
PARALLEL_OPTIONS = dict(JIT_OPTIONS, parallel=True)

#: Rows of a mini-batch that one parallel task processes in the forward and
#: backward passes; networks too large for a core's cache take twice as many
#: (``kernels.epoch.chunk_rows``).  Fixed, so results never depend on the thread
#: count.  Measured 8 / 16 / 32 rows: 16 best on W1.
CHUNK_ROWS = 16

#: Rows of a mini-batch that the epoch takes through the forward and backward passes
#: and into the gradient sums at a time (a multiple of 2 * CHUNK_ROWS): a larger
#: mini-batch is trained in micro-batches of this many rows, its gradient summed over
#: them and the weights updated after the last, so that each micro-batch's
#: activations and deltas are still in cache when its gradient reads them.  The
#: sums run in the same order either way: the weights do not depend on it.
MICRO_BATCH_ROWS = 256

#: Rows that the prediction kernel takes through the layers at a time.
PREDICT_CHUNK_ROWS = 256

#: Rows from which a prediction reads the weights from a copy in panel layout
#: (``epoch.predict_panels``); smaller ones read them in place.
PREDICT_PANEL_ROWS = 1024

#: Target number of parameters per task of the parallel gradient + update pass,
#: and the width below which a layer's rows count as this wide (see make_tasks; the
#: tasks of such narrow layers are also spread through the list, as they cost less).
#: Measured 2048 / 4096 / 8192 on W1 and W2: within noise of each other.  This
#: cost-balanced split replaced one of 2048 parameters per task without the width
#: rule (W2, 12800 rows, 2 threads: 401 -> 316 ms per epoch).
PARAMS_PER_TASK = 4096
TASK_MIN_WIDTH = 64

#: Tasks of a sparse first layer (its feature ranges; see make_tasks).  Each task
#: searches every row of the batch for its first feature, so the count is fixed and
#: small, but still enough to balance 16 or more threads.
SPARSE_INPUT_TASKS = 32

numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def _features_without_256_bit_preference():
    """The host's CPU features as Numba would use them, plus "-prefer-256-bit"; or None
    (leave Numba's choice) where NUMBA_CPU_NAME or NUMBA_CPU_FEATURES is set or the
    host has no AVX-512.

    LLVM's tuning for Intel's AVX-512 CPUs prefers 256-bit vectors in the loops it
    vectorises itself (the activations, their derivatives, the bias sums, the update
    rules): the gemm tiles, written as 512-bit vector IR, already run 512-bit code.
    Without the preference those loops take 512-bit vectors too: on the 2-core Intel
    machine the float64 sigmoid took 0.61 instead of 0.81 ns per element and the
    float64 W1 epoch 7-14 % less time (docs/benchmarks.md); float32 W1 was level.
    """
    if numba.config.CPU_NAME is not None or numba.config.CPU_FEATURES is not None:
        return None
    from numba.core.codegen import get_host_cpu_features
    features = get_host_cpu_features()
    return features + ",-prefer-256-bit" if "+avx512f" in features.split(",") else None


# Numba reads this when its code generator starts, at the first compile: fastnn's
# kernels are compiled after this module runs.
_TUNED_FEATURES = _features_without_256_bit_preference()
if _TUNED_FEATURES is not None:
    numba.config.CPU_FEATURES = _TUNED_FEATURES

#: Upper bound of the ``threads`` setting (Numba's pool size, NUMBA_NUM_THREADS).
NUMBA_MAX_THREADS = numba.config.NUMBA_NUM_THREADS
