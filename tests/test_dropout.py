"""Dropout: counter-based masks (kernels.dropout) against their NumPy twin, bitwise; training
against the reference, bitwise across thread counts and across an interruption; the keep rate
within binomial bounds; the gradient against central differences with the masks fixed."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from fastnn import Sequential, load, reference, trainer
from fastnn.cli import main
from fastnn.kernels.dropout import dropout_mask, keep_threshold
from fastnn.models import Dense, Dropout
from fastnn.network import Architecture

from .conftest import FD_EPS, FD_TOL, TRAINING_RTOL, make_problem, seed_of


@pytest.mark.parametrize("seed, step, rows, first_unit, width, rate", [
    (0, 1, 1, 0, 1, 0.5), (7, 3, 33, 10, 117, 0.3), (2**63 + 5, 10**9, 17, 300, 64, 0.9),
    (123, 42, 64, 64, 128, 0.05)])
def test_masks_compiled_equal_reference(seed, step, rows, first_unit, width, rate):
    compiled = dropout_mask(np.uint64(seed), step, rows, 0, first_unit, width, keep_threshold(rate))
    np.testing.assert_array_equal(compiled, reference.dropout_keep(seed, step, rows, first_unit,
                                                                   width, rate))


def test_masks_do_not_depend_on_chunks():
    """Rows r0.. drawn on their own are the rows r0.. of the whole batch (any chunking)."""
    threshold = keep_threshold(0.4)
    whole = dropout_mask(np.uint64(9), 5, 64, 0, 100, 50, threshold)
    for r0 in (0, 16, 48):
        part = dropout_mask(np.uint64(9), 5, 16, r0, 100, 50, threshold)
        np.testing.assert_array_equal(part, whole[r0:r0 + 16])


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_keep_rate_within_binomial_bounds(rate):
    """200 x 500 units: the kept fraction within 5 standard deviations of 1 - rate, also per
    step, and masks of consecutive steps and neighbouring units independent (agreement
    p**2 + (1 - p)**2)."""
    p = 1 - rate
    masks = [reference.dropout_keep(11, step, 200, 0, 500, rate) for step in (1, 2)]
    n = masks[0].size
    bound = 5 * np.sqrt(p * (1 - p) / n)
    for mask in masks:
        assert abs(mask.mean() - p) <= bound
    agree = p**2 + (1 - p) ** 2
    for a, b in ((masks[0], masks[1]), (masks[0][:, 1:], masks[0][:, :-1]),
                 (masks[0][1:], masks[0][:-1])):
        assert abs((a == b).mean() - agree) <= 5 * np.sqrt(agree * (1 - agree) / a.size)


ACTIVATIONS = ("sigmoid", "relu", "tanh", "leaky_relu", "gelu", "silu")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_training_matches_reference_and_threads(activation, dtype):
    """3 epochs, 53 rows in batches of 40 (3 chunks, then a partial batch), dropout on the
    inputs and both hidden layers: compiled vs NumPy, and 1 vs 2 threads bitwise."""
    rng = np.random.default_rng(seed_of(f"dropout {activation} {dtype}"))
    arch, params, X, Y = make_problem(rng, (6, 19, 11, 4), (activation, activation), "softmax",
                                      dtype, n=53)
    runs = {}
    for key, backend, threads in (("numpy", "numpy", None), ("t1", "numba", 1), ("t2", "numba", 2)):
        p = params.copy()
        trainer.fit(arch, p, X, Y, epochs=3, batch_size=40, optimizer="adam", random_state=1,
                    backend=backend, threads=threads, dropout=(0.1, 0.5, 0.3), dropout_seed=77)
        runs[key] = p
    assert runs["t1"].tobytes() == runs["t2"].tobytes()
    assert np.abs(runs["t1"] - runs["numpy"]).max() <= TRAINING_RTOL[dtype] * np.abs(
        runs["numpy"]).max()
    plain = params.copy()
    trainer.fit(arch, plain, X, Y, epochs=3, batch_size=40, optimizer="adam", random_state=1)
    assert not np.array_equal(plain, runs["t1"])  # dropout did something


@pytest.mark.parametrize("activation", ["sigmoid", "elu", "softplus"])
def test_gradient_by_central_differences_with_masks_fixed(activation):
    """One full-batch SGD step with lr 1 gives the compiled gradient (p0 - p1); it and the
    reference's equal central differences of the loss with the step-1 masks held fixed."""
    rng = np.random.default_rng(seed_of(f"dropout gradient {activation}"))
    arch, params, X, Y = make_problem(rng, (5, 7, 6, 3), (activation, activation), "softmax",
                                      n=9)
    rates, seed = np.array([0.2, 0.4, 0.3]), 5

    def loss(p):  # the masks of mini-batch 1 depend on (seed, step, row, unit) only
        acts, _ = reference.forward_train(arch, p, X, rates, seed, 1)
        return float(np.mean(reference.ROW_LOSSES["softmax"](acts[-1], Y)))

    acts, factors = reference.forward_train(arch, params, X, rates, seed, 1)
    grads, _ = reference.backward(arch, params, acts, Y, None, factors)
    numeric = np.empty_like(params)
    for k in range(params.size):
        plus, minus = params.copy(), params.copy()
        plus[k] += FD_EPS
        minus[k] -= FD_EPS
        numeric[k] = (loss(plus) - loss(minus)) / (2 * FD_EPS)
    np.testing.assert_allclose(grads, numeric, rtol=FD_TOL.rtol, atol=FD_TOL.atol)
    stepped = params.copy()
    trainer.fit(arch, stepped, X, Y, epochs=1, batch_size=9, optimizer="sgd", lr=1.0,
                shuffle=False, dropout=rates, dropout_seed=seed)
    np.testing.assert_allclose(params - stepped, numeric, rtol=FD_TOL.rtol, atol=FD_TOL.atol)


