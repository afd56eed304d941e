"""Training next to other threads and processes, and in unusual environments.

Tiny problems only (32 rows, 8-16-3 networks, a few epochs): what is tested is that
nothing aborts, that results do not depend on where a fit runs (bitwise), and that
thread settings are restored.

Numba's threading layers after fork() and under threads (Numba docs, "The Threading
Layers", extra notes; checked here with Numba 0.68 on Linux):

* ``omp`` with GNU OpenMP (libgomp, Linux; what fastnn asks for first): thread-safe,
  NOT fork-safe.  When a process that has run a parallel region forks, and the child
  starts a parallel region, Numba prints "Terminating: fork() called from a process
  already using GNU OpenMP, this is unsafe.", raises SIGTERM in the child and skips
  the region.  Without a handler the child dies; but ``fit`` (catch_signals=True, in
  the main thread) handles SIGTERM as "stop after this epoch", so the child's fit
  returns normally after one epoch in which nothing was computed.  Serial kernels
  (``predict_output``) and ``backend="numpy"`` work in the child.  (Intel's and
  LLVM's OpenMP runtimes, used on other platforms, are fork-safe.)
* ``tbb``: thread-safe and fork-safe (Numba's "safe" choice); needs the ``tbb`` package.
* ``workqueue`` (the fallback that always exists): fork-safe, NOT thread-safe: two
  Python threads running parallel kernels at once abort the whole process ("Numba
  workqueue threading layer is terminating: Concurrent access has been detected").

Processes started with "spawn" or "forkserver", and joblib's loky workers, are fresh
interpreters and are not affected by any of this.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numba
import numpy as np
import pytest
import threadpoolctl

import fastnn
from fastnn import Architecture, fit, init_params, predict_output

from .conftest import assert_close

#: Two different networks; MODELS["a"] is the one the single-model tests use.
MODELS = {
    "a": Architecture((8, 16, 3), "tanh", "softmax", "float64"),
    "b": Architecture((8, 16, 3), "relu", "softmax", "float32"),
}
#: 20 epochs of 4 mini-batches: a few milliseconds, long enough for threads to interleave.
SETTINGS = dict(epochs=20, batch_size=8, lr=0.1, random_state=1)
ROUNDS = 5


def data():
    rng = np.random.default_rng(7)
    return rng.standard_normal((32, 8)), np.eye(3)[rng.integers(0, 3, 32)]


def start(name="a"):
    return init_params(MODELS[name], "glorot_uniform", random_state=0)


def train_with_history(name="a", **changes):
    """Train model `name` from its start (a fresh copy every call): (weights, losses,
    stop reason)."""
    X, Y = data()
    params = start(name)
    history = fit(MODELS[name], params, X, Y, **dict(SETTINGS, **changes))
    return params, list(history.loss), getattr(history, "stop_reason", None)


def train(name="a", **changes):
    """The weights after training model `name` from its start."""
    return train_with_history(name, **changes)[0]


def train_and_report(name="a", **changes):
    """train(), plus where it ran: (params, pid, Numba's thread count, threading layer)."""
    params = train(name, **changes)
    return params, os.getpid(), numba.get_num_threads(), numba.threading_layer()


def assert_same_bits(actual, desired, what):
    assert actual.dtype == desired.dtype and actual.tobytes() == desired.tobytes(), \
        f"{what}: weights differ from a sequential run (max |diff| " \
        f"{np.max(np.abs(actual.astype(float) - desired.astype(float)))})"


@pytest.fixture(scope="module")
def sequential():
    """Each model trained once in this process, in this thread: the reference results."""
    return {name: train(name) for name in MODELS}


@pytest.fixture(scope="module")
def layer(sequential):
    """Numba's threading layer (known only after a parallel kernel has run)."""
    return numba.threading_layer()


def run_threads(targets):
    """Run the callables at once, each in its own thread.

    Returns their results and whether all of them were running at one moment; raises
    the first exception a thread raised.  A short switch interval makes the threads
    take turns at the GIL every few microseconds, so that fits of a few milliseconds
    interleave instead of running one after the other.
    """
    barrier = threading.Barrier(len(targets))
    results, spans, errors = [None] * len(targets), [None] * len(targets), []

    def run(i):
        try:
            barrier.wait(timeout=30)
            began = time.perf_counter()
            results[i] = targets[i]()
            spans[i] = (began, time.perf_counter())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(thread.is_alive() for thread in threads), "a training thread hangs"
    if errors:
        raise errors[0]
    overlapped = max(b for b, _ in spans) < min(e for _, e in spans)
    return results, overlapped


# ---------------------------------------------------------------------------
# Python threads
# ---------------------------------------------------------------------------


def refuse_workqueue(layer):
    if layer == "workqueue":
        pytest.fail("Numba runs on its workqueue threading layer, which aborts the process "
                    "when two threads run parallel kernels at once (see the module docstring)")


def test_two_threads_train_two_different_models_at_once(sequential, layer):
    refuse_workqueue(layer)
    overlapped = []
    for _ in range(ROUNDS):
        (a, b), at_once = run_threads([lambda: train("a"), lambda: train("b", threads=2)])
        assert_same_bits(a, sequential["a"], "model a in a thread")
        assert_same_bits(b, sequential["b"], "model b in a thread")
        overlapped.append(at_once)
    assert any(overlapped), "the two fits never ran at the same time: the test proves nothing"


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_two_threads_train_copies_of_the_same_start(sequential, layer, threads):
    refuse_workqueue(layer)
    if threads is not None and threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"Numba has {numba.config.NUMBA_NUM_THREADS} thread(s)")
    X, _ = data()
    expected = predict_output(MODELS["a"], sequential["a"], X)
    overlapped = []
    for _ in range(ROUNDS):
        results, at_once = run_threads([lambda: train("a", threads=threads)] * 2)
        for params in results:
            assert_same_bits(params, sequential["a"], f"threads={threads}")
            assert_same_bits(predict_output(MODELS["a"], params, X), expected, "prediction")
        overlapped.append(at_once)
    assert any(overlapped), "the two fits never ran at the same time: the test proves nothing"


