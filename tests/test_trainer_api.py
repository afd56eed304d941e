"""The training loop (``fastnn.fit``): whole runs of the compiled epoch driver against the
reference, determinism, divergence handling, prediction, a sanity run on the tutorial's
digits, and the loop's services: validation, metrics, early stopping, callbacks,
progress, interruption, divergence policy and exact continuation of a run."""

import io
import os
import signal
import threading

import numba
import numpy as np
import pytest

from fastnn import (SGD, Adam, Architecture, Callback, DivergenceError, DivergenceWarning,
                    EarlyStopping, StopTraining, config, fit, init_params, layer_views, metrics,
                    predict_output, reference, trainer)
from fastnn.kernels import epoch as compiled
from fastnn.kernels.objective import FullBatchObjective, loss_and_grad
from fastnn.schedules import ReduceOnPlateau
from fastnn.trainer import ProgressBar

from . import naive
from .conftest import TRAINING_RTOL, assert_close, make_problem


DTYPES = ("float32", "float64")

#: (sizes, hidden activations, head, lr): multi-class, multi-label and regression
#: networks.  (40, 70, 5) has 41 rows in its first block, so the update of that
#: layer is split between several tasks of the parallel driver.
NETWORKS = [
    pytest.param((6, 17, 5), ("sigmoid",), "softmax", 0.5, id="softmax-sigmoid"),
    pytest.param((6, 13, 9, 5), ("relu", "tanh"), "softmax", 0.5, id="softmax-relu-tanh"),
    pytest.param((40, 70, 5), ("sigmoid",), "softmax", 0.5, id="softmax-wide"),
    pytest.param((6, 9, 3), ("tanh",), "sigmoid", 0.5, id="multilabel-tanh"),
    pytest.param((6, 13, 7, 2), ("relu", "identity"), "identity", 0.05, id="regression-relu"),
]


def assert_same_weights(actual, desired, dtype):
    """Largest difference within TRAINING_RTOL[dtype] of the largest |weight|."""
    scale = np.abs(desired).max()
    np.testing.assert_allclose(actual, desired, rtol=0, atol=TRAINING_RTOL[dtype] * scale)


# ---------------------------------------------------------------------------
# Compiled against reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes, acts, head, lr", NETWORKS)
def test_numba_matches_numpy(rng, sizes, acts, head, lr, dtype):
    """5 epochs of shuffled mini-batches of 32 over 150 rows (last batch: 22 rows)."""
    arch, params0, X, Y = make_problem(rng, sizes, acts, head, dtype, n=150)
    runs = {}
    for backend in ("numpy", "numba"):
        params = params0.copy()
        history = fit(arch, params, X, Y, epochs=5, batch_size=32, lr=lr, random_state=7,
                        backend=backend)
        runs[backend] = params, history.loss
    (p_ref, loss_ref), (p_fast, loss_fast) = runs["numpy"], runs["numba"]
    assert p_fast.dtype == np.dtype(dtype)
    # Training moved the weights by much more than the tolerance, so agreement means something.
    assert np.abs(p_ref - params0).max() > 1e3 * TRAINING_RTOL[dtype] * np.abs(p_ref).max()
    assert_same_weights(p_fast, p_ref, dtype)
    np.testing.assert_allclose(loss_fast, loss_ref, rtol=TRAINING_RTOL[dtype])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_one_epoch_matches_naive_sgd(rng, backend):
    """One epoch without shuffling, batches of 4 (4, 4, 3 rows), against naive SGD steps."""
    arch, params, X, Y = make_problem(rng, (5, 6, 4), ("tanh",), "softmax", n=11)
    expected = [(W.copy(), b.copy()) for W, b in layer_views(arch, params)]
    losses = []
    for start in range(0, 11, 4):
        grads, loss = naive.gradients(expected, arch.activations, arch.head, X[start:start + 4],
                                      Y[start:start + 4])
        losses.append(loss * len(X[start:start + 4]))
        expected = [(W - 0.25 * gW, b - 0.25 * gb) for (W, b), (gW, gb) in zip(expected, grads)]
    history = fit(arch, params, X, Y, epochs=1, batch_size=4, lr=0.25, shuffle=False,
                    backend=backend)
    for (W, b), (eW, eb) in zip(layer_views(arch, params), expected):
        assert_close(W, eW)
        assert_close(b, eb)
    assert_close(history.loss[0], sum(losses) / 11)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_input_layout_and_dtype_do_not_matter(rng, backend):
    """Fortran-ordered float64 input to a float32 network trains like C-ordered float32."""
    arch, params0, X, Y = make_problem(rng, (6, 9, 3), ("relu",), "identity", "float32", n=40)
    a, b = params0.copy(), params0.copy()
    fit(arch, a, np.asfortranarray(X), Y, epochs=2, batch_size=16, lr=0.1, random_state=1,
          backend=backend)
    fit(arch, b, X.astype(np.float32), Y.astype(np.float32), epochs=2, batch_size=16, lr=0.1,
          random_state=1, backend=backend)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# Determinism and threads
