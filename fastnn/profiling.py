"""Where an epoch's time goes: kernel timings, FLOP counts and a short peak probe.

The compiled engine runs a whole epoch in one call (``kernels.epoch.train_epoch``),
so the training run itself cannot say how long its forward pass took.  This
module estimates the split from the outside:

* **Kernel timings.**  Each serial kernel the epoch calls (``dense_forward``,
  ``output_delta``, ``count_right``, ``dense_backward``, ``param_grad``, ``add_l2``,
  ``optimizer_step``, ``refresh_copies``) is called from Python on the model's
  real shapes: forward and backward on a thread's block of the run's chunks
  (``chunk_rows``, ``block_rows``: the largest of the first micro-batch's), the
  gradient on one micro-batch's rows (scaled to the mini-batch), the update on each
  task's parameter range (``make_tasks``).  As in the epoch, plain SGD without L2
  steps the weight rows inside the gradient's product (``param_grad``'s w and lr),
  so its gradient phase includes that step and the update phase holds the bias
  row's step and the copies.
  Each time is the median over a few batches of calls, minus the median time of the
  same call on empty inputs (Numba's dispatch from Python, which the compiled epoch
  does not pay).
* **Parallel schedule.**  Within a micro-batch (``config.MICRO_BATCH_ROWS`` rows
  of a mini-batch at a time) the epoch runs two parallel regions: the threads'
  blocks of chunks (``block_rows``, one per thread), then the update tasks, of
  which Numba's static schedule gives each of T threads n // T consecutive
  iterations, the first n % T threads one more (checked against
  ``numba.get_thread_id`` in tests/test_profiling.py); a region lasts as long as
  its busiest thread.  ``epoch_breakdown`` adds up, region by region, the busiest
  thread's kernel time, and splits it between phases in the proportions of that
  thread's work.
* What this leaves out (starting and joining the parallel regions, threads
  waiting for each other or for the CPU, the gathering of the batch's rows, the
  loss sums, cache effects of the real sequence of calls) is the difference to
  the measured epoch time, reported as the remainder.

FLOPs are counted as ``scripts/roofline.py`` does: 2 per multiply-add of a matrix
product (forward in every layer, backward in layers after the first, weight
gradient), 1 per element of the bias gradient, 2 per parameter per update (the
SGD step; the other rules do a few more, not counted); activations are not
counted.  The peak is the best GFLOP/s of NumPy's BLAS on a 1024 x 1024 product
with the same dtype and thread count, the practical ceiling of a dense layer
(``scripts/machine_peak.py`` measures the same, and the FMA units' raw limit).
"""

import copy
import statistics
import time

import numpy as np

from . import config

#: Side of the square product that measures the BLAS ceiling.
PEAK_N = 1024


def static_schedule(n_items, n_threads):
    """Numba's static schedule of a prange over n_items: (start, stop) of the
    consecutive iterations of each thread that gets any, the first
    n_items % n_threads threads one more than the others."""
    size, extra = divmod(n_items, n_threads)
    bounds, start = [], 0
    for thread in range(min(n_threads, n_items)):
        stop = start + size + (thread < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def batch_sizes(n_rows, batch_size):
    """Rows of each mini-batch of an epoch."""
    batch_size = n_rows if not batch_size else min(batch_size, n_rows)
    full, last = divmod(n_rows, batch_size)
    return [batch_size] * full + ([last] if last else [])


def epoch_flops(sizes, n_rows, batch_size):
    """FLOPs of one epoch, by phase: {"forward", "backward", "gradient", "update", "total"}."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    products = [2 * fan_in * fan_out for fan_in, fan_out in pairs]
    n_params = sum((fan_in + 1) * fan_out for fan_in, fan_out in pairs)
    flops = {
        "forward": n_rows * sum(products),
        "backward": n_rows * sum(products[1:]),
        "gradient": n_rows * sum(p + fan_out for p, (_, fan_out) in zip(products, pairs)),
        "update": 2 * n_params * len(batch_sizes(n_rows, batch_size)),
    }
    flops["total"] = sum(flops.values())
    return flops


def peak_gflops(dtype, threads, n=PEAK_N, budget_s=0.2):
    """Best GFLOP/s of NumPy's BLAS on an n x n @ n x n product with `threads` threads.

    At least 3 timed products, more while the time budget (about budget_s) lasts.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)
        start, count = time.perf_counter(), 0
        while count < 3 or (time.perf_counter() - start < budget_s and count < 50):
            t = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t)
            count += 1
    return 2 * n**3 / best / 1e9


