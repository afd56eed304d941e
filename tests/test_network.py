"""Architecture validation, the flat layout, initialisers and seeding."""

import numpy as np
import pytest

from fastnn import model_io
from fastnn.kernels import epoch
from fastnn.network import (CACHE_LINE_BYTES, Architecture, aligned_zeros, as_random_state,
                            init_params, layer_views)
from fastnn.optimizers import make_optimizer


def test_layer_views_share_the_flat_buffer():
    arch = Architecture((3, 5, 2), "tanh", "softmax", "float64")
    params = np.arange(arch.n_params, dtype=np.float64)
    (W0, b0), (W1, b1) = layer_views(arch, params)
    assert W0.shape == (3, 5) and b0.shape == (5,) and W1.shape == (5, 2) and b1.shape == (2,)
    assert arch.n_params == 3 * 5 + 5 + 5 * 2 + 2
    W1[0, 0] = -1.0
    assert params[arch.offsets[1]] == -1.0
    assert b0[0] == params[3 * 5]  # the bias is the last row of the layer's block


def starts_a_line(array):
    return array.ctypes.data % CACHE_LINE_BYTES == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_aligned_zeros_start_a_cache_line(dtype):
    # Many sizes, kept alive together: NumPy's own arrays start 16 bytes into a line
    # for some of them, so a plain np.zeros fails here.
    arrays = [aligned_zeros(size, dtype) for size in range(1, 3000, 7)]
    for size, array in zip(range(1, 3000, 7), arrays):
        assert starts_a_line(array) and array.shape == (size,) and array.dtype == dtype
        assert array.flags.c_contiguous and array.flags.writeable and not array.any()


def test_parameters_and_workspaces_start_a_cache_line(tmp_path):
    sizes = (64, 256, 256, 10)  # wide layers: weight_copies gives panels too
    for dtype in ("float32", "float64"):
        arch = Architecture(sizes, "sigmoid", "softmax", dtype)
        params = [init_params(arch, random_state=seed) for seed in range(8)]
        path = tmp_path / f"{dtype}.fastnn"
        model_io.save(path, arch, params[0])
        loaded = model_io.load(path).params
        assert np.array_equal(loaded, params[0])
        adam = make_optimizer("adam")
        adam.prepare(arch.n_params, dtype)
        params_t, panels = epoch.weight_copies(sizes, dtype)
        buffers = [*params, loaded, adam.slots, params_t, panels,
                   *epoch.batch_buffers(np.array(sizes), 10, 64, 8, dtype, True)[:5]]
        assert all(starts_a_line(buffer) for buffer in buffers)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sizes=(3,), activations=()), "at least two"),
    (dict(sizes=(3, 0, 2), activations="relu"), "at least two positive"),
    (dict(sizes=(3, 4, 2), activations=("relu", "relu")), "need 1 activations"),
    (dict(sizes=(3, 4, 2), activations="swish"), "unknown hidden activation"),
    (dict(sizes=(3, 4, 2), activations="relu", head="tanh"), "unknown output head"),
    (dict(sizes=(3, 4, 2), activations="relu", dtype="float16"), "float32 or float64"),
])
def test_bad_architectures_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Architecture(**kwargs)


def test_normal_init_with_global_seed_is_the_tutorials_randn():
    arch = Architecture((64, 128, 128, 10), "sigmoid", "softmax", "float64")
    np.random.seed(7)
    params = init_params(arch, "normal", random_state=None)
    np.random.seed(7)
    w1, w2, w3 = (np.random.randn(64, 128), np.random.randn(128, 128), np.random.randn(128, 10))
    views = layer_views(arch, params)
    for (W, b), expected in zip(views, (w1, w2, w3)):
        assert np.array_equal(W, expected) and not b.any()


@pytest.mark.parametrize("init", ["normal", "glorot_uniform", "he_normal"])
def test_float32_and_float64_start_from_the_same_values(init):
    p32 = init_params(Architecture((4, 6, 3), "relu", "softmax", "float32"), init, 3)
    p64 = init_params(Architecture((4, 6, 3), "relu", "softmax", "float64"), init, 3)
    assert p32.dtype == np.float32 and np.array_equal(p32, p64.astype(np.float32))


def test_random_state_rules():
    assert as_random_state(None) is np.random.mtrand._rand
    rs = np.random.RandomState(1)
    gen = np.random.default_rng(1)
    assert as_random_state(rs) is rs and as_random_state(gen) is gen
    assert as_random_state(5).randint(1000) == np.random.RandomState(5).randint(1000)
    for bad in (True, 1.5, "3"):
        with pytest.raises(ValueError, match="random_state"):
            as_random_state(bad)
