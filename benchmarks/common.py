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
