"""scikit-learn estimators: scikit-learn's own checks, the sklearn workflows (pipeline,
grid search), dtypes, labels, continuation (warm_start, partial_fit, save and load)
bitwise against one uninterrupted run, and the identity with ``fastnn.trainer.fit``.

Every estimator here runs with threads=1: the suite shares two cores, where Numba's
OpenMP threads spin against other processes (the thread-count invariance of the
trainer is tested in test_trainer_api.py; one cheap check here goes through the
estimator's threads parameter).
"""

import contextlib
import pickle
import signal
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastnn
from fastnn import (SGD, Architecture, DivergenceError, EarlyStopping, fit, init_params,
                    layer_views, trainer)
from fastnn.estimators import FastMLPClassifier, FastMLPRegressor

from .conftest import TRAINING_RTOL

#: Settings of the sklearn checks (the lbfgs ones also run the sparse-input checks):
#: scikit-learn's own MLP tests use max_iter=100
#: (sklearn/utils/_test_common/instance_generator.py), enough for check_classifiers_train
#: (accuracy > 0.83) and check_regressors_train (R^2 > 0.5) with the default adam.
CHECKED = [FastMLPClassifier(max_iter=100, threads=1), FastMLPRegressor(max_iter=100, threads=1),
           FastMLPClassifier(solver="lbfgs", max_iter=100, threads=1),
           FastMLPRegressor(solver="lbfgs", max_iter=100, threads=1)]

#: Checks expected to fail, with the reason: none.  (check_sample_weight_equivalence_
#: on_dense_data passes because its data sets fit in one batch of batch_size="auto",
#: where a weight of k is exactly k copies; with several shuffled mini-batches it is not.)
EXPECTED_FAILED = {}

ignore_convergence = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: EXPECTED_FAILED)
@ignore_convergence
def test_sklearn_checks(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_data():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=120, n_features=5, n_targets=2, noise=0.1, random_state=0)
    return X, y / np.abs(y).max()


def small(estimator_class, **params):
    """A small, quick estimator: 8 hidden units, batches of 16, one thread."""
    defaults = dict(hidden_layer_sizes=(8,), batch_size=16, max_iter=5, random_state=0,
                    threads=1)
    return estimator_class(**{**defaults, **params})


def assert_same_weights(a, b):
    """Bitwise equal weights and biases."""
    for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------
# scikit-learn workflows
# ---------------------------------------------------------------------------


@ignore_convergence
def test_pipeline_on_digits(digits_data):
    X, y = digits_data
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    model = Pipeline([("scale", StandardScaler()),
                      ("mlp", FastMLPClassifier((64,), max_iter=20, random_state=0, threads=1))])
    model.fit(X_train, y_train)
    reference = Pipeline([("scale", StandardScaler()),
                          ("mlp", MLPClassifier((64,), max_iter=20, random_state=0))])
    reference.fit(X_train, y_train)
    # Same initial weights and first epoch; the later row orders differ (estimators'
    # "Seeding"): the test accuracy is scikit-learn's to a few of the 360 rows.
    score, sklearn_score = model.score(X_test, y_test), reference.score(X_test, y_test)
    assert score > 0.93 and abs(score - sklearn_score) <= 0.02, (score, sklearn_score)
    assert model.predict(X_test).dtype == y.dtype


@ignore_convergence
def test_grid_search_in_two_processes(digits_data):
    X, y = digits_data
    X, y = X[:600], y[:600]
    grid = {"hidden_layer_sizes": [(2,), (32,)], "learning_rate_init": [1e-5, 1e-2]}
    search = GridSearchCV(FastMLPClassifier(batch_size=50, max_iter=15, random_state=0,
                                            threads=1), grid,
                          cv=3, n_jobs=2)
    search.fit(X, y)
    # 2 hidden units cannot separate 10 digits; lr 1e-5 barely moves in 15 epochs.
    assert search.best_params_ == {"hidden_layer_sizes": (32,), "learning_rate_init": 1e-2}
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.all((0 <= scores) & (scores <= 1))
    assert search.best_score_ == scores.max() > 0.85
    assert search.best_estimator_.score(X, y) > 0.9


