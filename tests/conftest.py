"""Shared tolerances, data builders and fixtures of the fastnn test suite.

Test modules import the helpers below (``from .conftest import ...``; ``tests`` is a
package), so every tolerance of the suite lives in one table, here.
"""

import os
import sys
import zlib
from dataclasses import dataclass


def _worker_numba_cache():
    """Give each pytest-xdist worker a Numba cache directory of its own.

    Numba's cache is not safe for two processes that compile different
    specialisations of one function at the same moment: ``IndexDataCacheFile.save``
    reads the function's index, takes the first free data-file number, then writes
    the index and the data file separately, so two writers can leave an index entry
    that points at the other's machine code.  Worker gwN therefore caches in
    ``$NUMBA_CACHE_DIR/gwN`` (``.numba_cache/gwN`` in the checkout when the variable
    is unset, instead of the package's __pycache__ that the workers would share).
    The processes a test starts inherit the variable, and so the worker's directory;
    those that import this module again (a "spawn" child unpickling a test's function)
    find it set already.  Numba reads the variable when it is imported, so this runs
    before the worker imports Numba.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:  # not under xdist (-n 0, -p no:xdist): Numba's usual directory
        return
    current = os.environ.get("NUMBA_CACHE_DIR", "")
    if os.path.basename(current) == worker:  # a child of the worker: set already
        return
    if "numba" in sys.modules:
        raise RuntimeError("tests/conftest.py must set NUMBA_CACHE_DIR before Numba is "
                           "imported (a plugin imported it first)")
    base = current or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   ".numba_cache")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, worker)


_worker_numba_cache()


def _worker_cores():
    """Pin each pytest-xdist worker (and what it starts) to its own share of the cores.

    Numba's ``omp`` threads spin at the end of every parallel region waiting for
    their partner; two workers whose thread pools share the cores descheduled each
    other's partners, and a test of many short regions ran 14 times slower next to
    another one than alone (0.5 s against 6.6 s).  On its own cores a worker is a
    small machine of its own (libgomp stops spinning when it has more threads than
    cores).  The worker's Numba pool then defaults to its share, and to 2 threads
    at least so that the tests comparing 1 and 2 threads still run (NUMBA_NUM_THREADS,
    when set, wins).  Done after NumPy is imported, so its BLAS keeps the threads it
    would have had (tests/test_concurrency.py restores them), and before Numba is.
    """
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get(
        "PYTEST_XDIST_WORKER_COUNT")
    if worker is None or count is None or not hasattr(os, "sched_setaffinity"):
        return
    cpus, n, i = sorted(os.sched_getaffinity(0)), int(count), int(worker[2:])
    if i >= n or len(cpus) < n:
        return
    share = cpus[i * len(cpus) // n:(i + 1) * len(cpus) // n]
    os.sched_setaffinity(0, share)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(2, len(share))))


import numpy as np  # noqa: E402 - after NUMBA_CACHE_DIR is set

_worker_cores()

import pytest  # noqa: E402

from fastnn import Architecture, init_params, layer_views  # noqa: E402

# ---------------------------------------------------------------------------
# Tolerances
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """rtol is relative to each element; atol is relative to max |desired| (see assert_close)."""

    rtol: float
    atol: float


#: One table for the whole suite, keyed by dtype name.
#:
#: float64: the compiled kernels and the NumPy reference compute the same sums in
#: a different order (4-way blocked loops against BLAS, FMA contraction allowed by
#: the fastmath set).  For the widths used here (<= 128 terms) the rounding error
#: of a sum of k terms is about k * 2**-53 * sum|terms| <= 128 * 1.1e-16 ~ 1.4e-14
#: relative to the magnitude of the terms, so 1e-10 relative leaves four orders of
#: magnitude of headroom and still catches any wrong formula (which is O(1)).
#: The atol, 1e-12 of the largest |value|, only matters for elements that cancel
#: to (nearly) zero, whose relative error is unbounded.
#:
#: float32: the same bound with 2**-24 = 6e-8 gives 128 * 6e-8 ~ 7.6e-6 relative
#: to the terms, and a few more roundings come from exp/tanh (the kernels use a
#: polynomial exp, NumPy its libm) and from the division in softmax.  rtol 1e-4 is
#: about 10x that worst case; atol 1e-5 of the largest |value| covers the elements
#: that cancel.  A wrong formula is still off by >= 1e-2 relative.
TOLERANCES = {
    "float64": Tolerance(rtol=1e-10, atol=1e-12),
    "float32": Tolerance(rtol=1e-4, atol=1e-5),
}

#: Whole training runs, compiled against reference: the largest difference of any
#: parameter, relative to the largest |parameter|.  Every SGD step adds the
#: per-kernel rounding differences above (~1e-16 in float64, ~1e-7 in float32,
#: relative) and can amplify earlier ones by its Lipschitz constant (close to 1 for
#: the small learning rates used); 5 epochs are about 25 steps.  Measured on the
#: development machine: 3e-16 (float64) and 2e-7 (float32).  float64 uses 1e-9,
#: float32 1e-5 (50x the measured value).  A real error (a wrong row order in a
#: batch, a missed chunk or task) moves weights by lr * |gradient| >= 1e-3.
TRAINING_RTOL = {"float64": 1e-9, "float32": 1e-5}

#: Central finite differences in float64 with step EPS: truncation error
#: ~ EPS**2 * |f'''| / 6 ~ 1e-11 and cancellation error ~ 2**-53 * |f| / EPS ~ 1e-11
#: for losses of order 1, so gradients agree to ~1e-9; the tolerances leave 100x.
FD_EPS = 1e-5
FD_TOL = Tolerance(rtol=1e-6, atol=1e-8)


def tolerance(dtype):
    return TOLERANCES[np.dtype(dtype).name]


def assert_close(actual, desired, dtype=None, err_msg="", tol=None):
    """assert_allclose with the suite's tolerance for dtype (default: desired's dtype).

    The absolute part is scaled by max |desired|, so one tolerance serves
    quantities of any magnitude (weights of order 1, gradients of order 1e-3).
    """
    desired = np.asarray(desired)
    actual = np.asarray(actual)
    if tol is None:
        tol = tolerance(dtype if dtype is not None else desired.dtype)
    scale = float(np.max(np.abs(desired))) if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=tol.rtol, atol=tol.atol * scale,
                               err_msg=err_msg)


# ---------------------------------------------------------------------------
# Random problems
# ---------------------------------------------------------------------------


def make_targets(rng, head, n, n_outputs):
    """Targets that suit the head: one-hot rows (softmax), 0/1 labels (sigmoid), reals."""
    if head == "softmax":
        return np.eye(n_outputs)[rng.integers(0, n_outputs, n)]
    if head == "sigmoid":
        return rng.integers(0, 2, (n, n_outputs)).astype(np.float64)
    return rng.standard_normal((n, n_outputs))


def make_problem(rng, sizes, activations, head, dtype="float64", n=20, init="glorot_uniform",
                 bias_scale=0.5):
    """(arch, params, X, Y): a random network and data set drawn from rng.

    Biases are drawn too (init_params starts them at zero, which would leave the
    bias paths of the forward pass untested).  X and Y are float64; params has the
    architecture's dtype.
    """
    arch = Architecture(tuple(sizes), tuple(activations), head, dtype)
    params = init_params(arch, init, int(rng.integers(2**31)))
    for _, b in layer_views(arch, params):
        b[:] = bias_scale * rng.standard_normal(b.shape)
    X = rng.standard_normal((n, sizes[0]))
    Y = make_targets(rng, head, n, sizes[-1])
    return arch, params, X, Y


def seed_of(text):
    """A stable 32-bit seed from a string (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode())


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's id: reproducible, and distinct per test."""
    return np.random.default_rng(seed_of(request.node.nodeid))


@pytest.fixture(scope="session")
def digits():
    """The tutorial's data: sklearn digits scaled to [0, 1], one-hot targets, its split.

    Returns (x_train, x_test, y_train, y_test); 1617 training rows of 64 features.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    X = data.data / 16.0
    Y = np.eye(10)[data.target]
    return train_test_split(X, Y, test_size=0.1, random_state=20)
