"""Workers called by address (``fastnn.kernels.workers``): same results, typed calls only."""

import pickle

import numba
import numpy as np
import pytest
from numba import njit, prange, types

from fastnn import config
from fastnn.kernels.workers import FLUSH_SUBNORMALS, Worker, call_worker, subnormals_flushed

pytestmark = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="compiled code only")


@njit(**config.JIT_OPTIONS)
def scaled_row_sums(a, rows, scale, out, mode):
    """out[r] = scale * sum(a[rows[r]]) (mode 1: its square); returns (count, total)."""
    total = 0.0
    for r in range(rows.shape[0]):
        s = 0.0
        for j in range(a.shape[1]):
            s += a[rows[r], j]
        out[r] = scale * s if mode == 1 else (scale * s) ** 2
        total += out[r]
    return rows.shape[0], total


@njit(parallel=True)
def driver(worker, a, order, scale, out, mode):
    """Two rows per parallel task through the worker; returns the tasks' totals summed."""
    totals = np.zeros(order.shape[0] // 2)
    for i in prange(order.shape[0] // 2):
        totals[i] = call_worker(worker, a, order[2 * i : 2 * i + 2], scale,
                                out[2 * i : 2 * i + 2], mode)[1]
    return totals.sum()


def test_a_call_through_the_worker_equals_the_direct_call():
    rng = np.random.default_rng(0)
    a, order = rng.normal(size=(9, 5)), rng.permutation(8)
    out, expected = np.zeros(8), np.zeros(8)
    worker = Worker(scaled_row_sums, (a, order[:2], 0.5, out[:2], 1))
    total = driver(worker, a, order, 0.5, out, 1)
    count, _ = scaled_row_sums(a, order, 0.5, expected, 1)
    assert count == 8
    np.testing.assert_array_equal(out, expected)
    assert total == pytest.approx(expected.sum(), rel=1e-15)


def test_arguments_of_other_types_are_a_typing_error_not_a_call():
    a, order, out = np.ones((4, 3)), np.arange(4), np.zeros(4)
    float32_worker = Worker(scaled_row_sums, (a.astype(np.float32), order, 0.5, out, 1))
    with pytest.raises(numba.core.errors.TypingError, match="call_worker"):
        driver(float32_worker, a, order, 0.5, out, 1)
    literal_worker = Worker(scaled_row_sums, (a, order, 0.5, out, types.literal(2)))
    with pytest.raises(numba.core.errors.TypingError, match="call_worker"):
        driver(literal_worker, a, order, 0.5, out, 1)  # mode is an int64 there
    assert not out.any()


def test_a_worker_is_not_pickled():
    a, rows, out = np.ones((2, 2)), np.arange(2), np.zeros(2)
    worker = Worker(scaled_row_sums, (a, rows, 1.0, out, 1))
    assert worker.address != 0
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(worker)


def test_a_declared_return_type_is_checked():
    """A Worker may be given its return type (so that a driver compiles while a child
    process compiles the worker: ``compilation.compile_aside``); a wrong one is a
    TypeError once the code is compiled or loaded, before any call."""
    a, rows, out = np.ones((2, 2)), np.arange(2), np.zeros(2)
    args = (a, rows, 1.0, out, 1)
    returns = types.Tuple((types.int64, types.float64))
    assert Worker(scaled_row_sums, args, aside=True, returns=returns).type.return_type == returns
    with pytest.raises(TypeError, match=r"returns .*int64, float64.*, not the declared float64"):
        Worker(scaled_row_sums, args, aside=True, returns=types.float64).address


@njit(**config.JIT_OPTIONS)
def shifted_row_sums(a, rows, out, shift):
    """out[r] = sum(a[rows[r]]), plus shift unless shift is None (a branch Numba prunes)."""
    for r in range(rows.shape[0]):
        s = 0.0
        for j in range(a.shape[1]):
            s += a[rows[r], j]
        out[r] = s if shift is None else s + shift


@njit(parallel=True)
def bound_driver(worker, a, order, out):
    """Two rows per parallel task through a worker whose shift is bound."""
    for i in prange(order.shape[0] // 2):
        call_worker(worker, a, order[2 * i : 2 * i + 2], out[2 * i : 2 * i + 2])


def test_bound_arguments_are_compiled_in_and_left_out_of_the_type():
    """Workers differing only in a bound argument share one type, so one compiled
    driver calls each, and each call runs with its own bound value."""
    rng = np.random.default_rng(1)
    a, order = rng.normal(size=(7, 3)), rng.permutation(6)
    sums = a[order].sum(axis=1)
    workers = [Worker(shifted_row_sums, (a, order[:2], sums[:2]), bound=(shift,))
               for shift in (None, 2.5)]
    assert workers[0].type == workers[1].type
    assert workers[0].address != workers[1].address
    for worker, shift in zip(workers, (0.0, 2.5)):
        out = np.zeros(6)
        bound_driver(worker, a, order, out)
        np.testing.assert_allclose(out, sums + shift, rtol=1e-15)
    assert len(bound_driver.overloads) == 1


@njit(**config.JIT_OPTIONS)
def products(x, y, out):
    """out[i] = x[i] * y[i]."""
    for i in range(x.shape[0]):
        out[i] = x[i] * y[i]


@njit
def products_both_ways(worker, x, y, through_worker, directly):
    """The products through the worker, and in the driver itself."""
    call_worker(worker, x, y, through_worker)
    products(x, y, directly)


@pytest.mark.skipif(not FLUSH_SUBNORMALS, reason="subnormals are flushed on x86-64 only")
@pytest.mark.parametrize("dtype, tiny", [("float32", 1e-20), ("float64", 1e-160)])
def test_workers_flush_subnormals_and_their_callers_keep_them(dtype, tiny):
    """A worker's arithmetic flushes subnormal results and inputs to zero (so training
    from saturated sigmoids takes no microcode assists); the driver around the call and
    the Python thread after it keep IEEE subnormals."""
    x = np.array([tiny, 1.0, np.finfo(dtype).tiny / 4], dtype=dtype)
    y = np.array([tiny, 2.0, 3.0], dtype=dtype)
    expected = x * y
    assert expected[0] != 0 and expected[2] != 0  # subnormal in IEEE arithmetic
    through_worker, directly = np.full(3, np.nan, dtype), np.full(3, np.nan, dtype)
    worker = Worker(products, (x, y, through_worker))
    products_both_ways(worker, x, y, through_worker, directly)
    np.testing.assert_array_equal(through_worker, [0.0, 2.0, 0.0])
    np.testing.assert_array_equal(directly, expected)
    np.testing.assert_array_equal(x * y, expected)  # this thread: IEEE again


@pytest.mark.skipif(not FLUSH_SUBNORMALS, reason="subnormals are flushed on x86-64 only")
def test_a_block_runs_with_subnormals_flushed_and_the_thread_gets_them_back():
    """``subnormals_flushed`` (for kernels timed from Python as the workers run them)
    flushes this thread's subnormals inside the block only, also when it raises."""
    tiny = np.float32(1e-20)
    with subnormals_flushed():
        assert tiny * tiny == 0
    assert tiny * tiny == np.float32(1e-40)
    with pytest.raises(KeyError), subnormals_flushed():
        raise KeyError("inside")
    assert tiny * tiny != 0
