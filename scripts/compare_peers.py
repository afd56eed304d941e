"""Side-by-side comparison of fastnn with its peers, all in one process.

Systems
-------
fastnn     fastnn's compiled engine, ``fit(..., backend="numba")``
reference  fastnn's NumPy reference path, ``fit(..., backend="numpy")``
tutorial   the tutorial's ``MyNN`` algorithm re-implemented here (plain NumPy, one Python
           loop per epoch; for mini-batch workloads a plain shuffled mini-batch loop).
           It computes the loss every step as the tutorial does, but does not print it.
sklearn    ``MLPClassifier(solver="sgd", momentum=0, alpha=0, activation="logistic")``,
           one ``partial_fit`` per epoch
torch      ``nn.Sequential`` of Linear/Sigmoid, cross-entropy, a hand-written SGD step
           (skipped with a note when PyTorch is not installed)
jax        one jitted function per epoch: ``lax.scan`` over the pre-shuffled batches, then
           one step on the last partial batch (skipped when JAX is not installed)

Every system starts from the same weights (``fastnn.init_params``) and runs the same
math: sigmoid hidden layers, softmax + categorical cross-entropy, plain SGD whose
output delta is ``(p - y) / n_batch``.

Workloads
---------
W1     sklearn digits (X = data / 16, the tutorial's split ``train_test_split(test_size=0.1,
       random_state=20)``: 1617 training rows), 64-128-128-10, batch 64, lr 0.5,
       N(0, 1) init as the tutorial's ``randn``; float32 and float64.
W1a    the tutorial's own run: the same network and data, full batch, float64, lr 0.5.
       The tutorial trains 1500 epochs; the "1500 ep" column is the actual total when
       1500 or more epochs were timed, else 1500 x the median (marked "~").
W2     ``make_classification(60000, 784 features, 200 informative, 10 classes,
       random_state=0)``, 10000 rows held out for testing (random_state=0), standardised
       with the training rows' statistics; 784-512-512-10, batch 128, lr 0.1,
       Glorot-uniform init, float32.
infer  prediction (softmax output + argmax) of all 60000 standardised W2 rows with the
       W2 network at its initial weights, float32.  Instead of an accuracy, the table
       shows how many labels agree with fastnn compiled.

Method
------
For each workload x dtype x thread count x system: one warm-up epoch on a throwaway
copy (compiles Numba and XLA code, starts thread pools), then a fresh model runs the
timed epochs (prediction: the timed repeats).  Reported: the MEDIAN seconds per epoch
(or per prediction), ``peer / fastnn`` (the peer's median over fastnn compiled's at the
same dtype and threads; > 1 means fastnn is faster), achieved GFLOP/s, % of
``--peak-gflops`` when given, and the test accuracy after the timed epochs.
fastnn's per-epoch times come from its own ``History.epoch_seconds``; every other
system is timed around each epoch call by ``time_calls``.

``--rounds R`` (default 1) measures every system of a row R times, alternating (fastnn,
then each peer, then fastnn again ...), and reports the median of the R medians (the
"1500 ep" column: the median of the R totals).  A machine that slows down for a few
minutes, as shared virtual machines do, then spoils one round of every system instead
of one system's only measurement.

FLOP count, per sample, for layers l = 1..L with fan_in_l x fan_out_l weights::

    forward            2 * sum_{l=1..L} fan_in_l * fan_out_l
    delta propagation  2 * sum_{l=2..L} fan_in_l * fan_out_l   (none into the input)
    weight gradients   2 * sum_{l=1..L} fan_in_l * fan_out_l

A training epoch counts (forward + delta propagation + weight gradients) x n_train,
a prediction forward x n_rows.  Bias, activation, loss and update work is not counted.
Per sample: W1 138 752 training FLOPs, W2 3 209 216 (prediction: 1 337 344).

Threads: ``--threads`` goes to fastnn's ``threads`` argument (Numba and BLAS), to
threadpoolctl for the tutorial loop and scikit-learn, and to ``torch.set_num_threads``
for PyTorch.  XLA sizes its CPU thread pool when JAX starts and cannot be changed in
the process, so a JAX row with fewer threads than the machine has CPUs runs in a
child process started for it, with ``XLA_FLAGS`` limiting XLA to one intra-op thread
(``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``) and the
process pinned to that many CPUs (``os.sched_setaffinity``), so that 1-thread ratios
compare like with like.  The JAX rows with all CPUs run in this process.

Ceilings: ``--peak-json`` reads the JSON written by ``scripts/machine_peak.py`` and
gives every row the GEMM ceiling of its own dtype and thread count for the "% peak"
column; ``--peak-gflops`` sets one number for every row instead.

Thread scaling: with more than one thread count, a last table gives each system's
speedup from the fewest threads to each other count (its median there over its median
here), beside the ceiling's own speedup from ``--peak-json``.  A row keeps its "% peak"
from the fewest threads only if it scales as much as the ceiling does.

How to run
----------
From the repository root, with the project's virtual environment::

    python scripts/compare_peers.py --quick                     # smoke test, seconds
    python scripts/compare_peers.py --json results.json         # the full comparison
    python scripts/compare_peers.py --rounds 3                  # medians of 3 alternating rounds
    python scripts/compare_peers.py --workloads W1,infer --threads 1 --systems fastnn,torch
    python scripts/machine_peak.py --json peak.json && \
        python scripts/compare_peers.py --peak-json peak.json    # % of each dtype's ceiling

On machines where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set (older OpenBLAS builds
need them), they slow a current NumPy's BLAS.  Unset both only in the command of a
benchmark that compares against NumPy's BLAS, and never in tests or CI::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/compare_peers.py --json r.json

The header printed first says which OpenBLAS kernel NumPy then runs (threadpoolctl).
"""

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import fastnn
from fastnn import Architecture, fit, init_params, layer_views, predict_output
from fastnn.kernels.gemm import numba_target

