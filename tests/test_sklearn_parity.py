"""FastMLPClassifier/Regressor against scikit-learn's MLPClassifier/MLPRegressor on the same input.

scikit-learn's estimator is the oracle: ``sklearn_starting_from`` makes it start
from the weights fastnn starts from (its ``_init_coef`` hands them out), so with
``shuffle=False`` both visit the same batches with the same math, and their loss
curves, stopping epochs, rates and printed lines can be compared directly (the
sums run in a different order: float64 agrees to about 1e-12, far below any
difference a wrong rule would make).  Early stopping draws its validation split
from different generators in the two libraries, so there the stopping rule is
checked by replaying fastnn's validation scores through scikit-learn's own
``_update_no_improvement_count``.
"""

import re
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

import fastnn
from fastnn import Architecture, init_params, layer_views
from fastnn.estimators import FastMLPClassifier, FastMLPRegressor

#: The two libraries' float64 loss curves agree to this (different summation order only).
CURVE_RTOL = 1e-9

SKLEARN_OF = {FastMLPClassifier: MLPClassifier, FastMLPRegressor: MLPRegressor}


@pytest.fixture(scope="module")
def digits_two_class():
    X, y = load_digits(n_class=2, return_X_y=True)
    return X[:100] / 16.0, y[:100]


@pytest.fixture(scope="module")
def digits_all():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=150, n_features=8, noise=1.0, random_state=0)
    return X, y / np.abs(y).max()


def fastnn_model(estimator_class, **params):
    """A fastnn estimator with the settings both libraries share here (one thread)."""
    settings = dict(hidden_layer_sizes=(12,), random_state=0, shuffle=False, threads=1)
    return estimator_class(**{**settings, **params})


def initial_weights(model, X, n_outputs):
    """[(W, b), ...]: the weights model's first fit starts from (its first draws)."""
    sizes = (X.shape[1], *model.hidden_layer_sizes, n_outputs)
    hidden = "sigmoid" if model.activation == "logistic" else "relu"  # the init's factor
    arch = Architecture(sizes, (hidden,) * (len(sizes) - 2), "identity", "float64")
    params = init_params(arch, model.init, np.random.RandomState(model.random_state))
    return [(W.copy(), b.copy()) for W, b in layer_views(arch, params)]


def sklearn_starting_from(model, X, n_outputs):
    """scikit-learn's estimator with model's parameters, starting from model's first weights."""
    shared = {name: value for name, value in model.get_params().items()
              if name in SKLEARN_OF[type(model)]().get_params()}
    reference = SKLEARN_OF[type(model)](**shared)
    weights = initial_weights(model, X, n_outputs)
    reference._init_coef = lambda fan_in, fan_out, dtype: tuple(
        a.astype(dtype) for a in weights.pop(0))
    return reference


def fit_both(model, X, y, n_outputs):
    """(fastnn's fitted model, scikit-learn's), ConvergenceWarnings recorded as their text."""
    reference = sklearn_starting_from(model, X, n_outputs)
    with warnings.catch_warnings(record=True) as fast_warnings:
        warnings.simplefilter("always")
        model.fit(X, y)
    with warnings.catch_warnings(record=True) as sklearn_warnings:
        warnings.simplefilter("always")
        reference.fit(X, y)
    model.warned = [str(w.message) for w in fast_warnings if w.category is ConvergenceWarning]
    reference.warned = [str(w.message) for w in sklearn_warnings
                        if w.category is ConvergenceWarning]
    return model, reference


