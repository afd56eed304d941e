"""Serial compiled kernels of a dense layer; twins of the functions in ``fastnn.reference``.

Every kernel works on one block of rows and writes its ``out`` argument in place.
The parallel epoch driver (``fastnn.kernels.epoch``) calls them on fixed chunks.

All three matrix products of a layer (forward, delta propagation, weight gradient)
go through one register-tiled routine, ``gemm.gemm``, which also starts the forward
tile from the bias; the activation and its derivative run on the rows just written,
while they are in cache.  gemm's start mode is passed as an int64 variable (one
compiled specialisation per array layout instead of one per literal).
``dense_forward``, ``dense_backward``, ``output_delta`` and ``count_right`` are
inlined into their callers (Numba IR): each is one function less for Numba to
compile in a run, at no measured cost in speed (docs/performance.md, "Start-up").
"""

import numpy as np
from numba import njit, types
from numba.core.extending import overload

from .. import config
from ..network import LOSS_CODES
from .activations import activate_rows, fast_exp, multiply_derivative_rows, SIGMOID, SOFTMAX
from .gemm import ACCUMULATE, BIAS, ZERO, gemm, gemm_sgd, transpose

#: The head's code for an identity head trained with the poisson loss (``network.LOSS_CODES``).
POISSON = LOSS_CODES["poisson"]

#: The smallest normal numbers, as constants (np.finfo in compiled code is several
#: more functions for Numba to compile).
TINY_FLOAT32, TINY_FLOAT64 = float(np.finfo(np.float32).tiny), float(np.finfo(np.float64).tiny)


@njit(**config.JIT_OPTIONS)
def matmul_acc(a, b, c):
    """c += a @ b for a (m, k) at any strides, b (k, n) and c (m, n) with contiguous rows.

    Each element of c gets its sum over k added in order 0..k-1 (see ``gemm``).
    """
    if c.shape[0] > 0:
        gemm(a, b, c, c[0], np.int64(ACCUMULATE))


@njit(inline="always", **config.JIT_OPTIONS)
def dense_forward(a_prev, W, b, activation, out):
    """out = act(a_prev @ W + b), fused: the activation runs on the block while it is in cache.

    a_prev (n, fan_in), W (fan_in, fan_out) C-contiguous, b (fan_out,),
    out (n, fan_out) C-contiguous, written in place.
    """
    gemm(a_prev, W, out, b, np.int64(BIAS))
    activate_rows(out, activation)


@njit(inline="always", **config.JIT_OPTIONS)
def output_delta(p, y, activation, scale, out):
    """out = (p - y) * scale[:, None]; returns the loss of each row times its scale, summed.

    p is the head's output, y the target, both (n, n_outputs); scale (n,) is each
    row's weight over the batch's total weight (1 / n without sample weights), so
    the return value is the batch's mean loss.  activation is the head's code
    (softmax: categorical cross-entropy, sigmoid: binary cross-entropy, identity:
    half squared error).  Probabilities are floored at the smallest normal number
    before the log.

    ``POISSON`` (an identity head trained with scikit-learn's poisson loss): p holds
    z, the prediction is exp(z), out = (exp(z) - y) * scale[:, None] and the loss is
    the half Poisson deviance exp(z) - y z + (y log y - y), scikit-learn's
    ``poisson_loss`` with its constant y log y - y (0 log 0 = 0); the loss is summed
    in float64.
    """
    n, width = p.shape
    tiny = p.dtype.type(TINY_FLOAT32 if p.itemsize == 4 else TINY_FLOAT64)
    one = p.dtype.type(1.0)
    loss = 0.0
    for i in range(n):
        if activation == POISSON:
            for j in range(width):  # fast_exp: libm's exp would keep the loop scalar
                out[i, j] = (fast_exp(p[i, j]) - y[i, j]) * scale[i]
        else:
            for j in range(width):
                out[i, j] = (p[i, j] - y[i, j]) * scale[i]
        row_loss = 0.0
        if activation == SOFTMAX:
            for j in range(width):
                if y[i, j] != 0:
                    row_loss -= y[i, j] * np.log(max(p[i, j], tiny))
        elif activation == SIGMOID:
            for j in range(width):
                row_loss -= y[i, j] * np.log(max(p[i, j], tiny)) + (one - y[i, j]) * np.log(
                    max(one - p[i, j], tiny)
                )
        elif activation == POISSON:
            for j in range(width):
                z, target = np.float64(p[i, j]), np.float64(y[i, j])
                row_loss += np.float64(fast_exp(p[i, j])) - target * z - target
                if target != 0:  # y log y; a negative y gives NaN, as scikit-learn's xlogy
                    row_loss += target * np.log(target)
        else:
            for j in range(width):
                row_loss += 0.5 * (p[i, j] - y[i, j]) ** 2
        loss += scale[i] * row_loss
    return loss


