"""Every update rule and schedule against something written independently of fastnn.

The compiled update kernel and its NumPy twin (``reference.optimizer_step``) are
checked against each other in tests/test_optimizers.py; a formula changed in both
would pass there.  Here each rule is checked against

* steps worked by hand on the one-weight problem of tests/test_optimizers.py
  (SGD, momentum and Adam have theirs there; RMSprop, Nesterov and Adadelta here), and
* a few epochs of the textbook loop of tests/naive.py: per-sample gradients and the
  papers' forms of the rules, one scalar at a time;

and each learning-rate schedule against a rate sequence computed by hand.
"""

import math

import numpy as np
import pytest

from fastnn import SGD, Adadelta, Adam, RMSprop, fit, layer_views
from fastnn.schedules import Constant, Cosine, InverseScaling, ReduceOnPlateau, StepDecay

from . import naive
from .conftest import TRAINING_RTOL, make_problem
from .test_optimizers import one_weight_problem

BACKENDS = ("numpy", "numba")

#: The one-weight problem's gradient at its start (w, b) = (0.25, 0): (x delta, delta).
G = np.array([-1.0, -0.5])

#: Hand-worked values: the few roundings of each side differ, 1e-15 relative covers them.
HAND_RTOL = 1e-14


# ---------------------------------------------------------------------------
# Hand-worked steps
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_nesterov_by_hand(backend):
    """lr 0.1, momentum 0.9.  Step 1: v = -0.1 g = (0.1, 0.05); p += 0.9 v - 0.1 g =
    (0.19, 0.095), so (w, b) = (0.44, 0.095) (plain momentum: (0.35, 0.05)).
    Step 2: output 2 * 0.44 + 0.095 = 0.975, delta = -0.025, g = (-0.05, -0.025);
    v = 0.9 v - 0.1 g = (0.095, 0.0475); p += 0.9 v - 0.1 g = (0.0905, 0.04525)."""
    arch, params, X, Y = one_weight_problem()
    optimizer = SGD(lr=0.1, momentum=0.9, nesterov=True)
    fit(arch, params, X, Y, epochs=1, optimizer=optimizer, backend=backend)
    np.testing.assert_allclose(optimizer.slots[0], [0.1, 0.05], rtol=HAND_RTOL)
    np.testing.assert_allclose(params, [0.44, 0.095], rtol=HAND_RTOL)
    fit(arch, params, X, Y, epochs=1, optimizer=optimizer, backend=backend)
    np.testing.assert_allclose(optimizer.slots[0], [0.095, 0.0475], rtol=HAND_RTOL)
    np.testing.assert_allclose(params, [0.5305, 0.14025], rtol=HAND_RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rmsprop_first_step_by_hand(backend):
    """The default constants (Keras's: rho 0.9, eps 1e-7), lr 0.01.  s = 0.1 g^2 =
    (0.1, 0.025), so sqrt(s) = sqrt(0.1) |g| and the step is lr |g| / (sqrt(0.1) |g| + eps)
    against g's sign: about lr / sqrt(0.1) = 0.0316 for both parameters (without the
    (1 - rho) it would be lr = 0.01)."""
    arch, params, X, Y = one_weight_problem()
    optimizer = RMSprop(lr=0.01)
    fit(arch, params, X, Y, epochs=1, optimizer=optimizer, backend=backend)
    np.testing.assert_allclose(optimizer.slots[0], [0.1, 0.025], rtol=HAND_RTOL)
    step = [0.01 * 1.0 / (math.sqrt(0.1) + 1e-7), 0.01 * 0.5 / (math.sqrt(0.025) + 1e-7)]
    np.testing.assert_allclose(params, [0.25 + step[0], 0.0 + step[1]], rtol=HAND_RTOL)
    assert step[0] == pytest.approx(0.0316227, rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adadelta_first_step_by_hand(backend):
    """The defaults (Keras's rho 0.95 and eps 1e-7; lr 1 as Keras 2.0-2.2).
    s = 0.05 g^2 = (0.05, 0.0125); with u = 0 the step is d = sqrt(eps) / sqrt(s + eps) g,
    about sqrt(eps / 0.05) sign(g) = 1.414e-3 sign(g); then u = 0.05 d^2 and p -= d."""
    arch, params, X, Y = one_weight_problem()
    optimizer = Adadelta()
    fit(arch, params, X, Y, epochs=1, optimizer=optimizer, backend=backend)
    d = np.array([math.sqrt(1e-7) / math.sqrt(0.05 + 1e-7) * -1.0,
                  math.sqrt(1e-7) / math.sqrt(0.0125 + 1e-7) * -0.5])
    np.testing.assert_allclose(d, -1.4142e-3, rtol=1e-4)
    np.testing.assert_allclose(optimizer.slots, [[0.05, 0.0125], 0.05 * d * d], rtol=HAND_RTOL)
    np.testing.assert_allclose(params, [0.25, 0.0] - d, rtol=HAND_RTOL)


# ---------------------------------------------------------------------------
# Against the textbook loop
# ---------------------------------------------------------------------------

#: (optimizer, naive rule, its constants, the slots in the naive state's names).
RULES = [
    pytest.param(lambda: SGD(lr=0.3), "sgd", {}, (), id="sgd"),
    pytest.param(lambda: SGD(lr=0.1, momentum=0.9), "sgd", dict(momentum=0.9),
                 ("velocity",), id="momentum"),
    pytest.param(lambda: SGD(lr=0.1, momentum=0.9, nesterov=True), "sgd",
                 dict(momentum=0.9, nesterov=True), ("velocity",), id="nesterov"),
    pytest.param(lambda: RMSprop(lr=0.01, rho=0.8, eps=1e-6), "rmsprop", dict(rho=0.8, eps=1e-6),
                 ("mean_square",), id="rmsprop"),
    pytest.param(lambda: Adam(lr=0.01, beta1=0.8, beta2=0.9, eps=1e-6), "adam",
                 dict(beta1=0.8, beta2=0.9, eps=1e-6), ("m", "v"), id="adam"),
    pytest.param(lambda: Adadelta(lr=1.0, rho=0.9, eps=1e-4), "adadelta", dict(rho=0.9, eps=1e-4),
                 ("E[g^2]", "E[dx^2]"), id="adadelta"),
]


def naive_fit(arch, params, X, Y, epochs, batch_size, rule, lr, constants):
    """Mini-batches in row order (no shuffling), per-sample gradients, the rule per scalar.

    Returns (params, state): the final parameters and the rule's state, flat.
    """
    p, state, t = [float(v) for v in params], {}, 0
    for _ in range(epochs):
        for start in range(0, len(X), batch_size):
            t += 1
            layers = [(W.copy(), b.copy()) for W, b in layer_views(arch, np.array(p))]
            grads, _ = naive.gradients(layers, arch.activations, arch.head,
                                       X[start:start + batch_size], Y[start:start + batch_size])
            flat = np.zeros(len(p))
            for (W, b), (gW, gb) in zip(layer_views(arch, flat), grads):
                W[:], b[:] = gW, gb
            p = naive.UPDATE_RULES[rule](p, list(flat), state, t, lr, **constants)
    return np.array(p), state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make, rule, constants, slot_names", RULES)
def test_rules_match_the_textbook_loop(rng, backend, make, rule, constants, slot_names):
    """3 epochs of 3 batches (4, 4 and 2 rows, so Adam's step count passes 1 and the
    last batch is partial), float64: the two loops round differently in each sum, so
    they agree to TRAINING_RTOL (see conftest), far below what any changed term moves."""
    arch, params0, X, Y = make_problem(rng, (3, 5, 4), ("tanh",), "softmax", "float64", n=10)
    params, optimizer = params0.copy(), make()
    fit(arch, params, X, Y, epochs=3, batch_size=4, shuffle=False, optimizer=optimizer,
        backend=backend)
    expected, state = naive_fit(arch, params0, X, Y, 3, 4, rule, optimizer.lr, constants)
    scale = np.abs(expected).max()
    assert np.abs(expected - params0).max() > 1e4 * TRAINING_RTOL["float64"] * scale
    np.testing.assert_allclose(params, expected, rtol=0, atol=TRAINING_RTOL["float64"] * scale)
    assert optimizer.slots.shape[0] == len(slot_names) and optimizer.iterations == 9
    for slot, name in zip(optimizer.slots, slot_names):
        desired = np.array(state[name])
        np.testing.assert_allclose(slot, desired, rtol=0,
                                   atol=TRAINING_RTOL["float64"] * np.abs(desired).max(),
                                   err_msg=name)


# ---------------------------------------------------------------------------
# Schedules: rate sequences computed by hand, as fit applies them
# ---------------------------------------------------------------------------


SCHEDULES = [
    pytest.param(Constant(), 0.3, [0.3] * 4, id="constant"),
    # lr / sqrt(epoch + 1): 1/sqrt(2), 1/sqrt(3), 1/2, 1/sqrt(5)
    pytest.param(InverseScaling(0.5), 1.0,
                 [1.0, 0.7071067811865476, 0.5773502691896258, 0.5, 0.4472135954999579],
                 id="invscaling"),
    # power 2: 1, 1/4, 1/9, 1/16
    pytest.param(InverseScaling(2.0), 0.9, [0.9, 0.225, 0.1, 0.05625], id="invscaling-2"),
    pytest.param(StepDecay(step_size=3, gamma=0.1), 2.0, [2, 2, 2, 0.2, 0.2, 0.2, 0.02],
                 id="step"),
    # 0.1 + 1.0 * (1 + cos(pi e / 4)) / 2: cos(pi / 4) = 0.70710678..., then min_lr on
    pytest.param(Cosine(t_max=4, min_lr=0.1), 1.1,
                 [1.1, 0.9535533905932737, 0.6, 0.2464466094067262, 0.1, 0.1], id="cosine"),
]


@pytest.mark.parametrize("schedule, lr, rates", SCHEDULES)
def test_schedule_rate_sequences(rng, schedule, lr, rates):
    arch, params, X, Y = make_problem(rng, (3, 4, 2), ("sigmoid",), "softmax", "float64", n=6)
    history = fit(arch, params, X, Y, epochs=len(rates), lr=lr, schedule=schedule)
    np.testing.assert_allclose(history.history["lr"], rates, rtol=1e-15)


def test_reduce_on_plateau_rate_sequence_by_hand():
    """An upward monitor with min_delta 0.01, patience 1, factor 0.5 and a floor of 0.3:
    epoch 2 sees 0.505 after 0.5 (+0.005 <= min_delta: no improvement, cut to 0.5);
    0.6 improves; the second 0.6 cuts to max(0.25, 0.3) = 0.3; 0.7 improves; 0.65
    would cut, but the floor holds."""
    schedule = ReduceOnPlateau(monitor="val_accuracy", factor=0.5, patience=1, min_delta=0.01,
                               min_lr=0.3)
    history = {"val_accuracy": [0.5, 0.505, 0.6, 0.6, 0.7, 0.65]}
    assert [schedule(e, 1.0, history) for e in range(7)] == [1, 1, 0.5, 0.5, 0.3, 0.3, 0.3]
    # A loss improves downwards; patience 2 waits two epochs after the best, 2.0.
    schedule = ReduceOnPlateau(monitor="loss", factor=0.1, patience=2, min_delta=0.0)
    history = {"loss": [3.0, 2.0, 2.5, 2.0, 1.0, 1.5, 1.5, 1.5]}
    rates = [schedule(e, 1.0, history) for e in range(9)]
    np.testing.assert_allclose(rates, [1, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01], rtol=1e-15)
