"""L-BFGS in every front end: one run, ``trainer.fit_lbfgs``, the same weights everywhere.

The reference is scipy itself: ``scipy.optimize.minimize(method="L-BFGS-B")`` called
directly on the compiled objective, with scikit-learn's options.  ``fit_lbfgs`` must
give its weights bitwise, the estimators' ``solver="lbfgs"`` those of ``fit_lbfgs``,
a ``Sequential`` compiled with ``optimizer="lbfgs"`` those of the estimator on the
same data, seed and network, and ``python -m fastnn.train --optimizer lbfgs`` those of
the same Sequential written in Python.  Networks are tiny and runs a few iterations.
"""

import importlib
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
from sklearn.datasets import load_iris

import fastnn
from fastnn import FastMLPClassifier, FastMLPRegressor, StopTraining, trainer
from fastnn.kernels.objective import FullBatchObjective
from fastnn.models import LBFGS, Dense, Dropout, EarlyStopping, Sequential

from .conftest import TRAINING_RTOL, assert_close, make_problem

cli = importlib.import_module("fastnn.train")
PACKAGE_ROOT = Path(fastnn.__file__).resolve().parents[1]
ERROR_PREFIX = "fastnn.train: error:"


@pytest.fixture(scope="module")
def iris():
    """Standardised iris: X (150, 4) float64, labels y, one-hot Y."""
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(axis=0)) / X.std(axis=0), y, np.eye(3)[y]


def small_model(dtype="float64", hidden=7, outputs=3, head="softmax", seed=0):
    return Sequential([Dense(hidden, input_dim=4, activation="relu"),
                       Dense(outputs, activation=head)],
                      dtype=dtype, init="glorot_uniform", random_state=seed)


def flat(estimator):
    """The estimator's weights in fastnn's flat layout (W_1, b_1, W_2, b_2, ...)."""
    return np.concatenate([a.ravel() for pair in zip(estimator.coefs_, estimator.intercepts_)
                           for a in pair])


# ---------------------------------------------------------------------------
# The shared run against scipy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["softmax", "sigmoid", "identity"])
def test_fit_lbfgs_is_scipy_on_the_compiled_objective(rng, head):
    arch, params, X, Y = make_problem(rng, (5, 6, 3), ("tanh",), head, n=40)
    weights = rng.uniform(0.5, 2.0, 40)
    start = params.copy()
    seen = []
    expected = scipy.optimize.minimize(
        FullBatchObjective(arch, X, Y, weights, 1e-3), start.astype(np.float64),
        method="L-BFGS-B", jac=True, callback=lambda intermediate_result: seen.append(
            intermediate_result.fun), options={"maxfun": 15000, "maxiter": 12, "gtol": 1e-4})

    result = trainer.fit_lbfgs(arch, params, X, Y, max_iter=12, l2=1e-3, sample_weight=weights)

    np.testing.assert_array_equal(result.x, expected.x)
    np.testing.assert_array_equal(params, expected.x)
    assert result.fun == expected.fun and result.n_iter == expected.nit == len(seen)
    history = result.history
    assert history.loss == seen and history.epochs == result.n_iter
    assert list(history.history) == ["loss", "seconds"]  # no learning rate
    assert np.all(np.diff(seen) < 0)  # a line search accepts only lower losses
    assert history.stop_reason in (None, "converged")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_estimators_run_fit_lbfgs(iris):
    """FastMLPClassifier(solver="lbfgs") is one fit_lbfgs call from its initial weights."""
    X, y, Y = iris
    estimator = FastMLPClassifier((7,), solver="lbfgs", max_iter=15, alpha=1e-3,
                                  init="glorot_uniform", random_state=0).fit(X, y)
    model = small_model().build()  # the same draw: RandomState(0), glorot_uniform
    result = trainer.fit_lbfgs(model.arch, model.params, X, Y, max_iter=15, l2=1e-3)
    np.testing.assert_array_equal(flat(estimator), model.params)
    assert estimator.loss_ == result.fun and estimator.n_iter_ == result.n_iter


