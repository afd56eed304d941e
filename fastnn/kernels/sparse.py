"""A sparse (CSR) input for the first layer: its forward rows and its gradient rows.

The drivers (``epoch.train_epoch``, ``objective.loss_and_grad``, ``epoch.predict_rows``)
take X either dense or as CSR arrays (data, indices, indptr): then the first layer
reads X's non-zeros only, so an input of 50000 mostly-zero features costs its
non-zeros, and every later layer is the dense engine's.  The first layer's
activation must take its derivative from its output (``FIRST_LAYER_CODES``:
identity, sigmoid, tanh, relu, scikit-learn's), since no derivative is saved for it.

Work split, the drivers' (fixed, so results are bitwise the same with any thread
count): the forward rows run in the chunks of ``config.CHUNK_ROWS`` rows, the
weight gradient ``X[rows].T @ delta`` in the update tasks' ranges of features
(``epoch.make_tasks`` with sparse_input), each element summing the batch's rows in
order.  NumPy/SciPy twins: the ``*_twin`` functions below, which tests compare with.
"""

import numpy as np
from numba import njit

from .. import config
from ..checks import is_sparse, read_only
from .activations import activate_rows

#: Activation codes the first layer may have here (its derivative comes from its output).
FIRST_LAYER_CODES = (0, 1, 2, 3)


@njit(**config.JIT_OPTIONS)
def sparse_rows_forward(data, indices, indptr, rows, W, b, activation, out):
    """out[i] = act(X[rows[i]] @ W + b) for the CSR rows ``rows`` of X.

    data (nnz,), indices (nnz,) int64, indptr (n_samples + 1,) int64: X in CSR form;
    rows (n,) int64; W (n_features, fan_out), b (fan_out,), out (n, fan_out) written
    in place.  Each row's non-zeros are added in their stored order.
    """
    fan_out = W.shape[1]
    for i in range(rows.shape[0]):
        row = out[i]
        for j in range(fan_out):
            row[j] = b[j]
        for k in range(indptr[rows[i]], indptr[rows[i] + 1]):
            value = data[k]
            w = W[indices[k]]
            for j in range(fan_out):
                row[j] += value * w[j]
    activate_rows(out, activation)


@njit(**config.JIT_OPTIONS)
def sparse_param_grad(data, indices, indptr, rows, delta, n_features, row_start, row_stop, out,
                      accumulate=False):
    """Rows [row_start, row_stop) of the first layer's gradient block, for a CSR X.

    The block has shape (n_features + 1, fan_out): X[rows].T @ delta, then the bias
    row, delta summed over the rows.  data, indices (sorted within each row), indptr:
    X in CSR form (``csr_arrays``); rows (n,) int64; delta (n, fan_out); out
    (row_stop - row_start, fan_out) written, or added to with accumulate (as
    ``dense.param_grad``).  Every element sums the rows in order 0..n-1; each row's
    first non-zero in the range is found by binary search, so a task costs its
    non-zeros plus log(nnz per row) per row.
    """
    fan_out = out.shape[1]
    if not accumulate:
        for i in range(out.shape[0]):
            for j in range(fan_out):
                out[i, j] = 0
    feature_stop = min(row_stop, n_features)
    for r in range(rows.shape[0]):
        start, end = indptr[rows[r]], indptr[rows[r] + 1]
        k = start + np.searchsorted(indices[start:end], row_start)
        d = delta[r]
        while k < end and indices[k] < feature_stop:
            value = data[k]
            g = out[indices[k] - row_start]
            for j in range(fan_out):
                g[j] += value * d[j]
            k += 1
    if row_stop > n_features:  # the bias row
        g = out[n_features - row_start]
        for r in range(rows.shape[0]):
            for j in range(fan_out):
                g[j] += delta[r, j]


def csr_arrays(X, dtype):
    """(data, indices, indptr) of a SciPy sparse matrix in CSR form (data in dtype, int64)."""
    X = X.tocsr()
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    return (np.ascontiguousarray(X.data, dtype=dtype), X.indices.astype(np.int64),
            X.indptr.astype(np.int64))


def driver_inputs(arch, X, Y=None):
    """(X, X_csr, widths, Y): the drivers' arguments for an input X, dense or SciPy sparse.

    A dense X (already checked) is passed on, X_csr is None and widths the network's
    sizes (int64).  A sparse X becomes its CSR arrays (``csr_arrays``), X an
    (n_samples, 0) array and widths[0] 0 (``epoch.layer_rows``); its network must
    have a hidden layer whose activation is in ``FIRST_LAYER_CODES`` (ValueError).
    X and Y (None stays None) come back as read-only views (``checks.read_only``),
    whatever the caller made of them (a validation split, a Dask block, one-hot
    targets): one compiled specialisation of each kernel for all of them.
    """
    widths = np.array(arch.sizes, dtype=np.int64)
    Y = None if Y is None else read_only(Y)
    if not is_sparse(X):
        return read_only(X), None, widths, Y
    check_first_layer(arch)
    widths[0] = 0
    return (read_only(np.empty((X.shape[0], 0), dtype=arch.dtype)), csr_arrays(X, arch.dtype),
            widths, Y)


def sparse_readable(arch):
    """Whether the network's first layer can read a sparse X: a hidden layer whose
    activation is in ``FIRST_LAYER_CODES``."""
    return arch.n_layers >= 2 and int(arch.activation_codes[0]) in FIRST_LAYER_CODES


def check_first_layer(arch):
    """Raise ValueError unless ``sparse_readable(arch)``."""
    if not sparse_readable(arch):
        raise ValueError("a sparse X needs a hidden layer whose activation is identity, "
                         "logistic, tanh or relu")


# ---------------------------------------------------------------------------
# NumPy / SciPy twins
# ---------------------------------------------------------------------------


def sparse_rows_forward_twin(X, rows, W, b, activation):
    """act(X[rows] @ W + b) with SciPy's sparse product; activation a name of
    reference.ACTIVATIONS."""
    from .. import reference

    return reference.ACTIVATIONS[activation](np.asarray(X[rows] @ W) + b)


def sparse_param_grad_twin(X, rows, delta, row_start, row_stop):
    """Rows [row_start, row_stop) of [X[rows].T @ delta; delta summed over rows]."""
    block = np.vstack([np.asarray(X[rows].T @ delta), delta.sum(axis=0, keepdims=True)])
    return block[row_start:row_stop]