SEED = 0
TUTORIAL_EPOCHS = 1500
SYSTEMS = ("fastnn", "reference", "tutorial", "sklearn", "torch", "jax")
OPTIONAL = {"torch": "torch", "jax": "jax"}  # system -> module it needs


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    sizes: tuple
    batch_size: int  # 0: full batch
    lr: float
    init: str
    dtypes: tuple
    count: int  # timed epochs (prediction: timed repeats)
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    predict_only: bool = False

    @property
    def matmul_sizes(self):
        return [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])]

    @property
    def flops(self):
        """FLOPs of one epoch (or one prediction of X_test), as the module docstring counts them."""
        mm = self.matmul_sizes
        if self.predict_only:
            return 2 * sum(mm) * len(self.X_test)
        return (2 * sum(mm) + 2 * sum(mm[1:]) + 2 * sum(mm)) * len(self.X_train)


@functools.cache
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    return train_test_split(data.data / 16.0, data.target, test_size=0.1, random_state=20)


@functools.cache
def synthetic():
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=60000, n_features=784, n_informative=200,
                               n_classes=10, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=10000, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return (scaler.transform(X_train), scaler.transform(X_test), y_train, y_test,
            scaler.transform(X), y)


def make_workload(name, count):
    """The workload called name, timing count epochs (or prediction repeats)."""
    if name in ("W1", "W1a"):
        X_train, X_test, y_train, y_test = digits()
        batch, dtypes = (64, ("float32", "float64")) if name == "W1" else (0, ("float64",))
        return Workload(name, (64, 128, 128, 10), batch, 0.5, "normal", dtypes, count,
                        X_train, y_train, X_test, y_test)
    X_train, X_test, y_train, y_test, X_all, y_all = synthetic()
    sizes = (784, 512, 512, 10)
    if name == "W2":
        return Workload(name, sizes, 128, 0.1, "glorot_uniform", ("float32",), count,
                        X_train, y_train, X_test, y_test)
    return Workload(name, sizes, 128, 0.1, "glorot_uniform", ("float32",), count,
                    X_train, y_train, X_all, y_all, predict_only=True)


