"""A sparse (CSR) input for the first layer: forward, its delta, its gradient; for L-BFGS.

The first layer reads X as CSR arrays (data, indices, indptr), so an input of
50000 mostly-zero features costs its non-zeros only; every later layer is the
dense engine's (``objective.FullBatchObjective`` on the network without its first
layer, whose input is the first layer's output).  The first layer's activation must
take its derivative from its output (identity, sigmoid, tanh, relu: scikit-learn's).

Work split (fixed, so results are bitwise the same with any thread count): the
forward pass and the first layer's delta run on chunks of ``config.CHUNK_ROWS``
rows; the weight gradient ``X.T @ delta`` on ranges of features (columns of X, read
in CSC form), each summing its columns' non-zeros in row order; the bias gradient
sums the rows in order.  NumPy/SciPy twins: ``first_layer_forward_twin`` and the
other ``*_twin`` functions below, which tests compare with.

``SparseFirstLayerObjective`` is the plain-Python ``fun(x) -> (loss, grad)`` for
scipy.optimize, like ``FullBatchObjective``.
"""

import numpy as np
from numba import njit, prange

from .. import config
from ..network import Architecture
from .activations import activate_rows, multiply_derivative_rows
from .dense import dense_backward
from .objective import FullBatchObjective

#: Activation codes the first layer may have here (its derivative comes from its output).
FIRST_LAYER_CODES = (0, 1, 2, 3)

#: Features per gradient task.
FEATURES_PER_TASK = 256


@njit(**config.JIT_OPTIONS)
def sparse_rows_forward(data, indices, indptr, r0, r1, W, b, activation, out):
    """out[r - r0] = act(X[r] @ W + b) for the CSR rows r0 <= r < r1 of X.

    data (nnz,), indices (nnz,) int64, indptr (n_samples + 1,) int64: X in CSR form;
    W (n_features, fan_out), b (fan_out,), out (r1 - r0, fan_out) written in place.
    Each row's non-zeros are added in their stored order.
    """
    fan_out = W.shape[1]
    for r in range(r0, r1):
        row = out[r - r0]
        for j in range(fan_out):
            row[j] = b[j]
        for k in range(indptr[r], indptr[r + 1]):
            value = data[k]
            w = W[indices[k]]
            for j in range(fan_out):
                row[j] += value * w[j]
    activate_rows(out, activation)


