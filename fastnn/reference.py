"""Pure-NumPy reference path: the same math as the compiled kernels, written plainly.

This module is the oracle every compiled kernel is tested against.  Each function
here has a twin of the same name and argument order in ``fastnn.kernels``;
arguments named ``out`` are written in place, so the two are interchangeable.

Conventions (batch-major, as in the tutorial): a batch of activations has shape
(n_rows, width), a layer computes ``a = act(a_prev @ W + b)``, and the output
delta of every head is ``(p - y) / n`` because each head is paired with the loss
whose gradient through it is exactly that (softmax + categorical cross-entropy,
sigmoid + binary cross-entropy, identity + half squared error).
"""

import numpy as np

from .network import ACTIVATION_CODES, layer_views

_NAMES = {code: name for name, code in ACTIVATION_CODES.items()}


def softmax(z):
    """Row-wise softmax of z, shape (n_rows, n_classes); shifted by the row max for stability."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z):
    """Logistic function via SciPy's expit, numerically stable for large |z|.

    Imported on first use: SciPy's special functions add 0.1 s to ``import fastnn``.
    """
    from scipy.special import expit

    return expit(z)


#: Activation functions, indexed by name.
ACTIVATIONS = {
    "identity": lambda z: z,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "softmax": softmax,
}

#: Derivative of each hidden activation, written in terms of its output a = act(z).
DERIVATIVES = {
    "identity": lambda a: np.ones_like(a),
    "sigmoid": lambda a: a * (1 - a),
    "tanh": lambda a: 1 - a * a,
    "relu": lambda a: (a > 0).astype(a.dtype),
}


def _log(p):
    """log(p) with p floored at the smallest normal number, so log(0) never appears."""
    return np.log(np.maximum(p, np.finfo(p.dtype).tiny))


#: Loss summed over the rows of a batch, given the head's output p and the target y.
LOSS_SUMS = {
    "softmax": lambda p, y: -np.sum(y * _log(p)),
    "sigmoid": lambda p, y: -np.sum(y * _log(p) + (1 - y) * _log(1 - p)),
    "identity": lambda p, y: 0.5 * np.sum((p - y) ** 2),
}


# ---------------------------------------------------------------------------
# Kernel twins (same names and argument order as fastnn.kernels)
# ---------------------------------------------------------------------------


def dense_forward(a_prev, W, b, activation, out):
    """out = act(a_prev @ W + b).

    a_prev (n, fan_in), W (fan_in, fan_out), b (fan_out,), out (n, fan_out) written
    in place; activation is a kernel code from ``network.ACTIVATION_CODES``.
    """
    out[:] = ACTIVATIONS[_NAMES[activation]](a_prev @ W + b)


def output_delta(p, y, activation, scale, out):
    """out = (p - y) * scale; returns the loss summed over the rows (unscaled).

    p, y and out have shape (n, n_outputs); scale is 1 / (rows in the batch).
    """
    out[:] = (p - y) * scale
    return LOSS_SUMS[_NAMES[activation]](p, y)


def dense_backward(delta, WT, a_prev, activation, out):
    """out = (delta @ WT) * act'(a_prev), the delta of the previous layer.

    delta (n, fan_out), WT (fan_out, fan_in) the transposed weights, a_prev
    (n, fan_in) the previous layer's output, out (n, fan_in) written in place.
    """
    out[:] = (delta @ WT) * DERIVATIVES[_NAMES[activation]](a_prev)


def param_grad(a_prev, delta, row_start, row_stop, out):
    """Rows [row_start, row_stop) of the gradient of a layer's (fan_in + 1, fan_out) block.

    Row k < fan_in is ``a_prev[:, k] @ delta`` (the weight gradient), row fan_in is
    ``delta.sum(axis=0)`` (the bias gradient).  out has shape (row_stop - row_start, fan_out).
    """
    ones = np.ones((a_prev.shape[0], 1), dtype=a_prev.dtype)
    augmented = np.hstack([a_prev, ones])
    out[:] = augmented[:, row_start:row_stop].T @ delta


def sgd_update(params, grads, lr, start, stop):
    """params[start:stop] -= lr * grads[start:stop], in place."""
    params[start:stop] -= lr * grads[start:stop]


# ---------------------------------------------------------------------------
# Whole passes
# ---------------------------------------------------------------------------


def forward(arch, params, X):
    """Activations of every layer: a list ``[X, a_1, ..., a_L]``; a_L is the head's output."""
    activations = [X]
    for (W, b), code in zip(layer_views(arch, params), arch.activation_codes):
        out = np.empty((X.shape[0], W.shape[1]), dtype=params.dtype)
        dense_forward(activations[-1], W, b, code, out)
        activations.append(out)
    return activations


def loss(arch, params, X, Y):
    """Mean loss over the rows of X (Y one-hot for softmax, targets otherwise)."""
    p = forward(arch, params, X)[-1]
    return LOSS_SUMS[arch.head](p, Y) / X.shape[0]


def backward(arch, params, activations, Y):
    """Gradient of the mean loss: a flat buffer with the layout of params.

    Returns (grads, loss) where loss is the mean loss of the batch.
    """
    n = Y.shape[0]
    grads = np.empty_like(params)
    views = layer_views(arch, params)
    codes = arch.activation_codes
    delta = np.empty_like(activations[-1])
    loss_sum = output_delta(activations[-1], Y, codes[-1], 1.0 / n, delta)
    for l in range(arch.n_layers - 1, -1, -1):
        fan_in, fan_out = views[l][0].shape
        block = grads[arch.offsets[l] : arch.offsets[l + 1]].reshape(fan_in + 1, fan_out)
        param_grad(activations[l], delta, 0, fan_in + 1, block)
        if l > 0:
            delta_prev = np.empty_like(activations[l])
            dense_backward(delta, views[l][0].T, activations[l], codes[l - 1], delta_prev)
            delta = delta_prev
    return grads, loss_sum / n


def train_epoch(arch, params, X, Y, order, batch_size, lr):
    """One epoch of mini-batch SGD over the rows ``X[order]``; params updated in place.

    order is an int64 permutation of the rows, batch_size the rows per batch (the
    last batch may be smaller).  Returns the mean training loss over the epoch's rows,
    measured before each batch's update (as Keras and scikit-learn report it).
    """
    total = 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        activations = forward(arch, params, X[rows])
        grads, batch_loss = backward(arch, params, activations, Y[rows])
        sgd_update(params, grads, lr, 0, params.size)
        total += batch_loss * len(rows)
    return total / len(order)


def predict_proba(arch, params, X):
    """Output of the head for X: probabilities for softmax/sigmoid, values for identity."""
    return forward(arch, params, X)[-1]