DEFAULT_COUNTS = {"W1": 20, "W1a": TUTORIAL_EPOCHS, "W2": 5, "infer": 5}
QUICK_COUNTS = {"W1": 2, "W1a": 5, "W2": 1, "infer": 2}


# ---------------------------------------------------------------------------
# Systems: each make_* returns a Runner around a fresh model
# ---------------------------------------------------------------------------


@dataclass
class Runner:
    """A model of one system.

    fit(epochs) trains and returns the seconds of each epoch; prepare(X) converts an
    input matrix to the system's own type (untimed); predict(prepared) returns labels.
    """

    fit: Callable
    predict: Callable
    prepare: Callable
    note: str = ""


def time_calls(fn, count):
    """Seconds of each of count calls fn()."""
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def initial_layers(wl, dtype):
    """The starting weights every system shares: [(W of shape (fan_in, fan_out), b), ...]."""
    arch = Architecture(wl.sizes, "sigmoid", "softmax", dtype)
    params = init_params(arch, wl.init, random_state=SEED)
    return [(W.copy(), b.copy()) for W, b in layer_views(arch, params)]


def training_data(wl, dtype):
    """X (n, n_features) in dtype, integer labels y (n,), one-hot Y (n, n_classes) in dtype."""
    X = np.ascontiguousarray(wl.X_train, dtype=dtype)
    return X, wl.y_train, np.eye(wl.sizes[-1], dtype=dtype)[wl.y_train]


def as_numpy(dtype):
    return functools.partial(np.ascontiguousarray, dtype=dtype)


def make_fastnn(wl, dtype, threads, backend="numba"):
    arch = Architecture(wl.sizes, "sigmoid", "softmax", dtype)
    params = init_params(arch, wl.init, random_state=SEED)
    X, _, Y = training_data(wl, dtype)

    def train(epochs):
        return fit(arch, params, X, Y, epochs=epochs, batch_size=wl.batch_size, lr=wl.lr,
                   random_state=SEED, backend=backend, threads=threads).epoch_seconds

    def predict(Xq):
        return predict_output(arch, params, Xq, backend=backend, threads=threads).argmax(1)

    return Runner(train, predict, as_numpy(dtype))


make_reference = functools.partial(make_fastnn, backend="numpy")


class MyNN:
    """The tutorial's network: sigmoid, sigmoid, softmax; W of shape (fan_in, fan_out)."""

    def __init__(self, layers, lr):
        (self.w1, b1), (self.w2, b2), (self.w3, b3) = layers
        self.b1, self.b2, self.b3 = b1[None, :], b2[None, :], b3[None, :]
        self.lr = lr

    @staticmethod
    def sigmoid(s):
        return 1 / (1 + np.exp(-s))

    @staticmethod
    def softmax(s):
        exps = np.exp(s - np.max(s, axis=1, keepdims=True))
        return exps / np.sum(exps, axis=1, keepdims=True)

    def feedforward(self, x):
        self.a1 = self.sigmoid(np.dot(x, self.w1) + self.b1)
        self.a2 = self.sigmoid(np.dot(self.a1, self.w2) + self.b2)
        self.a3 = self.softmax(np.dot(self.a2, self.w3) + self.b3)
        return self.a3

    def backprop(self, x, y):
        n = y.shape[0]
        self.loss = np.sum(-np.log(self.a3[np.arange(n), y.argmax(axis=1)])) / n
        a3_delta = (self.a3 - y) / n
        a2_delta = np.dot(a3_delta, self.w3.T) * self.a2 * (1 - self.a2)
        a1_delta = np.dot(a2_delta, self.w2.T) * self.a1 * (1 - self.a1)
        self.w3 -= self.lr * np.dot(self.a2.T, a3_delta)
        self.b3 -= self.lr * np.sum(a3_delta, axis=0, keepdims=True)
        self.w2 -= self.lr * np.dot(self.a1.T, a2_delta)
        self.b2 -= self.lr * np.sum(a2_delta, axis=0)
        self.w1 -= self.lr * np.dot(x.T, a1_delta)
        self.b1 -= self.lr * np.sum(a1_delta, axis=0)


