"""Pure-NumPy reference path: the same math as the compiled kernels, written plainly.

This module is the oracle every compiled kernel is tested against.  Each function
here has a twin of the same name and argument order in ``fastnn.kernels``;
arguments named ``out`` are written in place, so the two are interchangeable.

Conventions (batch-major, as in the tutorial): a batch of activations has shape
(n_rows, width), a layer computes ``a = act(a_prev @ W + b)``, and the output
delta of every head is ``(p - y) / n`` because each head is paired with the loss
whose gradient through it is exactly that (softmax + categorical cross-entropy,
sigmoid + binary cross-entropy, identity + half squared error).  An identity head
trained with the poisson loss (``network.LOSS_CODES``) keeps z as its output and
predicts exp(z); its delta is ``(exp(z) - y) / n`` (exp is that loss's canonical link).
"""

import dataclasses

import numpy as np

from .checks import is_sparse
from .network import ACTIVATION_CODES, LOSS_CODES, NEGATIVE_SLOPE, SAVED_DERIVATIVES, layer_views
from .optimizers import OPTIMIZER_CODES

#: The activation of each kernel code (a head's loss code: the identity, its forward pass)
#: and the loss of each head's code (``ROW_LOSSES``).
_NAMES = {code: name for name, code in ACTIVATION_CODES.items()}
_NAMES.update({code: "identity" for code in LOSS_CODES.values()})
_LOSS_NAMES = {**_NAMES, **{code: name for name, code in LOSS_CODES.items()}}
_OPTIMIZER_NAMES = {code: name for name, code in OPTIMIZER_CODES.items()}


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


#: elu's and selu's constants (Klambauer et al. 2017), as in the kernels.
ELU_ALPHA = 1.0
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946


def leaky_relu(z, negative_slope=NEGATIVE_SLOPE):
    """z where z > 0, negative_slope * z elsewhere."""
    return np.where(z > 0, z, z.dtype.type(negative_slope) * z)


def _scaled_elu(z, alpha, scale):
    """scale * (z if z > 0 else alpha * (exp(z) - 1)), in z's dtype."""
    dtype = z.dtype.type
    return dtype(scale) * np.where(z > 0, z, dtype(alpha) * np.expm1(np.minimum(z, 0)))


def _normal_cdf(z):
    """Phi(z) = 0.5 * erfc(-z / sqrt(2)): the same as 0.5 * (1 + erf(z / sqrt(2))), but
    without the cancellation of 1 + erf for z << 0."""
    from scipy.special import erfc

    dtype = z.dtype.type
    return dtype(0.5) * erfc(-z * dtype(0.7071067811865476)).astype(z.dtype)


def softplus(z):
    """log(1 + exp(z)), written as max(z, 0) + log1p(exp(-|z|)) so that exp never overflows."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


#: Activation functions, indexed by name.
ACTIVATIONS = {
    "identity": lambda z: z,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "softmax": softmax,
    "leaky_relu": leaky_relu,
    "elu": lambda z: _scaled_elu(z, ELU_ALPHA, 1.0),
    "selu": lambda z: _scaled_elu(z, SELU_ALPHA, SELU_LAMBDA),
    "gelu": lambda z: z * _normal_cdf(z),
    "softplus": softplus,
    "silu": lambda z: z * sigmoid(z),
}

#: Derivative of each hidden activation but gelu, softplus and silu, written in terms
#: of its output a = act(z) (for leaky_relu, elu and selu a > 0 exactly where z > 0).
DERIVATIVES = {
    "identity": lambda a: np.ones_like(a),
    "sigmoid": lambda a: a * (1 - a),
    "tanh": lambda a: 1 - a * a,
    "relu": lambda a: (a > 0).astype(a.dtype),
    "leaky_relu": lambda a, negative_slope=NEGATIVE_SLOPE: np.where(
        a > 0, a.dtype.type(1), a.dtype.type(negative_slope)),
    "elu": lambda a: np.where(a > 0, a.dtype.type(1), a + a.dtype.type(ELU_ALPHA)),
    "selu": lambda a: np.where(a > 0, a.dtype.type(SELU_LAMBDA),
                               a + a.dtype.type(SELU_LAMBDA) * a.dtype.type(SELU_ALPHA)),
}


def _silu_derivative(z):
    s = sigmoid(z)
    return s * (1 + z * (1 - s))


#: Derivative of gelu, softplus and silu, written in terms of z (they are not
#: functions of their output alone, or not accurately): the forward pass saves it.
Z_DERIVATIVES = {
    "gelu": lambda z: _normal_cdf(z) + z * z.dtype.type(0.3989422804014327) * np.exp(
        z.dtype.type(-0.5) * z * z),
    "softplus": sigmoid,
    "silu": _silu_derivative,
}

#: Activations that take a parameter, and the keyword it goes by.
PARAMETERS = {"leaky_relu": "negative_slope"}


def apply_activation(name, z, slope=NEGATIVE_SLOPE):
    """ACTIVATIONS[name](z), given leaky_relu's negative slope."""
    if name in PARAMETERS:
        return ACTIVATIONS[name](z, slope)
    return ACTIVATIONS[name](z)


