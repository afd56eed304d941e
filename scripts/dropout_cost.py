"""Dropout's cost on a W1 epoch: the measurement behind docs/features.md (issue 15: <= 15 %).

The tutorial's network (digits, 64-128-128-10, sigmoid, softmax, batch 64, Adadelta) on
one Numba thread: the compiled epoch alone (``trainer.epoch_function``, no fit around it)
without dropout and with dropout 0.2 on both hidden layers, alternating, timed in thread
CPU time (``time.thread_time``, so other processes on the machine cost as little as
possible); the medians of 41 epochs each (the first, warm-up, dropped).

    python scripts/dropout_cost.py [float32|float64]
"""

import sys
import time

import numba
import numpy as np
from sklearn.datasets import load_digits

from fastnn import trainer
from fastnn.network import Architecture, init_params
from fastnn.optimizers import make_optimizer


def main(dtype="float32", rounds=42):
    numba.set_num_threads(1)
    digits = load_digits()
    X = np.ascontiguousarray(digits.data / 16.0, dtype=dtype)
    Y = np.eye(10, dtype=dtype)[digits.target]
    arch = Architecture((64, 128, 128, 10), ("sigmoid", "sigmoid"), "softmax", dtype)
    weights = np.ones(len(X), dtype=dtype)
    runs = {}
    for key, dropout in (("plain", None), ("dropout", (np.array([0.0, 0.2, 0.2]), 7))):
        optimizer = make_optimizer("adadelta", None)
        optimizer.prepare(arch.n_params, dtype)
        runs[key] = trainer.epoch_function("numba")(arch, init_params(arch, "glorot_uniform", 0),
                                                    X, Y, weights, 64, optimizer, 0.0, dropout)
    order = np.random.RandomState(0).permutation(len(X)).astype(np.int64)
    stop = np.zeros(1, dtype=np.int64)
    seconds = {key: [] for key in runs}
    for i in range(rounds):
        for key, run in runs.items():
            start = time.thread_time()
            run(order, 0, stop, trainer.epoch_totals(), 1.0, 100 * i)
            seconds[key].append(time.thread_time() - start)
    median = {key: 1e3 * np.median(values[1:]) for key, values in seconds.items()}
    print(f"{dtype}: {median['plain']:.3f} ms without dropout, {median['dropout']:.3f} ms with; "
          f"dropout costs {100 * (median['dropout'] / median['plain'] - 1):.1f} % of an epoch")


if __name__ == "__main__":
    main(*sys.argv[1:2])
