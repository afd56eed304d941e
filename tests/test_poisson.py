"""loss="poisson" on the compiled engine: the identity head with the poisson code
(``network.LOSS_CODES``), whose output delta is ``(exp(z) - y) * scale`` and whose loss
is scikit-learn's half Poisson deviance.

Kernel against its NumPy twin (float64 and float32, each with an error bound worked
out below), the loss against scikit-learn's ``poisson_loss``, the full-batch gradient
against central differences, whole training runs against the NumPy reference and
bitwise with 1 and 2 threads, and the estimator's own rules (targets, saving,
early stopping).  The estimator's runs against scikit-learn's, from the same weights,
are in tests/test_sklearn_parity.py.
"""

import dataclasses
import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network._base import poisson_loss

import fastnn
from fastnn import Architecture, FastMLPRegressor, init_params, kernels, reference, trainer
from fastnn.checks import check_data
from fastnn.kernels.dense import POISSON
from fastnn.kernels.objective import FullBatchObjective
from fastnn.network import LOSS_CODES, layer_views

from .conftest import (FD_TOL, TRAINING_RTOL, assert_close, central_differences, make_problem,
                       seed_of)

DTYPES = ("float64", "float32")
#: (n, n_outputs) of the output blocks: a batch of one row, one output, odd widths.
SHAPES = [(1, 1), (1, 4), (5, 17), (7, 1), (16, 3), (33, 2)]


def counts(rng, z):
    """Poisson counts around exp(z) (a third of them 0, so that 0 log 0 is exercised)."""
    y = rng.poisson(np.exp(z + 0.3 * rng.standard_normal(z.shape))).astype(np.float64)
    y[rng.random(z.shape) < 0.33] = 0.0
    return y


def head_block(shape, dtype, key=""):
    """(z, y, scale): head outputs, counts and row weights over their sum."""
    rng = np.random.default_rng(seed_of(f"poisson {shape} {dtype} {key}"))
    z = 1.5 * rng.standard_normal(shape)
    y = counts(rng, z)
    weights = rng.uniform(0.1, 2.0, shape[0])
    return (np.ascontiguousarray(z, dtype=dtype), np.ascontiguousarray(y, dtype=dtype),
            (weights / weights.sum()).astype(dtype))


def poisson_problem(rng, sizes, activations, dtype, n):
    """(arch, params, X, Y) of a network with the poisson head and count targets."""
    arch, params, X, _ = make_problem(rng, sizes, activations, "identity", dtype, n=n)
    arch = dataclasses.replace(arch, loss="poisson")
    Y = counts(rng, reference.forward(arch, params.astype(np.float64),
                                      X)[-1].clip(-3, 3))
    return arch, params, X, Y


# ---------------------------------------------------------------------------
# The head code
# ---------------------------------------------------------------------------


