"""The full-batch loss and gradient that L-BFGS minimises (``fastnn.kernels.objective``):
against its NumPy twin ``reference.loss_and_grad``, against central differences, and
bitwise across thread counts."""

import numpy as np
import pytest

from fastnn import reference, trainer
from fastnn.checks import check_data
from fastnn.kernels.objective import FullBatchObjective

from .conftest import FD_EPS, FD_TOL, assert_close, central_differences, make_problem

#: (hidden activations, head, outputs): every hidden activation of scikit-learn's
#: estimators and every head, with odd widths and a last chunk that is not full.
NETWORKS = [
    (("tanh", "relu"), "softmax", 3),
    (("sigmoid", "identity"), "sigmoid", 2),
    (("relu",), "identity", 2),
]


def objective_and_data(rng, activations, head, n_outputs, dtype, n=53, l2=0.3):
    arch, params, X, Y = make_problem(rng, (7, 19, 5)[: len(activations) + 1] + (n_outputs,),
                                      activations, head, dtype, n=n)
    X, Y = check_data(arch, X, Y)  # as the estimators hand them over
    weights = rng.uniform(0.1, 2.0, n).astype(dtype)
    return FullBatchObjective(arch, X, Y, weights, l2), arch, params, X, Y, weights, l2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activations, head, n_outputs", NETWORKS)
def test_compiled_objective_equals_its_numpy_twin(rng, activations, head, n_outputs, dtype):
    objective, arch, params, X, Y, weights, l2 = objective_and_data(rng, activations, head,
                                                                    n_outputs, dtype)
    loss, grad = objective(params.astype(np.float64))
    loss_twin, grad_twin = reference.loss_and_grad(arch, params, X, Y, l2, weights)
    assert grad.dtype == np.float64 and grad.shape == params.shape
    assert_close(loss, loss_twin, dtype)
    assert_close(grad, grad_twin, dtype)


@pytest.mark.parametrize("activations, head, n_outputs", NETWORKS)
def test_gradient_matches_central_differences(rng, activations, head, n_outputs):
    """scikit-learn's test_gradient, on fastnn's objective: every parameter, float64."""
    objective, _, params, *_ = objective_and_data(rng, activations, head, n_outputs, "float64",
                                                  n=17)
    x = params.astype(np.float64)
    _, grad = objective(x)
    numeric = central_differences(objective, x)
    assert_close(grad, numeric, tol=FD_TOL)


@pytest.mark.parametrize("n", [301, 41])
def test_bitwise_the_same_with_one_and_two_threads(n):
    """With 41 rows the objective propagates the deltas through W, with 301 through
    W.T (``epoch.propagates_through_w``)."""
    objective, _, params, *_ = objective_and_data(np.random.default_rng(5), ("tanh", "relu"),
                                                  "softmax", 3, "float32", n=n)
    assert (objective.params_t is None) == (n == 41)
    results = []
    for threads in (1, 2):
        with trainer.thread_limit(threads, "numba"):
            loss, grad = objective(params.astype(np.float64))
        results.append((loss, grad.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_params_are_not_changed_and_evaluations_are_counted(rng):
    objective, _, params, *_ = objective_and_data(rng, ("relu",), "identity", 2, "float64")
    x = params.astype(np.float64)
    kept = x.copy()
    first = objective(x)
    second = objective(x)
    np.testing.assert_array_equal(x, kept)
    assert first[0] == second[0] and objective.n_calls == 2
    np.testing.assert_array_equal(first[1], second[1])


def test_poisson_objective_matches_central_differences_and_sklearns_loss(rng):
    """The NumPy Poisson objective (loss="poisson"): its gradient, and its loss against
    scikit-learn's poisson_loss of the exp output."""
    from sklearn.neural_network._base import poisson_loss

    arch, params, X, _ = make_problem(rng, (4, 6, 2), ("tanh",), "identity", n=30)
    Y = rng.poisson(2.0, (30, 2)).astype(float)
    weights = rng.uniform(0.1, 2.0, 30)
    loss, grad = reference.poisson_loss_and_grad(arch, params, X, Y, 0.0, weights)
    output = np.exp(reference.forward(arch, params, X)[-1])
    assert loss == pytest.approx(poisson_loss(Y, output, weights), rel=1e-12)
    numeric = np.empty_like(grad)
    for i in range(params.size):
        step = np.zeros_like(params)
        step[i] = FD_EPS
        numeric[i] = (reference.poisson_loss_and_grad(arch, params + step, X, Y, 0.3, weights)[0]
                      - reference.poisson_loss_and_grad(arch, params - step, X, Y, 0.3,
                                                        weights)[0]) / (2 * FD_EPS)
    assert_close(reference.poisson_loss_and_grad(arch, params, X, Y, 0.3, weights)[1], numeric,
                 tol=FD_TOL)
