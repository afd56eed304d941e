"""Element-wise math for the compiled kernels: a vectorisable exp and the activations.

Numba lowers ``math.exp`` to a scalar libm call, which stops LLVM from vectorising
the activation loops (measured: 2.5-4.8 ns per sigmoid against about 1 ns in NumPy,
about 1 ms per epoch of the tutorial network on its own).  ``fast_exp`` below is
plain arithmetic that LLVM turns into SIMD code:

    exp(x) = 2**n * exp(r),   n = round(x / ln 2),   r = x - n ln 2,  |r| <= ln(2) / 2

with ``exp(r)`` a polynomial that interpolates exp at Chebyshev nodes of that
interval (degree 6 in float32, 11 in float64: relative error 2e-8 and 2e-17 with
the coefficients rounded, below half an ulp; Taylor needs degrees 7 and 13) and
``2**n`` built directly in the exponent bits.  The accuracy against ``np.exp`` is measured in the tests.

sigmoid and tanh divide by 1 + exp(-|z|) or 1 + exp(-2|z|) anyway, so they take exp
as a ratio, ``exp_ratio``: (p, q) with exp(x) = p / q.  In float32 that is
(fast_exp(x), 1).  In float64 it is 2**n P(r) and P(-r), P(r) / P(-r) exp's [6/6] Pade
approximant (error below 2e-19 on that interval), and sigmoid(z) = q / (q + p) or
p / (q + p): the same one division, and instead of 11 dependent multiply-adds, two
short chains in r**2 (3 and 2 steps).  With 256-bit vectors the float64 polynomial was
the limit: its chain's latency, not the arithmetic (measured 2.1 ns per sigmoid
against 1.0 with 512-bit vectors, twice the elements per instruction); the ratio
takes AVX2 code from 2.1 to 1.45 ns, and 512-bit code from 1.04 to 0.99.  A float32
ratio (the [3/3] approximant) was no faster than its 7-term polynomial.

tanh, which Numba also lowers to a scalar libm call (15.5 ns per element, against
0.4 ns for the vectorised sigmoid), is ``fast_tanh``: (1 - t) / (1 + t) with
t = exp(-2|z|) (as p / q: (q - p) / (q + p)) and z's sign, and near 0, where 1 - t
would cancel, the odd Taylor series z (1 - z**2 / 3 + 2 z**4 / 15 - ...): 6 terms for
|z| < 0.3 in float32, 13 in float64 (the next term is below half an ulp there).
expm1, for elu and selu (libm's: 9 ns per element), is ``fast_expm1`` the same way:
fast_exp(x) - 1, and its Taylor series x (1 + x / 2 + x**2 / 6 + ...) for |x| < 0.35
(8 terms in float32, 13 in float64); 0.49 / 1.33 ns per elu in float32 / float64.  Its
overload is inlined into the loop (``inline="always"``): compiled apart, the float64
body is too large for LLVM to inline, and the call keeps the loop scalar.  log1p, for
softplus (libm's: 23-29 ns per element), is ``fast_log1p`` on [0, 1]:
1 + x = 2**k (1 + f) with k = 0 or 1, and log1p(f) = 2 atanh(f / (2 + f)), an odd
series (5 and 11 terms), in fdlibm's arrangement; 0.93 / 2.2 ns per softplus.

Activations and their derivatives
---------------------------------
The first five codes (identity, sigmoid, tanh, relu, softmax) run fused inside the
dense kernels (``activate_rows``, ``multiply_derivative_rows``).  The others run
after the layer's matrix product, through ``fastnn.kernels.layers``, in one of two
ways, chosen by what the backward pass can use:

* leaky_relu, elu, selu are monotone, so their derivative is a function of the
  output a = act(z) alone, and is computed from it in the backward pass, as for
  sigmoid (``multiply_derivative_from_output``):
  leaky_relu' = 1 if a > 0 else s; elu' = 1 if a > 0 else a + alpha;
  selu' = lambda if a > 0 else a + lambda * alpha.
* gelu, softplus and silu need z (gelu and silu are not monotone, and softplus's
  derivative 1 - exp(-a) loses its digits for small a), so the forward pass
  writes act'(z) into a derivative buffer while z is at hand
  (``activate_saving_derivative``), and the backward pass multiplies by it.
  The buffer costs one value per unit and row of the batch, and is only allocated
  for networks that have such a layer (or dropout, which uses the same buffer).

Formulas (as Keras 3's ``keras.activations`` defines them; PyTorch's are the same
but for leaky_relu's default slope, 0.01):

* leaky_relu(z) = z if z > 0 else s * z, s = ``negative_slope`` (Keras's 0.2);
* elu(z) = z if z > 0 else alpha * (exp(z) - 1), alpha = 1;
* selu(z) = lambda * elu_alpha(z), alpha = 1.6732632423543772, lambda = 1.0507009873554805
  (Klambauer et al. 2017);
* gelu(z) = z * Phi(z) = 0.5 * z * erfc(-z / sqrt(2)), the exact (erf) form, which
  is Keras's default (``approximate=False``) and PyTorch's; written with erfc, the
  same function, because 1 + erf(x) loses its digits for x << 0;
  gelu'(z) = Phi(z) + z * exp(-z**2 / 2) / sqrt(2 pi);
* softplus(z) = max(z, 0) + log1p(exp(-|z|)), softplus'(z) = sigmoid(z);
* silu(z) = z * sigmoid(z) (swish), silu'(z) = s * (1 + z * (1 - s)), s = sigmoid(z).

exp, expm1 and tanh go through ``fast_exp``, log1p through ``fast_log1p`` (vectorised).
gelu's Phi(z) is ``normal_cdf``: in float32 it is computed in float64 (an erf series
below |z| = 0.707; else exp(-z**2 / 2) times a polynomial fitted to erfc's remaining
factor), within 0.53 ulp, 2.9 ns per gelu against 12.5 with libm's erfc; float64 keeps
libm's erfc (a scalar call, 15 ns per element, exact to an ulp), as a float64 fit to an
ulp would take 30 terms or more.
"""

