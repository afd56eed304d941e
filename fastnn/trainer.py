"""The one training loop that every front end calls.

``fit`` runs epochs of mini-batch SGD on a flat parameter buffer with either
backend:

* ``"numba"``: the compiled whole-epoch driver ``kernels.epoch.train_epoch``
  (workspaces allocated here, once per call, and reused by every epoch);
* ``"numpy"``: the reference path ``reference.train_epoch``.

Both visit the rows in the same order, drawn from one seeded generator, so the
two backends can be compared epoch by epoch.
"""

import concurrent.futures
import contextlib
import math
import time
from dataclasses import dataclass, field

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from . import config, reference
from .network import as_random_state
from .kernels import epoch as compiled

BACKENDS = ("numba", "numpy")


@contextlib.contextmanager
def thread_limit(threads, backend):
    """Run the body with ``threads`` threads for the backend's thread pool; restore it after.

    The compiled engine runs on Numba's threads and calls no BLAS; the NumPy reference
    runs on BLAS's threads (limited with threadpoolctl, which costs about a millisecond
    per call, so it is only entered where BLAS works).  threads=None changes nothing.
    """
    if threads is None:
        yield
        return
    threads = int(threads)
    if not 1 <= threads <= config.NUMBA_MAX_THREADS:
        raise ValueError(f"threads must be between 1 and {config.NUMBA_MAX_THREADS}, got {threads}")
    if backend == "numpy":
        with threadpool_limits(limits=threads):
            yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def epoch_order(rng, n_samples, batch_size, shuffle):
    """Row order of one epoch: a permutation drawn from rng, or 0..n-1.

    A full batch is never shuffled: its gradient does not depend on the order.
    """
    if shuffle and batch_size < n_samples:
        return rng.permutation(n_samples).astype(np.int64)
    return np.arange(n_samples, dtype=np.int64)


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or weight; the model keeps its last finite weights."""


@dataclass
class History:
    """Per-epoch record of a training run."""

    loss: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)


def fit(arch, params, X, Y, *, epochs, batch_size, lr, random_state=None, shuffle=True,
        backend="numba", threads=None, on_epoch_end=None):
    """Train params in place with mini-batch SGD.

    Parameters
    ----------
    arch : network.Architecture
    params : ndarray of shape (n_params,), dtype arch.dtype; updated in place.
    X : ndarray of shape (n_samples, n_features); Y : ndarray of shape (n_samples, n_outputs)
        Cast to arch.dtype and made C-contiguous here.
    epochs : int
    batch_size : int
        Rows per mini-batch; 0 or None means the full batch.
    lr : float
    random_state : int, RandomState or None
        Seeds the shuffling.
    backend : "numba" or "numpy"
    threads : int or None
        Threads for this call, restored afterwards: Numba's for the compiled backend,
        BLAS's for the NumPy one.  None keeps the current setting.
    on_epoch_end : callable(epoch, loss) or None
        Called after every epoch (epoch counts from 1).

    Returns
    -------
    History
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {list(BACKENDS)}")
    X, Y = _check_data(arch, params, X, Y)
    if not (isinstance(epochs, (int, np.integer)) and epochs >= 0):
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if batch_size is not None and int(batch_size) < 0:
        raise ValueError(f"batch_size must be >= 0 (0 or None: the full batch), got {batch_size!r}")
    dtype = np.dtype(arch.dtype)
    n = X.shape[0]
    batch_size = n if not batch_size else min(int(batch_size), n)
    rng = as_random_state(random_state)
    history = History()
    if backend == "numba":
        run_epoch = _compiled_epoch(arch, params, X, Y, batch_size, lr)
    else:
        def run_epoch(order):
            return reference.train_epoch(arch, params, X, Y, order, batch_size, dtype.type(lr))
    with thread_limit(threads, backend):
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            backup = params.copy()
            loss = run_epoch(epoch_order(rng, n, batch_size, shuffle))
            history.epoch_seconds.append(time.perf_counter() - start)
            # The loss is measured before each update, so the weights are checked too.
            if not (math.isfinite(loss) and np.isfinite(params).all()):
                params[:] = backup
                raise DivergenceError(
                    f"training diverged: a non-finite loss or weight in epoch {epoch} (mean "
                    f"loss {loss}); the weights of epoch {epoch - 1} were kept. Lower the "
                    f"learning rate (now {lr}) or rescale the inputs."
                )
            history.loss.append(loss)
            if on_epoch_end is not None:
                on_epoch_end(epoch, loss)
    return history


