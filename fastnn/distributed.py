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
from .checks import check_choice, check_data, check_epochs, check_weights
from .metrics import RUNNING_METRICS
from .optimizers import Optimizer, make_optimizer

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
            doc, rng_arrays = model_io.rng_to_json(part.rng)
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
            partitions.append(PartitionState(model_io.rng_from_json(doc["rng"], arrays),
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
    X, Y = check_data(arch, X, Y)
    return X, Y, check_weights(weights, X.shape[0], arch.dtype)


def _workers(client):
    """[(address, nthreads)] of the cluster's workers, sorted by address."""
    # Ask the scheduler directly: Client.scheduler_info() returns the client's shared cache,
    # which its periodic refresh (no per-worker entries) can overwrite between the fetch and
    # the read, so it can list no workers on a live cluster.
    workers = client.sync(client.scheduler.identity, n_workers=-1)["workers"]
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
    X, Y, sample_weight = data  # the kernels get read-only views (sparse.driver_inputs)
    params, optimizer = weights[0].copy(), make_optimizer(job.optimizer)
    optimizer.slots, optimizer.iterations = weights[1].copy(), job.iterations
    n = X.shape[0]
    batch_size = n if not job.batch_size else min(int(job.batch_size), n)
    order, rng = _epoch_order(job, n, batch_size)
    stop_row = n if job.max_batches is None else min(n, job.next_row + job.max_batches * batch_size)
    totals = np.array(job.totals, dtype=np.float64)  # added to in the order trainer.fit adds
    run_epoch = trainer.epoch_function(job.backend)(job.arch, params, X, Y, sample_weight, batch_size, optimizer, job.l2)
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
# The client side: trainer.fit's runner
# ---------------------------------------------------------------------------


class DataParallel:
    """``trainer.fit``'s runner for data-parallel training on a Dask cluster.

    ``trainer.fit(..., runner=DataParallel(client, sync_every=8))`` (or
    ``Sequential.fit(..., runner=...)``) trains X, Y (Dask arrays or ndarrays) over
    their row partitions: each epoch is a sequence of rounds (see the module
    docstring); everything else (schedule, validation, early stopping, divergence,
    callbacks, history) is trainer.fit's.  On the training rows, which never leave
    the workers, only the running metrics are reported (``metrics.RUNNING_METRICS``).
    Callbacks with an ``on_round_end(round, logs)`` method are called after every
    round, and ``history.rounds`` gets one dict per round.  At the end (also after
    an error) ``history.run`` is the ``RunState`` and the generator passed to fit as
    random_state ends where partition 0's did.

    Parameters
    ----------
    client : distributed.Client or None
        None: the current default client (``distributed.get_client()``).
    sync_every : "epoch" or int
        Mini-batches each partition trains between two averagings.
    partitions : int, "workers" or None
        Re-cut X into this many row chunks (a Dask X is rechunked); "workers": one
        per worker of the cluster (at most one per row); None keeps a Dask X's
        chunks and gives an ndarray one partition.
    checkpoint : path or None
        Write the ``RunState`` there after every epoch and when a worker is lost.
    on_worker_loss : "raise" or "continue"
        See the module docstring.
    encode : callable or None
        Applied on the workers to each partition of Y before the checks (the
        estimators' label encoding).
    resume : RunState or None
        The run to continue (``fit``'s resume, which also hands trainer.fit the
        state's optimizer and history).
    """

    in_process = False

    def __init__(self, client=None, *, sync_every="epoch", partitions=None, checkpoint=None,
                 on_worker_loss="raise", encode=None, resume=None):
        check_choice(on_worker_loss, "on_worker_loss", ("raise", "continue"))
        if not (sync_every == "epoch" or (isinstance(sync_every, (int, np.integer))
                                          and not isinstance(sync_every, bool)
                                          and sync_every >= 1)):
            raise ValueError(f"sync_every must be 'epoch' or an integer >= 1, got {sync_every!r}")
        self.client, self.sync_every, self.partitions = client, sync_every, partitions
        self.checkpoint, self.on_worker_loss, self.encode = checkpoint, on_worker_loss, encode
        self.resume = resume

    @staticmethod
    def measures(metric):
        return metric in RUNNING_METRICS

    def __call__(self, **fit_arguments):
        return _Rounds(self, **fit_arguments)


class _Rounds:
    """The running state of one DataParallel training call (``trainer.LocalEpochs``'s
    protocol): the partitions on the workers, each one's place in the epoch, rounds."""

    def __init__(self, plan, *, arch, params, X, Y, weights, batch_size, optimizer, l2, rng,
                 shuffle, backend, threads, history, callbacks, **_):
        self.plan, self.arch, self.params, self.optimizer, self.l2 = plan, arch, params, optimizer, l2
        self.batch_size, self.shuffle, self.backend, self.history = batch_size, shuffle, backend, history
        self.caller_rng, self.data = rng, None
        client = self.client = plan.client if plan.client is not None else distributed.get_client()
        partitions = plan.partitions
        if partitions == "workers":
            partitions = min(len(_workers(client)), X.shape[0])
        X, Y, weights = _partitioned(X, Y, weights, partitions)
        self.rows = tuple(int(r) for r in X.chunks[0])
        resume = plan.resume
        if resume is not None:
            if (resume.rows, resume.batch_size, resume.sync_every) != (
                    self.rows, batch_size, plan.sync_every):
                raise ValueError(f"resume needs the partitioning, batch size and sync_every of "
                                 f"the run it continues: rows per partition {resume.rows}, "
                                 f"batch_size {resume.batch_size}, sync_every "
                                 f"{resume.sync_every!r}; got {self.rows}, {batch_size}, "
                                 f"{plan.sync_every!r}")
            params[:] = resume.params
            self.parts = copy.deepcopy(resume.partitions)
            self.rounds, self.start_epoch = resume.rounds, resume.start_epoch
        else:
            self.parts = [PartitionState(copy.deepcopy(rng) if p == 0 else _partition_rng(rng, p),
                                         0, trainer.epoch_totals())
                          for p in range(len(self.rows))]
            self.rounds, self.start_epoch = 0, history.epochs
        self.token = uuid.uuid4().hex
        self.data, self.placement = _place_partitions(client, arch, X, Y, weights, plan.encode)
        nthreads = dict(_workers(client))
        self.task_threads = [threads if threads is not None
                             else max(1, nthreads.get(address, 1) // self.placement.count(address))
                             for address in self.placement]
        self.with_rounds = [c for c in callbacks if hasattr(c, "on_round_end")]

    def state(self):
        return RunState(self.params.copy(), copy.deepcopy(self.optimizer),
                        copy.deepcopy(self.history), copy.deepcopy(self.parts), self.rounds,
                        self.start_epoch, self.rows, self.batch_size, self.plan.sync_every)

    def run(self, epoch, lr, stop):
        """Rounds until every partition has trained on all its rows."""
        params, optimizer, parts, rows, plan = (self.params, self.optimizer, self.parts,
                                                self.rows, self.plan)
        epoch_start, batches = time.perf_counter(), 0
        while any(part.next_row < n for part, n in zip(parts, rows)):
            round_start = time.perf_counter()
            active = [p for p in range(len(rows)) if parts[p].next_row < rows[p]]
            try:
                # The weights travel inside each task (not scattered): a task whose
                # worker died is rescheduled with them, where a broadcast to a dead
                # worker would wait for it.
                bundle = params, optimizer.slots
                futures = [self.client.submit(
                    _train_round, self.data[p], bundle,
                    _Job(self.token, p, epoch, self.arch, optimizer.get_config(),
                         optimizer.iterations, lr, self.l2, self.batch_size, self.shuffle,
                         parts[p].rng, parts[p].next_row, parts[p].totals,
                         None if plan.sync_every == "epoch" else int(plan.sync_every),
                         self.backend, self.task_threads[p]),
                    key=f"fastnn-round-{self.token}-{self.rounds + 1}-{p}",
                    workers=[self.placement[p]], allow_other_workers=True) for p in active]
                results = self.client.gather(futures)
                del futures  # the round's results leave the workers' memory
            except _LOST as error:
                raise self._lost(f"{type(error).__name__}: {error}", epoch) from error
            moved = [(p, r["worker"]) for p, r in zip(active, results)
                     if r["worker"] is not None and r["worker"] != self.placement[p]]
            if moved:
                what = ", ".join(f"partition {p} on {w} instead of {self.placement[p]}"
                                 for p, w in moved)
                message = (f"a worker holding training data was lost: round {self.rounds + 1} "
                           f"ran {what} (Dask recomputed the partition there)")
                if plan.on_worker_loss == "raise":
                    raise self._lost(message, epoch)
                warnings.warn(f"{message}; training goes on (on_worker_loss='continue')",
                              RuntimeWarning, stacklevel=2)
                for p, w in moved:
                    self.placement[p] = w
            _average(params, optimizer, results)
            for p, result in zip(active, results):
                parts[p].next_row = result["next_row"]
                parts[p].totals = result["totals"]
                if result["next_row"] == rows[p]:  # done: the next epoch draws from here
                    parts[p].rng = result["rng"]
            self.rounds += 1
            batches += sum(r["batches"] for r in results)
            record = {"round": self.rounds, "epoch": epoch, "partitions": len(active),
                      "rows": sum(r["rows"] for r in results),
                      "seconds": time.perf_counter() - round_start,
                      "compute_seconds": max(r["seconds"] for r in results)}
            self.history.rounds.append(record)
            for callback in self.with_rounds:
                callback.on_round_end(self.rounds, dict(record))
        seconds = time.perf_counter() - epoch_start
        # The epoch's sums over all its batches, added in partition order.
        totals = np.array([sum(part.totals[i] for part in parts) for i in range(3)])
        for part in parts:  # the epoch is done: the next one starts afresh
            part.next_row, part.totals = 0, trainer.epoch_totals()
        return trainer.EpochRun(totals, seconds, batches, True)

    def snapshot(self):
        return (self.params.copy(), self.optimizer.slots.copy(), self.optimizer.iterations,
                copy.deepcopy(self.parts))

    def restore(self, snapshot):
        self.params[:], self.optimizer.slots[:], self.optimizer.iterations, parts = snapshot
        self.parts = copy.deepcopy(parts)

    def outputs_finite(self):
        """Whether the weights give finite outputs on every partition (checked on its worker)."""
        if not np.isfinite(self.params).all():
            return False
        futures = [self.client.submit(_outputs_finite, part, self.arch, self.params,
                                      self.backend, pure=False) for part in self.data]
        return all(self.client.gather(futures))

    def train_scores(self, metrics):
        return {}  # measures() reports running metrics only: the rows stay on the workers

    def epoch_end(self):
        if self.plan.checkpoint is not None:
            self.state().save(self.plan.checkpoint, self.arch)

    def close(self):
        self.data = None  # the partitions leave the workers' memory
        _set_rng_state(self.caller_rng, self.parts[0].rng)
        self.history.run = self.state()

    def _lost(self, message, epoch):
        """The WorkerLostError for a failed round (after writing the checkpoint, if asked)."""
        round_, state, checkpoint = self.rounds + 1, self.state(), self.plan.checkpoint
        where = "fit(..., resume=error.state)"
        if checkpoint is not None:
            state.save(checkpoint, self.arch)
            where += f" or from the checkpoint {os.fspath(checkpoint)!r} (RunState.load)"
        return WorkerLostError(
            f"data-parallel training stopped in round {round_} (epoch {epoch}): {message}. The "
            f"weights averaged after round {round_ - 1} are kept; resume with {where} once the "
            f"cluster has its workers back", state, round_, epoch)


def _outputs_finite(data, arch, params, backend):
    with np.errstate(all="ignore"):
        return bool(np.isfinite(trainer.predict_output(arch, params, data[0], backend)).all())


def fit(arch, params, X, Y, *, epochs, client=None, batch_size=None, lr=None, optimizer="sgd",
        schedule=None, l2=0.0, sample_weight=None, sync_every="epoch", partitions=None,
        validation_data=None, metrics=(), early_stopping=None, on_divergence="raise",
        callbacks=(), history=None, random_state=None, shuffle=True, backend="numba",
        threads=None, resume=None, checkpoint=None, on_worker_loss="raise", encode=None):
    """Data-parallel ``trainer.fit`` over the row partitions of X on a Dask cluster.

    ``trainer.fit`` with a ``DataParallel`` runner (whose parameters client,
    sync_every, partitions, checkpoint, on_worker_loss and encode are), plus
    resumption.  Trains params in place (they end as the last averaged weights)
    and returns the History, whose ``run`` is the final ``RunState`` and ``rounds``
    a list with one dict per round (rows, wall seconds, slowest task's compute
    seconds).  The arguments shared with ``trainer.fit`` mean the same; there is
    no validation_split.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), or ndarray
        Its row chunks are the partitions (see the module docstring).  An ndarray is
        cut into ``partitions`` (default 1) equal row chunks.
    Y : dask array or ndarray of shape (n_samples, n_outputs)
        Rechunked to X's row chunks (lazily, on the workers).
    threads : int or None
        Numba threads per task; None: each worker's thread count divided by the
        partitions it holds (at least 1).
    resume : RunState or None
        Continue the run this state came from (``WorkerLostError.state``,
        ``RunState.load``, ``history.run``): params, optimizer and history are taken
        from it, and the run ends when ``epochs`` epochs counted from the start of the
        original run are done.  Pass the other arguments as for the original call.
    """
    runner = DataParallel(client, sync_every=sync_every, partitions=partitions,
                          checkpoint=checkpoint, on_worker_loss=on_worker_loss, encode=encode,
                          resume=resume)
    if resume is not None:
        check_epochs(epochs)
        optimizer, lr = copy.deepcopy(resume.optimizer), None
        history = copy.deepcopy(resume.history)
        epochs = max(0, resume.start_epoch + epochs - history.epochs)
    return trainer.fit(arch, params, X, Y, epochs=epochs, batch_size=batch_size, lr=lr,
                       optimizer=optimizer, schedule=schedule, l2=l2, sample_weight=sample_weight,
                       validation_data=validation_data, metrics=metrics,
                       early_stopping=early_stopping, on_divergence=on_divergence,
                       callbacks=callbacks, history=history, random_state=random_state,
                       shuffle=shuffle, backend=backend, threads=threads, runner=runner)


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
