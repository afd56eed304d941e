"""The NumPy reference path (fastnn.reference) against three independent oracles.

1. Central finite differences of the loss (the gradient is the derivative of the loss).
2. tests/naive.py: a per-sample loop implementation written differently.
3. tests/tutorial.py: the tutorial's MyNN, trained on its digits data set.

The last tests perturb the reference on purpose and check that the helpers used
above then fail, so a wrong backward pass cannot slip through this file.
"""

import numpy as np
import pytest

from fastnn import Architecture, init_params, fit, layer_views, reference

from . import naive
from .conftest import FD_EPS, FD_TOL, assert_close, make_problem
from .tutorial import MyNN

HIDDEN = ("identity", "sigmoid", "tanh", "relu")
HEADS = ("softmax", "sigmoid", "identity")

#: (sizes, hidden activations): networks of 1, 2 and 3 dense layers.
NETWORKS = [((4, 3), ())]
NETWORKS += [((5, 7, 4), (act,)) for act in HIDDEN]
NETWORKS += [((3, 6, 5, 2), (act, act)) for act in HIDDEN]
NETWORKS += [((3, 6, 5, 2), ("tanh", "relu")), ((4, 5, 6, 3), ("relu", "sigmoid"))]

CASES = [
    pytest.param(sizes, acts, head, id=f"{'-'.join(map(str, sizes))}-{'+'.join(acts) or 'none'}-{head}")
    for sizes, acts in NETWORKS
    for head in HEADS
]


# ---------------------------------------------------------------------------
# Helpers (each raises AssertionError on a mismatch; used by the perturbation tests)
# ---------------------------------------------------------------------------


def min_abs_preactivation(arch, params, X):
    """Smallest |z| over the hidden relu layers (inf if there are none)."""
    smallest = np.inf
    a = X
    for (W, b), name in zip(layer_views(arch, params), arch.layer_activations):
        z = a @ W + b
        if name == "relu":
            smallest = min(smallest, np.abs(z).min())
        a = reference.ACTIVATIONS[name](z)
    return smallest


def problem_away_from_kinks(rng, sizes, acts, head, n):
    """A random problem whose relu pre-activations are all at least 1e-3 away from 0.

    A finite difference straddling the kink of relu measures neither one-sided
    derivative; with a step of 1e-5 a margin of 1e-3 keeps every difference on one side.
    """
    for _ in range(100):
        arch, params, X, Y = make_problem(rng, sizes, acts, head, n=n)
        if min_abs_preactivation(arch, params, X) > 1e-3:
            return arch, params, X, Y
    raise RuntimeError("no draw kept the relu pre-activations away from 0")