# ---------------------------------------------------------------------------
# dtypes, labels, heads
# ---------------------------------------------------------------------------


@ignore_convergence
@pytest.mark.parametrize("input_dtype, dtype, expected", [
    (np.float32, None, np.float32), (np.float64, None, np.float64), (np.int64, None, np.float64),
    (np.float64, "float32", np.float32), (np.float32, "float64", np.float64)])
def test_dtype_of_weights_and_outputs(iris, input_dtype, dtype, expected):
    X, y = iris
    X = (X * 4).astype(input_dtype)
    model = small(FastMLPClassifier, dtype=dtype).fit(X, y)
    assert all(c.dtype == expected for c in model.coefs_ + model.intercepts_)
    assert model.predict_proba(X).dtype == expected
    assert model.predict_proba(X.astype(np.float64)).dtype == expected
    regressor = small(FastMLPRegressor, dtype=dtype).fit(X, y.astype(float))
    assert regressor.predict(X).dtype == expected


@ignore_convergence
@pytest.mark.parametrize("labels", [np.array(["setosa", "versicolor", "virginica"]),
                                    np.array(["a", "b", "c"], dtype=object),
                                    np.array([10, -3, 7])])
def test_labels_of_any_type(iris, labels):
    X, y = iris
    model = small(FastMLPClassifier, max_iter=20, hidden_layer_sizes=(16,),
                  learning_rate_init=0.01).fit(X, labels[y])
    np.testing.assert_array_equal(model.classes_, np.sort(labels))
    predicted = model.predict(X)
    if labels.dtype != object:  # LabelBinarizer turns object strings into a str array
        assert model.classes_.dtype == predicted.dtype == labels.dtype
    assert set(predicted) <= set(labels)
    assert model.score(X, labels[y]) > 0.8
    assert model.out_activation_ == "softmax" and model.n_outputs_ == 3


@ignore_convergence
def test_binary_problem_has_one_sigmoid_output(iris):
    X, y = iris
    labels = np.array(["no", "yes"])[(y == 2).astype(int)]
    model = small(FastMLPClassifier, max_iter=20).fit(X, labels)
    assert model.n_outputs_ == 1 and model.out_activation_ == "logistic"
    assert model.coefs_[-1].shape == (8, 1)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba))


@ignore_convergence
def test_multilabel_indicator_targets(iris):
    X, y = iris
    Y = np.column_stack([y == 0, y == 2, X[:, 0] > 0]).astype(int)
    model = small(FastMLPClassifier, max_iter=30, learning_rate_init=0.01).fit(X, Y)
    assert model.out_activation_ == "logistic" and model.n_outputs_ == 3
    assert model.predict(X).shape == Y.shape and set(np.unique(model.predict(X))) <= {0, 1}
    assert model.predict_proba(X).shape == Y.shape
    assert model.score(X, Y) > 0.7  # subset accuracy


@ignore_convergence
def test_regressor_output_shapes(regression):
    X, Y = regression
    one = small(FastMLPRegressor).fit(X, Y[:, 0])
    assert one.predict(X).shape == (len(X),) and one.n_outputs_ == 1
    two = small(FastMLPRegressor).fit(X, Y)
    assert two.predict(X).shape == Y.shape and two.out_activation_ == "identity"
    assert small(FastMLPRegressor, max_iter=60, learning_rate_init=0.01).fit(X, Y).score(X, Y) > 0.9


# ---------------------------------------------------------------------------
# The identity with fastnn.trainer.fit
# ---------------------------------------------------------------------------


