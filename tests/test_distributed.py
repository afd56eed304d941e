"""fastnn.distributed on a LocalCluster of two worker processes (the dask extra).

The reference for data-parallel training is ``trainer.fit``: with one partition a
run must equal it bitwise; with two partitions it must be deterministic and reach
the same accuracy on digits.  Worker loss is provoked by killing a worker process
(SIGKILL, so nothing is cleaned up) between two rounds.
"""

import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import sklearn.base

pytest.importorskip("distributed")
import dask.array as da  # noqa: E402
import joblib  # noqa: E402
from distributed import Client, get_task_stream  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import fastnn  # noqa: E402
from fastnn import Architecture, FastMLPClassifier, init_params, predict_output  # noqa: E402
from fastnn import distributed as fd  # noqa: E402
from fastnn import trainer  # noqa: E402


#: Compiles (or loads) the kernels the tests use, in a process of its own.
WARM_UP = """
import numpy as np
from fastnn import Architecture, fit, init_params, predict_output
for dtype in ("float32", "float64"):
    arch = Architecture((4, 3, 2), "sigmoid", "softmax", dtype)
    params = init_params(arch, random_state=0)
    fit(arch, params, np.ones((8, 4)), np.eye(2)[[0, 1] * 4], epochs=1, batch_size=4)
    predict_output(arch, params, np.ones((8, 4)))
"""


@pytest.fixture(scope="module")
def client():
    # Compile once, into the cache, rather than in each worker at the same time.
    subprocess.run([sys.executable, "-c", WARM_UP], check=True)
    with fd.local_cluster(2, silence_logs=40) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def data(digits):
    """Digits in float32: (X_train, X_test, Y_train, Y_test)."""
    return [np.asarray(a, dtype=np.float32) for a in digits]


ARCH = Architecture((64, 32, 10), "sigmoid", "softmax", "float32")


def on_a_worker(client, function, *args):
    """function(*args), run in a worker process.

    The single-machine references of the bitwise comparisons run there, in a process
    like the ones that run the partitions' tasks.  (Fresh and cached kernels now agree
    bitwise, tests/test_cache.py; running the references on a worker keeps the
    comparison independent of that.)
    """
    return client.submit(function, *args, pure=False).result()


def reference_fit(X, Y, kwargs):
    """trainer.fit from the test's initial weights: (params, history, next draw of its rng)."""
    params = init_params(ARCH, "glorot_uniform", 0)
    rng = np.random.RandomState(5)
    history = fastnn.fit(ARCH, params, X, Y, random_state=rng, **kwargs)
    return params, history, rng.randint(2**31)


def accuracy(arch, params, X, Y):
    return float(np.mean(predict_output(arch, params, X).argmax(1) == Y.argmax(1)))


@pytest.mark.parametrize("sync_every", ["epoch", 3])
def test_one_partition_is_trainer_fit_bitwise(client, data, sync_every):
    X, _, Y, _ = data
    kwargs = dict(epochs=3, batch_size=50, optimizer="adam", l2=1e-4, metrics=["accuracy"])
    expected, history_expected, next_draw = on_a_worker(client, reference_fit, X, Y, kwargs)
    params = init_params(ARCH, "glorot_uniform", 0)
    rng = np.random.RandomState(5)
    history = fd.fit(ARCH, params, da.from_array(X, chunks=(-1, 16)), Y, client=client,
                     random_state=rng, sync_every=sync_every, **kwargs)
    np.testing.assert_array_equal(params, expected)
    assert history.loss == history_expected.loss
    # The running accuracy, summed on the worker across the epoch's rounds.
    assert history.history["accuracy"] == history_expected.history["accuracy"]
    assert history.optimizer.iterations == history_expected.optimizer.iterations
    np.testing.assert_array_equal(history.optimizer.slots, history_expected.optimizer.slots)
    assert rng.randint(2**31) == next_draw  # the generator is left where trainer.fit leaves it
    assert len(history.rounds) == (3 if sync_every == "epoch" else 3 * 11)  # 33 batches / epoch


def test_two_partitions_are_deterministic(client, data):
    X, _, Y, _ = data
    runs = []
    for chunks in (809, 809, 1617):
        params = init_params(ARCH, "glorot_uniform", 0)
        fd.fit(ARCH, params, da.from_array(X, chunks=(chunks, 64)), Y, client=client, epochs=2,
               batch_size=64, lr=0.5, sync_every=4, random_state=1,
               optimizer={"name": "sgd", "momentum": 0.9})
        runs.append(params)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])  # a different partitioning, different weights


