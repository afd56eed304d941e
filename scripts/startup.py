"""Start-up of each entry point: cold (empty Numba cache) and warm, in fresh processes.

    python scripts/startup.py                 # every entry point, once each
    python scripts/startup.py --repeat 3 cli  # the command line only, best of 3

Each entry point's default configuration trains one epoch on the tutorial's digits
data (1617 rows) and predicts, in a new Python process:

* ``cli``:        ``python -m fastnn.train --epochs 1`` (float32, SGD);
* ``fit``:        ``fastnn.fit`` + ``predict_output``, float32, SGD;
* ``sequential``: ``Sequential`` 64-128-128-10 with Adam (float32);
* ``estimator``:  ``FastMLPClassifier(max_iter=1)`` (Adam, relu, float64);
* ``mynn``:       the tutorial's ``MyNN(x, y).fit(1)`` (float64, full batch).

Cold runs use a new, empty NUMBA_CACHE_DIR, so every kernel is compiled; the warm
run then loads them from it.  Reported: the cold run's first epoch (wall seconds of
the first training call, compiling included), the cold run's wall seconds from its
start to the end of that epoch (the imports included: what the user waits for before
the first epoch's progress line), and wall seconds and CPU seconds of the whole run
(user + sys of the child, from ``resource.getrusage``).  On a shared machine the CPU
seconds are the steadier number; both grow with the load.  ``import sklearn.utils``
alone is the floor that a front end's scikit-learn validation sets.
"""

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_DIGITS = """
import sys
import time
import numpy as np
from sklearn.datasets import load_digits
digits = load_digits()
X, y = digits.data[:1617] / 16.0, digits.target[:1617]
Y = np.eye(10)[y]
"""

#: name -> (what it runs, its Python source or None for the command line).
ENTRY_POINTS = {
    "cli": ("python -m fastnn.train --epochs 1 (float32 + sgd)", None),
    "fit": ("fastnn.fit + predict_output (float32 + sgd)", _DIGITS + """
import fastnn
arch = fastnn.Architecture((64, 128, 128, 10), "sigmoid", "softmax", "float32")
params = fastnn.init_params(arch, "normal", random_state=0)
start = time.perf_counter()
fastnn.fit(arch, params, X, Y, epochs=1, batch_size=64, lr=0.5, random_state=0)
print("first epoch", time.perf_counter() - start, file=sys.stderr)
fastnn.predict_output(arch, params, X)
"""),
    "sequential": ("Sequential + Adam (float32)", _DIGITS + """
from fastnn import Dense, Sequential
model = Sequential([Dense(128, input_dim=64, activation="sigmoid"),
                    Dense(128, activation="sigmoid"), Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="categorical_crossentropy")
start = time.perf_counter()
model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
print("first epoch", time.perf_counter() - start, file=sys.stderr)
model.predict(X)
"""),
    "estimator": ("FastMLPClassifier, adam (float64)", _DIGITS + """
import warnings
from fastnn import FastMLPClassifier
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # one iteration does not converge
    start = time.perf_counter()
    model = FastMLPClassifier(max_iter=1, random_state=0).fit(X, y)
    print("first epoch", time.perf_counter() - start, file=sys.stderr)
    model.predict(X)
"""),
    "mynn": ("MyNN (float64 + sgd, full batch)", _DIGITS + """
from fastnn.mynn import MyNN
model = MyNN(X, Y)
start = time.perf_counter()
model.fit(1)
print("first epoch", time.perf_counter() - start, file=sys.stderr)
model.predict(X)
"""),
}

SKLEARN_IMPORT = "import sklearn.utils"


#: How a child reports the wall seconds of its first epoch (compile included): the
#: scripts above print the first, the command line's summary holds the second.
FIRST_EPOCH = re.compile(r"^(?:first epoch|training time) ([0-9.]+)", re.MULTILINE)


#: The line a child prints when its first epoch ends: the scripts' "first epoch", the
#: command line's progress line.
FIRST_EPOCH_DONE = re.compile(r"^(?:first epoch |epoch 1/)")


def run_child(argv, cache_dir):
    """(wall s, CPU s, first epoch s or None, to first epoch s or None) of a child process
    with NUMBA_CACHE_DIR=cache_dir; the last is the wall time from its start until
    the line that ends its first epoch arrives (unbuffered output).  Raises on failure.
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONUNBUFFERED="1")
    env.pop("FASTNN_CACHE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    to_first_epoch, lines = None, []
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as child:
        for line in child.stdout:
            if to_first_epoch is None and FIRST_EPOCH_DONE.match(line):
                to_first_epoch = time.perf_counter() - start
            lines.append(line)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = "".join(lines)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{output}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    first_epoch = FIRST_EPOCH.search(output)
    return wall, cpu, first_epoch and float(first_epoch.group(1)), to_first_epoch


def command(name):
    source = ENTRY_POINTS[name][1]
    if source is None:
        return [sys.executable, "-m", "fastnn.train", "--epochs", "1"]
    return [sys.executable, "-c", source]


def measure(name, repeat):
    """Best (wall, CPU, first epoch) of repeat cold runs and of repeat warm runs of an entry point."""
    cold, warm = [], []
    for _ in range(repeat):
        cache_dir = tempfile.mkdtemp(prefix="fastnn-startup-")
        try:
            cold.append(run_child(command(name), cache_dir))
            warm.append(run_child(command(name), cache_dir))
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return min(cold, key=lambda t: t[1]), min(warm, key=lambda t: t[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("entry_points", nargs="*", metavar="NAME",
                        help=f"any of {', '.join(ENTRY_POINTS)} (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best is shown")
    args = parser.parse_args(argv)
    names = args.entry_points or list(ENTRY_POINTS)
    unknown = [name for name in names if name not in ENTRY_POINTS]
    if unknown:
        parser.error(f"unknown entry point {unknown[0]!r}; choose from {', '.join(ENTRY_POINTS)}")
    floor = [run_child([sys.executable, "-c", SKLEARN_IMPORT], tempfile.gettempdir())
             for _ in range(max(3, args.repeat))]
    print(f"`{SKLEARN_IMPORT}` alone: wall {statistics.median(t[0] for t in floor):.2f} s, "
          f"CPU {statistics.median(t[1] for t in floor):.2f} s (median of {len(floor)})")
    print("| entry point | cold first epoch | cold to first epoch | cold wall | cold CPU | "
          "warm wall | warm CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        (cold_wall, cold_cpu, first_epoch, to_first), (warm_wall, warm_cpu, _, _) = \
            measure(name, args.repeat)
        print(f"| {ENTRY_POINTS[name][0]} | {first_epoch:.1f} s | {to_first:.1f} s | "
              f"{cold_wall:.1f} s | {cold_cpu:.1f} s | {warm_wall:.2f} s | {warm_cpu:.2f} s |",
              flush=True)


if __name__ == "__main__":
    main()
