"""Scale-out on Dask: data-parallel training over the partitions of a Dask array.

Needs the ``dask`` extra (``pip install "fastnn[dask]"``: dask[array] and
distributed); nothing else in fastnn imports this module.

How a run goes (``fit``)
------------------------
* **Partitions stay on the workers.**  The row chunks of X (and the matching rows of
  Y and of the sample weights) are the partitions.  Partition ``p`` is read, checked
  and converted to the network's dtype (as ``trainer.fit`` does) on worker
  ``p mod W`` of the workers sorted by address, and kept there; it is never
  gathered to the client.  A Dask array built lazily from ``.npy`` files
  (``from_npy``) is read where it is trained on.
* **Rounds.**  In each round every partition that has rows left in the current
  epoch trains on its own worker, in the compiled engine (``trainer``'s whole-epoch
  kernel), for ``sync_every`` mini-batches (``"epoch"``: to the end of its epoch).
  Each task gets the averaged weights and optimizer state (inside the task), and
  returns its new weights, optimizer state and running loss sums.
* **Averaging.**  The client averages the weights and the optimizer state of the
  partitions that trained in the round, weighted by the rows each trained, summed in
  float64 in partition order (so the result does not depend on which task finished
  first), and the step count becomes the largest one returned.  A round in which
  only one partition trained takes its weights as they are.  The epoch's loss is the
  weighted mean over all its batches on all partitions.
* **Epochs.**  An epoch ends when every partition has trained on all its rows; a
  partition with fewer batches than the others sits out the epoch's last rounds.
  The learning-rate schedule, validation, metrics, early stopping and callbacks run
  on the client once per epoch, as in ``trainer.fit``.

Seeding
-------
Every partition draws its row order of each epoch from its own generator, with
``trainer.epoch_order``.  Partition 0 uses the generator of ``random_state``
(``network.as_random_state``: a seed, a RandomState or Generator, None for NumPy's
global one), exactly as ``trainer.fit`` would; partition ``p >= 1`` uses a
generator of the same kind seeded with ``SeedSequence(entropy=<SHA-256 of the
state of random_state's generator at the start>, spawn_key=(p,))``.  The state of
every partition's generator at the start of the current epoch lives on the client
and travels with each task.  So the weights are a function of the seed, the data
and its partitioning only: not of the number of workers, of the placement, or of
timing.  With one partition the run is **bitwise** ``trainer.fit`` on the same
rows with the same seed (for every ``sync_every``: averaging one partition is the
identity), and the generator passed as random_state is left as ``trainer.fit``
leaves it.

Workers lost
------------
The client keeps the last averaged state (``RunState``: weights, optimizer state,
each partition's generator and position in its epoch, the history, the round
count).  When a round cannot finish because a worker died or its partition was
lost, or a partition's task ran on another worker than the one holding the
partition (the worker holding it died and Dask recomputed it elsewhere),
``WorkerLostError`` is raised, naming the round and epoch and holding ``.state``;
calling ``fit`` again with the same arguments and ``resume=error.state`` (or
``resume=RunState.load(path)`` from ``checkpoint=path``) finishes the run, bitwise
as if nothing had happened.  ``on_worker_loss="continue"`` instead warns and goes on
when Dask recomputed the lost partition (the tasks are pure functions of their
inputs, so the result is the same).

Threads
-------
Each task sets Numba's thread count for its own call (``threads``): by default
the worker's thread count divided by the partitions it holds, at least 1, so the
partitions on a worker do not oversubscribe its cores.  For hyperparameter
search under joblib's Dask backend, give the estimators ``threads=1`` (or
``threads=k`` on workers with k cores per task); ``local_cluster`` also sets each
worker's default Numba pool to its share of the machine's cores.
"""

import contextlib
import copy
import hashlib
import json
import math
import os
import threading
import time
import uuid
import warnings
from concurrent.futures import CancelledError
from dataclasses import dataclass

import numpy as np

try:
    import dask
    import dask.array as da
    import distributed
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("fastnn.distributed needs dask and distributed: "
                      "pip install 'fastnn[dask]'") from error

from . import model_io, trainer
from .network import as_random_state
from .optimizers import Optimizer, make_optimizer
from .schedules import make_schedule

#: What waiting for a round raises when a worker, a partition or the connection was lost
#: (an error raised by the training itself is re-raised as it is).
_LOST = (KilledWorker, CancelledError, CommClosedError, TimeoutError)