import math
from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic, overload

from .. import config

IDENTITY, SIGMOID, TANH, RELU, SOFTMAX = 0, 1, 2, 3, 4
LEAKY_RELU, ELU, SELU, GELU, SOFTPLUS, SILU = 5, 6, 7, 8, 9, 10

#: The fixed constants of elu and selu.
ELU_ALPHA = 1.0
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946


#: The other type of the same width, for ``_same_bits``.
_SAME_WIDTH = {types.float32: types.int32, types.float64: types.int64,
               types.int32: types.float32, types.int64: types.float64}


@intrinsic
def _same_bits(typingctx, value):
    """value's bits as the other type of its width: float32 <-> int32, float64 <-> int64."""
    target = _SAME_WIDTH.get(value)
    if target is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(target))

    return target(value), codegen


@njit(inline="always", **config.JIT_OPTIONS)
def horner(coefficients, x):
    """coefficients[0] + coefficients[1] x + ... + coefficients[-1] x**(n - 1), by Horner's
    rule; coefficients a tuple of x's float type (a constant in the callers below, so
    the loop is unrolled and the callers' loops stay vectorised)."""
    p = coefficients[-1]
    for k in range(len(coefficients) - 2, -1, -1):
        p = p * x + coefficients[k]
    return p


def fast_exp(x):
    """exp(x) for a float32 or float64 scalar inside compiled code; 0 below the normal range."""
    return math.exp(x)


def _range_reduction(float_type, int_type, mantissa_bits, bias, lo):
    """The reduction of exp's argument, for one float type: a compiled x -> (r, 2**n) with
    x = n ln 2 + r, n an integer and |r| <= ln(2) / 2, for x raised to lo if below.  The
    caller keeps x below exp's overflow (exp_ratio's x <= 0 needs no clamp there)."""
    log2e = float_type(1.4426950408889634)
    ln2_hi = float_type(0.693145751953125)  # ln 2 split in two so that n * ln2_hi is exact
    ln2_lo = float_type(1.4286068203094173e-06)
    lo, half = float_type(lo), float_type(0.5)
    shifter = float_type(1.5 * 2.0 ** mantissa_bits)

    @njit(inline="always", fastmath=set(config.FASTMATH), error_model="numpy")
    def reduce(x):
        # The clamps are selects: a comparison with NaN is false, so a NaN x runs
        # through as NaN and the callers need no NaN test ("x if x > lo else lo" would
        # make it lo).  Each is one vector max or min; Numba's max(x, lo), which keeps
        # Python's rules for NaN, compiled to more (512-bit float64 sigmoid 1.17
        # against 0.98 ns per element).
        xc = lo if x < lo else x
        n = np.floor(xc * log2e + half)  # np.floor keeps the float type; math.floor gives int
        r = (xc - n * ln2_hi) - n * ln2_lo
        # 2**n, built from the bits of n + shifter, an exact sum whose low mantissa
        # bits hold n (two's complement): plus the bias and shifted into the exponent
        # field, the bits above n's fall off.  Converting n to an integer would do
        # the same, but AVX2 has no float64 -> int64 instruction: LLVM made it four
        # scalar conversions, half of a float64 sigmoid's time (docs/benchmarks.md).
        # Numba computes the sum and shift in int64, narrowed by the final cast.
        scale = _same_bits(int_type((_same_bits(n + shifter) + bias) << mantissa_bits))
        return r, scale

    return reduce


