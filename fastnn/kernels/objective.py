"""The full-batch loss and gradient, with no update: what L-BFGS (``solver="lbfgs"``) evaluates.

The work is the epoch driver's (``fastnn.kernels.epoch``) on one batch holding every
row, without the optimizer step: forward and backward passes on fixed chunks of rows
(``epoch.chunk_rows``; ``forward_backward_chunks``), then each update task's
gradient rows summed over all rows in order plus the L2 term (``epoch.task_gradient``).
The split never depends on the thread count, so the result is bitwise the same with
1 or N threads.  The NumPy twin is ``fastnn.reference.loss_and_grad``.

``FullBatchObjective`` is the plain-Python wrapper: it allocates the workspaces once
and is the ``fun(x) -> (loss, grad)`` that ``scipy.optimize.minimize(jac=True)`` calls.
"""

import numba
import numpy as np
from numba import njit, prange

from .. import config
from ..network import aligned_zeros
from .activations import unfused_present
from .sparse import driver_inputs
from .epoch import (batch_buffers, batch_sums, block_rows, chunk_count, chunk_rows,
                    chunk_worker, copy_worker, gradient_worker, in_parallel, make_tasks,
                    micro_batch, propagates_through_w, refresh_all_copies, region_items,
                    weight_copies)
from .workers import call_worker


@njit(inline="always", **config.JIT_OPTIONS)
def objective_item(phase, i, n_items, batch, run, task_squares, X_csr):
    """Item i of n_items of a micro-batch's region in ``loss_and_grad``: phase 0, the
    forward and backward passes of block i's chunks; phase 1, the gradient of task i
    (no SGD step).  batch and run hold the micro-batch's and the call's arrays and
    scalars that it reads (``loss_and_grad``'s names; l2 already divided by the total
    weight); task_squares and X_csr are apart (``epoch.epoch_item`` says why)."""
    (params, params_t, panels, grads, sizes, widths, offsets, codes, slope, tasks, X, Y, weights,
     chunk, l2_scaled, acts, deltas, derivs, targets, scales, chunk_sums, chunk_worker,
     task_worker) = run
    micro_rows, micro_start, first, last, inv_total_weight = batch
    if phase == 0:
        r0, r1 = block_rows(i, n_items, micro_rows.shape[0], chunk)
        call_worker(chunk_worker, params, params_t, panels, sizes, widths, offsets, codes,
                    slope, X, X_csr, Y, weights, micro_rows, r0, r1, chunk,
                    inv_total_weight, acts, deltas, derivs, targets, scales, chunk_sums, None,
                    np.int64(0), micro_start)
    else:
        task_squares[i] = call_worker(task_worker, params, panels, grads, sizes, widths,
                                      offsets, X_csr, micro_rows, tasks[i], l2_scaled, acts,
                                      deltas, first, last,
                                      params.dtype.type(0.0))  # no SGD step


@njit(**config.PARALLEL_OPTIONS)
def loss_and_grad(params, params_t, panels, grads, sizes, widths, offsets, codes, slope,
                  tasks, X, X_csr, Y, weights, rows, chunk, threads, l2, acts, deltas, derivs,
                  targets, scales, chunk_sums, task_squares, chunk_worker, task_worker,
                  copy_worker):
    """Mean loss of the rows X[rows] plus the L2 penalty; its gradient written into grads.

    Parameters
    ----------
    params : ndarray of shape (n_params,)
        Flat parameters (``fastnn.network`` layout); only read.
    params_t : ndarray or None; grads : ndarray of shape (n_params,)
        Written: the transposed weights (workspace, ``epoch.weight_copies``; None
        where ``epoch.propagates_through_w``) and the gradient.
    panels : ndarray or None
        Written: the wide layers' weights in panel layout (workspace,
        ``epoch.weight_copies``; None without a wide layer).
    sizes, widths, offsets, codes, tasks : int64 arrays; slope : scalar of params' dtype
        As for ``epoch.train_epoch``.
    X : ndarray of shape (n_samples, n_features); Y : ndarray of shape (n_samples, n_outputs)
    X_csr : None or a sparse X's CSR arrays, as for ``epoch.train_epoch``
    weights : ndarray of shape (n_samples,)
        Sample weights (ones for none).
    rows : int64 ndarray of shape (n_rows,)
        The rows making up the batch (all rows, for L-BFGS).
    chunk : int
        Rows per chunk of the forward and backward passes (``epoch.chunk_rows``).
    threads : int
        The threads of the parallel regions, as for ``epoch.train_epoch``.
    l2 : scalar of the parameters' dtype
        scikit-learn's alpha: 0.5 * l2 * sum(W**2) over the rows' total weight is added.
    acts, deltas, derivs : ndarray of shape (n_rows * sum(widths),) (deltas longer, derivs
    possibly empty, as for ``epoch.train_epoch``); targets (n_rows, n_outputs);
    scales (n_rows,); chunk_sums float64 (at least ceil(n_rows / chunk), 2); task_squares
    float64 (n_tasks,)
        Workspaces.

    Returns
    -------
    float: the loss (float64).  Threads split the chunks, then the tasks; every sum
    runs in a fixed order.
    """
    n_rows = rows.shape[0]
    micro = targets.shape[0]  # the rows the batch buffers hold
    dtype = params.dtype.type
    refresh_all_copies(params, offsets, sizes, X_csr, params_t, panels, copy_worker)
    total_weight = dtype(0.0)
    for r in range(n_rows):  # in order: the sum does not depend on threads
        total_weight += weights[rows[r]]
    inv_total_weight = dtype(1.0) / total_weight
    run = (params, params_t, panels, grads, sizes, widths, offsets, codes, slope, tasks, X, Y,
           weights, chunk, l2 * inv_total_weight, acts, deltas, derivs, targets, scales, chunk_sums,
           chunk_worker, task_worker)
    # Micro-batches, each with one prange for both passes (chunks, then tasks), calling
    # the workers by address, as epoch.train_epoch.
    for micro_start in range(0, n_rows, micro):
        micro_rows, first, last = micro_batch(rows, micro_start, micro)
        n_micro = micro_rows.shape[0]
        batch = (micro_rows, micro_start, first, last, inv_total_weight)
        for phase in range(2):
            n_items = region_items(phase, n_micro, tasks.shape[0], chunk, threads)
            if in_parallel(threads):
                for i in prange(n_items):
                    objective_item(phase, i, n_items, batch, run, task_squares, X_csr)
            else:
                for i in range(n_items):
                    objective_item(phase, i, n_items, batch, run, task_squares, X_csr)
    return batch_sums(chunk_sums, chunk_count(n_rows, chunk), task_squares, l2,
                      inv_total_weight)[0]


