"""The --profile report's model of the parallel epoch (fastnn.profiling)."""

import json
import os
import subprocess
import sys

import pytest

from fastnn import config
from fastnn.profiling import epoch_breakdown, static_schedule

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