#: Each float type's (type, integer of its width, mantissa bits, exponent bias, and the
#: range of x outside which exp(x) is 0 (below the normal numbers) or inf).
_FORMATS = {types.float32: (np.float32, np.int32, 23, 127, -87.33, 88.0),
            types.float64: (np.float64, np.int64, 52, 1023, -708.39, 709.0)}


def _exp_impl(float_type, int_type, mantissa_bits, bias, lo, hi, coefficients):
    reduce = _range_reduction(float_type, int_type, mantissa_bits, bias, lo)
    lo, hi, zero, inf = float_type(lo), float_type(hi), float_type(0.0), float_type(np.inf)
    c = tuple(float_type(v) for v in coefficients)

    def impl(x):
        r, scale = reduce(hi if x > hi else x)  # a select, as in reduce
        y = zero if x < lo else horner(c, r) * scale
        return inf if x > hi else y  # NaN stays NaN (see reduce): divergence is detected

    return impl


#: exp(r) ~ sum_k c[k] r**k on |r| <= ln(2) / 2: interpolants at Chebyshev nodes,
#: solved in 50-digit arithmetic (mpmath) and rounded to the float's precision.
_EXP_FLOAT32 = (1.0, 1.0, 0.5, 0.16666415333747864, 0.04166635125875473,
                0.00837512593716383, 0.0013941108481958508)
_EXP_FLOAT64 = (1.0, 1.0, 0.5000000000000019, 0.1666666666666668, 0.0416666666664881,
                0.008333333333319601, 0.0013888888952314775, 0.00019841269890047113,
                2.4801485482328494e-05, 2.755724091857897e-06, 2.763263963904103e-07,
                2.5110037605963777e-08)


@overload(fast_exp, jit_options=dict(fastmath=set(config.FASTMATH)))
def _fast_exp_overload(x):
    if x == types.float32:
        return _exp_impl(*_FORMATS[x], _EXP_FLOAT32)
    if x == types.float64:
        return _exp_impl(*_FORMATS[x], _EXP_FLOAT64)
    return None


def exp_ratio(x):
    """(p, q) with exp(x) = p / q, for a float32 or float64 scalar x <= 0 (or NaN) inside
    compiled code; p is 0 below the normal range and NaN for NaN.

    float32: (fast_exp(x), 1).  float64: 2**n P(r) and P(-r), P(r) / P(-r) the [6/6]
    Pade approximant of exp(r) (see the module's docstring).  The callers divide anyway
    (sigmoid, tanh), so the ratio costs no second division.
    """
    return math.exp(x), 1.0


def _pade_exp(n):
    """Numerator coefficients of exp's [n/n] Pade approximant P(r) / P(-r), lowest first:
    (2n - k)! n! / ((2n)! k! (n - k)!), exactly, rounded to float64."""
    f = math.factorial
    return tuple(float(Fraction(f(2 * n - k) * f(n), f(2 * n) * f(k) * f(n - k)))
                 for k in range(n + 1))


_PADE_EXP_FLOAT64 = _pade_exp(6)


def _exp_ratio_float64():
    reduce = _range_reduction(*_FORMATS[types.float64][:5])
    lo, zero = np.float64(_FORMATS[types.float64][4]), np.float64(0.0)
    even, odd = _PADE_EXP_FLOAT64[0::2], _PADE_EXP_FLOAT64[1::2]

    def impl(x):
        r, scale = reduce(x)
        r2 = r * r
        e = horner(even, r2)  # P(r) = e + o, P(-r) = e - o
        o = r * horner(odd, r2)
        p = zero if x < lo else (e + o) * scale
        return p, e - o  # NaN stays NaN (see reduce)

    return impl