def test_estimator_is_trainer_fit(iris):
    """The estimator's run is exactly this trainer run.

    Seeding: one RandomState(random_state) draws the initial weights (init_params),
    then (with early_stopping only) the validation split, then every epoch's row
    order (fit's random_state).  Labels are one-hot in classes_ order; alpha is l2;
    the default n_iter_no_change=10 and tol are EarlyStopping(monitor="loss",
    min_delta=tol, patience=11).
    """
    X, y = iris
    model = FastMLPClassifier((16,), activation="tanh", solver="sgd", learning_rate_init=0.05,
                              momentum=0.8, nesterovs_momentum=True, alpha=1e-3, batch_size=32,
                              max_iter=6, random_state=7, threads=1)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)

    rng = np.random.RandomState(7)
    arch = Architecture((4, 16, 3), ("tanh",), "softmax", "float64")
    params = init_params(arch, "sklearn", rng)  # the estimator's default init
    history = fit(arch, params, X, np.eye(3)[y], epochs=6, batch_size=32,
                  optimizer=SGD(lr=0.05, momentum=0.8, nesterov=True), l2=1e-3,
                  early_stopping=EarlyStopping("loss", patience=11, min_delta=1e-4),
                  random_state=rng, shuffle=True, threads=1)

    for (W, b), coef, intercept in zip(layer_views(arch, params), model.coefs_,
                                       model.intercepts_):
        np.testing.assert_array_equal(coef, W)
        np.testing.assert_array_equal(intercept, b)
    assert model.loss_curve_ == history.loss
    assert model.n_iter_ == 6 and model.t_ == 6 * len(X)
    # The next draw of both generators is the same: the estimator used nothing more.
    assert model._rng.randint(2**31) == rng.randint(2**31)


# ---------------------------------------------------------------------------
# Continuing: warm_start, partial_fit, save and load
# ---------------------------------------------------------------------------


@ignore_convergence
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_warm_start_continues_bitwise(iris, solver):
    X, y = iris
    one = small(FastMLPClassifier, solver=solver, max_iter=7).fit(X, y)
    split = small(FastMLPClassifier, solver=solver, max_iter=3).fit(X, y)
    split.set_params(warm_start=True, max_iter=4).fit(X, y)
    assert_same_weights(split, one)
    assert split.loss_curve_ == one.loss_curve_ and split.n_iter_ == 4 and split.t_ == one.t_
    # The optimizer state carried over too (same step count, same moments).
    assert split._optimizer.iterations == one._optimizer.iterations
    np.testing.assert_array_equal(split._optimizer.slots, one._optimizer.slots)


@ignore_convergence
def test_fit_without_warm_start_starts_afresh(iris):
    X, y = iris
    model = small(FastMLPClassifier).fit(X, y)
    first = [c.copy() for c in model.coefs_]
    model.fit(X, y)
    for a, b in zip(first, model.coefs_):
        np.testing.assert_array_equal(a, b)
    assert len(model.loss_curve_) == 5


def test_partial_fit_calls_equal_one_fit(iris):
    """k partial_fit calls over all rows are k epochs of one fit without a stopping rule."""
    X, y = iris
    incremental = small(FastMLPClassifier)
    for _ in range(4):
        incremental.partial_fit(X, y, classes=[0, 1, 2])
    assert incremental.n_iter_ == 1 and incremental.t_ == 4 * len(X)
    with pytest.warns(ConvergenceWarning):
        whole = small(FastMLPClassifier, max_iter=4, n_iter_no_change=np.inf).fit(X, y)
    assert_same_weights(incremental, whole)
    assert incremental.loss_curve_ == whole.loss_curve_


