"""The one training loop that every front end calls.

``fit`` runs epochs of mini-batch SGD on a flat parameter buffer with either
backend:

* ``"numba"``: the compiled whole-epoch driver ``kernels.epoch.train_epoch``
  (workspaces allocated here, once per call, and reused by every epoch);
* ``"numpy"``: the reference path ``reference.train_epoch``.

Both visit the rows in the same order, drawn from one seeded generator, so the
two backends can be compared epoch by epoch.

``fit_lbfgs`` is the one L-BFGS run (scikit-learn's ``solver="lbfgs"``): scipy's
L-BFGS-B on the full-batch loss and gradient (``kernels.objective``), one history
entry per iteration, with ``fit``'s validation, metrics, callbacks, early stopping
and signal handling.
"""

import collections
import concurrent.futures
import contextlib
import contextvars
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from . import config, reference
from .compilation import EntryPoint, compile_notice, describe
from .checks import (as_input, check_backend, check_batch_size, check_choice, check_data,
                     check_dropout_rate, check_epochs, check_l2, check_params, check_weights,
                     is_sparse, refuse_non_finite)
from .kernels import epoch as compiled
from .kernels.activations import unfused_argument, unfused_present
from .kernels.dropout import keep_threshold
from .kernels.objective import FullBatchObjective
from .kernels.sparse import check_first_layer, driver_inputs, sparse_readable
from .metrics import RUNNING_METRICS, check_metrics, scores
from .network import aligned_zeros, as_random_state
from .optimizers import Optimizer, make_optimizer
from .schedules import improvement, make_schedule

BACKENDS = ("numba", "numpy")
_BLAS_LIMIT_LOCK = threading.Lock()


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
        # BLAS's limit is process-wide: overlapping fits in several threads would each
        # restore the value they saw on entry, so they take turns.
        with _BLAS_LIMIT_LOCK, threadpool_limits(limits=threads):
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


class DivergenceError(FloatingPointError, ValueError):
    """Training produced a non-finite loss or weight; the model keeps its last finite weights.

    Also a ValueError, which scikit-learn's MLP raises for the same event, so
    ``except ValueError`` written for it catches this too.
    """


class DivergenceWarning(RuntimeWarning):
    """Training stopped on a non-finite loss or weight (``on_divergence="stop"``)."""


class StopTraining(Exception):
    """Raise from a callback to end training after the current epoch."""


class Callback:
    """Hooks called by ``fit``; override the ones you need.  logs is a dict of this
    epoch's values: loss, lr, seconds, batches (done so far in this call) and every
    validation value and metric.  A callback that prints a line per epoch sets
    prints_epochs: fit then says so on stderr before it compiles kernels."""

    prints_epochs = False

    def on_train_begin(self, history):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, history):
        pass


class LambdaCallback(Callback):
    """A plain function f(epoch, logs) used as an epoch-end callback."""

    def __init__(self, on_epoch_end):
        self.on_epoch_end = on_epoch_end


class EpochPrinter(Callback):
    """The shared part of the callbacks that print epochs (the progress bar here, Keras's
    lines in ``models``, the command line's lines): the epoch range of the call, and
    which values of the logs are shown (the model's, not lr, seconds and batches)."""

    prints_epochs = True

    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_begin(self, history):
        self.first_epoch = history.epochs + 1
        self.last_epoch = history.epochs + self.epochs

    @staticmethod
    def shown(logs):
        """The keys of logs to print, in order."""
        return [key for key in logs if key not in ("lr", "seconds", "batches")]