def median_seconds(fn, args, min_batch_s=2e-4, batches=5):
    """Median seconds per call of fn(*args), timed in batches of about min_batch_s."""
    fn(*args)
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn(*args)
        if time.perf_counter() - start >= min_batch_s or number >= 2**16:
            break
        number *= 2
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(number):
            fn(*args)
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def _kernel_seconds(fn, args, empty_args, timing=()):
    """Seconds of fn(*args) without Numba's dispatch cost (that of fn(*empty_args));
    timing: ``median_seconds``' (min_batch_s, batches), its defaults if empty."""
    return max(0.0, median_seconds(fn, args, *timing) - median_seconds(fn, empty_args, *timing))


def kernel_times(arch, params, optimizer, l2, X, Y, batch_size, lr, threads=1, timing=()):
    """Serial seconds of each kernel call of an epoch, on the model's shapes.

    Returns {"chunk_rows": the epoch's rows per chunk (``chunk_rows``), "block_rows":
    the rows of the largest block of chunks one of threads takes in the first
    micro-batch (``block_rows``), "forward": s for that block's rows through all
    layers, "backward": the same for the output delta and the backward passes,
    "tasks": [(gradient s for a full batch, min(batch_size,
    n_rows) rows, update s) per task of ``make_tasks``]}; the gradient is timed on one
    micro-batch's rows (``config.MICRO_BATCH_ROWS`` at most) and scaled to the batch,
    as the epoch sums a larger batch micro-batch by micro-batch.  Per layer, for
    ``scripts/roofline.py``: "forward_layers" and "backward_layers" (0.0 for the first
    layer; the output delta not included) split "forward" and "backward", and
    "task_layers" gives each task's layer.  timing: ``median_seconds``' (min_batch_s,
    batches) for every kernel.  Works on copies: the model's parameters and optimizer
    state are not touched.  The kernels run with subnormals flushed to zero, as the
    epoch's workers run them (``workers.subnormals_flushed``).
    """
    from .kernels.workers import subnormals_flushed

    with subnormals_flushed():
        return _kernel_times(arch, params, optimizer, l2, X, Y, batch_size, lr, threads, timing)