def test_partial_fit_classes(iris):
    X, y = iris
    model = small(FastMLPClassifier)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        model.partial_fit(X, y)
    # A first batch without class 2: the network still has three outputs.
    model.partial_fit(X[y < 2], y[y < 2], classes=np.array([0, 1, 2]))
    assert model.n_outputs_ == 3 and list(model.classes_) == [0, 1, 2]
    model.partial_fit(X, y)
    assert set(model.predict(X)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="classes not in"):
        model.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="does not support early_stopping"):
        small(FastMLPClassifier, early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    regressor = small(FastMLPRegressor)
    regressor.partial_fit(X, y.astype(float)).partial_fit(X, y.astype(float))
    assert regressor.t_ == 2 * len(X) and len(regressor.loss_curve_) == 2


@ignore_convergence
@pytest.mark.parametrize("kind", ["classifier", "regressor", "float32-strings"])
def test_save_load_predicts_and_continues_bitwise(tmp_path, iris, regression, kind):
    if kind == "regressor":
        X, y = regression
        make = lambda **p: small(FastMLPRegressor, **p)  # noqa: E731
    else:
        X, y = iris
        if kind == "float32-strings":
            X, y = X.astype(np.float32), np.array(["x", "yy", "zzz"])[y]
        make = lambda **p: small(FastMLPClassifier, solver="sgd", **p)  # noqa: E731
    model = make(max_iter=3).fit(X, y)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastnn.load(path)

    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
    if kind != "regressor":
        assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
        np.testing.assert_array_equal(loaded.classes_, model.classes_)
        assert loaded.classes_.dtype == model.classes_.dtype
    for name in ("n_iter_", "t_", "loss_curve_", "best_loss_", "n_layers_", "n_outputs_",
                 "out_activation_", "n_features_in_"):
        assert getattr(loaded, name) == getattr(model, name), name

    # Continuing the loaded model equals continuing the original equals one longer run.
    loaded.set_params(warm_start=True, max_iter=4).fit(X, y)
    model.set_params(warm_start=True, max_iter=4).fit(X, y)
    assert_same_weights(loaded, model)
    uninterrupted = make(max_iter=7).fit(X, y)
    assert_same_weights(loaded, uninterrupted)
    assert loaded.loss_curve_ == uninterrupted.loss_curve_
    loaded.partial_fit(X, y)
    model.partial_fit(X, y)
    assert_same_weights(loaded, model)


@pytest.mark.parametrize("labels", [np.array([10, 20, -30]), np.array([-1.0, 2.0, 3.0]),
                                    np.array(["b", "a", "c"]), np.array([False, True])])
def test_saved_labels_keep_dtype_and_values(tmp_path, iris, labels):
    X, y = iris
    y = labels[np.minimum(y, len(labels) - 1)]
    with pytest.warns(ConvergenceWarning):
        model = small(FastMLPClassifier, max_iter=2).fit(X, y)
    model.save(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz")
    assert loaded.classes_.dtype == model.classes_.dtype
    assert list(loaded.classes_) == list(model.classes_)
    assert [type(c) for c in loaded.classes_] == [type(c) for c in model.classes_]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@ignore_convergence
def test_pickle_and_clone(iris):
    X, y = iris
    model = small(FastMLPClassifier).fit(X, y)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))
    # The views of the copy are views of the copy's own buffer.
    copy.set_params(warm_start=True).fit(X, y)
    assert np.shares_memory(copy.coefs_[0], copy._params)
    assert not np.array_equal(copy.coefs_[0], model.coefs_[0])
    fresh = clone(model)
    assert not hasattr(fresh, "coefs_") and fresh.get_params() == model.get_params()


# ---------------------------------------------------------------------------
# Stopping: convergence, early stopping, schedules, interruption, divergence
# ---------------------------------------------------------------------------


def test_stops_when_training_loss_stalls(iris):
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        # No epoch improves by tol=1e3: epoch 1 sets the best, n_iter_no_change + 1 more stop.
        model = small(FastMLPClassifier, max_iter=50, tol=1e3, n_iter_no_change=3).fit(X, y)
    assert model.n_iter_ == 5 and model.best_loss_ == min(model.loss_curve_)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(5\)"):
        small(FastMLPClassifier, max_iter=5).fit(X, y)


