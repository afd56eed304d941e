"""Sparse (CSR) input of the first layer (``fastnn.kernels.sparse``): the kernels against
their SciPy twins, the whole objective against the dense NumPy twin, bitwise across
thread counts, and the estimators on dense and sparse forms of the same data."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from fastnn import reference, trainer
from fastnn.estimators import FastMLPClassifier, FastMLPRegressor
from fastnn.kernels import sparse

from .conftest import assert_close, make_problem

#: (hidden activations, head, outputs) whose first activation the sparse layer takes.
NETWORKS = [(("relu", "tanh"), "softmax", 3), (("sigmoid",), "sigmoid", 2),
            (("identity",), "identity", 2), (("tanh",), "softmax", 4)]


def sparse_problem(rng, activations, head, n_outputs, dtype, n=57, n_features=40,
                   density=0.1):
    sizes = (n_features, 11, 6)[: len(activations) + 1] + (n_outputs,)
    arch, params, _, Y = make_problem(rng, sizes, activations, head, dtype, n=n)
    X = sp.random(n, n_features, density=density, format="csr", dtype=np.float64,
                  random_state=np.random.RandomState(int(rng.integers(2**31))))
    return arch, params, X.astype(dtype), np.ascontiguousarray(Y, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
def test_first_layer_kernels_equal_their_scipy_twins(rng, activation, dtype):
    arch, params, X, _ = sparse_problem(rng, (activation,), "identity", 2, dtype)
    W, b = sparse._first_layer(arch, params)
    out = np.empty((X.shape[0], W.shape[1]), dtype=dtype)
    sparse.first_layer_forward(*sparse.csr_arrays(X, dtype), W, b,
                               int(arch.activation_codes[0]), out)
    assert_close(out, sparse.first_layer_forward_twin(X, W, b, activation), dtype)
    delta = rng.standard_normal(out.shape).astype(dtype)
    csc = X.tocsc()
    grad_W, grad_b = np.empty_like(W), np.empty_like(b)
    squares = sparse.first_layer_grad(csc.data, csc.indices.astype(np.int64),
                                      csc.indptr.astype(np.int64), delta, W, W.dtype.type(0.25),
                                      sparse.feature_tasks(W.shape[0], per_task=7), grad_W,
                                      grad_b)
    twin_W, twin_b = sparse.first_layer_grad_twin(X, delta, W, 0.25)
    assert_close(grad_W, twin_W, dtype)
    assert_close(grad_b, twin_b, dtype)
    assert squares == pytest.approx(float(np.sum(W.astype(np.float64) ** 2)), rel=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activations, head, n_outputs", NETWORKS)
def test_objective_equals_the_dense_numpy_twin(rng, activations, head, n_outputs, dtype):
    arch, params, X, Y = sparse_problem(rng, activations, head, n_outputs, dtype)
    weights = rng.uniform(0.1, 2.0, X.shape[0]).astype(dtype)
    objective = sparse.SparseFirstLayerObjective(arch, X, Y, weights, 0.3)
    loss, grad = objective(params.astype(np.float64))
    loss_twin, grad_twin = reference.loss_and_grad(arch, params, X.toarray(), Y, 0.3, weights)
    assert_close(loss, loss_twin, dtype)
    assert_close(grad, grad_twin, dtype)


def test_objective_is_bitwise_the_same_with_one_and_two_threads(rng):
    arch, params, X, Y = sparse_problem(rng, ("relu", "tanh"), "softmax", 3, "float32", n=301,
                                        n_features=700, density=0.02)
    objective = sparse.SparseFirstLayerObjective(arch, X, Y, np.ones(301, np.float32), 0.1)
    results = []
    for threads in (1, 2):
        with trainer.thread_limit(threads, "numba"):
            loss, grad = objective(params.astype(np.float64))
        results.append((loss, grad.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_unsupported_first_activation_is_refused(rng):
    arch, params, X, Y = sparse_problem(rng, ("relu",), "softmax", 3, "float64")
    arch = type(arch)(arch.sizes, ("gelu",), "softmax", "float64")
    with pytest.raises(ValueError, match="identity, logistic, tanh or relu"):
        sparse.SparseFirstLayerObjective(arch, X, Y, np.ones(X.shape[0]), 0.0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator_class", [FastMLPClassifier, FastMLPRegressor])
@pytest.mark.parametrize("layout", ["csr", "csc"])
def test_estimators_give_the_same_model_on_dense_and_sparse_forms(rng, estimator_class,
                                                                   layout):
    X = sp.random(150, 60, density=0.05, format=layout, random_state=np.random.RandomState(0))
    y = np.asarray(X.sum(axis=1)).ravel()
    y = (y > np.median(y)).astype(int) if estimator_class is FastMLPClassifier else y
    settings = dict(hidden_layer_sizes=(9,), solver="lbfgs", max_iter=40, random_state=0,
                    threads=1)
    dense = estimator_class(**settings).fit(X.toarray(), y)
    sparse_model = estimator_class(**settings).fit(X, y)
    for a, b in zip(dense.coefs_ + dense.intercepts_,
                    sparse_model.coefs_ + sparse_model.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(sparse_model.predict(X), dense.predict(X.toarray()), rtol=1e-7,
                               atol=1e-9)


def test_other_solvers_refuse_sparse_x_and_no_hidden_layer_densifies(rng):
    X = sp.random(40, 30, density=0.1, format="csr", random_state=np.random.RandomState(0))
    y = np.arange(40) % 2
    with pytest.raises(TypeError, match="solver='lbfgs' only"):
        FastMLPClassifier(solver="adam", threads=1).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        flat = FastMLPClassifier((), solver="lbfgs", max_iter=5, threads=1).fit(X, y)
    assert flat.predict(X).shape == (40,)
