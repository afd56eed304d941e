"""scripts/compare_peers.py's rounds: alternating systems, and the median of the rounds.

The measurements themselves are not run here (they take minutes and depend on the
machine); ``measure`` is replaced by a stand-in that records the order of the calls
and returns made-up seconds.
"""

import pytest

from scripts import compare_peers  # the repository root is on pytest's path

FLOPS = 2e9  # per epoch of the stand-in workload


class Workload:
    name, flops, predict_only = "W1", FLOPS, False


def fake_row(system, median, error=None):
    row = dict(workload="W1", dtype="float32", threads=1, system=system, count=3)
    if error:
        return dict(row, error=error), None
    return dict(row, median_s=median, seconds=[median] * 3, gflops=FLOPS / median / 1e9,
                accuracy=0.9, note=""), [1, 2, 3]


def test_rounds_alternate_the_systems_and_report_the_median(monkeypatch):
    # fastnn's third round ran in a slow spell; jax's first did
    seconds = {"fastnn": [1.0, 1.2, 5.0], "jax": [9.0, 2.0, 2.2]}
    calls = []

    def measure(system, wl, dtype, threads):
        calls.append(system)
        return fake_row(system, seconds[system][calls.count(system) - 1])

    monkeypatch.setattr(compare_peers, "measure", measure)
    rows = compare_peers.run_block(Workload(), "float32", 1, ["fastnn", "jax"], 100.0, rounds=3)
    assert calls == ["fastnn", "jax"] * 3
    fastnn, jax = rows
    assert fastnn["round_medians"] == [1.0, 1.2, 5.0] and fastnn["median_s"] == 1.2
    assert jax["median_s"] == 2.2 and jax["ratio_to_fastnn"] == pytest.approx(2.2 / 1.2)
    assert fastnn["gflops"] == pytest.approx(FLOPS / 1.2 / 1e9)
    assert fastnn["pct_peak"] == pytest.approx(100 * FLOPS / 1.2 / 1e9 / 100.0)
    assert fastnn["rounds"] == 3 and len(fastnn["seconds"]) == 9


def test_one_round_is_the_single_measurement(monkeypatch):
    monkeypatch.setattr(compare_peers, "measure",
                        lambda system, wl, dtype, threads: fake_row(system, 0.5))
    (row,) = compare_peers.run_block(Workload(), "float32", 1, ["fastnn"], None)
    assert row["median_s"] == 0.5 and row["round_medians"] == [0.5]
    assert "pct_peak" not in row


def test_a_failed_round_makes_the_row_an_error(monkeypatch):
    results = iter([fake_row("jax", 1.0), fake_row("jax", None, error="RuntimeError: boom")])
    monkeypatch.setattr(compare_peers, "measure", lambda *args: next(results))
    (row,) = compare_peers.run_block(Workload(), "float32", 1, ["jax"], None, rounds=2)
    assert row["error"] == "RuntimeError: boom" and "median_s" not in row


def test_rounds_below_one_are_refused(capsys):
    with pytest.raises(SystemExit):
        compare_peers.parse_args(["--rounds", "0"])
    assert "--rounds must be at least 1, got 0" in capsys.readouterr().err


def test_thread_scaling_is_each_systems_speedup_beside_the_ceilings():
    def row(system, threads, median, peak=None):
        r = dict(workload="W2", dtype="float32", system=system, threads=threads,
                 median_s=median)
        return r if peak is None else dict(r, peak_gflops=peak)

    rows = [row("fastnn", 1, 1.0, 100.0), row("fastnn", 2, 0.56, 190.0),
            row("fastnn", 4, 0.30, 360.0), row("jax", 1, 1.2), row("jax", 2, 0.8),
            dict(workload="W2", dtype="float32", system="torch", threads=1,
                 error="RuntimeError: boom"), row("torch", 2, 1.5)]
    scaling = compare_peers.thread_scaling(rows)
    by_key = {(s["system"], s["threads"]): s for s in scaling}
    assert set(by_key) == {("fastnn", 2), ("fastnn", 4), ("jax", 2)}  # torch: no timed base
    assert by_key["fastnn", 2]["speedup"] == pytest.approx(1.0 / 0.56)
    assert by_key["fastnn", 2]["peak_speedup"] == pytest.approx(1.9)
    assert by_key["fastnn", 4]["from_threads"] == 1
    assert by_key["fastnn", 4]["peak_speedup"] == pytest.approx(3.6)
    assert by_key["jax", 2]["speedup"] == pytest.approx(1.5)
    assert by_key["jax", 2]["peak_speedup"] is None