def _kernel_times(arch, params, optimizer, l2, X, Y, batch_size, lr, threads, timing):
    """``kernel_times``, in the calling thread's floating-point mode."""
    from .kernels import (add_l2, count_right, dense_backward, dense_forward, optimizer_step,
                          output_delta, param_grad)
    from .kernels.epoch import (chunk_rows, deltas_in_panels, make_tasks, panel_rows,
                                propagates_through_w, refresh_copies, sgd_in_product,
                                task_refreshes_copies, weight_copies, wide_layer)
    from .kernels.dense import through_w_scratch_size
    from .kernels.gemm import panel_width, to_panels
    from .network import aligned_zeros, layer_views

    dtype = np.dtype(arch.dtype)
    cast = dtype.type
    sizes = np.array(arch.sizes, dtype=np.int64)
    offsets, codes = arch.offsets, [int(c) for c in arch.activation_codes]
    n_layers = arch.n_layers
    params = params.copy()
    views = layer_views(arch, params)
    rows = min(batch_size, X.shape[0])
    micro = min(rows, config.MICRO_BATCH_ROWS)
    run_chunk = chunk_rows(arch.sizes, batch_size, dtype)
    pass_rows = largest_block(micro, run_chunk, threads)  # the rows the passes take at once
    through_w = propagates_through_w(arch.sizes, batch_size, dtype)

    # Activations and deltas of the first batch's rows, as the epoch holds them.
    acts = [np.ascontiguousarray(X[:rows], dtype=dtype)]
    for (W, b), code in zip(views, codes):
        out = np.empty((rows, W.shape[1]), dtype=dtype)
        dense_forward(acts[-1], W, b, code, out)
        acts.append(out)
    targets = np.ascontiguousarray(Y[:rows], dtype=dtype)
    scale = np.full(rows, 1.0 / rows, dtype=dtype)
    deltas = [None] * (n_layers + 1)
    deltas[n_layers] = np.empty_like(acts[-1])
    output_delta(acts[-1], targets, codes[-1], scale, deltas[n_layers])
    transposed = [to_panels(np.ascontiguousarray(W.T)) for W, _ in views]
    for layer in range(n_layers - 1, 0, -1):
        deltas[layer] = np.empty_like(acts[layer])
        dense_backward(deltas[layer + 1], transposed[layer], acts[layer], codes[layer - 1],
                       deltas[layer])

    # Each W as the epoch's passes read it (epoch.forward_weights): a wide layer's
    # panels, else W in place; the delta propagation through W reads the same.
    read_ws = [to_panels(W) if wide_layer(arch.sizes, layer, panel_width(dtype), dtype.itemsize)
               else W[None] for layer, (W, _) in enumerate(views)]
    forward_layers, backward_layers = [], [0.0] * n_layers
    for layer, ((W, b), W_read) in enumerate(zip(views, read_ws)):
        a_prev, out = acts[layer][:pass_rows], np.empty((pass_rows, W.shape[1]), dtype=dtype)
        forward_layers.append(_kernel_seconds(
            dense_forward, (a_prev, W_read, b, codes[layer], out),
            (a_prev[:0], W_read, b, codes[layer], out[:0]), timing))
    out = np.empty((pass_rows, arch.sizes[-1]), dtype=dtype)
    args = (acts[-1][:pass_rows], targets[:pass_rows], codes[-1], scale[:pass_rows], out)
    empty = tuple(a[:0] if isinstance(a, np.ndarray) else a for a in args)
    backward = _kernel_seconds(output_delta, args, empty, timing)
    backward += _kernel_seconds(count_right, args[:4], empty[:4], timing)
    for layer in range(n_layers - 1, 0, -1):
        delta, a_prev = deltas[layer + 1][:pass_rows], acts[layer][:pass_rows]
        out = np.empty((pass_rows, arch.sizes[layer]), dtype=dtype)
        WT = transposed[layer]  # as the epoch's delta propagation reads W (delta_product)
        if through_w:  # epoch.weights_with_scratch
            scratch = through_w_scratch_size(arch.sizes[layer], arch.sizes[layer + 1], pass_rows)
            WT = (read_ws[layer], np.empty(scratch, dtype=dtype))
        backward_layers[layer] = _kernel_seconds(
            dense_backward, (delta, WT, a_prev, codes[layer - 1], out),
            (delta[:0], WT, a_prev[:0], codes[layer - 1], out[:0]), timing)

    opt = copy.deepcopy(optimizer)
    opt.prepare(arch.n_params, arch.dtype)
    slots, hyper, code = opt.slots, opt.hyperparameters(), opt.code
    in_product = sgd_in_product(code, slots.shape[0], l2)  # as update_task does
    grads = aligned_zeros(params.size, params.dtype)
    params_t, panels = weight_copies(arch.sizes, dtype, through_w=through_w)
    lr, l2_scaled, step = cast(lr), cast(l2 / rows), opt.iterations + 1
    measured = {}
    tasks, task_layers = [], []
    for layer, row_start, row_stop in make_tasks(arch.sizes):
        layer, row_start, row_stop = int(layer), int(row_start), int(row_stop)
        fan_in, fan_out = arch.sizes[layer], arch.sizes[layer + 1]
        key = (layer, row_stop - row_start, row_stop > fan_in)
        if key not in measured:  # tasks of one layer with the same rows cost the same
            start = int(offsets[layer]) + row_start * fan_out
            stop = int(offsets[layer]) + row_stop * fan_out
            block = grads[start:stop].reshape(row_stop - row_start, fan_out)
            # One micro-batch's rows, as the epoch sums them while they are in cache, and
            # the deltas in panels where the epoch's product reads them from there
            # (epoch.delta_operand); else in place, as the epoch reads them.
            a_prev, delta = acts[layer][:micro], deltas[layer + 1][:micro]
            delta_b = (to_panels(delta) if deltas_in_panels(fan_out, dtype.itemsize,
                                                            panels is not None) else None)
            step_start = start
            if in_product:  # the step reads and stores a wide layer's rows in the panels
                w = params[start:stop].reshape(block.shape)
                w_panels = panel_rows(params, panels, sizes, layer, row_start, row_stop)
                gradient = _kernel_seconds(
                    param_grad, (a_prev, delta, row_start, row_stop, block, False, delta_b, w,
                                 lr, w_panels),
                    (a_prev, delta, 0, 0, block[:0], False, delta_b, w[:0], lr,
                     w_panels[:, :0]), timing)
                step_start = int(offsets[layer]) + max(row_start, fan_in) * fan_out
            else:
                gradient = _kernel_seconds(
                    param_grad, (a_prev, delta, row_start, row_stop, block, False, delta_b),
                    (a_prev, delta, 0, 0, block[:0], False, delta_b), timing)
            update = _kernel_seconds(
                optimizer_step, (params, grads, slots, step_start, stop, code, hyper, lr, step),
                (params, grads, slots, stop, stop, code, hyper, lr, step), timing)
            if l2:
                weight_stop = int(offsets[layer]) + min(row_stop, fan_in) * fan_out
                update += _kernel_seconds(add_l2, (grads, params, start, weight_stop, l2_scaled),
                                          (grads, params, start, start, l2_scaled), timing)
            if task_refreshes_copies(in_product, layer, params_t, None):
                update += _kernel_seconds(
                    refresh_copies, (params, offsets, sizes, layer, row_start, row_stop,
                                     params_t, panels, in_product),
                    (params, offsets, sizes, layer, row_start, row_start, params_t, panels,
                     in_product), timing)
            measured[key] = (gradient * rows / micro, update)
        tasks.append(measured[key])
        task_layers.append(layer)
    return {"chunk_rows": run_chunk, "block_rows": pass_rows, "forward": sum(forward_layers),
            "backward": backward + sum(backward_layers), "tasks": tasks,
            "forward_layers": forward_layers, "backward_layers": backward_layers,
            "task_layers": task_layers}