# ---------------------------------------------------------------------------
# joblib workers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_joblib_workers_give_the_sequential_result(sequential, layer, backend):
    joblib = pytest.importorskip("joblib")
    if backend == "threading":
        refuse_workqueue(layer)
    runs = joblib.Parallel(n_jobs=2, backend=backend)(
        joblib.delayed(train_and_report)("a") for _ in range(4))
    for params, *_ in runs:
        assert_same_bits(params, sequential["a"], f"joblib {backend} worker")
    pids = {pid for _, pid, _, _ in runs}
    if backend == "loky":
        # Fresh interpreters (loky does not fork), where joblib limits every thread pool,
        # Numba's included (NUMBA_NUM_THREADS), to cpu_count() // n_jobs, unless the
        # variable is set here (as .ci/run sets it): then the children inherit its value.
        limit = int(os.environ.get("NUMBA_NUM_THREADS", max(1, os.cpu_count() // 2)))
        assert os.getpid() not in pids
        assert all(threads <= limit for _, _, threads, _ in runs)
    else:
        assert pids == {os.getpid()}


# ---------------------------------------------------------------------------
# fork
# ---------------------------------------------------------------------------


def run_in_forked_child(work, timeout=120):
    """(exit code, result of work() in a forked child, or None if it sent none)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def child():
        try:
            sender.send(("result", work()))
        except BaseException as exc:  # noqa: BLE001 - sent to the parent
            sender.send(("error", repr(exc)))

    process = context.Process(target=child)
    process.start()
    sender.close()
    message = None
    if receiver.poll(timeout):
        try:
            message = receiver.recv()
        except EOFError:  # the child died without sending anything
            pass
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
    if message is not None and message[0] == "error":
        pytest.fail(f"the forked child raised {message[1]}")
    return process.exitcode, None if message is None else message[1]


def describe_exit(code):
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_training_in_a_forked_child_matches_the_parent_or_refuses_clearly(sequential, layer):
    """A child forked after the parent trained (the `sequential` fixture started the
    threading layer) trains the same weights, or, where the layer is GNU OpenMP (not
    fork-safe), gets a RuntimeError that says what to do: never silently untrained
    weights (OpenMP's fork guard sends SIGTERM and skips the parallel regions)."""

    def work():
        try:
            return "trained", train_with_history()
        except RuntimeError as exc:
            return "refused", str(exc)

    code, result = run_in_forked_child(work)
    assert code == 0 and result is not None, f"the forked child {describe_exit(code)}"
    outcome, value = result
    if layer == "omp":
        assert outcome == "refused" and "'spawn'" in value and "fork-safe" in value, value
    else:
        params, losses, stop_reason = value
        assert len(losses) == SETTINGS["epochs"] and stop_reason is None
        assert_same_bits(params, sequential["a"], "forked child")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_prediction_and_numpy_training_work_in_a_forked_child(sequential, layer):
    """What does not start a parallel region is fork-safe with every layer."""
    X, Y = data()
    expected = predict_output(MODELS["a"], sequential["a"], X)
    reference = train("a", backend="numpy")

    def work():
        return predict_output(MODELS["a"], sequential["a"], X), train("a", backend="numpy")

    code, result = run_in_forked_child(work)
    assert code == 0 and result is not None, f"the forked child {describe_exit(code)}"
    assert_same_bits(result[0], expected, "prediction in a forked child")
    assert_same_bits(result[1], reference, "numpy backend in a forked child")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
@pytest.mark.skipif(fastnn.config.NUMBA_MAX_THREADS < 2, reason="needs 2 threads")
def test_prediction_on_threads_works_in_a_forked_child(sequential):
    """Several row ranges are predicted on a thread pool that the process keeps; a child
    forked after the parent used it needs one of its own (the parent's threads do not
    exist there) instead of waiting for them forever."""
    X = np.random.default_rng(3).standard_normal((3 * fastnn.config.PREDICT_CHUNK_ROWS, 8))
    expected = predict_output(MODELS["a"], sequential["a"], X, threads=2)
    assert_same_bits(expected, predict_output(MODELS["a"], sequential["a"], X, threads=1),
                     "prediction on 2 threads")

    code, result = run_in_forked_child(
        lambda: predict_output(MODELS["a"], sequential["a"], X, threads=2), timeout=60)
    assert code == 0 and result is not None, f"the forked child {describe_exit(code)}"
    assert_same_bits(result, expected, "prediction on 2 threads in a forked child")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_training_in_a_fresh_child_process_matches_the_parent(sequential, method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    context = multiprocessing.get_context(method)
    with context.Pool(1) as pool:
        params, pid, _, _ = pool.apply(train_and_report, ("a",))
    assert pid != os.getpid()
    assert_same_bits(params, sequential["a"], f"{method} child")


# ---------------------------------------------------------------------------
# Environment: NUMBA_DISABLE_JIT, an unwritable cache directory
# ---------------------------------------------------------------------------

SCRIPT = """
import sys
import numpy as np
import numba
from fastnn import Architecture, fit, init_params, predict_output
from fastnn.kernels import epoch

arch = Architecture((8, 16, 3), "tanh", "softmax", "float64")  # MODELS["a"], data()
rng = np.random.default_rng(7)
X, Y = rng.standard_normal((32, 8)), np.eye(3)[rng.integers(0, 3, 32)]
out = {}
for backend in ("numba", "numpy"):
    params = init_params(arch, "glorot_uniform", random_state=0)
    fit(arch, params, X, Y, backend=backend, **{settings!r})
    out[backend] = params
    out[backend + "_output"] = predict_output(arch, params, X, backend=backend)
np.savez(sys.argv[1], **out)
print("jit disabled:", bool(numba.config.DISABLE_JIT),
      "compiled:", isinstance(epoch.train_epoch, numba.core.dispatcher.Dispatcher))
"""


def run_script(tmp_path, **env_changes):
    """Run SCRIPT in a fresh interpreter with the fastnn of this process; (result, arrays)."""
    env = dict(os.environ, PYTHONPATH=str(Path(fastnn.__file__).parent.parent), **env_changes)
    env.pop("FASTNN_CACHE", None)
    out = tmp_path / "out.npz"
    script = SCRIPT.replace("{settings!r}", repr(SETTINGS))
    result = subprocess.run([sys.executable, "-c", script, str(out)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with np.load(out) as arrays:
        return result, dict(arrays)


def test_disable_jit_runs_the_kernels_as_python_and_matches_the_reference(tmp_path, sequential):
    result, out = run_script(tmp_path, NUMBA_DISABLE_JIT="1")
    assert "jit disabled: True compiled: False" in result.stdout
    # float64: the suite's tolerance for compiled against reference, rtol 1e-10.
    assert_close(out["numba"], out["numpy"], "float64")
    assert_close(out["numba_output"], out["numpy_output"], "float64")
    # The same source, interpreted instead of compiled: as close to the compiled run.
    assert_close(out["numba"], sequential["a"], "float64")


def check_cache_fallback(tmp_path, cache_dir, sequential):
    result, out = run_script(tmp_path, NUMBA_CACHE_DIR=str(cache_dir))
    assert "compiled: True" in result.stdout
    assert ("NUMBA_CACHE_DIR" in result.stderr and "is not writable" in result.stderr) or \
        "no writable cache directory" in result.stderr, result.stderr
    assert_same_bits(out["numba"], sequential["a"], "fit with an unwritable NUMBA_CACHE_DIR")


def test_read_only_numba_cache_dir_warns_and_still_trains(tmp_path, sequential):
    cache_dir = tmp_path / "read-only-cache"
    cache_dir.mkdir()
    cache_dir.chmod(0o555)
    try:
        try:  # rather than os.geteuid() == 0: root without CAP_DAC_OVERRIDE cannot either
            (cache_dir / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("this user can write into read-only directories (root)")
        check_cache_fallback(tmp_path, cache_dir, sequential)
        assert list(cache_dir.iterdir()) == []
    finally:
        cache_dir.chmod(0o755)


def test_uncreatable_numba_cache_dir_warns_and_still_trains(tmp_path, sequential):
    """The same for any user, root included: no one can create a directory inside a file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    check_cache_fallback(tmp_path, blocker / "numba-cache", sequential)


# ---------------------------------------------------------------------------
# Thread settings are restored when training raises
# ---------------------------------------------------------------------------


def blas_threads():
    return [(pool["internal_api"], pool["filepath"], pool["num_threads"])
            for pool in threadpoolctl.threadpool_info()]


def raising_callback(epoch, logs):
    raise RuntimeError("stop")


FAILURES = {
    "callback raises": (dict(callbacks=[raising_callback]), RuntimeError),
    "diverges": (dict(lr=1e308), fastnn.DivergenceError),  # overflows in epoch 1
}


@pytest.mark.parametrize("failure", FAILURES)
def test_numba_threads_are_restored_when_fit_raises(failure):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread")
    changes, error = FAILURES[failure]
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with pytest.raises(error):
            train("a", threads=2, **changes)
        assert numba.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            train("a", threads=10**6)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(previous)


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_blas_threads_are_restored_when_numpy_fit_raises(failure):
    changes, error = FAILURES[failure]
    before = blas_threads()
    with pytest.raises(error):
        train("a", backend="numpy", threads=1, **changes)
    assert blas_threads() == before


def test_blas_threads_are_restored_after_overlapping_numpy_fits():
    """BLAS's limit is process-wide: were two fits to overlap, A (saves N, sets 1), B
    (saves 1), A leaves (restores N), B leaves (restores 1) would leave 1 thread.  So
    numpy-backend fits with threads= take turns: B cannot enter while A is inside."""
    if all(threads == 1 for _, _, threads in blas_threads()):
        pytest.skip("BLAS has a single thread already")
    before = blas_threads()
    a_inside, b_inside = threading.Event(), threading.Event()
    overlapped = []

    def a_waits(epoch, logs):
        a_inside.set()
        overlapped.append(b_inside.wait(0.5))  # B would be inside by now if it could be

    thread_a = threading.Thread(target=train, kwargs=dict(backend="numpy", threads=1,
                                                          epochs=1, callbacks=[a_waits]))
    thread_b = threading.Thread(target=train, kwargs=dict(
        backend="numpy", threads=1, epochs=1, callbacks=[lambda epoch, logs: b_inside.set()]))
    thread_a.start()
    assert a_inside.wait(30)
    thread_b.start()
    thread_a.join(30)
    thread_b.join(30)
    assert overlapped == [False] and b_inside.is_set()
    assert blas_threads() == before