class ProgressBar(EpochPrinter):
    """One line on a terminal, redrawn after every epoch: epoch, batches, loss, metrics, speed."""

    def __init__(self, epochs, stream=None, width=24):
        super().__init__(epochs)
        self.stream, self.width = stream or sys.stderr, width

    def on_epoch_end(self, epoch, logs):
        done = epoch - self.first_epoch + 1
        filled = self.width * done // self.epochs
        values = "  ".join(f"{key} {logs[key]:.4g}" for key in self.shown(logs))
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\repoch {epoch}/{self.last_epoch} [{bar}] "
                          f"{logs['batches']} batches  {values}  "
                          f"{1e3 * logs['seconds']:.3g} ms/epoch ")
        self.stream.flush()

    def on_train_end(self, history):
        self.stream.write("\n")
        self.stream.flush()


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than min_delta for patience epochs.

    monitor is a key of the history ("loss", "val_loss", "val_accuracy", ...); values
    ending in "loss" must decrease, others increase.  With restore_best_weights the
    weights of the best epoch are put back at the end (best among this call's epochs).
    """

    monitor: str = "val_loss"
    patience: int = 10
    min_delta: float = 0.0
    restore_best_weights: bool = False

    def __post_init__(self):
        if not (isinstance(self.patience, (int, np.integer)) and self.patience >= 1):
            raise ValueError(f"patience must be an integer >= 1, got {self.patience!r}")
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise ValueError(f"min_delta must be a finite number >= 0, got {self.min_delta!r}")

    def improvement(self, value, best):
        """How much better value is than best (positive: better)."""
        return improvement(self.monitor, value, best)


def epoch_totals(values=None):
    """An epoch's running sums, which the epoch kernels add to: float64 array of shape (3,).

    They are the sums over its batches of the batch's weight times its mean loss,
    the weights, and the weight times its accuracy (see ``reference.train_epoch``).
    values: saved sums to start from (default: zeros).  Sums saved before fastnn kept
    the accuracy have two entries; the accuracy of that epoch is then unknown (NaN).
    """
    if values is None:
        return np.zeros(3)
    totals = np.array(values, dtype=np.float64)
    if totals.shape == (2,):
        totals = np.append(totals, np.nan)
    if totals.shape != (3,):
        raise ValueError(f"an epoch's running sums are 3 numbers (loss, weight, accuracy), "
                         f"got an array of shape {totals.shape}")
    return totals


@dataclass
class PartialEpoch:
    """An epoch interrupted at a batch boundary: its row order, where the next batch
    starts, and its running sums (given to ``epoch_totals``: None for zeros)."""

    order: np.ndarray
    next_row: int
    totals: np.ndarray

    def __post_init__(self):
        self.totals = epoch_totals(self.totals)


@dataclass
class History:
    """Per-epoch record of training, kept across calls to ``fit`` that continue it.

    history maps "loss", "lr", "seconds" and each validation value and metric to a
    list with one entry per epoch.  optimizer is the Optimizer (with its state),
    stop_reason why the last call ended early ("early stopping", "interrupted",
    "diverged", "callback"; from ``fit_lbfgs`` also "converged", "max_fun", "stalled")
    or None, best_epoch the epoch early stopping kept,
    signal the signal number that interrupted it, and partial the epoch it
    interrupted part-way, which the next call continuing this history finishes.
    Data-parallel training (``fastnn.distributed``) also fills rounds, one dict per
    round of averaging (round, epoch, partitions, rows, seconds, compute_seconds),
    and run, the ``distributed.RunState`` that ``fit(..., resume=...)`` continues.
    """

    history: dict = field(default_factory=dict)
    optimizer: Optimizer = None
    stop_reason: str = None
    best_epoch: int = None
    signal: int = None
    partial: "PartialEpoch" = None
    rounds: list = field(default_factory=list)
    run: object = None

    @property
    def loss(self):
        return self.history.get("loss", [])

    @property
    def epoch_seconds(self):
        return self.history.get("seconds", [])

    @property
    def epochs(self):
        return len(self.loss)

    @property
    def interrupted(self):
        return self.stop_reason == "interrupted"


def _check_monitor(early_stopping, trained, metrics, validation_data):
    """Refuse an early-stopping monitor that the run (fit or fit_lbfgs) does not compute."""
    if early_stopping is None:
        return
    computed = ["loss", *trained]
    if validation_data is not None:
        computed += [f"val_{key}" for key in ("loss", *metrics)]
    if early_stopping.monitor not in computed:
        raise ValueError(f"early stopping monitors {early_stopping.monitor!r}, which this run "
                         f"does not compute; it computes {computed}")


def fit(arch, params, X, Y, *, epochs, batch_size=None, lr=None, optimizer="sgd", schedule=None,
        l2=0.0, sample_weight=None, validation_data=None, validation_split=0.0, metrics=(),
        train_metrics=True, early_stopping=None, on_divergence="raise", callbacks=(),
        progress=False, history=None, random_state=None, shuffle=True, backend="numba",
        threads=None, catch_signals=True, runner=None, dropout=None, dropout_seed=0):
    """Train params in place; return the History.

    Parameters
    ----------
    arch : network.Architecture
    params : ndarray of shape (n_params,), dtype arch.dtype; updated in place.
    X : ndarray of shape (n_samples, n_features); Y : ndarray of shape (n_samples, n_outputs)
        Cast to arch.dtype and made C-contiguous here (Y one-hot for softmax).  X may
        also be a SciPy sparse matrix (CSR, or converted to it): the first layer then
        reads its non-zeros (``kernels.sparse``; a hidden layer with activation
        identity, logistic, tanh or relu is needed, and no dropout).  With a runner,
        whatever the runner takes (``fastnn.distributed``: Dask arrays).
    epochs : int
        Epochs to run in this call.
    batch_size : int or None
        Rows per mini-batch; 0 or None means the full batch.
    lr : float or None
        Learning rate for an optimizer given by name (default: the optimizer's own).
    optimizer : str, dict or optimizers.Optimizer
        "sgd", "rmsprop", "adam", "adadelta", a config dict, or an instance, whose
        state (slots, iterations) carries over between calls.
    schedule : str, schedules.Schedule or None
        Learning rate per epoch (see ``fastnn.schedules``); None is constant.
    l2 : float
        L2 penalty on the weights (scikit-learn's alpha): each batch's loss gets
        0.5 * l2 * sum(W**2) over the batch's weight (its rows without sample_weight).
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative weight of each row in the loss.
    validation_data : (X_val, Y_val) or None
        Evaluated after every epoch: val_loss and val_<metric> for every metric.
    validation_split : float
        Fraction of the rows, taken from the end of X before any shuffling (as Keras
        does), held out as validation data when validation_data is None.
    metrics : sequence of str
        Names from ``metrics.METRICS``, computed after every epoch on the validation
        data and, unless train_metrics is False, on the training rows.  There,
        accuracy is the running mean over the epoch's batches, each measured before
        its update, like the loss (and as Keras reports both): the epoch kernels
        count it for free.  Other metrics (r2) take one more forward pass over the
        training rows (which a data-parallel runner does not make).
    train_metrics : bool
    early_stopping : EarlyStopping or None
    on_divergence : "raise" or "stop"
        On a non-finite loss or weight the weights and optimizer state of the latest
        finished epoch whose weights give finite outputs are put back (see
        ``_restore_finite``), then DivergenceError is raised, or (with "stop") a
        DivergenceWarning is issued and the history returned.
    callbacks : sequence of Callback or of functions f(epoch, logs)
    progress : bool
        Draw a progress bar on stderr.
    history : History or None
        A history to continue: epochs are numbered on from it, and the schedule and
        early stopping see its values.
    random_state : int, RandomState, Generator or None
        Seeds the shuffling; pass the same RandomState to a later call to continue
        the same sequence of row orders.
    shuffle : bool
    backend : "numba" or "numpy"
    threads : int or None
        Threads for this call, restored afterwards (even on an error): Numba's for
        the compiled backend, BLAS's for the NumPy one.  None keeps the setting.
        (A runner that trains elsewhere gives them to its tasks.)
    catch_signals : bool
        In the main thread, Ctrl-C (SIGINT) and SIGTERM end training at the next
        mini-batch boundary: the history then says stop_reason="interrupted" and
        holds the unfinished epoch (``partial``), which a later call continuing the
        history (same optimizer, generator, data and batch size) finishes exactly as
        an uninterrupted run would have.
    runner : callable or None
        What trains the epochs: None for this process (``LocalEpochs``), or a
        factory with the same protocol, such as ``distributed.DataParallel``, which
        trains data-parallel on a Dask cluster.  Everything else (schedule,
        validation, metrics, divergence, early stopping, callbacks, history) is
        this function's, whatever the runner.
    dropout : sequence of float or None
        The dropout rate, in [0, 1), of the input of each layer (n_layers entries:
        the features, then each hidden layer's output), or None.  Inverted dropout
        during training only, with masks drawn by ``kernels.dropout`` from
        (dropout_seed, mini-batch number, row in the batch, unit): the same with any
        thread count, and continued exactly by a resumed run.
    dropout_seed : int
        The seed of those masks, in [0, 2**64).
    """
    check_backend(backend, BACKENDS)
    check_choice(on_divergence, "on_divergence", ("raise", "stop"))
    check_params(arch, params)
    runner = LocalEpochs if runner is None else runner
    if runner.in_process:
        X, Y = check_data(arch, X, Y, accept_sparse=True)
    check_epochs(epochs)
    check_batch_size(batch_size)
    check_l2(l2)
    dropout = _dropout_rates(arch, dropout, dropout_seed)
    if dropout is not None and not runner.in_process:
        raise ValueError("dropout is not supported with a data-parallel runner")
    if is_sparse(X):
        check_first_layer(arch)
        if dropout is not None:
            raise ValueError("dropout is not supported with a sparse X")
    check_metrics(arch.head, metrics)
    if isinstance(optimizer, Optimizer) and lr is not None:
        raise ValueError("give lr to the Optimizer instance, not to fit")
    optimizer = make_optimizer(optimizer, lr)
    schedule = make_schedule(schedule)
    weights = (check_weights(sample_weight, X.shape[0], arch.dtype) if runner.in_process
               else sample_weight)
    X, Y, weights, validation_data = _split_validation(X, Y, weights, validation_data,
                                                       validation_split)
    if validation_data is not None:
        validation_data = check_data(arch, *validation_data, ("X_val", "Y_val"), True)
    trained = [m for m in metrics if runner.measures(m)] if train_metrics else []
    _check_monitor(early_stopping, trained, metrics, validation_data)
    rng = as_random_state(random_state)
    history = History() if history is None else history
    history.optimizer, history.stop_reason, history.best_epoch = optimizer, None, None
    optimizer.prepare(arch.n_params, arch.dtype)
    callbacks = [c if isinstance(c, Callback) else LambdaCallback(c) for c in callbacks]
    if progress:
        callbacks.append(ProgressBar(epochs))
    epochs_runner = runner(arch=arch, params=params, X=X, Y=Y, weights=weights,
                           batch_size=batch_size, optimizer=optimizer, l2=l2, rng=rng,
                           shuffle=shuffle, backend=backend, threads=threads, history=history,
                           catch_signals=catch_signals, callbacks=callbacks,
                           **({} if dropout is None else {"dropout": dropout}))
    stopper = _EarlyStopper(early_stopping, history, params)
    snapshots = collections.deque(maxlen=2)  # the state after each of the last two epochs
    batches = 0
    in_process = runner.in_process
    # The runner's close() runs however the loop ends (it releases what the runner holds).
    with thread_limit(threads if in_process else None, backend), \
            _signals_caught(catch_signals and in_process) as stop, \
            contextlib.closing(epochs_runner):
        for callback in callbacks:
            callback.on_train_begin(history)
        for _ in range(epochs):
            epoch = history.epochs + 1
            lr_epoch = schedule(epoch - 1, optimizer.lr, history.history)
            snapshots.append((epoch - 1, epochs_runner.snapshot()))
            done = epochs_runner.run(epoch, lr_epoch, stop)
            loss, weight, right = done.totals
            loss, right = (loss / weight, right / weight) if weight > 0 else (0.0, 0.0)
            # The loss is measured before each update, so the weights are checked too.
            if not (math.isfinite(loss) and np.isfinite(params).all()):
                kept = _restore_finite(epochs_runner, snapshots, history)
                message = (f"training diverged: a non-finite loss or weight in epoch {epoch} "
                           f"(mean loss {loss}); the weights of epoch {kept} were kept. "
                           f"Lower the learning rate (now {lr_epoch:g}) or rescale the inputs.")
                _report_divergence(message, on_divergence)
                history.stop_reason = "diverged"
                break
            if not done.finished:  # stopped by a signal at a batch boundary
                history.stop_reason, history.signal = "interrupted", int(stop[0])
                break
            batches += done.batches
            logs = {"loss": float(loss)}
            passed = epochs_runner.train_scores([m for m in trained if m not in RUNNING_METRICS])
            running = {"accuracy": float(right)}
            logs.update({m: running[m] if m in RUNNING_METRICS else passed[m] for m in trained})
            if validation_data is not None:
                logs.update(_scores_on(arch, params, *validation_data, metrics, backend, "val_",
                                       with_loss=True))
            logs.update(lr=lr_epoch, seconds=done.seconds)
            for key, value in logs.items():
                history.history.setdefault(key, []).append(value)
            logs["batches"] = batches
            try:
                for callback in callbacks:
                    callback.on_epoch_end(epoch, logs)
            except StopTraining:
                history.stop_reason = "callback"
            if history.stop_reason is None and stopper.should_stop(epoch, logs, params):
                history.stop_reason = "early stopping"
            if history.stop_reason is None and stop[0] != 0:
                history.stop_reason, history.signal = "interrupted", int(stop[0])
            epochs_runner.epoch_end()
            if history.stop_reason is not None:
                break
        stopper.restore(params, history)
        for callback in callbacks:
            callback.on_train_end(history)
    return history


def fit_lbfgs(arch, params, X, Y, *, max_iter, max_fun=15000, tol=1e-4, l2=0.0,
              sample_weight=None, objective=None, validation_data=None, validation_split=0.0,
              metrics=(), train_metrics=True, early_stopping=None, on_divergence="raise",
              callbacks=(), progress=False, history=None, backend="numba", threads=None,
              catch_signals=True, scipy_options=None):
    """Train params in place with L-BFGS on the full-batch loss; return scipy's result.

    This is scikit-learn's ``solver="lbfgs"``: ``scipy.optimize.minimize(method=
    "L-BFGS-B", jac=True)`` with maxiter=max_iter, maxfun=max_fun and gtol=tol, on the
    mean loss of all rows plus the L2 term and its gradient.  The compiled objective is
    ``kernels.objective.FullBatchObjective``; backend="numpy" evaluates its twin
    ``reference.loss_and_grad``.  Every front end's L-BFGS is this function: the
    estimators' ``solver="lbfgs"``, a ``Sequential`` compiled with ``optimizer="lbfgs"``
    and, through it, the command line's ``--optimizer lbfgs``.

    One L-BFGS iteration is one entry of the history, as an epoch is for ``fit``: after
    it, the history gets "loss" (the objective at the new weights, L2 term included,
    as ``fit``'s training loss), each training metric (one forward pass over the
    training rows), "val_loss" and the validation metrics, and "seconds" (no "lr": there
    is no learning rate).  Callbacks see these logs with "batches" (the iterations of
    this call) and may raise StopTraining; early stopping, and SIGINT or SIGTERM with
    catch_signals, also end the run after the current iteration.  L-BFGS keeps its
    curvature memory only within one call: a later call starts from the weights reached
    with an empty memory, so two calls of 10 iterations are not one of 20 (nor are
    scikit-learn's ``warm_start`` fits with lbfgs).

    Parameters
    ----------
    arch : network.Architecture
    params : ndarray of shape (n_params,), dtype arch.dtype
        The starting point; the weights reached are written into it.  L-BFGS-B works in
        float64: the objective casts each point to the network's dtype.
    X : ndarray of shape (n_samples, n_features); Y : ndarray of shape (n_samples, n_outputs)
        Checked and converted as for ``fit`` (X may be sparse).  With an objective given
        they are only read for training metrics.
    max_iter : int >= 1
        The most iterations (scikit-learn's max_iter; Sequential's epochs).
    max_fun : int >= 1
        The most loss evaluations, checked after each iteration (so it may be exceeded by
        the evaluations of one line search, as in scikit-learn).
    tol : float >= 0
        Converged when the largest entry of the gradient is <= tol (L-BFGS-B's gtol;
        it also stops, converged, when the loss decreases by less than scipy's
        relative ftol, 2.2e-9, as in scikit-learn).
    l2 : float
        L2 penalty on the weights: 0.5 * l2 * sum(W**2) over the rows' total weight is
        added to the loss, as in ``fit`` with a full batch (scikit-learn's alpha).
    sample_weight : ndarray of shape (n_samples,) or None
    objective : callable or None
        ``objective(x) -> (loss, grad)``, x and grad float64 of shape (n_params,), as
        ``FullBatchObjective``; None makes that of X, Y, sample_weight and l2.
    validation_data, validation_split, metrics, train_metrics, early_stopping, \
on_divergence, callbacks, progress, history, threads, catch_signals
        As for ``fit`` (validation_split needs objective=None).  On a non-finite loss
        or weight the last finite iterate (or the starting point) is put back.
    backend : "numba" or "numpy"
        The objective's, and the evaluation's.  With "numba" BLAS gets one thread:
        L-BFGS-B's own vector work calls it, and its threads would spin against
        Numba's between evaluations (20000 x 100 synthetic set, 50 iterations on 2
        shared cores: 22.6 s with BLAS's 2 threads, 5.7 s with 1).
    scipy_options : dict or None
        More options for L-BFGS-B (the estimators' iprint on older SciPy).

    Returns
    -------
    scipy.optimize.OptimizeResult
        scipy's x (float64), fun (the final loss), nit, nfev, status (0: converged;
        1: max_iter iterations or max_fun evaluations done; 2: stopped otherwise) and
        message, with n_iter (the iterations done, at most max_iter) and history (the
        History, continued).  history.stop_reason is "converged" (status 0), "max_fun" (the
        evaluations ran out first), "stalled" (L-BFGS-B found no lower loss, e.g. its
        line search failed), "callback", "early stopping", "interrupted", "diverged",
        or None when max_iter iterations ran.
    """
    import scipy.optimize

    check_backend(backend, BACKENDS)
    check_choice(on_divergence, "on_divergence", ("raise", "stop"))
    check_params(arch, params)
    if not (isinstance(max_iter, (int, np.integer)) and not isinstance(max_iter, bool)
            and max_iter >= 1):
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(max_fun, (int, np.integer)) and not isinstance(max_fun, bool)
            and max_fun >= 1):
        raise ValueError(f"max_fun must be an integer >= 1, got {max_fun!r}")
    if not (isinstance(tol, (int, float, np.number)) and not isinstance(tol, bool)
            and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    check_l2(l2)
    check_metrics(arch.head, metrics)
    trained = list(metrics) if train_metrics else []
    if objective is None:
        X, Y = check_data(arch, X, Y, accept_sparse=True)
        weights = check_weights(sample_weight, X.shape[0], arch.dtype)
        X, Y, weights, validation_data = _split_validation(X, Y, weights, validation_data,
                                                           validation_split)
        make = FullBatchObjective if backend == "numba" else _ReferenceObjective
    elif validation_split:
        raise ValueError("validation_split takes rows out of X, which a given objective does "
                         "not see; pass validation_data instead")
    elif trained:
        X, Y = check_data(arch, X, Y, accept_sparse=True)
    if validation_data is not None:
        validation_data = check_data(arch, *validation_data, ("X_val", "Y_val"), True)
    _check_monitor(early_stopping, trained, metrics, validation_data)
    history = History() if history is None else history
    history.stop_reason, history.best_epoch = None, None
    if history.partial is not None:
        warnings.warn(f"the epoch interrupted after {history.partial.next_row} rows is "
                      f"abandoned: L-BFGS trains on the full batch", UserWarning, stacklevel=2)
        history.partial = None
    callbacks = [c if isinstance(c, Callback) else LambdaCallback(c) for c in callbacks]
    if progress:
        callbacks.append(ProgressBar(max_iter))
    options = {"maxfun": int(max_fun), "maxiter": int(max_iter), "gtol": float(tol),
               **(scipy_options or {})}
    printing = backend == "numba" and any(c.prints_epochs for c in callbacks)
    blas = (threadpool_limits(limits=1, user_api="blas") if backend == "numba"
            else contextlib.nullcontext())
    with compile_notice(describe(arch, "lbfgs"), printing):
        if objective is None:  # compiles its workers (kernels.objective), after the checks
            objective = make(arch, X, Y, weights, float(l2))
        iterations = _LBFGSIterations(arch, params, X, Y, objective, trained, metrics,
                                      validation_data, backend, history, callbacks,
                                      _EarlyStopper(early_stopping, history, params))
        with thread_limit(threads, backend), blas, _signals_caught(catch_signals) as stop:
            iterations.stop = stop
            for callback in callbacks:
                callback.on_train_begin(history)
            try:
                result = scipy.optimize.minimize(iterations.evaluate, iterations.x,
                                                 method="L-BFGS-B", jac=True,
                                                 callback=iterations.iteration_done,
                                                 options=options)
            except _StopIterating:
                # Stopped from the callback: the point it was given is L-BFGS-B's last iterate.
                result = scipy.optimize.OptimizeResult(
                    x=iterations.x, fun=iterations.loss, nit=iterations.n_iter,
                    nfev=iterations.n_evaluations, status=2, success=False,
                    message=f"STOP: {history.stop_reason}")
            params[:] = result.x
            if not (math.isfinite(result.fun) and np.isfinite(params).all()):
                params[:] = iterations.finite_x
                history.stop_reason = "diverged"
                message = (f"training diverged: a non-finite loss or weight after "
                           f"{iterations.n_iter} L-BFGS iteration(s); the weights of the last "
                           f"finite iterate were kept. Rescale the inputs.")
                _report_divergence(message, on_divergence)
            if history.stop_reason is None:
                if result.status == 0:
                    history.stop_reason = "converged"
                elif result.status == 2:
                    history.stop_reason = "stalled"
                elif result.nit < max_iter:
                    history.stop_reason = "max_fun"
            iterations.stopper.restore(params, history)
            for callback in callbacks:
                callback.on_train_end(history)
    result.n_iter = min(int(result.nit), int(max_iter))
    result.history = history
    return result


def _report_divergence(message, on_divergence):
    """Raise DivergenceError(message) (on_divergence "raise"), or warn it ("stop"), as the
    caller of fit or fit_lbfgs sees it."""
    if on_divergence == "raise":
        raise DivergenceError(message)
    warnings.warn(message, DivergenceWarning, stacklevel=3)


class _StopIterating(Exception):
    """Raised by ``_LBFGSIterations.iteration_done`` to end the L-BFGS-B run."""


class _LBFGSIterations:
    """``fit_lbfgs``'s view of L-BFGS-B: the objective it calls, counted, and what happens
    after each iteration (the history, callbacks, early stopping, signals)."""

    def __init__(self, arch, params, X, Y, objective, trained, metrics, validation_data, backend,
                 history, callbacks, stopper):
        self.arch, self.params, self.X, self.Y, self.objective = arch, params, X, Y, objective
        self.trained, self.metrics, self.validation_data = trained, metrics, validation_data
        self.backend, self.history, self.callbacks, self.stopper = (backend, history, callbacks,
                                                                    stopper)
        self.x = params.astype(np.float64)  # the latest iterate (the start until the first)
        self.finite_x, self.loss, self.last_loss = self.x, math.nan, math.nan
        self.n_iter = self.n_evaluations = 0
        self.stop = np.zeros(1, dtype=np.int64)
        self.tick = time.perf_counter()

    def evaluate(self, x):
        self.n_evaluations += 1
        loss, grad = self.objective(x)
        self.last_loss = loss
        if self.n_evaluations == 1:  # at the start, compiling (or loading) the kernels:
            self.tick = time.perf_counter()  # not part of the first iteration's seconds
        return loss, grad

    def iteration_done(self, intermediate_result):
        """scipy's callback: it passes the new iterate (scipy < 1.11: x alone)."""
        seconds = time.perf_counter() - self.tick
        history, params = self.history, self.params
        # A copy: scipy's x is the array L-BFGS-B goes on updating in place.
        self.x = np.array(getattr(intermediate_result, "x", intermediate_result), dtype=np.float64)
        self.loss = float(getattr(intermediate_result, "fun", self.last_loss))
        self.n_iter += 1
        params[:] = self.x
        if not (math.isfinite(self.loss) and np.isfinite(params).all()):
            history.stop_reason = "diverged"
            raise _StopIterating
        self.finite_x = self.x
        epoch = history.epochs + 1
        logs = {"loss": self.loss}
        logs.update(_scores_on(self.arch, params, self.X, self.Y, self.trained, self.backend, ""))
        if self.validation_data is not None:
            logs.update(_scores_on(self.arch, params, *self.validation_data, self.metrics,
                                   self.backend, "val_", with_loss=True))
        logs["seconds"] = seconds
        for key, value in logs.items():
            history.history.setdefault(key, []).append(value)
        logs["batches"] = self.n_iter
        try:
            for callback in self.callbacks:
                callback.on_epoch_end(epoch, logs)
        except StopTraining:
            history.stop_reason = "callback"
        if history.stop_reason is None and self.stopper.should_stop(epoch, logs, params):
            history.stop_reason = "early stopping"
        if history.stop_reason is None and self.stop[0] != 0:
            history.stop_reason, history.signal = "interrupted", int(self.stop[0])
        self.tick = time.perf_counter()
        if history.stop_reason is not None:
            raise _StopIterating


class _ReferenceObjective:
    """``FullBatchObjective``'s twin on the NumPy reference (``reference.loss_and_grad``)."""

    def __init__(self, arch, X, Y, weights, l2):
        self.arch, self.X, self.Y, self.weights, self.l2 = arch, X, Y, weights, l2
        self.params = np.zeros(arch.n_params, dtype=arch.dtype)

    def __call__(self, x):
        self.params[:] = x
        loss, grads = reference.loss_and_grad(self.arch, self.params, self.X, self.Y, self.l2,
                                              self.weights)
        return loss, grads.astype(np.float64)


@dataclass
class EpochRun:
    """What a runner reports of one epoch: its running sums (``epoch_totals``), its
    seconds, the mini-batches it counts, and whether it finished (False: a signal
    stopped it at a batch boundary)."""

    totals: np.ndarray
    seconds: float
    batches: int
    finished: bool


class LocalEpochs:
    """``fit``'s runner in this process: each epoch is one call of the compiled epoch
    (``_compiled_epoch``) or of the NumPy reference (``_reference_epoch``).

    The runner protocol, which ``distributed.DataParallel`` follows too:

    * ``in_process`` (class attribute): the epochs run in this process, so ``fit``
      checks the data as arrays, sets the thread count and catches signals;
    * ``measures(metric)``: whether the runner reports metric on the training rows;
    * the factory is called with fit's keyword arguments (arch, params, X, Y,
      weights, batch_size, optimizer, l2, rng, shuffle, backend, threads, history,
      catch_signals, callbacks) and returns the runner, whose methods are
    * ``run(epoch, lr, stop)`` -> EpochRun: train epoch ``epoch`` at rate lr
      (stop: the signal request of ``_signals_caught``);
    * ``snapshot()`` / ``restore(snapshot)``: the training state before an epoch,
      and putting it back; ``outputs_finite()``: whether the weights now give
      finite outputs on the training rows;
    * ``train_scores(metrics)``: {metric: value} on the training rows;
    * ``epoch_end()`` after each epoch's stop decision, ``close()`` at the end, however
      the loop ended.
    """

    in_process = True

    @staticmethod
    def measures(metric):
        return True

    def __init__(self, *, arch, params, X, Y, weights, batch_size, optimizer, l2, rng, shuffle,
                 backend, history, catch_signals, dropout=None, callbacks=(), **_):
        self.arch, self.params, self.X, self.Y, self.backend = arch, params, X, Y, backend
        self.optimizer, self.rng, self.shuffle, self.history = optimizer, rng, shuffle, history
        self.n = X.shape[0]
        self.batch_size = self.n if not batch_size else min(int(batch_size), self.n)
        self.n_batches = -(-self.n // self.batch_size)
        compiling = backend == "numba"
        if compiling:
            _check_not_forked()
        # Compile (or load) the kernels now, saying so where fit prints progress: the
        # workers (the chunk worker in a child process meanwhile, when it can), the
        # prediction kernel, then the driver, which waits for that child.
        printing = compiling and any(c.prints_epochs for c in callbacks)
        with compile_notice(describe(arch, optimizer.name), printing):
            self.run_epoch = epoch_function(backend)(arch, params, X, Y, weights,
                                                     self.batch_size, optimizer, l2, dropout)
            if compiling:
                _predict(arch, params, X[:1], backend)  # a view: the input is not copied
                self.run_epoch(np.empty(0, dtype=np.int64), 0, np.zeros(1, dtype=np.int64),
                               epoch_totals(), 0.0, 0)  # an empty epoch: no rows
        if catch_signals and _SCHEDULED_INTERRUPT.get() is not None:
            self.run_epoch = _interrupting(self.run_epoch, self.batch_size,
                                           _SCHEDULED_INTERRUPT.get())

    def run(self, epoch, lr, stop):
        partial = _take_partial_epoch(self.history, self.n, self.batch_size)
        if partial is None:
            partial = PartialEpoch(epoch_order(self.rng, self.n, self.batch_size, self.shuffle),
                                   0, None)
        start = time.perf_counter()
        next_row = self.run_epoch(partial.order, partial.next_row, stop, partial.totals, lr,
                                  self.optimizer.iterations)
        seconds = time.perf_counter() - start
        self.optimizer.iterations += -(-(next_row - partial.next_row) // self.batch_size)
        finished = next_row >= self.n
        if not finished:
            partial.next_row = next_row
            self.history.partial = partial
        return EpochRun(partial.totals, seconds, self.n_batches, finished)

    def snapshot(self):
        return self.params.copy(), self.optimizer.slots.copy(), self.optimizer.iterations

    def restore(self, snapshot):
        self.params[:], self.optimizer.slots[:], self.optimizer.iterations = snapshot

    def outputs_finite(self):
        with np.errstate(all="ignore"):
            return bool(np.isfinite(_predict(self.arch, self.params, self.X, self.backend)).all())

    def train_scores(self, metrics):
        return _scores_on(self.arch, self.params, self.X, self.Y, metrics, self.backend, "")

    def epoch_end(self):
        pass

    def close(self):
        pass


def _restore_finite(runner, snapshots, history):
    """Put back the latest snapshot whose weights give finite outputs; its epoch.

    The epoch before the one that diverged ended on weights that no batch has been
    evaluated on yet, and they can already overflow; then the one before is kept (and
    the history loses that epoch's entries, to match).  If neither gives finite
    outputs, the older is kept all the same.
    """
    for kept, snapshot in reversed(snapshots):
        runner.restore(snapshot)
        if runner.outputs_finite():
            break
    for values in history.history.values():
        del values[kept:]
    return kept


def _take_partial_epoch(history, n_samples, batch_size):
    """The history's interrupted epoch (removed from it), after checking that it fits."""
    partial, history.partial = history.partial, None
    if partial is not None and (partial.order.shape != (n_samples,)
                                or partial.next_row % batch_size != 0):
        raise ValueError(f"the history holds an epoch interrupted after {partial.next_row} of "
                         f"{partial.order.shape[0]} rows; continue it with the same data and "
                         f"batch size (now {n_samples} rows, batches of {batch_size})")
    return partial


class _EarlyStopper:
    """The running state of an EarlyStopping rule (best value, epochs since, best weights)."""

    def __init__(self, rule, history, params):
        self.rule, self.best, self.best_epoch, self.best_params = rule, None, None, None
        if rule is None:
            return
        for epoch, value in enumerate(history.history.get(rule.monitor, []), start=1):
            self._see(epoch, value, None)

    def _see(self, epoch, value, params):
        if self.best is None or self.rule.improvement(value, self.best) > self.rule.min_delta:
            self.best, self.best_epoch = value, epoch
            if params is not None and self.rule.restore_best_weights:
                self.best_params = params.copy()

    def should_stop(self, epoch, logs, params):
        if self.rule is None:
            return False
        self._see(epoch, logs[self.rule.monitor], params)
        return epoch - self.best_epoch >= self.rule.patience

    def restore(self, params, history):
        if self.rule is None:
            return
        history.best_epoch = self.best_epoch
        if self.best_params is not None:
            params[:] = self.best_params


#: The interrupt ``interrupt_after`` has scheduled: [batches left, signal number], or None.
_SCHEDULED_INTERRUPT = contextvars.ContextVar("fastnn_scheduled_interrupt", default=None)


@contextlib.contextmanager
def interrupt_after(batches, signum=signal.SIGINT):
    """Within the body, training stops as if signal signum arrived just after batch ``batches``.

    The batches are counted over the body's ``fit`` calls that catch signals
    (``catch_signals=True``, as every front end's training does), from the first;
    0 stops before the first one.  The interrupt happens once: the call it stops
    ends as a real Ctrl-C or SIGTERM would have ended it (``stop_reason`` "interrupted",
    ``history.signal``, the unfinished epoch in ``history.partial``), and later
    calls in the body train normally.  Unlike a real signal, the batch it lands
    after does not depend on timing, which makes interruption and resumption
    testable exactly.  It costs no work per batch: the epoch is handed the rows up
    to the chosen batch only.
    """
    if not (isinstance(batches, (int, np.integer)) and batches >= 0):
        raise ValueError(f"batches must be an integer >= 0, got {batches!r}")
    token = _SCHEDULED_INTERRUPT.set([int(batches), int(signum)])
    try:
        yield
    finally:
        _SCHEDULED_INTERRUPT.reset(token)


def _interrupting(run_epoch, batch_size, scheduled):
    """run_epoch stopping, with its stop request raised, where ``interrupt_after`` says."""

    def run(order, first_row, stop, totals, lr, step):
        if scheduled[0] < 0:  # already delivered
            return run_epoch(order, first_row, stop, totals, lr, step)
        next_row = run_epoch(order[:first_row + scheduled[0] * batch_size], first_row, stop,
                             totals, lr, step)
        scheduled[0] -= -(-(next_row - first_row) // batch_size)
        if scheduled[0] == 0 and stop[0] == 0:
            stop[0], scheduled[0] = scheduled[1], -1
        return next_row

    return run


@contextlib.contextmanager
def _signals_caught(enabled):
    """Within the body, SIGINT and SIGTERM only request a stop; yields the request.

    The request is an int64 array of shape (1,) holding 0, or the number of the
    signal that arrived.  The epoch kernels read it before every mini-batch.  While
    compiled code runs, Python signal handlers cannot run, so the C-level handler's
    wake-up byte (``signal.set_wakeup_fd``) is read by a watcher thread, which sets
    the request at once (the kernels release the GIL).  Handlers can only be
    installed from the main thread; elsewhere (or with enabled=False) signals keep
    their handlers and the request stays 0.
    """
    stop = np.zeros(1, dtype=np.int64)
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    signals = (signal.SIGINT, signal.SIGTERM)

    def request_stop(signum, frame=None):
        stop[0] = signum

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch():
        byte = os.read(read_fd, 1)  # a signal number, or 0 when training ends
        if byte and byte[0] in signals:
            request_stop(byte[0])

    previous = {sig: signal.signal(sig, request_stop) for sig in signals}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="fastnn-signal-watcher", daemon=True)
    watcher.start()
    try:
        yield stop
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.write(write_fd, b"\0")
        watcher.join()
        os.close(read_fd)
        os.close(write_fd)


def _scores_on(arch, params, X, Y, metrics, backend, prefix, with_loss=False):
    """``metrics.scores`` of the network on X, Y, already checked (no pass when nothing is asked)."""
    if not (metrics or with_loss):
        return {}
    return scores(arch.head, _predict(arch, params, X, backend), Y, metrics, prefix, with_loss)


def evaluate(arch, params, X, Y, metrics=(), *, prefix="", with_loss=True, backend="numba",
             threads=None):
    """{prefix + name: value}: the mean loss (with_loss) and each metric of the network on X, Y.

    X is checked and converted as for prediction (``predict_output``); Y, an ndarray
    of shape (n_samples, n_outputs), is used as given.  Every front end scores a
    model with this (``Sequential.evaluate``, the command line's final scores) and
    the training loop with the same ``metrics.scores``.
    """
    check_metrics(arch.head, metrics)
    out = predict_output(arch, params, X, backend=backend, threads=threads)
    return scores(arch.head, out, Y, metrics, prefix, with_loss)


def _split_validation(X, Y, weights, validation_data, validation_split):
    """(X, Y, weights, validation_data) with the last rows held out if asked."""
    if validation_data is not None:
        return X, Y, weights, tuple(validation_data)
    if not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    n_val = int(round(validation_split * X.shape[0]))
    if validation_split == 0:
        return X, Y, weights, None
    if not 1 <= n_val < X.shape[0]:
        raise ValueError(f"validation_split={validation_split} of {X.shape[0]} rows leaves no "
                         f"validation or no training rows")
    split = X.shape[0] - n_val
    return (X[:split], Y[:split], None if weights is None else weights[:split],
            (X[split:], Y[split:]))


#: The process that started Numba's parallel threads (None until it has).  A child
#: forked from it inherits the value, which is how ``_check_not_forked`` knows.
_ENGINE_PID = None


def _check_not_forked():
    """Refuse to start the parallel engine where GNU OpenMP cannot run: in a child
    forked from a process that had already started it.  (OpenMP would answer with
    SIGTERM and skip the parallel regions, leaving the weights untrained.)"""
    if _ENGINE_PID in (None, os.getpid()) or numba.threading_layer() != "omp":
        return
    raise RuntimeError(
        "fastnn's compiled engine cannot run in a process forked from one that had already "
        "used it: Numba's threading layer is GNU OpenMP, which is not fork-safe. Start worker "
        "processes with the 'spawn' or 'forkserver' method (multiprocessing.get_context, or "
        "joblib's default loky backend), train with backend='numpy' here, or select a "
        "fork-safe threading layer (NUMBA_THREADING_LAYER=tbb with the tbb package).")


def _dropout_rates(arch, dropout, seed):
    """(rates float64 (n_layers,), seed) for the epoch makers, or None when nothing is dropped."""
    if dropout is None:
        return None
    rates = [check_dropout_rate(rate, "dropout rate") for rate in dropout]
    if len(rates) != arch.n_layers:
        raise ValueError(f"dropout needs one rate per layer input ({arch.n_layers}), got "
                         f"{len(rates)}: {list(dropout)}")
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
            and 0 <= seed < 2**64):
        raise ValueError(f"dropout_seed must be an integer in [0, 2**64), got {seed!r}")
    if not any(rates):
        return None
    return np.array(rates, dtype=np.float64), int(seed)


def _compiled_epoch(arch, params, X, Y, weights, batch_size, optimizer, l2, dropout=None,
                    clocks=None):
    """A function (order, first_row, stop, totals, lr, step) -> next_row: one compiled epoch.

    Workspaces are allocated here, once per ``fit``, and reused by every epoch.
    dropout is None or (rates of each layer's input, seed) (``_dropout_rates``).
    clocks, None or an array of ``kernels.clocks.clock_buffer``: each epoch adds its
    parallel regions' cycle counts to it (``profiling.region_clocks``).
    """
    sizes = np.array(arch.sizes, dtype=np.int64)
    X, X_csr, widths, Y = driver_inputs(arch, X, Y)
    offsets, codes = arch.offsets, arch.activation_codes  # properties: computed once here
    tasks = compiled.make_tasks(arch.sizes, sparse_input=X_csr is not None)
    dtype = params.dtype.type
    grads = aligned_zeros(params.size, params.dtype)
    through_w = compiled.propagates_through_w(arch.sizes, batch_size, dtype)
    chunk = compiled.chunk_rows(arch.sizes, batch_size, dtype)
    params_t, panels = compiled.weight_copies(arch.sizes, dtype, X_csr is not None, through_w)
    acts, deltas, derivs, targets, scales, chunk_sums, task_squares = compiled.batch_buffers(
        widths, arch.sizes[-1], batch_size, tasks.shape[0], dtype,
        arch.saves_derivatives or dropout is not None, through_w, panels is not None)
    masks = None  # the kernels' form of dropout: keep thresholds, inverted scales, seed
    if dropout is not None:
        rates, seed = dropout
        masks = (np.array([keep_threshold(rate) for rate in rates], dtype=np.uint64),
                 np.array([1.0 / (1.0 - rate) for rate in rates], dtype=dtype), np.uint64(seed))
    slope = dtype(arch.negative_slope)
    hyper = optimizer.hyperparameters()

    # The per-chunk, per-task and copy workers, compiled on their own (kernels.workers).
    chunk_worker = compiled.chunk_worker(params, params_t, panels, sizes, widths, offsets, codes,
                                         slope, X, X_csr, Y, weights, acts, deltas, derivs,
                                         targets, scales, chunk_sums, masks,
                                         unfused_present(codes), aside=True)
    copy_worker = compiled.copy_worker(params, offsets, sizes, params_t, panels)
    task_worker = compiled.task_worker(params, params_t, panels, grads, optimizer.slots, sizes,
                                       widths, offsets, X_csr, tasks, optimizer.code, hyper, acts,
                                       deltas, copy_worker)
    train_epoch = EntryPoint(compiled.train_epoch)

    def run_epoch(order, first_row, stop, totals, lr, step):
        global _ENGINE_PID
        order = np.ascontiguousarray(order, dtype=np.int64)  # the compiled type
        _ENGINE_PID = _ENGINE_PID or os.getpid()
        return train_epoch(
            params, params_t, panels, grads, optimizer.slots, sizes, widths, offsets, codes,
            slope, tasks, X, X_csr, Y, weights, order, first_row, stop, totals, batch_size,
            chunk, numba.get_num_threads(), dtype(lr), dtype(l2), optimizer.code, hyper, step,
            acts, deltas, derivs, targets, scales, chunk_sums, task_squares, masks, chunk_worker,
            task_worker, copy_worker, clocks)

    return run_epoch


def _reference_epoch(arch, params, X, Y, weights, batch_size, optimizer, l2, dropout=None):
    """The same function as ``_compiled_epoch`` running the NumPy reference."""
    hyper = optimizer.hyperparameters()
    rates, seed = (None, 0) if dropout is None else dropout

    def run_epoch(order, first_row, stop, totals, lr, step):
        return reference.train_epoch(arch, params, X, Y, order, first_row, stop, totals,
                                     batch_size, lr, optimizer.code, hyper, optimizer.slots, step,
                                     l2, weights, rates, seed)

    return run_epoch


def epoch_function(backend):
    """The epoch maker of a backend: ``_compiled_epoch`` or ``_reference_epoch`` (same use)."""
    return _compiled_epoch if backend == "numba" else _reference_epoch


_POOL_LOCK = threading.Lock()
_POOL = None  # (pid, executor) of _prediction_pool


def _prediction_pool():
    """The Python threads that ``_predict`` runs row ranges on, started once per process.

    Starting a pool on every call costs more than the prediction itself on small inputs
    (docs/performance.md), and every epoch's validation scores predict.  A forked child
    gets a pool of its own: the parent's threads do not exist there.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            workers = max(1, config.NUMBA_MAX_THREADS - 1)
            _POOL = (os.getpid(), concurrent.futures.ThreadPoolExecutor(
                workers, thread_name_prefix="fastnn-predict"))
        return _POOL[1]


def predict_output(arch, params, X, backend="numba", threads=None):
    """Head output for X, ndarray of shape (n_samples, n_outputs) in arch.dtype.

    X is checked and converted as for training (see ``checks.as_array``; it may be
    sparse); zero rows give an empty result.
    """
    check_backend(backend, BACKENDS)
    check_params(arch, params, writable=False)
    # The compiled kernel tests X's values for NaN and infinity as it copies them, in
    # its parallel row ranges: a pass over X here would run alone (with 2 threads,
    # 8 % of a 60000-row prediction of 784-512-512-10).
    X = as_input(arch, X, min_rows=0, accept_sparse=True, test_finite=backend != "numba")
    with thread_limit(threads, backend):
        return _predict(arch, params, X, backend)


def _predict(arch, params, X, backend):
    """predict_output without the checks, for inputs already checked (but for NaN and
    infinity with the numba backend: its kernel finds them, and check_array's error
    is raised here).

    A sparse X that the first layer cannot read (``sparse.check_first_layer``) is
    made dense here.
    """
    if backend == "numpy":
        return reference.predict_proba(arch, params, X)
    if is_sparse(X) and not sparse_readable(arch):
        X = X.toarray()
    X, X_csr, _, _ = driver_inputs(arch, X)
    sizes = np.array(arch.sizes, dtype=np.int64)
    out = np.empty((X.shape[0], arch.sizes[-1]), dtype=arch.dtype)
    if not params.flags.writeable:  # the specialisation training compiles: writable
        params = params.copy()
    offsets, codes = arch.offsets, arch.activation_codes
    unfused = unfused_argument(codes, arch.negative_slope, params.dtype.type)
    n_workers = max(1, min(numba.get_num_threads(), -(-X.shape[0] // config.PREDICT_CHUNK_ROWS)))
    bounds = np.linspace(0, X.shape[0], n_workers + 1).astype(np.int64)
    panels = compiled.predict_panels(params, sizes, offsets, X.shape[0], X_csr is not None)

    def predict_range(worker):
        scratch, rows = compiled.predict_scratch(arch.sizes, X.shape[1], params.dtype)
        return compiled.predict_rows(params, sizes, offsets, codes, unfused, X, X_csr, out,
                                     bounds[worker], bounds[worker + 1], scratch, rows, panels)

    # Rows are independent: ranges 1.. run on the process's prediction threads while
    # this thread runs range 0 (the kernel releases the GIL).
    futures = [_prediction_pool().submit(predict_range, w) for w in range(1, n_workers)]
    finite = []
    try:
        finite.append(predict_range(0))
    finally:
        finite += [future.result() for future in futures]
    if not all(finite):
        refuse_non_finite(X)
    return out