def test_two_workers_reach_single_machine_accuracy_on_digits(client, digits):
    X, X_test, Y, Y_test = digits  # float64, the tutorial network
    arch = Architecture((64, 128, 128, 10), "sigmoid", "softmax", "float64")
    single = init_params(arch, "glorot_uniform", 0)
    fastnn.fit(arch, single, X, Y, epochs=60, batch_size=64, lr=0.5, random_state=0)
    accuracies = {}
    for sync_every in ("epoch", 8):
        params = init_params(arch, "glorot_uniform", 0)
        history = fd.fit(arch, params, X, Y, client=client, partitions=2, epochs=60,
                         batch_size=64, lr=0.5, random_state=0, sync_every=sync_every)
        assert {r["partitions"] for r in history.rounds} == {2}
        accuracies[sync_every] = accuracy(arch, params, X_test, Y_test)
    expected = accuracy(arch, single, X_test, Y_test)
    assert expected > 0.97
    for sync_every, value in accuracies.items():
        assert abs(value - expected) <= 0.01, (sync_every, value, expected)


def test_partitions_on_both_workers_with_one_thread_each(client, data):
    X, _, Y, _ = data
    _, placement = fd._place_partitions(client, ARCH, *fd._partitioned(X, Y, None, 2), None)
    workers = client.sync(client.scheduler.identity, n_workers=-1)["workers"]
    assert sorted(placement) == sorted(workers)
    # local_cluster gave each worker its share of this machine's cores as Numba's pool
    share = max(1, (os.cpu_count() or 1) // 2)
    assert set(client.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS).values()) == {share}