@njit(inline="always", **config.JIT_OPTIONS)
def count_right(p, y, activation, scale):
    """The rows of p predicted right for y, each counted as scale[i]; a float64.

    softmax: the first arg max of the row agrees; other heads: every output is on
    the same side of 0.5 as its target.  p, y (n, n_outputs), scale (n,) as for
    ``output_delta``, so the return value is the batch's (weighted) accuracy.
    """
    n, width = p.shape
    half = p.dtype.type(0.5)
    right = 0.0
    for i in range(n):
        if activation == SOFTMAX:
            p_max, y_max = 0, 0
            for j in range(1, width):
                if p[i, j] > p[i, p_max]:
                    p_max = j
                if y[i, j] > y[i, y_max]:
                    y_max = j
            row_right = p_max == y_max
        else:
            row_right = True
            for j in range(width):
                if (p[i, j] > half) != (y[i, j] > half):
                    row_right = False
        if row_right:
            right += scale[i]
    return right


@njit(inline="always", **config.JIT_OPTIONS)
def transposes_w(fan_in, fan_out, n):
    """Whether ``product_through_w`` multiplies n rows of delta by a W.T that it makes,
    rather than transposing delta and the product: when W (fan_in x fan_out) has
    fewer elements than the two together, n (fan_in + fan_out); a 10-wide head."""
    return fan_in * fan_out < n * (fan_in + fan_out)


@njit(inline="always", **config.JIT_OPTIONS)
def through_w_scratch_size(fan_in, fan_out, n):
    """Elements of the scratch ``product_through_w`` needs for n rows of delta: room for
    delta.T and the product's transpose, which also holds W.T where it is made."""
    return (fan_in + fan_out) * n


@njit(inline="always", **config.JIT_OPTIONS)
def product_through_w(delta, W, scratch, out):
    """out = delta @ W.T without a stored W.T (``delta_product``'s second form), W
    (n_panels, fan_in, width) read panel by panel: each panel's columns of W continue the
    sums of the panels before (a (1, fan_in, fan_out) view of W is one panel).

    Either out.T = W @ delta.T, delta and the product transposed through scratch, or,
    for W of one panel where ``transposes_w``, out = delta @ W.T with W.T written to
    scratch; the rule also says that it fits.  scratch is 1-D, at least
    ``through_w_scratch_size`` elements.  Both give the same sums of the same fused
    multiply-adds, their two factors swapped.
    """
    n, fan_out = delta.shape
    fan_in, width = out.shape[1], W.shape[2]
    if n == 0:
        return
    if W.shape[0] == 1 and transposes_w(fan_in, fan_out, n):
        WT = scratch[: fan_out * fan_in].reshape((fan_out, fan_in))
        transpose(W[0][:, :fan_out], WT)
        gemm(delta, WT, out, out[0], np.int64(ZERO))
        return
    delta_t = scratch[: fan_out * n].reshape((fan_out, n))
    out_t = scratch[fan_out * n : (fan_out + fan_in) * n].reshape((fan_in, n))
    transpose(delta, delta_t)
    for p in range(W.shape[0]):
        j0 = p * width
        j1 = min(j0 + width, fan_out)
        start = np.int64(ZERO) if p == 0 else np.int64(ACCUMULATE)
        gemm(W[p][:, : j1 - j0], delta_t[j0:j1], out_t, out_t[0], start)
    transpose(out_t, out)


@njit(inline="always", **config.JIT_OPTIONS)
def product_from_copy(delta, WT, out):
    """out = delta @ W.T with W.T given (``delta_product``'s first form)."""
    if out.shape[0] > 0:
        gemm(delta, WT, out, out[0], np.int64(ZERO))