def assert_same_run(fast, reference, rtol=CURVE_RTOL):
    assert fast.n_iter_ == reference.n_iter_
    np.testing.assert_allclose(fast.loss_curve_, reference.loss_curve_, rtol=rtol)
    assert fast.warned == reference.warned
    assert fast.t_ == reference.t_
    for a, b in zip(fast.coefs_ + fast.intercepts_, reference.coefs_ + reference.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------
# Item 3: tol and n_iter_no_change compare with the best loss seen
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [
    dict(solver="sgd", tol=0.01, n_iter_no_change=5, learning_rate_init=0.01),
    dict(solver="sgd", tol=1e-3, n_iter_no_change=2, batch_size=20, learning_rate_init=0.1),
    dict(solver="adam", tol=1e-3, n_iter_no_change=3, learning_rate_init=0.01, max_iter=300),
    dict(solver="sgd", tol=0.0, n_iter_no_change=np.inf, max_iter=8),
])
def test_stopping_rule_is_sklearns(digits_two_class, settings):
    X, y = digits_two_class
    fast, reference = fit_both(fastnn_model(FastMLPClassifier, **settings), X, y, 1)
    assert_same_run(fast, reference)
    assert fast.best_loss_ == pytest.approx(reference.best_loss_, rel=CURVE_RTOL)


def test_regressor_stops_as_sklearns(regression):
    X, y = regression
    model = fastnn_model(FastMLPRegressor, solver="sgd", tol=1e-4, learning_rate_init=0.01,
                         batch_size=50, max_iter=300)
    fast, reference = fit_both(model, X, y, 1)
    assert_same_run(fast, reference)


def test_warm_start_keeps_the_count_and_best_loss(digits_two_class):
    """scikit-learn keeps best_loss_ and its no-improvement count across warm-start fits."""
    X, y = digits_two_class
    model = fastnn_model(FastMLPClassifier, solver="sgd", tol=0.01, n_iter_no_change=3,
                         learning_rate_init=0.01, warm_start=True)
    fast, reference = fit_both(model, X, y, 1)
    fast.fit(X, y)
    reference.fit(X, y)
    assert fast.n_iter_ == reference.n_iter_
    np.testing.assert_allclose(fast.loss_curve_, reference.loss_curve_, rtol=CURVE_RTOL)


# ---------------------------------------------------------------------------
# Item 4: invscaling per row seen; scikit-learn's schedules ignored by adam
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, power_t=0.5),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2, power_t=0.25,
         batch_size=32),
    dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, tol=0.05,
         n_iter_no_change=1),
    dict(solver="adam", learning_rate="invscaling", learning_rate_init=0.01),
    dict(solver="adam", learning_rate="adaptive", learning_rate_init=0.01, tol=0.01,
         n_iter_no_change=2),
])
def test_learning_rate_schedules_are_sklearns(digits_all, settings):
    X, y = digits_all
    model = fastnn_model(FastMLPClassifier, max_iter=25, **settings)
    fast, reference = fit_both(model, X, y, 10)
    assert_same_run(fast, reference)
    # The rate the next epoch would use: scikit-learn's optimizer's.
    if settings["solver"] == "sgd":
        assert fast._optimizer.lr == pytest.approx(reference._optimizer.learning_rate)


# ---------------------------------------------------------------------------
# Item 5: loss= on the regressor
# ---------------------------------------------------------------------------


def test_regressor_takes_sklearns_loss_parameter(regression):
    X, y = regression
    assert FastMLPRegressor().loss == MLPRegressor().loss == "squared_error"
    fast, reference = fit_both(fastnn_model(FastMLPRegressor, loss="squared_error", max_iter=5),
                               X, y, 1)
    assert_same_run(fast, reference)
    # Any of scikit-learn's parameter sets constructs fastnn's estimator.
    FastMLPRegressor(**MLPRegressor().get_params())
    FastMLPClassifier(**MLPClassifier().get_params())
    with pytest.raises(ValueError, match="'loss' parameter"):
        FastMLPRegressor(loss="absolute_error").fit(X, y)
    # scikit-learn's MLPRegressor trains poisson on negative targets, with a NaN loss;
    # fastnn refuses them (as scikit-learn's PoissonRegressor does).
    with pytest.warns(ConvergenceWarning):
        assert np.isnan(MLPRegressor(loss="poisson", max_iter=2).fit(X, y).loss_)
    with pytest.raises(ValueError, match="valid range of the loss 'poisson'"):
        FastMLPRegressor(loss="poisson").fit(X, y)


