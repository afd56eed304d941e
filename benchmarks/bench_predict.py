"""Time to predict: 60000 x 784 rows with the W2 network, and the tutorial's 1617
digits rows (where starting threads for every call used to cost more than the work)."""

from fastnn import predict_output

from .common import digits, random_array, tutorial_model, w2_model


class TimePredictW2:
    params = [1, 2]
    param_names = ["threads"]
    timeout = 120

    def setup(self, threads):
        self.arch, self.params = w2_model("float32")
        self.X = random_array((60000, 784), "float32", 0)
        predict_output(self.arch, self.params, self.X[:512], threads=threads)  # warm the JIT

    def time_predict(self, threads):
        predict_output(self.arch, self.params, self.X, threads=threads)


class TimePredictW1:
    params = [1, 2]
    param_names = ["threads"]

    def setup(self, threads):
        self.arch, self.params = tutorial_model("float32")
        self.X = digits()[0].astype("float32")
        predict_output(self.arch, self.params, self.X, threads=threads)  # warm the JIT

    def time_predict(self, threads):
        predict_output(self.arch, self.params, self.X, threads=threads)
