"""The command line, run as users run it: ``python -m fastnn.train`` in a subprocess.

Runs are kept to a few epochs on small data; the compiled kernels are cached on disk
by Numba (in NUMBA_CACHE_DIR when the environment sets it, as CI does: subprocesses
inherit it), so only the first subprocess of a fresh checkout pays for compilation.
"""

import csv
import gc
import importlib
import json
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris, make_regression

import fastnn
from fastnn.kernels.clocks import AVAILABLE as clocks_available

cli = importlib.import_module("fastnn.train")

# Run the subprocess from the directory that holds the imported package, so that it
# imports the same source files (and shares their Numba cache) as this process.
PACKAGE_ROOT = Path(fastnn.__file__).resolve().parents[1]
ERROR_PREFIX = "fastnn.train: error:"
SMALL = ["--layers", "8", "--epochs", "2", "--quiet"]


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fastnn.train", *map(str, args)],
                          capture_output=True, text=True, cwd=PACKAGE_ROOT, timeout=timeout)


def scores(stdout):
    """{split: (metric, value)} from the result lines ("test  accuracy 97.78 %  loss ...")."""
    found = re.findall(r"^(train|test|data)\s+(accuracy|r2) ([-0-9.]+)", stdout, re.MULTILINE)
    return {split: (metric, float(value)) for split, metric, value in found}