@pytest.mark.parametrize("estimator_class", [FastMLPClassifier, FastMLPRegressor])
def test_early_stopping(iris, estimator_class):
    X, y = iris
    model = small(estimator_class, max_iter=60, early_stopping=True, n_iter_no_change=2,
                  validation_fraction=0.2, learning_rate_init=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.best_loss_ is None
    assert len(model.validation_scores_) == model.n_iter_ == len(model.loss_curve_)
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.t_ == model.n_iter_ * 120  # 30 of the 150 rows held out
    if estimator_class is FastMLPClassifier:
        assert 0 <= min(model.validation_scores_) and max(model.validation_scores_) <= 1
    no_stopping = small(estimator_class, max_iter=3)
    with pytest.warns(ConvergenceWarning):
        no_stopping.fit(X, y)
    assert no_stopping.validation_scores_ is None and no_stopping.best_validation_score_ is None


def test_learning_rate_schedules(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning):
        model = small(FastMLPClassifier, solver="sgd", learning_rate="invscaling", power_t=0.5,
                      learning_rate_init=0.1).fit(X, y)
    # scikit-learn's rule: after each epoch, learning_rate_init / (rows seen + 1) ** power_t.
    np.testing.assert_allclose(model._history.history["lr"],
                               [0.1] + [0.1 / (150 * epoch + 1) ** 0.5 for epoch in range(1, 5)])
    # "adaptive": the first epoch sets the best, and no later one improves by tol=1e3, so
    # the count exceeds n_iter_no_change=1 after epoch 3 and then every second epoch, and
    # the rate is divided by 5; the division that would start from 3.2e-7 <= 1e-6 ends
    # training instead.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = small(FastMLPClassifier, solver="sgd", learning_rate="adaptive", tol=1e3,
                      n_iter_no_change=1, max_iter=100).fit(X, y)
    lrs = model._history.history["lr"]
    np.testing.assert_allclose(lrs, [1e-3] * 3 + list(np.repeat(1e-3 * 0.2 ** np.arange(1, 6),
                                                                2)))
    assert model.n_iter_ == 13
    # scikit-learn's schedules change only "sgd"'s rate; fastnn's own apply to every solver.
    with pytest.warns(ConvergenceWarning):
        adam = small(FastMLPClassifier, learning_rate="invscaling").fit(X, y)
        stepped = small(FastMLPClassifier, learning_rate="step", max_iter=12).fit(X, y)
    assert adam._history.history["lr"] == [1e-3] * 5
    assert stepped._history.history["lr"] == [1e-3] * 10 + [1e-3 * 0.1] * 2


def interrupt_at_once(enabled):
    """trainer._signals_caught as if Ctrl-C had come: training stops before its next batch."""
    return contextlib.nullcontext(np.array([signal.SIGINT], dtype=np.int64))


def test_interrupted_fit_keeps_a_consistent_model_and_resumes_exactly(iris, monkeypatch,
                                                                      tmp_path):
    X, y = iris
    with pytest.warns(ConvergenceWarning):
        model = small(FastMLPClassifier, max_iter=2).fit(X, y)
    model.set_params(warm_start=True, max_iter=50)
    monkeypatch.setattr(trainer, "_signals_caught", interrupt_at_once)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.warns(UserWarning, match="training interrupted after epoch 2 and 0 of 150 "
                                             "rows of epoch 3"):
            model.fit(X, y)
    monkeypatch.undo()
    assert model.n_iter_ == 0 and len(model.loss_curve_) == 2 and model.t_ == 2 * len(X)
    assert model.predict(X).shape == y.shape
    # Saved mid-epoch, loaded, and finished: the weights of an uninterrupted run.
    model.save(tmp_path / "interrupted.npz")
    resumed = fastnn.load(tmp_path / "interrupted.npz").set_params(max_iter=3)
    with pytest.warns(ConvergenceWarning):
        resumed.fit(X, y)
        uninterrupted = small(FastMLPClassifier, max_iter=5).fit(X, y)
    assert_same_weights(resumed, uninterrupted)
    assert resumed.loss_curve_ == uninterrupted.loss_curve_ and resumed.t_ == uninterrupted.t_