def largest_block(n_rows, chunk, threads):
    """Rows of the largest block of chunks that one of threads takes through the passes
    of a micro-batch of n_rows rows (``epoch.region_items``, ``epoch.block_rows``)."""
    from .kernels.epoch import block_rows, region_items

    n_blocks = region_items(0, n_rows, 0, chunk, threads)
    return max(r1 - r0 for r0, r1 in (block_rows(b, n_blocks, n_rows, chunk)
                                      for b in range(n_blocks)))


def epoch_breakdown(times, n_rows, batch_size, threads):
    """Estimated wall seconds per epoch of each phase, from ``kernel_times``' serial times.

    Per micro-batch (``config.MICRO_BATCH_ROWS`` rows of a mini-batch at a time): the
    chunk region lasts as long as its largest block of chunks (``block_rows``; forward
    + backward at the per-row times of kernel_times' block); the update region as long
    as its busiest thread's tasks (gradient scaled to the micro-batch's rows, plus the
    update after the last micro-batch).  Returns {"forward", "backward", "gradient",
    "update"}.
    """
    chunk, block = times["chunk_rows"], times["block_rows"]
    per_row_f, per_row_b = times["forward"] / block, times["backward"] / block
    phases = dict.fromkeys(("forward", "backward", "gradient", "update"), 0.0)
    full_batch = batch_sizes(n_rows, batch_size)[0]
    for rows in batch_sizes(n_rows, batch_size):
        for micro_start in range(0, rows, config.MICRO_BATCH_ROWS):
            micro_rows = min(config.MICRO_BATCH_ROWS, rows - micro_start)
            last = micro_start + micro_rows == rows
            busy_rows = largest_block(micro_rows, chunk, threads)
            phases["forward"] += busy_rows * per_row_f
            phases["backward"] += busy_rows * per_row_b
            tasks = [(g * micro_rows / full_batch, u if last else 0.0) for g, u in times["tasks"]]
            busiest = max(static_schedule(len(tasks), threads),
                          key=lambda r: sum(g + u for g, u in tasks[r[0]:r[1]]))
            phases["gradient"] += sum(g for g, _ in tasks[busiest[0]:busiest[1]])
            phases["update"] += sum(u for _, u in tasks[busiest[0]:busiest[1]])
    return phases


