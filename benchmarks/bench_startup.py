"""Start-up in a fresh interpreter: cold compilation per entry point, and a warm cache.

Every benchmark times one fresh Python process (asv's ``timeraw_``: the returned
setup runs first, untimed) that trains each entry point's default configuration for
one epoch on the digits rows and predicts (the same code as scripts/startup.py):

* ``TimeColdStart``: an empty NUMBA_CACHE_DIR, so every kernel the entry point
  needs is compiled (a first run ever, a CI job without a cache);
* ``TimeWarmStart``: a directory that ``setup`` filled by running the same code
  once, so the kernels are loaded; ``import_sklearn_utils`` is the floor that a
  front end's scikit-learn validation sets.

Each benchmark uses its own cache directory, so the package's cache and the other
benchmarks do not interfere.
"""

import shutil
import subprocess
import sys
import tempfile

# Runs in the child before the timed statement; must not import numba (it reads
# NUMBA_CACHE_DIR when it is imported).
_SETUP = """
import os
os.environ["NUMBA_CACHE_DIR"] = {cache_dir!r}
os.environ.pop("FASTNN_CACHE", None)
"""

_DIGITS = """
import numpy as np
from sklearn.datasets import load_digits
digits = load_digits()
X, y = digits.data[:1617] / 16.0, digits.target[:1617]
Y = np.eye(10)[y]
"""

#: Entry point -> its default run (one epoch and a prediction).
ENTRY_POINTS = {
    "cli": """
from fastnn.cli import main
main(["--epochs", "1", "--quiet"])
""",
    "fit": _DIGITS + """
import fastnn
arch = fastnn.Architecture((64, 128, 128, 10), "sigmoid", "softmax", "float32")
params = fastnn.init_params(arch, "normal", random_state=0)
fastnn.fit(arch, params, X, Y, epochs=1, batch_size=64, lr=0.5, random_state=0)
fastnn.predict_output(arch, params, X)
""",
    "sequential_adam": _DIGITS + """
from fastnn import Dense, Sequential
model = Sequential([Dense(128, input_dim=64, activation="sigmoid"),
                    Dense(128, activation="sigmoid"), Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="categorical_crossentropy")
model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
model.predict(X)
""",
    "estimator_adam": _DIGITS + """
import warnings
from fastnn import FastMLPClassifier
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # one iteration does not converge
    FastMLPClassifier(max_iter=1, random_state=0).fit(X, y).predict(X)
""",
    "mynn_float64": _DIGITS + """
from fastnn.mynn import MyNN
model = MyNN(X, Y)
model.fit(1)
model.predict(X)
""",
}


class _FreshProcess:
    timeout = 600
    number = 1
    repeat = 1
    warmup_time = 0
    params = list(ENTRY_POINTS)
    param_names = ["entry_point"]

    def teardown(self, entry_point):
        shutil.rmtree(self.cache_dir, ignore_errors=True)


class TimeColdStart(_FreshProcess):
    def setup(self, entry_point):
        self.cache_dir = tempfile.mkdtemp(prefix="fastnn-cold-")

    def timeraw_first_run(self, entry_point):
        return ENTRY_POINTS[entry_point], _SETUP.format(cache_dir=self.cache_dir)


class TimeWarmStart(_FreshProcess):
    def setup(self, entry_point):
        self.cache_dir = tempfile.mkdtemp(prefix="fastnn-warm-")
        filler = _SETUP.format(cache_dir=self.cache_dir) + ENTRY_POINTS[entry_point]
        subprocess.run([sys.executable, "-c", filler], check=True, capture_output=True)

    def timeraw_later_run(self, entry_point):
        return ENTRY_POINTS[entry_point], _SETUP.format(cache_dir=self.cache_dir)


class TimeImportFloor:
    """``import sklearn.utils`` in a fresh process: what warm start-up is compared with."""

    timeout = 120
    number = 1
    repeat = 3
    warmup_time = 0

    def timeraw_import_sklearn_utils(self):
        return "import sklearn.utils"