@ignore_convergence
def test_interrupted_epoch_is_abandoned_when_the_data_change(iris, monkeypatch):
    X, y = iris
    monkeypatch.setattr(trainer, "_signals_caught", interrupt_at_once)
    with pytest.warns(UserWarning, match="interrupted after epoch 0"):
        model = small(FastMLPClassifier, warm_start=True).fit(X, y)
    monkeypatch.undo()
    assert model.n_iter_ == 0 and model.loss_curve_ == [] and model.best_loss_ is None
    with pytest.warns(UserWarning, match="abandoned: this fit has 50 rows"):
        model.fit(X[::3], y[::3])
    assert model.n_iter_ == 5 and model.t_ == 250
    model.partial_fit(X, y)  # partial_fit makes one pass over its own data
    assert model.t_ == 400


def test_divergence_raises_and_keeps_finite_weights(regression):
    X, Y = regression
    model = small(FastMLPRegressor, solver="sgd", momentum=0.0, learning_rate_init=1e4,
                  max_iter=50)
    with pytest.raises(DivergenceError, match="diverged"):
        model.fit(X * 100, Y * 1e3)
    assert all(np.isfinite(c).all() for c in model.coefs_ + model.intercepts_)
    assert len(model.loss_curve_) == model.n_iter_
    assert np.isfinite(model.predict(X)).all()


# ---------------------------------------------------------------------------
# Sample weights
# ---------------------------------------------------------------------------


def test_zero_weights_equal_dropping_the_rows(iris):
    """Full batch without shuffling: a zero-weight row adds nothing to a batch's gradient.

    Each batch's gradient is sum(w_i g_i) / sum(w_i), so with one batch holding every
    row the two runs compute the same numbers (mini-batches would differ: dropping
    rows moves the batch boundaries).  alpha=0, because the trainer divides the L2
    term by the batch's row count, zero-weight rows included.  The sums run over the
    rows in a blocked order, so the result agrees to rounding, not bitwise.
    """
    X, y = iris
    weights = np.ones(len(y))
    weights[::3] = 0
    kept = weights > 0
    settings = dict(hidden_layer_sizes=(8,), shuffle=False, alpha=0.0, max_iter=10,
                    random_state=0, threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = FastMLPClassifier(batch_size=len(y), **settings).fit(X, y, sample_weight=weights)
        dropped = FastMLPClassifier(batch_size=int(kept.sum()), **settings).fit(X[kept], y[kept])
        unweighted = small(FastMLPClassifier).fit(X, y)
        ones = small(FastMLPClassifier).fit(X, y, sample_weight=np.ones(len(y)))
    for a, b in zip(weighted.coefs_ + weighted.intercepts_, dropped.coefs_ + dropped.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=TRAINING_RTOL["float64"] * np.abs(b).max())
    np.testing.assert_allclose(weighted.loss_curve_, dropped.loss_curve_, rtol=1e-12)
    assert_same_weights(ones, unweighted)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"solver": "newton"}, "'solver' parameter"),
    ({"alpha": -1.0}, "'alpha' parameter"),
    ({"activation": "softmax"}, "'activation' parameter"),
    ({"batch_size": 0}, "'batch_size' parameter"),
    ({"learning_rate": "cyclic"}, "'learning_rate' parameter"),
    ({"momentum": 1.0}, "'momentum' parameter"),
    ({"dtype": "float16"}, "'dtype' parameter"),
    ({"init": "zeros"}, "'init' parameter"),
    ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes must hold integers > 0"),
])
def test_bad_hyperparameters_raise_at_fit(iris, change, message):
    X, y = iris
    model = small(FastMLPClassifier, **change)  # __init__ only stores them
    with pytest.raises(ValueError, match=message):
        model.fit(X, y)


