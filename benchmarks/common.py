"""Data and models shared by the asv benchmarks, built from fixed seeds."""

import functools

import numpy as np


@functools.cache
def digits():
    """The tutorial's data: digits / 16, one-hot targets, split 90/10 with random_state=20."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    Y = np.eye(10)[data.target]
    return train_test_split(data.data / 16.0, Y, test_size=0.1, random_state=20)


def tutorial_model(dtype):
    """The tutorial's 64-128-128-10 sigmoid/softmax network with N(0, 1) weights (seed 0)."""
    from fastnn import Architecture, init_params

    arch = Architecture((64, 128, 128, 10), "sigmoid", "softmax", dtype)
    return arch, init_params(arch, "normal", random_state=0)


@functools.cache
def synthetic_w2(n_rows=4096, n_features=784, n_classes=10):
    """A fixed synthetic classification set for W2: X (n_rows, 784) in [0, 1], one-hot Y.

    make_classification with random_state=0, rescaled to [0, 1] per feature so that the
    sigmoid layers work in their ordinary range.  4096 rows keep one epoch short.
    """
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n_rows, n_features=n_features, n_informative=64,
                               n_classes=n_classes, random_state=0)
    X = (X - X.min(0)) / (X.max(0) - X.min(0))
    return X, np.eye(n_classes)[y]


def w2_model(dtype):
    """The 784-512-512-10 sigmoid/softmax network, glorot_uniform weights (seed 0)."""
    from fastnn import Architecture, init_params

    arch = Architecture((784, 512, 512, 10), "sigmoid", "softmax", dtype)
    return arch, init_params(arch, "glorot_uniform", random_state=0)


def random_array(shape, dtype, seed):
    """Uniform [0, 1) values of the given shape and dtype from a fixed seed, C-contiguous."""
    return np.random.default_rng(seed).random(shape).astype(dtype)
