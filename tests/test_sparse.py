"""Sparse (CSR) input of the first layer (``fastnn.kernels.sparse``): the two row kernels
against their SciPy twins, the drivers (epoch, full-batch objective, prediction) on sparse
X against the dense NumPy twin, bitwise across thread counts, and the estimators on dense
and sparse forms of the same data with every solver."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from fastnn import config, reference, trainer
from fastnn.estimators import FastMLPClassifier, FastMLPRegressor
from fastnn.kernels import epoch, sparse
from fastnn.kernels.objective import FullBatchObjective
from fastnn.network import Architecture, layer_views

from .conftest import assert_close, make_problem

#: (hidden activations, head, outputs) whose first activation the sparse layer takes.
NETWORKS = [(("relu", "tanh"), "softmax", 3), (("sigmoid",), "sigmoid", 2),
            (("identity",), "identity", 2), (("tanh",), "softmax", 4)]


def sparse_problem(rng, activations, head, n_outputs, dtype, n=57, n_features=40,
                   density=0.1, hidden=(11, 6)):
    sizes = (n_features, *hidden)[: len(activations) + 1] + (n_outputs,)
    arch, params, _, Y = make_problem(rng, sizes, activations, head, dtype, n=n)
    X = sp.random(n, n_features, density=density, format="csr", dtype=np.float64,
                  random_state=np.random.RandomState(int(rng.integers(2**31))))
    return arch, params, X.astype(dtype), np.ascontiguousarray(Y, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
def test_row_kernels_equal_their_scipy_twins(rng, activation, dtype):
    arch, params, X, _ = sparse_problem(rng, (activation,), "identity", 2, dtype, n=30,
                                        density=0.15)
    X = sp.csr_matrix(X.toarray() * (np.arange(X.shape[0]) != 3)[:, None])  # row 3 empty
    data, indices, indptr = sparse.csr_arrays(X, dtype)
    W, b = layer_views(arch, params)[0]
    rows = rng.integers(0, X.shape[0], 19).astype(np.int64)  # repeats, any order
    rows[0] = 3
    out = np.empty((rows.size, W.shape[1]), dtype=dtype)
    sparse.sparse_rows_forward(data, indices, indptr, rows, W, b, int(arch.activation_codes[0]),
                               out)
    assert_close(out, sparse.sparse_rows_forward_twin(X, rows, W, b, activation), dtype)
    delta = rng.standard_normal(out.shape).astype(dtype)
    n_features = W.shape[0]
    for row_start, row_stop in [(0, n_features + 1), (0, 8), (8, 24), (13, 14),
                                (32, n_features + 1), (n_features, n_features + 1)]:
        grad = np.full((row_stop - row_start, W.shape[1]), np.nan, dtype=dtype)
        sparse.sparse_param_grad(data, indices, indptr, rows, delta, n_features, row_start,
                                 row_stop, grad)
        assert_close(grad, sparse.sparse_param_grad_twin(X, rows, delta, row_start, row_stop),
                     dtype, err_msg=f"rows {row_start}:{row_stop}")
        # Summed over two row blocks, the second accumulated (micro-batches): bitwise.
        summed = np.full_like(grad, np.nan)
        sparse.sparse_param_grad(data, indices, indptr, rows[:7], delta[:7], n_features,
                                 row_start, row_stop, summed)
        sparse.sparse_param_grad(data, indices, indptr, rows[7:], delta[7:], n_features,
                                 row_start, row_stop, summed, True)
        np.testing.assert_array_equal(summed, grad, err_msg=f"rows {row_start}:{row_stop}")


def test_sparse_tasks_cut_the_first_layer_into_a_fixed_count():
    sizes = (5000, 64, 10)
    tasks = epoch.make_tasks(sizes, sparse_input=True)
    first = tasks[tasks[:, 0] == 0]
    assert len(first) == config.SPARSE_INPUT_TASKS
    assert first[0, 1] == 0 and first[-1, 2] == sizes[0] + 1  # the bias row goes last
    np.testing.assert_array_equal(first[1:, 1], first[:-1, 2])
    assert (first[:-1, 2] % epoch.TASK_ROWS == 0).all()
    np.testing.assert_array_equal(tasks[tasks[:, 0] == 1],
                                  epoch.make_tasks(sizes)[epoch.make_tasks(sizes)[:, 0] == 1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activations, head, n_outputs", NETWORKS)
def test_objective_equals_the_dense_numpy_twin(rng, activations, head, n_outputs, dtype):
    arch, params, X, Y = sparse_problem(rng, activations, head, n_outputs, dtype)
    weights = rng.uniform(0.1, 2.0, X.shape[0]).astype(dtype)
    loss, grad = FullBatchObjective(arch, X, Y, weights, 0.3)(params.astype(np.float64))
    loss_twin, grad_twin = reference.loss_and_grad(arch, params, X.toarray(), Y, 0.3, weights)
    assert_close(loss, loss_twin, dtype)
    assert_close(grad, grad_twin, dtype)


def test_objective_is_bitwise_the_same_with_one_and_two_threads(rng):
    arch, params, X, Y = sparse_problem(rng, ("relu", "tanh"), "softmax", 3, "float32", n=301,
                                        n_features=700, density=0.02)
    objective = FullBatchObjective(arch, X, Y, np.ones(301, np.float32), 0.1)
    results = []
    for threads in (1, 2):
        with trainer.thread_limit(threads, "numba"):
            loss, grad = objective(params.astype(np.float64))
        results.append((loss, grad.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("activations, head, n_outputs", NETWORKS[:2])
def test_epochs_on_sparse_x_equal_the_numpy_twin_on_dense_x(rng, activations, head, n_outputs,
                                                             optimizer):
    """Five epochs of mini-batches (sample weights, L2): compiled on CSR, reference on dense."""
    arch, params, X, Y = sparse_problem(rng, activations, head, n_outputs, "float64", n=90)
    weights = rng.uniform(0.1, 2.0, X.shape[0])
    settings = dict(epochs=5, batch_size=16, optimizer=optimizer, lr=0.05, l2=0.01,
                    sample_weight=weights, random_state=3)
    compiled, twin = params.copy(), params.copy()
    run = trainer.fit(arch, compiled, X, Y, **settings)
    run_twin = trainer.fit(arch, twin, X.toarray(), Y, backend="numpy", **settings)
    np.testing.assert_allclose(compiled, twin, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(run.loss, run_twin.loss, rtol=1e-9)
    assert not np.array_equal(compiled, params)  # it trained


def test_a_wide_first_layer_on_sparse_x_keeps_no_panels(rng):
    """The sparse first layer reads its W in place, so it gets no panel copy: a network
    whose only wide layer (``epoch.wide_layers``) is the first has no panel buffer, and
    one with a wide second layer trains as the NumPy twin on dense X (its second layer
    read from panels that the update tasks keep fresh)."""
    only_first = np.array([300, 130, 61, 4], dtype=np.int64)  # the first layer: 156 KB or more
    assert epoch.weight_copies(only_first, np.float64)[1] is not None
    assert epoch.weight_copies(only_first, np.float64, sparse_input=True)[1] is None
    arch, params, X, Y = sparse_problem(rng, ("relu", "tanh"), "softmax", 3, "float64", n=70,
                                        n_features=300, density=0.05, hidden=(130, 130))
    assert epoch.wide_layers(arch.sizes, np.float64, sparse_input=True) == [1]
    settings = dict(epochs=3, batch_size=16, lr=0.05, random_state=3)
    compiled, twin = params.copy(), params.copy()
    trainer.fit(arch, compiled, X, Y, **settings)
    trainer.fit(arch, twin, X.toarray(), Y, backend="numpy", **settings)
    np.testing.assert_allclose(compiled, twin, rtol=1e-9, atol=1e-9)
    assert not np.array_equal(compiled, params)  # it trained


def test_epochs_on_sparse_x_are_bitwise_the_same_with_one_and_two_threads(rng):
    arch, params, X, Y = sparse_problem(rng, ("relu", "tanh"), "softmax", 3, "float32", n=400,
                                        n_features=3000, density=0.01)
    results = []
    for threads in (1, 2):
        trained = params.copy()
        history = trainer.fit(arch, trained, X, Y, epochs=3, batch_size=64, optimizer="adam",
                              l2=0.01, random_state=0, threads=threads)
        results.append((trained, history.loss))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


def test_sparse_and_dense_x_predict_the_same(rng):
    arch, params, X, _ = sparse_problem(rng, ("tanh", "relu"), "softmax", 3, "float64", n=600)
    dense = trainer.predict_output(arch, params, X.toarray())
    np.testing.assert_allclose(trainer.predict_output(arch, params, X), dense, rtol=1e-12)
    np.testing.assert_allclose(trainer.predict_output(arch, params, X.tocsc()), dense,
                               rtol=1e-12)
    # A first layer that cannot read it (gelu) is given X made dense.
    gelu = Architecture(arch.sizes, ("gelu", "relu"), "softmax", "float64")
    np.testing.assert_array_equal(trainer.predict_output(gelu, params, X),
                                  trainer.predict_output(gelu, params, X.toarray()))


def test_sparse_prediction_from_panels(rng):
    """A large sparse X: the first layer reads its weights in place, the second its
    panels (epoch.predict_panels), as a dense X's prediction does."""
    n = config.PREDICT_PANEL_ROWS + 5
    arch, params, _, _ = make_problem(rng, (40, 300, 130, 3), ("relu", "tanh"), "softmax",
                                      "float32", n=n)
    X = sp.random(n, 40, density=0.1, format="csr", dtype=np.float32,
                  random_state=np.random.RandomState(int(rng.integers(2**31))))
    sizes = np.array(arch.sizes, dtype=np.int64)
    panels = epoch.predict_panels(params, sizes, arch.offsets, n, True)
    assert epoch.reads_panels(panels, sizes, 1)
    dense = trainer.predict_output(arch, params, X.toarray())
    np.testing.assert_allclose(trainer.predict_output(arch, params, X), dense, rtol=1e-5)
    pieces = [trainer.predict_output(arch, params, X[i:i + 500]) for i in range(0, n, 500)]
    np.testing.assert_array_equal(trainer.predict_output(arch, params, X), np.concatenate(pieces))