def _check_params(arch, params):
    """Raise ValueError unless params is the flat buffer of arch (shape and dtype)."""
    if params.dtype != np.dtype(arch.dtype) or params.shape != (arch.n_params,):
        raise ValueError(f"params must have shape ({arch.n_params},) and dtype {arch.dtype}, "
                         f"got {params.shape} {params.dtype}")


def _as_input(arch, X):
    """X as a C-contiguous array of the network's dtype, after checking its shape."""
    X = np.ascontiguousarray(X, dtype=arch.dtype)
    if X.ndim != 2 or X.shape[1] != arch.sizes[0]:
        raise ValueError(f"X must have shape (n_samples, {arch.sizes[0]}), got {X.shape}")
    return X


def _check_data(arch, params, X, Y):
    """X and Y as C-contiguous arrays of the network's dtype, after checking their shapes.

    The compiled kernels trust the shapes they are given, so everything they rely on is
    checked here, with a message that names the problem.
    """
    _check_params(arch, params)
    X = _as_input(arch, X)
    Y = np.ascontiguousarray(Y, dtype=arch.dtype)
    if Y.ndim != 2 or Y.shape[1] != arch.sizes[-1]:
        raise ValueError(f"Y must have shape (n_samples, {arch.sizes[-1]}), got {Y.shape}")
    if X.shape[0] != Y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"X and Y need the same, non-zero number of rows, got {X.shape[0]} "
                         f"and {Y.shape[0]}")
    return X, Y


def _compiled_epoch(arch, params, X, Y, batch_size, lr):
    """A function order -> loss running one compiled epoch; workspaces allocated here, once."""
    sizes = np.array(arch.sizes, dtype=np.int64)
    offsets = arch.offsets
    codes = arch.activation_codes
    tasks = compiled.make_tasks(arch.sizes)
    dtype = params.dtype
    params_t = np.zeros_like(params)
    grads = np.zeros_like(params)
    acts = np.zeros(batch_size * int(sizes.sum()), dtype=dtype)
    deltas = np.zeros_like(acts)
    targets = np.zeros((batch_size, sizes[-1]), dtype=dtype)
    chunk_losses = np.zeros(-(-batch_size // config.CHUNK_ROWS))
    lr = dtype.type(lr)

    def run_epoch(order):
        return compiled.train_epoch(params, params_t, grads, sizes, offsets, codes, tasks, X, Y,
                                    order, batch_size, lr, acts, deltas, targets, chunk_losses)

    return run_epoch


def predict_output(arch, params, X, backend="numba", threads=None):
    """Head output for X, ndarray of shape (n_samples, n_outputs) in arch.dtype."""
    _check_params(arch, params)
    X = _as_input(arch, X)
    with thread_limit(threads, backend):
        if backend == "numpy":
            return reference.predict_proba(arch, params, X)
        out = np.empty((X.shape[0], arch.sizes[-1]), dtype=arch.dtype)
        sizes, offsets, codes = np.array(arch.sizes, dtype=np.int64), arch.offsets, arch.activation_codes
        n_workers = max(1, min(numba.get_num_threads(), -(-X.shape[0] // config.PREDICT_CHUNK_ROWS)))
        bounds = np.linspace(0, X.shape[0], n_workers + 1).astype(np.int64)

        def predict_range(worker):
            compiled.predict_rows(params, sizes, offsets, codes, X, out, bounds[worker],
                                  bounds[worker + 1])

        if n_workers == 1:
            predict_range(0)
        else:  # rows are independent: Python threads over the GIL-free kernel
            with concurrent.futures.ThreadPoolExecutor(n_workers) as pool:
                list(pool.map(predict_range, range(n_workers)))
        return out