class WorkerLostError(RuntimeError):
    """A round of data-parallel training could not finish: a worker or partition was lost.

    Attributes: ``state`` (the ``RunState`` after the last finished round: resume with
    ``fit(..., resume=error.state)``), ``round`` (the round that failed, counting from
    1 over the whole run) and ``epoch`` (the epoch it belonged to).
    """

    def __init__(self, message, state, round, epoch):
        super().__init__(message)
        self.state, self.round, self.epoch = state, round, epoch


@dataclass
class PartitionState:
    """Where a partition is in the current epoch.

    rng is its generator as it was before the epoch's row order was drawn (once the
    partition has finished the epoch: after the draw, ready for the next); next_row
    the position in that order where its next round starts; totals the epoch's running
    sums (``trainer.epoch_totals``).
    """

    rng: object
    next_row: int
    totals: np.ndarray


@dataclass
class RunState:
    """Everything a data-parallel run needs to go on after its last finished round.

    params and optimizer (with slots and iterations) are the averaged weights and
    optimizer state; history the per-epoch record (epochs finished so far);
    partitions one ``PartitionState`` per partition; rounds the rounds done;
    start_epoch the epochs the history held when the run began (``fit``'s epochs
    count from there); rows the rows of each partition, and batch_size and
    sync_every the settings it ran with (a resumed run must use the same).
    """

    params: np.ndarray
    optimizer: Optimizer
    history: trainer.History
    partitions: list
    rounds: int
    start_epoch: int
    rows: tuple
    batch_size: object
    sync_every: object

    def save(self, path, arch):
        """Write the state to path (one ``.npz`` model file, no pickle)."""
        extra = {"kind": "fastnn-distributed-run", "rounds": self.rounds,
                 "start_epoch": self.start_epoch, "rows": list(self.rows),
                 "batch_size": self.batch_size, "sync_every": self.sync_every,
                 "optimizer": {"config": self.optimizer.get_config(),
                               "iterations": int(self.optimizer.iterations)},
                 "history": {"history": self.history.history,
                             "stop_reason": self.history.stop_reason,
                             "best_epoch": self.history.best_epoch},
                 "partitions": []}
        arrays = {"optimizer_slots": self.optimizer.slots}
        for p, part in enumerate(self.partitions):
            doc, rng_arrays = model_io._rng_to_json(part.rng)
            extra["partitions"].append({"rng": doc, "next_row": int(part.next_row),
                                        "totals": part.totals.tolist()})
            arrays.update({f"p{p}_{name}": array for name, array in rng_arrays.items()})
        return model_io.save(path, arch, self.params, extra, arrays)

    @classmethod
    def load(cls, path):
        """(arch, RunState) from a file written by ``save`` (``fit``'s checkpoint)."""
        model = model_io.load(path)
        extra = model.metadata["extra"]
        if extra.get("kind") != "fastnn-distributed-run":
            raise ValueError(f"{os.fspath(path)}: not a fastnn distributed-run checkpoint")
        optimizer = make_optimizer(extra["optimizer"]["config"])
        optimizer.slots = model.arrays["optimizer_slots"]
        optimizer.iterations = int(extra["optimizer"]["iterations"])
        record = extra["history"]
        history = trainer.History({key: list(values) for key, values in record["history"].items()},
                                  optimizer, record["stop_reason"], record["best_epoch"])
        partitions = []
        for p, doc in enumerate(extra["partitions"]):
            arrays = {name[len(f"p{p}_"):]: array for name, array in model.arrays.items()
                      if name.startswith(f"p{p}_")}
            partitions.append(PartitionState(model_io._rng_from_json(doc["rng"], arrays),
                                             int(doc["next_row"]),
                                             trainer.epoch_totals(doc["totals"])))
        state = cls(model.params, optimizer, history, partitions, int(extra["rounds"]),
                    int(extra["start_epoch"]), tuple(extra["rows"]), extra["batch_size"],
                    extra["sync_every"])
        return model.arch, state


# ---------------------------------------------------------------------------
# Clusters and data
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def connect(scheduler, threads_per_worker=1):
    """A ``distributed.Client`` for the duration of a with block.

    scheduler is a scheduler address (``"tcp://host:8786"``) or ``"local:N"``, which
    starts ``local_cluster(N, threads_per_worker)`` on this machine (closed on exit).
    """
    if isinstance(scheduler, str) and scheduler.startswith("local:"):
        try:
            n_workers = int(scheduler[len("local:"):])
        except ValueError:
            n_workers = 0
        if n_workers < 1:
            raise ValueError(f"--scheduler local:N needs a worker count N >= 1, got {scheduler!r}")
        with local_cluster(n_workers, threads_per_worker) as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    with distributed.Client(scheduler) as client:
        yield client


