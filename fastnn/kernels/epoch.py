"""Drivers: a whole training epoch in one parallel compiled call, and prediction.

Work split (never depends on the thread count, so results are bitwise identical
with 1, 2 or N threads):

1. Forward and backward passes: the mini-batch is cut into fixed chunks of
   ``config.CHUNK_ROWS`` rows, twice that for networks too large for a core's cache
   (``chunk_rows``), each with its own part of the loss; ``prange`` gives each
   thread a block of consecutive chunks (``block_rows``), whose rows it takes
   through each layer at once, writing only its own rows of the activation and
   delta buffers.  Every row's values are the same whatever rows share its block.
2. Gradient and update: each layer's (fan_in + 1, fan_out) parameter block is cut
   into fixed row ranges (the ``tasks`` table built by ``make_tasks``); ``prange``
   runs the tasks, each summing over all rows of the batch in order 0..n-1, then
   updating its own parameters and their optimizer state.  No task writes what another reads, so no
   gradient buffer is shared and no reduction across threads is needed.

Two parallel regions per micro-batch (one ``prange`` loop run for each pass; plain
loops on one thread, ``in_parallel``), and nothing is allocated inside the epoch.  A
mini-batch of more than the rows the batch buffers hold (``config.MICRO_BATCH_ROWS``)
goes through both passes one micro-batch at a time: the tasks add each micro-batch's
gradient to the sums of the ones before (every element still sums the batch's rows
in order, so the weights are bitwise those of one pass) and update after the last.
Each micro-batch's activations and deltas are thus still in cache when the tasks
read them: a full batch of 1617 float64 rows has 7.7 MB of them.  Compile time: the
driver calls the per-chunk and per-task workers, and the refresh of the weight
copies, through their addresses (``kernels.workers``), so their code is compiled
once, not again in each of the libraries a ``prange`` builds; ``chunk_worker``,
``task_worker``, ``gradient_worker`` and ``copy_worker`` compile them for a run's
arguments.  See docs/performance.md, "Start-up".
Prediction is a serial, GIL-free kernel that the caller runs on several threads.
"""

from fractions import Fraction

import numpy as np
from numba import njit, prange, types
from numba.extending import overload, register_jitable

from .. import config
from ..network import aligned_zeros
from .gemm import PACK_B, TRANSPOSE_BYTES, panel_columns, panel_width, transpose
from .activations import saves_derivative
from .clocks import EPOCH, clock_add, clock_start, clock_thread
from .dense import (count_right, dense_backward, dense_forward, output_delta, param_grad,
                    through_w_scratch_size)
from .dropout import drop_rows
from .layers import backward_layer, backward_layer_saved, forward_layer, forward_layer_saving
from .optimizers import SGD, add_l2, rule_step
from .sparse import sparse_param_grad, sparse_rows_forward
from .workers import Worker, call_worker

#: The keep threshold of a rate of 0 (``dropout.keep_threshold(0)``): that block is not dropped.
NO_DROPOUT = np.uint64(2**32)


#: Tasks cover multiples of this many rows: the side of the register blocks in which
#: transpose_weights refreshes W.T in float32 (4 in float64).  With 4 rows a float32
#: task (layers 1024 wide or more) went element by element: 634 against 94 us per
#: 512 x 512 layer (docs/benchmarks.md).
TASK_ROWS = TRANSPOSE_BYTES // 4


