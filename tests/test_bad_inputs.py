"""Bad inputs at every public entry point.

The cases live in ``scripts/bad_input_cases.py`` (one table, shared with
``scripts/bad_inputs_table.py``, which prints docs/errors.md's table from it): every
entry point x bad input gets the exception type and message the case names, and
every accepted input is converted (or read in place: read-only and memory-mapped
arrays of the network's dtype) without changing the result.  Cases with a
``known_issue`` are strict xfails: the behaviour is wrong today (in ``trainer.py`` or
``network.py``), and the test starts failing once it is fixed, so the mark goes.

Then divergence for each front end: a huge learning rate stops training with
``DivergenceError`` (or a ``DivergenceWarning`` with ``on_divergence="stop"``), and
the model keeps the weights of the last finished epoch, finite.
"""

import re
import tracemalloc
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import Architecture, init_params, trainer
from fastnn.estimators import FastMLPClassifier
from fastnn.models import Dense, Sequential

from scripts import bad_input_cases as cases  # the repository root is on pytest's path
from scripts.bad_input_cases import Accepted, Raises


def _param(case):
    marks = ()
    if case.known_issue:
        marks = pytest.mark.xfail(strict=True, reason=f"known issue: {case.known_issue}")
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in cases.CASES])
def test_entry_point_gets_what_the_table_says(case):
    outcome = cases.run(case)
    expect = case.expect
    if isinstance(expect, Raises):
        assert outcome.error is not None, f"accepted, expected {expect.type.__name__}"
        assert isinstance(outcome.error, expect.type), outcome.describe()
        assert re.search(expect.match, str(outcome.error)), outcome.describe()
        return
    assert isinstance(expect, Accepted)
    assert outcome.error is None, outcome.describe()
    values = outcome.result.values
    if values.dtype.kind == "f":
        assert np.isfinite(values).all(), "an accepted input gave non-finite results"
    x = outcome.args[0]
    dtype = np.dtype(expect.dtype or cases.ENTRY.get(case.entry, cases.ENTRIES[0]).dtype)
    for read in outcome.seen:  # what the compiled kernels (or MyNN's NumPy pass) got
        assert read.dtype == dtype
        if not isinstance(read, np.ndarray):  # sparse: the first layer reads the non-zeros
            assert read.format == "csr"
            # the same as from the plain array, to the rounding of other sums' order
            np.testing.assert_allclose(values, cases.run_plain(case).values, rtol=1e-7,
                                       atol=1e-9)
        elif case.entry != "MyNN.predict":  # the tutorial's NumPy pass takes any layout
            assert read.flags.c_contiguous
        if expect.no_copy:
            assert np.shares_memory(read, x), "the input was copied"
    if case.varies == "X" and case.entry != "MyNN.predict":
        assert outcome.seen, "no input reached the kernels"
    if expect.same_as_plain:
        np.testing.assert_array_equal(values, cases.run_plain(case).values)


def test_every_entry_point_has_cases():
    entries = {case.entry for case in cases.CASES}
    assert {entry.name for entry in cases.ENTRIES} <= entries
    assert len({case.id for case in cases.CASES}) == len(cases.CASES)


# ---------------------------------------------------------------------------
# Memory-mapped input is read where it lies
# ---------------------------------------------------------------------------

WIDE = 64  # features: the input is then 20x larger than the (n, 3) output