def test_the_poisson_code_is_an_identity_head_with_its_own_loss():
    arch = Architecture((3, 4, 2), ("tanh",), "identity", loss="poisson")
    assert arch.activation_codes.tolist() == [2, LOSS_CODES["poisson"]] == [2, POISSON]
    assert Architecture((3, 4, 2), ("tanh",), "identity").activation_codes.tolist() == [2, 0]
    assert arch != Architecture((3, 4, 2), ("tanh",), "identity")
    with pytest.raises(ValueError, match="poisson loss goes on an identity head"):
        Architecture((3, 4, 2), ("tanh",), "sigmoid", loss="poisson")
    with pytest.raises(ValueError, match="unknown loss"):
        Architecture((3, 4, 2), ("tanh",), "identity", loss="gamma")


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_forward_pass_of_the_poisson_code_is_the_identity(dtype):
    """The kernels apply no activation for a negative code: bitwise the identity's output
    (the code is passed to the dense kernels as is, network.LOSS_CODES)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((21, 9)).astype(dtype)
    W = rng.standard_normal((9, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    out, identity = np.empty((21, 5), dtype=dtype), np.empty((21, 5), dtype=dtype)
    kernels.dense_forward(a, W, b, POISSON, out)
    kernels.dense_forward(a, W, b, 0, identity)
    assert out.tobytes() == identity.tobytes()
    arch = Architecture((9, 5, 3), ("relu",), "identity", dtype, loss="poisson")
    params = init_params(arch, "glorot_uniform", 0)
    plain = dataclasses.replace(arch, loss=None)
    X = a[:, :9]
    assert (trainer.predict_output(arch, params, X).tobytes()
            == trainer.predict_output(plain, params, X).tobytes())


# ---------------------------------------------------------------------------
# output_delta: the compiled kernel against its twin
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_output_delta_equals_its_twin(shape, dtype):
    """Bound: the kernel's exp (``activations.fast_exp``, < 1 ulp) and NumPy's (< 0.5 ulp)
    differ by at most 3 u exp(z), u the dtype's unit roundoff; the subtraction and the
    product by scale add a rounding each.  So each delta is within
    8 u (exp(z) + |y|) scale of the twin's.  The loss is summed in float64 from those
    same exp values, so the two differ by at most 4 u sum(scale exp(z)) plus float64
    rounding of the terms (1e-14 of their magnitude).  A wrong formula (a missing
    constant, y z for y log(exp z)) is off by O(scale) per element."""
    z, y, scale = head_block(shape, dtype)
    u = np.finfo(dtype).eps / 2
    out, twin = np.full(shape, np.nan, dtype=dtype), np.empty(shape, dtype=dtype)
    loss = kernels.output_delta(z, y, POISSON, scale, out)
    loss_twin = reference.output_delta(z, y, POISSON, scale, twin)
    e = np.exp(z.astype(np.float64))
    s = scale.astype(np.float64)[:, None]
    y64, z64 = y.astype(np.float64), z.astype(np.float64)
    assert np.all(np.abs(out - twin.astype(np.float64)) <= 8 * u * (e + np.abs(y64)) * s)
    magnitude = np.sum(s * (e + np.abs(y64 * z64) + y64 + np.abs(y64 * np.log(y64 + (y64 == 0)))))
    assert abs(loss - loss_twin) <= 4 * u * np.sum(s * e) + 1e-14 * magnitude
    # and the twin is the rule written out: delta (exp(z) - y) scale, half deviance
    np.testing.assert_allclose(twin, (np.exp(z) - y) * scale[:, None], rtol=4 * u)
    prediction = np.exp(z).astype(np.float64)  # in the dtype, as the network predicts
    y_log_y = np.where(y64 > 0, y64 * np.log(np.where(y64 > 0, y64, 1)), 0)
    deviance = prediction - y64 * z64 + y_log_y - y64
    assert loss_twin == pytest.approx(np.sum(s * deviance), rel=1e-12, abs=1e-14 * magnitude)


def test_output_delta_loss_is_sklearns_poisson_loss():
    """scikit-learn's poisson_loss(y, exp(z), weights), its constant y log y - y included."""
    z, y, scale = head_block((40, 3), "float64", "sklearn")
    out = np.empty_like(z)
    loss = kernels.output_delta(z, y, POISSON, scale, out)
    assert loss == pytest.approx(poisson_loss(y, np.exp(z), scale), rel=1e-13)
    assert y.min() == 0  # 0 log 0 counts as 0


def test_output_delta_nan_and_negative_targets():
    """A NaN output gives a NaN loss (how training detects divergence); so does a
    negative target, as in scikit-learn's xlogy (the estimator refuses them first)."""
    scale = np.full(2, 0.5)
    z = np.array([[np.nan, 0.5], [0.3, 0.7]])
    y = np.array([[1.0, 0.0], [0.0, 2.0]])
    for twin in (kernels.output_delta, reference.output_delta):
        assert np.isnan(twin(z, y, POISSON, scale, np.empty((2, 2))))
        assert np.isnan(twin(np.zeros((2, 2)), -y, POISSON, scale, np.empty((2, 2))))


# ---------------------------------------------------------------------------
# The full-batch objective (L-BFGS)
# ---------------------------------------------------------------------------