def output_derivative(name, a, slope=NEGATIVE_SLOPE):
    """DERIVATIVES[name](a), given leaky_relu's negative slope."""
    if name in PARAMETERS:
        return DERIVATIVES[name](a, slope)
    return DERIVATIVES[name](a)


def _log(p):
    """log(p) with p floored at the smallest normal number, so log(0) never appears."""
    return np.log(np.maximum(p, np.finfo(p.dtype).tiny))


def poisson_deviance(z, y):
    """Half Poisson deviance of each row (shape (n,), float64) of the prediction exp(z).

    ``exp(z) - y z + (y log y - y)`` summed over outputs: scikit-learn's
    ``poisson_loss`` (``xlogy(y, y / exp(z)) - y + exp(z)``) with its constant
    y log y - y, 0 log 0 = 0.  exp is taken in z's dtype (the network's prediction),
    the rest in float64.
    """
    from scipy.special import xlogy

    mean = np.exp(z).astype(np.float64)
    z, y = z.astype(np.float64), np.asarray(y, dtype=np.float64)
    return np.sum(mean - y * z + (xlogy(y, y) - y), axis=1)


#: Loss of each row (shape (n,)), given the head's output p and the target y (for
#: "poisson", the output z of the identity head it trains).
ROW_LOSSES = {
    "softmax": lambda p, y: -np.sum(y * _log(p), axis=1),
    "sigmoid": lambda p, y: -np.sum(y * _log(p) + (1 - y) * _log(1 - p), axis=1),
    "identity": lambda p, y: 0.5 * np.sum((p - y) ** 2, axis=1),
    "poisson": poisson_deviance,
}


def rows_right(head, y, p):
    """bool (n,): the rows whose output p is right for target y.

    softmax: the arg max agrees (the first one, on ties); other heads: every output
    is on the same side of 0.5 as its target.  This is the "accuracy" metric.
    """
    if head == "softmax":
        return y.argmax(axis=1) == p.argmax(axis=1)
    return ((y > 0.5) == (p > 0.5)).all(axis=1)


# ---------------------------------------------------------------------------
# Kernel twins (same names and argument order as fastnn.kernels)
# ---------------------------------------------------------------------------


def dense_forward(a_prev, W, b, activation, out):
    """out = act(a_prev @ W + b).

    a_prev (n, fan_in), W (fan_in, fan_out), b (fan_out,), out (n, fan_out) written
    in place; activation is a kernel code from ``network.ACTIVATION_CODES``.
    """
    out[:] = ACTIVATIONS[_NAMES[activation]](a_prev @ W + b)


def forward_layer(a_prev, W, b, activation, slope, out):
    """out = act(a_prev @ W + b) for every activation; slope is leaky_relu's."""
    out[:] = apply_activation(_NAMES[activation], a_prev @ W + b, slope)


def forward_layer_saving(a_prev, W, b, activation, out, deriv):
    """out = act(z), deriv = act'(z), z = a_prev @ W + b, for gelu, softplus and silu."""
    name = _NAMES[activation]
    z = a_prev @ W + b
    out[:] = ACTIVATIONS[name](z)
    deriv[:] = Z_DERIVATIVES[name](z)