def delta_product(delta, WT, out):
    """out = delta @ W.T: the product of the delta propagation, in one of two forms.

    delta (n, fan_out), out (n, fan_in) with contiguous rows, written.  WT is either
    W.T, (fan_out, fan_in), as ``gemm`` reads b (the epoch driver keeps a copy in
    panel layout); or a tuple (W, scratch): W as the forward pass reads it, its
    panels (n_panels, fan_in, NR: ``gemm.panel_width``) or a (1, fan_in, fan_out) view
    of W in place (``epoch.forward_weights``), and a 1-D scratch array of at least
    ``through_w_scratch_size`` elements.  Then out.T = W @ delta.T: delta is transposed
    into scratch, the product written there panel by panel, each continuing the
    sums, and transposed into out; or, for a narrow W, W.T is made in scratch
    (``product_through_w``).  Each element is the same sum in the same order with the
    same fused multiply-adds (their two factors swapped), so both forms give bitwise
    the same out; the second needs no stored W.T, which the update tasks would
    refresh after every step (``epoch.propagates_through_w``).
    Compiled code calls the overload, which picks the form by WT's type.
    """
    if isinstance(WT, tuple):
        product_through_w(delta, WT[0], WT[1], out)
    else:
        product_from_copy(delta, WT, out)


@overload(delta_product, jit_options=config.JIT_OPTIONS)
def _delta_product_overload(delta, WT, out):
    if isinstance(WT, types.BaseTuple):
        def through_w(delta, WT, out):
            product_through_w(delta, WT[0], WT[1], out)
        return through_w

    def from_copy(delta, WT, out):
        product_from_copy(delta, WT, out)
    return from_copy


@njit(inline="always", **config.JIT_OPTIONS)
def dense_backward(delta, WT, a_prev, activation, out):
    """out = (delta @ W.T) * act'(a_prev), the delta of the previous layer, fused.

    delta (n, fan_out); WT the transposed weights (fan_out, fan_in), C-contiguous
    (the epoch driver keeps this copy up to date), or W read in place with two
    scratch arrays (``delta_product``); a_prev (n, fan_in) the previous layer's
    output, from which the derivative is computed; out (n, fan_in) written.
    """
    delta_product(delta, WT, out)
    multiply_derivative_rows(out, a_prev, activation)


@njit(inline="always", **config.JIT_OPTIONS)
def _weight_product(a, b, c, start, w, lr, w_panels):
    """c = start + a @ b, or with w given and lr non-zero, w -= lr * (start + a @ b), w
    being in w_panels instead when that is given and not empty (``gemm.gemm_sgd``)."""
    if w is None:  # pruned by Numba when w's type is None
        gemm(a, b, c, c[0], start)
    else:
        gemm_sgd(a, b, c, w[: c.shape[0]], start, lr, w_panels)


@njit(**config.JIT_OPTIONS)
def param_grad(a_prev, delta, row_start, row_stop, out, accumulate=False, delta_b=None, w=None,
               lr=0.0, w_panels=None):
    """Rows [row_start, row_stop) of a layer's (fan_in + 1, fan_out) gradient block.

    Row k < fan_in is a_prev[:, k] @ delta (weights), row fan_in is delta summed over
    rows (bias).  a_prev (n, fan_in), delta (n, fan_out), out (row_stop - row_start,
    fan_out) written in place, or added to with accumulate: each element's sum then
    continues from out, so gradients summed over consecutive row blocks are bitwise
    the gradient of their rows in one call.  Rows are summed in their order 0..n-1.
    delta_b, if given, is delta as the weights' product reads it (a 3-D array for
    ``gemm``: delta in panel layout, or a (1, n, fan_out) view; same bits).
    w, the same rows of the layer's parameter block (out's shape), with lr non-zero (a
    scalar of the dtype): the weight rows take a plain SGD step, w -= lr * gradient,
    applied by the product tile by tile (``gemm.gemm_sgd``; bitwise this function
    then ``optimizers.sgd_step``), and out's weight rows are scratch; the bias row is
    written to out as without w.  w_panels, if given (and not empty): the same weight
    rows in the forward pass's panel copy of W, (ceil(fan_out / NR), >= their number,
    NR), where the step reads and stores them instead of in w, whose weight rows it
    then leaves as they were (``gemm.gemm_sgd``).
    """
    fan_in = a_prev.shape[1]
    weight_stop = min(row_stop, fan_in)
    if weight_stop > row_start:
        start = np.int64(ACCUMULATE if accumulate else ZERO)
        c = out[: weight_stop - row_start]
        if delta_b is None:  # pruned by Numba when delta_b is omitted
            _weight_product(a_prev[:, row_start:weight_stop].T, delta, c, start, w, lr,
                            w_panels)
        else:
            _weight_product(a_prev[:, row_start:weight_stop].T, delta_b, c, start, w, lr,
                            w_panels)
    if row_stop > fan_in:
        bias = out[fan_in - row_start]
        if not accumulate:
            for j in range(delta.shape[1]):
                bias[j] = 0
        for i in range(delta.shape[0]):
            for j in range(delta.shape[1]):
                bias[j] += delta[i, j]
