"""The --profile report's model of the parallel epoch (fastnn.profiling)."""

import copy
import json
import os
import re
import subprocess
import sys

import numba
import numpy as np
import pytest

from fastnn import SGD, Architecture, config, init_params
from fastnn.kernels.clocks import AVAILABLE as clocks_available
from fastnn.kernels.clocks import EPOCH, PASSES, TASKS, clock_buffer
from fastnn.kernels.epoch import make_tasks
from fastnn.profiling import (epoch_breakdown, kernel_times, median_epoch, region_clocks,
                               report_lines, static_schedule)
from fastnn.trainer import epoch_function, epoch_totals

# Which thread runs each iteration of a prange, in a child with 8 threads in Numba's pool
# (more than this machine may have cores: the schedule does not depend on them).
SCHEDULE_PROBE = """
import json, sys
import numba
import numpy as np

@numba.njit(parallel=True)
def owners(n, out):
    for i in numba.prange(n):
        out[i] = numba.get_thread_id()

result = {}
for threads in (3, 8):
    numba.set_num_threads(threads)
    for n in (1, 2, 7, 8, 26, 170):
        out = np.full(n, -1, dtype=np.int64)
        owners(n, out)
        result[f"{threads} {n}"] = out.tolist()
print(json.dumps(result))
"""


def test_static_schedule_is_numbas():
    env = dict(os.environ, NUMBA_NUM_THREADS="8")
    result = subprocess.run([sys.executable, "-c", SCHEDULE_PROBE], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for key, owners in json.loads(result.stdout).items():
        threads, n = map(int, key.split())
        ranges = []
        for thread in sorted(set(owners)):
            iterations = [i for i, owner in enumerate(owners) if owner == thread]
            assert iterations == list(range(iterations[0], iterations[-1] + 1)), key
            ranges.append((iterations[0], iterations[-1] + 1))
        assert sorted(ranges) == static_schedule(n, threads), key


def test_static_schedule_balances_the_remainder():
    assert static_schedule(26, 8) == [(0, 4), (4, 8), (8, 11), (11, 14), (14, 17), (17, 20),
                                      (20, 23), (23, 26)]
    assert static_schedule(3, 8) == [(0, 1), (1, 2), (2, 3)]
    assert static_schedule(0, 4) == []


@pytest.mark.skipif(config.MICRO_BATCH_ROWS != 256,
                    reason="hand-computed for micro-batches of 256 rows")
def test_epoch_breakdown_follows_micro_batches():
    # One batch of 600 rows: micro-batches of 256, 256 and 88 rows, 3 threads.  A
    # 16-row chunk takes 16 s forward and 32 s backward.  Two tasks, one per thread:
    # 6 s and 1 s of gradient over the whole batch; 0 s and 10 s of update, which
    # comes after the last micro-batch only.
    times = {"chunk_rows": 16, "block_rows": 16, "forward": 16.0, "backward": 32.0,
             "tasks": [(6.0, 0.0), (1.0, 10.0)]}
    phases = epoch_breakdown(times, 600, 600, threads=3)
    # 16 chunks: blocks of 5, 5, 6 (epoch.block_rows; busiest 96 rows); 88 rows = 5
    # chunks of 16 and one of 8: 2 per block (busiest 32 rows).  One region of 38
    # chunks would give 208.
    assert phases["forward"] == pytest.approx(96 + 96 + 32)
    assert phases["backward"] == pytest.approx(2 * (96 + 96 + 32))
    # The first task is the busier one in the first two regions, the second (with its
    # update) in the last.
    assert phases["gradient"] == pytest.approx(6.0 * 512 / 600 + 1.0 * 88 / 600)
    assert phases["update"] == pytest.approx(10.0)
    # The same per-row times, measured on a block of 64 rows, in chunks of 32 rows with
    # 2 threads: 256 rows = 8 chunks, 4 per block (128 rows); 88 rows = chunks of 32,
    # 32 and 24, the last two in the second block (56 rows; with 16-row chunks: 3 of 6
    # chunks, 48 rows).
    times = dict(times, chunk_rows=32, block_rows=64, forward=64.0, backward=128.0)
    phases = epoch_breakdown(times, 600, 600, threads=2)
    assert phases["forward"] == pytest.approx(128 + 128 + 56)
    assert phases["backward"] == pytest.approx(2 * (128 + 128 + 56))


def test_kernel_times_split_by_layer():
    """kernel_times' per-layer times (scripts/roofline.py's rows) add up to its totals,
    the first layer has no backward pass, and each task is named with its layer."""
    rng = np.random.default_rng(0)
    arch = Architecture((12, 40, 3), "tanh", "softmax", "float32")
    X = rng.standard_normal((50, 12)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 50)]
    times = kernel_times(arch, init_params(arch, "glorot_uniform", 0), SGD(lr=0.1), 0.0, X,
                         Y, 32, 0.1, timing=(1e-5, 3))
    assert len(times["forward_layers"]) == len(times["backward_layers"]) == 2
    assert times["forward"] == sum(times["forward_layers"])
    assert times["backward_layers"][0] == 0.0
    assert times["backward"] >= sum(times["backward_layers"])  # and the output delta
    assert times["task_layers"] == [int(task[0]) for task in make_tasks(arch.sizes)]
    assert len(times["tasks"]) == len(times["task_layers"])