def backward_layer(delta, WT, a_prev, activation, slope, deriv, out):
    """out = (delta @ WT) * act'(z_prev): act' from a_prev, or deriv where it was saved."""
    name = _NAMES[activation]
    factor = deriv if name in SAVED_DERIVATIVES else output_derivative(name, a_prev, slope)
    out[:] = (delta @ WT) * factor


def output_delta(p, y, activation, scale, out):
    """out = (p - y) * scale[:, None]; returns the loss of each row times its scale, summed.

    p, y and out have shape (n, n_outputs); scale (n,) is each row's weight over the
    batch's total weight (1 / n without sample weights), so the return value is the
    batch's (weighted) mean loss.  For the poisson code p holds z and
    out = (exp(z) - y) * scale[:, None].
    """
    name = _LOSS_NAMES[activation]
    mean = np.exp(p) if name == "poisson" else p
    out[:] = (mean - y) * scale[:, None]
    return float(np.sum(scale * ROW_LOSSES[name](p, y)))


def count_right(p, y, activation, scale):
    """The rows of p predicted right for y (``rows_right``), each counted as its scale.

    p, y (n, n_outputs); scale (n,) as for ``output_delta``, so the return value is
    the batch's (weighted) accuracy.
    """
    return float(np.sum(scale * rows_right(_NAMES[activation], y, p)))


def dense_backward(delta, WT, a_prev, activation, out):
    """out = (delta @ WT) * act'(a_prev), the delta of the previous layer.

    delta (n, fan_out), WT (fan_out, fan_in) the transposed weights, a_prev
    (n, fan_in) the previous layer's output, out (n, fan_in) written in place.
    """
    out[:] = (delta @ WT) * DERIVATIVES[_NAMES[activation]](a_prev)


def param_grad(a_prev, delta, row_start, row_stop, out, accumulate=False, w=None, lr=0.0,
               w_panels=None):
    """Rows [row_start, row_stop) of the gradient of a layer's (fan_in + 1, fan_out) block.

    Row k < fan_in is ``a_prev[:, k] @ delta`` (the weight gradient), row fan_in is
    ``delta.sum(axis=0)`` (the bias gradient).  out has shape (row_stop - row_start,
    fan_out); it is overwritten, or added to with accumulate.  With w (the same rows of
    the parameter block) and lr non-zero, the weight rows also take a plain SGD step,
    w -= lr * gradient (the compiled kernel leaves out's weight rows as scratch then);
    with w_panels, the same rows in panel layout (n_panels, >= their number, NR), the
    weight rows take the step there instead (its columns past fan_out untouched) and
    w's weight rows are left as they were.
    """
    ones = np.ones((a_prev.shape[0], 1), dtype=a_prev.dtype)
    augmented = np.hstack([a_prev, ones])
    block = augmented[:, row_start:row_stop].T @ delta
    if accumulate:
        out += block
    else:
        out[:] = block
    if w is not None and lr != 0:
        weights = max(0, min(row_stop, a_prev.shape[1]) - row_start)
        if w_panels is None or not w_panels.size:
            w[:weights] -= lr * out[:weights]
        else:
            nr = w_panels.shape[2]
            for p in range(w_panels.shape[0]):
                columns = out[:weights, p * nr : (p + 1) * nr]
                w_panels[p, :weights, : columns.shape[1]] -= lr * columns


def add_l2(grads, params, start, stop, l2):
    """grads[start:stop] += l2 * params[start:stop] (the L2 penalty's gradient), in place.

    Returns sum(params[start:stop] ** 2) as a float (for the penalty's value).
    """
    p = params[start:stop]
    grads[start:stop] += l2 * p
    return float(np.sum(p.astype(np.float64) ** 2))