def local_cluster(n_workers, threads_per_worker=1, **kwargs):
    """A ``distributed.LocalCluster`` of n_workers processes, each with its share of the cores.

    Each worker runs threads_per_worker tasks at a time, and its Numba thread pool
    (and BLAS's) is set to ``cpu_count // n_workers // threads_per_worker`` threads
    (at least 1), so that tasks that do not set a thread count do not oversubscribe
    the machine.  Further keyword arguments go to ``LocalCluster``.
    """
    share = max(1, (os.cpu_count() or 1) // n_workers // threads_per_worker)
    env = {"NUMBA_NUM_THREADS": str(share), "OMP_NUM_THREADS": str(share),
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.update(kwargs.pop("env", {}))
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                    processes=True, env=env, **kwargs)


def from_npy(path, rows_per_partition):
    """A Dask array read lazily from an ``.npy`` file, rows_per_partition rows per chunk.

    Only the header is read here; each chunk is read (memory-mapped, then copied) by
    the worker that computes it, so the file must be readable there (same machine,
    or a shared file system).
    """
    path = os.path.abspath(os.fspath(path))
    header = np.load(path, mmap_mode="r")  # maps the file, reads only its header
    shape, dtype = header.shape, header.dtype
    if not shape or (header.ndim > 1 and not header.flags.c_contiguous):
        raise ValueError(f"{path}: needs a C-ordered array with at least one dimension")
    n = shape[0]
    step = max(1, int(rows_per_partition))
    read = dask.delayed(_read_rows, pure=True)
    blocks = [da.from_delayed(read(path, start, min(start + step, n)),
                              shape=(min(start + step, n) - start, *shape[1:]), dtype=dtype)
              for start in range(0, n, step)]
    return da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]


def _read_rows(path, start, stop):
    return np.array(np.load(path, mmap_mode="r")[start:stop])


