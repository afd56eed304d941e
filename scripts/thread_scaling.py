"""Thread scaling of fastnn's compiled epoch: 1..N threads, speed-up and efficiency.

For each workload (see compare_peers.py: W1 digits 64-128-128-10 batch 64, W1a the same
with the full batch, W2 784-512-512-10 batch 128) and each thread count, a model trains
from the same initial weights with the same shuffling; the script prints the median and
minimum seconds per epoch, the speed-up over one thread (median), the efficiency
(speed-up / threads), and whether the trained weights are bitwise identical to the
one-thread run (they must be: the work split never depends on the thread count).

With --independent, each thread count t > 1 also runs t one-thread trainings at once,
in t processes pinned to t CPUs, started together after their warm-up, and prints
their speed-up: t x the one-thread median over the median of their medians.  They
share nothing but the machine (caches, memory, clock), so that is the most any split
of one training over t threads could gain on it; the gap between the two speed-ups is
what the threads' sharing costs (the weights, activations and deltas that cross
between the cores every batch, and the waits).

    python scripts/thread_scaling.py                       # 1, 2, ... up to all cores
    python scripts/thread_scaling.py --threads 1,2 --workloads W1 --epochs 10 --json out.json
    python scripts/thread_scaling.py --threads 1,2 --independent
"""

import argparse
import json
import os
import platform
import subprocess
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_peers import make_workload  # noqa: E402  (a sibling script)

from fastnn import Architecture, fit, init_params  # noqa: E402


def default_threads():
    counts, t = [], 1
    while t < numba.config.NUMBA_NUM_THREADS:
        counts.append(t)
        t *= 2
    return counts + [numba.config.NUMBA_NUM_THREADS]


def measure(workload, dtype, threads, epochs, before_timing=lambda: None):
    """(median s/epoch, min s/epoch, final params) for one thread count; before_timing is
    called between the warm-up and the timed epochs."""
    arch = Architecture(workload.sizes, "sigmoid", "softmax", dtype)
    X = workload.X_train
    Y = np.eye(workload.sizes[-1])[workload.y_train]
    warm = init_params(arch, workload.init, random_state=0)
    fit(arch, warm, X[:256], Y[:256], epochs=1, batch_size=workload.batch_size, lr=workload.lr,
        random_state=0, threads=threads)  # compile (or load the cache) outside the timing
    params = init_params(arch, workload.init, random_state=0)
    before_timing()
    history = fit(arch, params, X, Y, epochs=epochs, batch_size=workload.batch_size,
                  lr=workload.lr, random_state=0, threads=threads)
    seconds = np.array(history.epoch_seconds)
    return float(np.median(seconds)), float(seconds.min()), params


def independent_runs(name, dtype, epochs, copies, command=None):
    """Median s/epoch of each of `copies` one-thread runs of a workload that train at the
    same time, each in its own process pinned to its own CPU (``one_pinned_run``; command,
    to which the CPU is appended, replaces that child in tests).  Every process says
    "ready" once warm; all are then told "go" together."""
    command = command or [sys.executable, os.path.abspath(__file__), "--workloads", name,
                          "--dtype", dtype, "--epochs", str(epochs), "--pinned-run"]
    cpus = sorted(os.sched_getaffinity(0))[:copies]
    if len(cpus) < copies:
        raise ValueError(f"{copies} pinned runs need as many CPUs; this process has {len(cpus)}")
    children = [subprocess.Popen(command + [str(cpu)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for cpu in cpus]
    try:
        for child in children:
            line = "-"
            while line and line.strip() != "ready":  # until "ready", or the end of its output
                line = child.stdout.readline()
            if not line:
                raise RuntimeError(f"a pinned run of {name} failed before its timed epochs")
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        return [float(child.communicate()[0].split()[-1]) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()


def one_pinned_run(name, dtype, epochs, cpu):
    """The child of ``independent_runs``: one thread on one CPU; prints "ready" after the
    warm-up, waits for a line on stdin, trains, prints its median s/epoch."""
    os.sched_setaffinity(0, {cpu})

    def wait_for_go():
        print("ready", flush=True)
        sys.stdin.readline()

    median, _, _ = measure(make_workload(name, epochs), dtype, 1, epochs, wait_for_go)
    print(median)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="W1,W2", help="comma-separated: W1, W1a, W2")
    parser.add_argument("--threads", default=None, help="comma-separated thread counts")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per run")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--json", default=None, help="write the results to this path")
    parser.add_argument("--independent", action="store_true",
                        help="also run t one-thread trainings at once on t CPUs (see above)")
    parser.add_argument("--pinned-run", type=int, metavar="CPU", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pinned_run is not None:  # internal: a child of independent_runs
        return one_pinned_run(args.workloads, args.dtype, args.epochs, args.pinned_run)
    thread_counts = ([int(t) for t in args.threads.split(",")] if args.threads
                     else default_threads())
    if args.independent and thread_counts[0] != 1:
        parser.error("--independent compares with one thread: start --threads with 1")
    if args.independent and max(thread_counts) > len(os.sched_getaffinity(0)):
        parser.error(f"--independent needs a CPU per run: {max(thread_counts)} threads, "
                     f"{len(os.sched_getaffinity(0))} CPUs")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numba {numba.__version__}, threading layer requested {numba.config.THREADING_LAYER}")
    results = []
    for name in args.workloads.split(","):
        epochs = args.epochs or {"W1": 20, "W1a": 50, "W2": 3}[name]
        workload = make_workload(name, epochs)
        print(f"\n{name}: sizes {workload.sizes}, batch {workload.batch_size or 'full'}, "
              f"{len(workload.X_train)} rows, {args.dtype}, {epochs} epochs")
        print(f"{'threads':>7} {'median s/ep':>12} {'min s/ep':>10} {'speed-up':>9} "
              f"{'efficiency':>10} {'same bits':>9}"
              + (f" {'independent':>11}" if args.independent else ""))
        base_median, base_params = None, None
        for threads in thread_counts:
            median, fastest, params = measure(workload, args.dtype, threads, epochs)
            if base_params is None:
                base_median, base_params = median, params
            speedup = base_median / median
            identical = bool(np.array_equal(params, base_params))
            result = dict(workload=name, dtype=args.dtype, threads=threads, epochs=epochs,
                          median_s=median, min_s=fastest, speedup=speedup,
                          efficiency=speedup / threads, bitwise_identical=identical)
            line = (f"{threads:>7} {median:>12.5f} {fastest:>10.5f} {speedup:>9.2f} "
                    f"{speedup / threads:>10.2f} {str(identical):>9}")
            if args.independent and threads > 1:
                medians = independent_runs(name, args.dtype, epochs, threads)
                result.update(independent_medians_s=medians,
                              independent_speedup=threads * base_median / np.median(medians))
                line += f" {result['independent_speedup']:>11.2f}"
            print(line)
            results.append(result)
    print(f"\nthreading layer used: {numba.threading_layer()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cpus=os.cpu_count(), threading_layer=numba.threading_layer(),
                           results=results), f, indent=1)


if __name__ == "__main__":
    main()