def _predictors():
    """(name, dtype, predict function) of each front end, with 64 input features."""
    rng = np.random.default_rng(0)
    X, labels = rng.standard_normal((30, WIDE)), np.arange(30) % 3
    arch = Architecture((WIDE, 5, 3), "tanh", "softmax", "float64")
    params = init_params(arch, "glorot_uniform", 0)
    model = Sequential([Dense(5, input_dim=WIDE, activation="tanh"),
                        Dense(3, activation="softmax")], random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        classifier = FastMLPClassifier((5,), max_iter=1, random_state=0).fit(X, labels)
    mynn = cases.mynn(X, np.eye(3)[labels])
    return [("fastnn.predict_output", "float64", lambda x: trainer.predict_output(arch, params, x)),
            ("Sequential.predict", "float32", model.predict),
            ("FastMLPClassifier.predict_proba", "float64", classifier.predict_proba),
            ("MyNN.predict_classes", "float64", mynn.predict_classes)]


@pytest.mark.parametrize("name", [name for name, _, _ in _predictors()])
def test_predicting_from_a_memory_map_allocates_far_less_than_its_size(name, tmp_path):
    dtype, predict = {n: (d, p) for n, d, p in _predictors()}[name]
    X = np.random.default_rng(1).standard_normal((20000, WIDE)).astype(dtype)
    X.tofile(tmp_path / "x.dat")
    mapped = np.memmap(tmp_path / "x.dat", dtype=dtype, mode="r", shape=X.shape)
    predict(mapped[:10])  # compile, import, allocate what is allocated once
    with cases.kernel_inputs() as seen:
        tracemalloc.start()
        try:
            out = predict(mapped)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert np.shares_memory(seen[0], mapped)
    np.testing.assert_array_equal(out, predict(np.array(X)))
    # The output is (20000, 3): 1/20 of the input in float64 (1/10 in float32).
    assert peak < 0.25 * mapped.nbytes, f"peak {peak} bytes for a {mapped.nbytes}-byte input"


# ---------------------------------------------------------------------------
# Divergence: stopped with a clear message, the last finished epoch kept
# ---------------------------------------------------------------------------

X, LABELS, Y, TARGET = cases.data()
EPOCH = re.compile(r"in epoch (\d+) .*the weights of epoch (\d+) were kept")


def _diverged_at(error):
    match = EPOCH.search(str(error))
    assert match, str(error)
    epoch, kept = map(int, match.groups())
    assert kept in (epoch - 1, epoch - 2)  # epoch - 2 when epoch - 1's weights overflow
    return kept


# Each run(epochs, state, **fit_kwargs) trains one front end from the same start and
# fills state["params"] and state["predict"] (functions) before training, so that they
# can be read after a DivergenceError.


def _trainer_run(arch, batch_size):
    def run(epochs, state, **kwargs):
        params = init_params(arch, "glorot_uniform", 0)
        state.update(params=lambda: params,
                     predict=lambda: trainer.predict_output(arch, params, X))
        return trainer.fit(arch, params, X, Y, epochs=epochs, batch_size=batch_size,
                           lr=cases.HUGE_LR, random_state=0, **kwargs)

    return run


def _sequential_run(hidden, last, loss, targets):
    def run(epochs, state, **kwargs):
        model = Sequential([Dense(5, input_dim=cases.N_FEATURES, activation=hidden), last],
                           random_state=0).build()
        model.compile({"name": "sgd", "lr": cases.HUGE_LR}, loss)
        state.update(params=lambda: model.params, predict=lambda: model.predict(X))
        return model.fit(X, targets, epochs=epochs, batch_size=8, verbose=0, **kwargs)

    return run


def _estimator_run(make, targets, **params):
    def run(epochs, state):
        model = make(max_iter=epochs, **params)
        output = getattr(model, "predict_proba", model.predict)
        state.update(params=lambda: model._params, predict=lambda: output(X))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ConvergenceWarning
            model.fit(X, targets)

    return run


def _mynn_run(lr):
    def run(epochs, state):
        model = cases.mynn(X, Y)
        model.lr = lr

        def predict():
            with np.errstate(over="ignore", invalid="ignore"):
                model.feedforward()  # a3 of the training rows, by the tutorial's NumPy pass
            return model.a3

        state.update(params=lambda: model.params, predict=predict)
        model.fit(epochs)

    return run


RELU32 = Architecture((4, 5, 3), "relu", "softmax", "float32")

#: Front end and configuration -> a run that diverges within 50 epochs.
RUNS = {
    "fastnn.fit-relu-float32": _trainer_run(RELU32, 8),
    "fastnn.fit-relu-float32-full-batch": _trainer_run(RELU32, 0),
    "fastnn.fit-relu-float64": _trainer_run(cases.ARCH_RELU, 8),
    "Sequential-linear-mse": _sequential_run("relu", Dense(1), "mse", TARGET),
    "Sequential-relu-softmax": _sequential_run("relu", Dense(3, activation="softmax"), None, Y),
    "FastMLPClassifier-tanh": _estimator_run(cases.classifier, LABELS, activation="tanh",
                                             learning_rate_init=cases.HUGE_LR),
    "FastMLPClassifier-relu": _estimator_run(cases.classifier, LABELS, activation="relu",
                                             learning_rate_init=cases.HUGE_LR),
    "FastMLPRegressor-relu": _estimator_run(cases.regressor, 100 * TARGET, activation="relu",
                                            learning_rate_init=10.0),
    "MyNN-lr-1e307": _mynn_run(1e307),
}


def _diverged(run):
    """The state of a run that diverges, and the epoch whose weights it kept."""
    state = {}
    # (The estimators put scikit-learn's message first.)
    with pytest.raises(fastnn.DivergenceError, match=r"training diverged: a non-finite loss or "
                                                     r"weight in epoch \d+") as info:
        run(50, state)
    return state, _diverged_at(info.value)


@pytest.mark.parametrize("name", list(RUNS))
@pytest.mark.filterwarnings("ignore:(overflow|invalid value) encountered:RuntimeWarning")
def test_divergence_raises_and_keeps_the_last_finished_epoch(name):
    state, kept = _diverged(RUNS[name])
    params = state["params"]()
    assert np.isfinite(params).all()
    expected = {}
    RUNS[name](kept, expected)  # the same run, stopped at the epoch that was kept
    np.testing.assert_array_equal(params, expected["params"]())


@pytest.mark.parametrize("name", list(RUNS))
def test_the_kept_weights_predict_finite_outputs(name):
    state, _ = _diverged(RUNS[name])
    assert np.isfinite(state["predict"]()).all()


@pytest.mark.parametrize("name", ["fastnn.fit-relu-float32", "Sequential-linear-mse"])
def test_the_stop_policy_warns_and_keeps_the_last_finished_epoch(name):
    state = {}
    with pytest.warns(fastnn.DivergenceWarning, match="^training diverged") as record:
        history = RUNS[name](50, state, on_divergence="stop")
    assert history.stop_reason == "diverged"
    kept = _diverged_at(record[0].message)
    assert history.epochs == kept
    expected = {}
    RUNS[name](kept, expected)
    np.testing.assert_array_equal(state["params"](), expected["params"]())
    assert np.isfinite(state["predict"]()).all()