def _small_fit(dtype="float32"):
    """A trained 16-24-3 model and its data, for the clocked epochs."""
    from fastnn.models import Dense, Sequential

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 16)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.integers(0, 3, 300)]
    model = Sequential([Dense(24, activation="tanh", input_shape=(16,)),
                        Dense(3, activation="softmax")], dtype=dtype)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    return model, X, Y


def test_clocks_change_no_weight():
    # The same epochs with and without the regions' clocks: bitwise the same weights
    # and sums; the clocks count every region and thread that ran.
    model, X, Y = _small_fit()
    results = []
    for clocks in (None, clock_buffer(numba.get_num_threads())):
        opt = copy.deepcopy(model.optimizer)
        params = model.params.copy()
        run_epoch = epoch_function("numba")(model.arch, params, X, Y, np.ones(300, "float32"),
                                            32, opt, np.float32(0.0), clocks=clocks)
        order = np.random.default_rng(1).permutation(300).astype(np.int64)
        totals = epoch_totals()
        for epoch in range(2):
            run_epoch(order, 0, np.zeros(1, dtype=np.int64), totals, 0.01, epoch * 10)
        results.append((params, totals, clocks))
    (params, totals, _), (clocked_params, clocked_totals, clocks) = results
    assert params.tobytes() == clocked_params.tobytes()
    assert totals.tobytes() == clocked_totals.tobytes()
    assert clocks[EPOCH, 0] > 0 and clocks[EPOCH, 1:].tolist() == [0] * numba.get_num_threads()
    for region in (PASSES, TASKS):
        assert 0 < clocks[region, 0] < clocks[EPOCH, 0]
        # each thread's iterations lie within the regions; 10 batches, 2 regions each
        assert (clocks[region, 1:] <= clocks[region, 0]).all()
        assert clocks[region, 1] > 0  # the calling thread always takes the first items
    # every count on its own cache line: no two threads write to one
    assert clocks.shape == (3, numba.get_num_threads() + 1) and min(clocks.strides) >= 64


@pytest.mark.skipif(not clocks_available, reason="no cycle counter read on this CPU")
def test_region_clocks_measure_the_epoch():
    model, X, Y = _small_fit()
    regions = region_clocks(model.arch, model.params, model.optimizer, 0.0, X, Y, 32, 0.01,
                            threads=1, epochs=3, min_seconds=0.0)
    assert regions["epochs"] == 3
    assert len(regions["passes_threads"]) == len(regions["tasks_threads"]) == 1
    assert 0 < regions["passes"] + regions["tasks"] < regions["epoch"] < 1.0
    for region in ("passes", "tasks"):
        assert 0 < regions[f"{region}_threads"][0] <= regions[region]
    params = model.params.copy()
    region_clocks(model.arch, model.params, model.optimizer, 0.0, X, Y, 32, 0.01, threads=2,
                  epochs=1, min_seconds=0.0)
    assert model.params.tobytes() == params.tobytes()  # copies were trained


def test_median_epoch_is_the_median_call():
    # Five epochs' clocks whose calls took 5, 1, 9, 3 and 7 ticks: the 5-tick one, whole.
    epochs = [np.full((3, 3), i, dtype=np.int64) for i in range(5)]
    for clocks, ticks in zip(epochs, (5, 1, 9, 3, 7)):
        clocks[EPOCH, 0] = ticks
    assert median_epoch(epochs) is epochs[0]
    assert median_epoch(epochs[1:]) is epochs[4]  # 1, 3, 7, 9: the upper median
    assert median_epoch(epochs[2:3]) is epochs[2]


def test_report_lines_without_clocks():
    # Where no cycle counter may be read (clocks.AVAILABLE False), the report has no
    # regions and prints none.
    report = {"threads": 2, "dtype": "float32", "rows": 10, "batches": 1, "batch_size": 10,
              "chunk_rows": 16, "compile_s": 0.1, "compile_source": "compiled",
              "epoch_s": 0.002, "epochs_measured": 3, "first_epoch_s": 0.003,
              "phases_s": {"forward": 0.001}, "remainder_s": 0.001, "regions_s": None,
              "train_metrics": True, "train_scoring_s": 0.0, "validation_rows": 0,
              "evaluation_per_epoch_s": 0.0, "final_evaluation_s": 0.001,
              "flops_per_epoch": {"total": 1e6}, "gflops": 1.0, "percent_of_peak": 1.0,
              "peak_gflops": 100.0, "peak_method": "NumPy"}
    lines = report_lines(report)
    assert not any(line.startswith("  regions") for line in lines)
    report["regions_s"] = {"epochs": 5, "epoch": 0.002, "passes": 0.0012, "tasks": 0.0007,
                           "passes_threads": [0.0011, 0.001], "tasks_threads": [0.0006, 0.0005]}
    lines = report_lines(report)
    assert any(re.match(r"^  regions +2\.000 ms  the median of 5 more epochs", line)
               for line in lines)
    assert any(re.match(r"^    passes +1\.200 ms +60\.0 %.*busy 1\.100 / 1\.000 ms", line)
               for line in lines)
    assert any(re.match(r"^    outside +0\.100 ms +5\.0 %", line) for line in lines)