def numerical_gradient(arch, params, X, Y, eps=FD_EPS):
    """Central differences of reference.loss with respect to every parameter."""
    p = params.copy()
    grad = np.empty_like(p)
    for i in range(p.size):
        saved = p[i]
        p[i] = saved + eps
        up = reference.loss(arch, p, X, Y)
        p[i] = saved - eps
        down = reference.loss(arch, p, X, Y)
        p[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad


def check_gradient(arch, params, X, Y):
    """reference.backward against central differences, all parameters at once."""
    grads, loss = reference.backward(arch, params, reference.forward(arch, params, X), Y)
    numeric = numerical_gradient(arch, params, X, Y)
    np.testing.assert_allclose(grads, numeric, rtol=FD_TOL.rtol, atol=FD_TOL.atol)
    assert_close(loss, reference.loss(arch, params, X, Y))


def check_against_naive(arch, params, X, Y):
    """Vectorised reference against the per-sample loops: output, loss, gradients."""
    layers = layer_views(arch, params)
    expected_grads, expected_loss = naive.gradients(layers, arch.activations, arch.head, X, Y)
    assert_close(reference.forward(arch, params, X)[-1],
                 naive.predict(layers, arch.activations, arch.head, X), err_msg="output")
    assert_close(reference.loss(arch, params, X, Y), expected_loss, err_msg="loss")
    grads, loss = reference.backward(arch, params, reference.forward(arch, params, X), Y)
    assert_close(loss, expected_loss, err_msg="loss from backward")
    for l, ((gW, gb), (eW, eb)) in enumerate(zip(layer_views(arch, grads), expected_grads)):
        assert_close(gW, eW, err_msg=f"weight gradient of layer {l}")
        assert_close(gb, eb, err_msg=f"bias gradient of layer {l}")


# ---------------------------------------------------------------------------
# 1. Finite differences
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sizes, acts, head", CASES)
def test_gradient_matches_finite_differences(rng, sizes, acts, head):
    arch, params, X, Y = problem_away_from_kinks(rng, sizes, acts, head, n=6)
    check_gradient(arch, params, X, Y)


def test_gradient_of_soft_targets(rng):
    """Softmax with probability-vector targets and sigmoid with targets in (0, 1):
    the output delta p - y does not rely on one-hot or 0/1 labels."""
    for head in ("softmax", "sigmoid"):
        arch, params, X, _ = make_problem(rng, (4, 6, 3), ("tanh",), head, n=5)
        Y = rng.uniform(0.05, 0.95, (5, 3))
        if head == "softmax":
            Y /= Y.sum(axis=1, keepdims=True)
        check_gradient(arch, params, X, Y)


# ---------------------------------------------------------------------------
# 2. Per-sample loops
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sizes, acts, head", CASES)
def test_reference_matches_naive_loops(rng, sizes, acts, head):
    arch, params, X, Y = make_problem(rng, sizes, acts, head, n=7)
    check_against_naive(arch, params, X, Y)


def test_reference_float32_matches_naive(rng):
    """The float32 reference stays within the float32 tolerance of the float64 loops."""
    arch, params, X, Y = make_problem(rng, (5, 9, 7, 3), ("tanh", "sigmoid"), "softmax",
                                      dtype="float32", n=11)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    layers = layer_views(arch, params)
    expected_grads, expected_loss = naive.gradients(layers, arch.activations, arch.head, X32, Y32)
    activations = reference.forward(arch, params, X32)
    assert activations[-1].dtype == np.float32
    assert_close(activations[-1], naive.predict(layers, arch.activations, arch.head, X32),
                 dtype="float32")
    grads, loss = reference.backward(arch, params, activations, Y32)
    assert grads.dtype == np.float32
    assert_close(loss, expected_loss, dtype="float32")
    expected_flat = np.concatenate([np.vstack([gW, gb]).ravel() for gW, gb in expected_grads])
    assert_close(grads, expected_flat, dtype="float32")


def test_train_epoch_is_sgd_on_the_batches(rng):
    """reference.train_epoch against explicit SGD steps with naive gradients, incl. a partial batch."""
    arch, params, X, Y = make_problem(rng, (4, 6, 3), ("sigmoid",), "softmax", n=11)
    order = rng.permutation(11).astype(np.int64)
    expected = [(W.copy(), b.copy()) for W, b in layer_views(arch, params)]
    expected_total, expected_right = 0.0, 0.0
    for start in range(0, 11, 4):  # batches of 4, 4 and 3 rows
        rows = order[start:start + 4]
        p = naive.predict(expected, arch.activations, arch.head, X[rows])  # before the update
        expected_right += float(np.sum(p.argmax(axis=1) == Y[rows].argmax(axis=1)))
        grads, loss = naive.gradients(expected, arch.activations, arch.head, X[rows], Y[rows])
        expected_total += loss * len(rows)
        expected = [(W - 0.3 * gW, b - 0.3 * gb) for (W, b), (gW, gb) in zip(expected, grads)]
    totals = np.zeros(3)
    next_row = reference.train_epoch(arch, params, X, Y, order, 0, np.zeros(1, np.int64), totals,
                                     4, 0.3)
    assert next_row == 11 and totals[1] == 11
    assert_close(totals[0] / totals[1], expected_total / 11)
    assert_close(totals[2], expected_right)  # the running accuracy, times the 11 rows
    for (W, b), (eW, eb) in zip(layer_views(arch, params), expected):
        assert_close(W, eW)
        assert_close(b, eb)


def test_flat_layout(rng):
    """layer_views: W_l then b_l, row-major, one block per layer, views not copies."""
    arch = Architecture((3, 4, 2), ("relu",), "identity", "float64")
    assert list(arch.offsets) == [0, 16, 26]
    flat = np.arange(arch.n_params, dtype=np.float64)
    (W0, b0), (W1, b1) = layer_views(arch, flat)
    np.testing.assert_array_equal(W0, np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(b0, [12, 13, 14, 15])
    np.testing.assert_array_equal(W1, np.arange(16, 24).reshape(4, 2))
    np.testing.assert_array_equal(b1, [24, 25])
    W1[0, 1] = -1
    assert flat[17] == -1


def test_init_params_draws_both_dtypes_alike():
    arch64 = Architecture((5, 4, 3), ("tanh",), "softmax", "float64")
    arch32 = Architecture((5, 4, 3), ("tanh",), "softmax", "float32")
    p64, p32 = init_params(arch64, "normal", 3), init_params(arch32, "normal", 3)
    assert p64.dtype == np.float64 and p32.dtype == np.float32
    np.testing.assert_array_equal(p32, p64.astype(np.float32))
    for _, b in layer_views(arch64, p64):
        assert not b.any()
    np.testing.assert_array_equal(p64, init_params(arch64, "normal", 3))


# ---------------------------------------------------------------------------
# 3. The tutorial
# ---------------------------------------------------------------------------

TUTORIAL_ARCH = Architecture((64, 128, 128, 10), "sigmoid", "softmax", "float64")
TUTORIAL_EPOCHS = 20


def tutorial_run(x_train, y_train):
    """The tutorial's MyNN after 20 full-batch epochs, and the initial flat parameters."""
    params0 = init_params(TUTORIAL_ARCH, "normal", 0)
    (w1, b1), (w2, b2), (w3, b3) = layer_views(TUTORIAL_ARCH, params0)
    nn = MyNN(x_train, y_train, w1, b1, w2, b2, w3, b3, lr=0.5)
    losses = []
    for _ in range(TUTORIAL_EPOCHS):
        nn.feedforward()
        nn.backprop()
        losses.append(nn.loss)
    return nn, losses, params0


def compare_with_tutorial(params, nn, rel):
    """Every parameter within rel * max|w| of the tutorial's (per layer, weights and biases)."""
    for l, ((W, b), (tW, tb)) in enumerate(zip(layer_views(TUTORIAL_ARCH, params), nn.layers())):
        scale = np.abs(tW).max()
        np.testing.assert_allclose(W, tW, rtol=0, atol=rel * scale, err_msg=f"w{l + 1}")
        np.testing.assert_allclose(b, tb, rtol=0, atol=rel * scale, err_msg=f"b{l + 1}")


@pytest.fixture(scope="module")
def tutorial(digits):
    x_train, _, y_train, _ = digits
    return tutorial_run(x_train, y_train)


@pytest.mark.parametrize("backend, rel", [("numpy", 1e-12), ("numba", 1e-9)])
def test_matches_tutorial(digits, tutorial, backend, rel):
    """fastnn with batch_size=0 is the tutorial's algorithm: same weights after 20 epochs.

    The tolerance is relative to the largest |w| of each layer (about 4 for N(0, 1)
    weights), applied to every weight and bias.  The NumPy backend differs from the
    tutorial only in rounding (expit against 1 / (1 + exp(-z)), the bias gradient as
    a product with a column of ones): 1e-12.  The compiled backend sums in its own
    order and uses a polynomial exp: 1e-9.
    """
    x_train, _, y_train, _ = digits
    nn, losses, params0 = tutorial
    params = params0.copy()
    history = fit(TUTORIAL_ARCH, params, x_train, y_train, epochs=TUTORIAL_EPOCHS,
                    batch_size=0, lr=0.5, backend=backend)
    compare_with_tutorial(params, nn, rel)
    # The reported loss is the tutorial's error() before each epoch's update.
    np.testing.assert_allclose(history.loss, losses, rtol=rel)
    # The run did learn something, so the comparison is not between two stuck networks.
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------------------
# 4. The helpers above catch a perturbed reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("act", HIDDEN)
def test_gradient_check_catches_a_perturbed_derivative(rng, monkeypatch, act):
    """A derivative off by 0.1 % fails both the finite-difference and the naive check."""
    arch, params, X, Y = problem_away_from_kinks(rng, (4, 6, 5, 3), (act, act), "softmax", n=6)
    check_gradient(arch, params, X, Y)  # sanity: passes unperturbed
    check_against_naive(arch, params, X, Y)
    exact = reference.DERIVATIVES[act]
    monkeypatch.setitem(reference.DERIVATIVES, act, lambda a: exact(a) * 1.001)
    with pytest.raises(AssertionError):
        check_gradient(arch, params, X, Y)
    with pytest.raises(AssertionError):
        check_against_naive(arch, params, X, Y)


def test_gradient_check_catches_a_sign_flip(rng, monkeypatch):
    arch, params, X, Y = make_problem(rng, (3, 6, 5, 2), ("sigmoid", "sigmoid"), "softmax", n=6)
    monkeypatch.setitem(reference.DERIVATIVES, "sigmoid", lambda a: -a * (1 - a))
    with pytest.raises(AssertionError):
        check_gradient(arch, params, X, Y)


@pytest.mark.parametrize("head", HEADS)
def test_gradient_check_catches_a_perturbed_output_delta(rng, monkeypatch, head):
    arch, params, X, Y = make_problem(rng, (4, 5, 3), ("tanh",), head, n=6)
    exact = reference.output_delta

    def off_by_a_little(p, y, activation, scale, out):
        loss = exact(p, y, activation, scale, out)
        out *= 1.001
        return loss

    monkeypatch.setattr(reference, "output_delta", off_by_a_little)
    with pytest.raises(AssertionError):
        check_gradient(arch, params, X, Y)
    with pytest.raises(AssertionError):
        check_against_naive(arch, params, X, Y)


def test_tutorial_comparison_catches_a_tiny_perturbation(digits, tutorial, monkeypatch):
    """A sigmoid derivative off by one part in a million is visible after 20 epochs."""
    x_train, _, y_train, _ = digits
    nn, _, params0 = tutorial
    monkeypatch.setitem(reference.DERIVATIVES, "sigmoid", lambda a: a * (1 - a) * (1 + 1e-6))
    params = params0.copy()
    fit(TUTORIAL_ARCH, params, x_train, y_train, epochs=TUTORIAL_EPOCHS, batch_size=0, lr=0.5,
          backend="numpy")
    with pytest.raises(AssertionError):
        compare_with_tutorial(params, nn, 1e-12)