def objective_and_data(dtype, n=53, l2=0.3, key=""):
    rng = np.random.default_rng(seed_of(f"poisson objective {dtype} {n} {key}"))
    arch, params, X, Y = poisson_problem(rng, (5, 11, 6, 2), ("tanh", "relu"), dtype, n)
    X, Y = check_data(arch, X, Y)
    weights = rng.uniform(0.1, 2.0, n).astype(dtype)
    return FullBatchObjective(arch, X, Y, weights, l2), arch, params, X, Y, weights, l2


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_objective_equals_its_twin_and_sklearns_loss(dtype):
    objective, arch, params, X, Y, weights, l2 = objective_and_data(dtype)
    loss, grad = objective(params.astype(np.float64))
    loss_twin, grad_twin = reference.loss_and_grad(arch, params, X, Y, l2, weights)
    assert_close(loss, loss_twin, dtype)
    assert_close(grad, grad_twin, dtype)
    # poisson_loss_and_grad is the same function (its arch's loss set for it)
    plain = dataclasses.replace(arch, loss=None)
    same = reference.poisson_loss_and_grad(plain, params, X, Y, l2, weights)
    assert same[0] == loss_twin and same[1].tobytes() == grad_twin.tobytes()
    if dtype == "float64":
        z = reference.forward(arch, params, X)[-1]
        squares = sum(np.sum(W * W) for W, _ in layer_views(arch, params))
        expected = poisson_loss(Y, np.exp(z), weights) + 0.5 * l2 * squares / weights.sum()
        assert loss == pytest.approx(expected, rel=1e-12)


def test_gradient_matches_central_differences():
    objective, _, params, *_ = objective_and_data("float64", n=17, key="fd")
    x = params.astype(np.float64)
    _, grad = objective(x)
    numeric = central_differences(objective, x)
    assert_close(grad, numeric, tol=FD_TOL)


def test_objective_is_bitwise_the_same_with_one_and_two_threads():
    objective, _, params, *_ = objective_and_data("float32", n=301, key="threads")
    results = []
    for threads in (1, 2):
        with trainer.thread_limit(threads, "numba"):
            loss, grad = objective(params.astype(np.float64))
        results.append((loss, grad.copy()))
    assert results[0][0] == results[1][0]
    assert results[0][1].tobytes() == results[1][1].tobytes()


# ---------------------------------------------------------------------------
# Training runs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer, batch_size", [("sgd", 16), ("adam", 16), ("rmsprop", 1),
                                                   ("adadelta", 53)])
def test_training_matches_reference_and_threads(optimizer, batch_size, dtype):
    """3 epochs compiled against the NumPy reference (the last batch partial, or batches of
    one row), and bitwise with 1 and 2 threads."""
    rng = np.random.default_rng(seed_of(f"poisson train {optimizer} {dtype}"))
    arch, params, X, Y = poisson_problem(rng, (6, 19, 3), ("tanh",), dtype, n=53)
    weights = rng.uniform(0.5, 1.5, 53)
    runs, losses = {}, {}
    for key, backend, threads in (("numpy", "numpy", None), ("t1", "numba", 1), ("t2", "numba", 2)):
        p = params.copy()
        history = trainer.fit(arch, p, X, Y, epochs=3, batch_size=batch_size, lr=0.01,
                              optimizer=optimizer, l2=1e-3, sample_weight=weights,
                              random_state=1, backend=backend, threads=threads)
        runs[key], losses[key] = p, history.loss
    assert runs["t1"].tobytes() == runs["t2"].tobytes() and losses["t1"] == losses["t2"]
    scale = np.abs(runs["numpy"]).max()
    assert np.abs(runs["t1"] - runs["numpy"]).max() <= TRAINING_RTOL[dtype] * scale
    np.testing.assert_allclose(losses["t1"], losses["numpy"], rtol=TRAINING_RTOL[dtype])
    if optimizer != "adadelta":  # adadelta's first steps are tiny
        assert losses["t1"][-1] < losses["t1"][0]


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def count_data():
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 1, (150, 3))
    y = rng.poisson(np.exp(X @ [1.0, -0.5, 0.3] + 0.5)).astype(float)
    return X, y