@pytest.mark.parametrize("settings", [dict(activation="tanh", alpha=1e-3, max_iter=25),
                                      dict(activation="relu", alpha=0.0, max_iter=40)])
def test_poisson_loss_is_sklearns(settings):
    """loss="poisson" with lbfgs: scikit-learn's exp output and half Poisson deviance."""
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 1, (120, 3))
    y = rng.poisson(np.exp(X @ [1.0, -0.5, 0.3] + 0.5)).astype(float)
    model = fastnn_model(FastMLPRegressor, loss="poisson", solver="lbfgs", **settings)
    fast, reference = fit_both(model, X, y, 1)
    assert fast.out_activation_ == reference.out_activation_ == "exp"
    assert fast.n_iter_ == reference.n_iter_ and fast.warned == reference.warned
    assert fast.loss_ == pytest.approx(reference.loss_, rel=1e-6)
    np.testing.assert_allclose(fast.predict(X), reference.predict(X), rtol=1e-5)


@pytest.mark.parametrize("settings", [
    dict(solver="sgd", learning_rate_init=0.01, batch_size=50, max_iter=15, alpha=1e-3),
    dict(solver="sgd", learning_rate_init=0.005, batch_size=32, max_iter=60, tol=1e-3,
         n_iter_no_change=2, nesterovs_momentum=False),
    dict(solver="adam", learning_rate_init=0.01, batch_size=32, max_iter=15, activation="tanh"),
])
def test_poisson_with_stochastic_solvers_is_sklearns(settings):
    """loss="poisson" with sgd and adam on the compiled engine: from the same weights,
    scikit-learn's run - loss curve (its poisson_loss, constant included), stopping
    epoch, weights and predictions (exp of the identity head)."""
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 1, (120, 3))
    y = rng.poisson(np.exp(X @ [1.0, -0.5, 0.3] + 0.5)).astype(float)
    model = fastnn_model(FastMLPRegressor, loss="poisson", **settings)
    fast, reference = fit_both(model, X, y, 1)
    assert fast.out_activation_ == reference.out_activation_ == "exp"
    assert_same_run(fast, reference)
    np.testing.assert_allclose(fast.predict(X), reference.predict(X), rtol=1e-12)
    assert fast.score(X, y) == pytest.approx(reference.score(X, y), rel=1e-9)


# ---------------------------------------------------------------------------
# Item 6: one class; early stopping stratifies binary y only
# ---------------------------------------------------------------------------


def test_single_class_is_fitted_and_predicted(digits_two_class):
    X, _ = digits_two_class
    y = np.full(len(X), 7)
    fast, reference = fit_both(fastnn_model(FastMLPClassifier, solver="sgd", max_iter=5), X, y, 1)
    assert_same_run(fast, reference)
    np.testing.assert_array_equal(fast.classes_, reference.classes_)
    np.testing.assert_array_equal(fast.predict(X), reference.predict(X))
    np.testing.assert_allclose(fast.predict_proba(X), reference.predict_proba(X), rtol=1e-7)