@njit(**config.PARALLEL_OPTIONS)
def first_layer_forward(data, indices, indptr, W, b, activation, out):
    """out = act(X @ W + b) for all rows of the CSR matrix X; out (n_samples, fan_out)."""
    n = out.shape[0]
    chunk = config.CHUNK_ROWS
    for c in prange((n + chunk - 1) // chunk):
        r0, r1 = c * chunk, min(c * chunk + chunk, n)
        sparse_rows_forward(data, indices, indptr, r0, r1, W, b, activation, out[r0:r1])


@njit(**config.PARALLEL_OPTIONS)
def first_layer_delta(delta_next, WT, a, activation, out):
    """out = (delta_next @ WT) * act'(a): the delta at the first layer's output.

    delta_next (n, fan_next) the next layer's delta, WT (fan_next, fan_out) the next
    layer's transposed weights, a (n, fan_out) the first layer's output; out written.
    """
    n = out.shape[0]
    chunk = config.CHUNK_ROWS
    for c in prange((n + chunk - 1) // chunk):
        r0, r1 = c * chunk, min(c * chunk + chunk, n)
        dense_backward(delta_next[r0:r1], WT, a[r0:r1], activation, out[r0:r1])


@njit(**config.PARALLEL_OPTIONS)
def first_layer_grad(data, indices, indptr, delta, W, l2_scaled, tasks, grad_W, grad_b):
    """grad_W = X.T @ delta + l2_scaled * W, grad_b = delta summed over rows; in place.

    X in CSC form: data (nnz,), indices (nnz,) int64 row numbers, indptr
    (n_features + 1,) int64.  delta (n, fan_out); W, grad_W (n_features, fan_out);
    grad_b (fan_out,).  tasks (n_tasks, 2) int64: feature ranges [start, stop), one
    per parallel task.  Returns sum(W ** 2) (float64) when l2_scaled != 0, else 0.0.
    """
    fan_out = W.shape[1]
    squares = np.zeros(tasks.shape[0])
    for t in prange(tasks.shape[0]):
        for feature in range(tasks[t, 0], tasks[t, 1]):
            g = grad_W[feature]
            for j in range(fan_out):
                g[j] = 0
            for k in range(indptr[feature], indptr[feature + 1]):
                value = data[k]
                d = delta[indices[k]]
                for j in range(fan_out):
                    g[j] += value * d[j]
            if l2_scaled != 0:
                w = W[feature]
                for j in range(fan_out):
                    g[j] += l2_scaled * w[j]
                    squares[t] += float(w[j]) * float(w[j])
    for j in range(fan_out):
        grad_b[j] = 0
    for i in range(delta.shape[0]):  # in row order: independent of the threads
        for j in range(fan_out):
            grad_b[j] += delta[i, j]
    total = 0.0
    for t in range(tasks.shape[0]):
        total += squares[t]
    return total


def feature_tasks(n_features, per_task=FEATURES_PER_TASK):
    """int64 array of shape (n_tasks, 2): the feature ranges of ``first_layer_grad``."""
    starts = np.arange(0, n_features, per_task, dtype=np.int64)
    return np.stack([starts, np.minimum(starts + per_task, n_features)], axis=1)


def csr_arrays(X, dtype):
    """(data, indices, indptr) of a SciPy sparse matrix in CSR form (data in dtype, int64)."""
    X = X.tocsr()
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    return (np.ascontiguousarray(X.data, dtype=dtype), X.indices.astype(np.int64),
            X.indptr.astype(np.int64))


def rest_of_network(arch):
    """The Architecture of arch without its first layer (its input: the first layer's output)."""
    return Architecture(arch.sizes[1:], arch.activations[1:], arch.head, arch.dtype)


def predict_sparse(arch, params, X, predict_dense):
    """Head output for a sparse X: the first layer here, then predict_dense(arch, params, A)."""
    code = int(arch.activation_codes[0])
    W, b = _first_layer(arch, params)
    a = np.empty((X.shape[0], arch.sizes[1]), dtype=arch.dtype)
    first_layer_forward(*csr_arrays(X, arch.dtype), W, b, code, a)
    return predict_dense(rest_of_network(arch), params[arch.offsets[1]:], a)


def _first_layer(arch, params):
    fan_in, fan_out = arch.sizes[0], arch.sizes[1]
    block = params[: arch.offsets[1]].reshape(fan_in + 1, fan_out)
    return block[:fan_in], block[fan_in]


class SparseFirstLayerObjective:
    """``objective(x) -> (loss, grad)`` on all rows, X a SciPy sparse matrix.

    Same contract as ``FullBatchObjective`` (x float64 of shape (n_params,), loss and
    float64 gradient of the mean loss plus ``0.5 * l2 * sum(W**2)`` over the total
    weight), for an arch with at least one hidden layer whose first activation is in
    ``FIRST_LAYER_CODES``.  Y (n_samples, n_outputs) and weights (n_samples,) in
    arch.dtype, C-contiguous.
    """

    def __init__(self, arch, X, Y, weights, l2):
        if arch.n_layers < 2 or int(arch.activation_codes[0]) not in FIRST_LAYER_CODES:
            raise ValueError("a sparse X needs a hidden layer whose activation is identity, "
                             "logistic, tanh or relu")
        self.arch, self.dtype = arch, np.dtype(arch.dtype).type
        self.code = int(arch.activation_codes[0])
        self.csr = csr_arrays(X, arch.dtype)
        csc = X.tocsc()
        if not csc.has_sorted_indices:
            csc = csc.sorted_indices()
        self.csc = (np.ascontiguousarray(csc.data, dtype=arch.dtype), csc.indices.astype(np.int64),
                    csc.indptr.astype(np.int64))
        self.tasks = feature_tasks(arch.sizes[0])
        self.l2, self.total_weight = float(l2), float(np.sum(weights, dtype=np.float64))
        n, width = X.shape[0], arch.sizes[1]
        self.params = np.zeros(arch.n_params, dtype=arch.dtype)
        self.grads = np.zeros(arch.n_params, dtype=arch.dtype)
        self.a = np.zeros((n, width), dtype=arch.dtype)  # the first layer's output
        self.delta = np.zeros_like(self.a)
        self.split = int(arch.offsets[1])
        self.rest = FullBatchObjective(rest_of_network(arch), self.a, Y, weights, l2)
        self.n_calls = 0

    def __call__(self, x):
        self.n_calls += 1
        self.params[:] = x
        W, b = _first_layer(self.arch, self.params)
        first_layer_forward(*self.csr, W, b, self.code, self.a)
        loss, grad_rest = self.rest(x[self.split:])
        # The rest's first layer: its delta and transposed weights give this layer's delta.
        rest = self.rest
        n, width_next = self.a.shape[0], rest.arch.sizes[1]
        delta_next = rest.deltas[n * rest.arch.sizes[0]: n * (rest.arch.sizes[0] + width_next)]
        W_next = rest.params[: rest.arch.offsets[1]].reshape(-1, width_next)[:-1]
        first_layer_delta(delta_next.reshape(n, width_next), np.ascontiguousarray(W_next.T),
                          self.a, self.code, self.delta)
        grad_W, grad_b = _first_layer(self.arch, self.grads)
        l2_scaled = self.dtype(self.l2 / self.total_weight)
        squares = first_layer_grad(*self.csc, self.delta, W, l2_scaled, self.tasks, grad_W, grad_b)
        loss += 0.5 * self.l2 / self.total_weight * squares
        grad = np.empty(self.arch.n_params)
        grad[: self.split] = self.grads[: self.split]
        grad[self.split:] = grad_rest
        return float(loss), grad


# ---------------------------------------------------------------------------
# NumPy / SciPy twins
# ---------------------------------------------------------------------------


def first_layer_forward_twin(X, W, b, activation):
    """act(X @ W + b) with SciPy's sparse product; activation a name of reference.ACTIVATIONS."""
    from .. import reference

    return reference.ACTIVATIONS[activation](np.asarray(X @ W) + b)


def first_layer_grad_twin(X, delta, W, l2_scaled):
    """(X.T @ delta + l2_scaled * W, delta summed over rows), with SciPy's sparse product."""
    return np.asarray(X.T @ delta) + l2_scaled * W, delta.sum(axis=0)
