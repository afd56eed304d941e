"""Cycle counts of the epoch's parallel regions, taken inside the compiled epoch.

``--profile`` times each kernel alone (``fastnn.profiling``); these clocks say what
the regions cost in the real run, where the threads share caches and wait for each
other.  ``train_epoch`` takes a ``clocks`` array or None; with None every call here
is pruned by Numba and the epoch compiles without them.

The array is int64 of shape (3, threads + 1) (``clock_buffer``), added to in place:

* row ``PASSES`` (the blocks of chunks: forward and backward) and row ``TASKS`` (the
  update tasks): column 0 the regions' wall time, from before each region starts to
  after it joins; column 1 + t the time thread t (``numba.get_thread_id``) spent in
  its iterations;
* row ``EPOCH``, column 0: the whole call.

The counter is LLVM's ``readcyclecounter``, the time-stamp counter (``rdtsc``) on
x86-64: it ticks at a constant rate, so the caller converts ticks to seconds with
the call's wall time, measured outside (``profiling.region_clocks``).  What LLVM
reads on other CPUs need not tick at a constant rate, or be readable by a program at
all, so the clocks are only offered on x86-64 (``AVAILABLE``).
"""

import platform

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .. import config

#: Rows of a clocks array: PASSES and TASKS are ``train_epoch``'s phase numbers.
PASSES, TASKS, EPOCH = 0, 1, 2

#: Whether this machine's compiled code may read the time-stamp counter.
AVAILABLE = platform.machine().lower() in ("x86_64", "amd64")


#: int64 counts per 64-byte cache line.
LINE_COUNTS = 8


def clock_buffer(threads):
    """A zeroed clocks array for an epoch run on ``threads`` threads: a (3, threads + 1)
    view whose counts lie a cache line apart, so that the threads, each adding to its
    own column, never write to a line another one writes to."""
    return np.zeros((3, (threads + 1) * LINE_COUNTS), dtype=np.int64)[:, ::LINE_COUNTS]


@intrinsic
def ticks(typingctx):
    """The CPU's cycle counter (``llvm.readcyclecounter``), an int64."""

    def codegen(context, builder, signature, args):
        counter = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter")
        return builder.call(counter, [])

    return types.int64(), codegen


@njit(inline="always", **config.JIT_OPTIONS)
def clock_start(clocks):
    """The counter now, or 0 without clocks (a constant: nothing is read)."""
    if clocks is None:  # pruned by Numba when clocks is None
        return 0
    return ticks()


@njit(inline="always", **config.JIT_OPTIONS)
def clock_add(clocks, row, column, start):
    """clocks[row, column] += the ticks since start; nothing without clocks."""
    if clocks is not None:  # pruned by Numba when clocks is None
        clocks[row, column] += ticks() - start


@njit(inline="always", **config.JIT_OPTIONS)
def clock_thread(clocks, row, start):
    """Add the ticks since start to the calling thread's column of row."""
    if clocks is not None:  # pruned by Numba when clocks is None
        clocks[row, 1 + numba.get_thread_id()] += ticks() - start


@njit(**config.JIT_OPTIONS)
def read_counter():
    """The cycle counter, read from Python (to convert counts to seconds)."""
    return ticks()