def make_tutorial(wl, dtype, threads):
    model = MyNN(initial_layers(wl, dtype), wl.lr)
    X, _, Y = training_data(wl, dtype)
    n = len(X)
    rng = np.random.RandomState(SEED)

    def epoch():
        if not wl.batch_size or wl.batch_size >= n:  # the tutorial's full-batch step
            model.feedforward(X)
            model.backprop(X, Y)
            return
        order = rng.permutation(n)
        for start in range(0, n, wl.batch_size):
            rows = order[start : start + wl.batch_size]
            x, y = X[rows], Y[rows]
            model.feedforward(x)
            model.backprop(x, y)

    def fit(epochs):
        with threadpool_limits(threads), np.errstate(over="ignore"):  # exp(-s) of very negative s
            return time_calls(epoch, epochs)

    def predict(Xq):
        with threadpool_limits(threads), np.errstate(over="ignore"):
            return model.feedforward(Xq).argmax(1)

    return Runner(fit, predict, as_numpy(dtype))


def make_sklearn(wl, dtype, threads):
    from sklearn.neural_network import MLPClassifier

    X, y, _ = training_data(wl, dtype)
    n = len(X)
    batch = wl.batch_size if 0 < wl.batch_size < n else n
    clf = MLPClassifier(hidden_layer_sizes=wl.sizes[1:-1], activation="logistic", solver="sgd",
                        alpha=0.0, batch_size=batch, learning_rate="constant",
                        learning_rate_init=wl.lr, momentum=0.0, nesterovs_momentum=False,
                        shuffle=batch < n, random_state=SEED, max_iter=1, warm_start=True)
    with threadpool_limits(threads):
        clf.partial_fit(X[:batch], y[:batch], classes=np.arange(wl.sizes[-1]))  # builds the layers
    layers = initial_layers(wl, dtype)
    clf.coefs_ = [W for W, _ in layers]
    clf.intercepts_ = [b for _, b in layers]

    def fit(epochs):
        with threadpool_limits(threads):
            return time_calls(lambda: clf.partial_fit(X, y), epochs)

    def predict(Xq):
        with threadpool_limits(threads):
            return clf.predict_proba(Xq).argmax(1)

    return Runner(fit, predict, as_numpy(dtype), "partial_fit per epoch (validates X each call)")


@contextlib.contextmanager
def torch_threads(threads):
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_torch(wl, dtype, threads):
    import torch
    from torch import nn

    tdtype = getattr(torch, dtype)
    modules = []
    for W, b in initial_layers(wl, dtype):
        linear = nn.Linear(*W.shape, dtype=tdtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T))  # torch stores (fan_out, fan_in)
            linear.bias.copy_(torch.from_numpy(b))
        modules += [linear, nn.Sigmoid()]
    model = nn.Sequential(*modules[:-1])  # softmax lives in the loss
    X, y, _ = training_data(wl, dtype)
    X, y = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    n = len(X)
    batch = wl.batch_size if 0 < wl.batch_size < n else n
    generator = torch.Generator().manual_seed(SEED)

    def step(x, target):
        loss = nn.functional.cross_entropy(model(x), target)
        model.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(p.grad, alpha=wl.lr)

    def epoch():
        if batch == n:
            return step(X, y)
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            rows = order[start : start + batch]
            step(X[rows], y[rows])

    def fit(epochs):
        with torch_threads(threads):
            return time_calls(epoch, epochs)

    def predict(Xq):
        with torch_threads(threads), torch.no_grad():
            return torch.softmax(model(Xq), dim=1).argmax(1).numpy()

    return Runner(fit, predict, lambda Xq: torch.from_numpy(np.ascontiguousarray(Xq, dtype=dtype)))


