"""Shared tolerances, data builders and fixtures of the fastnn test suite.

Test modules import the helpers below (``from .conftest import ...``; ``tests`` is a
package), so every tolerance of the suite lives in one table, here.
"""

import zlib
from dataclasses import dataclass

import numpy as np
import pytest

from fastnn import Architecture, init_params, layer_views

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


def central_differences(objective, x):
    """The gradient of objective (x -> (loss, grad)) at x by central differences of step FD_EPS."""
    numeric = np.empty_like(x)
    for i in range(x.size):
        step = np.zeros_like(x)
        step[i] = FD_EPS
        numeric[i] = (objective(x + step)[0] - objective(x - step)[0]) / (2 * FD_EPS)
    return numeric


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
