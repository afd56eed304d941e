"""Numba's on-disk cache: fastnn falls back to in-memory compilation when nothing is writable."""

import contextlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastnn

SCRIPT = """
import warnings
warnings.simplefilter("always")
import numpy as np
from fastnn import config
from fastnn.kernels import add_l2
params, grads = np.ones(5), np.ones(5)
add_l2(params, grads, 0, 5, -0.5)
print("cache", config.CACHE, "params", params.tolist())
"""


def run_with_package(pythonpath, tmp_path, **env_changes):
    env = dict(os.environ, PYTHONPATH=str(pythonpath), **env_changes)
    env.pop("FASTNN_CACHE", None)
    return subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_no_writable_cache_directory_falls_back_to_memory(tmp_path):
    # A zipped package has no __pycache__ to write to; every other candidate directory
    # lies under /dev/null, which cannot hold directories, whoever runs the test.
    package = Path(fastnn.__file__).parent
    archive = tmp_path / "fastnn.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in package.rglob("*.py"):
            zf.write(path, path.relative_to(package.parent))
    result = run_with_package(archive, tmp_path, NUMBA_CACHE_DIR="/dev/null/numba",
                              HOME="/dev/null/home", XDG_CACHE_HOME="/dev/null/cache")
    assert result.returncode == 0, result.stderr
    assert "cache False params [0.5, 0.5, 0.5, 0.5, 0.5]" in result.stdout
    assert "no writable cache directory" in result.stderr