def optimizer_step(params, grads, slots, start, stop, code, hyper, lr, step):
    """One update of params[start:stop] and of the state slots[:, start:stop], in place.

    The rules are written out in ``fastnn.optimizers``; code, hyper (3,) and step as
    in the compiled twin.
    """
    dtype = params.dtype.type
    p, g, s = params[start:stop], grads[start:stop], slots[:, start:stop]
    name = _OPTIMIZER_NAMES[code]
    if name == "sgd":
        momentum, nesterov = dtype(hyper[0]), hyper[1] != 0
        if slots.shape[0] == 0:
            p -= lr * g
            return
        s[0] = momentum * s[0] - lr * g
        p += momentum * s[0] - lr * g if nesterov else s[0]
    elif name == "rmsprop":
        rho, eps = dtype(hyper[0]), dtype(hyper[1])
        s[0] = rho * s[0] + (1 - rho) * g * g
        p -= lr * g / (np.sqrt(s[0]) + eps)
    elif name == "adam":
        beta1, beta2, eps = dtype(hyper[0]), dtype(hyper[1]), dtype(hyper[2])
        lr_t = dtype(float(lr) * np.sqrt(1.0 - hyper[1] ** step) / (1.0 - hyper[0] ** step))
        s[0] = beta1 * s[0] + (1 - beta1) * g
        s[1] = beta2 * s[1] + (1 - beta2) * g * g
        p -= lr_t * s[0] / (np.sqrt(s[1]) + eps)
    else:  # adadelta
        rho, eps = dtype(hyper[0]), dtype(hyper[1])
        s[0] = rho * s[0] + (1 - rho) * g * g
        d = np.sqrt(s[1] + eps) / np.sqrt(s[0] + eps) * g
        s[1] = rho * s[1] + (1 - rho) * d * d
        p -= lr * d


# ---------------------------------------------------------------------------
# Whole passes
# ---------------------------------------------------------------------------


def forward(arch, params, X):
    """Activations of every layer: a list ``[X, a_1, ..., a_L]``; a_L is the head's output.

    A SciPy sparse X is made dense first (the twin of the compiled sparse first layer).
    """
    if is_sparse(X):
        X = X.toarray()
    activations = [X]
    for (W, b), code in zip(layer_views(arch, params), arch.activation_codes):
        out = np.empty((X.shape[0], W.shape[1]), dtype=params.dtype)
        forward_layer(activations[-1], W, b, code, arch.negative_slope, out)
        activations.append(out)
    return activations


#: SplitMix64's Weyl increment and finaliser constants (``kernels.dropout`` states the generator).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix(x):
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _MIX_1
    x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


def dropout_keep(seed, step, n_rows, first_unit, width, rate):
    """bool (n_rows, width): the units of batch rows 0..n_rows-1 and units first_unit.. kept.

    Unit u of row r is kept when the top 32 bits of
    splitmix(splitmix(splitmix(seed + (step+1) G) + (r+1) G) + (u+1) G) are below
    round((1 - rate) * 2**32), G = 0x9E3779B97F4A7C15: the twin of ``kernels.dropout``.
    """
    seed = np.full((1, 1), seed, dtype=np.uint64)
    rows = np.arange(1, n_rows + 1, dtype=np.uint64)[:, None]
    units = np.arange(first_unit + 1, first_unit + width + 1, dtype=np.uint64)[None, :]
    key = _splitmix(seed + np.full((1, 1), step + 1, dtype=np.uint64) * _GOLDEN)
    key = _splitmix(key + rows * _GOLDEN)
    bits = _splitmix(key + units * _GOLDEN)
    return (bits >> np.uint64(32)) < np.uint64(round((1.0 - rate) * 2.0**32))


