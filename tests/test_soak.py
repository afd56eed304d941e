"""Soak test: long training does not grow the process's memory.

3000 epochs of a small network in 15 calls of ``fit`` (the parameters carried on, a
fresh history each call, so that no record grows by design), with predictions,
model files written and read back, and a Keras-like model trained and predicted,
after every call.  After two warm-up rounds (compilation, caches, the first
allocations of every kind) the resident set size (``/proc/self/statm``), the memory
Python's allocators hold (``tracemalloc``) and the open file descriptors must stay
flat.  Marked slow: ``python -m pytest -m slow tests/test_soak.py -s`` prints the
numbers.
"""

import gc
import os
import sys
import time
import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn import Architecture, init_params, model_io, predict_output, trainer
from fastnn.models import Dense, Sequential

ROUNDS, WARM_UP, EPOCHS = 17, 2, 200  # 15 measured rounds: 3000 epochs
#: Bounds on growth from the end of the warm-up to the end: far below what one leaked
#: copy per epoch would cost (the data set is 64 KiB; 3000 epochs of a leaked 1 KiB
#: workspace would be 3 MiB), above the allocator's noise and the slow filling of
#: NumPy's and scikit-learn's small caches (about 1 KiB per round, tapering off).
#: One thread: the machine may be shared, and the memory does not depend on it.
RSS_GROWTH = 4 * 2**20
TRACED_GROWTH = 256 * 2**10


def rss():
    """Resident set size of this process in bytes (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_memory_does_not_grow_over_thousands_of_epochs(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 16))
    Y = np.eye(4)[rng.integers(0, 4, 512)]
    arch = Architecture((16, 32, 32, 4), "relu", "softmax", "float32")
    params = init_params(arch, "glorot_uniform", 0)
    optimizer = fastnn.Adam(lr=1e-3)
    generator = np.random.RandomState(0)
    model = Sequential([Dense(16, input_dim=16, activation="tanh"),
                        Dense(4, activation="softmax")], random_state=0).compile("sgd")
    path = tmp_path / "model.npz"

    samples = []
    tracemalloc.start()
    start = time.perf_counter()
    try:
        for round_ in range(ROUNDS):
            history = trainer.fit(arch, params, X, Y, epochs=EPOCHS, batch_size=64,
                                  optimizer=optimizer, random_state=generator,
                                  validation_split=0.1, threads=1)
            assert history.epochs == EPOCHS and np.isfinite(params).all()
            for _ in range(20):
                predict_output(arch, params, X, threads=1)
            for _ in range(5):
                model_io.save(path, arch, params, {"round": round_})
                loaded = model_io.load(path)
                np.testing.assert_array_equal(loaded.params, params)
            model.history = trainer.History()  # a fresh record: the model's grows by design
            model.fit(X, Y, epochs=5, batch_size=128, verbose=0, threads=1)
            model.predict(X)
            model.save(path)
            fastnn.load(path)
            del history, loaded
            gc.collect()
            samples.append((rss(), tracemalloc.get_traced_memory()[0], open_fds()))
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - start

    (rss0, traced0, fds0), (rss1, traced1, fds1) = samples[WARM_UP - 1], samples[-1]
    print(f"\nsoak: {(ROUNDS - WARM_UP) * EPOCHS} epochs measured "
          f"({ROUNDS * EPOCHS} in all, {seconds:.1f} s)")
    print("round  RSS (MiB)  traced (KiB)  fds")
    for i, (r, t, f) in enumerate(samples):
        print(f"{i:5d}  {r / 2**20:9.2f}  {t / 2**10:12.1f}  {f:3d}")
    print(f"growth after warm-up: RSS {(rss1 - rss0) / 2**20:+.2f} MiB, traced "
          f"{(traced1 - traced0) / 2**10:+.1f} KiB, fds {fds1 - fds0:+d}")
    assert rss1 - rss0 < RSS_GROWTH
    assert traced1 - traced0 < TRACED_GROWTH
    assert fds1 == fds0
