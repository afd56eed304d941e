"""The command line, run as users run it: ``python -m fastnn.train`` in a subprocess.

Runs are kept to a few epochs; the compiled kernels are cached on disk by Numba, so
only the first subprocess of a fresh checkout pays for compilation.
"""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import model_io
from fastnn.datasets import load_dataset
from fastnn.network import Architecture, init_params

cli = importlib.import_module("fastnn.train")

# Run the subprocess from the directory that holds the imported package, so that it
# imports the same source files (and shares their Numba cache) as this process.
PACKAGE_ROOT = Path(fastnn.__file__).resolve().parents[1]

ERROR_PREFIX = "fastnn.train: error:"


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastnn.train", *map(str, args)],
                          capture_output=True, text=True, cwd=PACKAGE_ROOT, timeout=timeout)


def accuracies(stdout):
    found = dict(re.findall(r"^(train|test) accuracy\s+([0-9.]+) %", stdout, re.MULTILINE))
    return {split: float(value) for split, value in found.items()}


def test_help_mentions_every_option():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    documented = ["--dataset", "--layers", "--activation", "--head", "--epochs", "--batch-size",
                  "--lr", "--dtype", "--seed", "--init", "--backend", "--threads", "--save",
                  "--quiet", "--log-every"]
    declared = [s for a in cli.build_parser()._actions for s in a.option_strings]
    for option in set(documented) | set(declared):
        assert option in result.stdout, option
    # every option has help text
    assert all(a.help for a in cli.build_parser()._actions)


def test_short_run_reports_accuracy():
    result = run_cli("--epochs", 3)
    assert result.returncode == 0, result.stderr
    scores = accuracies(result.stdout)
    assert set(scores) == {"train", "test"}, result.stdout
    assert all(0.0 <= s <= 100.0 for s in scores.values())
    # 3 epochs of the tutorial network already classify most digits
    assert scores["test"] > 50.0, result.stdout
    assert len(re.findall(r"^epoch +\d+/3 ", result.stdout, re.MULTILINE)) == 3
    assert "training time" in result.stdout


def test_numpy_backend_and_quiet():
    result = run_cli("--backend", "numpy", "--dataset", "iris", "--layers", "8", "--epochs", 3,
                     "--quiet")
    assert result.returncode == 0, result.stderr
    assert set(accuracies(result.stdout)) == {"train", "test"}
    assert not re.search(r"^epoch", result.stdout, re.MULTILINE), result.stdout


def test_save_writes_the_trained_params(tmp_path):
    path = tmp_path / "iris.npz"
    args = ["--dataset", "iris", "--layers", "8", "--epochs", 3, "--batch-size", 16,
            "--seed", 3, "--backend", "numpy", "--quiet"]
    result = run_cli(*args, "--save", path)
    assert result.returncode == 0, result.stderr
    assert path.is_file() and "saved model to" in result.stdout

    model = model_io.load(path)
    # The same training through the Python API must give the same bits.
    data = load_dataset("iris")
    arch = Architecture((4, 8, 3), "sigmoid", "softmax", "float32")
    params = init_params(arch, "normal", random_state=3)
    fastnn.fit(arch, params, data.X_train, data.Y_train, epochs=3, batch_size=16, lr=0.5,
                 random_state=3, backend="numpy")
    assert model.arch == arch
    assert model.params.dtype == params.dtype
    np.testing.assert_array_equal(model.params, params)
    extra = model.metadata["extra"]
    assert extra["dataset"] == "iris" and extra["classes"] == [0, 1, 2]
    assert extra["training"]["epochs"] == 3


@pytest.mark.parametrize("args", [
    ["--lr", "-1"],
    ["--lr", "nan"],
    ["--layers", "0"],
    ["--layers", "abc"],
    ["--epochs", "0"],
    ["--dataset", "nope"],
    ["--dtype", "float16"],
    ["--threads", "0"],
    ["--no-such-option"],
], ids=" ".join)
def test_bad_input_exits_2_with_one_line_on_stderr(args):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), result.stderr


def test_unwritable_save_path_fails_before_training(tmp_path):
    result = run_cli("--epochs", 1, "--save", tmp_path / "missing" / "model.npz")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(ERROR_PREFIX) and "does not exist" in result.stderr


# In-process checks of the remaining exit paths (no subprocess needed).

def test_divergence_exits_2(capsys, tmp_path):
    path = tmp_path / "never.npz"
    code = cli.main(["--dataset", "iris", "--activation", "identity", "--head", "identity",
                     "--lr", "1e6", "--epochs", "3", "--backend", "numpy", "--quiet",
                     "--save", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"{ERROR_PREFIX} training diverged") and err.count("\n") == 1
    assert not path.exists()


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "fit", interrupted)
    assert cli.main(["--dataset", "iris", "--epochs", "1"]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("epochs, step", [(1, 1), (20, 1), (21, 2), (50, 5), (300, 20),
                                          (1000, 50), (10**6, 50000)])
def test_progress_lines_stay_few(epochs, step):
    assert cli._log_step(epochs) == step
    assert epochs / step <= cli.MAX_PROGRESS_LINES


@pytest.mark.slow
def test_defaults_reach_97_percent_on_digits():
    result = run_cli()
    assert result.returncode == 0, result.stderr
    assert accuracies(result.stdout)["test"] >= 97.0, result.stdout
