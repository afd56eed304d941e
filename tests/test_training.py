"""Whole training runs: the compiled epoch driver against the reference, determinism,
divergence handling, prediction, and a sanity run on the tutorial's digits."""

import numba
import numpy as np
import pytest

from fastnn import (Architecture, DivergenceError, config, init_params, layer_views,
                    fit, predict_output)

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


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_predict_on_zero_rows_and_wrong_params(backend):
    arch = Architecture((4, 3, 2), "sigmoid", "softmax", "float64")
    params = init_params(arch, "normal", 0)
    out = predict_output(arch, params, np.ones((0, 4)), backend=backend)
    assert out.shape == (0, 2)
    with pytest.raises(ValueError, match="params must have shape"):
        predict_output(arch, params.astype(np.float32), np.ones((3, 4)), backend=backend)