# ---------------------------------------------------------------------------

needs_two_threads = pytest.mark.skipif(config.NUMBA_MAX_THREADS < 2,
                                       reason="Numba was started with a single thread")


def deterministic_problem(dtype):
    """Batches of 64 rows: 4 chunks of 16 per batch for the parallel forward/backward
    pass, and first blocks of 41 and 71 rows, so several parallel update tasks."""
    rng = np.random.default_rng(2024)
    return make_problem(rng, (40, 70, 33, 5), ("tanh", "relu"), "softmax", dtype, n=150)


@needs_two_threads
@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_results(dtype):
    arch, params0, X, Y = deterministic_problem(dtype)
    results = {}
    for threads in (1, 2):
        params = params0.copy()
        history = fit(arch, params, X, Y, epochs=3, batch_size=64, lr=0.5, random_state=3,
                        threads=threads)
        results[threads] = params, history.loss
    assert np.array_equal(results[1][0], results[2][0])
    assert results[1][1] == results[2][1]
    assert not np.array_equal(results[1][0], params0)


@pytest.mark.parametrize("dropout", [None, (0.1, 0.3, 0.2)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_micro_batches_do_not_change_results(monkeypatch, dtype, dropout):
    """A mini-batch of more than config.MICRO_BATCH_ROWS rows is trained in micro-batches
    (epoch.train_epoch): weights and losses are bitwise those of one pass over it, with
    1 and 2 threads, dropout and L2 included, and so is the L-BFGS objective's loss and
    gradient (objective.loss_and_grad)."""
    rng = np.random.default_rng(7)
    arch, params0, X, Y = make_problem(rng, (40, 70, 33, 5), ("tanh", "relu"), "softmax",
                                       dtype, n=700)
    X, Y = X.astype(dtype), Y.astype(dtype)
    weights = rng.uniform(0.5, 2.0, len(X)).astype(dtype)
    x = params0.astype(np.float64)
    runs = []
    for micro, threads in ((1024, 1), (256, 2), (48, 1), (16, 2)):
        monkeypatch.setattr(config, "MICRO_BATCH_ROWS", micro)
        threads = min(threads, config.NUMBA_MAX_THREADS)
        params = params0.copy()
        history = fit(arch, params, X, Y, epochs=2, batch_size=300, lr=0.1, l2=0.01,
                      sample_weight=weights, random_state=3, threads=threads, dropout=dropout,
                      dropout_seed=5)
        with trainer.thread_limit(threads, "numba"):
            loss, grad = FullBatchObjective(arch, X, Y, weights, 0.01)(x)
        runs.append((params, history.loss, loss, grad))
    for params, losses, loss, grad in runs[1:]:
        np.testing.assert_array_equal(params, runs[0][0])
        assert losses == runs[0][1]
        assert loss == runs[0][2]
        np.testing.assert_array_equal(grad, runs[0][3])
    assert not np.array_equal(runs[0][0], params0)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_same_seed_same_weights(dtype, backend):
    arch, params0, X, Y = deterministic_problem(dtype)
    runs = []
    for random_state in (5, 5, 6):
        params = params0.copy()
        fit(arch, params, X, Y, epochs=2, batch_size=64, lr=0.5, random_state=random_state,
              backend=backend)
        runs.append(params)
    assert np.array_equal(runs[0], runs[1])
    # ... and the seed does matter: another seed gives another batch order.
    assert not np.array_equal(runs[0], runs[2])


@needs_two_threads
def test_thread_count_is_set_and_restored():
    arch, params, X, Y = deterministic_problem("float64")
    seen = []
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        fit(arch, params, X, Y, epochs=1, batch_size=64, lr=0.1, threads=1,
              callbacks=[lambda epoch, logs: seen.append(numba.get_num_threads())])
        assert seen == [1]
        assert numba.get_num_threads() == 2
        # Restored on the way out of an exception too (raised by a callback in epoch 1).
        def fail(epoch, logs):
            raise RuntimeError("callback failed")

        with pytest.raises(RuntimeError, match="callback failed"):
            fit(arch, params, X, Y, epochs=1, batch_size=64, lr=0.1, threads=1, callbacks=[fail])
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(previous)


def test_invalid_arguments():
    arch, params, X, Y = deterministic_problem("float64")
    with pytest.raises(ValueError):
        fit(arch, params, X, Y, epochs=1, batch_size=64, lr=0.1, threads=0)
    with pytest.raises(ValueError):
        fit(arch, params, X, Y, epochs=1, batch_size=64, lr=0.1, backend="torch")


# ---------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("acts, batch_size", [(("identity",), 0), (("tanh",), 32)],
                         ids=["identity-full-batch", "tanh-batch32"])
def test_divergence_raises_and_keeps_last_finite_weights(rng, backend, acts, batch_size):
    arch, params0, X, Y = make_problem(rng, (5, 7, 2), acts, "identity", "float64", n=150)
    params = params0.copy()
    finished = []
    with pytest.raises(DivergenceError):
        fit(arch, params, X, Y, epochs=100, batch_size=batch_size, lr=1e6, random_state=0,
              backend=backend, callbacks=[lambda epoch, logs: finished.append(epoch)])
    assert np.isfinite(params).all()
    # The weights are those of the last finished epoch: rerun exactly that many epochs.
    again = params0.copy()
    fit(arch, again, X, Y, epochs=len(finished), batch_size=batch_size, lr=1e6, random_state=0,
          backend=backend)
    np.testing.assert_array_equal(params, again)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_divergence_weights_finite_when_last_update_overflows(backend):
    # One identity unit, full batch: epoch 1 has loss 5e299 (finite) and its update
    # w -= 1e10 * (1e150 * 1e150) overflows w to -inf; epoch 2's loss is inf.
    arch = Architecture((1, 1), (), "identity", "float64")
    params = np.array([1.0, 0.0])
    with pytest.raises(DivergenceError):
        fit(arch, params, np.array([[1e150]]), np.array([[0.0]]), epochs=3, batch_size=0,
              lr=1e10, backend=backend)
    assert np.isfinite(params).all(), params


def test_plain_sgd_with_an_l2_term_that_rounds_to_zero_in_some_batches(rng):
    """Plain SGD without an L2 term steps a wide layer's weights in its panels only,
    copied into params when the epoch ends (epoch.update_task): the choice must hold
    for the whole epoch, so it is made on l2, not on each batch's l2 over the batch's
    weight.  Here that quotient rounds to 0 in float32 for the first batch (rows of
    weight 1e36) but not for the others (weight 1): the weights still match the twin."""
    arch, params, X, Y = make_problem(rng, (300, 130, 61, 4), ("tanh", "relu"), "softmax",
                                      "float32", n=96)
    assert compiled.wide_layers(np.array(arch.sizes), np.dtype("float32")) == [0]
    weights = np.ones(96)
    weights[:32] = 1e36
    l2 = 1e-8
    assert np.float32(l2) * (np.float32(1) / np.float32(32e36)) == 0
    assert np.float32(l2) * (np.float32(1) / np.float32(32)) != 0
    twin = params.copy()
    settings = dict(epochs=2, batch_size=32, lr=0.05, l2=l2, sample_weight=weights,
                    shuffle=False)
    fit(arch, params, X, Y, **settings)
    fit(arch, twin, X, Y, backend="numpy", **settings)
    assert_close(params, twin, "float32")


# ---------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes, acts, head, lr", NETWORKS)
def test_predict_output_backends_agree(rng, sizes, acts, head, lr, dtype):
    """300 rows (two parallel chunks of the compiled predictor), against the naive loops too."""
    arch, params, X, _ = make_problem(rng, sizes, acts, head, dtype, n=300)
    fast = predict_output(arch, params, X, backend="numba")
    ref = predict_output(arch, params, X, backend="numpy")
    assert fast.shape == (300, sizes[-1]) and fast.dtype == np.dtype(dtype)
    assert_close(fast, ref)
    naive_out = naive.predict(layer_views(arch, params), acts, head, X.astype(dtype)[:40])
    assert_close(fast[:40], naive_out, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("acts", [("tanh", "relu"), ("leaky_relu", "gelu")])
def test_prediction_from_panels_is_bitwise_in_place(rng, acts, dtype):
    """From config.PREDICT_PANEL_ROWS rows on, prediction reads large layers' weights
    from panel copies (epoch.predict_panels): the same bits as calls of fewer rows,
    which read them in place.  leaky_relu and gelu take the kernels' other forward
    (slope given)."""
    n = config.PREDICT_PANEL_ROWS + 37
    arch, params, X, _ = make_problem(rng, (300, 130, 61, 4), acts, "softmax", dtype, n=n)
    sizes = np.array(arch.sizes, dtype=np.int64)
    panels = compiled.predict_panels(params, sizes, arch.offsets, n, False)
    # The first layer (at least 156 KB) from panels, the others in place.
    assert [compiled.reads_panels(panels, sizes, layer) for layer in range(3)] == [
        True, False, False]
    assert compiled.predict_panels(params, sizes, arch.offsets, 500, False).size == 0
    # No layer that wide (the tutorial's network): no panels, whatever the rows.
    digits = Architecture((64, 128, 128, 10), acts, "softmax", dtype)
    assert compiled.predict_panels(init_params(digits, "normal", 0),
                                   np.array(digits.sizes, dtype=np.int64), digits.offsets,
                                   10**6, False) is None
    pieces = [predict_output(arch, params, X[i:i + 500]) for i in range(0, n, 500)]
    np.testing.assert_array_equal(predict_output(arch, params, X), np.concatenate(pieces))


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="compiled code only")
def test_writable_and_read_only_data_run_the_same_compiled_kernels(rng):
    """The kernels get X and Y as read-only views whoever calls them
    (``sparse.driver_inputs``): writable and read-only data give the same loss and
    gradient through one compiled objective, and train through one driver."""
    arch, params, X, Y = make_problem(rng, (5, 8, 3), ("tanh",), "softmax", n=30)
    weights = np.ones(30)
    loss, grad = FullBatchObjective(arch, X, Y, weights, 0.1)(params)
    fit(arch, params.copy(), X, Y, epochs=1, batch_size=8, random_state=0)
    objectives = set(loss_and_grad.overloads)
    drivers = set(compiled.train_epoch.overloads)
    X.flags.writeable = Y.flags.writeable = False
    frozen_loss, frozen_grad = FullBatchObjective(arch, X, Y, weights, 0.1)(params)
    fit(arch, params.copy(), X, Y, epochs=1, batch_size=8, random_state=0)
    assert frozen_loss == loss
    np.testing.assert_array_equal(frozen_grad, grad)
    assert set(loss_and_grad.overloads) == objectives
    assert set(compiled.train_epoch.overloads) == drivers


def test_predict_output_strided_input(rng):
    arch, params, X, _ = make_problem(rng, (6, 9, 3), ("tanh",), "softmax", "float64", n=50)
    wide = np.zeros((50, 12))
    wide[:, ::2] = X
    np.testing.assert_array_equal(predict_output(arch, params, wide[:, ::2]),
                                  predict_output(arch, params, X))


# ---------------------------------------------------------------------------
# Digits
# ---------------------------------------------------------------------------


def test_digits_sanity(digits):
    """The tutorial's network, float32, 30 epochs of batches of 64: > 90 % test accuracy."""
    x_train, x_test, y_train, y_test = digits
    arch = Architecture((64, 128, 128, 10), "sigmoid", "softmax", "float32")
    params = init_params(arch, "normal", 0)
    history = fit(arch, params, x_train, y_train, epochs=30, batch_size=64, lr=0.5,
                    random_state=0)
    assert history.loss[-1] < 0.2 * history.loss[0]
    accuracy = np.mean(predict_output(arch, params, x_test).argmax(axis=1) == y_test.argmax(axis=1))
    assert accuracy > 0.9


@pytest.mark.parametrize("change, message", [
    (dict(X=np.ones((10, 3))), "X must have shape"),
    (dict(Y=np.ones((10, 4))), "Y must have shape"),
    (dict(Y=np.ones((9, 2)) / 2), "same number of rows"),
    (dict(Y=np.ones((10, 2))), "rows must sum to 1"),
    (dict(Y=-np.eye(2)[np.arange(10) % 2]), "probabilities in"),
    (dict(X=np.ones((0, 4)), Y=np.ones((0, 2))), "0 sample"),
    (dict(params=np.full(37, np.nan)), "NaN"),
    (dict(X=np.full((10, 4), np.inf)), "infinity"),
    (dict(Y=np.ones(10)), "2D array"),
    (dict(epochs=-1), "epochs"),
    (dict(lr=0.0), "lr must be"),
    (dict(lr=float("nan")), "lr must be"),
    (dict(batch_size=-5), "batch_size"),
    (dict(params=np.zeros(3)), "params must have shape"),
])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_bad_arguments_raise_before_any_kernel_runs(change, message, backend):
    arch = Architecture((4, 5, 2), "sigmoid", "softmax", "float64")
    kwargs = dict(params=init_params(arch, "normal", 0), X=np.ones((10, 4)),
                  Y=np.eye(2)[np.arange(10) % 2],
                  epochs=1, batch_size=4, lr=0.1)
    kwargs.update(change)
    params, X, Y = kwargs.pop("params"), kwargs.pop("X"), kwargs.pop("Y")
    before = params.copy()
    with pytest.raises(ValueError, match=message):
        fit(arch, params, X, Y, backend=backend, **kwargs)
    assert np.array_equal(params, before, equal_nan=True)  # nothing was trained


def test_predict_checks_the_number_of_features():
    arch = Architecture((4, 2), (), "softmax", "float64")
    with pytest.raises(ValueError, match="X must have shape"):
        predict_output(arch, init_params(arch, "normal", 0), np.ones((3, 5)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_predict_refuses_nan_and_infinity_wherever_they_are(rng, backend, threads, dtype):
    """The compiled predictor tests X's values as it copies them (epoch.predict_rows),
    each thread its own rows: a NaN or infinity in the first or last row, the first
    or last column, in either thread's range or in the last partial chunk, gets
    check_array's error; the same X made finite predicts."""
    n = 2 * config.PREDICT_CHUNK_ROWS + 45  # two threads' ranges, each ending part-way
    arch, params, X, _ = make_problem(rng, (37, 9, 3), ("tanh",), "softmax", dtype, n=n)
    X = X.astype(dtype)
    for row, column in [(0, 0), (n - 1, 36), (n // 2 + 1, 17), (n // 2 - 1, 36),
                        (config.PREDICT_CHUNK_ROWS, 5)]:
        for value, message in [(np.nan, "contains NaN"), (np.inf, "contains infinity"),
                               (-np.inf, "contains infinity")]:
            bad = X.copy()
            bad[row, column] = value
            with pytest.raises(ValueError, match=f"^Input X {message}"):
                predict_output(arch, params, bad, backend=backend, threads=threads)
    assert np.isfinite(predict_output(arch, params, X, backend=backend, threads=threads)).all()


def test_refuse_non_finite_raises_check_arrays_error_or_says_the_values_changed():
    """What predict_output calls when its kernel saw NaN or infinity: scikit-learn's
    message; and if the values are finite by then (another thread wrote X), a
    ValueError that says so."""
    from fastnn.checks import refuse_non_finite

    with pytest.raises(ValueError, match=r"^Input X contains NaN\.$"):
        refuse_non_finite(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"^Input data contains infinity"):
        refuse_non_finite(np.array([[np.inf]], dtype=np.float32), "data")
    with pytest.raises(ValueError, match="changed since"):
        refuse_non_finite(np.ones((2, 2)))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_predict_on_zero_rows_and_wrong_params(backend):
    arch = Architecture((4, 3, 2), "sigmoid", "softmax", "float64")
    params = init_params(arch, "normal", 0)
    out = predict_output(arch, params, np.ones((0, 4)), backend=backend)
    assert out.shape == (0, 2)
    with pytest.raises(ValueError, match="params must have shape"):
        predict_output(arch, params.astype(np.float32), np.ones((3, 4)), backend=backend)


def problem(rng, n=60, dtype="float64", head="softmax"):
    return make_problem(rng, (5, 11, 3), ("tanh",), head, dtype, n=n)


# ---------------------------------------------------------------------------
# Validation data and metrics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_validation_split_holds_out_the_last_rows(rng, backend):
    arch, params0, X, Y = problem(rng)
    a, b = params0.copy(), params0.copy()
    history = fit(arch, a, X, Y, epochs=3, batch_size=8, lr=0.3, random_state=0,
                  validation_split=0.25, metrics=["accuracy"], backend=backend)
    # The same as training on the first 45 rows with the last 15 as validation data.
    same = fit(arch, b, X[:45], Y[:45], epochs=3, batch_size=8, lr=0.3, random_state=0,
               validation_data=(X[45:], Y[45:]), metrics=["accuracy"], backend=backend)
    np.testing.assert_array_equal(a, b)
    assert history.history == {**same.history, "seconds": history.history["seconds"]}
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr",
                                    "seconds"}
    assert all(len(values) == 3 for values in history.history.values())
    # The last epoch's validation values, recomputed from the final weights.
    p = reference.predict_proba(arch, a, X[45:])
    assert history.history["val_loss"][-1] == pytest.approx(reference.loss(arch, a, X[45:], Y[45:]),
                                                            rel=1e-12)
    assert history.history["val_accuracy"][-1] == np.mean(p.argmax(1) == Y[45:].argmax(1))


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_training_accuracy_is_the_running_mean_before_each_update(rng, backend, head):
    """As the loss (and as Keras reports both): with full batches, epoch k's training
    accuracy and loss are those of the weights the epoch started from."""
    arch, params, X, Y = problem(rng, head=head)
    if head == "sigmoid":  # multi-label 0/1 targets
        Y = (rng.random(Y.shape) < 0.5).astype(Y.dtype)
    starts = []
    history = fit(arch, params, X, Y, epochs=4, batch_size=0, lr=0.5, metrics=["accuracy"],
                  backend=backend,
                  callbacks=[lambda epoch, logs: starts.append(params.copy())])
    starts = [None] + starts[:-1]
    for epoch, start in enumerate(starts[1:], start=1):
        out = reference.predict_proba(arch, start, X)
        assert history.history["accuracy"][epoch] == pytest.approx(
            metrics.accuracy(arch.head, Y, out), abs=1e-12)
        assert history.history["loss"][epoch] == pytest.approx(
            reference.loss(arch, start, X, Y), rel=1e-12)


def test_training_accuracy_with_mini_batches_agrees_across_backends(rng):
    arch, params0, X, Y = problem(rng)
    histories = [fit(arch, params0.copy(), X, Y, epochs=3, batch_size=7, lr=0.3, random_state=0,
                     metrics=["accuracy"], sample_weight=np.linspace(0.5, 2, 60), backend=b)
                 for b in ("numpy", "numba")]
    np.testing.assert_allclose(histories[0].history["accuracy"],
                               histories[1].history["accuracy"], rtol=1e-12)
    assert 0 < histories[0].history["accuracy"][0] < histories[0].history["accuracy"][-1] <= 1


def test_an_epoch_s_running_sums_are_checked(rng):
    # Sums saved before fastnn kept the accuracy: that epoch's accuracy is unknown.
    sums = trainer.PartialEpoch(np.arange(60), 16, [1.5, 16.0]).totals
    assert sums[:2].tolist() == [1.5, 16.0] and np.isnan(sums[2])
    for bad in ([1.0], [1.0, 2.0, 3.0, 4.0], [[1.0, 2.0, 3.0]]):
        with pytest.raises(ValueError, match="3 numbers"):
            trainer.PartialEpoch(np.arange(60), 16, bad)


def test_r2_metric_for_regression(rng):
    arch, params, X, Y = make_problem(rng, (5, 11, 2), ("relu",), "identity", "float64", n=40)
    history = fit(arch, params, X, Y, epochs=2, batch_size=10, lr=0.01, random_state=0,
                  metrics=["r2"], validation_split=0.25)
    from sklearn.metrics import r2_score

    out = predict_output(arch, params, X[30:])
    assert history.history["val_r2"][-1] == pytest.approx(r2_score(Y[30:], out))
    with pytest.raises(ValueError, match="accuracy needs a softmax or sigmoid head"):
        fit(arch, params, X, Y, epochs=1, lr=0.01, metrics=["accuracy"])


@pytest.mark.parametrize("kwargs, message", [
    ({"validation_split": 1.0}, "validation_split"),
    ({"validation_split": 0.001}, "leaves no"),
    ({"metrics": ["f1"]}, "unknown metrics"),
    ({"metrics": ["accuracy"], "validation_split": 0.5,
      "early_stopping": EarlyStopping(monitor="val_r2")}, "computes .'loss', 'accuracy', 'val_loss'"),
    ({"validation_data": (np.zeros((3, 5)), np.zeros((2, 3)))}, "X_val and Y_val need the same"),
    ({"validation_data": (np.zeros((3, 4)), np.zeros((3, 3)))}, "X_val must have shape"),
    ({"validation_data": (np.full((3, 5), np.nan), np.zeros((3, 3)))}, "NaN"),
    ({"early_stopping": EarlyStopping(monitor="val_loss")}, "monitors 'val_loss'"),
    ({"l2": -1.0}, "l2"), ({"batch_size": 2.5}, "batch_size"), ({"epochs": -1}, "epochs"),
    ({"on_divergence": "ignore"}, "on_divergence"),
])
def test_bad_arguments_are_refused_before_training(rng, kwargs, message):
    arch, params, X, Y = problem(rng)
    before = params.copy()
    with pytest.raises(ValueError, match=message):
        fit(arch, params, X, Y, **{"epochs": 2, "lr": 0.1, **kwargs})
    np.testing.assert_array_equal(params, before)


# ---------------------------------------------------------------------------
# Early stopping
# ---------------------------------------------------------------------------


def test_early_stopping_stops_after_patience_and_restores_the_best_weights(rng):
    arch, params0, X, Y = problem(rng)
    Y_val = Y[::-1].copy()  # validation labels unrelated to the inputs: soon gets worse
    snapshots = []
    params = params0.copy()
    history = fit(arch, params, X, Y, epochs=200, batch_size=10, lr=0.5, random_state=0,
                  validation_data=(X, Y_val),
                  early_stopping=EarlyStopping("val_loss", patience=3, restore_best_weights=True),
                  callbacks=[lambda epoch, logs: snapshots.append(params.copy())])
    val = history.history["val_loss"]
    best = int(np.argmin(val)) + 1
    assert history.stop_reason == "early stopping"
    assert history.best_epoch == best and history.epochs == best + 3 < 200
    np.testing.assert_array_equal(params, snapshots[best - 1])


def test_early_stopping_min_delta_and_increasing_monitors(rng):
    arch, params, X, Y = problem(rng)
    # Accuracy on the training rows reaches its best and stays: counts as no improvement.
    history = fit(arch, params, X, Y, epochs=300, batch_size=10, lr=0.5, random_state=0,
                  metrics=["accuracy"], early_stopping=EarlyStopping("accuracy", patience=5))
    acc = history.history["accuracy"]
    assert history.stop_reason == "early stopping"
    assert acc[history.best_epoch - 1] == max(acc)
    assert all(a <= max(acc) for a in acc[history.best_epoch:])
    # A min_delta larger than any change stops after exactly patience epochs.
    history = fit(arch, params, X, Y, epochs=50, lr=1e-6,
                  early_stopping=EarlyStopping("loss", patience=4, min_delta=1.0))
    assert history.epochs == 5 and history.best_epoch == 1


# ---------------------------------------------------------------------------
# Callbacks and progress
# ---------------------------------------------------------------------------


def test_callbacks_see_every_epoch_and_can_stop_training(rng):
    arch, params, X, Y = problem(rng)
    seen = []

    class Recorder(Callback):
        def on_train_begin(self, history):
            seen.append(("begin", history.epochs))

        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, logs["batches"], sorted(logs)))
            if epoch == 3:
                raise StopTraining

        def on_train_end(self, history):
            seen.append(("end", history.stop_reason))

    fit(arch, params, X, Y, epochs=10, batch_size=25, lr=0.1, callbacks=[Recorder()])
    keys = ["batches", "loss", "lr", "seconds"]
    assert seen == [("begin", 0), (1, 3, keys), (2, 6, keys), (3, 9, keys), ("end", "callback")]


def test_progress_bar_draws_one_line(rng):
    arch, params, X, Y = problem(rng)
    stream = io.StringIO()
    fit(arch, params, X, Y, epochs=4, batch_size=25, lr=0.1, validation_split=0.2,
        callbacks=[ProgressBar(4, stream=stream)])
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n")
    last = text.split("\r")[-1]
    assert last.startswith("epoch 4/4 [" + "#" * 24 + "] 8 batches") and "val_loss" in last


# ---------------------------------------------------------------------------
# Interruption and divergence
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_after_the_current_epoch(rng, signum):
    arch, params0, X, Y = problem(rng)
    before = signal.getsignal(signum)
    params = params0.copy()

    def interrupt(epoch, logs):
        if epoch == 2:
            os.kill(os.getpid(), signum)

    history = fit(arch, params, X, Y, epochs=10, batch_size=16, lr=0.2, random_state=4,
                  callbacks=[interrupt])
    assert history.interrupted and history.epochs == 2
    assert signal.getsignal(signum) is before
    # The weights are exactly those of two epochs.
    again = params0.copy()
    fit(arch, again, X, Y, epochs=2, batch_size=16, lr=0.2, random_state=4)
    np.testing.assert_array_equal(params, again)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_divergence_stop_policy_warns_and_keeps_weights_and_state(rng, backend):
    arch, params0, X, Y = make_problem(rng, (5, 7, 2), ("identity",), "identity", "float64",
                                       n=50)
    runs = {}
    for policy in ("stop", "raise"):
        params, optimizer = params0.copy(), SGD(lr=1e6, momentum=0.5)
        if policy == "stop":
            with pytest.warns(DivergenceWarning, match="diverged"):
                history = fit(arch, params, X, Y, epochs=500, optimizer=optimizer,
                              on_divergence=policy, backend=backend)
            assert history.stop_reason == "diverged"
        else:
            with pytest.raises(DivergenceError):
                fit(arch, params, X, Y, epochs=500, optimizer=optimizer,
                    on_divergence=policy, backend=backend)
        assert np.isfinite(params).all() and np.isfinite(optimizer.slots).all()
        runs[policy] = params, optimizer.slots.copy(), optimizer.iterations
    np.testing.assert_array_equal(runs["stop"][0], runs["raise"][0])
    np.testing.assert_array_equal(runs["stop"][1], runs["raise"][1])
    assert runs["stop"][2] == runs["raise"][2]


# ---------------------------------------------------------------------------
# Continuing a run
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_continuing_a_run_is_bitwise_identical_to_one_run(rng, backend):
    """3 + 4 epochs with the same Optimizer, RandomState and History equal 7 epochs:
    shuffling, Adam's state and step count, and a plateau schedule all carry over."""
    arch, params0, X, Y = problem(rng, dtype="float32")
    schedule = ReduceOnPlateau("val_loss", factor=0.5, patience=1, min_delta=0.0)
    kwargs = dict(batch_size=16, schedule=schedule, validation_split=0.2, backend=backend)

    whole, optimizer = params0.copy(), Adam(lr=0.05)
    one = fit(arch, whole, X, Y, epochs=7, optimizer=optimizer,
              random_state=np.random.RandomState(5), **kwargs)

    parts, optimizer2, rng2 = params0.copy(), Adam(lr=0.05), np.random.RandomState(5)
    history = fit(arch, parts, X, Y, epochs=3, optimizer=optimizer2, random_state=rng2, **kwargs)
    history = fit(arch, parts, X, Y, epochs=4, optimizer=optimizer2, random_state=rng2,
                  history=history, **kwargs)
    np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(optimizer2.slots, optimizer.slots)
    assert optimizer2.iterations == optimizer.iterations == 7 * 3
    for key in ("loss", "val_loss", "lr"):
        assert history.history[key] == one.history[key]
    assert len(set(one.history["lr"])) > 1  # the schedule did act


class SignalAfter(Callback):
    """Sends signum to this process a delay after training begins (from a timer thread)."""

    def __init__(self, seconds, signum=signal.SIGINT):
        self.timer = threading.Timer(seconds, os.kill, (os.getpid(), signum))

    def on_train_begin(self, history):
        self.timer.start()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_signal_during_an_epoch_stops_at_a_batch_boundary_and_resumes_exactly(rng, backend):
    """A signal arriving inside a (compiled) epoch stops it at the next mini-batch; a
    call continuing the history finishes that epoch, bitwise as if never stopped."""
    n = 40000 if backend == "numba" else 4000
    arch, params0, X, Y = make_problem(rng, (5, 11, 3), ("tanh",), "softmax", "float64", n=n)
    kwargs = dict(batch_size=4, backend=backend, validation_split=0.1, metrics=["accuracy"])

    whole, optimizer = params0.copy(), Adam(lr=0.01)
    one = fit(arch, whole, X, Y, epochs=2, optimizer=optimizer,
              random_state=np.random.RandomState(2), **kwargs)

    # The timer fires about a third into an epoch.  On a loaded machine it can fire
    # after the last epoch's batches: in its evaluation (training then stops with both
    # epochs done, nothing to resume) or after training has ended (a handler installed
    # here records it, rather than pytest getting a KeyboardInterrupt).  Either way the
    # run is tried again, sooner (all of 3 tries were late once, with another test
    # process on the 2 cores; once in the last epoch's evaluation, with pytest-xdist).
    late = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: late.append(signum))
    try:
        for attempt in range(5):
            parts, optimizer2, rng2 = params0.copy(), Adam(lr=0.01), np.random.RandomState(2)
            interrupt = SignalAfter(0.3 * min(one.epoch_seconds) / 2**attempt)
            history = fit(arch, parts, X, Y, epochs=2, optimizer=optimizer2, random_state=rng2,
                          callbacks=[interrupt], **kwargs)
            interrupt.timer.join()
            if history.interrupted and history.epochs < 2:
                break
            assert late or history.interrupted, (
                "the signal neither stopped training nor arrived after it")
            late.clear()
    finally:
        signal.signal(signal.SIGINT, before)
    assert history.interrupted and history.signal == signal.SIGINT
    # Stopped inside epoch 1 (or, on a slow machine, 2); rarely between two epochs,
    # when the signal lands in the end-of-epoch evaluation.
    finished = history.epochs
    rows_done = history.partial.next_row if history.partial is not None else 0
    assert finished < 2 and (0 < rows_done < 0.9 * n or history.partial is None)
    assert optimizer2.iterations == (finished * 0.9 * n + rows_done) // 4
    history = fit(arch, parts, X, Y, epochs=2 - finished, optimizer=optimizer2,
                  random_state=rng2, history=history, **kwargs)
    assert history.partial is None and history.epochs == 2
    np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(optimizer2.slots, optimizer.slots)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # running sums carried over
        assert history.history[key] == one.history[key]


def test_an_interrupted_epoch_needs_the_same_data_and_batch_size(rng):
    arch, params, X, Y = problem(rng)
    history = fit(arch, params, X, Y, epochs=1, batch_size=8, lr=0.1)
    history.partial = trainer.PartialEpoch(np.arange(60), 16, None)
    with pytest.raises(ValueError, match="same data and batch size"):
        fit(arch, params, X, Y, epochs=1, batch_size=6, lr=0.1, history=history)
