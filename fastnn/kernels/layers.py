"""One dense layer forward and backward, for every activation: the engine's fused kernels
for the first five, the product then ``activations``' element-wise kernels for the others.

These sit between the epoch drivers and ``dense``: for identity, sigmoid, tanh,
relu and softmax they call ``dense_forward`` / ``dense_backward`` exactly as the
drivers always did (same code, same results).  For the activations added after
them the product runs with the identity code, then the activation (and, for gelu,
softplus and silu, its saved derivative: see ``fastnn.kernels.activations``).
Twins of the functions of the same names in ``fastnn.reference``.
"""

from numba import njit

from .. import config
from .activations import (IDENTITY, activate, activate_saving_derivative, fused,
                          multiply_derivative_from_output, multiply_rows, saves_derivative)
from .dense import dense_backward, dense_forward


@njit(**config.JIT_OPTIONS)
def forward_layer(a_prev, W, b, activation, unfused, out):
    """out = act(a_prev @ W + b); shapes as for ``dense_forward``, unfused as
    ``activations.unfused_argument`` gives it (the activations compiled, and
    leaky_relu's slope)."""
    if fused(activation):
        dense_forward(a_prev, W, b, activation, out)
    else:
        dense_forward(a_prev, W, b, IDENTITY, out)
        activate(out, activation, unfused)


@njit(**config.JIT_OPTIONS)
def forward_layer_saving(a_prev, W, b, activation, unfused, out, deriv):
    """out = act(z) and deriv = act'(z), z = a_prev @ W + b, for gelu, softplus and silu.

    deriv (n, fan_out) is written; the backward pass multiplies by it (``backward_layer``).
    """
    dense_forward(a_prev, W, b, IDENTITY, out)
    activate_saving_derivative(out, activation, deriv, unfused)


@njit(**config.JIT_OPTIONS)
def backward_layer(delta, WT, a_prev, activation, unfused, deriv, out):
    """out = (delta @ WT) * act'(z_prev): the delta of the previous layer.

    Shapes as for ``dense_backward``.  act' comes from a_prev, the previous layer's
    output, except for the activations that save it (``saves_derivative``): then
    deriv (n, fan_in) holds it, written by ``forward_layer_saving``.  deriv is not
    read otherwise (it may be empty).
    """
    if fused(activation):
        dense_backward(delta, WT, a_prev, activation, out)
    elif saves_derivative(activation):
        backward_layer_saved(delta, WT, deriv, out)
    else:
        dense_backward(delta, WT, a_prev, IDENTITY, out)
        multiply_derivative_from_output(out, a_prev, activation, unfused)


@njit(**config.JIT_OPTIONS)
def backward_layer_saved(delta, WT, deriv, out):
    """out = (delta @ WT) * deriv: the previous layer's delta from its saved derivative.

    deriv (n, fan_in) holds act'(z_prev), times the dropout mask and scale where the
    previous layer's output was dropped (``kernels.dropout.drop_rows``).
    """
    dense_backward(delta, WT, deriv, IDENTITY, out)
    multiply_rows(out, deriv)