def forward_train(arch, params, X, rates, seed, step):
    """The training forward pass with dropout: (activations, factors).

    rates (n_layers,) is the dropout rate of each layer's input.  activations is
    ``[X~, a~_1, ..., a_L]``, each dropped block multiplied by its mask / (1 - rate)
    (the head's output a_L never is); factors[l] is, for a dropped hidden block l,
    act'(z_l) times that same multiplier (what the backward pass multiplies by), and
    None elsewhere.  Batch row r's units are drawn with row r (``dropout_keep``).
    """
    dtype = params.dtype.type
    n = X.shape[0]
    starts = np.concatenate([[0], np.cumsum(arch.sizes)])  # first unit of each block

    def multiplier(l, width):
        keep = dropout_keep(seed, step, n, int(starts[l]), width, rates[l])
        return np.where(keep, dtype(1.0 / (1.0 - rates[l])), dtype(0.0))

    activations = [X * multiplier(0, X.shape[1]) if rates[0] > 0 else X]
    factors = [None] * (arch.n_layers + 1)
    for l, ((W, b), name) in enumerate(zip(layer_views(arch, params), arch.layer_activations)):
        z = activations[-1] @ W + b
        a = apply_activation(name, z, arch.negative_slope)
        if l + 1 < arch.n_layers and rates[l + 1] > 0:
            m = multiplier(l + 1, a.shape[1])
            d = (Z_DERIVATIVES[name](z) if name in SAVED_DERIVATIVES
                 else output_derivative(name, a, arch.negative_slope))
            factors[l + 1] = d * m
            a = a * m
        activations.append(a)
    return activations, factors


def loss(arch, params, X, Y):
    """Mean loss over the rows of X (Y one-hot for softmax, targets otherwise)."""
    p = forward(arch, params, X)[-1]
    return float(np.mean(ROW_LOSSES[arch.loss or arch.head](p, Y)))


def backward(arch, params, activations, Y, scale=None, factors=None):
    """Gradient of the batch's (weighted) mean loss: a flat buffer with the layout of params.

    scale (n,) weighs each row (default 1 / n, the plain mean).  factors, from
    ``forward_train``, holds the derivative (times the dropout multiplier) of the
    dropped blocks.  Returns (grads, loss) where loss is the batch's mean loss.
    """
    n = Y.shape[0]
    if scale is None:
        scale = np.full(n, 1.0 / n, dtype=params.dtype)
    grads = np.empty_like(params)
    views = layer_views(arch, params)
    codes = arch.activation_codes
    delta = np.empty_like(activations[-1])
    batch_loss = output_delta(activations[-1], Y, codes[-1], scale, delta)
    for l in range(arch.n_layers - 1, -1, -1):
        fan_in, fan_out = views[l][0].shape
        block = grads[arch.offsets[l] : arch.offsets[l + 1]].reshape(fan_in + 1, fan_out)
        param_grad(activations[l], delta, 0, fan_in + 1, block)
        if l > 0:
            delta_prev = np.empty_like(activations[l])
            deriv = None
            if factors is not None and factors[l] is not None:  # a dropped block
                delta_prev[:] = (delta @ views[l][0].T) * factors[l]
                delta = delta_prev
                continue
            if arch.activations[l - 1] in SAVED_DERIVATIVES:  # act'(z): z computed again
                W_prev, b_prev = views[l - 1]
                deriv = Z_DERIVATIVES[arch.activations[l - 1]](activations[l - 1] @ W_prev + b_prev)
            backward_layer(delta, views[l][0].T, activations[l], codes[l - 1],
                           arch.negative_slope, deriv, delta_prev)
            delta = delta_prev
    return grads, batch_loss


def loss_and_grad(arch, params, X, Y, l2=0.0, sample_weight=None):
    """(loss, grads): the full-batch objective that L-BFGS minimises, with no update.

    loss is the (weighted) mean loss over all rows of X plus ``0.5 * l2 * sum(W**2)``
    over the rows' total weight (weights only, scikit-learn's alpha), a float; grads
    its gradient, a flat buffer with the layout of params.  Twin of
    ``fastnn.kernels.objective.loss_and_grad``.
    """
    weights = np.ones(X.shape[0], dtype=params.dtype) if sample_weight is None else sample_weight
    total_weight = weights.sum()
    grads, total_loss = backward(arch, params, forward(arch, params, X), Y,
                                 weights * (1 / total_weight))
    total_loss += _add_l2_penalty(arch, params, grads, l2, total_weight)
    return float(total_loss), grads