def test_the_numpy_backend_agrees(iris):
    X, _, Y = iris
    compiled, reference = small_model(), small_model()
    for model, backend in ((compiled, "numba"), (reference, "numpy")):
        model.compile(optimizer="lbfgs", l2=1e-3)
        model.fit(X, Y, epochs=6, verbose=0, backend=backend)
    np.testing.assert_allclose(compiled.params, reference.params, rtol=0,
                               atol=TRAINING_RTOL["float64"] * np.abs(reference.params).max())
    assert_close(compiled.history.loss, reference.history.loss)


# ---------------------------------------------------------------------------
# Sequential
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sequential_lbfgs_is_the_estimators(iris, dtype):
    X, y, Y = iris
    X = X.astype(dtype)
    model = small_model(dtype).compile(optimizer="lbfgs", loss="categorical_crossentropy",
                                       metrics=["accuracy"], l2=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float32 may stop early: compared below
        history = model.fit(X, Y, epochs=20, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its ConvergenceWarning
        estimator = FastMLPClassifier((7,), solver="lbfgs", max_iter=20, alpha=1e-4,
                                      init="glorot_uniform", random_state=0).fit(X, y)
    np.testing.assert_array_equal(flat(estimator), model.params)
    assert history is model.history and history.epochs == estimator.n_iter_
    assert history.loss[-1] == estimator.loss_
    assert len(history.history["accuracy"]) == history.epochs
    assert np.all(np.diff(history.loss) < 0)  # a line search accepts only lower losses


def test_sequential_regression_is_the_regressors(iris):
    X, y, _ = iris
    target = X[:, :1] * 0.5 - X[:, 1:2] ** 2
    model = small_model(hidden=5, outputs=1, head="linear").compile(optimizer="lbfgs", loss="mse")
    model.fit(X, target, epochs=10, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = FastMLPRegressor((5,), solver="lbfgs", max_iter=10, alpha=0.0,
                                     init="glorot_uniform", random_state=0).fit(X, target.ravel())
    np.testing.assert_array_equal(flat(estimator), model.params)


def test_validation_callbacks_and_the_lines(iris, capsys):
    X, _, Y = iris
    model = small_model().compile(optimizer=LBFGS(tol=0.0), metrics=["accuracy"])
    seen = []
    history = model.fit(X[:120], Y[:120], epochs=4, validation_data=(X[120:], Y[120:]),
                        callbacks=[lambda epoch, logs: seen.append((epoch, logs["batches"]))],
                        verbose=2)
    assert seen == [(1, 1), (2, 2), (3, 3), (4, 4)]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
        assert len(history.history[key]) == 4, key
    assert "lr" not in history.history
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[-1].startswith("Epoch 4/4 - ")
    # validation_split holds out the last rows, as for the other optimizers
    split = small_model().compile(optimizer="lbfgs")
    split.fit(X, Y, epochs=3, validation_split=0.2, verbose=0)
    held_out = small_model().compile(optimizer="lbfgs")
    held_out.fit(X[:120], Y[:120], epochs=3, validation_data=(X[120:], Y[120:]), verbose=0)
    np.testing.assert_array_equal(split.params, held_out.params)
    assert split.history.history["val_loss"] == held_out.history.history["val_loss"]


def three_iterations(X, Y):
    model = small_model().compile(optimizer="lbfgs")
    model.fit(X, Y, epochs=3, verbose=0)
    return model


def test_a_callback_early_stopping_or_a_signal_ends_after_the_iteration(iris):
    X, _, Y = iris
    expected = three_iterations(X, Y)

    def stop_at_3(epoch, logs):
        if epoch == 3:
            raise StopTraining

    stopped = small_model().compile(optimizer="lbfgs")
    history = stopped.fit(X, Y, epochs=50, callbacks=[stop_at_3], verbose=0)
    assert history.stop_reason == "callback" and history.epochs == 3
    np.testing.assert_array_equal(stopped.params, expected.params)

    def interrupt_at_3(epoch, logs):
        if epoch == 3:
            os.kill(os.getpid(), signal.SIGINT)

    interrupted = small_model().compile(optimizer="lbfgs")
    with pytest.warns(UserWarning, match="training interrupted after epoch 3"):
        history = interrupted.fit(X, Y, epochs=50, callbacks=[interrupt_at_3], verbose=0)
    assert history.stop_reason == "interrupted" and history.signal == signal.SIGINT
    np.testing.assert_array_equal(interrupted.params, expected.params)

    # The loss always decreases, so a min_delta above any decrease stops after patience
    # iterations; the best (first) iteration's weights come back.
    early = small_model().compile(optimizer="lbfgs")
    rule = EarlyStopping(monitor="loss", patience=2, min_delta=10.0, restore_best_weights=True)
    history = early.fit(X, Y, epochs=50, callbacks=[rule], verbose=0)
    assert history.stop_reason == "early stopping" and history.epochs == 3
    assert history.best_epoch == 1
    first = small_model().compile(optimizer="lbfgs")
    first.fit(X, Y, epochs=1, verbose=0)
    np.testing.assert_array_equal(early.params, first.params)


def test_stop_reasons_and_their_warnings(iris):
    X, _, Y = iris
    converged = small_model().compile(optimizer=LBFGS(tol=1e3))  # converged at the start
    start = converged.build().params.copy()
    history = converged.fit(X, Y, epochs=5, verbose=0)
    assert history.stop_reason == "converged" and history.epochs == 0
    np.testing.assert_array_equal(converged.params, start)

    limited = small_model().compile(optimizer={"name": "lbfgs", "max_fun": 4})
    with pytest.warns(UserWarning, match=r"L-BFGS stopped after \d+ of 50 iterations: "
                                         r"max_fun=4"):
        history = limited.fit(X, Y, epochs=50, verbose=0)
    assert history.stop_reason == "max_fun" and history.epochs < 50

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reaching epochs is no reason to warn
        assert three_iterations(X, Y).history.stop_reason is None


def test_batch_size_is_ignored_with_a_warning(iris):
    X, _, Y = iris
    expected = three_iterations(X, Y)
    model = small_model().compile(optimizer="lbfgs")
    with pytest.warns(UserWarning, match="batch_size=16 is ignored: L-BFGS"):
        model.fit(X, Y, epochs=3, batch_size=16, verbose=0)
    np.testing.assert_array_equal(model.params, expected.params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small_model().compile(optimizer="lbfgs").fit(X, Y, epochs=1, batch_size=150, verbose=0)


def test_save_load_and_fit_again(iris, tmp_path):
    X, _, Y = iris
    model = small_model().compile(optimizer=LBFGS(tol=1e-6, max_fun=500), metrics=["accuracy"])
    model.fit(X, Y, epochs=4, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz")
    assert loaded.optimizer == LBFGS(tol=1e-6, max_fun=500)
    np.testing.assert_array_equal(loaded.params, model.params)
    assert loaded.history.history.keys() == model.history.history.keys()
    assert loaded.history.loss == model.history.loss
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # A new run from the weights reached: the same in both, entries numbered on.
    for m in (model, loaded):
        m.fit(X, Y, epochs=2, verbose=0)
    np.testing.assert_array_equal(loaded.params, model.params)
    assert loaded.history.epochs == 6


def test_bad_combinations_are_refused(iris):
    X, _, Y = iris
    with pytest.raises(ValueError, match="L-BFGS has none"):
        small_model().compile(optimizer="lbfgs", schedule="step")
    dropping = Sequential([Dense(4, input_dim=4, activation="relu"), Dropout(0.2),
                           Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="Dropout layers need a mini-batch optimizer"):
        dropping.compile(optimizer="lbfgs")
    dropping.compile(optimizer="sgd").optimizer = LBFGS()  # fit checks again
    with pytest.raises(ValueError, match="Dropout layers need a mini-batch optimizer"):
        dropping.fit(X, Y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="a runner .* needs a mini-batch optimizer"):
        small_model().compile(optimizer="lbfgs").fit(X, Y, epochs=1, runner=object(), verbose=0)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        LBFGS(tol=-1.0)
    with pytest.raises(ValueError, match="max_fun must be an integer >= 1"):
        LBFGS(max_fun=0)
    with pytest.raises(ValueError, match="bad lbfgs settings"):
        small_model().compile(optimizer={"name": "lbfgs", "lr": 0.1})
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        model = small_model().build()
        trainer.fit_lbfgs(model.arch, model.params, X, Y, max_iter=0)


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastnn.train", *map(str, args)],
                          capture_output=True, text=True, cwd=PACKAGE_ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """The tutorial's network on digits, 5 L-BFGS iterations, saved: (result, path)."""
    path = tmp_path_factory.mktemp("lbfgs") / "digits.npz"
    return run_cli("--optimizer", "lbfgs", "--epochs", 5, "--save", path), path


def test_cli_lbfgs_on_digits(cli_run):
    result, _ = cli_run
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "lbfgs (tol 0.0001, max_fun 15000): 5 iterations, batch size full" in out
    assert len(re.findall(r"^iteration \d/5  loss [0-9.]+  accuracy", out, re.MULTILINE)) == 5
    assert re.search(r"^test  accuracy [0-9.]+ %", out, re.MULTILINE), out
    assert "for 5 iterations" in out


def test_cli_lbfgs_is_the_python_model(cli_run):
    """The same configuration in Python (the CLI's defaults) gives the CLI's weights."""
    from fastnn.datasets import load_dataset

    _, path = cli_run
    data = load_dataset("digits")
    model = Sequential([Dense(128, input_dim=64, activation="sigmoid"),
                        Dense(128, activation="sigmoid"), Dense(10, activation="softmax")],
                       dtype="float32", init="normal", random_state=0)
    model.compile(optimizer="lbfgs", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.X_train, data.Y_train, epochs=5, verbose=0)
    saved = fastnn.load(path)
    assert saved.optimizer == LBFGS()
    np.testing.assert_array_equal(saved.params, model.params)
    assert saved.history.loss == model.history.loss


@pytest.mark.parametrize("args, phrase", [
    (["--batch-size", "32"], "--batch-size 32: --optimizer lbfgs trains on the whole"),
    (["--lr", "0.1"], "L-BFGS has no learning rate"),
    (["--schedule", "cosine"], "--schedule cosine sets a learning rate per epoch"),
    (["--dropout", "0.2"], "--dropout needs a mini-batch optimizer"),
    (["--verify"], "--verify compares mini-batch epochs"),
    (["--profile"], "--profile times the phases of mini-batch epochs"),
    (["--scheduler", "local:1"], "--scheduler trains mini-batches data-parallel"),
    (["--momentum", "0.5"], "--momentum applies to --optimizer sgd, not lbfgs"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_cli_bad_combinations_exit_2(args, phrase, capsys):
    assert cli.main(["--optimizer", "lbfgs", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), captured.err
    assert phrase in lines[0], lines[0]


def test_cli_tol_needs_lbfgs_and_resume_refuses_an_lbfgs_model(iris, tmp_path, capsys):
    assert cli.main(["--tol", "1e-3"]) == 2
    assert "--tol applies to --optimizer lbfgs, not sgd" in capsys.readouterr().err
    X, _, Y = iris
    model = small_model().compile(optimizer="lbfgs")
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    assert cli.main(["--resume", str(tmp_path / "m.npz"), "--epochs", "2"]) == 2
    error = capsys.readouterr().err
    assert "--resume continues a run exactly" in error and "--load" in error