@overload(exp_ratio, inline="always", jit_options=dict(fastmath=set(config.FASTMATH)))
def _exp_ratio_overload(x):
    if x == types.float32:
        one = np.float32(1.0)
        return lambda x: (fast_exp(x), one)
    if x == types.float64:
        return _exp_ratio_float64()
    return None


def fast_tanh(x):
    """tanh(x) for a float32 or float64 scalar inside compiled code."""
    return math.tanh(x)


def _tanh_impl(float_type, small, coefficients):
    small, two = float_type(small), float_type(2.0)
    c = tuple(float_type(v) for v in coefficients)

    def impl(x):
        taylor = x * horner(c, x * x)
        p, q = exp_ratio(-two * abs(x))  # t = p / q in (0, 1]; 0 for large |x|, NaN for NaN
        r = (q - p) / (q + p)  # (1 - t) / (1 + t)
        r = r if x >= 0 else -r
        return taylor if abs(x) < small else r  # both computed: the loop stays vectorised

    return impl


#: tanh's Taylor coefficients (of z, z**3, z**5, ...): 2**2n (2**2n - 1) B_2n / (2n)!.
_TANH_TAYLOR = (1.0, -0.3333333333333333, 0.13333333333333333, -0.05396825396825397,
                0.021869488536155203, -0.008863235529902197, 0.003592128036572481,
                -0.0014558343870513183, 0.000590027440945586, -0.00023912911424355248,
                9.691537956929451e-05, -3.927832388331683e-05, 1.5918905069328964e-05)


@overload(fast_tanh, jit_options=dict(fastmath=set(config.FASTMATH)))
def _fast_tanh_overload(x):
    if x == types.float32:
        return _tanh_impl(np.float32, 0.3, _TANH_TAYLOR[:6])
    if x == types.float64:
        return _tanh_impl(np.float64, 0.3, _TANH_TAYLOR)
    return None


def fast_expm1(x):
    """exp(x) - 1 for a float32 or float64 scalar inside compiled code, accurate near 0."""
    return math.expm1(x)


def _expm1_impl(float_type, small, coefficients):
    small, one = float_type(small), float_type(1.0)
    c = tuple(float_type(v) for v in coefficients)

    def impl(x):
        p = horner(c, x)
        return x * p if abs(x) < small else fast_exp(x) - one  # both computed: vectorised

    return impl


#: expm1's Taylor coefficients (of x, x**2, x**3, ...): 1 / k!.
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(1, 14))


@overload(fast_expm1, inline="always", jit_options=dict(fastmath=set(config.FASTMATH)))
def _fast_expm1_overload(x):
    if x == types.float32:
        return _expm1_impl(np.float32, 0.35, _EXPM1_TAYLOR[:8])
    if x == types.float64:
        return _expm1_impl(np.float64, 0.35, _EXPM1_TAYLOR[:13])
    return None


def fast_log1p(x):
    """log(1 + x) for a float32 or float64 scalar 0 <= x <= 1 inside compiled code
    (softplus's exp(-|z|)); exact to about an ulp, also for tiny x."""
    return math.log1p(x)


def _log1p_impl(float_type, coefficients):
    one, two, half = float_type(1.0), float_type(2.0), float_type(0.5)
    sqrt2_minus_1 = float_type(0.41421356237309503)
    ln2_hi = float_type(0.6931471803691238)  # ln 2 in two parts: ln2_hi + small stays exact
    ln2_lo = float_type(0.6931471805599453 - 0.6931471803691238)
    c = tuple(float_type(v) for v in coefficients)

    def impl(x):
        # 1 + x = 2**k (1 + f): k = 1 and f = (x - 1) / 2 (exact) above sqrt(2) - 1,
        # else k = 0 and f = x.  log1p(f) = 2 atanh(s) = 2 s + s R with s = f / (2 + f)
        # (|s| <= 0.172) and R = sum 2 s**2k / (2k + 1), k >= 1; written as
        # f - (f**2 / 2 - s (f**2 / 2 + R)) (fdlibm's form): f is exact, and the
        # rounding errors stay in the small correction.
        big = x > sqrt2_minus_1
        f = (x - one) * half if big else x
        s = f / (two + f)
        z = s * s
        p = horner(c, z)
        half_f2 = half * f * f
        correction = half_f2 - s * (half_f2 + z * p)
        return ln2_hi + ((f + ln2_lo) - correction) if big else f - correction  # both: vectorised

    return impl


