"""Interrupting training at a chosen mini-batch and resuming it, through every front end.

``trainer.interrupt_after(k)`` stops training just after batch k as a Ctrl-C
arriving then would (the stop request is raised at that batch boundary), but at a
batch that does not depend on timing.  So each test picks a k inside an epoch,
checks that training stopped exactly there (the optimizer's step count, the rows
done of the unfinished epoch), resumes the run as that front end documents, and
requires bitwise the weights, optimizer state and history of an uninterrupted run.
Compiled and NumPy backends alike, wherever a front end offers both.
"""

import signal
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import fastnn
from fastnn import Adam, Dense, Sequential, fit, init_params, trainer
from fastnn.estimators import FastMLPClassifier
from fastnn.mynn import MyNN
from fastnn.train import main as cli_main

from .conftest import make_problem

BACKENDS = ("numba", "numpy")

#: 70 rows in batches of 16: 5 batches an epoch (the last one of 6 rows).
N_ROWS, BATCH, BATCHES_PER_EPOCH = 70, 16, 5


def problem(rng):
    return make_problem(rng, (6, 9, 4), ("tanh",), "softmax", "float64", n=N_ROWS)


def train(arch, params0, X, Y, epochs, stop_after=None, backend="numba"):
    """fit with Adam for epochs, from params0, optionally interrupted after batch stop_after
    and then resumed: (params, optimizer, history, the interrupted history's state)."""
    params, optimizer, rng = params0.copy(), Adam(lr=0.02), np.random.RandomState(7)
    kwargs = dict(batch_size=BATCH, optimizer=optimizer, random_state=rng, backend=backend,
                  metrics=["accuracy"])
    if stop_after is None:
        return params, optimizer, fit(arch, params, X, Y, epochs=epochs, **kwargs), None
    with trainer.interrupt_after(stop_after):
        history = fit(arch, params, X, Y, epochs=epochs, **kwargs)
    stopped = (history.stop_reason, history.signal, history.epochs, optimizer.iterations,
               None if history.partial is None else history.partial.next_row)
    history = fit(arch, params, X, Y, epochs=epochs - history.epochs, history=history, **kwargs)
    return params, optimizer, history, stopped


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [0, 3, 5, 7, 14])
def test_trainer_fit_interrupted_at_batch_k_resumes_bitwise(rng, backend, k):
    """k = 0: before any batch; 5: exactly at the end of epoch 1; others: mid-epoch."""
    arch, params0, X, Y = problem(rng)
    whole, optimizer, history, _ = train(arch, params0, X, Y, 3, backend=backend)
    parts, optimizer2, history2, stopped = train(arch, params0, X, Y, 3, k, backend)
    epochs_done, batches_in = divmod(k, BATCHES_PER_EPOCH)
    # A stop before a batch leaves the epoch unfinished (k = 0: after 0 rows); one after
    # an epoch's last batch falls between epochs (no unfinished epoch: None).
    rows_in = None if k and not batches_in else batches_in * BATCH
    assert stopped == ("interrupted", signal.SIGINT, epochs_done, k, rows_in)
    assert not np.array_equal(whole, params0)
    np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(optimizer2.slots, optimizer.slots)
    assert optimizer2.iterations == optimizer.iterations == 3 * BATCHES_PER_EPOCH
    assert history2.partial is None and history2.stop_reason is None
    for key in ("loss", "accuracy"):  # the unfinished epoch's running sums carried over
        assert history2.history[key] == history.history[key]


def test_the_interrupt_is_delivered_once_and_skips_fits_that_do_not_catch_signals(rng):
    arch, params0, X, Y = problem(rng)
    kwargs = dict(epochs=1, batch_size=BATCH, lr=0.1, random_state=0)
    with trainer.interrupt_after(2, signal.SIGTERM):
        ignored = fit(arch, params0.copy(), X, Y, catch_signals=False, **kwargs)
        first = fit(arch, params0.copy(), X, Y, **kwargs)
        second = fit(arch, params0.copy(), X, Y, **kwargs)
    assert ignored.stop_reason is None and second.stop_reason is None
    assert first.interrupted and first.signal == signal.SIGTERM
    assert first.partial.next_row == 2 * BATCH and first.epochs == 0
    with pytest.raises(ValueError, match="integer >= 0"):
        with trainer.interrupt_after(-1):
            pass


# ---------------------------------------------------------------------------
# Sequential
# ---------------------------------------------------------------------------


def sequential():
    return Sequential([Dense(9, input_dim=6, activation="tanh"), Dense(4, activation="softmax")],
                      dtype="float64", random_state=3).compile(
        "adam", "categorical_crossentropy", metrics=["accuracy"])


