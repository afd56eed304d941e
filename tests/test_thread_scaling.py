"""scripts/thread_scaling.py's independent runs: started together, each result read back.

The trainings themselves are not run here (each child would compile or load fastnn's
kernels); a stand-in child keeps the protocol: "ready", wait for a line, then a number.
"""

import sys

import pytest

from scripts import thread_scaling  # the repository root is on pytest's path

CHILD = """
import sys
cpu = int(sys.argv[1])
print("a line before ready is skipped", flush=True)
print("ready", flush=True)
told = sys.stdin.readline()
print(0.5 + cpu if told == "go\\n" else -1)
"""


def test_independent_runs_start_together_and_report_each_median():
    cpus = sorted(thread_scaling.os.sched_getaffinity(0))[:2]
    medians = thread_scaling.independent_runs("W1", "float32", 3, len(cpus),
                                              command=[sys.executable, "-c", CHILD])
    assert medians == [0.5 + cpu for cpu in cpus]


def test_more_runs_than_cpus_are_refused():
    with pytest.raises(ValueError, match="need as many CPUs"):
        thread_scaling.independent_runs("W1", "float32", 3, 100000, command=["true"])


def test_a_child_that_fails_before_its_timed_epochs_is_an_error():
    with pytest.raises(RuntimeError, match="failed before its timed epochs"):
        thread_scaling.independent_runs("W1", "float32", 3, 1,
                                        command=[sys.executable, "-c", "raise SystemExit(1)"])


@pytest.mark.parametrize("argv, message", [
    (["--threads", "2,4", "--independent"], "start --threads with 1"),
    (["--threads", "1,100000", "--independent"], "needs a CPU per run"),
])
def test_independent_needs_one_thread_first_and_a_cpu_per_run(argv, message, capsys):
    with pytest.raises(SystemExit):
        thread_scaling.main(argv)
    assert message in capsys.readouterr().err