#: R's coefficients (of s**2, s**4, ...): 2 / (2k + 1), k >= 1.
_LOG1P_R = tuple(2.0 / (2 * k + 1) for k in range(1, 11))


@overload(fast_log1p, inline="always", jit_options=dict(fastmath=set(config.FASTMATH)))
def _fast_log1p_overload(x):
    if x == types.float32:
        return _log1p_impl(np.float32, _LOG1P_R[:4])
    if x == types.float64:
        return _log1p_impl(np.float64, _LOG1P_R)
    return None


def normal_cdf(z):
    """Phi(z), the standard normal distribution function, for a float32 or float64 scalar
    inside compiled code: 0.5 * erfc(-z / sqrt(2))."""
    return 0.5 * math.erfc(-z * 0.7071067811865476)


#: erf's Taylor coefficients (of u, u**3, u**5, ...): 2 / sqrt(pi) (-1)**n / (n! (2n + 1)).
_ERF_TAYLOR = tuple(2 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1))
                    for n in range(9))

#: erfc(u) exp(u**2) (1 + u) on 0.5 <= u <= 10, as a polynomial in
#: x = (2 t - _ERFC_T_SUM) / _ERFC_T_SPAN, t = 1 / (1 + u) (x in [-1, 1]): the least-squares
#: Chebyshev fit of degree 10 at 400 Chebyshev nodes, against 40-digit values (mpmath),
#: in monomial form; relative error 2.2e-9.
_ERFC_TAIL = (0.7922251446073252, 0.16118865542349822, -0.02495106811238065,
              -0.008252448027003867, 0.003678515081052557, -8.36871128178455e-05,
              -0.0004137242518723523, 0.0001630766669193017, -3.297142114619061e-06,
              -2.3299473489663793e-05, 7.64883442537841e-06)
_ERFC_T_SUM, _ERFC_T_SPAN = 1 / 11 + 1 / 1.5, 1 / 1.5 - 1 / 11


def _normal_cdf_float32(z):
    # In float64, so that u = -z / sqrt(2) and exp(-u**2) keep the tail's relative
    # accuracy (float32 u**2 would lose about 2 u**2 ulp).
    u = -np.float64(z) * 0.7071067811865476
    a, u2 = abs(u), u * u
    p = horner(_ERF_TAYLOR, u2)  # erf(u) = u p(u**2), |u| < 0.5
    small = 0.5 - 0.5 * u * p
    t = 1.0 / (1.0 + a)
    x = (2.0 * t - _ERFC_T_SUM) / _ERFC_T_SPAN
    tail = 0.5 * fast_exp(-u2) * horner(_ERFC_TAIL, x) * t  # 0.5 erfc(|u|)
    tail = tail if u > 0 else 1.0 - tail  # erfc(-a) = 2 - erfc(a)
    return np.float32(small if a < 0.5 else tail)  # both computed: vectorised


@overload(normal_cdf, inline="always", jit_options=dict(fastmath=set(config.FASTMATH)))
def _normal_cdf_overload(z):
    if z == types.float32:
        return _normal_cdf_float32
    if z == types.float64:
        return normal_cdf  # libm's erfc (a scalar call)
    return None


@njit(inline="always", **config.JIT_OPTIONS)
def sigmoid(z):
    """Logistic function, stable for large |z|: only exp of a non-positive number is taken."""
    p, q = exp_ratio(-abs(z))
    return sigmoid_from_exp(z, p, q)


@njit(inline="always", **config.JIT_OPTIONS)
def sigmoid_from_exp(z, p, q):
    """sigmoid(z) from exp(-|z|) = p / q: 1 / (1 + t) for z >= 0, else t / (1 + t)."""
    return (q if z >= 0 else p) / (q + p)