def _partitioned(X, Y, sample_weight, partitions):
    """(X, Y, weights or None) as Dask arrays with the same row chunks, one column chunk."""
    if not dask.is_dask_collection(X):
        X = np.asarray(X)
        parts = int(partitions or 1)
        if not 1 <= parts <= max(1, X.shape[0]):
            raise ValueError(f"partitions must be between 1 and the number of rows, "
                             f"got {partitions}")
        X = da.from_array(X, chunks=(-(-X.shape[0] // parts), *X.shape[1:]))
    elif partitions is not None:
        X = X.rechunk({0: -(-X.shape[0] // int(partitions))})
    if X.ndim != 2:
        raise ValueError(f"X must have 2 dimensions, got shape {X.shape}")
    if any(math.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first")
    X = X.rechunk({1: -1})
    rows = X.chunks[0]

    def aligned(A, name):
        if A is None:
            return None
        if not dask.is_dask_collection(A):
            A = np.asarray(A)
        if A.shape[0] != X.shape[0]:
            raise ValueError(f"X and {name} need the same number of rows, got {X.shape[0]} "
                             f"and {A.shape[0]}")
        chunks = (rows, *((d,) for d in A.shape[1:]))
        return A.rechunk(chunks) if dask.is_dask_collection(A) else da.from_array(A, chunks=chunks)

    return X, aligned(Y, "Y"), aligned(sample_weight, "sample_weight")


def _prepare_partition(arch, X, Y, weights, encode):
    """A partition as trainer.fit would see it: (X, Y, weights), checked and converted."""
    if encode is not None:
        Y = encode(Y)
    X, Y = trainer._check_data(arch, X, Y)
    return X, Y, trainer._check_weights(weights, X.shape[0], arch.dtype)


def _workers(client):
    """[(address, nthreads)] of the cluster's workers, sorted by address."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if not workers:
        raise RuntimeError("the Dask cluster has no workers")
    return sorted((address, int(info["nthreads"])) for address, info in workers.items())


# ---------------------------------------------------------------------------
# The task run on a worker
# ---------------------------------------------------------------------------


@dataclass
class _Job:
    """What one partition's task needs besides its data and the averaged weights."""

    token: str
    partition: int
    epoch: int
    arch: object
    optimizer: dict
    iterations: int
    lr: float
    l2: float
    batch_size: int
    shuffle: bool
    rng: object
    next_row: int
    totals: np.ndarray  # the epoch's running sums so far (trainer.epoch_totals)
    max_batches: object  # int, or None for the rest of the epoch
    backend: str
    threads: int


#: Row orders drawn on this worker, by (token, partition, epoch): (order, generator after
#: the draw).  Only a cache (the order is a function of the generator shipped with the
#: job), so that rounds of k batches do not redraw the permutation of the whole partition.
_ORDERS = {}
_ORDERS_LOCK = threading.Lock()


def _epoch_order(job, n, batch_size):
    key = (job.token, job.partition, job.epoch)
    with _ORDERS_LOCK:
        cached = _ORDERS.get(key)
    if cached is not None:
        return cached
    rng = copy.deepcopy(job.rng)
    cached = trainer.epoch_order(rng, n, batch_size, job.shuffle), rng
    with _ORDERS_LOCK:
        for old in [k for k in _ORDERS if k[:2] == key[:2]]:
            del _ORDERS[old]
        _ORDERS[key] = cached
    return cached


def _train_round(data, weights, job):
    """Train one partition for one round, from the averaged weights; return what changed."""
    X, Y, sample_weight = data
    X, Y = X.view(), Y.view()  # read-only, as trainer.fit hands them to the kernels
    X.flags.writeable = Y.flags.writeable = False
    params, optimizer = weights[0].copy(), make_optimizer(job.optimizer)
    optimizer.slots, optimizer.iterations = weights[1].copy(), job.iterations
    n = X.shape[0]
    batch_size = n if not job.batch_size else min(int(job.batch_size), n)
    order, rng = _epoch_order(job, n, batch_size)
    stop_row = n if job.max_batches is None else min(n, job.next_row + job.max_batches * batch_size)
    totals = np.array(job.totals, dtype=np.float64)  # added to in the order trainer.fit adds
    make_epoch = trainer._compiled_epoch if job.backend == "numba" else trainer._reference_epoch
    run_epoch = make_epoch(job.arch, params, X, Y, sample_weight, batch_size, optimizer, job.l2)
    with trainer.thread_limit(job.threads, job.backend):
        start = time.perf_counter()
        next_row = run_epoch(order[:stop_row], job.next_row, np.zeros(1, dtype=np.int64), totals,
                             job.lr, optimizer.iterations)
        seconds = time.perf_counter() - start
    try:
        worker = distributed.get_worker().address
    except ValueError:  # not on a worker (a local scheduler)
        worker = None
    return {"params": params, "slots": optimizer.slots, "next_row": int(next_row),
            "iterations": optimizer.iterations + -(-(next_row - job.next_row) // batch_size),
            "rows": int(next_row - job.next_row),
            "batches": -(-(next_row - job.next_row) // batch_size), "totals": totals,
            "rng": copy.deepcopy(rng),
            "worker": worker, "seconds": seconds}


# ---------------------------------------------------------------------------
# The client side
# ---------------------------------------------------------------------------


def fit(arch, params, X, Y, *, epochs, client=None, batch_size=None, lr=None, optimizer="sgd",
        schedule=None, l2=0.0, sample_weight=None, sync_every="epoch", partitions=None,
        validation_data=None, metrics=(), early_stopping=None, on_divergence="raise",
        callbacks=(), history=None, random_state=None, shuffle=True, backend="numba",
        threads=None, resume=None, checkpoint=None, on_worker_loss="raise", encode=None):
    """Data-parallel ``trainer.fit`` over the row partitions of X on a Dask cluster.

    Trains params in place (they end as the last averaged weights) and returns the
    History, whose ``run`` attribute is the final ``RunState`` and ``rounds`` a list
    with one dict per round (rows, wall seconds, slowest task's compute seconds).
    The arguments shared with ``trainer.fit`` mean the same; on the training rows,
    which never leave the workers, only the running accuracy is reported (the epoch
    kernels count it as they go, ``trainer.RUNNING_METRICS``), the other metrics on
    the validation data only; there is no validation_split.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), or ndarray
        Its row chunks are the partitions (see the module docstring).  An ndarray is
        cut into ``partitions`` (default 1) equal row chunks.
    Y : dask array or ndarray of shape (n_samples, n_outputs)
        Rechunked to X's row chunks (lazily, on the workers).
    client : distributed.Client or None
        None: the current default client (``distributed.get_client()``).
    sync_every : "epoch" or int
        Mini-batches each partition trains between two averagings.
    partitions : int or None
        Re-cut X into this many row chunks (a Dask X is rechunked).
    threads : int or None
        Numba threads per task; None: each worker's thread count divided by the
        partitions it holds (at least 1).
    resume : RunState or None
        Continue the run this state came from (``WorkerLostError.state``,
        ``RunState.load``, ``history.run``): params, optimizer and history are taken
        from it, and the run ends when ``epochs`` epochs counted from the start of the
        original run are done.  Pass the other arguments as for the original call.
    checkpoint : path or None
        Write the ``RunState`` there after every epoch and when a worker is lost.
    on_worker_loss : "raise" or "continue"
        See the module docstring.
    encode : callable or None
        Applied on the workers to each partition of Y before the checks (the
        estimators' label encoding).
    """
    if backend not in trainer.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {list(trainer.BACKENDS)}")
    if on_worker_loss not in ("raise", "continue"):
        raise ValueError(f"on_worker_loss must be 'raise' or 'continue', got {on_worker_loss!r}")
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence must be 'raise' or 'stop', got {on_divergence!r}")
    if not (sync_every == "epoch" or (isinstance(sync_every, (int, np.integer))
                                      and not isinstance(sync_every, bool) and sync_every >= 1)):
        raise ValueError(f"sync_every must be 'epoch' or an integer >= 1, got {sync_every!r}")
    if not (isinstance(epochs, (int, np.integer)) and not isinstance(epochs, bool) and epochs >= 0):
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if batch_size is not None and not (isinstance(batch_size, (int, np.integer))
                                       and batch_size >= 0):
        raise ValueError(f"batch_size must be an integer >= 0 (0 or None: the full batch), "
                         f"got {batch_size!r}")
    if not (isinstance(l2, (int, float, np.number)) and math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
    trainer._check_metrics(arch, metrics)
    trainer._check_params(arch, params)
    if isinstance(optimizer, Optimizer) and lr is not None:
        raise ValueError("give lr to the Optimizer instance, not to fit")
    client = client if client is not None else distributed.get_client()
    schedule = make_schedule(schedule)
    if validation_data is not None:
        validation_data = trainer._check_data(arch, *validation_data, ("X_val", "Y_val"))
    if early_stopping is not None:
        computed = ["loss", *[m for m in metrics if m in trainer.RUNNING_METRICS],
                    *([f"val_{key}" for key in ("loss", *metrics)]
                      if validation_data is not None else [])]
        if early_stopping.monitor not in computed:
            raise ValueError(f"early stopping monitors {early_stopping.monitor!r}, which this run "
                             f"does not compute; it computes {computed}")
    X, Y, sample_weight = _partitioned(X, Y, sample_weight, partitions)
    rows = tuple(int(r) for r in X.chunks[0])
    n_parts = len(rows)
    caller_rng = as_random_state(random_state)

    if resume is not None:
        if (resume.rows, resume.batch_size, resume.sync_every) != (rows, batch_size, sync_every):
            raise ValueError(f"resume needs the partitioning, batch size and sync_every of the "
                             f"run it continues: rows per partition {resume.rows}, batch_size "
                             f"{resume.batch_size}, sync_every {resume.sync_every!r}; got {rows}, "
                             f"{batch_size}, {sync_every!r}")
        params[:] = resume.params
        optimizer, history = copy.deepcopy(resume.optimizer), copy.deepcopy(resume.history)
        parts = copy.deepcopy(resume.partitions)
        rounds, start_epoch = resume.rounds, resume.start_epoch
    else:
        optimizer = make_optimizer(optimizer, lr)
        history = trainer.History() if history is None else history
        parts = [PartitionState(copy.deepcopy(caller_rng) if p == 0
                                else _partition_rng(caller_rng, p), 0, trainer.epoch_totals())
                 for p in range(n_parts)]
        rounds, start_epoch = 0, history.epochs
    history.optimizer, history.stop_reason, history.best_epoch = optimizer, None, None
    history.rounds = getattr(history, "rounds", [])
    optimizer.prepare(arch.n_params, arch.dtype)
    end_epoch = start_epoch + epochs
    callbacks = [c if isinstance(c, trainer.Callback) else trainer.LambdaCallback(c)
                 for c in callbacks]
    token = uuid.uuid4().hex

    def state():
        return RunState(params.copy(), copy.deepcopy(optimizer), copy.deepcopy(history),
                        copy.deepcopy(parts), rounds, start_epoch, rows, batch_size, sync_every)

    data, placement = _place_partitions(client, arch, X, Y, sample_weight, encode)
    nthreads = dict(_workers(client))
    task_threads = [threads if threads is not None
                    else max(1, nthreads.get(address, 1) // placement.count(address))
                    for address in placement]
    stopper = trainer._EarlyStopper(early_stopping, history, params)
    with_rounds = [c for c in callbacks if hasattr(c, "on_round_end")]
    batches = 0
    try:
        for callback in callbacks:
            callback.on_train_begin(history)
        while history.epochs < end_epoch and history.stop_reason is None:
            epoch = history.epochs + 1
            lr_epoch = schedule(epoch - 1, optimizer.lr, history.history)
            backup = (params.copy(), optimizer.slots.copy(), optimizer.iterations,
                      copy.deepcopy(parts))
            epoch_start = time.perf_counter()
            while any(part.next_row < n for part, n in zip(parts, rows)):
                round_start = time.perf_counter()
                active = [p for p in range(n_parts) if parts[p].next_row < rows[p]]
                try:
                    # The weights travel inside each task (not scattered): a task whose
                    # worker died is rescheduled with them, where a broadcast to a dead
                    # worker would wait for it.
                    bundle = params, optimizer.slots
                    futures = [client.submit(
                        _train_round, data[p], bundle,
                        _Job(token, p, epoch, arch, optimizer.get_config(), optimizer.iterations,
                             lr_epoch, l2, batch_size, shuffle, parts[p].rng, parts[p].next_row,
                             parts[p].totals,
                             None if sync_every == "epoch" else int(sync_every), backend,
                             task_threads[p]),
                        key=f"fastnn-round-{token}-{rounds + 1}-{p}", workers=[placement[p]],
                        allow_other_workers=True) for p in active]
                    results = client.gather(futures)
                    del futures  # the round's results leave the workers' memory
                except _LOST as error:
                    raise _lost(f"{type(error).__name__}: {error}", rounds + 1, epoch, state(),
                                checkpoint, arch) from error
                moved = [(p, r["worker"]) for p, r in zip(active, results)
                         if r["worker"] is not None and r["worker"] != placement[p]]
                if moved:
                    what = ", ".join(f"partition {p} on {w} instead of {placement[p]}"
                                     for p, w in moved)
                    message = (f"a worker holding training data was lost: round {rounds + 1} ran "
                               f"{what} (Dask recomputed the partition there)")
                    if on_worker_loss == "raise":
                        raise _lost(message, rounds + 1, epoch, state(), checkpoint, arch)
                    warnings.warn(f"{message}; training goes on (on_worker_loss='continue')",
                                  RuntimeWarning, stacklevel=2)
                    for p, w in moved:
                        placement[p] = w
                _average(params, optimizer, [r for r in results])
                for p, result in zip(active, results):
                    parts[p].next_row = result["next_row"]
                    parts[p].totals = result["totals"]
                    if result["next_row"] == rows[p]:  # done: the next epoch draws from here
                        parts[p].rng = result["rng"]
                rounds += 1
                batches += sum(r["batches"] for r in results)
                compute = max(r["seconds"] for r in results)
                record = {"round": rounds, "epoch": epoch, "partitions": len(active),
                          "rows": sum(r["rows"] for r in results),
                          "seconds": time.perf_counter() - round_start, "compute_seconds": compute}
                history.rounds.append(record)
                for callback in with_rounds:
                    callback.on_round_end(rounds, dict(record))
            seconds = time.perf_counter() - epoch_start
            loss_sum, weight_sum, right_sum = (sum(part.totals[i] for part in parts)
                                               for i in range(3))
            loss, right = ((loss_sum / weight_sum, right_sum / weight_sum) if weight_sum > 0
                           else (0.0, 0.0))
            if not (math.isfinite(loss) and np.isfinite(params).all()):
                params[:], optimizer.slots[:], optimizer.iterations, parts = backup
                message = (f"training diverged: a non-finite loss or weight in epoch {epoch} "
                           f"(mean loss {loss}); the weights of epoch {epoch - 1} were kept. "
                           f"Lower the learning rate (now {lr_epoch:g}) or rescale the inputs.")
                if on_divergence == "raise":
                    raise trainer.DivergenceError(message)
                warnings.warn(message, trainer.DivergenceWarning, stacklevel=2)
                history.stop_reason = "diverged"
                break
            for part in parts:  # the epoch is done: the next one starts afresh
                part.next_row, part.totals = 0, trainer.epoch_totals()
            logs = {"loss": float(loss)}
            if "accuracy" in metrics:
                logs["accuracy"] = float(right)
            if validation_data is not None:
                logs.update(trainer._evaluate(arch, params, *validation_data, metrics, backend,
                                              "val_", with_loss=True))
            logs.update(lr=lr_epoch, seconds=seconds)
            for key, value in logs.items():
                history.history.setdefault(key, []).append(value)
            logs["batches"] = batches
            try:
                for callback in callbacks:
                    callback.on_epoch_end(epoch, logs)
            except trainer.StopTraining:
                history.stop_reason = "callback"
            if history.stop_reason is None and stopper.should_stop(epoch, logs, params):
                history.stop_reason = "early stopping"
            if checkpoint is not None:
                state().save(checkpoint, arch)
        stopper.restore(params, history)
        for callback in callbacks:
            callback.on_train_end(history)
    finally:
        del data
    _set_rng_state(caller_rng, parts[0].rng)
    history.run = state()
    return history


def _lost(message, round_, epoch, state, checkpoint, arch):
    """The WorkerLostError for a failed round (after writing the checkpoint, if asked)."""
    where = "fit(..., resume=error.state)"
    if checkpoint is not None:
        state.save(checkpoint, arch)
        where += f" or from the checkpoint {os.fspath(checkpoint)!r} (RunState.load)"
    return WorkerLostError(
        f"data-parallel training stopped in round {round_} (epoch {epoch}): {message}. The "
        f"weights averaged after round {round_ - 1} are kept; resume with {where} once the "
        f"cluster has its workers back", state, round_, epoch)


def _place_partitions(client, arch, X, Y, sample_weight, encode):
    """(futures of the prepared partitions, address of the worker holding each).

    Partition p is computed and kept on worker p mod W (workers sorted by address),
    unless Dask already holds it (same data, from an earlier call) elsewhere.
    """
    workers = [address for address, _ in _workers(client)]
    X_blocks, Y_blocks = X.to_delayed().ravel(), Y.to_delayed().ravel()
    w_blocks = (sample_weight.to_delayed().ravel() if sample_weight is not None
                else [None] * len(X_blocks))
    prepare = dask.delayed(_prepare_partition, pure=True)
    parts = [prepare(arch, x, y, w, encode) for x, y, w in zip(X_blocks, Y_blocks, w_blocks)]
    futures = [client.compute(part, workers=[workers[p % len(workers)]], allow_other_workers=True)
               for p, part in enumerate(parts)]
    distributed.wait(futures)
    for future in futures:
        if future.status == "error":
            future.result()  # raises the worker's error (a bad partition)
    holders = client.who_has(futures)
    placement = [min(holders.get(future.key) or [workers[p % len(workers)]])
                 for p, future in enumerate(futures)]
    return futures, placement


def _average(params, optimizer, results):
    """params and optimizer state := the row-weighted mean of the results, in their order."""
    if len(results) == 1:
        params[:], optimizer.slots[:] = results[0]["params"], results[0]["slots"]
    else:
        total = float(sum(r["rows"] for r in results))
        mean = np.zeros(params.shape[0])
        slots = np.zeros(optimizer.slots.shape)
        for r in results:
            mean += (r["rows"] / total) * r["params"]
            slots += (r["rows"] / total) * r["slots"]
        params[:], optimizer.slots[:] = mean, slots
    optimizer.iterations = max(int(r["iterations"]) for r in results)


def _partition_rng(rng, p):
    """The generator of partition p >= 1, seeded from the state of rng (not advanced)."""
    if isinstance(rng, np.random.RandomState):
        _, keys, pos, _, _ = rng.get_state(legacy=True)
        state = keys.tobytes() + int(pos).to_bytes(8, "little")
    else:
        state = json.dumps(rng.bit_generator.state, sort_keys=True, default=int).encode()
    entropy = int.from_bytes(hashlib.sha256(state).digest(), "little")
    seed = np.random.SeedSequence(entropy, spawn_key=(p,))
    if isinstance(rng, np.random.RandomState):
        return np.random.RandomState(np.random.MT19937(seed))
    return np.random.Generator(type(rng.bit_generator)(seed))


def _set_rng_state(rng, source):
    """Give rng the state of source (the caller's generator ends where partition 0's did)."""
    if isinstance(rng, np.random.RandomState):
        rng.set_state(source.get_state())
    else:
        rng.bit_generator.state = source.bit_generator.state


# ---------------------------------------------------------------------------
# scikit-learn estimators
# ---------------------------------------------------------------------------


def fit_estimator(estimator, X, y, sample_weight=None, *, client=None, sync_every="epoch",
                  partitions=None, **kwargs):
    """Train a FastMLPClassifier or FastMLPRegressor data-parallel on Dask arrays; return it.

    What ``estimator.fit(X_dask, y_dask)`` calls.  The estimator's parameters mean
    what they mean for ``fit`` (the seeding included: with one partition the fitted
    weights are bitwise those of ``estimator.fit`` on the same NumPy arrays), except
    that ``early_stopping`` and ``warm_start`` are not supported here, and
    ``batch_size="auto"`` is ``min(200, n_samples)`` rows per batch of each
    partition.  Classifiers take 1-D labels; the classes are found with one
    ``dask.array.unique`` pass.  Further keyword arguments go to ``fit``
    (``checkpoint``, ``on_worker_loss``, ``threads``...).
    """
    from sklearn.base import ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state

    from .estimators import _ACTIVATIONS
    from .network import Architecture, init_params

    estimator._validate_params()
    if estimator.early_stopping:
        raise ValueError("early_stopping=True is not supported with Dask arrays: pass "
                         "validation data to fastnn.distributed.fit instead")
    if estimator.warm_start and "_params" in estimator.__dict__:
        raise ValueError("warm_start is not supported with Dask arrays")
    if not dask.is_dask_collection(X):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must have 2 dimensions, got shape {X.shape}")
    if estimator.dtype is not None:
        dtype = np.dtype(estimator.dtype).name
    else:
        dtype = "float32" if X.dtype == np.float32 else "float64"
    classifier = isinstance(estimator, ClassifierMixin)
    if classifier:
        if y.ndim != 1:
            raise ValueError("with Dask arrays, classifiers take 1-D labels y")
        classes = da.unique(y).compute() if dask.is_dask_collection(y) else np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"{type(estimator).__name__} needs at least two classes to train; "
                             f"y has one class: {classes.tolist()}")
        encoder = LabelBinarizer().fit(classes)
        encode, n_outputs = encoder.transform, (1 if len(classes) == 2 else len(classes))
        head = estimator._head(encoder)
    else:
        encoder, head = None, "identity"
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        encode = _column if y.ndim == 1 else None
    hidden = estimator._hidden_sizes()
    arch = Architecture((X.shape[1], *hidden, n_outputs),
                        tuple(_ACTIVATIONS[estimator.activation] for _ in hidden), head, dtype)
    rng = check_random_state(estimator.random_state)
    params = init_params(arch, estimator.init, rng)
    optimizer = estimator._make_optimizer()
    schedule, stopping, callbacks = estimator._schedule_and_stopping(0)
    n = X.shape[0]
    batch_size = min(200 if estimator.batch_size == "auto" else int(estimator.batch_size), n)
    kwargs.setdefault("threads", estimator.threads)
    history = fit(arch, params, X, y, epochs=int(estimator.max_iter), client=client,
                  batch_size=batch_size, optimizer=optimizer, schedule=schedule,
                  l2=float(estimator.alpha), sample_weight=sample_weight, sync_every=sync_every,
                  partitions=partitions, early_stopping=stopping, callbacks=callbacks,
                  random_state=rng, shuffle=estimator.shuffle, encode=encode, **kwargs)
    estimator.n_features_in_ = X.shape[1]
    estimator._commit(arch, params, optimizer, history, rng, encoder, history.epochs,
                      history.epochs * n)
    if history.stop_reason is None and estimator.n_iter_ == estimator.max_iter:
        warnings.warn(f"Stochastic Optimizer: Maximum iterations ({estimator.max_iter}) reached "
                      f"and the optimization hasn't converged yet.", ConvergenceWarning,
                      stacklevel=3)
    return estimator


def _column(y):
    return np.asarray(y).reshape(-1, 1)