def make_tasks(sizes, params_per_task=config.PARAMS_PER_TASK, min_width=config.TASK_MIN_WIDTH,
               sparse_input=False):
    """int64 array of shape (n_tasks, 3): (layer, row_start, row_stop) of each update task.

    Rows index a layer's (fan_in + 1, fan_out) block; the bias row goes with the
    last range.  Numba splits the tasks into one contiguous run per thread, so
    the tasks are sized to cost about the same: ``params_per_task`` parameters,
    counting a layer narrower than ``min_width`` as ``min_width`` wide (its short
    rows vectorise poorly and cost about that much), in multiples of ``TASK_ROWS``.
    With sparse_input (X given as CSR) the first layer is cut into
    ``config.SPARSE_INPUT_TASKS`` ranges instead: each of its tasks searches every
    batch row for its features (``sparse.sparse_param_grad``), so fewer, larger ones.

    Order: the tasks of the other layers in layer and row order (consecutive tasks of
    a layer read its deltas while they are in cache), and those of each narrow layer
    spread evenly among them.  A narrow layer's tasks cost less than counted (the
    10-wide head's a third of the others' in the tutorial's network); at the end of
    the list they would all go to the last thread.  Spread, every run of tasks gets
    its share: the tutorial's full-batch epoch with 2 threads took 4-5 % less time
    (docs/benchmarks.md).  The order changes no weight: each task owns its rows.
    """
    in_order, narrow = [], []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        sparse_first = sparse_input and layer == 0
        if sparse_first:
            rows = max(TASK_ROWS, -(-fan_in // config.SPARSE_INPUT_TASKS))
        else:
            rows = max(TASK_ROWS, -(-params_per_task // max(fan_out, min_width)))
        rows += -rows % TASK_ROWS
        starts = list(range(0, fan_in, rows))
        stops = starts[1:] + [fan_in + 1]
        layer_tasks = [(layer, start, stop) for start, stop in zip(starts, stops)]
        if fan_out < min_width and not sparse_first:
            narrow.append(layer_tasks)
        else:
            in_order.extend(layer_tasks)
    # Each task goes at the middle of its share of its list (the i-th of n at
    # (2i + 1) / 2n); ties keep the layer order.
    placed = [(Fraction(2 * i + 1, 2 * len(tasks)), task)
              for tasks in [in_order] + narrow for i, task in enumerate(tasks)]
    placed.sort()
    return np.array([task for _, task in placed], dtype=np.int64)


@njit(inline="always", **config.JIT_OPTIONS)
def layer_weights(flat, offsets, sizes, layer):
    """(W, b) views of a layer in a flat buffer: W (fan_in, fan_out), b (fan_out,)."""
    fan_in, fan_out = sizes[layer], sizes[layer + 1]
    block = flat[offsets[layer] : offsets[layer + 1]].reshape((fan_in + 1, fan_out))
    return block[:fan_in], block[fan_in]


@njit(inline="always", **config.JIT_OPTIONS)
def leading_sum(values, stop):
    """values[0] + ... + values[stop - 1] of an int64 array (a loop: NumPy's sum would be
    one more function for Numba to compile in every run)."""
    total = 0
    for i in range(stop):
        total += values[i]
    return total


@njit(inline="always", **config.JIT_OPTIONS)
def layer_rows(flat, widths, layer, n_rows):
    """View of the (n_rows, widths[layer]) block of layer ``layer`` in a batch buffer.

    A batch buffer holds, one after the other, an (n_rows, widths[l]) block for
    every l = 0..n_layers (activations: the input first, the head's output last).
    widths is the network's sizes, but for a sparse X (``X_csr``) the input block
    has width 0: the first layer reads X's non-zeros itself.
    """
    start = n_rows * leading_sum(widths, layer)
    return flat[start : start + n_rows * widths[layer]].reshape((n_rows, widths[layer]))


@njit(inline="always", **config.JIT_OPTIONS)
def copy_row(src, i, dst, k):
    """dst[k, :] = src[i, :], element by element.

    (The slice assignment compiles Numba's shape-mismatch error message, string
    formatting included: about 3 s of the first run's compile time.)
    """
    for j in range(src.shape[1]):
        dst[k, j] = src[i, j]


@njit(inline="always", **config.JIT_OPTIONS)
def copy_row_testing(src, i, dst, k, tests):
    """dst[k, :] = src[i, :], and tests[j] += src[i, j] - src[i, j] for every column j.

    tests (src.shape[1],) of src's dtype stays zero while the values are finite and
    becomes NaN at a NaN or an infinity (inf - inf is NaN; fastmath's flags leave out
    "nnan" and "ninf", so LLVM keeps the difference).  Each column is a lane of its
    own: the loop is a vector copy and two adds, which an ordered sum of the row
    would not be.
    """
    for j in range(src.shape[1]):
        value = src[i, j]
        dst[k, j] = value
        tests[j] += value - value


@njit(inline="always", **config.JIT_OPTIONS)
def copy_rows_to_panels(src, row_start, row_stop, P):
    """Copy rows [row_start, row_stop) of src (k, n) into P, the same matrix in panel
    layout (ceil(n / NR), k, NR) (``gemm.panel_width``); P's columns past n are never
    written (nor read by gemm)."""
    nr = panel_columns(P)  # a constant: the row copies are vector moves
    n = src.shape[1]
    n_full = n // nr
    for i in range(row_start, row_stop):
        for p in range(n_full):
            for j in range(nr):
                P[p, i, j] = src[i, p * nr + j]
        for j in range(n_full * nr, n):
            P[n_full, i, j - n_full * nr] = src[i, j]


@njit(inline="always", **config.JIT_OPTIONS)
def copy_rows_from_panels(P, row_start, row_stop, dst):
    """Copy rows [row_start, row_stop) of P, a (k, n) matrix in panel layout, into dst
    (k, n): the inverse of ``copy_rows_to_panels``."""
    nr = panel_columns(P)
    n = dst.shape[1]
    n_full = n // nr
    for i in range(row_start, row_stop):
        for p in range(n_full):
            for j in range(nr):
                dst[i, p * nr + j] = P[p, i, j]
        for j in range(n_full * nr, n):
            dst[i, j] = P[n_full, i, j - n_full * nr]


# With 256-bit tiles the weight gradient reads the deltas of wide layers from a copy in
# panel layout that the chunks write next to them (``delta_operand``,
# ``store_delta_panels``).  Read in place, the gradient's tiles walk pieces of rows
# 2 KB or more apart (512 float32 columns), which share L1 sets: AVX2 code on the Zen 4
# ran W2's update tasks at 91-98 instead of 102-106 GFLOP/s float32 and 32-34 instead of
# 48-52 float64, and the W2 epoch took 0.451 instead of 0.461 s float32 and 1.02
# instead of 1.30 s float64 with 1 thread.  With rows of 1 KB (the tutorial network in
# float64) the copy gained nothing, and with 512 bytes (in float32) it cost 2 %.  The
# 512-bit tile read the deltas in place as fast on the Zen 4, but on the 2-core Intel
# AVX-512 machine W2's update tasks ran 5 % faster from the copy with 1 thread (level
# with 2): it reads the copy in networks with weight panels (``wide_layers``) only, so
# that the others, the tutorial's included, compile no copy loop (docs/benchmarks.md).
DELTA_PANEL_MIN_BYTES = 2048


@register_jitable
def deltas_in_panels(width, itemsize, with_panels):
    """Whether the weight gradient reads a block of deltas width wide from panels;
    with_panels: whether the network has weight panels (``weight_copies``).

    The compiled callers first test ``PACK_B or panels is not None``: Numba prunes a
    branch on a global constant or on an argument's None type (not on a function's
    result), so the 512-bit code of a network without panels compiles none of this.
    """
    return (PACK_B or with_panels) and width * itemsize >= DELTA_PANEL_MIN_BYTES


@register_jitable
def delta_panel_columns(widths, stop, nr, itemsize, with_panels):
    """Columns per batch row of the panel copies of blocks 1..stop - 1 of a deltas
    buffer: each block that ``deltas_in_panels``, rounded up to whole panels of nr.
    Where block stop's copy starts after the row-layout blocks (``delta_operand``),
    and with stop = len(widths) the room all copies take (``batch_buffers``)."""
    columns = 0
    for l in range(1, stop):
        if deltas_in_panels(widths[l], itemsize, with_panels):
            columns += (widths[l] + nr - 1) // nr * nr
    return columns


@njit(inline="always", **config.JIT_OPTIONS)
def delta_operand(deltas, widths, layer, batch_size, n_rows, panels):
    """Block ``layer`` of a deltas buffer, its first n_rows rows, as the weight gradient's
    product reads it, a 3-D C-contiguous array for ``gemm``: its copy in panel layout,
    (ceil(width / NR), n_rows, NR), for a block ``deltas_in_panels`` (with_panels: the
    network's weight panels, ``weight_copies``, are not None); else the rows in place
    as a (1, n_rows, width) view.  Same bits either way.

    The copies follow the row-layout blocks (``layer_rows``) in the buffer, each with
    room for the buffer's batch_size rows.
    """
    width = widths[layer]
    with_panels = panels is not None
    if deltas_in_panels(width, deltas.itemsize, with_panels):
        nr = panel_columns(deltas)
        start = batch_size * (leading_sum(widths, widths.shape[0])
                              + delta_panel_columns(widths, layer, nr, deltas.itemsize,
                                                    with_panels))
        n_panels = (width + nr - 1) // nr
        return deltas[start : start + n_panels * n_rows * nr].reshape((n_panels, n_rows, nr))
    start = batch_size * leading_sum(widths, layer)
    return deltas[start : start + n_rows * width].reshape((1, n_rows, width))


@njit(inline="always", **config.JIT_OPTIONS)
def store_delta_panels(deltas, widths, layer, batch_size, n_rows, r0, r1, panels):
    """Copy rows [r0, r1) of block ``layer`` of a deltas buffer into its panel layout,
    where ``delta_operand`` reads them (nothing to do for blocks it reads in place)."""
    if PACK_B or panels is not None:  # pruned: 512-bit code without weight panels
        if deltas_in_panels(widths[layer], deltas.itemsize, panels is not None):
            copy_rows_to_panels(layer_rows(deltas, widths, layer, batch_size), r0, r1,
                                delta_operand(deltas, widths, layer, batch_size, n_rows,
                                              panels))


# The forward pass reads each wide layer's W (``wide_layer``) from a copy in panel
# layout (``weight_panels``), which the update tasks refresh for their rows
# (``pack_weights``), and the delta propagation reads every W.T in panels
# (``transpose_weights`` writes them).  Read in place, a 16-row chunk's product walks
# 48- or 24-element pieces of rows 2-4 KB apart, which share L1 sets and defeat the
# hardware prefetchers: W2's first layer forward ran at 69 instead of 98 GFLOP/s
# float32 with AVX2 code, and at 25 instead of 53 GFLOP/s float64 on a 16-core Intel
# AVX-512 CPU (docs/benchmarks.md).  On the Zen 4 the 512-bit tile ran 1-4 % faster
# from panels, about what the copies cost.


def panels_size(sizes, dtype, transposed=False):
    """Elements of a buffer of every layer's W (or W.T) in panel layout (``weight_panels``)."""
    nr = panel_width(dtype)
    pairs = zip(sizes[1:], sizes[:-1]) if transposed else zip(sizes[:-1], sizes[1:])
    return sum(-(-n // nr) * nr * k for k, n in pairs)


def batch_buffers(widths, n_outputs, batch_size, n_tasks, dtype, with_derivs, through_w=False,
                  with_panels=False):
    """The drivers' batch workspaces, zeros: (acts, deltas, derivs, targets, scales,
    chunk_sums, task_squares) for mini-batches of up to batch_size rows.

    They hold rows = min(batch_size, config.MICRO_BATCH_ROWS) rows: the drivers take a
    larger mini-batch through in micro-batches of that many (``train_epoch``).  acts
    and derivs (empty unless with_derivs) have rows * sum(widths) elements
    (``layer_rows``), deltas as many plus room for the copies in panel layout of its
    wide blocks (``delta_operand``, ``delta_panel_columns``; with_panels: the
    network has weight panels, ``weight_copies``),
    plus, with through_w (``propagates_through_w``), rows * ``scratch_width(widths)``
    elements at its end for the transposes of the delta propagation
    (``weights_with_scratch``); targets shape (rows, n_outputs), scales (rows,);
    chunk_sums float64 (ceil(batch_size / CHUNK_ROWS), 2), room for chunks of any
    ``chunk_rows`` (at least CHUNK_ROWS rows); task_squares float64 (n_tasks,).
    """
    rows = min(batch_size, config.MICRO_BATCH_ROWS)
    size = rows * int(widths.sum())
    nr, itemsize = panel_width(dtype), np.dtype(dtype).itemsize
    extra = delta_panel_columns(widths, len(widths), nr, itemsize, with_panels)  # per row
    if through_w:
        extra += scratch_width(widths)
    return (aligned_zeros(size, dtype), aligned_zeros(size + rows * extra, dtype),
            aligned_zeros(size if with_derivs else 0, dtype),
            aligned_zeros(rows * n_outputs, dtype).reshape(rows, n_outputs),
            aligned_zeros(rows, dtype), np.zeros((-(-batch_size // config.CHUNK_ROWS), 2)),
            np.zeros(n_tasks))


def weight_copies(sizes, dtype, sparse_input=False, through_w=False):
    """The drivers' workspaces (params_t, panels), zeros: W.T of every layer in panel
    layout (``weight_panels``), or None with through_w (``propagates_through_w``; the
    kernels given None compile no code for W.T); and a buffer with room for every
    layer's W in panel layout, of which the update tasks fill the ones ``wide_layers``
    lists, or None for a network without such a layer (its forward pass reads every W
    in place, and the kernels given None compile no code for panels)."""
    return (None if through_w else aligned_zeros(panels_size(sizes, dtype, True), dtype),
            aligned_zeros(panels_size(sizes, dtype), dtype)
            if wide_layers(sizes, dtype, sparse_input) else None)


#: Mini-batches of at most this many rows propagate the deltas through W read in
#: place (``dense.delta_product``'s second form); larger ones through W.T, a copy in
#: panel layout that the update tasks refresh after every step.  The refresh costs
#: per step, the other form's transposes per row; and with several threads the
#: refresh writes lines that the other cores read, each write waiting for their
#: copies to be invalidated.  On the tutorial's network, 64 rows trained 3-6 %
#: faster through W with 2 threads and 0.5-1 % slower with 1; 128 rows equal with 2
#: threads and 2 % slower with 1 (docs/benchmarks.md).
THROUGH_W_MAX_ROWS = 64
#: ... and this many for a network larger than a core's cache (``large_network``),
#: whose W.T refresh writes more lines: 784-512-512-10 float32 with batches of 128
#: trained 4-10 % faster with 2 threads through W (2-3 % with AVX2 code), level with
#: 1, on the Intel AVX-512 machine; with batches of 256, level (docs/benchmarks.md).
LARGE_THROUGH_W_MAX_ROWS = 128


def propagates_through_w(sizes, batch_size, dtype):
    """Whether the drivers propagate the deltas of mini-batches of batch_size rows
    through W itself, with no W.T (``THROUGH_W_MAX_ROWS``, ``LARGE_THROUGH_W_MAX_ROWS``
    for a ``large_network``): a rule on the shapes, not on the thread count, so a run
    compiles one form whatever its threads.  Either way every delta is the same sum in
    the same order: the weights are bitwise the same."""
    limit = LARGE_THROUGH_W_MAX_ROWS if large_network(sizes, dtype) else THROUGH_W_MAX_ROWS
    return batch_size <= limit


#: A network whose weights (every layer's W) take more bytes than this is larger than
#: a core's L2 cache (1-2 MiB on the CPUs measured): each chunk of the forward and
#: backward passes streams them from farther away.  Its chunks hold LARGE_CHUNK_ROWS
#: rows, half the traffic per row: 784-512-512-10 (2.6 MB in float32, batch 128)
#: trained 8-10 % faster with 1 and 2 threads on the Intel AVX-512 machine, native and
#: AVX2 code; 64 rows gained 3-4 % more but would leave 2 chunks per batch for every
#: thread count (docs/benchmarks.md).
LARGE_WEIGHT_BYTES = 1 << 20
LARGE_CHUNK_ROWS = 2 * config.CHUNK_ROWS

#: ... as long as a micro-batch still has this many chunks for the threads to share.
MIN_LARGE_CHUNKS = 4


def large_network(sizes, dtype):
    """Whether a network's weights (every layer's W) take more than LARGE_WEIGHT_BYTES."""
    weight_bytes = sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * np.dtype(dtype).itemsize
    return weight_bytes > LARGE_WEIGHT_BYTES


def chunk_rows(sizes, batch_size, dtype):
    """Rows per chunk of the forward and backward passes for mini-batches of batch_size
    rows: LARGE_CHUNK_ROWS for a ``large_network`` whose micro-batches hold
    MIN_LARGE_CHUNKS of them, else ``config.CHUNK_ROWS``.  A rule on the shapes, not on
    the thread count; and every row's arithmetic is the same in a chunk of either
    size, so the weights do not depend on it (the loss is summed chunk by chunk, so
    its last bits may)."""
    micro = min(batch_size, config.MICRO_BATCH_ROWS)
    if large_network(sizes, dtype) and micro >= MIN_LARGE_CHUNKS * LARGE_CHUNK_ROWS:
        return LARGE_CHUNK_ROWS
    return config.CHUNK_ROWS


@register_jitable
def scratch_width(widths):
    """Elements per batch row of the scratch of the transposes (``backward_weights``):
    twice the widest layer after the input, room for a layer's delta and the
    previous one's."""
    widest = 0
    for l in range(1, len(widths)):
        widest = max(widest, widths[l])
    return 2 * widest


@njit(inline="always", **config.JIT_OPTIONS)
def panels_start(sizes, layer, nr, transposed):
    """Where a layer's panels start in a buffer of ``panels_size(sizes, dtype, transposed)``."""
    start = 0
    for l in range(layer):
        k, n = (sizes[l + 1], sizes[l]) if transposed else (sizes[l], sizes[l + 1])
        start += (n + nr - 1) // nr * nr * k
    return start


@njit(inline="always", **config.JIT_OPTIONS)
def weight_panels(panels, sizes, layer, transposed=False):
    """View of a layer's W (fan_in, fan_out), or W.T, in a panels buffer: shape
    (ceil(fan_out / NR), fan_in, NR), or (ceil(fan_in / NR), fan_out, NR) for W.T.

    The panel layout (``gemm.panel_width``), one layer after the other, in which the
    forward pass reads W and the delta propagation W.T: each panel of NR columns is
    contiguous.
    """
    nr = panel_columns(panels)
    k, n = (sizes[layer + 1], sizes[layer]) if transposed else (sizes[layer], sizes[layer + 1])
    start = panels_start(sizes, layer, nr, transposed)
    n_panels = (n + nr - 1) // nr
    return panels[start : start + n_panels * nr * k].reshape((n_panels, k, nr))


#: Bytes of W above which the forward pass reads a layer from panels (``wide_layer``).
PANEL_MIN_BYTES = 128 * 1024


@register_jitable
def wide_layer(sizes, layer, nr, itemsize):
    """Whether the forward pass (training and prediction) reads a layer's W from panels
    of nr columns: a layer at least one panel wide whose W has more than
    PANEL_MIN_BYTES.  Smaller layers stay in cache and read W in place; their copy
    would cost the update tasks more than it saves (the tutorial's 64-128-128-10
    network trained 1.02-1.08x faster in place, native and AVX2 code on the Zen 4, and
    predicted 0.97-0.99x as fast from panels; 784-512-512-10 predicted 1.07-1.15x
    faster from panels).  A
    plain function for ``predict_panels``, compiled into the kernels."""
    weight_bytes = sizes[layer] * sizes[layer + 1] * itemsize
    return sizes[layer + 1] >= nr and weight_bytes > PANEL_MIN_BYTES


def wide_layers(sizes, dtype, sparse_input=False):
    """The layers whose W the forward pass reads from panels (``wide_layer``), in order;
    with sparse_input not the first, which reads its weights in place
    (``sparse.sparse_rows_forward``)."""
    nr, itemsize = panel_width(dtype), np.dtype(dtype).itemsize
    return [layer for layer in range(1 if sparse_input else 0, len(sizes) - 1)
            if wide_layer(sizes, layer, nr, itemsize)]


@njit(inline="always", **config.JIT_OPTIONS)
def reads_panels(panels, sizes, layer):
    """Whether the forward pass reads a layer's W from the panels it was given (an empty
    array: none; ``predict_panels``)."""
    return panels.shape[0] > 0 and wide_layer(sizes, layer, panel_columns(panels),
                                              panels.itemsize)


@njit(inline="always", **config.JIT_OPTIONS)
def panel_rows(params, panels, sizes, layer, row_start, row_stop):
    """Rows [row_start, row_stop) of a layer's W in the forward pass's panels
    (``weight_panels``), a (ceil(fan_out / NR), rows, NR) view, where the update tasks'
    SGD step stores the new weights (``dense.param_grad``'s w_panels); empty when the
    layer reads W in place (``reads_panels``) or panels is None.  One array type either
    way, so the callers compile one call."""
    if panels is not None:  # pruned by Numba when panels' type is None
        if reads_panels(panels, sizes, layer):
            return weight_panels(panels, sizes, layer)[:, row_start:row_stop]
    return params[:0].reshape((1, 0, 1))[:, 0:0]


@njit(inline="always", **config.JIT_OPTIONS)
def weights_with_scratch(params, offsets, sizes, layer, deltas, batch_size, r0, r1, panels):
    """(W, scratch), the second form of ``dense.delta_product``'s WT for rows [r0, r1),
    W as the forward pass reads it (``forward_weights``: the panels of a wide layer,
    which both passes then read, so that the update tasks' steps of W's rows meet no
    other core's copy of them), its scratch (``dense.through_w_scratch_size``) on the
    rows' own part of the end of deltas (``batch_buffers``; batch_size is the rows the
    buffers hold)."""
    width, n = scratch_width(sizes), r1 - r0
    start = deltas.shape[0] - (batch_size - r0) * width
    stop = start + through_w_scratch_size(sizes[layer], sizes[layer + 1], n)
    return forward_weights(params, offsets, sizes, layer, panels), deltas[start:stop]


def backward_weights(params, params_t, offsets, sizes, layer, deltas, batch_size, r0, r1,
                     panels):
    """A layer's weights as the delta propagation of rows [r0, r1) reads them, the WT of
    ``dense.delta_product``: W.T in panels (``weight_panels``), or with params_t None
    (``weight_copies``) W with scratch (``weights_with_scratch``).  The two
    have different types, so compiled code takes the overload of params_t's type.
    """
    if params_t is None:
        return weights_with_scratch(params, offsets, sizes, layer, deltas, batch_size, r0, r1,
                                    panels)
    return weight_panels(params_t, sizes, layer, True)


@overload(backward_weights, jit_options=config.JIT_OPTIONS)
def _backward_weights_overload(params, params_t, offsets, sizes, layer, deltas, batch_size, r0,
                               r1, panels):
    if isinstance(params_t, types.NoneType):
        def through_w(params, params_t, offsets, sizes, layer, deltas, batch_size, r0, r1,
                      panels):
            return weights_with_scratch(params, offsets, sizes, layer, deltas, batch_size, r0,
                                        r1, panels)
        return through_w

    def through_copy(params, params_t, offsets, sizes, layer, deltas, batch_size, r0, r1,
                     panels):
        return weight_panels(params_t, sizes, layer, True)
    return through_copy


@njit(inline="always", **config.JIT_OPTIONS)
def forward_weights(params, offsets, sizes, layer, panels):
    """A layer's W as the forward pass reads it, a 3-D C-contiguous array for ``gemm``:
    its panels (``weight_panels``) when ``reads_panels``, else W in place as a
    (1, fan_in, fan_out) view.  Both have one type, so the forward compiles one call
    of each dense kernel.  panels None (a network without wide layers, or a
    prediction without panels; pruned by Numba when its type is None): in place."""
    fan_in, fan_out = sizes[layer], sizes[layer + 1]
    source, start, n_panels, width = params, offsets[layer], 1, fan_out
    if panels is not None:
        if reads_panels(panels, sizes, layer):
            width = panel_columns(panels)
            source, start = panels, panels_start(sizes, layer, width, False)
            n_panels = (fan_out + width - 1) // width
    return source[start : start + n_panels * fan_in * width].reshape((n_panels, fan_in, width))


@njit(inline="always", **config.JIT_OPTIONS)
def transpose_weights(params, offsets, sizes, layer, row_start, row_stop, params_t):
    """Copy rows [row_start, row_stop) of W_layer into columns of W_layer.T in params_t,
    which holds W.T in panel layout (``weight_panels(params_t, sizes, layer, True)``).

    Only weight rows (< fan_in) are copied, each panel's share of them by
    ``gemm.transpose``: the panel's slice (fan_out, rows) has contiguous rows.
    """
    W = layer_weights(params, offsets, sizes, layer)[0]
    WT = weight_panels(params_t, sizes, layer, True)  # element (j, k) at [k // nr, j, k % nr]
    nr = WT.shape[2]
    row_stop = min(row_stop, W.shape[0])
    for p in range(row_start // nr, (row_stop + nr - 1) // nr):
        k0, k1 = max(row_start, p * nr), min(row_stop, p * nr + nr)
        transpose(W[k0:k1], WT[p, :, k0 - p * nr : k1 - p * nr])


@njit(inline="always", **config.JIT_OPTIONS)
def pack_weights(params, offsets, sizes, layer, row_start, row_stop, panels):
    """Copy rows [row_start, row_stop) of W_layer into its panels (``weight_panels``).

    Only weight rows (< fan_in) are copied; the panels' columns past fan_out are
    never written (nor read by gemm).
    """
    W = layer_weights(params, offsets, sizes, layer)[0]
    copy_rows_to_panels(W, row_start, min(row_stop, W.shape[0]),
                        weight_panels(panels, sizes, layer))


@njit(inline="always", **config.JIT_OPTIONS)
def unpack_weights(params, offsets, sizes, layer, row_start, row_stop, panels):
    """Copy rows [row_start, row_stop) of W_layer from its panels (``weight_panels``)
    back into params: the inverse of ``pack_weights``.  An SGD step inside the gradient's
    product (``update_task``) stores the new weight rows of a layer that reads panels
    in the panels only; params gets them here."""
    W = layer_weights(params, offsets, sizes, layer)[0]
    copy_rows_from_panels(weight_panels(panels, sizes, layer), row_start,
                          min(row_stop, W.shape[0]), W)


@njit(inline="always", **config.JIT_OPTIONS)
def has_copies(X_csr, layer):
    """Whether a layer's W may have copies for ``refresh_copies`` to refresh: W.T
    (every layer but the first, unless the drivers propagate through W) or panels,
    which a first layer fed a sparse X (X_csr not None) never has, as
    ``sparse.sparse_rows_forward`` reads its W in place."""
    return layer > 0 or X_csr is None


@njit(inline="always", **config.JIT_OPTIONS)
def unpack_all_weights(params, offsets, sizes, X_csr, panels):
    """Copy every layer's W that reads panels from them into params (``unpack_weights``),
    as ``train_epoch`` does before it returns from an epoch whose update tasks step in
    the gradient's product (``sgd_in_product``), which stores such a layer's new
    weights in its panels only.  (Other steps refresh the panels from params.)"""
    if panels is not None:  # pruned by Numba when panels' type is None
        for layer in range(sizes.shape[0] - 1):
            if has_copies(X_csr, layer) and reads_panels(panels, sizes, layer):
                unpack_weights(params, offsets, sizes, layer, np.int64(0), sizes[layer], panels)


@njit(inline="always", **config.JIT_OPTIONS)
def refresh_all_copies(params, offsets, sizes, X_csr, params_t, panels, copy_worker):
    """Refresh every layer's copies (``refresh_copies``, through copy_worker), as the
    drivers do before their first batch: the weights may have changed since."""
    for layer in range(sizes.shape[0] - 1):
        if has_copies(X_csr, layer):
            call_worker(copy_worker, params, offsets, sizes, layer, np.int64(0), sizes[layer],
                        params_t, panels, False)


@njit(**config.JIT_OPTIONS)
def refresh_copies(params, offsets, sizes, layer, row_start, row_stop, params_t, panels,
                   panels_stepped=False):
    """After rows [row_start, row_stop) of a layer changed: refresh their copies in the
    panels of the forward pass (or with panels_stepped, where the SGD step inside the
    gradient's product stored them there only, ``panel_rows``, copy them from the
    panels into params) and (layers after the first) in the transposed weights of the
    delta propagation (params_t None: there are none).

    The drivers and ``update_task`` call it through its address (``copy_worker``):
    its vector copies are compiled once, not again in each of them.
    """
    if panels is not None:  # pruned by Numba when panels' type is None
        if reads_panels(panels, sizes, layer):
            if panels_stepped:
                unpack_weights(params, offsets, sizes, layer, row_start, row_stop, panels)
            else:
                pack_weights(params, offsets, sizes, layer, row_start, row_stop, panels)
    if params_t is not None:  # pruned by Numba when params_t's type is None
        if layer > 0:
            transpose_weights(params, offsets, sizes, layer, row_start, row_stop, params_t)


@njit(**config.JIT_OPTIONS)
def forward_backward_chunks(params, params_t, panels, sizes, widths, offsets, codes, slope, X,
                            X_csr, Y, weights, rows, r0, r1, chunk, inv_batch_weight, acts,
                            deltas, derivs, targets, scales, chunk_sums, dropout, step,
                            micro_start, unfused_present):
    """Forward and backward pass of rows [r0, r1), whole chunks of chunk rows (the last
    one possibly shorter): fills their activations and deltas, and each chunk's row of
    chunk_sums (the chunk's part of the batch's mean loss and of its accuracy).

    The rows go through each layer's kernels together: one pass over the layer's
    weights for all of them (a 784-512-512-10 network has 2.6 MB, more than a
    core's L2 cache).  Each row's values do not depend on the rows beside it, and the
    loss is summed chunk by chunk, so the results are bitwise those of one chunk at
    a time.

    rows holds the indices into X (or X_csr), Y and weights of the micro-batch that
    the buffers hold (``train_epoch``), whose first row is row micro_start of the
    mini-batch; each row's delta is scaled by its weight times inv_batch_weight.  X_csr is None (X
    dense: this specialisation compiles no sparse code) or X as CSR arrays (data,
    indices, indptr), X then having no columns and widths[0] being 0 (``layer_rows``):
    the first layer (activation in ``sparse.FIRST_LAYER_CODES``) reads its non-zeros.
    unfused_present is None when every layer's activation is one the dense kernels
    apply themselves (``activations.unfused_present``): this specialisation then calls
    them directly and compiles none of the other activations' code; else it names the
    others that the network has (only their code is compiled).  The chunk worker gets
    it bound (``chunk_worker``), so it is last.  slope is leaky_relu's negative slope;
    derivs (the layout of acts, or empty) receives the derivatives that gelu,
    softplus and silu layers save, and dropped layers.  dropout is None (no dropout:
    this specialisation compiles no dropout code) or (thresholds, scales, seed) for
    the blocks 0..n_layers - 1 of the batch buffers (``kernels.dropout``), step the
    mini-batch's number (a row's dropout mask depends on step and its row in the
    mini-batch, not in the micro-batch).  Chunk c of the mini-batch (rows
    c * chunk ..) has row c of chunk_sums.
    """
    n_layers = sizes.shape[0] - 1
    batch_size = targets.shape[0]
    x = layer_rows(acts, widths, np.int64(0), batch_size)  # no columns when X is sparse
    for r in range(r0, r1):
        copy_row(X, rows[r], x, r)
        copy_row(Y, rows[r], targets, r)
        scales[r] = weights[rows[r]] * inv_batch_weight
    if unfused_present is not None:  # pruned by Numba when unfused_present's type is None
        unfused = (slope,) + unfused_present  # activations.unfused_argument
    if dropout is not None:
        if dropout[0][0] < NO_DROPOUT:  # the inputs: no derivative
            drop_rows(x[r0:r1], x[r0:r0], 0, slope, dropout[0][0], dropout[1][0],
                      dropout[2], step, micro_start + r0, 0)
    first_dense = 0  # the first layer the dense kernels run
    if X_csr is not None:  # pruned by Numba when X_csr's type is None
        W, b = layer_weights(params, offsets, sizes, np.int64(0))
        sparse_rows_forward(X_csr[0], X_csr[1], X_csr[2], rows[r0:r1], W, b, codes[0],
                            layer_rows(acts, widths, np.int64(1), batch_size)[r0:r1])
        first_dense = 1
    for layer in range(first_dense, n_layers):
        b = layer_weights(params, offsets, sizes, layer)[1]
        W = forward_weights(params, offsets, sizes, layer, panels)
        a_prev = layer_rows(acts, widths, layer, batch_size)[r0:r1]
        a = layer_rows(acts, widths, layer + 1, batch_size)[r0:r1]
        if unfused_present is None:  # pruned, as above
            dense_forward(a_prev, W, b, codes[layer], a)
        elif saves_derivative(codes[layer]):
            forward_layer_saving(a_prev, W, b, codes[layer], unfused, a,
                                 layer_rows(derivs, widths, layer + 1, batch_size)[r0:r1])
        else:
            forward_layer(a_prev, W, b, codes[layer], unfused, a)
        if dropout is not None:
            if layer + 1 < n_layers and dropout[0][layer + 1] < NO_DROPOUT:
                drop_rows(a, layer_rows(derivs, widths, layer + 1, batch_size)[r0:r1],
                          codes[layer], slope, dropout[0][layer + 1], dropout[1][layer + 1],
                          dropout[2], step, micro_start + r0, leading_sum(sizes, layer + 1))
    output = layer_rows(acts, widths, n_layers, batch_size)
    output_deltas = layer_rows(deltas, widths, n_layers, batch_size)
    for c0 in range(r0, r1, chunk):  # each chunk's loss, summed over its rows
        c1, c = min(c0 + chunk, r1), (micro_start + c0) // chunk
        chunk_sums[c, 0] = output_delta(output[c0:c1], targets[c0:c1], codes[n_layers - 1],
                                        scales[c0:c1], output_deltas[c0:c1])
        chunk_sums[c, 1] = count_right(output[c0:c1], targets[c0:c1], codes[n_layers - 1],
                                       scales[c0:c1])
    delta = output_deltas[r0:r1]
    n_rows = rows.shape[0]
    store_delta_panels(deltas, widths, n_layers, batch_size, n_rows, r0, r1, panels)
    for layer in range(n_layers - 1, 0, -1):
        WT = backward_weights(params, params_t, offsets, sizes, layer, deltas, batch_size, r0,
                              r1, panels)
        delta_prev = layer_rows(deltas, widths, layer, batch_size)[r0:r1]
        saved = False
        if unfused_present is not None:
            saved = saves_derivative(codes[layer - 1])
        if dropout is not None:
            if dropout[0][layer] < NO_DROPOUT:
                saved = True
        if saved:  # the derivative written by the forward pass
            backward_layer_saved(delta, WT, layer_rows(derivs, widths, layer, batch_size)[r0:r1],
                                 delta_prev)
        elif unfused_present is None:
            dense_backward(delta, WT, layer_rows(acts, widths, layer, batch_size)[r0:r1],
                           codes[layer - 1], delta_prev)
        else:
            backward_layer(delta, WT, layer_rows(acts, widths, layer, batch_size)[r0:r1],
                           codes[layer - 1], unfused, delta_prev[:0], delta_prev)
        store_delta_panels(deltas, widths, layer, batch_size, n_rows, r0, r1, panels)
        delta = delta_prev


@register_jitable
def sgd_in_product(optimizer, n_slots, l2):
    """Whether the update tasks step a dense layer's weight rows inside the gradient's
    product (``task_gradient``'s sgd_lr, ``gemm.gemm_sgd``): plain SGD (no momentum,
    so no optimizer slots) without an L2 term.  Compiled code and ``fastnn.profiling``
    both ask it."""
    return optimizer == SGD and n_slots == 0 and l2 == 0


@njit(inline="always", **config.JIT_OPTIONS)
def task_gradient(params, panels, grads, sizes, widths, offsets, X_csr, rows, task, l2_scaled,
                  acts, deltas, first, last, sgd_lr):
    """Gradient rows of one update task (see ``make_tasks``) plus the L2 term, in place.

    Sums over the micro-batch's rows (rows: their indices into X, as for
    ``forward_backward_chunks``, whose X_csr and widths these are) into grads
    (n_params,): overwriting them for the first micro-batch of a mini-batch, adding
    to them for the others (each element's sum continues in row order:
    ``dense.param_grad``).  After the last, adds l2_scaled (the L2 penalty over the
    batch's weight) times the task's weights (not biases).  Returns the sum of
    squares of those weights (0.0 when l2_scaled is 0 or this is not the last
    micro-batch), for the penalty's value.  sgd_lr, a scalar of the dtype: 0, or
    (``update_task``) the learning rate of a plain SGD step that the weight rows of a
    dense layer then take inside the product (``dense.param_grad``'s w and lr),
    instead of being written to grads; the product then also stores them in the
    forward pass's panels (``panel_rows``; panels as for ``forward_backward_chunks``).
    """
    layer, row_start, row_stop = task[0], task[1], task[2]
    n_rows = rows.shape[0]
    batch_size = acts.shape[0] // leading_sum(widths, widths.shape[0])
    fan_in, fan_out = sizes[layer], sizes[layer + 1]
    start = offsets[layer] + row_start * fan_out
    stop = offsets[layer] + row_stop * fan_out
    out = grads[start:stop].reshape((row_stop - row_start, fan_out))
    delta = layer_rows(deltas, widths, layer + 1, batch_size)[:n_rows]
    dense = True
    if X_csr is not None:  # pruned by Numba when X_csr's type is None
        if layer == 0:
            sparse_param_grad(X_csr[0], X_csr[1], X_csr[2], rows, delta, fan_in, row_start,
                              row_stop, out, not first)
            dense = False
    if dense:
        a_prev = layer_rows(acts, widths, layer, batch_size)[:n_rows]
        w = params[start:stop].reshape((row_stop - row_start, fan_out))
        w_panels = panel_rows(params, panels, sizes, layer, row_start, row_stop)
        if PACK_B or panels is not None:  # pruned: 512-bit code without weight panels
            param_grad(a_prev, delta, row_start, row_stop, out, not first,
                       delta_operand(deltas, widths, layer + 1, batch_size, n_rows, panels), w,
                       sgd_lr, w_panels)
        else:
            param_grad(a_prev, delta, row_start, row_stop, out, not first, None, w, sgd_lr,
                       w_panels)
    squares = 0.0
    if last and l2_scaled != 0:
        weight_stop = offsets[layer] + min(row_stop, fan_in) * fan_out
        squares = add_l2(grads, params, start, weight_stop, l2_scaled)
    return squares


@njit(inline="always", **config.JIT_OPTIONS)
def micro_batch(rows, micro_start, micro):
    """(rows, first?, last?) of the micro-batch of a mini-batch's rows that starts at
    micro_start: at most micro rows (a multiple of the chunk rows, so its chunks are
    the mini-batch's, numbered from micro_start // chunk: ``chunk_sums``)."""
    return (rows[micro_start : micro_start + micro], micro_start == 0,
            micro_start + micro >= rows.shape[0])


@njit(inline="always", **config.JIT_OPTIONS)
def chunk_count(n_rows, chunk):
    """Chunks of chunk rows in n_rows rows, the last one possibly shorter."""
    return (n_rows + chunk - 1) // chunk


@njit(inline="always", **config.JIT_OPTIONS)
def region_items(phase, n_rows, n_tasks, chunk, threads):
    """Iterations of a micro-batch's parallel region: its blocks of chunks of chunk rows,
    one per thread but no more than the chunks (phase 0, ``block_rows``); its tasks (1).
    (The threads come from the caller: Numba's get_num_threads in compiled code
    would keep it out of the disk cache.)"""
    if phase == 0:
        return min(threads, chunk_count(n_rows, chunk))
    return n_tasks


@njit(inline="always", **config.JIT_OPTIONS)
def block_rows(block, n_blocks, n_rows, chunk):
    """Rows [r0, r1) of block number ``block`` when n_rows rows, in chunks of chunk rows,
    are cut into n_blocks blocks of consecutive whole chunks, as even as can be."""
    n_chunks = chunk_count(n_rows, chunk)
    return (block * n_chunks // n_blocks * chunk,
            min((block + 1) * n_chunks // n_blocks * chunk, n_rows))


@njit(inline="always", **config.JIT_OPTIONS)
def batch_sums(chunk_sums, n_chunks, task_squares, l2, inv_batch_weight):
    """(loss, accuracy) of a batch from its parts, as two floats.

    The first n_chunks rows of chunk_sums (each chunk's part of the mean loss and of
    the accuracy) are summed in order; when l2 is not 0, the penalty 0.5 * l2 *
    inv_batch_weight * (the tasks' sums of squared weights, summed in order) is
    added to the loss.
    """
    loss, right = 0.0, 0.0
    for c in range(n_chunks):  # fixed order, as every sum here
        loss += chunk_sums[c, 0]
        right += chunk_sums[c, 1]
    if l2 != 0:
        squares = 0.0
        for t in range(task_squares.shape[0]):
            squares += task_squares[t]
        loss += 0.5 * l2 * inv_batch_weight * squares
    return loss, right


@njit(inline="always", **config.JIT_OPTIONS)
def task_refreshes_copies(in_product, layer, params_t, X_csr):
    """Whether an update task calls ``refresh_copies`` for its rows after its step.  After a
    step in the product, which stored the forward panels' rows (only), W.T may be left
    (made from params' rows once refresh_copies has copied them from the panels);
    after a separate step, every copy the layer has."""
    if in_product:
        return layer > 0 and params_t is not None
    return has_copies(X_csr, layer)


@njit(**config.JIT_OPTIONS)
def update_task(params, params_t, panels, grads, slots, sizes, widths, offsets, X_csr, rows, task,
                lr, l2, inv_batch_weight, hyper, step, acts, deltas, first, last, copy_worker,
                optimizer):
    """Gradient, L2 term and optimizer update of one task's parameters (see ``make_tasks``).

    The gradient of a micro-batch and the L2 term (l2 * inv_batch_weight) as
    ``task_gradient``; after the last micro-batch of the mini-batch, updates the
    parameters and their optimizer state, and refreshes the copies of the rows it
    changed (``refresh_copies``, through copy_worker: ``copy_worker``).  Returns the
    sum of squares of the task's weights before the update (0.0 when the L2 term is 0
    or before the last micro-batch), for the penalty's value.  optimizer, the
    optimizer's code, is last: the task worker has it bound (``task_worker``).

    Plain SGD without L2 (the tutorial's update) steps the weight rows inside the
    gradient's product (``task_gradient``'s sgd_lr), tile by tile: with 2 threads a
    separate step's writes, to lines the other core read in the batch's passes, each
    wait for that core's copy to be invalidated (docs/benchmarks.md).  Same bits.  The
    weights of a layer that reads panels are stepped there, in the panels only, and
    ``train_epoch`` copies them into params before it returns (``unpack_all_weights``):
    so the choice must hold for a whole epoch, and it is made on l2, not on the
    batch's l2 * inv_batch_weight, which can round to 0 for some batches only.
    """
    layer, row_start, row_stop = task[0], task[1], task[2]
    l2_scaled = l2 * inv_batch_weight
    # (a sparse first layer's gradient is not a dense product)
    in_product = (last and sgd_in_product(optimizer, slots.shape[0], l2)
                  and (X_csr is None or layer > 0))
    squares = task_gradient(params, panels, grads, sizes, widths, offsets, X_csr, rows, task,
                            l2_scaled, acts, deltas, first, last,
                            lr if in_product else params.dtype.type(0.0))
    if not last:
        return squares
    fan_in, fan_out = sizes[layer], sizes[layer + 1]
    start = offsets[layer] + row_start * fan_out
    stop = offsets[layer] + row_stop * fan_out
    if in_product:  # only the bias row is left to step
        start = offsets[layer] + max(row_start, fan_in) * fan_out
    if start < stop:
        rule_step(params, grads, slots, start, stop, optimizer, hyper, lr, step)
    if task_refreshes_copies(in_product, layer, params_t, X_csr):
        call_worker(copy_worker, params, offsets, sizes, layer, row_start, row_stop, params_t,
                    panels, bool(in_product))
    return squares


#: A batch's row indices as the drivers pass them to the workers: a slice of order (or
#: the objective's rows), an int64 array with contiguous elements.
_ROWS = np.zeros(0, dtype=np.int64)

#: forward_backward_chunks' return type (none), declared (and checked:
#: ``workers.Worker``) so that a driver compiles while a child process compiles the
#: chunk worker.
CHUNK_RETURNS = types.none


def chunk_worker(params, params_t, panels, sizes, widths, offsets, codes, slope, X, X_csr, Y,
                 weights, acts, deltas, derivs, targets, scales, chunk_sums, dropout,
                 unfused_present, aside=False):
    """``forward_backward_chunks`` compiled for a driver's arguments, as a ``workers.Worker``.

    The arguments are the driver's (``train_epoch``; ``loss_and_grad`` passes
    dropout None); the others (rows, row range, chunk rows, inverse batch weight,
    step) take the types the driver gives them.  unfused_present is bound
    (``workers.Worker``): the drivers' types do not depend on the activations, so
    one driver is compiled for all of them.  aside: compile it in a child process
    meanwhile (``workers.Worker``); it is the largest kernel of a run (docs/performance.md).
    """
    row = np.int64(0)
    return Worker(forward_backward_chunks, (
        params, params_t, panels, sizes, widths, offsets, codes, slope, X, X_csr, Y, weights,
        _ROWS, row, row, row, params.dtype.type(1), acts, deltas, derivs, targets, scales,
        chunk_sums, dropout, row, row), aside, CHUNK_RETURNS, bound=(unfused_present,))


def task_worker(params, params_t, panels, grads, slots, sizes, widths, offsets, X_csr, tasks,
                optimizer, hyper, acts, deltas, copy_worker):
    """``update_task`` compiled for ``train_epoch``'s arguments, as a ``workers.Worker``.

    optimizer, the optimizer's code, is bound (``workers.Worker``): compiled in as a
    literal, so the worker holds that update rule only (``optimizers.rule_step``), and
    the driver's type does not depend on it.  copy_worker: the ``copy_worker`` it calls.
    """
    scalar = params.dtype.type(0)
    return Worker(update_task, (
        params, params_t, panels, grads, slots, sizes, widths, offsets, X_csr, _ROWS, tasks[0],
        scalar, scalar, scalar, hyper, np.int64(0), acts, deltas, True, True, copy_worker),
        bound=(int(optimizer),))


def copy_worker(params, offsets, sizes, params_t, panels):
    """``refresh_copies`` compiled for a driver's arguments, as a ``workers.Worker``."""
    row = np.int64(0)
    return Worker(refresh_copies, (params, offsets, sizes, row, row, row, params_t, panels,
                                   False))


def gradient_worker(params, panels, grads, sizes, widths, offsets, X_csr, tasks, acts, deltas):
    """``task_gradient`` compiled for ``objective.loss_and_grad``'s arguments, as a Worker."""
    return Worker(task_gradient, (params, panels, grads, sizes, widths, offsets, X_csr, _ROWS,
                                  tasks[0],
                                  params.dtype.type(0), acts, deltas, True, True,
                                  params.dtype.type(0)))


@njit(inline="always", **config.JIT_OPTIONS)
def in_parallel(threads):
    """Whether the drivers run their regions as parallel loops (``prange``): not on one
    thread, where the items run the same in a plain loop.  A prange's start and join
    take 3-4 us; in plain loops the tutorial's network trained 1.5-4 % faster with 1
    thread (docs/benchmarks.md)."""
    return threads > 1


@njit(inline="always", **config.JIT_OPTIONS)
def epoch_item(phase, i, n_items, batch, run, task_squares, X_csr, dropout, clocks):
    """Item i of n_items of a micro-batch's region in ``train_epoch``: phase 0, the
    forward and backward passes of block i's chunks; phase 1, the gradient (and after
    the last micro-batch, the update) of task i.  batch and run hold the micro-batch's
    and the epoch's arrays and scalars that it reads (``train_epoch``'s names); the
    others are apart: Numba's parallel passes drop the writes to an array taken from
    a tuple built in the driver (task_squares), None in a tuple is not pruned
    (clocks), and a tuple in a tuple cannot enter a parallel loop (X_csr, dropout)."""
    (params, params_t, panels, grads, slots, sizes, widths, offsets, codes, slope, tasks, X, Y,
     weights, chunk, lr, l2, hyper, acts, deltas, derivs, targets, scales, chunk_sums,
     chunk_worker, task_worker, copy_worker) = run
    micro_rows, micro_start, first, last, step, inv_batch_weight = batch
    item_start = clock_start(clocks)
    if phase == 0:
        r0, r1 = block_rows(i, n_items, micro_rows.shape[0], chunk)
        call_worker(chunk_worker, params, params_t, panels, sizes, widths, offsets, codes,
                    slope, X, X_csr, Y, weights, micro_rows, r0, r1, chunk, inv_batch_weight,
                    acts, deltas, derivs, targets, scales, chunk_sums, dropout, step,
                    micro_start)
    else:
        task_squares[i] = call_worker(
            task_worker, params, params_t, panels, grads, slots, sizes, widths, offsets, X_csr,
            micro_rows, tasks[i], lr, l2, inv_batch_weight, hyper, step, acts, deltas, first,
            last, copy_worker)
    clock_thread(clocks, phase, item_start)  # rows PASSES and TASKS: the phases


@njit(**config.PARALLEL_OPTIONS)
def train_epoch(params, params_t, panels, grads, slots, sizes, widths, offsets, codes, slope,
                tasks, X, X_csr, Y, weights, order, first_row, stop, totals, batch_size, chunk,
                threads, lr, l2, optimizer, hyper, step, acts, deltas, derivs, targets, scales,
                chunk_sums, task_squares, dropout, chunk_worker, task_worker, copy_worker,
                clocks=None):
    """Mini-batches over the rows X[order[first_row:]], until the end or a stop request.

    Parameters
    ----------
    params : ndarray of shape (n_params,)
        Flat parameters (see ``fastnn.network``), updated in place.
    params_t : ndarray or None; panels : ndarray or None
        Workspaces (``weight_copies``): the transposed weights and the weights of the
        wide layers, in panel layout (params_t None: the deltas propagate through W
        in place, ``propagates_through_w``; panels None: no wide layer).
    grads : ndarray of shape (n_params,)
        Workspace: the gradients.
    slots : ndarray of shape (n_slots, n_params)
        Optimizer state, updated in place (see ``fastnn.optimizers``).
    sizes, widths, offsets, codes, tasks : int64 arrays
        Layer widths, the batch buffers' block widths (sizes, with 0 for the input
        when X is sparse: ``layer_rows``), block offsets, activation codes and the
        update tasks (``make_tasks``).
    slope : scalar of the parameters' dtype
        leaky_relu's negative slope.  Which activations a network has is not an
        argument: the chunk worker is compiled for them (``chunk_worker``), so one
        driver serves every network whose other arguments have the same types.
    X : ndarray of shape (n_samples, n_features); Y : ndarray of shape (n_samples, n_outputs)
    X_csr : None, or a sparse X as CSR arrays (data, indices, indptr)
        (``sparse.csr_arrays``), X then of shape (n_samples, 0): the first layer reads
        its non-zeros (``forward_backward_chunks``).  None compiles no sparse code.
    weights : ndarray of shape (n_samples,)
        Sample weights (ones for none).
    order : int64 ndarray of shape (n_epoch_rows,)
        Rows of X to visit, in order (drawn by the caller from its seeded generator).
    first_row : int
        Where in order to start: 0, or where an interrupted epoch stopped.
    stop : int64 ndarray of shape (1,)
        Read before every mini-batch: when non-zero (set by another thread, e.g. on
        Ctrl-C) the epoch returns at that batch boundary.
    totals : float64 ndarray of shape (3,)
        Running sums, added to in place: of each batch's (weighted) mean loss,
        measured before its update, times the batch's weight; of those weights; and
        of each batch's accuracy (``count_right``, before the update) times its weight.
        The epoch's mean loss is totals[0] / totals[1], its accuracy totals[2] / totals[1].
    batch_size : int
    chunk : int
        Rows per chunk of the forward and backward passes (``chunk_rows``).
    threads : int
        The threads the parallel regions run on (``numba.get_num_threads()`` at the
        call): the passes give each a block of consecutive chunks (``block_rows``).
        The results do not depend on it.
    lr, l2 : scalars of the parameters' dtype
        Learning rate; L2 penalty (scikit-learn's alpha: 0.5 * l2 * sum(W**2) divided by
        the batch's weight, its number of rows without sample weights, is added to
        each batch's loss).
    optimizer : int; hyper : float64 ndarray of shape (3,); step : int
        Optimizer code and constants; mini-batches done before this call.  The
        task worker is compiled for the code (``task_worker``: its update rule
        only); the driver reads it once, after the last batch.
    acts, deltas : ndarray of shape (batch_size * sum(widths),), deltas longer with copies
        Batch buffers (see ``layer_rows``, ``batch_buffers``).
    derivs : ndarray of shape (batch_size * sum(widths),) or (0,)
        Batch buffer of saved derivatives; empty when no layer saves one
        (``activations.saves_derivative``).
    targets : ndarray of shape (batch_size, n_outputs); scales : ndarray of shape (batch_size,)
    chunk_sums : float64 ndarray of shape (at least ceil(batch_size / chunk), 2)
        Each chunk's part of the batch's mean loss and accuracy.
    task_squares : float64 ndarray of shape (n_tasks,)
    dropout : None or (thresholds, scales, seed)
        None trains without dropout and compiles none of its code;
        else per block of the batch buffers 0..n_layers - 1 (the inputs of each layer)
        a uint64 keep threshold (``NO_DROPOUT``: not dropped) and the inverted
        scale 1 / (1 - rate) in the parameters' dtype, and the run's uint64 seed
        (``fastnn.kernels.dropout``; derivs must then be allocated).
    chunk_worker, task_worker, copy_worker : workers.Worker
        ``forward_backward_chunks``, ``update_task`` and ``refresh_copies`` compiled
        for these arguments (``chunk_worker``, ``task_worker``, ``copy_worker``).
    clocks : None or int64 ndarray of shape (3, threads + 1)
        None compiles no clock; else the cycles of the parallel regions, of each
        thread's part of them and of the call are added to it (``kernels.clocks``).

    Returns
    -------
    int: where in order the next batch starts (n_epoch_rows when the epoch is done).
    """
    call_start = clock_start(clocks)
    n = order.shape[0]
    micro = targets.shape[0]  # the rows the batch buffers hold
    dtype = params.dtype.type
    one = dtype(1.0)
    refresh_all_copies(params, offsets, sizes, X_csr, params_t, panels, copy_worker)
    run = (params, params_t, panels, grads, slots, sizes, widths, offsets, codes, slope, tasks, X,
           Y, weights, chunk, lr, l2, hyper, acts, deltas, derivs, targets, scales, chunk_sums,
           chunk_worker, task_worker, copy_worker)
    batch_start = first_row
    while batch_start < n and stop[0] == 0:
        n_rows = min(batch_size, n - batch_start)
        rows = order[batch_start : batch_start + n_rows]
        step += 1
        batch_weight = dtype(0.0)
        for r in range(n_rows):  # in order: the sum does not depend on threads
            batch_weight += weights[rows[r]]
        inv_batch_weight = one / batch_weight
        for micro_start in range(0, n_rows, micro):
            micro_rows, first, last = micro_batch(rows, micro_start, micro)
            n_micro = micro_rows.shape[0]
            batch = (micro_rows, micro_start, first, last, step, inv_batch_weight)
            # One prange for both passes (Numba builds three libraries per prange), whose
            # body calls the workers by address (kernels.workers): their code is compiled
            # once, not again in each of those libraries (docs/performance.md).  One
            # thread runs the same items in a plain loop (in_parallel).
            for phase in range(2):
                n_items = region_items(phase, n_micro, tasks.shape[0], chunk, threads)
                region_start = clock_start(clocks)
                if in_parallel(threads):
                    for i in prange(n_items):
                        epoch_item(phase, i, n_items, batch, run, task_squares, X_csr,
                                   dropout, clocks)
                else:
                    for i in range(n_items):
                        epoch_item(phase, i, n_items, batch, run, task_squares, X_csr,
                                   dropout, clocks)
                clock_add(clocks, phase, 0, region_start)
        batch_loss, batch_right = batch_sums(chunk_sums, chunk_count(n_rows, chunk),
                                             task_squares, l2, inv_batch_weight)
        totals[0] += batch_loss * batch_weight
        totals[1] += batch_weight
        totals[2] += batch_right * batch_weight
        batch_start += n_rows
    if sgd_in_product(optimizer, slots.shape[0], l2):  # update_task's choice, for the epoch
        unpack_all_weights(params, offsets, sizes, X_csr, panels)
    clock_add(clocks, EPOCH, 0, call_start)
    return batch_start


def predict_scratch(sizes, n_features, dtype):
    """The work buffers of a ``predict_rows`` call: (values of dtype, int64 row indices).

    Allocated by the caller, so that the kernel allocates nothing (``np.empty`` in
    compiled code is more functions for Numba to compile in every run).
    """
    chunk = config.PREDICT_CHUNK_ROWS
    return (np.empty(chunk * (n_features + 2 * max(sizes[1:])) + n_features, dtype=dtype),
            np.empty(chunk, dtype=np.int64))


def predict_panels(params, sizes, offsets, n_rows, sparse_input):
    """The weights for a prediction of n_rows rows (``predict_rows``): None for a
    network with no ``wide_layer`` (every call reads W in place, and ``predict_rows``
    compiles no code for panels), else in panel layout (``weight_panels``), or an
    empty array for fewer than ``config.PREDICT_PANEL_ROWS`` rows, which read W in place.

    With fewer rows the copy costs about what the products gain from it (784-512-512-10
    with 256 rows: 0.97-1.01x); the gain is largest on CPUs whose rows of W a power of
    two of bytes apart share L1 sets (docs/engine.md).  Only the wide layers are copied,
    the ones ``predict_rows`` reads there (``reads_panels``); with sparse_input the
    first layer reads its weights in place (``sparse.sparse_rows_forward``).
    """
    wide = wide_layers(sizes, params.dtype, sparse_input)
    if not wide:
        return None
    if n_rows < config.PREDICT_PANEL_ROWS:
        return np.empty(0, dtype=params.dtype)
    panels = np.empty(panels_size(sizes, params.dtype), dtype=params.dtype)
    for layer in wide:
        pack_weights(params, offsets, sizes, layer, np.int64(0), sizes[layer], panels)
    return panels


@njit(**config.JIT_OPTIONS)
def predict_rows(params, sizes, offsets, codes, unfused, X, X_csr, out, row_start, row_stop,
                 scratch, rows, panels):
    """out[row_start:row_stop] = network output for those rows of X, serially.
    Returns whether every value of X in those rows is finite.

    X (n_samples, n_features), out (n_samples, n_outputs) written in place; X_csr as
    for ``train_epoch`` (None, or a sparse X's CSR arrays, X then without columns);
    scratch and rows the work buffers of ``predict_scratch``; panels those of
    ``predict_panels``: None or empty to read every W in place, else the weights in
    panel layout.
    The rows go through the layers config.PREDICT_CHUNK_ROWS at a time: each chunk
    is copied into a block of scratch first, and every layer writes the next of two
    more.  So ``dense_forward`` only ever sees writable C-ordered arrays, the
    specialisation training compiles already.  The copy also tests the values
    (``copy_row_testing``), so that the caller need not read X once more for NaN
    and infinity.  The kernel releases the GIL: the caller runs disjoint row ranges
    on several Python threads (one compiled entry point less to build than a
    prange driver).
    """
    chunk = config.PREDICT_CHUNK_ROWS
    n_features = X.shape[1]
    n_inputs = chunk * n_features
    width = (scratch.shape[0] - n_inputs - n_features) // (2 * chunk)  # the widest layer
    inputs = scratch[:n_inputs].reshape((chunk, n_features))
    ping = scratch[n_inputs : n_inputs + chunk * width]
    pong = scratch[n_inputs + chunk * width : n_inputs + 2 * chunk * width]
    tests = scratch[n_inputs + 2 * chunk * width :]
    for j in range(n_features):
        tests[j] = 0
    for r0 in range(row_start, row_stop, chunk):
        n_rows = min(chunk, row_stop - r0)
        for r in range(n_rows):
            copy_row_testing(X, r0 + r, inputs, r, tests)
            rows[r] = r0 + r
        a_prev = inputs[:n_rows]
        first_dense = 0
        if X_csr is not None:  # see forward_backward_chunks
            W, b = layer_weights(params, offsets, sizes, np.int64(0))
            a = ping[: n_rows * sizes[1]].reshape((n_rows, sizes[1]))
            sparse_rows_forward(X_csr[0], X_csr[1], X_csr[2], rows[:n_rows], W, b, codes[0], a)
            a_prev = a
            ping, pong = pong, ping
            first_dense = 1
        for layer in range(first_dense, sizes.shape[0] - 1):
            b = layer_weights(params, offsets, sizes, layer)[1]
            W = forward_weights(params, offsets, sizes, layer, panels)
            a = ping[: n_rows * sizes[layer + 1]].reshape((n_rows, sizes[layer + 1]))
            if unfused is None:  # pruned by Numba when unfused's type is None
                dense_forward(a_prev, W, b, codes[layer], a)
            else:
                forward_layer(a_prev, W, b, codes[layer], unfused, a)
            a_prev = a
            ping, pong = pong, ping
        for r in range(n_rows):
            copy_row(a_prev, r, out, r0 + r)
    for j in range(n_features):
        if tests[j] != 0:
            return False
    return True