def keras_model():
    model = Sequential([Dropout(0.1), Dense(16, input_dim=6, activation="relu"), Dropout(0.3),
                        Dense(8, activation="gelu"), Dropout(0.2), Dropout(0.25),
                        Dense(3, activation="softmax")], random_state=0)
    return model.compile(optimizer="adam", loss="categorical_crossentropy")


def test_sequential_resume_after_interruption_is_bitwise(tmp_path):
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((101, 6)), np.eye(3)[rng.integers(0, 3, 101)]
    whole = keras_model()
    whole.fit(X, Y, epochs=4, batch_size=16, verbose=0)
    assert whole.dropout_rates == (0.1, 0.3, 1 - 0.8 * 0.75)
    cut = keras_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with trainer.interrupt_after(9):  # in the middle of epoch 2
            cut.fit(X, Y, epochs=4, batch_size=16, verbose=0)
    cut.save(tmp_path / "cut.npz")
    resumed = load(tmp_path / "cut.npz")
    assert resumed.dropout_seed == whole.dropout_seed
    resumed.fit(X, Y, epochs=4 - resumed.history.epochs, batch_size=16, verbose=0)
    assert resumed.params.tobytes() == whole.params.tobytes()
    # Prediction has no dropout: the plain forward pass of the trained weights.
    np.testing.assert_allclose(whole.predict(X), reference.predict_proba(whole.arch, whole.params,
                                                                         X.astype(np.float32)),
                               rtol=1e-5, atol=1e-6)


def test_command_line_dropout(tmp_path):
    saved = tmp_path / "m.npz"
    assert main(["--dataset", "iris", "--layers", "8,8", "--dropout", "0.25", "--epochs", "3",
                 "--quiet", "--save", str(saved)]) == 0
    assert load(saved).dropout_rates == (0.0, 0.25, 0.25)
    assert main(["--dataset", "iris", "--dropout", "1", "--epochs", "1", "--quiet"]) == 2


def test_bad_input():
    for rate in (1.0, -0.1, "0.5", True, float("nan")):
        with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
            Dropout(rate)
    arch = Architecture((3, 4, 2), ("relu",), "softmax")
    params = np.zeros(arch.n_params)
    X, Y = np.zeros((4, 3)), np.eye(2)[[0, 1, 0, 1]]
    with pytest.raises(ValueError, match=r"dropout rate must be a number in \[0, 1\)"):
        trainer.fit(arch, params, X, Y, epochs=1, dropout=(0.0, 1.0))
    with pytest.raises(ValueError, match="one rate per layer input"):
        trainer.fit(arch, params, X, Y, epochs=1, dropout=(0.5,))
    model = Sequential([Dense(2, input_dim=3, activation="softmax"), Dropout(0.5)])
    with pytest.raises(ValueError, match="after the last Dense layer"):
        model.build()


@pytest.mark.slow
def test_a_run_without_dropout_compiles_no_dropout_code(tmp_path):
    """In a fresh process and cache, training without dropout never compiles drop_rows."""
    code = textwrap.dedent("""
        import numpy as np
        from fastnn import trainer
        from fastnn.kernels import dropout
        from fastnn.network import Architecture, init_params
        arch = Architecture((3, 4, 2), ("relu",), "softmax", "float32")
        X, Y = np.zeros((8, 3)), np.eye(2)[[0, 1] * 4]
        trainer.fit(arch, init_params(arch, "normal", 0), X, Y, epochs=1, batch_size=4)
        assert not dropout.drop_rows.signatures, dropout.drop_rows.signatures
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_estimators_dropout(tmp_path):
    """dropout= on the estimators: bitwise with 1 and 2 threads, its seed saved with the model
    (a warm-start fit of the loaded model continues as the original would), clear errors."""
    from fastnn import FastMLPClassifier, FastMLPRegressor

    rng = np.random.default_rng(8)
    X = rng.standard_normal((90, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [FastMLPClassifier((16, 8), dropout=0.3, max_iter=4, random_state=0, threads=t,
                                  warm_start=True).fit(X, y) for t in (1, 2)]
        assert all(np.array_equal(u, v) for u, v in zip(fits[0].coefs_, fits[1].coefs_))
        fits[0].save(tmp_path / "clf.npz")
        loaded = load(tmp_path / "clf.npz")
        for model in (fits[0], loaded):
            model.fit(X, y)
        assert all(np.array_equal(u, v) for u, v in zip(fits[0].coefs_, loaded.coefs_))
        FastMLPRegressor(hidden_layer_sizes=(8,), dropout=0.5, max_iter=2).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="dropout"):
        FastMLPClassifier(dropout=1.0).fit(X, y)
    with pytest.raises(ValueError, match="dropout needs a mini-batch solver"):
        FastMLPClassifier(dropout=0.2, solver="lbfgs").fit(X, y)


def test_summary_lists_dropout_layers():
    model = Sequential([Dropout(0.1), Dense(8, input_dim=4, activation="relu"), Dropout(0.2),
                        Dense(2, activation="softmax")])
    lines = []
    model.summary(print_fn=lines.append)
    rows = [line.split()[:2] for line in lines if "(Dense)" in line or "(Dropout)" in line]
    assert rows == [["dropout", "(Dropout)"], ["dense", "(Dense)"], ["dropout_1", "(Dropout)"],
                    ["dense_1", "(Dense)"]]
    assert "(None, 4)" in lines[4] and lines[4].rstrip().endswith("0")
