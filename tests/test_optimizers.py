"""Optimizers, the L2 penalty, sample weights and learning-rate schedules.

Whole epochs of the compiled driver are compared with the NumPy reference for
every update rule; the reference itself is checked against hand-worked steps and
against finite differences of the penalised, weighted loss.
"""

import math

import numba
import numpy as np
import pytest

from fastnn import Adadelta, Adam, Architecture, RMSprop, SGD, fit, reference
from fastnn.kernels import epoch
from fastnn.optimizers import make_optimizer
from fastnn.schedules import (Constant, Cosine, InverseScaling, ReduceOnPlateau, StepDecay,
                              make_schedule, schedule_config)

from .conftest import FD_EPS, TRAINING_RTOL, make_problem

DTYPES = ("float32", "float64")

#: One configuration per branch of the update kernel, with learning rates that move
#: the weights well beyond the tolerance in a few epochs.
OPTIMIZERS = [
    pytest.param(lambda: SGD(lr=0.3), id="sgd"),
    pytest.param(lambda: SGD(lr=0.1, momentum=0.9), id="momentum"),
    pytest.param(lambda: SGD(lr=0.1, momentum=0.9, nesterov=True), id="nesterov"),
    pytest.param(lambda: RMSprop(lr=0.01), id="rmsprop"),
    pytest.param(lambda: Adam(lr=0.01), id="adam"),
    pytest.param(lambda: Adadelta(lr=1.0), id="adadelta"),
]


def assert_same(actual, desired, dtype):
    scale = np.abs(desired).max(initial=1e-30)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=TRAINING_RTOL[dtype] * scale)


# ---------------------------------------------------------------------------
# Compiled epochs against the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l2, weighted", [(0.0, False), (0.3, True)], ids=["plain", "l2-weighted"])
@pytest.mark.parametrize("make", OPTIMIZERS)
def test_compiled_epochs_match_reference(rng, make, l2, weighted, dtype):
    """4 shuffled epochs, batches of 16 over 70 rows (last batch 6): weights, state, losses."""
    arch, params0, X, Y = make_problem(rng, (6, 13, 9, 5), ("sigmoid", "tanh"), "softmax", dtype,
                                       n=70)
    weights = rng.uniform(0.0, 3.0, 70) if weighted else None
    runs = {}
    for backend in ("numpy", "numba"):
        params, optimizer = params0.copy(), make()
        history = fit(arch, params, X, Y, epochs=4, batch_size=16, optimizer=optimizer, l2=l2,
                      sample_weight=weights, random_state=3, backend=backend)
        runs[backend] = params, optimizer, history.loss
    (p_ref, opt_ref, loss_ref), (p_fast, opt_fast, loss_fast) = runs["numpy"], runs["numba"]
    assert np.abs(p_ref - params0).max() > 1e3 * TRAINING_RTOL[dtype] * np.abs(p_ref).max()
    assert_same(p_fast, p_ref, dtype)
    assert_same(opt_fast.slots, opt_ref.slots, dtype)
    assert opt_fast.iterations == opt_ref.iterations == 4 * 5
    np.testing.assert_allclose(loss_fast, loss_ref, rtol=TRAINING_RTOL[dtype])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("make", OPTIMIZERS[3:5])
def test_bitwise_identical_across_thread_counts(rng, make):
    arch, params0, X, Y = make_problem(rng, (40, 70, 5), ("sigmoid",), "softmax", "float32", n=90)
    weights = rng.uniform(0.5, 2.0, 90)
    results = []
    for threads in (1, 2, 1):
        params, optimizer = params0.copy(), make()
        fit(arch, params, X, Y, epochs=3, batch_size=32, optimizer=optimizer, l2=0.1,
            sample_weight=weights, random_state=1, threads=threads)
        results.append((params, optimizer.slots))
    for params, slots in results[1:]:
        np.testing.assert_array_equal(params, results[0][0])
        np.testing.assert_array_equal(slots, results[0][1])


# ---------------------------------------------------------------------------
# The reference: hand-worked steps and finite differences
# ---------------------------------------------------------------------------