def assert_usage_error(result, *phrases):
    """Exit 2, nothing on stdout, one line on stderr naming the problem."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])


def assert_same_model(a, b):
    """Two Sequential models with the same bits: weights, optimizer state, generator, history."""
    np.testing.assert_array_equal(a.params, b.params)
    assert a.params.dtype == b.params.dtype
    assert a.optimizer.iterations == b.optimizer.iterations
    np.testing.assert_array_equal(a.optimizer.slots, b.optimizer.slots)
    state_a, state_b = a.rng.get_state(), b.rng.get_state()
    np.testing.assert_array_equal(state_a[1], state_b[1])
    assert state_a[2:] == state_b[2:]
    assert a.history.history.keys() == b.history.history.keys()
    for key in a.history.history:
        if key != "seconds":
            assert a.history.history[key] == b.history.history[key], key


# ---------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Data files of every kind, good and bad, written once for the module."""
    root = tmp_path_factory.mktemp("data")
    iris = load_iris()
    paths = {}

    paths["iris.csv"] = root / "iris.csv"  # header, text labels in the last column
    with open(paths["iris.csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
        for row, label in zip(iris.data, iris.target):
            writer.writerow([*row, iris.target_names[label]])

    paths["noheader.csv"] = root / "noheader.csv"  # no header, integer labels first, ';'
    with open(paths["noheader.csv"], "w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        for row, label in zip(iris.data, iris.target):
            writer.writerow([label, *row])

    X, y = make_regression(n_samples=120, n_features=5, noise=0.5, random_state=1)
    paths["regression.npz"] = root / "regression.npz"
    np.savez(paths["regression.npz"], X=X, y=y)
    paths["X.npy"], paths["y.npy"] = root / "X.npy", root / "y.npy"
    np.save(paths["X.npy"], iris.data)
    np.save(paths["y.npy"], iris.target)

    X_nan = iris.data.copy()
    X_nan[7, 2] = np.nan
    paths["nan.npz"] = root / "nan.npz"
    np.savez(paths["nan.npz"], X=X_nan, y=iris.target)
    paths["nan.csv"] = root / "nan.csv"
    paths["nan.csv"].write_text("a,b,y\n1,2,0\n3,,1\n5,6,0\n7,8,1\n")
    paths["text.csv"] = root / "text.csv"
    paths["text.csv"].write_text("a,b,y\n1,2,0\n3,abc,1\n5,6,0\n7,8,1\n")
    paths["only_x.npz"] = root / "only_x.npz"
    np.savez(paths["only_x.npz"], X=iris.data)
    paths["objects.npz"] = root / "objects.npz"
    np.savez(paths["objects.npz"], X=iris.data, y=np.array([{"a": 1}] * 150, dtype=object))
    paths["data.txt"] = root / "data.txt"
    paths["data.txt"].write_text("1 2 3\n")
    paths["corrupt_model.npz"] = root / "corrupt_model.npz"
    paths["corrupt_model.npz"].write_bytes(b"PK\x03\x04 this is not a model" * 10)
    return paths


@pytest.fixture(scope="module")
def csv_model(files, tmp_path_factory):
    """A model trained from iris.csv (text labels) for 5 epochs, and that run's stdout."""
    path = tmp_path_factory.mktemp("model") / "iris.npz"
    result = run_cli("--data", files["iris.csv"], "--target", "species", "--layers", 8,
                     "--epochs", 5, "--seed", 2, "--save", path)
    assert result.returncode == 0, result.stderr
    return path, result.stdout


# ---------------------------------------------------------------------------
# Success paths
# ---------------------------------------------------------------------------


def test_help_mentions_every_option():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    parser = cli.build_parser()
    declared = [s for a in parser._actions for s in a.option_strings]
    for option in declared:
        assert option in result.stdout, option
    assert all(a.help for a in parser._actions)
    assert "130" in result.stdout and "143" in result.stdout  # exit statuses in the epilog


def test_the_console_script_runs_the_entry_point():
    """pyproject's fastnn-train names the function that ``python -m fastnn.train`` runs."""
    scripts = tomllib.loads((PACKAGE_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fastnn-train"] == "fastnn.train:entry_point"
    code = "import sys; from fastnn.train import entry_point; sys.exit(entry_point())"
    for args, status in ((["--epochs", "0"], 2), ([*SMALL, "--dataset", "iris"], 0)):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                                text=True, cwd=PACKAGE_ROOT, timeout=120)
        assert result.returncode == status, result.stderr
    assert "test  accuracy" in result.stdout


def test_entry_point_returns_mains_status_with_the_collector_frozen(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fastnn.train", "--epochs", "0"])
    assert gc.get_freeze_count() == 0
    try:
        assert cli.entry_point() == 2
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert "--epochs: must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("case", [
    ["--dataset", "iris"],
    ["--dataset", "breast_cancer", "--head", "sigmoid", "--optimizer", "rmsprop", "--schedule",
     "invscaling"],
    ["--dataset", "wine", "--backend", "numpy", "--schedule", "cosine", "--no-shuffle"],
    ["--dataset", "synthetic", "--samples", 200, "--features", 6, "--classes", 3, "--optimizer",
     "adadelta", "--activation", "relu"],
    ["--dataset", "synthetic", "--task", "regression", "--samples", 200, "--features", 4],
    ["--data", "iris.csv", "--target", "species"],
    ["--data", "noheader.csv", "--target", 0],
    ["--data", "regression.npz"],
    ["--data", "X.npy", "--target-file", "y.npy"],
], ids=lambda case: " ".join(map(str, case)))
def test_every_kind_of_data_trains(case, files):
    args = [files[a] if a in files else a for a in case]
    result = run_cli(*args, *SMALL)
    assert result.returncode == 0, result.stderr
    found = scores(result.stdout)
    regression = "regression" in case or "regression.npz" in case
    assert {metric for metric, _ in found.values()} == {"r2" if regression else "accuracy"}
    assert set(found) == {"train", "test"}, result.stdout


def test_metrics_json_and_predictions(tmp_path):
    paths = {name: tmp_path / name for name in ("m.json", "pred.csv")}
    result = run_cli("--dataset", "iris", "--layers", 8, "--epochs", 4, "--validation-split", 0.2,
                     "--metrics-json", paths["m.json"], "--predict", paths["pred.csv"], "--quiet")
    assert result.returncode == 0, result.stderr

    doc = json.loads(paths["m.json"].read_text())
    assert doc["fastnn_version"] == fastnn.__version__ and doc["exit_status"] == 0
    assert doc["config"]["model"]["sizes"] == [4, 8, 3]
    assert doc["config"]["model"]["optimizer"] == {"name": "sgd", "lr": 0.5, "momentum": 0.0,
                                                   "nesterov": False}
    assert doc["config"]["data"]["classes"] == [0, 1, 2]
    values = doc["history"]["values"]
    assert doc["history"]["epochs"] == 4
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"):
        assert len(values[key]) == 4, key
    assert set(doc["final"]) == {"train", "test"}
    assert doc["final"]["test"]["samples"] == 15
    assert 0 <= doc["final"]["test"]["accuracy"] <= 1 and doc["final"]["test"]["loss"] > 0
    # the printed scores are the JSON's
    assert scores(result.stdout)["test"][1] == pytest.approx(
        100 * doc["final"]["test"]["accuracy"], abs=0.005)
    assert {"train_s", "evaluate_s", "total_s"} <= set(doc["timings"])

    with open(paths["pred.csv"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "target", "p_0", "p_1", "p_2"]
    assert len(rows) == 1 + 15
    accuracy = np.mean([row[0] == row[1] for row in rows[1:]])
    assert accuracy == pytest.approx(doc["final"]["test"]["accuracy"])


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")  # the optional 'plot' extra
    path = tmp_path / "curves.png"
    result = run_cli("--dataset", "iris", "--layers", 8, "--epochs", 4, "--validation-split", 0.2,
                     "--plot", path, "--quiet")
    assert result.returncode == 0, result.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_early_stopping(tmp_path):
    path = tmp_path / "m.json"
    # No change is an improvement of more than 10: the first epoch stays the best.
    result = run_cli("--dataset", "iris", "--layers", 8, "--epochs", 50, "--validation-split",
                     0.2, "--early-stopping", 2, "--min-delta", 10, "--metrics-json", path)
    assert result.returncode == 0, result.stderr
    assert "early stopping after epoch 3; best epoch 1, whose weights are kept" in result.stdout
    history = json.loads(path.read_text())["history"]
    assert history["epochs"] == 3 and history["stop_reason"] == "early stopping"
    assert history["best_epoch"] == 1
    assert json.loads(path.read_text())["config"]["fit"]["early_stopping"] == {
        "monitor": "val_loss", "patience": 2, "min_delta": 10.0, "restore_best_weights": True}


def test_profile_reports_every_phase(tmp_path):
    path = tmp_path / "m.json"
    result = run_cli("--layers", 32, "--epochs", 5, "--profile", "--metrics-json", path,
                     "--quiet")
    assert result.returncode == 0, result.stderr
    for phase in ("compile", "epoch", "forward", "backward", "gradient", "update", "shuffle",
                  "remainder", "evaluation"):
        assert re.search(rf"^ +{phase} +-?[0-9.]+ m?s", result.stdout, re.MULTILINE), phase
    assert re.search(r"GFLOP/s = [0-9.]+ % of measured peak [0-9.]+ GFLOP/s", result.stdout)
    report = json.loads(path.read_text())["profile"]
    # the breakdown and the remainder add up to the measured epoch
    assert sum(report["phases_s"].values()) + report["remainder_s"] == pytest.approx(
        report["epoch_s"])
    assert all(seconds >= 0 for seconds in report["phases_s"].values())
    assert report["compile_s"] > 0 and report["peak_gflops"] > 0
    regions = report["regions_s"]  # clocked inside the epochs, where the CPU allows it
    if clocks_available:
        assert re.search(r"^  regions +[0-9.]+ ms  the median of \d+ more epochs", result.stdout,
                         re.MULTILINE)
        assert regions["epochs"] >= 5
        assert 0 < regions["passes"] + regions["tasks"] < regions["epoch"]
    else:
        assert regions is None
    # FLOPs as scripts/roofline.py counts them: 1617 rows of 64-32-10, 26 batches
    pairs = [(64, 32), (32, 10)]
    per_row = sum(2 * a * b for a, b in pairs) * 2 + 2 * 32 * 10 + sum(b for _, b in pairs)
    assert report["flops_per_epoch"]["total"] == 1617 * per_row + 26 * 2 * (65 * 32 + 33 * 10)


@pytest.mark.parametrize("dtype, args", [
    ("float32", ["--layers", 32, "--epochs", 10, "--optimizer", "adam", "--lr", 0.01]),
    ("float64", ["--dataset", "iris", "--layers", 8, "--epochs", 10, "--l2", 0.01,
                 "--optimizer", "sgd", "--momentum", 0.9, "--nesterov"]),
])
def test_verify_passes(dtype, args):
    result = run_cli(*args, "--dtype", dtype, "--verify", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"^verify passed: .* = ([0-9.e+-]+) of max \|w\| \(tolerance ([0-9.e+-]+)",
                      result.stdout, re.MULTILINE)
    assert match, result.stdout
    assert float(match.group(1)) <= float(match.group(2)) == cli.VERIFY_RTOL[dtype]


def test_verify_failure_exits_1(monkeypatch, capsys):
    # The tolerance as the run reads it (fastnn.train is the entry point's shim).
    monkeypatch.setattr(importlib.import_module("fastnn.cli.run"), "VERIFY_RTOL",
                        {"float32": -1.0, "float64": -1.0})
    code = cli.main(["--dataset", "iris", "--layers", "4", "--epochs", "2", "--verify",
                     "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "verify FAILED" in captured.out
    assert captured.err.startswith("fastnn.train: verification failed:")


def test_compile_only_warms_the_common_configurations_and_the_asked_one(monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(importlib.import_module("fastnn.compilation"), "warm_up",
                        lambda configurations, verbose: asked.append((configurations, verbose)))
    assert cli.main(["--compile-only", "--dtype", "float64", "--optimizer", "rmsprop"]) == 0
    assert cli.main(["--compile-only", "--dtype", "float32", "--optimizer", "sgd", "--quiet"]) == 0
    common = fastnn.compilation.COMMON_CONFIGURATIONS
    assert asked == [(common + (("float64", "rmsprop"),), True), (common, False)]
    assert capsys.readouterr().out == ""  # no data loaded, nothing trained


def test_cli_model_is_the_keras_style_model(tmp_path):
    """The same configuration and seed in Python give the CLI's weights, bitwise."""
    from fastnn.datasets import load_dataset
    from fastnn.models import Adam, Dense, Sequential
    from fastnn.schedules import StepDecay

    path = tmp_path / "cli.npz"
    result = run_cli("--dataset", "iris", "--layers", "8,6", "--activation", "tanh",
                     "--init", "glorot_uniform", "--optimizer", "adam", "--lr", 0.01,
                     "--beta2", 0.99, "--schedule", "step", "--step-size", 2, "--gamma", 0.5,
                     "--l2", 1e-3, "--batch-size", 16, "--validation-split", 0.2,
                     "--epochs", 4, "--seed", 7, "--save", path, "--quiet")
    assert result.returncode == 0, result.stderr

    data = load_dataset("iris")
    model = Sequential([Dense(8, input_dim=4, activation="tanh"), Dense(6, activation="tanh"),
                        Dense(3, activation="softmax")],
                       dtype="float32", init="glorot_uniform", random_state=7)
    model.compile(optimizer=Adam(lr=0.01, beta2=0.99), loss="categorical_crossentropy",
                  metrics=["accuracy"], l2=1e-3, schedule=StepDecay(step_size=2, gamma=0.5))
    model.fit(data.X_train, data.Y_train, epochs=4, batch_size=16, validation_split=0.2,
              verbose=0)

    saved = fastnn.load(path)
    assert isinstance(saved, Sequential)
    assert_same_model(saved, model)


@pytest.mark.parametrize("args", [
    [],  # the defaults: digits, 64-128-128-10, SGD
    ["--dataset", "iris", "--layers", 8, "--optimizer", "adam", "--lr", 0.05, "--schedule",
     "plateau", "--lr-patience", 1, "--validation-split", 0.2, "--batch-size", 16],
], ids=["defaults", "adam-plateau-validation"])
def test_resume_continues_bitwise(args, tmp_path):
    first, resumed, straight = (tmp_path / name for name in ("m3.npz", "m5.npz", "ref.npz"))
    result = run_cli(*args, "--epochs", 3, "--save", first)
    assert result.returncode == 0, result.stderr
    if not args:  # the default network's output, by the way
        assert "network 64-128-128-10" in result.stdout and "training time" in result.stdout
        assert len(re.findall(r"^epoch +\d+/3 ", result.stdout, re.MULTILINE)) == 3
        found = scores(result.stdout)
        assert set(found) == {"train", "test"}, result.stdout
        # 3 epochs of the tutorial network already classify most digits
        assert found["test"][0] == "accuracy" and found["test"][1] > 50.0, result.stdout
    result = run_cli("--resume", first, "--epochs", 2, "--save", resumed)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^epoch 5/5 ", result.stdout, re.MULTILINE), result.stdout
    assert run_cli(*args, "--epochs", 5, "--save", straight, "--quiet").returncode == 0
    resumed_model, straight_model = fastnn.load(resumed), fastnn.load(straight)
    assert resumed_model.history.epochs == 5
    assert_same_model(resumed_model, straight_model)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_stops_training_and_the_checkpoint_resumes_bitwise(signum, status, tmp_path):
    """Ctrl-C (or SIGTERM) during training: exit 130 (143) after saving a checkpoint that
    --resume continues bitwise as the uninterrupted run (the SIGTERM case stops there)."""
    checkpoint, resumed, straight = (tmp_path / name for name in ("c.npz", "r.npz", "s.npz"))
    args = ["--dataset", "iris", "--layers", 8, "--log-every", 1, "--optimizer", "adam"]
    proc = subprocess.Popen([sys.executable, "-m", "fastnn.train", *map(str, args),
                             "--epochs", "1000000", "--save", str(checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=PACKAGE_ROOT)
    try:
        for line in proc.stdout:
            if line.startswith("epoch"):
                break
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == status, err
    assert f"{signal.Signals(signum).name} received: training stopped" in err
    model = fastnn.load(checkpoint)
    n = model.history.epochs  # finished epochs; the trainer stops at a batch boundary
    assert 1 <= n < 1000000 and model.history.stop_reason == "interrupted"
    assert model.history.signal == signum
    assert (f"after epoch {n}" if model.history.partial is None else f"in epoch {n + 1}") in err
    if signum != signal.SIGINT:
        return  # the same checkpoint code as SIGINT's, checked below once

    # --resume finishes the interrupted epoch and goes on as if nothing had happened
    assert run_cli("--resume", checkpoint, "--epochs", 2, "--save", resumed,
                   "--quiet").returncode == 0
    result = run_cli(*args, "--epochs", n + 2, "--save", straight, "--quiet")
    assert result.returncode == 0, result.stderr
    assert_same_model(fastnn.load(resumed), fastnn.load(straight))


def test_load_evaluates_and_predicts(csv_model, files, tmp_path):
    path, training_output = csv_model
    result = run_cli("--load", path)
    assert result.returncode == 0, result.stderr
    assert scores(result.stdout) == scores(training_output)  # the recorded split, the same scores
    assert not re.search(r"^epoch", result.stdout, re.MULTILINE)  # no training

    predictions = tmp_path / "pred.csv"
    result = run_cli("--load", path, "--data", files["iris.csv"], "--target", "species",
                     "--predict", predictions)
    assert result.returncode == 0, result.stderr
    assert set(scores(result.stdout)) == {"data"}  # every row of the file
    with open(predictions, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "target", "p_setosa", "p_versicolor", "p_virginica"]
    assert len(rows) == 151 and {row[0] for row in rows[1:]} <= {"setosa", "versicolor",
                                                                 "virginica"}
    accuracy = 100 * np.mean([row[0] == row[1] for row in rows[1:]])
    assert scores(result.stdout)["data"][1] == pytest.approx(accuracy, abs=0.005)

    # features only, no targets: predictions, no scores
    features = tmp_path / "features.csv"
    features.write_text("\n".join(",".join(row.split(",")[:4])
                                  for row in files["iris.csv"].read_text().splitlines()[:11]))
    result = run_cli("--load", path, "--data", features, "--predict", predictions)
    assert result.returncode == 0, result.stderr
    assert scores(result.stdout) == {}
    with open(predictions, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "p_setosa", "p_versicolor", "p_virginica"] and len(rows) == 11


# ---------------------------------------------------------------------------
# Error paths: exit 2, one line on stderr
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, phrase", [
    (["--lr", "-1"], "argument --lr: must be a number in (0, inf), got -1"),
    (["--dataset", "nope"], "argument --dataset: invalid choice: 'nope'"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_options_exit_2(args, phrase):
    assert_usage_error(run_cli(*args), phrase)


# The remaining option checks in-process: the same main() and exit path, without
# paying a Python start-up each.
@pytest.mark.parametrize("args, phrase", [
    (["--lr", "nan"], "--lr"),
    (["--layers", "0"], "--layers"),
    (["--layers", "abc"], "--layers"),
    (["--epochs", "0"], "--epochs"),
    (["--dtype", "float16"], "--dtype"),
    (["--threads", "0"], "--threads"),
    (["--test-size", "1.5"], "--test-size"),
    (["--validation-split", "1"], "--validation-split"),
    (["--quiet", "--verbose"], "not allowed with"),
    (["--beta1", "0.8"], "--beta1 applies to --optimizer adam"),
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to --optimizer sgd"),
    (["--step-size", "3"], "--step-size applies to --schedule step"),
    (["--nesterov"], "--nesterov needs --momentum"),
    (["--min-delta", "0.1"], "--min-delta applies to --early-stopping"),
    (["--no-restore-best"], "--no-restore-best applies to --early-stopping"),
    (["--monitor", "val_accuracy", "--early-stopping", "3"], "needs a validation split"),
    (["--monitor", "speed", "--early-stopping", "3"], "choose loss, accuracy or r2"),
    (["--target", "y"], "--target applies to a --data file"),
    (["--samples", "10"], "apply to --dataset synthetic"),
    (["--dataset", "iris", "--data", "x.csv"], "not both"),
    (["--dataset", "iris", "--head", "identity"], "classification needs --head softmax"),
    (["--dataset", "synthetic", "--task", "regression", "--head", "softmax"],
     "regression needs --head identity"),
    (["--resume", "m.npz"], "--resume needs --epochs"),
    (["--resume", "m.npz", "--epochs", "2", "--lr", "0.1"], "cannot be given"),
    (["--load", "m.npz", "--layers", "8"], "fixed by the model"),
    (["--load", "m.npz", "--batch-size", "8"], "only apply to training"),
    (["--load", "m.npz", "--resume", "m.npz"], "not both"),
    (["--profile", "--backend", "numpy"], "--profile"),
    (["--verify", "--backend", "numpy"], "--verify"),
    (["--load", "m.npz", "--verify"], "needs training"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_option_combinations_exit_2(args, phrase, capsys):
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), captured.err
    assert phrase in lines[0], lines[0]


@pytest.mark.parametrize("case, phrases", [
    (["--data", "missing.csv", "--target", "y"], ["missing.csv", "no such file"]),
    (["--data", "iris.csv", "--target", "colour"], ["no column named 'colour'",
                                                     "sepal_length"]),
    (["--data", "iris.csv", "--target", "9"], ["index 9 out of range for 5 columns"]),
    (["--data", "iris.csv"], ["--target"]),
    (["--data", "nan.csv", "--target", "y"], ["NaN", "row 1"]),
    (["--data", "nan.npz"], ["NaN", "row 7, column 2"]),
    (["--data", "text.csv", "--target", "y"], ["line 3", "'abc' is not a number"]),
    (["--data", "only_x.npz"], ["needs arrays ['X', 'y']"]),
    (["--data", "objects.npz"], ["'y'", "pickle"]),
    (["--data", "X.npy"], ["--target-file"]),
    (["--data", "data.txt"], ["unsupported file type '.txt'"]),
    (["--dataset", "iris", "--task", "regression"], ["classification data set"]),
    (["--load", "corrupt_model.npz"], ["corrupt_model.npz", "not a readable fastnn model"]),
    (["--load", "missing.npz"], ["missing.npz: no such file"]),
    (["--save", "no/such/dir/m.npz"], ["does not exist"]),
    (["--dataset", "synthetic", "--task", "regression", "--samples", "100", "--features", "4",
      "--activation", "identity", "--lr", "1e6", "--quiet"], ["training diverged"]),
], ids=lambda v: " ".join(v) if v and v[0].startswith("--") else "")
def test_bad_input_exits_2(case, phrases, files, tmp_path):
    args = []
    for arg in case:
        if arg in files:
            arg = files[arg]
        elif arg.endswith((".csv", ".npz")) or "/" in arg:  # missing files, in tmp_path
            arg = tmp_path / arg
        args.append(arg)
    if "--load" not in case:
        args += ["--epochs", 2, "--layers", 4]
    assert_usage_error(run_cli(*args), *phrases)


#: Every file the readers take, as (option, extension, the other options of the run):
#: data (.npz of X and y, .npy of X with a .npy of targets, .csv with --target) and
#: model files (--load, --resume).  "{X}" and "{y}" name valid .npy files.
READER_CASES = [
    ("--data", ".npz", ["--epochs", "1", "--layers", "2"]),
    ("--data", ".npy", ["--target-file", "{y}", "--epochs", "1", "--layers", "2"]),
    ("--target-file", ".npy", ["--data", "{X}", "--epochs", "1", "--layers", "2"]),
    ("--data", ".csv", ["--target", "0", "--epochs", "1", "--layers", "2"]),
    ("--load", ".npz", []),
    ("--resume", ".npz", ["--epochs", "1"]),
]

#: Starts that take the readers past their first check: a zip, a .npy header, CSV text.
PREFIXES = [b"", b"PK\x03\x04", b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (",
            b"a,b,c\n1,2,3\n", b"1;2\n3;4\n"]


def run_main(args):
    """(exit status, stdout, stderr) of the command line run in this process."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(list(map(str, args)))
    return status, out.getvalue(), err.getvalue()


@settings(max_examples=120, deadline=None)
@given(case=st.sampled_from(READER_CASES), prefix=st.sampled_from(PREFIXES),
       body=st.binary(max_size=400))
def test_random_bytes_under_every_reader_extension_exit_2_with_one_line(case, prefix, body):
    """Whatever bytes a file holds, the readers end in one error line and exit 2 (or, for
    bytes that happen to be valid, train): never a traceback."""
    import tempfile

    option, extension, others = case
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        np.save(folder / "X.npy", np.arange(12.0).reshape(6, 2))
        np.save(folder / "y.npy", np.array([0, 1] * 3))
        path = folder / f"random{extension}"
        path.write_bytes(prefix + body)
        others = [a.format(X=folder / "X.npy", y=folder / "y.npy") for a in others]
        status, _, stderr = run_main([option, path, *others, "--quiet"])
    lines = stderr.strip().splitlines()
    assert status in (0, 2), (status, stderr)
    if status == 2:
        assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), stderr


def test_npz_that_is_not_a_zip_archive_exits_2(tmp_path):
    """A broken zip under .npz (BadZipFile inside NumPy) is a one-line error, run as users run it."""
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)))
    assert_usage_error(run_cli("--data", path, "--quiet"), "not a readable NumPy file")


def test_plot_without_matplotlib_exits_2(tmp_path):
    # A stand-in for an environment without matplotlib: the import fails.
    code = ("import sys; sys.modules['matplotlib'] = None; "
            "from fastnn.train import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "--plot", str(tmp_path / "c.png"),
                             "--epochs", "1"], capture_output=True, text=True, cwd=PACKAGE_ROOT,
                            timeout=120)
    assert_usage_error(result, "matplotlib", "pip install fastnn[plot]")
    assert not (tmp_path / "c.png").exists()


def test_resume_refuses_changed_data(csv_model, tmp_path):
    path, _ = csv_model
    record = fastnn.model_io.load(path).metadata["extra"]["config"]["cli"]
    data_file = Path(record["source"]["path"])
    original = data_file.read_text()
    try:
        data_file.write_text(original.replace("5.1,3.5,1.4,0.2", "5.2,3.5,1.4,0.2", 1))
        assert_usage_error(run_cli("--resume", path, "--epochs", 1), "training data differ")
    finally:
        data_file.write_text(original)


# In-process checks of the remaining exit paths (no subprocess needed).

def test_keyboard_interrupt_outside_training_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("fastnn.cli.data"), "load_source", interrupted)
    assert cli.main(["--dataset", "iris", "--epochs", "1"]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("epochs, step", [(1, 1), (20, 1), (21, 2), (50, 5), (300, 20),
                                          (1000, 50), (10**6, 50000)])
def test_progress_lines_stay_few(epochs, step):
    assert cli.log_step(epochs) == step
    assert epochs / step <= cli.MAX_PROGRESS_LINES


@pytest.mark.slow
def test_defaults_reach_97_percent_on_digits():
    result = run_cli()
    assert result.returncode == 0, result.stderr
    assert scores(result.stdout)["test"][1] >= 97.0, result.stdout