def test_inputs_read_lazily_from_npy_files_on_the_workers(client, data, tmp_path):
    X, _, Y, _ = data
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    X_lazy, Y_lazy = fd.from_npy(tmp_path / "X.npy", 809), fd.from_npy(tmp_path / "Y.npy", 809)
    assert X_lazy.chunks == ((809, 808), (64,))
    assert len(pickle.dumps(dict(X_lazy.dask))) < 5000  # the graph holds paths, not the data
    runs = []
    for X_in, Y_in in ((X_lazy, Y_lazy), (da.from_array(X, chunks=(809, 64)), Y)):
        params = init_params(ARCH, "glorot_uniform", 0)
        fd.fit(ARCH, params, X_in, Y_in, client=client, epochs=2, batch_size=64, lr=0.5,
               random_state=0)
        runs.append(params)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_estimator_takes_dask_arrays(client, data):
    X, _, Y, _ = data
    y = Y.argmax(1)
    kwargs = dict(hidden_layer_sizes=(16,), max_iter=4, learning_rate_init=0.01, random_state=0,
                  threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        expected = on_a_worker(client, FastMLPClassifier(**kwargs).fit, X, y)
        model = FastMLPClassifier(**kwargs).fit(da.from_array(X, chunks=(-1, 64)),
                                                da.from_array(y, chunks=500))
        two = FastMLPClassifier(**kwargs).fit(da.from_array(X, chunks=(809, 64)),
                                              da.from_array(y, chunks=809))
    np.testing.assert_array_equal(model._params, expected._params)
    assert model.loss_curve_ == expected.loss_curve_ and model.t_ == expected.t_
    np.testing.assert_array_equal(model.classes_, expected.classes_)
    np.testing.assert_array_equal(model.predict(X), expected.predict(X))
    assert two.n_iter_ == 4 and two.score(X, y) > 0.5  # trained (chance: 0.1)
    with pytest.raises(ValueError, match="partial_fit does not take Dask arrays"):
        FastMLPClassifier().partial_fit(da.from_array(X), y, classes=np.arange(10))


def test_grid_search_under_joblib_dask_backend(client, data):
    X, _, Y, _ = data
    y = Y.argmax(1)[:600]
    search = GridSearchCV(FastMLPClassifier(max_iter=5, random_state=0, threads=1),
                          {"hidden_layer_sizes": [(8,), (32,)], "learning_rate_init": [1e-3, 1e-2]},
                          cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = on_a_worker(client, sklearn.base.clone(search).fit, X[:600], y).cv_results_
        with joblib.parallel_config(backend="dask"), get_task_stream(client) as tasks:
            search.fit(X[:600], y)
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"],
                                  expected["mean_test_score"])
    assert search.best_params_ == {"hidden_layer_sizes": (32,), "learning_rate_init": 1e-2}
    assert len({task["worker"] for task in tasks.data}) == 2  # both workers took part


class KillWorker(trainer.Callback):
    """Kill (SIGKILL) the worker holding partition `partition` after round `at`."""

    def __init__(self, client, address, at):
        self.client, self.address, self.at = client, address, at

    def on_round_end(self, round, logs):
        if round == self.at:
            pid = self.client.run(os.getpid, workers=[self.address])[self.address]
            os.kill(pid, signal.SIGKILL)


def holder(client, X, Y, partition):
    return fd._place_partitions(client, ARCH, *fd._partitioned(X, Y, None, 2), None)[1][partition]


@pytest.mark.parametrize("on_worker_loss", ["raise", "continue"])
def test_killed_worker_is_reported_and_the_run_resumes(client, data, tmp_path, on_worker_loss):
    X, _, Y, _ = data
    kwargs = dict(client=client, partitions=2, epochs=4, batch_size=64, lr=0.5, sync_every=5,
                  random_state=0, optimizer={"name": "sgd", "momentum": 0.9})
    expected = init_params(ARCH, "glorot_uniform", 0)
    fd.fit(ARCH, expected, X, Y, **kwargs)
    params = init_params(ARCH, "glorot_uniform", 0)
    kill = KillWorker(client, holder(client, X, Y, 1), at=4)  # 3 rounds per epoch: in epoch 2
    checkpoint = tmp_path / "run.npz"
    if on_worker_loss == "continue":
        with pytest.warns(RuntimeWarning, match="round 5 ran partition 1 on .* training goes on"):
            fd.fit(ARCH, params, X, Y, callbacks=[kill], on_worker_loss="continue", **kwargs)
        np.testing.assert_array_equal(params, expected)
        return
    with pytest.raises(fd.WorkerLostError, match=r"stopped in round 5 \(epoch 2\).*partition 1"
                       r".*averaged after round 4 are kept; resume with") as caught:
        fd.fit(ARCH, params, X, Y, callbacks=[kill], checkpoint=checkpoint, **kwargs)
    state = caught.value.state
    assert (caught.value.round, state.rounds, state.history.epochs) == (5, 4, 1)
    np.testing.assert_array_equal(params, state.params)  # the last averaged weights
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker
    history = fd.fit(ARCH, params, X, Y, resume=state, **kwargs)
    np.testing.assert_array_equal(params, expected)
    assert history.epochs == 4 and len(history.rounds) == 12
    arch, saved = fd.RunState.load(checkpoint)
    again = init_params(ARCH, "glorot_uniform", 0)
    fd.fit(arch, again, X, Y, resume=saved, **kwargs)
    np.testing.assert_array_equal(again, expected)


def test_command_line_scheduler(tmp_path):
    """--scheduler local:1 trains bitwise as the command line does alone; bad values exit 2."""
    def cli(*args):  # run where this process's fastnn is: the same sources and Numba cache
        return subprocess.run([sys.executable, "-m", "fastnn.train", "--epochs", "3", "--quiet",
                               "--validation-split", "0.1", *map(str, args)], capture_output=True,
                              text=True, timeout=180, cwd=Path(fastnn.__file__).parents[1])

    alone = cli("--save", tmp_path / "alone.npz")
    spread = cli("--save", tmp_path / "dask.npz", "--scheduler", "local:1")
    assert alone.returncode == spread.returncode == 0, spread.stderr
    np.testing.assert_array_equal(fastnn.model_io.load(tmp_path / "dask.npz").params,
                                  fastnn.model_io.load(tmp_path / "alone.npz").params)
    for args, message in ((["--scheduler", "local:0"], "worker count N >= 1"),
                          (["--sync-every", "2"], "--sync-every applies to --scheduler"),
                          (["--scheduler", "local:1", "--verify"], "not with --scheduler")):
        result = cli(*args)
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_bad_arguments(client, data):
    X, _, Y, _ = data
    params = init_params(ARCH, "glorot_uniform", 0)
    with pytest.raises(ValueError, match="sync_every"):
        fd.fit(ARCH, params, X, Y, client=client, epochs=1, sync_every=0)
    regression = Architecture((64, 8, 10), "sigmoid", "identity", "float32")
    with pytest.raises(ValueError, match="accuracy needs a softmax or sigmoid head"):
        fd.fit(regression, init_params(regression, "glorot_uniform", 0), X, Y, client=client,
               epochs=1, metrics=["accuracy"])
    history = fd.fit(ARCH, params, X, Y, client=client, epochs=1, partitions=2, batch_size=64)
    with pytest.raises(ValueError, match="resume needs the partitioning"):
        fd.fit(ARCH, params, X, Y, client=client, epochs=2, partitions=3, batch_size=64,
               resume=history.run)
    with pytest.raises(ValueError, match="local:N needs a worker count"):
        with fd.connect("local:0"):
            pass


def test_core_does_not_import_dask():
    code = ("import sys, fastnn, fastnn.trainer, fastnn.estimators, fastnn.models, "
            "fastnn.model_io; fastnn.FastMLPClassifier(); "
            "assert 'dask' not in sys.modules, 'dask imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