@njit(**config.JIT_OPTIONS)
def activate_rows(out, activation):
    """Apply an activation in place to out, shape (n_rows, width).

    softmax is taken row by row, shifted by the row maximum.
    """
    n_rows, width = out.shape
    if activation == SIGMOID:
        for i in range(n_rows):
            for j in range(width):
                out[i, j] = sigmoid(out[i, j])
    elif activation == TANH:
        for i in range(n_rows):
            for j in range(width):
                out[i, j] = fast_tanh(out[i, j])
    elif activation == RELU:
        zero = out.dtype.type(0.0)
        for i in range(n_rows):
            for j in range(width):
                out[i, j] = max(out[i, j], zero)
    elif activation == SOFTMAX:
        # Three passes, so that the exponentials run as one vectorised loop over the
        # whole block: a 10-wide row alone kept them scalar (64 x 10 float32: 5.3 us
        # against 2.7 with no activation, docs/benchmarks.md).  Same values, same order
        # of each row's sum.
        for i in range(n_rows):
            row_max = out[i, 0]
            for j in range(1, width):
                row_max = max(row_max, out[i, j])
            for j in range(width):
                out[i, j] -= row_max
        flat = out.reshape(n_rows * width)
        for k in range(flat.shape[0]):
            flat[k] = fast_exp(flat[k])
        for i in range(n_rows):
            total = out.dtype.type(0.0)
            for j in range(width):
                total += out[i, j]
            inv = out.dtype.type(1.0) / total
            for j in range(width):
                out[i, j] *= inv


@njit(**config.JIT_OPTIONS)
def multiply_derivative_rows(delta, a, activation):
    """delta *= act'(z), written with the layer's output a = act(z); shapes (n_rows, width)."""
    n_rows, width = delta.shape
    one = delta.dtype.type(1.0)
    zero = delta.dtype.type(0.0)
    if activation == SIGMOID:
        for i in range(n_rows):
            for j in range(width):
                delta[i, j] *= a[i, j] * (one - a[i, j])
    elif activation == TANH:
        for i in range(n_rows):
            for j in range(width):
                delta[i, j] *= one - a[i, j] * a[i, j]
    elif activation == RELU:
        for i in range(n_rows):
            for j in range(width):
                if a[i, j] <= zero:
                    delta[i, j] = zero


def unfused_present(codes):
    """Which activations other than the fused ones a network with these codes has.

    None when every code is one that the dense kernels apply themselves (codes
    0..SOFTMAX, see ``fused``), else a tuple with an entry for each of leaky_relu,
    elu, selu, gelu, softplus and silu: True when codes has it, None when not.  The
    kernels below branch on each entry, which Numba prunes when it is None: a run
    compiles the loops of its own activations only (all six cost a cold run about
    2 s more than leaky_relu alone).
    """
    if max(codes) <= SOFTMAX:
        return None
    present = set(int(code) for code in codes)
    return tuple(True if code in present else None for code in range(LEAKY_RELU, SILU + 1))


def unfused_argument(codes, negative_slope, dtype):
    """The compiled kernels' ``unfused`` argument for a network with these activation codes.

    None when ``unfused_present`` is None: the drivers then call the dense kernels
    directly, and Numba prunes their ``unfused is None`` branches while compiling, so
    such a run compiles none of the other activations.  Otherwise leaky_relu's
    negative slope in dtype followed by ``unfused_present``'s entries.
    """
    present = unfused_present(codes)
    return None if present is None else (dtype(negative_slope),) + present


@njit(**config.JIT_OPTIONS)
def fused(activation):
    """True for the activations the dense kernels apply themselves (codes 0..4)."""
    return activation <= SOFTMAX


@njit(**config.JIT_OPTIONS)
def saves_derivative(activation):
    """True for the activations whose derivative the forward pass writes (gelu, softplus, silu)."""
    return activation >= GELU


@njit(**config.JIT_OPTIONS)
def activate(out, activation, unfused):
    """out = act(out) in place, shape (n_rows, width), for the codes after SOFTMAX.

    unfused as ``unfused_argument`` gives it: the activations compiled, and leaky_relu's
    slope in out's dtype.
    """
    _activate_and_derivative(out, activation, out[:0], *unfused)  # no derivative wanted


@njit(**config.JIT_OPTIONS)
def activate_saving_derivative(out, activation, deriv, unfused):
    """out = act(out) and deriv = act'(out) from the same z, for gelu, softplus and silu.

    out (n_rows, width) holds z and is overwritten; deriv (n_rows, width) is written;
    unfused as for ``activate``.
    """
    _activate_and_derivative(out, activation, deriv, *unfused)