def test_early_stopping_stratifies_binary_labels_only(digits_all):
    X, y = digits_all
    y = y.copy()
    y[0] = 10  # a class with a single member
    for estimator in (fastnn_model(FastMLPClassifier, early_stopping=True, max_iter=3),
                      MLPClassifier((12,), early_stopping=True, max_iter=3, random_state=0)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(X, y)  # multiclass: not stratified, so no error
    binary = np.where(np.arange(50) == 0, 1, 0)  # two classes, one of a single member
    for estimator in (fastnn_model(FastMLPClassifier, early_stopping=True, max_iter=3),
                      MLPClassifier((12,), early_stopping=True, max_iter=3, random_state=0)):
        with pytest.raises(ValueError, match="least populated class"):
            estimator.fit(X[:50], binary)


# ---------------------------------------------------------------------------
# Item 7: divergence is a ValueError with scikit-learn's message
# ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_raises_sklearns_value_error(regression):
    X, y = regression
    settings = dict(solver="sgd", learning_rate_init=1e4, momentum=0.0, max_iter=50)
    message = "^Solver produced non-finite parameter weights. The input data may contain large"
    with pytest.raises(ValueError, match=message):
        MLPRegressor(hidden_layer_sizes=(12,), random_state=0, **settings).fit(X * 100, y * 1e3)
    fast = fastnn_model(FastMLPRegressor, **settings)
    with pytest.raises(ValueError, match=message) as info:
        fast.fit(X * 100, y * 1e3)
    assert isinstance(info.value, fastnn.DivergenceError)
    assert isinstance(info.value, FloatingPointError)
    assert all(np.isfinite(c).all() for c in fast.coefs_ + fast.intercepts_)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_diverging_early_stopping_run_ends_as_sklearns(regression):
    """No error (before, fastnn crashed in r2_score with "Input contains NaN"): the
    diverged epoch scores NaN and the best weights, finite, come back."""
    X, y = regression
    settings = dict(solver="sgd", learning_rate_init=1e4, momentum=0.0, max_iter=30,
                    early_stopping=True, activation="identity")
    fast = fastnn_model(FastMLPRegressor, **settings).fit(X * 100, y * 1e3)
    reference = MLPRegressor(hidden_layer_sizes=(12,), random_state=0,
                             **settings).fit(X * 100, y * 1e3)
    for model in (fast, reference):
        assert np.isnan(model.validation_scores_[-1])
        assert isinstance(model.validation_scores_[-1], float)
        assert model.best_validation_score_ == np.nanmax(model.validation_scores_)
        assert all(np.isfinite(c).all() for c in model.coefs_ + model.intercepts_)


# ---------------------------------------------------------------------------
# Item 8: verbose prints scikit-learn's lines on stdout; progress=True draws the bar
# ---------------------------------------------------------------------------


def _numbers(text):
    return [float(v) for v in re.findall(r"[-+]?\d+\.\d+", text)]


@pytest.mark.parametrize("settings", [
    dict(solver="sgd", tol=0.01, n_iter_no_change=3, learning_rate_init=0.01),
    dict(solver="sgd", learning_rate="adaptive", tol=0.05, n_iter_no_change=1, max_iter=12,
         learning_rate_init=0.05),
])
def test_verbose_prints_sklearns_lines(digits_two_class, capsys, settings):
    X, y = digits_two_class
    model = fastnn_model(FastMLPClassifier, verbose=True, **settings)
    reference = sklearn_starting_from(model, X, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        fast_out, fast_err = capsys.readouterr()
        reference.fit(X, y)
        sklearn_out, _ = capsys.readouterr()
    assert fast_err == ""  # no bar without progress=True
    assert re.sub(r"\d", "0", fast_out) == re.sub(r"\d", "0", sklearn_out)
    np.testing.assert_allclose(_numbers(fast_out), _numbers(sklearn_out), rtol=1e-6, atol=1e-8)
    assert fast_out.startswith("Iteration 1, loss = ")


def test_verbose_early_stopping_prints_validation_scores(digits_all, capsys):
    X, y = digits_all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastnn_model(FastMLPClassifier, verbose=True, early_stopping=True, max_iter=2).fit(X, y)
        MLPClassifier((12,), verbose=True, early_stopping=True, max_iter=2).fit(X, y)
    fast_out, sklearn_out = capsys.readouterr().out.split("Iteration 1", 2)[1:]
    assert re.sub(r"\d", "0", fast_out) == re.sub(r"\d", "0", sklearn_out)


def test_progress_draws_the_bar_on_stderr(digits_two_class, capsys):
    X, y = digits_two_class
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastnn_model(FastMLPClassifier, progress=True, max_iter=2).fit(X, y)
    out, err = capsys.readouterr()
    assert out == "" and "epoch 2/2" in err


# ---------------------------------------------------------------------------
# Early stopping: scikit-learn's rule replayed on fastnn's validation scores
# ---------------------------------------------------------------------------


def _sklearn_stop_epoch(scores, tol, n_iter_no_change, max_iter):
    """The epoch at which scikit-learn's own _update_no_improvement_count stops on scores."""
    oracle = MLPClassifier(tol=tol, n_iter_no_change=n_iter_no_change)
    oracle.validation_scores_, oracle.best_validation_score_ = [], -np.inf
    oracle._no_improvement_count, oracle.coefs_, oracle.intercepts_ = 0, [], []
    values = iter(scores)
    oracle._score = lambda X, y, sample_weight=None: next(values)
    for epoch in range(1, max_iter + 1):
        oracle._update_no_improvement_count(True, None, None, None)
        if oracle._no_improvement_count > n_iter_no_change:
            return epoch
    return max_iter


@pytest.mark.parametrize("estimator_class", [FastMLPClassifier, FastMLPRegressor])
def test_early_stopping_follows_sklearns_rule(digits_all, regression, estimator_class):
    X, y = digits_all if estimator_class is FastMLPClassifier else regression
    model = fastnn_model(estimator_class, early_stopping=True, tol=1e-3, n_iter_no_change=3,
                         learning_rate_init=0.01, max_iter=200, shuffle=True)
    model.fit(X, y)
    scores = model.validation_scores_
    assert model.n_iter_ == _sklearn_stop_epoch(scores, 1e-3, 3, 200) == len(scores)
    # The weights kept are those of the first epoch with the best score, as scikit-learn's.
    best_epoch = int(np.argmax(scores)) + 1
    refit = fastnn_model(estimator_class, early_stopping=True, tol=1e-3, n_iter_no_change=np.inf,
                         learning_rate_init=0.01, max_iter=best_epoch, shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        refit.set_params(early_stopping=True).fit(X, y)
    for a, b in zip(model.coefs_, refit.coefs_):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# Item 9: coefs_ and intercepts_ are assignable
# ---------------------------------------------------------------------------


def test_coefs_and_intercepts_are_assignable(digits_two_class):
    X, y = digits_two_class
    fast, reference = fit_both(fastnn_model(FastMLPClassifier, solver="sgd", max_iter=3), X, y, 1)
    rng = np.random.RandomState(1)
    new_coefs = [rng.normal(size=c.shape) for c in reference.coefs_]
    new_intercepts = [rng.normal(size=b.shape) for b in reference.intercepts_]
    for model in (fast, reference):
        model.coefs_ = [c.copy() for c in new_coefs]
        model.intercepts_ = [b.copy() for b in new_intercepts]
    np.testing.assert_allclose(fast.predict_proba(X), reference.predict_proba(X), rtol=1e-12)
    # Item assignment and in-place writes change the model as well.
    for model in (fast, reference):
        model.coefs_[0] = np.zeros_like(new_coefs[0])
        model.intercepts_[1][:] = 3.0
    np.testing.assert_allclose(fast.predict_proba(X), reference.predict_proba(X), rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        fast.coefs_ = [np.zeros((2, 2)), np.zeros((12, 1))]


# ---------------------------------------------------------------------------
# The default init: the same random_state starts from scikit-learn's weights
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("estimator_class, settings", [
    (FastMLPClassifier, dict(solver="lbfgs", max_iter=25)),
    (FastMLPClassifier, dict(solver="lbfgs", max_iter=25, activation="logistic")),
    (FastMLPRegressor, dict(solver="lbfgs", max_iter=25, activation="tanh")),
    (FastMLPClassifier, dict(solver="adam", max_iter=1, early_stopping=True)),
    (FastMLPClassifier, dict(solver="sgd", max_iter=1, activation="logistic")),
    (FastMLPRegressor, dict(solver="adam", max_iter=1)),
])
def test_same_random_state_fits_as_sklearn(digits_all, regression, estimator_class, settings):
    """No weights handed over: both draw from random_state (shuffling on).  lbfgs then
    draws nothing more; a stochastic solver's first epoch has the same row order (later
    epochs differ: scikit-learn permutes the previous order, fastnn draws afresh)."""
    X, y = digits_all if estimator_class is FastMLPClassifier else regression
    params = dict(hidden_layer_sizes=(12,), random_state=3, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fast = estimator_class(**params, threads=1).fit(X, y)
        reference = SKLEARN_OF[estimator_class](**params).fit(X, y)
    assert fast.n_iter_ == reference.n_iter_
    for a, b in zip(fast.coefs_ + fast.intercepts_, reference.coefs_ + reference.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_sklearn_init_is_sklearns_rule():
    """init_params(..., "sklearn"): per layer, weights then biases from U(-l, l)."""
    arch = Architecture((5, 4, 3), ("sigmoid",), "softmax", "float32")
    params = init_params(arch, "sklearn", np.random.RandomState(7))
    rng = np.random.RandomState(7)
    for (W, b), (fan_in, fan_out) in zip(layer_views(arch, params), [(5, 4), (4, 3)]):
        limit = np.sqrt(2.0 / (fan_in + fan_out))  # 2: logistic hidden layers
        np.testing.assert_array_equal(W, rng.uniform(-limit, limit, (fan_in, fan_out))
                                      .astype(np.float32))
        np.testing.assert_array_equal(b, rng.uniform(-limit, limit, fan_out).astype(np.float32))


# ---------------------------------------------------------------------------
# Item 1: solver="lbfgs"
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("estimator_class, n_outputs, settings", [
    (FastMLPClassifier, 10, dict(max_iter=30)),
    (FastMLPClassifier, 10, dict(max_iter=200, max_fun=40, alpha=1e-2)),
    (FastMLPRegressor, 1, dict(max_iter=30, activation="tanh")),
])
def test_lbfgs_is_sklearns(digits_all, regression, estimator_class, n_outputs, settings):
    X, y = digits_all if estimator_class is FastMLPClassifier else regression
    model = fastnn_model(estimator_class, solver="lbfgs", **settings)
    fast, reference = fit_both(model, X, y, n_outputs)
    assert fast.n_iter_ == reference.n_iter_
    assert fast.loss_ == pytest.approx(reference.loss_, rel=1e-6)
    assert fast.warned == reference.warned
    assert not hasattr(fast, "loss_curve_") and not hasattr(reference, "loss_curve_")
    # No partial_fit with lbfgs (scikit-learn's regressor still lists it: its availability
    # check there tests the method object, not its result).
    assert not hasattr(fast, "partial_fit")
    if estimator_class is FastMLPClassifier:
        assert not hasattr(reference, "partial_fit")


@pytest.mark.parametrize("learning_rate", ["invscaling", "adaptive"])
def test_partial_fit_and_warm_start_rates_are_sklearns(digits_two_class, learning_rate):
    """partial_fit keeps the rate its schedule reached; a warm-start fit starts again
    from learning_rate_init (scikit-learn makes a new optimizer there)."""
    X, y = digits_two_class
    model = fastnn_model(FastMLPClassifier, solver="sgd", learning_rate=learning_rate,
                         learning_rate_init=0.2, tol=0.05, n_iter_no_change=1)
    reference = sklearn_starting_from(model, X, 1)
    for _ in range(6):
        model.partial_fit(X, y, classes=[0, 1])
        reference.partial_fit(X, y, classes=[0, 1])
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=CURVE_RTOL)
    assert model._optimizer.lr == pytest.approx(reference._optimizer.learning_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.set_params(warm_start=True, max_iter=4).fit(X, y)
        reference.set_params(warm_start=True, max_iter=4).fit(X, y)
    assert model._history.history["lr"][6] == 0.2
    assert model._optimizer.lr == pytest.approx(reference._optimizer.learning_rate)