class FullBatchObjective:
    """``objective(x) -> (loss, grad)`` of a network on all rows, for scipy.optimize.

    arch : network.Architecture; X (n_samples, n_features), Y (n_samples, n_outputs)
    and weights (n_samples,) in arch.dtype, C-contiguous (as ``trainer.fit`` checks
    them), or X a SciPy sparse matrix (``sparse.driver_inputs``); l2 : float.  x is
    float64 of shape (n_params,) (L-BFGS-B works in float64);
    it is cast into the network's dtype, as scikit-learn's float32 MLP does, and the
    gradient is returned in float64.  ``params`` holds the last x evaluated.
    Workspaces are allocated once here, and the workers compiled (the chunk worker
    in a child process meanwhile, when it can: ``workers.Worker``).
    """

    def __init__(self, arch, X, Y, weights, l2):
        self.arch, self.weights = arch, weights
        dtype = np.dtype(arch.dtype).type
        n = X.shape[0]
        self.l2 = dtype(l2)
        self.sizes = np.array(arch.sizes, dtype=np.int64)
        self.X, self.X_csr, self.widths, self.Y = driver_inputs(arch, X, Y)
        self.offsets, self.codes = arch.offsets, arch.activation_codes
        self.slope = dtype(arch.negative_slope)
        self.tasks = make_tasks(arch.sizes, sparse_input=self.X_csr is not None)
        self.rows = np.arange(n, dtype=np.int64)
        self.params = aligned_zeros(arch.n_params, dtype)
        self.grads = aligned_zeros(arch.n_params, dtype)
        through_w = propagates_through_w(arch.sizes, n, dtype)
        self.chunk_rows = chunk_rows(arch.sizes, n, dtype)
        self.params_t, self.panels = weight_copies(arch.sizes, dtype, self.X_csr is not None,
                                                  through_w)
        (self.acts, self.deltas, self.derivs, self.targets, self.scales, self.chunk_sums,
         self.task_squares) = batch_buffers(self.widths, arch.sizes[-1], n, self.tasks.shape[0],
                                            dtype, arch.saves_derivatives, through_w,
                                            self.panels is not None)
        self.chunk_worker = chunk_worker(
            self.params, self.params_t, self.panels, self.sizes, self.widths, self.offsets,
            self.codes, self.slope, self.X, self.X_csr, self.Y, weights, self.acts, self.deltas,
            self.derivs, self.targets, self.scales, self.chunk_sums, None,
            unfused_present(self.codes), aside=True)
        self.task_worker = gradient_worker(self.params, self.panels, self.grads, self.sizes,
                                           self.widths, self.offsets, self.X_csr, self.tasks,
                                           self.acts, self.deltas)
        self.copy_worker = copy_worker(self.params, self.offsets, self.sizes, self.params_t,
                                       self.panels)
        self.n_calls = 0

    def __call__(self, x):
        self.params[:] = x
        self.n_calls += 1
        loss = loss_and_grad(self.params, self.params_t, self.panels, self.grads, self.sizes,
                             self.widths, self.offsets, self.codes, self.slope, self.tasks,
                             self.X, self.X_csr, self.Y, self.weights, self.rows, self.chunk_rows,
                             numba.get_num_threads(), self.l2, self.acts, self.deltas,
                             self.derivs, self.targets, self.scales, self.chunk_sums,
                             self.task_squares, self.chunk_worker, self.task_worker,
                             self.copy_worker)
        return float(loss), self.grads.astype(np.float64)