@njit(**config.JIT_OPTIONS)
def _activate_and_derivative(out, activation, deriv, slope, leaky_relu, elu, selu, gelu, softplus,
                             silu):
    """act(out) in place, and for gelu, softplus and silu act' into deriv when it has rows.

    Each activation's loop sits under a branch on its argument of ``unfused_argument``'s
    tuple (True or None), which Numba prunes, loop and all, when it is None.
    """
    n_rows, width = out.shape
    dtype = out.dtype.type
    zero, one, half = dtype(0.0), dtype(1.0), dtype(0.5)
    keep = deriv.shape[0] > 0
    if leaky_relu is not None and activation == LEAKY_RELU:
        for i in range(n_rows):
            for j in range(width):
                z = out[i, j]
                out[i, j] = z if z > zero else slope * z
    if elu is not None and activation == ELU:
        _elu_rows(out, one, dtype(ELU_ALPHA))
    if selu is not None and activation == SELU:
        _elu_rows(out, dtype(SELU_LAMBDA), dtype(SELU_ALPHA))
    if gelu is not None and activation == GELU:
        inv_sqrt_2pi = dtype(0.3989422804014327)
        for i in range(n_rows):
            for j in range(width):
                z = out[i, j]
                phi = normal_cdf(z)  # accurate for z << 0
                out[i, j] = z * phi
                if keep:
                    deriv[i, j] = phi + z * inv_sqrt_2pi * fast_exp(-half * z * z)
    if softplus is not None and activation == SOFTPLUS:
        for i in range(n_rows):
            for j in range(width):
                z = out[i, j]
                t = fast_exp(-abs(z))
                out[i, j] = max(z, zero) + fast_log1p(t)
                if keep:
                    deriv[i, j] = sigmoid_from_exp(z, t, one)
    if silu is not None and activation == SILU:
        for i in range(n_rows):
            for j in range(width):
                z = out[i, j]
                s = sigmoid(z)
                out[i, j] = z * s
                if keep:
                    deriv[i, j] = s * (one + z * (one - s))


@njit(**config.JIT_OPTIONS)
def _elu_rows(out, scale, alpha):
    """out = scale * elu_alpha(out) in place: elu (scale 1, alpha 1) and selu."""
    zero = out.dtype.type(0.0)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            z = out[i, j]
            out[i, j] = scale * (z if z > zero else alpha * fast_expm1(z))


@njit(**config.JIT_OPTIONS)
def multiply_derivative_from_output(delta, a, activation, unfused):
    """delta *= act'(z) written with a = act(z), for leaky_relu, elu and selu; (n_rows, width).

    unfused as for ``activate``."""
    _multiply_derivative_from_output(delta, a, activation, *unfused)


@njit(**config.JIT_OPTIONS)
def _multiply_derivative_from_output(delta, a, activation, slope, leaky_relu, elu, selu, gelu,
                                     softplus, silu):
    """``multiply_derivative_from_output`` with unfused's entries as arguments (see
    ``_activate_and_derivative``)."""
    dtype = delta.dtype.type
    one = dtype(1.0)
    if leaky_relu is not None and activation == LEAKY_RELU:
        zero = dtype(0.0)
        for i in range(delta.shape[0]):
            for j in range(delta.shape[1]):
                delta[i, j] *= one if a[i, j] > zero else slope
    # a = lambda alpha (exp(z) - 1) for z <= 0, so lambda alpha exp(z) = a + lambda alpha
    if elu is not None and activation == ELU:
        _multiply_elu_derivative(delta, a, one, dtype(ELU_ALPHA))
    if selu is not None and activation == SELU:
        _multiply_elu_derivative(delta, a, dtype(SELU_LAMBDA), dtype(SELU_ALPHA))


@njit(**config.JIT_OPTIONS)
def _multiply_elu_derivative(delta, a, scale, alpha):
    """delta *= scale * elu_alpha'(z) from a = scale * elu_alpha(z): elu and selu."""
    zero = delta.dtype.type(0.0)
    shift = scale * alpha
    for i in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            delta[i, j] *= scale if a[i, j] > zero else a[i, j] + shift


@njit(**config.JIT_OPTIONS)
def multiply_rows(delta, factor):
    """delta *= factor, element-wise; both (n_rows, width) (a saved derivative)."""
    n_rows, width = delta.shape
    for i in range(n_rows):
        for j in range(width):
            delta[i, j] *= factor[i, j]
