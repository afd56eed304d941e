"""Time per training epoch of the tutorial network (W1: digits, batch 64, lr 0.5)."""

import numpy as np

from fastnn import SGD, Dense, Sequential, fit, predict_output

from .common import digits, tutorial_model


class TimeEpochW1:
    params = (["numba", "numpy"], ["float32", "float64"], [1, 2])
    param_names = ["backend", "dtype", "threads"]

    def setup(self, backend, dtype, threads):
        self.X, _, self.Y, _ = digits()
        self.arch, self.params = tutorial_model(dtype)
        # Compile (or load from the cache) with the same dtype and layout as the timed call.
        fit(self.arch, self.params.copy(), self.X, self.Y, epochs=1, batch_size=64, lr=0.5,
            random_state=0, backend=backend, threads=threads)

    def time_epoch(self, backend, dtype, threads):
        fit(self.arch, self.params, self.X, self.Y, epochs=1, batch_size=64, lr=0.5,
            random_state=0, backend=backend, threads=threads)


class TimeSequentialEpochW1:
    """The Keras-like front end's epoch, with and without a training metric: the
    running accuracy is counted inside the compiled epoch, so the two should match."""

    params = ["none", "accuracy"]
    param_names = ["metric"]

    def setup(self, metric):
        self.X, _, self.Y, _ = digits()
        self.model = Sequential([Dense(128, activation="sigmoid", input_dim=64),
                                 Dense(128, activation="sigmoid"),
                                 Dense(10, activation="softmax")], random_state=0)
        self.model.compile(SGD(lr=0.5), "categorical_crossentropy",
                           metrics=[] if metric == "none" else [metric])
        self.model.fit(self.X, self.Y, epochs=1, batch_size=64, verbose=0)  # compile or load

    def time_epoch(self, metric):
        self.model.fit(self.X, self.Y, epochs=1, batch_size=64, verbose=0)


class TrackAccuracyW1:
    """Test accuracy after 30 epochs, and the largest deviation from the NumPy reference."""

    params = ["float32", "float64"]
    param_names = ["dtype"]

    def setup(self, dtype):
        self.X, self.X_test, self.Y, self.Y_test = digits()
        self.arch, start = tutorial_model(dtype)
        self.trained = {}
        for backend in ("numba", "numpy"):
            params = start.copy()
            fit(self.arch, params, self.X, self.Y, epochs=30, batch_size=64, lr=0.5,
                random_state=0, backend=backend)
            self.trained[backend] = params

    def track_test_accuracy(self, dtype):
        proba = predict_output(self.arch, self.trained["numba"], self.X_test)
        return float(np.mean(proba.argmax(1) == self.Y_test.argmax(1)))

    track_test_accuracy.unit = "fraction"

    def track_max_deviation_from_reference(self, dtype):
        compiled, reference = self.trained["numba"], self.trained["numpy"]
        return float(np.max(np.abs(compiled - reference)) / np.max(np.abs(reference)))

    track_max_deviation_from_reference.unit = "relative"
