"""Start-up in a fresh interpreter: cold compilation, and loading an already-filled cache.

Both benchmarks time ``import fastnn`` plus one W1 epoch (64-128-128-10, batch 64,
float32, 1617 random rows) in a new Python process (asv's ``timeraw_``: the returned
setup runs first, untimed).  Each uses its own NUMBA_CACHE_DIR, so the package's cache
and the other benchmarks do not interfere:

* cold: an empty cache directory, so every kernel is compiled (the first run ever);
* warm: a directory that ``setup`` filled by running the same code once in a subprocess.
"""

import os
import shutil
import subprocess
import sys
import tempfile

# Runs in the child before the timed statement; must not import numba (it reads
# NUMBA_CACHE_DIR when it is imported).
_SETUP = """
import os
os.environ["NUMBA_CACHE_DIR"] = {cache_dir!r}
os.environ["FASTNN_CACHE"] = "1"
"""

_ONE_EPOCH = """
import numpy as np
import fastnn
arch = fastnn.Architecture((64, 128, 128, 10), "sigmoid", "softmax", "float32")
params = fastnn.init_params(arch, "normal", random_state=0)
rng = np.random.default_rng(0)
X = rng.random((1617, 64))
Y = np.eye(10)[rng.integers(0, 10, 1617)]
fastnn.fit(arch, params, X, Y, epochs=1, batch_size=64, lr=0.5, random_state=0, threads=1)
"""


class _FreshProcess:
    timeout = 300
    number = 1
    repeat = 1
    warmup_time = 0

    def teardown(self):
        shutil.rmtree(self.cache_dir, ignore_errors=True)


class TimeColdStart(_FreshProcess):
    def setup(self):
        self.cache_dir = tempfile.mkdtemp(prefix="fastnn-cold-")

    def timeraw_import_and_epoch(self):
        return _ONE_EPOCH, _SETUP.format(cache_dir=self.cache_dir)


class TimeWarmStart(_FreshProcess):
    def setup(self):
        self.cache_dir = tempfile.mkdtemp(prefix="fastnn-warm-")
        filler = _SETUP.format(cache_dir=self.cache_dir) + _ONE_EPOCH
        subprocess.run([sys.executable, "-c", filler], check=True)

    def timeraw_import_and_epoch(self):
        return _ONE_EPOCH, _SETUP.format(cache_dir=self.cache_dir)