def test_writable_cache_directory_is_used(tmp_path):
    result = run_with_package(Path(fastnn.__file__).parent.parent, tmp_path,
                              NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert "cache True" in result.stdout and "no writable cache directory" not in result.stderr


TRAIN = """
import sys
import numpy as np
from numba.core import event
compiled = set()  # the functions Numba compiles in this process, by name
class Names(event.Listener):
    def on_start(self, ev):
        compiled.add(ev.data["dispatcher"].py_func.__name__)
    def on_end(self, ev):
        if "done" not in compiled:
            compiled.add("done")
            print("first compilation done", file=sys.stderr, flush=True)
event.register("numba:compile", Names())
from fastnn import Adam, Architecture, fit, init_params, predict_output, warm_up
from fastnn.kernels import gemm
print("gemm entries at import:", *sorted(gemm.ENTRIES))
rng = np.random.default_rng(0)
arch = Architecture((12, 24, 4), ("tanh",), "softmax", "float64")
X, Y = rng.standard_normal((200, 12)), np.eye(4)[rng.integers(0, 4, 200)]
params = init_params(arch, "glorot_uniform", 0)
optimizer = Adam(lr=0.01)
fit(arch, params, X, Y, epochs=3, batch_size=16, optimizer=optimizer, l2=0.01, random_state=0,
    progress=True)
outputs = predict_output(arch, params, X)
np.save(sys.argv[1], np.concatenate([params, optimizer.slots.ravel(), outputs.ravel()]))
print("sklearn imported:", "sklearn" in sys.modules)
print("gemm entries after:", *sorted(gemm.ENTRIES))
print("compiled:", " ".join(sorted(compiled - {"done"})))
warm_up([("float64", "adam")], verbose=True)  # compiled by the fit: nothing left to do
"""

NOTICE = "compiling fastnn kernels for float64 + adam (first run only; cached in "


def test_freshly_compiled_and_cached_kernels_train_the_same_bits(tmp_path):
    """A first run (compiling) and a later one (loading Numba's cache) agree bitwise.

    The first run compiles one update rule, Adam's, and no other, and one gemm entry,
    float64's; the second loads that entry when its first product runs.  A third
    run, with the entry's files deleted from the cache but its cached callers kept,
    compiles the entry then and trains the same bits too.  The first run compiles its
    chunk worker in a child process where it can (more than one CPU on Linux:
    ``compilation.compile_aside``) and loads it from the cache; a fourth run, in an empty
    cache with FASTNN_COMPILE_ASIDE=0, compiles everything itself, to the same bits.

    They did not, for Adam, while its update rule let LLVM fuse either of two products
    into a multiply-add: the two compiles chose differently (see config.py).  The
    first run says once, before its progress bar and before its first compilation
    ends, that it compiles, and where the kernels go; the second says nothing of the kind.  Neither imports scikit-learn:
    fastnn.fit and predict_output on plain arrays do not need it.
    """
    cache = tmp_path / "cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env.pop("FASTNN_CACHE", None)
    aside = sys.platform == "linux" and len(os.sched_getaffinity(0)) > 1
    results, errors, compiled_by_run = [], [], []
    for run in ("fresh", "cached", "no entry", "in process"):
        if run == "no entry":
            for path in cache.rglob("*gemm_entry*"):
                path.unlink()
        if run == "in process":
            env.update(NUMBA_CACHE_DIR=str(tmp_path / "cache in process"),
                       FASTNN_COMPILE_ASIDE="0")
        out = tmp_path / f"{run}.npy"
        done = subprocess.run([sys.executable, "-c", TRAIN, str(out)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert "sklearn imported: False" in done.stdout
        assert "fastnn kernels for float64 + adam: already compiled" in done.stderr
        # Imported without a gemm entry; the float64 one made by the fit or its first product.
        assert "gemm entries at import:\n" in done.stdout
        assert "gemm entries after: float64\n" in done.stdout
        results.append(np.load(out))
        errors.append(done.stderr)
        compiled_by_run.append(set(done.stdout.split("compiled:")[1].split()))
        compiled = compiled_by_run[-1]
        if run == "fresh":
            assert any(cache.rglob("*.nbc"))  # the second run has a cache to load
            # Compiled only what the run uses: Adam's update rule, not the other three
            # (kernels.optimizers.RULES); the workers on their own (kernels.workers).
            assert {"adam_step", "update_task"} <= compiled, compiled
            assert not {"sgd_step", "rmsprop_step", "adadelta_step", "optimizer_step"} & compiled
            # The chunk worker: compiled by the child and loaded here (or compiled here).
            assert ("forward_backward_chunks" in compiled) == (not aside), compiled
            assert any(cache.rglob("*forward_backward_chunks*.nbi"))
        if run == "in process":
            assert {"adam_step", "forward_backward_chunks", "update_task"} <= compiled, compiled
    fresh, cached, _, in_process = errors
    for cold in (fresh, in_process):
        assert cold.count("compiling fastnn kernels") == 1
        assert cold.startswith(NOTICE)  # before the progress bar's first line
        assert cold.index(NOTICE) < cold.index("first compilation done")
    assert fresh.startswith(NOTICE + str(cache))
    assert "epoch 3/3 [" in fresh  # (text mode reads the bar's carriage returns as newlines)
    assert "compiling" not in cached and "epoch 3/3 [" in cached
    # The cached run compiled nothing: every kernel came from the cache.  The last one
    # compiled the entry (a cfunc, not in Numba's events) and so the implementation
    # of numba.carray that it calls (an overload named impl), and nothing else.
    assert compiled_by_run[1] == set()
    assert compiled_by_run[2] <= {"impl"}
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_array_equal(results[0], results[3])


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_the_workers_compile_inside_the_compile_notice(monkeypatch, optimizer):
    """A fit compiles its workers (here: makes the chunk worker) while the compile notice
    listens, so that a cold run's first compilation prints it; they compiled before it
    once, and the line came seconds late."""
    from fastnn import trainer
    from fastnn.kernels import epoch, objective

    listening, made_inside = [], []

    @contextlib.contextmanager
    def notice(what, enabled=True, stream=None):
        listening.append(what)
        try:
            yield lambda: False
        finally:
            listening.pop()

    def spy(make):
        def chunk_worker(*args, **kwargs):
            made_inside.append(bool(listening))
            return make(*args, **kwargs)
        return chunk_worker

    monkeypatch.setattr(trainer, "compile_notice", notice)
    monkeypatch.setattr(epoch, "chunk_worker", spy(epoch.chunk_worker))
    monkeypatch.setattr(objective, "chunk_worker", spy(objective.chunk_worker))
    rng = np.random.default_rng(0)
    arch = fastnn.Architecture((4, 5, 3), ("tanh",), "softmax", "float64")
    X, Y = rng.standard_normal((20, 4)), np.eye(3)[rng.integers(0, 3, 20)]
    params = fastnn.init_params(arch, "glorot_uniform", 0)
    if optimizer == "lbfgs":
        trainer.fit_lbfgs(arch, params, X, Y, max_iter=2)
    else:
        fastnn.fit(arch, params, X, Y, epochs=1, batch_size=8, lr=0.1, random_state=0)
    assert made_inside == [True]


ASIDE = """
import os, sys, threading
from fastnn import compilation
os.sched_getaffinity = lambda pid: {0, 1}  # two CPUs, whatever the machine has
marker = sys.argv[1]
def write_pid():
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
wait = compilation.compile_aside(write_pid)
print("started", wait is not None, flush=True)
if wait is not None:
    wait()
    print("child wrote", open(marker).read() != str(os.getpid()), flush=True)
    wait()  # waiting again (the child reaped) is harmless
sys.modules["jax"] = type(sys)("jax")  # stands for JAX (not a test dependency)
print("with jax", compilation.compile_aside(write_pid) is not None)
del sys.modules["jax"]
threading.Thread(target=threading.Event().wait, args=(60,), daemon=True).start()
print("with a thread", compilation.compile_aside(write_pid) is not None)
"""


@pytest.mark.parametrize("setting", ["1", "0"])
def test_compile_aside_forks_a_child_only_where_safe(tmp_path, setting):
    """compile_aside runs its call in a forked child and waits for it; it starts nothing
    with FASTNN_COMPILE_ASIDE=0, while another Python thread runs (a lock held by it at
    the fork could hang the child), or once JAX is imported (its threads are not
    fork-safe; it warns at every fork)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTNN_COMPILE_ASIDE=setting)
    env.pop("FASTNN_CACHE", None)
    done = subprocess.run([sys.executable, "-c", ASIDE, str(tmp_path / "marker")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    if sys.platform == "linux" and setting == "1":
        assert done.stdout.split() == ("started True child wrote True with jax False "
                                       "with a thread False").split()
    else:
        assert done.stdout.split() == "started False with jax False with a thread False".split()


OLDER_CALLER = """
import sys
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic
import fastnn.kernels  # registers the gemm symbols with LLVM

symbol, through_cell = sys.argv[1], sys.argv[2] == "cell"


@intrinsic
def older_gemm_call(typingctx, x):
    # What an older fastnn compiled into gemm's callers: a call of the float64 entry,
    # directly or through a cell, with its 13 arguments (zeros here).
    def codegen(context, builder, signature, args):
        i64, pointer = ir.IntType(64), ir.IntType(8).as_pointer()
        entry_type = ir.FunctionType(ir.VoidType(), [pointer, i64, i64, pointer, i64, pointer,
                                                     i64, pointer] + [i64] * 5)
        if through_cell:
            cell = ir.GlobalVariable(builder.module, entry_type.as_pointer(), symbol)
            entry = builder.load(cell)
        else:
            entry = ir.Function(builder.module, entry_type, symbol)
        null, zero = ir.Constant(pointer, None), ir.Constant(i64, 0)
        builder.call(entry, [null, zero, zero, null, zero, null, zero, null] + [zero] * 5)
        return context.get_dummy_value()
    return types.void(x), codegen


@njit
def caller(x):
    older_gemm_call(x)


caller(1.0)
print("ran on")
"""


@pytest.mark.parametrize("symbol, kind", [("fastnn_gemm_float64", "call"),
                                          ("fastnn_gemm_address_float64", "cell"),
                                          ("fastnn_gemm_cell_float64", "cell"),
                                          ("fastnn_gemm_lr_cell_float64", "cell")])
def test_kernels_of_an_older_fastnn_stop_with_a_message(tmp_path, symbol, kind):
    """Callers that an older fastnn compiled into Numba's cache name the gemm entry by
    an older symbol (gemm.entry_symbol): they reach a message and an abort, never a
    product that reads its arguments with another meaning (the cell of fastnn 0.1.0 at
    c55ec4f read every 3-D b as panels, now a (1, k, n) b is W in place; the entry
    that fastnn_gemm_cell_* held took no learning rate, fastnn_gemm_lr_cell_*'s no
    panel copy)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", OLDER_CALLER, symbol, kind], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "ran on" not in result.stdout
    assert "compiled by an older fastnn" in result.stderr
