"""Peak memory of a W1 fit (3 epochs, float32 and float64), as a regression guard on workspaces."""

from fastnn import fit

from .common import digits, tutorial_model


class PeakmemFitW1:
    params = ["float32", "float64"]
    param_names = ["dtype"]

    def setup(self, dtype):
        self.X, _, self.Y, _ = digits()
        self.arch, self.params = tutorial_model(dtype)
        fit(self.arch, self.params.copy(), self.X, self.Y, epochs=1, batch_size=64, lr=0.5,
            random_state=0)

    def peakmem_fit(self, dtype):
        fit(self.arch, self.params.copy(), self.X, self.Y, epochs=3, batch_size=64, lr=0.5,
            random_state=0)
