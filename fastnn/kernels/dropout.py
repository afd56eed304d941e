"""Dropout masks from a counter-based generator: the same masks for any thread count.

A unit is kept or dropped by a hash of its coordinates, not by a generator's state:

    key  = splitmix(splitmix(seed + (step + 1) * G) + (row + 1) * G)
    bits = splitmix(key + (unit + 1) * G)                   (64-bit words, wrapping)
    keep = (bits >> 32) < threshold,  threshold = round((1 - rate) * 2**32)

with ``splitmix`` the finaliser of SplitMix64 (Steele, Lea & Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014; the mixing of Java's SplittableRandom)
and G = 0x9E3779B97F4A7C15 its Weyl increment.  Each coordinate moves a Weyl
sequence that a bijective mixer scrambles, the construction of counter-based
generators such as Philox and Threefry (Salmon et al. 2011): seed is the run's,
step the mini-batch's number (``optimizer.iterations`` after it, so a resumed run
continues the sequence), row the row's position in its mini-batch, and unit the
column in the batch buffer's layout (``epoch.layer_rows``: the input's features are
units 0..n_features - 1, the first hidden layer's follow, and so on).  No unit's
draw depends on how the rows are cut into chunks or which thread runs them.

A kept unit is multiplied by 1 / (1 - rate) (inverted dropout), a dropped one by 0,
so prediction needs no scaling and runs without dropout.  ``fastnn.reference``
computes the same masks with NumPy's uint64 arithmetic (``dropout_keep``).
"""

import numpy as np
from numba import njit

from .. import config
from .activations import (ELU, ELU_ALPHA, LEAKY_RELU, RELU, SELU, SELU_ALPHA, SELU_LAMBDA,
                          SIGMOID, TANH, saves_derivative)

#: SplitMix64's Weyl increment (2**64 / golden ratio, odd) and the finaliser's constants.
GOLDEN = 0x9E3779B97F4A7C15
MIX_1, MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def keep_threshold(rate):
    """The uint64 bound of the top 32 bits under which a unit is kept: round((1 - rate) 2**32)."""
    return np.uint64(round((1.0 - float(rate)) * 2.0**32))


@njit(**config.JIT_OPTIONS)
def splitmix(x):
    """SplitMix64's finaliser: a bijection of uint64 that mixes every bit into every other."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(MIX_1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(MIX_2)
    return x ^ (x >> np.uint64(31))


@njit(**config.JIT_OPTIONS)
def row_key(seed, step, row):
    """The hash of (seed, step, row) that a row's units are drawn from (module docstring)."""
    golden = np.uint64(GOLDEN)
    key = splitmix(np.uint64(seed) + (np.uint64(step) + np.uint64(1)) * golden)
    return splitmix(key + (np.uint64(row) + np.uint64(1)) * golden)


@njit(**config.JIT_OPTIONS)
def output_derivative(a, activation, one, slope, elu_shift, selu_lambda, selu_shift):
    """act'(z) from a = act(z), one element, for the activations that allow it (identity: 1).

    The constants come in a's dtype, so that the arithmetic stays in it: 1, slope,
    elu's alpha, selu's lambda and lambda * alpha.
    """
    zero = one - one
    if activation == SIGMOID:
        return a * (one - a)
    if activation == TANH:
        return one - a * a
    if activation == RELU:
        return one if a > zero else zero
    if activation == LEAKY_RELU:
        return one if a > zero else slope
    if activation == ELU:
        return one if a > zero else a + elu_shift
    if activation == SELU:
        return selu_lambda if a > zero else a + selu_shift
    return one


@njit(**config.JIT_OPTIONS)
def drop_rows(a, deriv, activation, slope, threshold, scale, seed, step, first_row, first_unit):
    """Inverted dropout of a batch block in place, and the derivative the backward pass needs.

    a (n, width): rows first_row.. of the batch, units first_unit.. (module docstring),
    is multiplied by the mask times scale.  deriv (n, width) receives act'(z) * mask
    * scale, act' taken from a before the mask or, for the activations that save it
    (``activations.saves_derivative``), from deriv itself; deriv may be empty (the
    input layer, which has no derivative).  threshold (uint64) and scale (a's dtype)
    come from the rate: ``keep_threshold`` and 1 / (1 - rate).
    """
    n, width = a.shape
    dtype = a.dtype.type
    zero, one = dtype(0.0), dtype(1.0)
    golden = np.uint64(GOLDEN)
    with_deriv = deriv.shape[0] > 0
    saved = saves_derivative(activation)
    elu_shift, selu_lambda = dtype(ELU_ALPHA), dtype(SELU_LAMBDA)
    selu_shift = selu_lambda * dtype(SELU_ALPHA)
    for i in range(n):
        key = row_key(seed, step, first_row + i)
        for j in range(width):
            bits = splitmix(key + (np.uint64(first_unit + j) + np.uint64(1)) * golden)
            m = scale if (bits >> np.uint64(32)) < threshold else zero
            if with_deriv:
                if saved:
                    deriv[i, j] = deriv[i, j] * m
                else:
                    deriv[i, j] = output_derivative(a[i, j], activation, one, slope, elu_shift,
                                                    selu_lambda, selu_shift) * m
            a[i, j] = a[i, j] * m


@njit(**config.JIT_OPTIONS)
def dropout_mask(seed, step, n_rows, first_row, first_unit, width, threshold):
    """bool (n_rows, width): which units drop_rows keeps (for tests and the twin)."""
    out = np.empty((n_rows, width), dtype=np.bool_)
    golden = np.uint64(GOLDEN)
    for i in range(n_rows):
        key = row_key(seed, step, first_row + i)
        for j in range(width):
            bits = splitmix(key + (np.uint64(first_unit + j) + np.uint64(1)) * golden)
            out[i, j] = (bits >> np.uint64(32)) < threshold
    return out
