"""Time per training epoch of W2 (784-512-512-10 sigmoid/softmax, batch 128, lr 0.1).

The data are a fixed synthetic set of 4096 rows (common.synthetic_w2), so that one epoch
stays short; the full W2 workload (50000 rows) is in scripts/compare_peers.py.
"""

from fastnn import fit

from .common import synthetic_w2, w2_model


class TimeEpochW2:
    params = (["numba", "numpy"], ["float32", "float64"], [1, 2])
    param_names = ["backend", "dtype", "threads"]
    timeout = 120

    def setup(self, backend, dtype, threads):
        self.X, self.Y = synthetic_w2()
        self.arch, self.params = w2_model(dtype)
        # Compile (or load from the cache) with the same dtype, layout and batch size.
        fit(self.arch, self.params.copy(), self.X[:256], self.Y[:256], epochs=1, batch_size=128,
            lr=0.1, random_state=0, backend=backend, threads=threads)

    def time_epoch(self, backend, dtype, threads):
        fit(self.arch, self.params, self.X, self.Y, epochs=1, batch_size=128, lr=0.1,
            random_state=0, backend=backend, threads=threads)
