"""Dropout's cost on a W1 epoch: the same epoch without and with dropout 0.2 on both hidden
layers (the masks are hashed per unit, kernels.dropout).  Issue 15 bounds the cost at 15 %."""

from fastnn import fit

from .common import digits, tutorial_model


class TimeDropoutEpochW1:
    params = ([0.0, 0.2], ["float32", "float64"], [1, 2])
    param_names = ["rate", "dtype", "threads"]

    def setup(self, rate, dtype, threads):
        self.X, _, self.Y, _ = digits()
        self.arch, self.params = tutorial_model(dtype)
        self.dropout = None if rate == 0 else (0.0, rate, rate)
        # Compile (or load from the cache) the specialisation the timed call uses.
        fit(self.arch, self.params.copy(), self.X, self.Y, epochs=1, batch_size=64, lr=0.5,
            random_state=0, threads=threads, dropout=self.dropout, dropout_seed=1)

    def time_epoch(self, rate, dtype, threads):
        fit(self.arch, self.params, self.X, self.Y, epochs=1, batch_size=64, lr=0.5,
            random_state=0, threads=threads, dropout=self.dropout, dropout_seed=1)