def assert_same_sequential(a, b):
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.optimizer.slots, b.optimizer.slots)
    assert a.optimizer.iterations == b.optimizer.iterations
    assert a.history.history["loss"] == b.history.history["loss"]
    assert a.history.history["accuracy"] == b.history.history["accuracy"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sequential_interrupted_mid_epoch_resumes_in_memory_and_from_a_file(rng, backend,
                                                                            tmp_path):
    _, _, X, Y = problem(rng)
    kwargs = dict(batch_size=BATCH, verbose=0, backend=backend)
    whole = sequential()
    whole.fit(X, Y, epochs=3, **kwargs)

    stopped = sequential()
    with trainer.interrupt_after(8), pytest.warns(UserWarning, match="interrupted after epoch 1 "
                                                  "and 48 of 70 rows"):
        stopped.fit(X, Y, epochs=3, **kwargs)
    assert stopped.optimizer.iterations == 8 and stopped.history.partial.next_row == 3 * BATCH
    stopped.save(tmp_path / "stopped.npz")
    loaded = fastnn.load(tmp_path / "stopped.npz")
    for model in (stopped, loaded):  # Keras's idiom: fit the epochs that are left
        model.fit(X, Y, epochs=3 - model.history.epochs, **kwargs)
        assert_same_sequential(model, whole)


# ---------------------------------------------------------------------------
# scikit-learn estimators (compiled engine only)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def classifier(**params):
    # 150 rows in batches of 16: 10 batches an epoch; tol 0 never ends training early.
    return FastMLPClassifier(**{**dict(hidden_layer_sizes=(8,), batch_size=16, max_iter=5,
                                       random_state=0, threads=1, solver="adam", tol=0.0),
                                **params})


def assert_same_weights(a, b):
    for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(x, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_interrupted_mid_epoch_resumes_in_memory_and_from_a_file(iris, tmp_path):
    X, y = iris
    whole = classifier().fit(X, y)

    stopped = classifier(warm_start=True)
    with trainer.interrupt_after(23), pytest.warns(UserWarning, match="training interrupted "
                                                   "after epoch 2 and 48 of 150 rows"):
        stopped.fit(X, y)
    assert stopped.t_ == 2 * 150 + 48 and len(stopped.loss_curve_) == 2
    stopped.save(tmp_path / "stopped.npz")
    loaded = fastnn.load(tmp_path / "stopped.npz")
    for model in (stopped, loaded):  # the unfinished epoch counts as one of the 3 left
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.set_params(max_iter=3).fit(X, y)
        assert_same_weights(model, whole)
        assert model.loss_curve_ == whole.loss_curve_ and model.t_ == whole.t_


# ---------------------------------------------------------------------------
# MyNN (full batch: one batch an epoch, so the interrupt falls between epochs)
# ---------------------------------------------------------------------------


def test_mynn_interrupted_after_k_epochs_continues_bitwise(digits):
    x, _, y, _ = digits

    def model():
        np.random.seed(0)
        return MyNN(x[:300], y[:300])

    whole = model()
    losses = whole.fit(5).loss
    stopped = model()
    with trainer.interrupt_after(2):
        history = stopped.fit(5)
    assert history.interrupted and history.epochs == 2 and history.partial is None
    later = stopped.fit(3)
    assert history.loss + later.loss == losses
    for name in ("w1", "b1", "w2", "b2", "w3", "b3"):
        np.testing.assert_array_equal(getattr(stopped, name), getattr(whole, name))


# ---------------------------------------------------------------------------
# The command line (run in this process, so that interrupt_after applies)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_interrupted_mid_epoch_saves_and_resume_finishes_bitwise(backend, tmp_path, capsys):
    # iris: 135 training rows in batches of 32, 5 batches an epoch; batch 7 is in epoch 2.
    args = ["--dataset", "iris", "--layers", "8", "--optimizer", "adam", "--batch-size", "32",
            "--quiet", "--backend", backend]
    checkpoint, resumed, straight = (str(tmp_path / name) for name in ("c.npz", "r.npz", "s.npz"))
    with trainer.interrupt_after(7):
        status = cli_main([*args, "--epochs", "4", "--save", checkpoint])
    err = capsys.readouterr().err
    assert status == 130, err
    assert "in epoch 2 after 64 of 135 rows" in err
    stopped = fastnn.load(checkpoint)
    assert stopped.history.interrupted and stopped.optimizer.iterations == 7

    assert cli_main(["--resume", checkpoint, "--epochs", "3", "--save", resumed, "--quiet",
                     "--backend", backend]) == 0
    assert cli_main([*args, "--epochs", "4", "--save", straight]) == 0
    a, b = fastnn.load(resumed), fastnn.load(straight)
    assert a.history.epochs == b.history.epochs == 4
    assert_same_sequential(a, b)
    np.testing.assert_array_equal(a.rng.get_state()[1], b.rng.get_state()[1])