def test_sparse_x_that_the_network_cannot_read_is_refused(rng):
    arch, params, X, Y = sparse_problem(rng, ("relu",), "softmax", 3, "float64")
    gelu = Architecture(arch.sizes, ("gelu",), "softmax", "float64")
    for network in (gelu, Architecture((arch.sizes[0], 3), (), "softmax", "float64")):
        before = params[: network.n_params].copy()
        for fit in (lambda: trainer.fit(network, before, X, Y, epochs=1),
                    lambda: trainer.fit_lbfgs(network, before, X, Y, max_iter=1)):
            with pytest.raises(ValueError, match="identity, logistic, tanh or relu"):
                fit()
        np.testing.assert_array_equal(before, params[: network.n_params])
    with pytest.raises(ValueError, match="dropout is not supported with a sparse X"):
        trainer.fit(arch, params, X, Y, epochs=1, dropout=(0.0, 0.5))
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        trainer.fit(arch, params, bad, Y, epochs=1)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
@pytest.mark.parametrize("estimator_class", [FastMLPClassifier, FastMLPRegressor])
@pytest.mark.parametrize("layout", ["csr", "csc"])
def test_estimators_give_the_same_model_on_dense_and_sparse_forms(rng, estimator_class,
                                                                   layout, solver):
    X = sp.random(150, 60, density=0.05, format=layout, random_state=np.random.RandomState(0))
    y = np.asarray(X.sum(axis=1)).ravel()
    y = (y > np.median(y)).astype(int) if estimator_class is FastMLPClassifier else y
    settings = dict(hidden_layer_sizes=(9,), solver=solver, max_iter=40, random_state=0,
                    threads=1, early_stopping=solver == "adam")
    dense = estimator_class(**settings).fit(X.toarray(), y)
    sparse_model = estimator_class(**settings).fit(X, y)
    assert sparse_model.n_iter_ == dense.n_iter_
    for a, b in zip(dense.coefs_ + dense.intercepts_,
                    sparse_model.coefs_ + sparse_model.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(sparse_model.predict(X), dense.predict(X.toarray()), rtol=1e-7,
                               atol=1e-9)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_a_network_without_hidden_layers_trains_on_sparse_x_made_dense(solver):
    X = sp.random(40, 30, density=0.1, format="csr", random_state=np.random.RandomState(0))
    y = np.arange(40) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        flat = FastMLPClassifier((), solver=solver, max_iter=5, random_state=0,
                                 threads=1).fit(X, y)
        dense = FastMLPClassifier((), solver=solver, max_iter=5, random_state=0,
                                  threads=1).fit(X.toarray(), y)
    np.testing.assert_array_equal(flat.coefs_[0], dense.coefs_[0])
    assert flat.predict(X).shape == (40,)