def test_bad_input_raises_clear_errors(iris):
    X, y = iris
    model = small(FastMLPClassifier)
    with pytest.raises(NotFittedError):
        model.predict(X)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.fit(bad, y)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        model.fit(bad, y)
    with pytest.raises(ValueError, match="Expected 2D array"):
        model.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.fit(X, y[:-1])
    with pytest.raises(ValueError, match="Unknown label type"):
        model.fit(X, X[:, 0])
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(X, y, sample_weight=np.ones(3))
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but FastMLPClassifier is expecting 4"):
        model.predict(X[:, :3])
    with pytest.raises(ValueError, match="same classes"):
        model.set_params(warm_start=True).fit(X[y < 2], y[y < 2])
    with pytest.raises(ValueError, match="warm_start and partial_fit continue the network"):
        model.set_params(hidden_layer_sizes=(9,)).fit(X, y)
    with pytest.raises(ValueError):
        small(FastMLPRegressor).fit(X, np.array(["a", "b", "c"])[y])


def test_progress_draws_a_bar_and_threads_are_honoured(iris, capsys):
    X, y = iris
    with pytest.warns(ConvergenceWarning):
        model = small(FastMLPClassifier, progress=True, max_iter=2).fit(X, y)
    out, err = capsys.readouterr()
    assert "epoch 2/2" in err and out == ""
    with pytest.warns(ConvergenceWarning):
        two = small(FastMLPClassifier, progress=True, max_iter=2, threads=2).fit(X, y)
    assert_same_weights(model, two)


# ---------------------------------------------------------------------------
# solver="lbfgs"
# ---------------------------------------------------------------------------


@ignore_convergence
def test_lbfgs_saves_loads_continues_and_is_thread_invariant(tmp_path, iris):
    """L-BFGS-B is deterministic and the objective bitwise across threads, so the fit is."""
    X, y = iris
    model = small(FastMLPClassifier, solver="lbfgs", max_iter=30).fit(X, y)
    two = small(FastMLPClassifier, solver="lbfgs", max_iter=30, threads=2).fit(X, y)
    assert_same_weights(model, two)
    assert model.n_iter_ == 30 and model.t_ == 0 and not hasattr(model, "loss_curve_")
    model.save(tmp_path / "lbfgs.npz")
    loaded = fastnn.load(tmp_path / "lbfgs.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.loss_ == model.loss_ and loaded.n_iter_ == model.n_iter_
    assert pickle.loads(pickle.dumps(model)).loss_ == model.loss_
    loss = model.loss_
    model.set_params(warm_start=True, max_iter=10).fit(X, y)  # continues from its weights
    assert model.loss_ <= loss
    with pytest.raises(AttributeError, match="partial_fit"):
        model.partial_fit(X, y)


@ignore_convergence
def test_lbfgs_float32_and_zero_weights(iris):
    X, y = iris
    model = small(FastMLPClassifier, solver="lbfgs", max_iter=20).fit(X.astype(np.float32), y)
    assert model.coefs_[0].dtype == np.float32
    assert model.predict_proba(X.astype(np.float32)).dtype == np.float32
    # The full batch is every row, so a zero weight is a dropped row (to rounding).
    weights = np.ones(len(y))
    weights[::3] = 0
    kept = weights > 0
    weighted = small(FastMLPClassifier, solver="lbfgs", alpha=0.0).fit(X, y, sample_weight=weights)
    dropped = small(FastMLPClassifier, solver="lbfgs", alpha=0.0).fit(X[kept], y[kept])
    for a, b in zip(weighted.coefs_ + weighted.intercepts_, dropped.coefs_ + dropped.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * np.abs(b).max())


@pytest.mark.parametrize("verbose", [True, False])
def test_verbose_fit_announces_a_compilation(monkeypatch, verbose):
    """With verbose, fit is told that epochs get printed, so a first-run compilation is
    announced on stderr before the first "Iteration" line (fastnn.compilation)."""
    from fastnn import trainer

    announced = []

    @contextlib.contextmanager
    def recording_notice(what, enabled=True, stream=None):
        announced.append(enabled)
        yield

    monkeypatch.setattr(trainer, "compile_notice", recording_notice)
    X, y = load_iris(return_X_y=True)
    FastMLPClassifier(hidden_layer_sizes=(5,), max_iter=2, verbose=verbose,
                      random_state=0).fit(X, y)
    assert announced == [verbose]