def one_weight_problem():
    """A 1 -> 1 identity network p = w x + b with x = 2, y = 1, w = 0.25, b = 0.

    p = 0.5, delta = p - y = -0.5, so grad w = x delta = -1 and grad b = -0.5.
    """
    arch = Architecture((1, 1), (), "identity", "float64")
    return arch, np.array([0.25, 0.0]), np.array([[2.0]]), np.array([[1.0]])


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="compiled code only")
def test_one_epoch_driver_serves_every_optimizer(rng):
    """The optimizer's code is bound into the update worker (``epoch.task_worker``),
    not an argument the epoch driver is compiled for: every update rule trains
    through one compiled driver."""
    drivers = []
    for make in OPTIMIZERS:
        arch, params, X, Y = make_problem(rng, (5, 7, 3), ("tanh",), "softmax", n=20)
        fit(arch, params, X, Y, epochs=1, batch_size=8, optimizer=make.values[0](),
            random_state=0)
        drivers.append(set(epoch.train_epoch.overloads))
    assert all(found == drivers[0] for found in drivers)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_sgd_and_momentum_by_hand(backend):
    arch, params, X, Y = one_weight_problem()
    fit(arch, params, X, Y, epochs=1, optimizer=SGD(lr=0.1), backend=backend)
    np.testing.assert_allclose(params, [0.25 + 0.1 * 1.0, 0.0 + 0.1 * 0.5], rtol=1e-15)

    # Momentum 0.9, two steps.  Step 1: v = -0.1 g = (0.1, 0.05), params (0.35, 0.05).
    # Step 2: p = 2 * 0.35 + 0.05 = 0.75, delta = -0.25, g = (-0.5, -0.25);
    # v = 0.9 v - 0.1 g = (0.14, 0.07), params (0.49, 0.12).
    arch, params, X, Y = one_weight_problem()
    optimizer = SGD(lr=0.1, momentum=0.9)
    fit(arch, params, X, Y, epochs=2, optimizer=optimizer, backend=backend)
    np.testing.assert_allclose(optimizer.slots[0], [0.14, 0.07], rtol=1e-14)
    np.testing.assert_allclose(params, [0.49, 0.12], rtol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_adam_first_steps_by_hand(backend):
    """Adam's first step moves every parameter by lr against its gradient's sign.

    m = (1 - b1) g, v = (1 - b2) g^2, lr_t = lr sqrt(1 - b2) / (1 - b1), so the step is
    lr g / (|g| + eps / sqrt(1 - b2)) = lr sign(g) up to eps.
    """
    arch, params, X, Y = one_weight_problem()
    optimizer = Adam(lr=0.01)
    fit(arch, params, X, Y, epochs=1, optimizer=optimizer, backend=backend)
    g = np.array([-1.0, -0.5])
    step = 0.01 * g / (np.abs(g) + 1e-8 / math.sqrt(0.001))
    np.testing.assert_allclose(params, [0.25, 0.0] - step, rtol=1e-13)
    np.testing.assert_allclose(optimizer.slots, [0.1 * g, 0.001 * g * g], rtol=1e-13)
    assert optimizer.iterations == 1
    # Second step, worked from the formulas: p = 2 w + b with the new w, b.
    p = 2 * params[0] + params[1]
    g2 = np.array([2 * (p - 1), p - 1])
    m = 0.9 * 0.1 * g + 0.1 * g2
    v = 0.999 * 0.001 * g * g + 0.001 * g2 * g2
    lr_t = 0.01 * math.sqrt(1 - 0.999**2) / (1 - 0.9**2)
    expected = params - lr_t * m / (np.sqrt(v) + 1e-8)
    fit(arch, params, X, Y, epochs=1, optimizer=optimizer, backend=backend)
    np.testing.assert_allclose(params, expected, rtol=1e-13)


def penalised_loss(arch, params, X, Y, weights, l2):
    """(sum_r w_r loss_r + 0.5 l2 sum(W^2)) / sum w: what one full batch minimises
    (scikit-learn's convention: the penalty is divided by the batch's weight)."""
    p = reference.forward(arch, params, X)[-1]
    data = np.sum(weights * reference.ROW_LOSSES[arch.head](p, Y)) / weights.sum()
    squares = sum(np.sum(W**2) for W, _ in reference.layer_views(arch, params))
    return data + 0.5 * l2 * squares / weights.sum()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("head", ["softmax", "sigmoid", "identity"])
def test_full_batch_step_is_the_gradient_of_the_penalised_weighted_loss(rng, head, backend):
    """One full-batch SGD step with lr: params change by -lr * (central differences)."""
    arch, params0, X, Y = make_problem(rng, (4, 6, 3), ("tanh",), head, "float64", n=9)
    weights = rng.uniform(0.2, 2.0, 9)
    l2, lr = 0.7, 1e-3
    numeric = np.empty_like(params0)
    for i in range(params0.size):
        up, down = params0.copy(), params0.copy()
        up[i] += FD_EPS
        down[i] -= FD_EPS
        numeric[i] = (penalised_loss(arch, up, X, Y, weights, l2)
                      - penalised_loss(arch, down, X, Y, weights, l2)) / (2 * FD_EPS)
    params = params0.copy()
    history = fit(arch, params, X, Y, epochs=1, lr=lr, l2=l2, sample_weight=weights,
                  backend=backend)
    np.testing.assert_allclose((params0 - params) / lr, numeric, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(history.loss[0], penalised_loss(arch, params0, X, Y, weights, l2),
                               rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_integer_sample_weights_equal_repeated_rows(rng, backend):
    """Full batch: weight 2 on a row is the row twice, weight 0 is the row left out."""
    arch, params0, X, Y = make_problem(rng, (4, 6, 3), ("sigmoid",), "softmax", "float64", n=8)
    weights = np.array([2, 1, 0, 1, 3, 1, 0, 1])
    repeated = np.repeat(np.arange(8), weights)
    a, b = params0.copy(), params0.copy()
    fit(arch, a, X, Y, epochs=3, lr=0.5, sample_weight=weights, backend=backend)
    fit(arch, b, X[repeated], Y[repeated], epochs=3, lr=0.5, backend=backend)
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_unit_sample_weights_change_nothing(rng):
    arch, params0, X, Y = make_problem(rng, (5, 7, 3), ("relu",), "softmax", "float32", n=40)
    a, b = params0.copy(), params0.copy()
    fit(arch, a, X, Y, epochs=2, batch_size=16, lr=0.2, random_state=0)
    fit(arch, b, X, Y, epochs=2, batch_size=16, lr=0.2, random_state=0, sample_weight=np.ones(40))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("weights, message", [
    (np.ones(7), "shape"), (-np.ones(8), ">= 0"), (np.zeros(8), "positive sum"),
    (np.array([1, 1, 1, np.nan, 1, 1, 1, 1]), "finite"),
])
def test_bad_sample_weights(rng, weights, message):
    arch, params, X, Y = make_problem(rng, (4, 6, 3), ("sigmoid",), "softmax", "float64", n=8)
    with pytest.raises(ValueError, match=message):
        fit(arch, params, X, Y, epochs=1, lr=0.1, sample_weight=weights)


# ---------------------------------------------------------------------------
# Optimizer objects
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec, message", [
    ("adagrad", "unknown optimizer"), ({"name": "adam", "beta3": 1}, "bad adam"),
    ({"name": "sgd", "lr": -1}, "lr must be"), ({"name": "sgd", "momentum": 1.0}, "momentum"),
    ({"name": "sgd", "nesterov": True}, "nesterov"), ({"name": "rmsprop", "eps": 0}, "eps"),
    ({"name": "adam", "beta2": float("nan")}, "beta2"), (3, "optimizer must be"),
])
def test_bad_optimizer_specs(spec, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_optimizer(spec)


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_config_round_trip(make):
    optimizer = make()
    again = make_optimizer(optimizer.get_config())
    assert again == optimizer and type(again) is type(optimizer)
    assert make_optimizer(optimizer.get_config(), lr=0.5).lr == 0.5


def test_state_of_a_different_network_is_refused(rng):
    arch, params, X, Y = make_problem(rng, (4, 6, 3), ("sigmoid",), "softmax", "float64", n=8)
    optimizer = Adam()
    fit(arch, params, X, Y, epochs=1, optimizer=optimizer)
    other, params2, X2, Y2 = make_problem(rng, (4, 5, 3), ("sigmoid",), "softmax", "float64", n=8)
    with pytest.raises(ValueError, match="state has shape"):
        fit(other, params2, X2, Y2, epochs=1, optimizer=optimizer)
    with pytest.raises(ValueError, match="lr to the Optimizer"):
        fit(arch, params, X, Y, epochs=1, optimizer=optimizer, lr=0.1)


# ---------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------


def test_schedule_values():
    assert [Constant()(e, 0.1, {}) for e in range(3)] == [0.1] * 3
    assert InverseScaling(0.5)(3, 0.1, {}) == pytest.approx(0.1 / 2)
    assert [StepDecay(2, 0.5)(e, 1.0, {}) for e in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    cosine = Cosine(t_max=4, min_lr=0.1)
    assert [cosine(e, 1.1, {}) for e in (0, 2, 4, 9)] == pytest.approx([1.1, 0.6, 0.1, 0.1])
    # Plateau: the loss stops improving after epoch 2; patience 2 cuts at epochs 4 and 6.
    plateau = ReduceOnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=0.0)
    history = {"loss": [3.0, 2.0, 2.0, 2.5, 2.0, 2.0, 2.0]}
    assert [plateau(e, 1.0, history) for e in range(8)] == [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25]
    assert make_schedule(None) == Constant() and make_schedule("cosine") == Cosine()
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("linear")
    for schedule in (StepDecay(3, 0.5), Cosine(7, 0.01), ReduceOnPlateau("val_loss", 0.2, 4)):
        assert make_schedule(schedule_config(schedule)) == schedule
    with pytest.raises(ValueError, match="bad step schedule settings"):
        make_schedule({"name": "step", "steps": 3})
    with pytest.raises(ValueError, match="custom schedule"):
        schedule_config(lambda epoch, lr, history: lr)
    with pytest.raises(ValueError, match="gamma"):
        StepDecay(2, 1.5)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fit_applies_the_schedule_per_epoch(rng, backend):
    arch, params, X, Y = make_problem(rng, (4, 6, 3), ("sigmoid",), "softmax", "float64", n=8)
    history = fit(arch, params, X, Y, epochs=5, lr=0.4, schedule=StepDecay(2, 0.5),
                  backend=backend)
    assert history.history["lr"] == [0.4, 0.4, 0.2, 0.2, 0.1]
    # ... and the epoch really runs at the scheduled rate: lr 0.4 scheduled to 0.1
    # gives the same step as lr 0.1.
    a, b = params.copy(), params.copy()
    fit(arch, a, X, Y, epochs=1, lr=0.1, backend=backend)
    fit(arch, b, X, Y, epochs=1, lr=0.4, schedule=lambda e, lr, h: lr / 4, backend=backend)
    np.testing.assert_array_equal(a, b)