def fit_quietly(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


@pytest.mark.parametrize("solver", ["sgd", "adam", "rmsprop", "adadelta", "lbfgs"])
def test_every_solver_trains_it_and_refuses_negative_targets(count_data, solver):
    X, y = count_data
    model = FastMLPRegressor((8,), loss="poisson", solver=solver, max_iter=15, random_state=0,
                             learning_rate_init=0.01, batch_size=50, threads=1)
    fit_quietly(model, X, y)
    assert model.out_activation_ == "exp" and model._arch.loss == "poisson"
    z = trainer.predict_output(model._arch, model._params, X)[:, 0]
    np.testing.assert_allclose(model.predict(X), np.exp(z), rtol=1e-15)
    assert model.score(X, y) == pytest.approx(r2_score(y, model.predict(X)), rel=1e-12)
    if solver == "lbfgs":  # loss_ is the objective at the final weights: scikit-learn's loss
        squares = sum(np.sum(W * W) for W in model.coefs_)
        assert model.loss_ == pytest.approx(
            poisson_loss(y[:, None], model.predict(X)[:, None]) + 0.5 * 1e-4 * squares / len(y),
            rel=1e-12)
    elif solver != "adadelta":
        assert model.loss_curve_[-1] < model.loss_curve_[0]
    # scikit-learn's MLPRegressor trains on negative targets with a NaN loss; fastnn
    # refuses them, as scikit-learn's other Poisson models do.
    with pytest.raises(ValueError, match="valid range of the loss 'poisson'"):
        FastMLPRegressor((8,), loss="poisson", solver=solver).fit(X, y - 1)


def test_full_batch_first_loss_is_sklearns_loss_of_the_initial_weights(count_data):
    """The first epoch's loss is measured before its update: with one batch, it is
    scikit-learn's poisson_loss of the initial network plus the L2 term."""
    X, y = count_data
    model = FastMLPRegressor((8,), loss="poisson", solver="sgd", max_iter=1, random_state=3,
                             batch_size=len(y), alpha=0.01, threads=1)
    arch = Architecture((3, 8, 1), ("relu",), "identity", "float64", loss="poisson")
    initial = init_params(arch, model.init, np.random.RandomState(3))
    fit_quietly(model, X, y)
    z = reference.forward(arch, initial, X)[-1]
    squares = sum(np.sum(W * W) for W, _ in layer_views(arch, initial))
    expected = poisson_loss(y[:, None], np.exp(z)) + 0.5 * 0.01 * squares / len(y)
    assert model.loss_curve_[0] == pytest.approx(expected, rel=1e-12)


def test_early_stopping_scores_the_prediction(count_data):
    """The validation R^2 is that of exp(z), as scikit-learn's score: the kept (best)
    weights score best_validation_score_ on the held-out rows.  Those are drawn as the
    module docstring of fastnn.estimators says: the initial weights, then the split."""
    X, y = count_data
    model = FastMLPRegressor((8,), loss="poisson", solver="adam", max_iter=30, random_state=0,
                             learning_rate_init=0.05, early_stopping=True, n_iter_no_change=3,
                             threads=1)
    fit_quietly(model, X, y)
    rng = np.random.RandomState(0)
    init_params(Architecture((3, 8, 1), ("relu",), "identity", loss="poisson"), model.init, rng)
    _, X_val, _, y_val = train_test_split(X, y, test_size=0.1, random_state=rng)
    assert len(model.validation_scores_) == model.n_iter_
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.best_validation_score_ == pytest.approx(r2_score(y_val, model.predict(X_val)),
                                                         rel=1e-12)
    assert model._history.history["val_loss"][-1] > 0  # the deviance, recorded as the trainer's


def test_saved_model_continues_training_as_the_original(count_data, tmp_path):
    """A model file keeps the head, not its loss: loading gives the poisson network back,
    so a warm-start fit of the loaded model equals one of the original, bitwise."""
    X, y = count_data
    settings = dict(loss="poisson", solver="adam", max_iter=3, random_state=0, warm_start=True,
                    learning_rate_init=0.01, threads=1)
    model = fit_quietly(FastMLPRegressor((8,), **settings), X, y)
    model.save(tmp_path / "poisson.npz")
    loaded = fastnn.load(tmp_path / "poisson.npz")
    assert loaded._arch == model._arch and loaded.out_activation_ == "exp"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    fit_quietly(model, X, y)
    fit_quietly(loaded, X, y)
    assert loaded._params.tobytes() == model._params.tobytes()
    model.partial_fit(X, y)
    assert model.n_iter_ == 1 and np.isfinite(model.loss_)
    # A pickle from before Architecture.loss (its network a plain identity head) too.
    model._arch = dataclasses.replace(model._arch, loss=None)
    assert pickle.loads(pickle.dumps(model))._arch == loaded._arch
