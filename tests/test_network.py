"""Architecture validation, the flat layout, initialisers and seeding."""

import numpy as np
import pytest

from fastnn.network import Architecture, as_random_state, init_params, layer_views


def test_layer_views_share_the_flat_buffer():
    arch = Architecture((3, 5, 2), "tanh", "softmax", "float64")
    params = np.arange(arch.n_params, dtype=np.float64)
    (W0, b0), (W1, b1) = layer_views(arch, params)
    assert W0.shape == (3, 5) and b0.shape == (5,) and W1.shape == (5, 2) and b1.shape == (2,)
    assert arch.n_params == 3 * 5 + 5 + 5 * 2 + 2
    W1[0, 0] = -1.0
    assert params[arch.offsets[1]] == -1.0
    assert b0[0] == params[3 * 5]  # the bias is the last row of the layer's block


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