#: ``region_clocks`` measures at least this many epochs, for at least this many seconds.
REGION_EPOCHS, REGION_SECONDS = 5, 0.5


def region_clocks(arch, params, optimizer, l2, X, Y, batch_size, lr, threads=None,
                  epochs=REGION_EPOCHS, min_seconds=REGION_SECONDS):
    """Seconds of the parallel regions of an epoch, measured inside compiled epochs.

    Runs one epoch (it may compile the clocked ``train_epoch``), then at least epochs
    more and for at least min_seconds (the first epochs on fresh buffers run slower),
    on threads threads (None: Numba's current number), on copies of the parameters and
    optimizer state, without dropout and sample weights, with the clocks of
    ``kernels.clocks``.  Returns None where the clocks are not available, else
    {"epochs": the number measured, and of the epoch whose call took the median time:
    "epoch": s of the call, "passes": s, "tasks": s (each region's wall time from its
    start to its join, summed over the batches), "passes_threads": [s of each
    thread's iterations], "tasks_threads": [...]}.  Ticks become seconds at the rate
    the counter kept against ``time.perf_counter`` over the measured epochs.
    """
    import numba

    from .kernels.clocks import AVAILABLE
    from .trainer import thread_limit

    if not AVAILABLE:
        return None
    with thread_limit(threads, "numba"):
        return _clocked_epochs(arch, params, optimizer, l2, X, Y, batch_size, lr, epochs,
                               min_seconds, numba.get_num_threads())


def median_epoch(epoch_clocks):
    """Of several epochs' clocks arrays (``kernels.clocks``), the one whose call took the
    median time (the upper median of an even number)."""
    from .kernels.clocks import EPOCH

    ordered = sorted(epoch_clocks, key=lambda clocks: clocks[EPOCH, 0])
    return ordered[len(ordered) // 2]


def _clocked_epochs(arch, params, optimizer, l2, X, Y, batch_size, lr, epochs, min_seconds,
                    threads):
    """``region_clocks``' measurement, on Numba's current threads."""
    from .kernels.clocks import EPOCH, PASSES, TASKS, clock_buffer, read_counter
    from .trainer import epoch_function, epoch_totals

    dtype = np.dtype(arch.dtype)
    opt = copy.deepcopy(optimizer)
    opt.prepare(arch.n_params, arch.dtype)
    X, Y = np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)
    clocks = clock_buffer(threads)
    run_epoch = epoch_function("numba")(arch, params.copy(), X, Y, np.ones(X.shape[0], dtype),
                                        batch_size, opt, dtype.type(l2), clocks=clocks)
    order = np.random.default_rng(0).permutation(X.shape[0]).astype(np.int64)
    stop = np.zeros(1, dtype=np.int64)
    batches = len(batch_sizes(X.shape[0], batch_size))
    run_epoch(order, 0, stop, epoch_totals(), lr, 0)
    measured = []  # the clocks of each epoch
    start_s, start_ticks = time.perf_counter(), read_counter()
    while len(measured) < epochs or time.perf_counter() - start_s < min_seconds:
        clocks[:] = 0
        run_epoch(order, 0, stop, epoch_totals(), lr, (len(measured) + 1) * batches)
        measured.append(clocks.copy())
    tick_s = (time.perf_counter() - start_s) / (read_counter() - start_ticks)
    per_epoch = median_epoch(measured) * tick_s
    return {"epochs": len(measured), "epoch": per_epoch[EPOCH, 0],
            "passes": per_epoch[PASSES, 0], "tasks": per_epoch[TASKS, 0],
            "passes_threads": per_epoch[PASSES, 1:].tolist(),
            "tasks_threads": per_epoch[TASKS, 1:].tolist()}


