"""Property-based checks (hypothesis): compiled kernels against the reference on drawn shapes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn import kernels, reference

from .conftest import assert_close

dims = st.integers(min_value=1, max_value=37)
dtypes = st.sampled_from(["float32", "float64"])
SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(m=dims, k=dims, n=dims, dtype=dtypes, seed=st.integers(0, 2**32 - 1),
       transposed=st.booleans())
def test_matmul_acc_adds_the_product(m, k, n, dtype, seed, transposed):
    rng = np.random.default_rng(seed)
    # a may be a transposed (non-contiguous) view, as in the gradient kernel.
    a = rng.standard_normal((k, m)).astype(dtype).T if transposed else \
        rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    expected = c + a.astype(np.float64) @ b.astype(np.float64)
    kernels.matmul_acc(a, b, c)
    assert_close(c, expected.astype(dtype), dtype=dtype)


@SETTINGS
@given(rows=dims, fan_in=dims, fan_out=dims, activation=st.sampled_from([0, 1, 2, 3, 4]),
       dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_dense_forward_matches_reference(rows, fan_in, fan_out, activation, dtype, seed):
    rng = np.random.default_rng(seed)
    a_prev = rng.standard_normal((rows, fan_in)).astype(dtype)
    W = rng.standard_normal((fan_in, fan_out)).astype(dtype)
    b = rng.standard_normal(fan_out).astype(dtype)
    expected, out = np.empty((rows, fan_out), dtype), np.empty((rows, fan_out), dtype)
    reference.dense_forward(a_prev, W, b, activation, expected)
    kernels.dense_forward(a_prev, W, b, activation, out)
    assert_close(out, expected, dtype=dtype)


@SETTINGS
@given(rows=dims, fan_in=dims, fan_out=dims, data=st.data(), dtype=dtypes,
       seed=st.integers(0, 2**32 - 1))
def test_param_grad_matches_reference_on_any_row_range(rows, fan_in, fan_out, data, dtype, seed):
    rng = np.random.default_rng(seed)
    a_prev = rng.standard_normal((rows, fan_in)).astype(dtype)
    delta = rng.standard_normal((rows, fan_out)).astype(dtype)
    start = data.draw(st.integers(0, fan_in))
    stop = data.draw(st.integers(start, fan_in + 1))
    expected = np.empty((stop - start, fan_out), dtype)
    out = np.empty((stop - start, fan_out), dtype)
    reference.param_grad(a_prev, delta, start, stop, expected)
    kernels.param_grad(a_prev, delta, start, stop, out)
    assert_close(out, expected, dtype=dtype)
