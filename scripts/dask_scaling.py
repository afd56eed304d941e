"""Data-parallel scaling of fastnn.distributed: 1 vs 2 Dask workers, and a model for more.

For each workload and each sync mode (averaging once per epoch, or every K
mini-batches) the script trains on a LocalCluster of 1 worker (1 partition), then
of 2 workers (2 partitions), each worker one process with one thread, and reports:

* samples/s: rows trained per second of wall time, over the epochs after the first
  (the first places the partitions and loads the compiled kernels in the workers);
* efficiency: samples/s with W workers / (W x samples/s with 1 worker);
* per round (medians): wall seconds, compute seconds (the slowest task's time in the
  compiled epoch), and the rest (wall - compute: shipping the weights and optimizer
  state out and back, Dask's scheduling, the client's averaging).

The rest of a round is modelled as a + W b: a fixed part a (one
submit-and-gather cycle through the scheduler) and a part b per partition (the
client serialises each partition's weights and optimizer state into its task,
and receives and averages its results, one after another), fitted from the rest
measured with 1 and 2 workers.  To split b, the script also times a task that
returns its argument: with no payload (the bare latency) and with the workload's
weights and optimizer state (s: the cost of the bytes alone).  With r1 = one
worker's compute rate (rows/s in the compiled epoch, 1-worker run), N rows per
epoch and batches of B rows, it predicts for W workers with one core each:

    once per epoch:   T(W) = N / (W r1) + a + W b,   samples/s = N / T(W)
    every K batches:  T(W) = K B / r1 + a + W b,     samples/s = W K B / T(W)

The in-process trainer with 1 and 2 threads is timed on the same rows
for comparison.  The data is generated on the workers (seeded blocks of 4096 rows),
so only weights travel.

    python scripts/dask_scaling.py                 # about 30 s on 2 cores
    python scripts/dask_scaling.py --quick         # a smoke test
    python scripts/dask_scaling.py --json dask_scaling.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

try:
    import dask
    import dask.array as da
    from distributed import Client
except ImportError:
    sys.exit("needs the dask extra: pip install '.[dask]'")

import fastnn
from fastnn import Architecture, init_params
from fastnn import distributed as fd

BLOCK_ROWS = 4096

#: name -> (sizes, batch size, learning rate, rows, epochs, K batches per round)
WORKLOADS = {
    "W1": ((64, 128, 128, 10), 64, 0.5, 32768, 4, 16),
    "W2": ((784, 512, 512, 10), 128, 0.1, 16384, 3, 16),
}
QUICK = {"W1": 4096, "W2": 2048}


def make_block(block, rows, n_features, n_classes):
    """(X, Y) of one block: uniform inputs, one-hot of the arg max of the first columns."""
    X = np.random.default_rng(block).random((rows, n_features), dtype=np.float32)
    Y = np.eye(n_classes, dtype=np.float32)[X[:, :n_classes].argmax(axis=1)]
    return np.concatenate([X, Y], axis=1)


def make_data(n_rows, n_features, n_classes):
    """Lazy (X, Y) Dask arrays, generated block by block where they are computed."""
    blocks = []
    for block, start in enumerate(range(0, n_rows, BLOCK_ROWS)):
        rows = min(BLOCK_ROWS, n_rows - start)
        blocks.append(da.from_delayed(
            dask.delayed(make_block, pure=True)(block, rows, n_features, n_classes),
            shape=(rows, n_features + n_classes), dtype=np.float32))
    XY = da.concatenate(blocks, axis=0)
    return XY[:, :n_features], XY[:, n_features:]


def echo(payload):
    return payload


def transfer_costs(client, n_bytes, repeats=20):
    """(a, s): median round trip of an echo task without payload, and the extra with n_bytes."""
    def median_round_trip(payload):
        times = []
        for i in range(repeats + 2):
            start = time.perf_counter()
            client.submit(echo, payload, pure=False).result()
            times.append(time.perf_counter() - start)
        return statistics.median(times[2:])

    latency = median_round_trip(None)
    weights = np.zeros(n_bytes // 4, dtype=np.float32)
    return latency, max(0.0, median_round_trip(weights) - latency)


def run_distributed(client, arch, X, Y, batch_size, lr, epochs, sync_every, partitions):
    params = init_params(arch, "glorot_uniform", 0)
    history = fd.fit(arch, params, X, Y, client=client, epochs=epochs, batch_size=batch_size,
                     lr=lr, optimizer={"name": "sgd", "momentum": 0.9}, sync_every=sync_every,
                     partitions=partitions, random_state=0, threads=1)
    rows = X.shape[0] * (epochs - 1)
    seconds = sum(history.history["seconds"][1:])
    rounds = [r for r in history.rounds if r["epoch"] > 1]
    wall = statistics.median(r["seconds"] for r in rounds)
    compute = statistics.median(r["compute_seconds"] for r in rounds)
    rest = statistics.median(r["seconds"] - r["compute_seconds"] for r in rounds)
    # one worker's compute rate: rows trained per second inside the compiled epoch
    task_rows = statistics.median(r["rows"] / r["partitions"] for r in rounds)
    return {"samples_per_s": rows / seconds, "round_s": wall, "compute_s": compute,
            "rest_s": rest, "rounds_per_epoch": len(rounds) / (epochs - 1),
            "rows_per_task": task_rows, "final_loss": history.loss[-1]}


def run_threads(arch, X, Y, batch_size, lr, epochs, threads):
    params = init_params(arch, "glorot_uniform", 0)
    history = fastnn.fit(arch, params, X, Y, epochs=epochs, batch_size=batch_size, lr=lr,
                         optimizer={"name": "sgd", "momentum": 0.9}, random_state=0,
                         threads=threads)
    return X.shape[0] * (epochs - 1) / sum(history.history["seconds"][1:])


def fit_rest(measured, mode):
    """(a, b) of rest(W) = a + W b from the rounds measured with 1 and 2 workers."""
    b = max(0.0, measured[f"{mode}:2"]["rest_s"] - measured[f"{mode}:1"]["rest_s"])
    return max(0.0, measured[f"{mode}:1"]["rest_s"] - b), b


def model(n_rows, batch_size, k, r1, rests, workers):
    """Predicted {mode:W: samples/s, efficiency, round seconds} for each worker count."""
    predicted = {}
    for mode in ("epoch", k):
        a, b = rests[mode]
        base = None
        for w in workers:
            if mode == "epoch":
                round_s = n_rows / (w * r1) + a + w * b
                rate = n_rows / round_s
            else:
                round_s = k * batch_size / r1 + a + w * b
                rate = w * k * batch_size / round_s
            base = base or rate
            predicted[f"{mode}:{w}"] = {"samples_per_s": rate, "efficiency": rate / (w * base),
                                       "round_s": round_s}
    return predicted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--quick", action="store_true", help="small data, for a smoke test")
    parser.add_argument("--json", help="write the results there")
    args = parser.parse_args(argv)
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "numpy": np.__version__, "dask": dask.__version__,
                           "loadavg_before": os.getloadavg()},
               "workloads": {}}
    names = args.workloads.split(",")
    specs = {}
    for name in names:
        sizes, batch_size, lr, n_rows, epochs, k = WORKLOADS[name]
        if args.quick:
            n_rows, epochs = QUICK[name], 2
        specs[name] = (Architecture(sizes, "sigmoid", "softmax", "float32"), batch_size, lr,
                       n_rows, epochs, k)
    for name, (arch, batch_size, lr, n_rows, epochs, k) in specs.items():
        X, Y = make_data(n_rows, arch.sizes[0], arch.sizes[-1])
        X_local, Y_local = dask.compute(X, Y, scheduler="sync")
        results["workloads"][name] = entry = {
            "sizes": arch.sizes, "rows": n_rows, "batch_size": batch_size, "epochs": epochs,
            "k": k, "weights_bytes": 2 * arch.n_params * 4,  # params + momentum, float32
            "threads": {t: run_threads(arch, X_local, Y_local, batch_size, lr, epochs, t)
                        for t in (1, 2)},
            "measured": {}}
    for workers in (1, 2):
        with fd.local_cluster(workers, silence_logs=40) as cluster, Client(cluster) as client:
            client.wait_for_workers(workers)
            for name, (arch, batch_size, lr, n_rows, epochs, k) in specs.items():
                entry = results["workloads"][name]
                X, Y = make_data(n_rows, arch.sizes[0], arch.sizes[-1])
                for mode in ("epoch", k):
                    entry["measured"][f"{mode}:{workers}"] = run_distributed(
                        client, arch, X, Y, batch_size, lr, epochs, mode, workers)
                if workers == 2:
                    entry["latency_s"], entry["transfer_s"] = transfer_costs(
                        client, entry["weights_bytes"])
    results["machine"]["loadavg_after"] = os.getloadavg()

    print(f"{os.cpu_count()} CPUs, load average before {results['machine']['loadavg_before']}"
          f" after {results['machine']['loadavg_after']}")
    for name, entry in results["workloads"].items():
        k, measured = entry["k"], entry["measured"]
        single = measured["epoch:1"]
        r1 = single["rows_per_task"] / single["compute_s"]
        entry["r1_rows_per_s"] = r1
        rests = {mode: fit_rest(measured, mode) for mode in ("epoch", k)}
        entry["rest_fit"] = {str(mode): ab for mode, ab in rests.items()}
        entry["model"] = model(entry["rows"], entry["batch_size"], k, r1, rests,
                               (1, 2, 4, 8, 16, 32))
        print(f"\n{name} {entry['sizes']}, {entry['rows']} rows, batch {entry['batch_size']}, "
              f"weights + momentum {entry['weights_bytes'] / 1e6:.2f} MB; in-process trainer: "
              f"{entry['threads'][1]:,.0f} samples/s (1 thread), {entry['threads'][2]:,.0f} (2)")
        print(f"echo task: bare round trip {1e3 * entry['latency_s']:.2f} ms, weights out and "
              f"back s = {1e3 * entry['transfer_s']:.2f} ms more; one worker computes "
              f"r1 = {r1:,.0f} rows/s; rest of a round a + W b: " + ", ".join(
                  f"{'epoch' if mode == 'epoch' else f'{k} batches'} a = {1e3 * a:.1f} ms, "
                  f"b = {1e3 * b:.1f} ms" for mode, (a, b) in rests.items()))
        print("| sync | workers | samples/s | efficiency | rounds/epoch | round ms | compute ms "
              "| rest ms | model samples/s |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for mode in ("epoch", k):
            base = measured[f"{mode}:1"]["samples_per_s"]
            for workers in (1, 2):
                m = measured[f"{mode}:{workers}"]
                label = "epoch" if mode == "epoch" else f"{k} batches"
                print(f"| {label} | {workers} | {m['samples_per_s']:,.0f} | "
                      f"{m['samples_per_s'] / (workers * base):.2f} | "
                      f"{m['rounds_per_epoch']:.0f} | {1e3 * m['round_s']:.1f} | "
                      f"{1e3 * m['compute_s']:.1f} | {1e3 * m['rest_s']:.1f} | "
                      f"{entry['model'][f'{mode}:{workers}']['samples_per_s']:,.0f} |")
        print("model, more workers (one core each, client not sharing them): " + "; ".join(
            f"{'epoch' if mode == 'epoch' else f'{k} batches'}: " + ", ".join(
                f"W={w} {entry['model'][f'{mode}:{w}']['samples_per_s']:,.0f}/s "
                f"({entry['model'][f'{mode}:{w}']['efficiency']:.2f})" for w in (4, 8, 16, 32))
            for mode in ("epoch", k)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
