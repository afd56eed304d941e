"""Compiling the kernels a run needs, saying so while it happens, and filling the cache ahead.

Numba compiles a kernel the first time it meets a new combination of argument
types, and loads it from its on-disk cache (``config.CACHE_PATH``) when an earlier
process compiled it.  Four things here:

* ``EntryPoint``: a kernel compiled for its first call's argument types and then
  called through its compiled entry point, without the dispatcher typing every
  argument of every call (the epoch driver, called once an epoch);
* ``compile_aside``: one large kernel compiled into the cache by a forked child
  process while this one compiles the others (Numba compiles one function at a
  time in a process, so a cold run would use one core);
* ``compile_notice``: a context in which the first actual compilation (not a cache
  load: Numba's ``numba:compile`` event fires only then) prints one line on stderr;
* ``warm_up``: compiles, or loads, the kernels of the common configurations (every
  front end's default), for images and CI set-up steps.  A cache is specific to
  the machine's CPU and the installed Numba, so none is shipped with the package.
"""

import contextlib
import os
import sys
import threading
import warnings

import numba
import numpy as np
from numba.core import event

from . import config


class EntryPoint:
    """A Numba dispatcher compiled for its first call's argument types, then called
    straight through that compiled entry point.

    A dispatcher types every argument of every call to pick its specialisation: 25 us
    for the epoch driver's 41 arguments, 1.5 % of an epoch of the tutorial's network.
    A training run calls the driver with the same types every epoch
    (``trainer._compiled_epoch`` makes sure of it), so this compiles the signature of
    the first call (``numba.typeof`` of each argument), or loads it from the cache,
    once, and calls its entry point (2 us) after that.
    """

    def __init__(self, dispatcher):
        # Under NUMBA_DISABLE_JIT, njit returns the Python function itself.
        self.compiled = isinstance(dispatcher, numba.core.dispatcher.Dispatcher)
        self.dispatcher, self.entry = dispatcher, None

    def __call__(self, *args):
        if not self.compiled:
            return self.dispatcher(*args)
        if self.entry is None:
            self.entry = self.dispatcher.compile(tuple(numba.typeof(arg) for arg in args))
        return self.entry(*args)


#: Modules whose native threads are not fork-safe by their own account: JAX's XLA
#: runtime warns at every fork of a process that imported it.
FORK_UNSAFE_MODULES = ("jax",)


def can_compile_aside():
    """Whether ``compile_aside`` forks a child: on Linux, with the disk cache on and
    FASTNN_COMPILE_ASIDE not 0, more than one CPU for this process, no other Python
    thread (one holding a lock at the fork would leave the child waiting for it), and
    none of ``FORK_UNSAFE_MODULES`` imported.  (BLAS's threads, which exist from
    NumPy's import on, are fork-safe: OpenBLAS stops them around a fork.)"""
    return (config.COMPILE_ASIDE and config.CACHE and sys.platform == "linux"
            and len(os.sched_getaffinity(0)) > 1 and threading.active_count() == 1
            and not any(name in sys.modules for name in FORK_UNSAFE_MODULES))


def compile_aside(job):
    """Start job() in a forked child process, which writes what it compiles to
    Numba's disk cache, while this process goes on compiling other kernels.

    Returns a function that waits for the child to end; the caller then runs job()
    itself, which loads the kernel from the cache (or compiles it, should the child have
    failed: the child's output is discarded, and the error is raised here).  Returns None
    and starts nothing where ``can_compile_aside`` says no.  The child only compiles:
    it runs no parallel region, so an OpenMP runtime the parent started does not matter,
    and it leaves with ``os._exit``, running none of the parent's exit handlers.
    """
    if not can_compile_aside():
        return None
    with warnings.catch_warnings():  # Python 3.12+ counts BLAS's threads; none is a Python one
        warnings.filterwarnings("ignore", message=".*multi-threaded.*fork",
                                category=DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            job()
            status = 0
        finally:
            os._exit(status)

    def wait():
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # already reaped (SIGCHLD ignored): nothing to wait for
            pass

    return wait


def describe(arch, optimizer_name):
    """What a run compiles, in words: 'float32 + sgd'."""
    return f"{arch.dtype} + {optimizer_name}"


class _FirstCompile(event.Listener):
    """Notes whether a compilation started; prints line (if any) when the first one does."""

    def __init__(self, line, stream):
        self.line, self.stream, self.compiled = line, stream, False

    def on_start(self, ev):
        if not self.compiled and self.line is not None:
            print(self.line, file=self.stream, flush=True)
        self.compiled = True

    def on_end(self, ev):
        pass


def notice_line(what):
    """The line printed while kernels compile."""
    if config.CACHE:
        where = f"first run only; cached in {config.CACHE_PATH}"
    else:
        where = "no disk cache: compiled in memory on every run"
    return f"compiling fastnn kernels for {what} ({where})"


@contextlib.contextmanager
def compile_notice(what, enabled=True, stream=None):
    """Within the body, print ``notice_line(what)`` on stream (stderr) when a kernel compiles.

    Only an actual compilation prints it (a kernel loaded from the cache or already in
    memory does not), once, and only when enabled.  Yields a callable that tells
    whether anything compiled so far.  Numba's events are process-wide: a
    compilation that another thread starts meanwhile counts too.
    """
    listener = _FirstCompile(notice_line(what) if enabled else None, stream or sys.stderr)
    with event.install_listener("numba:compile", listener):
        yield lambda: listener.compiled


#: The configurations ``warm_up`` prepares by default: every front end's default and
#: the command line's (hidden and head activations do not change which kernels are
#: compiled; dtype and optimizer do).
COMMON_CONFIGURATIONS = (
    ("float32", "sgd"),      # python -m fastnn.train
    ("float32", "adam"),     # Sequential + Adam
    ("float64", "adam"),     # FastMLPClassifier / FastMLPRegressor (solver="adam")
    ("float64", "sgd"),      # MyNN
)


def warm_up(configurations=COMMON_CONFIGURATIONS, verbose=False, stream=None):
    """Compile (or load from the cache) the training and prediction kernels of configurations.

    Parameters
    ----------
    configurations : iterable of (dtype, optimizer) pairs
        dtype "float32" or "float64", optimizer a name of ``optimizers.OPTIMIZERS``;
        default: ``COMMON_CONFIGURATIONS``.
    verbose : bool
        Print one line per configuration on stream (stderr): compiled or already cached.

    Returns
    -------
    list of (dtype, optimizer, compiled) with compiled True where this call compiled.

    Each configuration trains a tiny network for one epoch (3 rows, 2 features,
    batches of 2) and predicts with it, so exactly the specialisations a real run of
    that dtype and optimizer uses are compiled, whatever the layer sizes.
    """
    from .network import Architecture, init_params
    from .trainer import fit, predict_output

    stream = stream or sys.stderr
    done = []
    for dtype, optimizer in configurations:
        arch = Architecture((2, 3, 2), ("sigmoid",), "softmax", dtype)
        params = init_params(arch, "normal", random_state=0)
        X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        Y = np.eye(2)[[0, 1, 1]]
        with compile_notice(describe(arch, optimizer), enabled=verbose, stream=stream) as compiled:
            fit(arch, params, X, Y, epochs=1, batch_size=2, optimizer=optimizer,
                random_state=0, catch_signals=False)
            predict_output(arch, params, X)
        done.append((dtype, optimizer, compiled()))
        if verbose and not compiled():
            print(f"fastnn kernels for {describe(arch, optimizer)}: already compiled",
                  file=stream, flush=True)
    return done