@functools.cache
def jax_functions():
    """(jax, jnp, epoch, predict_proba), jitted once per process so warm-ups carry over."""
    import jax

    jax.config.update("jax_enable_x64", True)  # for float64; float32 arrays stay float32
    import jax.numpy as jnp

    def forward_logits(params, x):
        for W, b in params[:-1]:
            x = jax.nn.sigmoid(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def loss(params, x, y):
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(forward_logits(params, x)), axis=1))

    def step(params, x, y, lr):
        grads = jax.grad(loss)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

    @functools.partial(jax.jit, static_argnames="batch_size")
    def epoch(params, X, Y, order, lr, batch_size):
        n_full = len(order) // batch_size * batch_size
        Xs, Ys = X[order], Y[order]
        batches = (Xs[:n_full].reshape(-1, batch_size, X.shape[1]),
                   Ys[:n_full].reshape(-1, batch_size, Y.shape[1]))
        params, _ = jax.lax.scan(lambda p, xy: (step(p, *xy, lr), None), params, batches)
        if n_full < len(order):  # the last, partial batch
            params = step(params, Xs[n_full:], Ys[n_full:], lr)
        return params

    predict_proba = jax.jit(lambda params, x: jax.nn.softmax(forward_logits(params, x), axis=1))
    return jax, jnp, epoch, predict_proba


def jax_threads_note():
    return (f"XLA's CPU thread pool is sized when JAX starts (os.cpu_count()={os.cpu_count()}, "
            f"XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}); --threads does not apply")


def make_jax(wl, dtype, threads):
    jax, jnp, epoch_fn, predict_proba = jax_functions()
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in initial_layers(wl, dtype)]
    X, _, Y = training_data(wl, dtype)
    n = len(X)
    batch = wl.batch_size if 0 < wl.batch_size < n else n
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    rng = np.random.RandomState(SEED)

    def epoch():
        nonlocal params
        order = rng.permutation(n) if batch < n else np.arange(n)
        params = jax.block_until_ready(epoch_fn(params, X, Y, order, wl.lr, batch))

    def fit(epochs):
        return time_calls(epoch, epochs)

    def predict(Xq):
        return np.asarray(predict_proba(params, Xq).argmax(1))

    prepare = lambda Xq: jnp.asarray(np.ascontiguousarray(Xq, dtype=dtype))
    return Runner(fit, predict, prepare, "threads: XLA's own pool")


MAKERS = {"fastnn": make_fastnn, "reference": make_reference, "tutorial": make_tutorial,
          "sklearn": make_sklearn, "torch": make_torch, "jax": make_jax}


# ---------------------------------------------------------------------------
# Measuring and reporting
# ---------------------------------------------------------------------------