def shuffle_seconds(rng, n_rows, repeats=5):
    """Median seconds of one epoch's row order draw, on a copy of rng (left untouched)."""
    from .trainer import epoch_order

    rng = copy.deepcopy(rng)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch_order(rng, n_rows, 1, True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def evaluation_seconds(arch, params, X, Y, metrics=(), with_loss=False, threads=None,
                       repeats=3):
    """Median seconds of what the trainer does to score (X, Y) after an epoch.

    The compiled prediction, then ``metrics.scores``: each metric (accuracy in NumPy,
    r2 by scikit-learn's scorer) and, with with_loss, the mean loss.  metrics=() and
    with_loss=False time the prediction alone.
    """
    from .metrics import scores
    from .trainer import predict_output

    if X.shape[0] == 0:
        return 0.0
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = predict_output(arch, params, X, threads=threads)
        if metrics or with_loss:
            scores(arch.head, out, Y, metrics, with_loss=with_loss)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def report(model, X_train, Y_train, settings, epoch_seconds, compile_s, compile_source,
           final_inputs, threads=None):
    """The command line's --profile report of a trained Sequential, a dict (printed by
    ``report_lines``, stored in --metrics-json).

    X_train, Y_train are the training rows given to fit (validation rows included);
    settings the fit settings (batch_size, validation_split, shuffle); epoch_seconds
    the measured epochs; compile_s and compile_source the warm-up's; final_inputs
    the inputs predicted once at the end; threads the thread count (None: Numba's).
    """
    import numba

    from .metrics import RUNNING_METRICS, metric_for

    arg_threads = threads
    threads = threads or numba.get_num_threads()
    n_rows = X_train.shape[0]
    validation = settings["validation_split"]
    n_val = int(round(validation * n_rows)) if validation else 0
    n_fit = n_rows - n_val
    batch = settings["batch_size"] or n_fit
    X_fit = np.asarray(X_train[:n_fit], dtype=model.dtype)
    Y_fit = np.asarray(Y_train[:n_fit], dtype=model.dtype)
    lr = model.history.history["lr"][-1]
    # First: run after the report's other measurements (the BLAS peak's threads, still
    # spinning after its product, among them), the clocked epochs took 5x as long.
    regions = region_clocks(model.arch, model.params, model.optimizer, model.l2, X_fit, Y_fit,
                            batch, lr, arg_threads)
    times = kernel_times(model.arch, model.params, model.optimizer, model.l2, X_fit, Y_fit,
                         batch, lr, threads)
    phases = epoch_breakdown(times, n_fit, batch, threads)
    phases["shuffle"] = (shuffle_seconds(model.rng, n_fit)
                         if settings["shuffle"] and batch < n_fit else 0.0)
    epoch = statistics.median(epoch_seconds)
    # After each epoch the trainer predicts the validation rows (val_loss), and the
    # training rows for a metric computed every epoch that the epoch kernels do not
    # count as they go, r2 (the command line asks for it only when something uses it).
    metrics = [m for m in model.fastnn_metrics() or [metric_for(model.arch.head)]
               if m not in RUNNING_METRICS]
    train_scoring = (evaluation_seconds(model.arch, model.params, X_fit, Y_fit, metrics,
                                        threads=arg_threads) if metrics else 0.0)
    val_scoring = 0.0
    if n_val:
        val_scoring = evaluation_seconds(
            model.arch, model.params, X_train[n_fit:], Y_train[n_fit:],
            model.fastnn_metrics(), with_loss=True, threads=arg_threads)
    evaluation = (train_scoring if model.metrics else 0.0) + val_scoring
    final = sum(evaluation_seconds(model.arch, model.params, X, None, threads=arg_threads)
                for X in final_inputs)
    flops = epoch_flops(model.arch.sizes, n_fit, batch)
    peak = peak_gflops(model.dtype, threads)
    gflops = flops["total"] / epoch / 1e9
    return {
        "threads": threads, "dtype": model.dtype, "rows": n_fit, "validation_rows": n_val,
        "batch_size": min(batch, n_fit),
        "batches": len(batch_sizes(n_fit, batch)), "chunk_rows": times["chunk_rows"],
        "compile_s": compile_s, "compile_source": compile_source,
        "epochs_measured": len(epoch_seconds), "epoch_s": epoch,
        "first_epoch_s": epoch_seconds[0],
        "phases_s": phases, "remainder_s": epoch - sum(phases.values()), "regions_s": regions,
        "evaluation_per_epoch_s": evaluation, "train_metrics": bool(model.metrics),
        "train_scoring_s": train_scoring, "final_evaluation_s": final,
        "flops_per_epoch": flops, "gflops": gflops, "peak_gflops": peak,
        "peak_method": f"NumPy BLAS {'s' if model.dtype == 'float32' else 'd'}gemm "
                       f"{PEAK_N}^3, {threads} thread{'s' if threads != 1 else ''}",
        "percent_of_peak": 100.0 * gflops / peak,
    }


def report_lines(p):
    """The lines the command line prints for a ``report``."""
    ms = 1e3
    epoch = p["epoch_s"]
    lines = [
        f"profile: {p['threads']} thread{'s' if p['threads'] != 1 else ''}, {p['dtype']}, "
        f"{p['rows']} rows in {p['batches']} batches of {p['batch_size']} "
        f"(chunks of {p['chunk_rows']} rows)",
        f"  compile     {p['compile_s']:9.3f} s   first call of the epoch and prediction "
        f"kernels, timed before training ({p['compile_source']})",
        f"  epoch       {epoch * ms:9.3f} ms  measured: median of {p['epochs_measured']} "
        f"epochs (first {p['first_epoch_s'] * ms:.3f} ms)",
    ]
    notes = {"forward": "dense_forward, chunks of rows in parallel",
             "backward": "output_delta + count_right + dense_backward",
             "gradient": "param_grad (+ plain SGD's step), tasks in parallel",
             "update": "optimizer_step (+ add_l2) + copies of W refreshed",
             "shuffle": "permutation draw"}
    for name, seconds in p["phases_s"].items():
        lines.append(f"    {name:<9} {seconds * ms:9.3f} ms {100 * seconds / epoch:5.1f} %  "
                     f"{notes[name]}")
    lines.append(f"    {'remainder':<9} {p['remainder_s'] * ms:9.3f} ms "
                 f"{100 * p['remainder_s'] / epoch:5.1f} %  measured minus the above: "
                 f"parallel regions and waits, row gathers, loss sums")
    regions = p["regions_s"]
    if regions is not None:
        call = regions["epoch"]
        lines.append(f"  regions     {call * ms:9.3f} ms  the median of {regions['epochs']} more "
                     f"epochs, clocked inside (cycle counter): each parallel region from start "
                     f"to join, each thread's time in it")
        outside = call - regions["passes"] - regions["tasks"]
        for name, seconds, what in (
                ("passes", regions["passes"], "forward and backward; threads busy "),
                ("tasks", regions["tasks"], "gradient and update; threads busy "),
                ("outside", outside, "between the regions: batch weights, loss sums")):
            busy = " / ".join(f"{t * ms:.3f}" for t in regions.get(f"{name}_threads", ()))
            lines.append(f"    {name:<9} {seconds * ms:9.3f} ms {100 * seconds / call:5.1f} %  "
                         f"{what}{busy + ' ms' if busy else ''}")
    scored = []
    if p["train_metrics"] and p["train_scoring_s"]:
        scored.append(f"metrics on the {p['rows']} training rows")
    if p["validation_rows"]:
        scored.append(f"scores of the {p['validation_rows']} validation rows")
    evaluation = []  # (seconds, what), printed under one "evaluation" label
    if scored:
        evaluation.append((p["evaluation_per_epoch_s"], "per epoch, after it (not in the "
                           f"epoch time): {' and '.join(scored)}"))
    elif p["train_metrics"]:
        evaluation.append((0.0, "per epoch: the training accuracy is counted within it"))
    if not p["train_metrics"]:
        evaluation.append((p["train_scoring_s"], "per epoch if r2 were computed on the "
                           "training rows after every epoch (not in this run)"))
    evaluation.append((p["final_evaluation_s"], "once: final predictions on every split"))
    for i, (seconds, what) in enumerate(evaluation):
        lines.append(f"  {'evaluation' if i == 0 else '':<10}  {seconds * ms:9.3f} ms  {what}")
    lines.append(f"  speed       {p['flops_per_epoch']['total'] / 1e6:.1f} MFLOP per epoch: "
                 f"{p['gflops']:.1f} GFLOP/s = {p['percent_of_peak']:.1f} % of measured "
                 f"peak {p['peak_gflops']:.1f} GFLOP/s ({p['peak_method']})")
    return lines