def poisson_loss_and_grad(arch, params, X, Y, l2=0.0, sample_weight=None):
    """``loss_and_grad`` of an identity-head network trained with scikit-learn's
    ``loss="poisson"``: the network whose head has the poisson code
    (``Architecture(..., loss="poisson")``; arch's loss is set here if it is not).
    """
    if arch.loss is None:
        arch = dataclasses.replace(arch, loss="poisson")  # refuses a head that is not identity
    return loss_and_grad(arch, params, X, Y, l2, sample_weight)


def _add_l2_penalty(arch, params, grads, l2, total_weight):
    """Add l2 / total_weight times every weight (not bias) to grads; return the penalty."""
    if l2 == 0:
        return 0.0
    squares = 0.0
    for l, (fan_in, fan_out) in enumerate(zip(arch.sizes[:-1], arch.sizes[1:])):
        first = arch.offsets[l]  # the layer's weights, not its bias row
        squares += add_l2(grads, params, first, first + fan_in * fan_out,
                          params.dtype.type(l2) * (1 / total_weight))
    return 0.5 * l2 / total_weight * squares


def train_epoch(arch, params, X, Y, order, first_row, stop, totals, batch_size, lr, code=0,
                hyper=None, slots=None, step=0, l2=0.0, sample_weight=None, dropout=None,
                dropout_seed=0):
    """Mini-batches over the rows ``X[order[first_row:]]``; params updated in place.

    order is an int64 permutation of the rows, first_row where to start in it, stop
    an int64 array of shape (1,) read before every batch (non-zero: return there),
    totals a float64 array of shape (3,) of running sums added to in place (see
    below), batch_size the rows per batch (the last batch may be smaller).  code, hyper and
    slots select the optimizer and hold its state (default: plain SGD); step counts
    the mini-batches done before this call.  l2 adds ``0.5 * l2 * sum(W**2)`` (weights
    only, not biases; scikit-learn's ``alpha``) divided by the batch's weight (its
    number of rows without sample weights) to each batch's loss.
    sample_weight (n_samples,) weighs the rows.  dropout (n_layers,) holds the
    dropout rate of each layer's input (``forward_train``), dropout_seed its seed.

    totals[0] gets each batch's (weighted) mean loss, measured before its update
    (as Keras and scikit-learn report it), times the batch's weight, totals[1] that
    weight, and totals[2] the batch's accuracy (``count_right``) times its weight.
    Returns where in order the next batch starts, as the compiled twin.
    """
    dtype = params.dtype.type
    hyper = np.zeros(3) if hyper is None else hyper
    slots = np.zeros((0, params.size), dtype=params.dtype) if slots is None else slots
    weights = np.ones(X.shape[0], dtype=params.dtype) if sample_weight is None else sample_weight
    start = first_row
    while start < len(order) and stop[0] == 0:
        rows = order[start : start + batch_size]
        step += 1
        batch_weight = weights[rows].sum()
        factors = None
        if dropout is None:
            activations = forward(arch, params, X[rows])
        else:
            activations, factors = forward_train(arch, params, X[rows], dropout, dropout_seed,
                                                 step)
        scale = weights[rows] * (1 / batch_weight)
        grads, batch_loss = backward(arch, params, activations, Y[rows], scale, factors)
        batch_right = count_right(activations[-1], Y[rows], arch.activation_codes[-1], scale)
        if l2 != 0:
            penalty = 0.0
            for l, (fan_in, fan_out) in enumerate(zip(arch.sizes[:-1], arch.sizes[1:])):
                first = arch.offsets[l]  # the layer's weights, not its bias row
                penalty += add_l2(grads, params, first, first + fan_in * fan_out,
                                  dtype(l2) * (1 / batch_weight))
            batch_loss += 0.5 * dtype(l2) * (1 / batch_weight) * penalty
        for l in range(arch.n_layers):
            optimizer_step(params, grads, slots, arch.offsets[l], arch.offsets[l + 1], code, hyper,
                           dtype(lr), step)
        totals[0] += batch_loss * batch_weight
        totals[1] += batch_weight
        totals[2] += batch_right * batch_weight
        start += len(rows)
    return start


def predict_proba(arch, params, X):
    """Output of the head for X: probabilities for softmax/sigmoid, values for identity."""
    return forward(arch, params, X)[-1]