#: What a JAX child process gets to run XLA on one thread per CPU it is pinned to.
JAX_ONE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def measure_jax_in_child(wl, dtype, threads):
    """measure("jax", ...) in a child process whose XLA uses `threads` CPUs only.

    The child rebuilds the workload from the same seeds, pins itself to the first
    `threads` CPUs and writes its row and predicted labels to a temporary file.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "row.json")
        env = dict(os.environ, XLA_FLAGS=JAX_ONE_THREAD_FLAGS)
        command = [sys.executable, os.path.abspath(__file__), "--jax-child",
                   json.dumps(dict(workload=wl.name, count=wl.count, dtype=dtype,
                                   threads=threads, out=out))]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            row = dict(workload=wl.name, dtype=dtype, threads=threads, system="jax",
                       count=wl.count, error="child process failed: "
                       + (done.stderr.strip().splitlines() or ["no output"])[-1])
            return row, None
        with open(out) as f:
            result = json.load(f)
    labels = None if result["labels"] is None else np.array(result["labels"])
    return result["row"], labels


def jax_child(spec):
    """The child side of measure_jax_in_child: spec is its JSON argument."""
    spec = json.loads(spec)
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:spec["threads"]]))
    wl = make_workload(spec["workload"], spec["count"])
    row, labels = measure("jax", wl, spec["dtype"], spec["threads"], in_child=True)
    row["note"] = (f"child process pinned to {spec['threads']} CPU(s), "
                   f"XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}")
    with open(spec["out"], "w") as f:
        json.dump(dict(row=row, labels=None if labels is None else labels.tolist()), f)


def measure(system, wl, dtype, threads, in_child=False):
    """One result row: warm up on a throwaway model, then time a fresh one.

    JAX rows with fewer threads than CPUs run in a child process (see
    ``measure_jax_in_child``) unless this is that child.
    """
    if system == "jax" and threads < os.cpu_count() and not in_child:
        return measure_jax_in_child(wl, dtype, threads)
    make = MAKERS[system]
    row = dict(workload=wl.name, dtype=dtype, threads=threads, system=system, count=wl.count)
    try:
        warm = make(wl, dtype, threads)
        if wl.predict_only:
            runner = warm
            X = runner.prepare(wl.X_test)
            runner.predict(X)
            seconds = time_calls(lambda: runner.predict(X), wl.count)
        else:
            warm.fit(1)
            del warm
            runner = make(wl, dtype, threads)
            seconds = runner.fit(wl.count)
            X = runner.prepare(wl.X_test)
        labels = runner.predict(X)
    except Exception as exc:  # one failing peer must not lose the others' results
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row, None
    median = statistics.median(seconds)
    row.update(median_s=median, seconds=seconds, gflops=wl.flops / median / 1e9,
               accuracy=float(np.mean(labels == wl.y_test)), note=runner.note)
    if wl.name == "W1a":
        actual = len(seconds) >= TUTORIAL_EPOCHS
        row["total_1500_s"] = sum(seconds[:TUTORIAL_EPOCHS]) if actual else median * TUTORIAL_EPOCHS
        row["total_1500_kind"] = "actual" if actual else "extrapolated"
    return row, labels


def load_peaks(path):
    """{(dtype, threads): GEMM GFLOP/s} from the JSON that scripts/machine_peak.py writes."""
    with open(path) as f:
        results = json.load(f)["results"]
    return {(r["dtype"], r["threads"]): r["gemm_gflops"] for r in results}


def median_of_rounds(results, flops):
    """One row from the (row, labels) results of a system's rounds: the median of their
    medians (and of their 1500-epoch totals), flops per epoch or prediction for its
    GFLOP/s; every round's seconds are kept.  A round that failed makes the row that
    error."""
    failed = [row for row, _ in results if "error" in row]
    if failed:
        return failed[0], None
    rows = [row for row, _ in results]
    row = dict(rows[-1], rounds=len(rows), seconds=[s for r in rows for s in r["seconds"]],
               round_medians=[r["median_s"] for r in rows])
    row["median_s"] = statistics.median(row["round_medians"])
    row["gflops"] = flops / row["median_s"] / 1e9
    if "total_1500_s" in row:
        row["total_1500_s"] = statistics.median(r["total_1500_s"] for r in rows)
    return row, results[-1][1]


def run_block(wl, dtype, threads, systems, peak, rounds=1):
    """Rows of every system for one workload, dtype and thread count, with ratios to fastnn.

    peak: the GFLOP/s ceiling for this dtype and thread count (None: no % column);
    rounds: how many times each system is measured, the systems alternating
    (``median_of_rounds``).
    """
    results = {system: [] for system in systems}
    for _ in range(rounds):
        for system in systems:
            results[system].append(measure(system, wl, dtype, threads))
    rows, reference_labels = [], None
    for system in systems:
        row, labels = median_of_rounds(results[system], wl.flops)
        if system == "fastnn":
            reference_labels = labels
        if wl.predict_only and labels is not None and reference_labels is not None:
            row["agreement"] = float(np.mean(labels == reference_labels))
        rows.append(row)
    base = next((r.get("median_s") for r in rows if r["system"] == "fastnn"), None)
    for row in rows:
        if base and "median_s" in row:
            row["ratio_to_fastnn"] = row["median_s"] / base
        if peak and "gflops" in row:
            row["peak_gflops"] = peak
            row["pct_peak"] = 100 * row["gflops"] / peak
    return rows


def print_table(wl, rows, peak):
    unit = "s/predict" if wl.predict_only else "s/epoch"
    columns = ["system", "dtype", "thr", f"median {unit}", "peer/fastnn", "GFLOP/s"]
    columns += ["% peak"] if peak else []
    columns += ["agree w/ fastnn" if wl.predict_only else "test acc"]
    columns += ["1500 ep (s)"] if wl.name == "W1a" else []
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["system"], r["dtype"], str(r["threads"]), "error: " + r["error"]])
            continue
        line = [r["system"], r["dtype"], str(r["threads"]), f"{r['median_s']:.4g}",
                f"{r['ratio_to_fastnn']:.2f}" if "ratio_to_fastnn" in r else "-",
                f"{r['gflops']:.2f}"]
        line += [f"{r['pct_peak']:.1f}" if "pct_peak" in r else "-"] if peak else []
        line += [f"{r.get('agreement' if wl.predict_only else 'accuracy', float('nan')):.4f}"]
        if wl.name == "W1a":
            line += [("" if r["total_1500_kind"] == "actual" else "~") + f"{r['total_1500_s']:.3g}"]
        table.append(line)
    shape = "-".join(map(str, wl.sizes))
    if wl.predict_only:
        what = f"predict {len(wl.X_test)} rows, {wl.count} repeats, {wl.flops / 1e9:.3g} GFLOP each"
    else:
        what = (f"batch {wl.batch_size or 'full'}, lr {wl.lr}, {wl.count} timed epochs, "
                f"{wl.flops / 1e9:.3g} GFLOP per epoch")
    print(f"\n== {wl.name}: {shape}, {what} ==")
    print_columns(columns, table)


def print_columns(columns, table):
    """Print the header and rows right-aligned in columns; a row with another number of
    cells (an error) is printed as it is and does not widen the columns."""
    full = [t for t in table if len(t) == len(columns)]
    widths = [max([len(c)] + [len(t[i]) for t in full]) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for t in table:
        print("  ".join(c.rjust(w) for c, w in zip(t, widths)) if len(t) == len(columns)
              else "  ".join(t))


def thread_scaling(rows):
    """Each system's speedup from its fewest threads to each other thread count, per
    workload and dtype, and the ceiling's when both rows have one: a list of dicts
    (workload, dtype, system, threads, from_threads, speedup, peak_speedup or None)."""
    timed = {}
    for r in rows:
        if "median_s" in r:
            timed.setdefault((r["workload"], r["dtype"], r["system"]), {})[r["threads"]] = r
    scaling = []
    for (workload, dtype, system), by_threads in timed.items():
        fewest = min(by_threads)
        base = by_threads[fewest]
        for threads in sorted(by_threads)[1:]:
            r = by_threads[threads]
            peak_speedup = (r["peak_gflops"] / base["peak_gflops"]
                            if "peak_gflops" in r and "peak_gflops" in base else None)
            scaling.append(dict(workload=workload, dtype=dtype, system=system, threads=threads,
                                from_threads=fewest, speedup=base["median_s"] / r["median_s"],
                                peak_speedup=peak_speedup))
    return scaling


def print_scaling(scaling):
    if not scaling:
        return
    print("\n== thread scaling: speedup over the fewest threads (the GEMM ceiling's beside) ==")
    print_columns(["workload", "dtype", "system", "threads", "speedup", "ceiling's"],
                  [[s["workload"], s["dtype"], s["system"],
                    f"{s['from_threads']} -> {s['threads']}", f"{s['speedup']:.2f}x",
                    "-" if s["peak_speedup"] is None else f"{s['peak_speedup']:.2f}x"]
                   for s in scaling])


def environment():
    """What the numbers depend on: versions, BLAS kernel, thread layers, BLAS env overrides."""
    import numba
    import sklearn

    info = dict(python=platform.python_version(), machine=platform.machine(),
                cpu_count=os.cpu_count(), fastnn=fastnn.__version__, numpy=np.__version__,
                numba=numba.__version__, sklearn=sklearn.__version__,
                blas=[{k: lib.get(k) for k in ("internal_api", "version", "architecture",
                                               "num_threads", "filepath")}
                      for lib in threadpool_info() if lib.get("user_api") == "blas"],
                numba_target=numba_target(),
                env={k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                    "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                    "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES",
                                                    "XLA_FLAGS")})
    for name in OPTIONAL.values():
        if importlib.util.find_spec(name):
            info[name] = __import__(name).__version__
    return info


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="W1,W1a,W2,infer",
                        help="comma-separated subset of W1,W1a,W2,infer")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--epochs", type=int, help="timed epochs (prediction repeats) for every "
                        f"workload; default {DEFAULT_COUNTS}")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK_COUNTS} (not a measurement)")
    parser.add_argument("--peak-gflops", type=float,
                        help="one ceiling in GFLOP/s for every row's %% peak column")
    parser.add_argument("--peak-json", help="scripts/machine_peak.py's JSON: each row's %% peak "
                        "against the GEMM ceiling of its dtype and thread count")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each system this many times, alternating, and report "
                             "the median of the rounds (default 1)")
    parser.add_argument("--jax-child", help=argparse.SUPPRESS)  # internal: see jax_child
    parser.add_argument("--json", help="write all results to this path")
    args = parser.parse_args(argv)
    args.workloads = args.workloads.split(",")
    args.systems = args.systems.split(",")
    args.threads = [int(t) for t in args.threads.split(",")]
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    for value, allowed in ((args.workloads, DEFAULT_COUNTS), (args.systems, SYSTEMS)):
        unknown = set(value) - set(allowed)
        if unknown:
            parser.error(f"unknown {sorted(unknown)}; choose from {list(allowed)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.jax_child:
        return jax_child(args.jax_child)
    peaks = load_peaks(args.peak_json) if args.peak_json else {}
    skipped = {s: f"{OPTIONAL[s]} is not installed" for s in args.systems
               if s in OPTIONAL and importlib.util.find_spec(OPTIONAL[s]) is None}
    systems = [s for s in SYSTEMS if s in args.systems and s not in skipped]
    env = environment()
    print("environment:", json.dumps(env))
    if env["env"]["OPENBLAS_CORETYPE"] or env["env"]["OPENBLAS_L2_SIZE"]:
        print("note: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set and slow NumPy's BLAS; for a "
              "comparison against it run under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`")
    for system, why in skipped.items():
        print(f"note: skipping {system}: {why}")
    if "jax" in systems:
        print("note: jax:", jax_threads_note())
    if args.quick:
        print("note: --quick is a smoke test; its timings are not measurements")
    if args.rounds > 1:
        print(f"note: every row is the median of {args.rounds} rounds, the systems alternating")

    counts = QUICK_COUNTS if args.quick else DEFAULT_COUNTS
    results = []
    for name in args.workloads:
        wl = make_workload(name, args.epochs or counts[name])
        rows = []
        for dtype in wl.dtypes:
            for threads in args.threads:
                peak = args.peak_gflops or peaks.get((dtype, threads))
                if args.peak_json and peak is None:
                    print(f"note: {args.peak_json} has no ceiling for {dtype} on {threads} "
                          "thread(s)")
                rows += run_block(wl, dtype, threads, systems, peak, args.rounds)
        print_table(wl, rows, bool(args.peak_gflops or peaks))
        results += rows
    scaling = thread_scaling(results)
    print_scaling(scaling)

    if "fastnn" in systems:
        import numba

        env["numba_threading_layer"] = numba.threading_layer()
    if "jax" in systems:
        env["jax_threads"] = jax_threads_note()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(environment=env, skipped=skipped, quick=args.quick,
                           rounds=args.rounds, peak_gflops=args.peak_gflops,
                           peaks_from=args.peak_json, results=results, scaling=scaling),
                      f, indent=1)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
