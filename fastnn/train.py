"""Command line: train, evaluate, resume and profile a dense network.

    python -m fastnn.train                      # the tutorial's 64-128-128-10 network on digits
    python -m fastnn.train --dataset iris --layers 16 --epochs 100 --save iris.npz
    python -m fastnn.train --resume iris.npz --epochs 50 --save iris.npz
    python -m fastnn.train --load iris.npz --data new.csv --target species --predict out.csv
    fastnn-train --help

Every model is a ``fastnn.models.Sequential``: the command line builds it, compiles
it and calls its ``fit``, so a model trained here has bitwise the weights of the same
configuration written in Python (see the README), and ``--save`` writes a file that
``fastnn.load`` returns as a Sequential, with its optimizer state, shuffling
generator and history, and this program's record of the data (source, split,
scaling, class labels) for ``--load`` and ``--resume``.

Exit status: 0 success; 1 ``--verify`` found the compiled engine and the NumPy
reference apart; 2 usage or input error, reported as one line
``fastnn.train: error: ...`` on stderr; 130 stopped by SIGINT (Ctrl-C), 143 by
SIGTERM: training stops at the next mini-batch boundary, and with ``--save`` the
model is saved, unfinished epoch included, so that ``--resume`` finishes the run
bitwise as an uninterrupted one; 141 when stdout is a closed pipe.
"""

import argparse
import json
import math
import os
import signal
import statistics
import sys
import threading
import time
import warnings

import numpy as np

from . import __version__, config, model_io
from .datasets import (DATASETS, SCALINGS, SPLIT_SEED, TEST_SIZE, DataError, file_error,
                       DataSource, decode, fit_preprocessing, load_source, prepare, transform)
from .network import DTYPES, HIDDEN_ACTIVATIONS, INITIALIZERS
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES, schedule_config
from .metrics import RUNNING_METRICS, metric_for
from .trainer import BACKENDS, Callback, DivergenceError

PROG = "fastnn.train"

#: Default number of epochs of a new model, the tutorial's network's: with its N(0, 1)
#: initialisation the test accuracy on digits passes 97 % at epoch 21 and stays at
#: 99.4-100 % from epoch 200 on (seed 0, see the README).
DEFAULT_EPOCHS = 300
#: Learning rate of plain SGD when --lr is not given (the tutorial's); the other
#: optimizers use their own defaults (rmsprop and adam 0.001, adadelta 1.0).
SGD_LR = 0.5

#: Progress lines are printed every k epochs, k the smallest of these values that
#: keeps the progress output to at most MAX_PROGRESS_LINES lines.
_LOG_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
MAX_PROGRESS_LINES = 20

#: --verify: the largest |w_compiled - w_reference| allowed, relative to max |w_reference|.
#: float64 is the test suite's TRAINING_RTOL (tests/conftest.py).  In float32 the suite
#: allows 1e-5 after 5 epochs at a small learning rate; each step carries the rounding
#: differences of the two engines (~1e-7 relative) forward and can amplify them, so
#: whole runs at the default rate drift further (the defaults, digits for 300 epochs at
#: lr 0.5: measured 5.0e-6); 1e-3 leaves room for longer runs and is still far below
#: what a real error does (a wrong row or task moves weights by lr * |grad| >= 1e-3).
VERIFY_RTOL = {"float64": 1e-9, "float32": 1e-3}

#: Exit statuses.
EXIT_OK, EXIT_VERIFY, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM, EXIT_PIPE = 0, 1, 2, 130, 143, 141
SIGNAL_EXIT = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}

#: Hyperparameter options and the optimizers / schedules they belong to.
OPTIMIZER_OPTIONS = {"momentum": ("sgd",), "nesterov": ("sgd",), "beta1": ("adam",),
                     "beta2": ("adam",), "rho": ("rmsprop", "adadelta"),
                     "eps": ("rmsprop", "adam", "adadelta")}
SCHEDULE_OPTIONS = {"power_t": ("invscaling",), "step_size": ("step",),
                    "gamma": ("step", "plateau"), "t_max": ("cosine",),
                    "min_lr": ("cosine", "plateau"), "lr_patience": ("plateau",)}

#: Option groups (argparse dests) by what a model file fixes.
DATA_OPTIONS = ("dataset", "data", "target", "target_file", "task", "samples", "features",
                "classes", "test_size", "split_seed", "no_stratify", "scaling")
NETWORK_OPTIONS = ("layers", "activation", "head", "dtype", "init")
MODEL_OPTIONS = ("optimizer", "lr", *OPTIMIZER_OPTIONS, "schedule", *SCHEDULE_OPTIONS, "l2",
                 "seed")
FIT_OPTIONS = ("batch_size", "validation_split", "no_shuffle", "early_stopping", "min_delta",
               "monitor", "no_restore_best")

#: Version of the record this program keeps in model files (config["cli"]).
RECORD_VERSION = 1


class UsageError(Exception):
    """A bad option value or input; reported as one line, exit status 2."""


class Terminated(Exception):
    """SIGTERM outside training (during training the trainer stops at a batch boundary)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse would print the whole usage block; one line is easier to read and grep.
        raise UsageError(f"{message} (see --help)")


# ---------------------------------------------------------------------------
# Option types
# ---------------------------------------------------------------------------


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _float_in(low, high, low_open=False, high_open=True):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open else value <= high)
        if not ok:
            interval = (f"{'(' if low_open else '['}{low:g}, "
                        f"{high:g}{')' if high_open else ']'}")
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


_positive = _float_in(0.0, math.inf, low_open=True)
_non_negative = _float_in(0.0, math.inf)
_fraction = _float_in(0.0, 1.0)            # [0, 1)
_open_fraction = _float_in(0.0, 1.0, low_open=True)


def _test_size(text):
    """A fraction in (0, 1), or a number of rows >= 1."""
    if text.strip().lstrip("+").isdigit():
        return _int_at_least(1)(text)
    return _open_fraction(text)


def _layer_widths(text):
    """'128,128' -> (128, 128); '' -> () (no hidden layer)."""
    if not text.strip():
        return ()
    widths = []
    for part in text.split(","):
        try:
            width = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated positive integers such as 128,128, got {text!r}"
            ) from None
        if width < 1:
            raise argparse.ArgumentTypeError(f"layer widths must be >= 1, got {text!r}")
        widths.append(width)
    return tuple(widths)


def _seed(text):
    value = _int_at_least(0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {value}")
    return value


def _sync_every(text):
    if text == "epoch":
        return text
    return _int_at_least(1)(text)


def _threads(text):
    value = _int_at_least(1)(text)
    if value > config.NUMBA_MAX_THREADS:
        raise argparse.ArgumentTypeError(
            f"at most {config.NUMBA_MAX_THREADS} threads are available, got {value}"
        )
    return value


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------


def build_parser(prog=PROG):
    """The argument parser (also used by the tests to list every option)."""
    parser = _Parser(
        prog=prog,
        description="Train a fully connected network (a fastnn.models.Sequential) on a "
        "built-in, synthetic or file data set, report its train and test scores, and "
        "save, resume, evaluate, profile or verify it. The defaults are the tutorial's "
        "network: 64-128-128-10, sigmoid hidden layers, softmax output, N(0, 1) weights, "
        "SGD with lr 0.5 and batches of 64 for 300 epochs on digits.",
        epilog="Exit status: 0 success, 1 --verify failed, 2 usage or input error, "
        "130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM (training stops at the next "
        "mini-batch; with --save the model is saved first, and --resume finishes the run "
        "as if uninterrupted).",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="digits", choices=DATASETS,
                      help="built-in data set, or synthetic (default: %(default)s)")
    data.add_argument("--data", metavar="PATH", default=None,
                      help="train on a file instead: .npz with arrays X and y; .npy of X with "
                      "--target-file; .csv with --target")
    data.add_argument("--target", metavar="COLUMN", default=None,
                      help="target column of a .csv file: a header name, or a 0-based index "
                      "(negative counts from the end)")
    data.add_argument("--target-file", metavar="PATH", default=None,
                      help="the targets of a .npy --data file, another .npy file")
    data.add_argument("--task", default="auto", choices=["auto", "classification", "regression"],
                      help="auto: classification for the built-in and synthetic data and for "
                      "file targets that are labels (text or integers), else regression "
                      "(default: %(default)s)")
    data.add_argument("--samples", type=_int_at_least(2), default=1000, metavar="N",
                      help="synthetic: rows (default: %(default)s)")
    data.add_argument("--features", type=_int_at_least(1), default=20, metavar="N",
                      help="synthetic: feature columns (default: %(default)s)")
    data.add_argument("--classes", type=_int_at_least(2), default=2, metavar="N",
                      help="synthetic classification: classes (default: %(default)s)")
    data.add_argument("--test-size", type=_test_size, default=TEST_SIZE, metavar="F",
                      help="test split: a fraction in (0, 1) or a number of rows (default: "
                      "%(default)s)")
    data.add_argument("--split-seed", type=_seed, default=SPLIT_SEED, metavar="N",
                      help="seed of the train/test split (default: %(default)s, the tutorial's)")
    data.add_argument("--no-stratify", action="store_true",
                      help="split classification data without stratifying by class "
                      "(digits then gets the tutorial's exact split)")
    data.add_argument("--scaling", default="auto", choices=SCALINGS,
                      help="inputs: auto divides digits by 16 and standardises the rest with "
                      "training-split statistics; standard; none (default: %(default)s)")

    net = parser.add_argument_group("network")
    net.add_argument("--layers", type=_layer_widths, default=(128, 128), metavar="W1,W2,...",
                     help="widths of the hidden layers, comma-separated; '' for none "
                     "(default: 128,128)")
    net.add_argument("--activation", default="sigmoid", choices=list(HIDDEN_ACTIVATIONS),
                     help="activation of every hidden layer (default: %(default)s)")
    net.add_argument("--head", default="auto", choices=["auto", "softmax", "sigmoid", "identity"],
                     help="output activation, with its loss: softmax + categorical "
                     "cross-entropy, sigmoid + binary cross-entropy, identity + squared "
                     "error; auto: softmax for classification, identity for regression")
    net.add_argument("--dtype", default="float32", choices=list(DTYPES),
                     help="floating-point type of weights and computation (default: %(default)s)")
    net.add_argument("--init", default="normal", choices=list(INITIALIZERS),
                     help="weight initialisation (default: %(default)s, N(0, 1) as the tutorial)")

    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=_int_at_least(1), default=None, metavar="N",
                     help=f"epochs to train (default: {DEFAULT_EPOCHS}; with --load none; "
                     f"with --resume required: epochs to add)")
    fit.add_argument("--batch-size", type=_int_at_least(0), default=64, metavar="N",
                     help="rows per mini-batch; 0 = the whole training set (default: %(default)s)")
    fit.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZERS),
                     help="update rule (default: %(default)s)")
    fit.add_argument("--lr", type=_positive, default=None,
                     help=f"learning rate (default: {SGD_LR} for sgd, else the optimizer's: "
                     f"rmsprop and adam 0.001, adadelta 1.0)")
    fit.add_argument("--momentum", type=_fraction, default=None,
                     help="sgd: momentum in [0, 1) (default: 0)")
    fit.add_argument("--nesterov", action="store_true", help="sgd: Nesterov momentum")
    fit.add_argument("--beta1", type=_fraction, default=None, help="adam: beta1 (default: 0.9)")
    fit.add_argument("--beta2", type=_fraction, default=None, help="adam: beta2 (default: 0.999)")
    fit.add_argument("--rho", type=_fraction, default=None,
                     help="rmsprop, adadelta: decay of the running averages (default: 0.9, 0.95)")
    fit.add_argument("--eps", type=_positive, default=None,
                     help="rmsprop, adam, adadelta: epsilon (default: 1e-7, 1e-8, 1e-7)")
    fit.add_argument("--schedule", default="constant", choices=list(SCHEDULES),
                     help="learning rate per epoch: constant; invscaling lr/(epoch+1)^power_t; "
                     "step lr*gamma^(epoch//step_size); cosine from lr to min-lr over t-max "
                     "epochs; plateau: times gamma when --monitor stalls for lr-patience "
                     "epochs (default: %(default)s)")
    fit.add_argument("--power-t", type=_non_negative, default=None,
                     help="invscaling: exponent (default: 0.5)")
    fit.add_argument("--step-size", type=_int_at_least(1), default=None, metavar="N",
                     help="step: epochs between reductions (default: 10)")
    fit.add_argument("--gamma", type=_open_fraction, default=None,
                     help="step, plateau: factor of each reduction, in (0, 1) (default: 0.1)")
    fit.add_argument("--t-max", type=_int_at_least(1), default=None, metavar="N",
                     help="cosine: epochs of the annealing (default: --epochs)")
    fit.add_argument("--min-lr", type=_non_negative, default=None,
                     help="cosine, plateau: lowest rate (default: 0)")
    fit.add_argument("--lr-patience", type=_int_at_least(1), default=None, metavar="N",
                     help="plateau: epochs without improvement before a reduction (default: 10)")
    fit.add_argument("--l2", type=_non_negative, default=0.0,
                     help="L2 penalty on the weights, scikit-learn's alpha (default: %(default)s)")
    fit.add_argument("--validation-split", type=_fraction, default=0.0, metavar="F",
                     help="fraction of the training rows (the last ones) held out and scored "
                     "after every epoch (default: %(default)s)")
    fit.add_argument("--early-stopping", type=_int_at_least(1), default=None,
                     metavar="PATIENCE",
                     help="stop when --monitor has not improved for PATIENCE epochs, then "
                     "restore the best epoch's weights (default: off)")
    fit.add_argument("--min-delta", type=_non_negative, default=None,
                     help="early stopping, plateau: smallest change that counts as an "
                     "improvement (default: 0 and 1e-4)")
    fit.add_argument("--monitor", default=None,
                     help="what early stopping and the plateau schedule watch: loss, accuracy "
                     "(r2 for regression), or val_ of either (default: val_loss with a "
                     "validation split, else loss)")
    fit.add_argument("--no-restore-best", action="store_true",
                     help="early stopping: keep the last epoch's weights, not the best's")
    fit.add_argument("--no-shuffle", action="store_true",
                     help="visit the rows in the same order every epoch")
    fit.add_argument("--seed", type=_seed, default=0,
                     help="seed of the weights and then of the shuffling, one generator "
                     "(model.rng); also of the synthetic data (default: %(default)s)")

    files = parser.add_argument_group("model files")
    files.add_argument("--save", metavar="PATH", default=None,
                       help="write the model to PATH (.npz; fastnn.load reads it), also when "
                       "interrupted by SIGINT or SIGTERM")
    files.add_argument("--load", metavar="PATH", default=None,
                       help="evaluate a saved model (on its recorded data, or on the data "
                       "options given: all their rows); train it further with --epochs")
    files.add_argument("--resume", metavar="PATH", default=None,
                       help="continue training a saved model exactly where it stopped, on its "
                       "recorded data with its recorded settings; needs --epochs")

    out = parser.add_argument_group("output")
    out.add_argument("--predict", metavar="PATH", default=None,
                     help="write predictions (label and class probabilities, or values) for "
                     "the test rows, or for all rows of --load's data, as CSV")
    out.add_argument("--metrics-json", metavar="PATH", default=None,
                     help="write configuration, per-epoch history, final scores and timings "
                     "as JSON")
    out.add_argument("--plot", metavar="PATH", default=None,
                     help="draw loss and accuracy (r2) curves to a PNG (needs matplotlib: "
                     "pip install fastnn[plot])")
    out.add_argument("--log-every", type=_int_at_least(0), default=0, metavar="K",
                     help=f"a progress line every K epochs; 0 = choose K so that at most "
                     f"{MAX_PROGRESS_LINES} lines are printed (default)")
    level = out.add_mutually_exclusive_group()
    level.add_argument("--quiet", action="store_true",
                       help="print only the final scores and time")
    level.add_argument("--verbose", action="store_true",
                       help="a line per epoch with every value, and the model summary")

    run = parser.add_argument_group("execution and checks")
    run.add_argument("--backend", default="numba", choices=list(BACKENDS),
                     help="numba: compiled parallel kernels; numpy: the plain NumPy "
                     "reference, slower (default: %(default)s)")
    run.add_argument("--threads", type=_threads, default=None, metavar="N",
                     help=f"threads for Numba and BLAS (default: all, here "
                     f"{config.NUMBA_MAX_THREADS})")
    run.add_argument("--profile", action="store_true",
                     help="report compile time, per-phase time of an epoch (forward, backward, "
                     "gradient, update, shuffle, evaluation), GFLOP/s and %% of this machine's "
                     "measured peak")
    run.add_argument("--verify", action="store_true",
                     help="also train the NumPy reference from the same start and compare the "
                     "weights; exit 1 if they differ by more than the test suite's tolerance")
    run.add_argument("--scheduler", metavar="ADDRESS", default=None,
                     help="train data-parallel on a Dask cluster, one partition of the training "
                     "rows per worker: a scheduler address (tcp://host:8786), or local:N to start "
                     "N worker processes here (needs pip install 'fastnn[dask]')")
    run.add_argument("--sync-every", type=_sync_every, default="epoch", metavar="K",
                     help="with --scheduler: average the workers' weights every K mini-batches, "
                     "or once per epoch (default: %(default)s)")
    return parser


def _given_options(argv):
    """The dests of the options given on the command line (not defaulted)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def main(argv=None):
    """Entry point of ``python -m fastnn.train`` and ``fastnn-train``; returns the exit status."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (SIGINT)", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(f"{PROG}: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_SIGTERM
    except BrokenPipeError:
        # Output piped into e.g. `head`, which has exited: stop quietly, as other tools do.
        # Python flushes stdout again at exit, so point it at devnull first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise Terminated


def _main(argv):
    started = time.perf_counter()
    prog = "fastnn-train" if os.path.basename(sys.argv[0]) == "fastnn-train" else PROG
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    given = _given_options(argv)
    _check_options(args, given)
    for option in ("save", "predict", "metrics_json", "plot"):
        if getattr(args, option) is not None:
            _check_writable(getattr(args, option), "--" + option.replace("_", "-"))
    if args.plot is not None:
        _import_matplotlib()
    out = _Output(args)
    timings = {}

    # ---- the model and its data -------------------------------------------------
    tick = time.perf_counter()
    stored_path = args.resume or args.load
    record = None
    if stored_path is not None:
        model, record = _load_model(stored_path)
        epochs = args.epochs or 0
    else:
        model, epochs = None, args.epochs or DEFAULT_EPOCHS
    source, split = _data_settings(args, given, record)
    whole = args.load is not None and epochs == 0 and bool(given & set(DATA_OPTIONS))
    data, eval_sets = _build_data(source, split, record, model, args, whole, predict_only=(
        whole and args.predict is not None))
    fit_settings = _fit_settings(args, given, record, epochs)
    if model is None:
        model = _new_model(args, data, epochs)
    elif not model.compiled:
        raise UsageError(f"{stored_path}: the model was saved before compile; it can only be "
                         f"trained or evaluated once compiled (from Python)")
    if record is not None and args.resume is not None:
        if data.fingerprint() != record["fingerprint"]:
            raise UsageError(f"--resume {stored_path}: the training data differ from those the "
                             f"model was trained on ({_describe_source(source)} changed?)")
    timings["data_and_model_s"] = time.perf_counter() - tick
    out.header(model, data, eval_sets, source, fit_settings, epochs, stored_path, args)

    # ---- training --------------------------------------------------------------
    history, run, stop_signal, verification = model.history, None, None, None
    if epochs:
        run = _Run(model, data, fit_settings, epochs, args, out)
        if args.profile:
            timings["compile_s"], run.compile_source = _warm_up(model, data, fit_settings, args)
        tick = time.perf_counter()
        stop_signal = run.fit()
        timings["train_s"] = time.perf_counter() - tick
        if stop_signal is not None:
            out.error_line(f"{PROG}: {_signal_name(stop_signal)} received: training stopped "
                           f"{_where_stopped(history)}"
                           + (f"; saving the model to {args.save} (--resume finishes the run "
                              f"as if uninterrupted)" if args.save else ""))
        elif history.stop_reason == "early stopping":
            out.say(f"early stopping after epoch {history.epochs}; best epoch "
                    f"{history.best_epoch}"
                    + ("" if not fit_settings["early_stopping"]["restore_best_weights"]
                       else ", whose weights are kept"))
    if args.save is not None:
        # A model only evaluated keeps the record of the data it was trained on.
        keep = record is not None and not epochs
        _save(model, args.save, record if keep else _record(source, split, data, fit_settings))
    if args.verify and stop_signal is None:
        verification = _verify(model, data, fit_settings, epochs, args, stored_path)
        stop_signal = verification.pop("signal")
        if stop_signal is not None:
            out.error_line(f"{PROG}: {_signal_name(stop_signal)} received: --verify's "
                           f"reference run stopped, nothing verified")

    # ---- scores and reports -----------------------------------------------------
    tick = time.perf_counter()
    scores = _scores(model, eval_sets, args)
    timings["evaluate_s"] = time.perf_counter() - tick
    out.scores(scores, eval_sets, model)
    if run is not None:
        out.timing(run, timings["train_s"], args)
    if args.save is not None:
        out.say(f"saved model to {args.save}")
    if verification is not None and stop_signal is None:
        out.verification(verification)
    profile_report = None
    if args.profile and run is not None and run.epoch_seconds:
        profile_report = _profile(model, data, fit_settings, run, timings, eval_sets, args)
        out.profile(profile_report)
    if args.predict is not None:
        _write_predictions(args.predict, model, eval_sets[-1], data.preprocessing, args)
        out.say(f"wrote predictions for {eval_sets[-1][1].shape[0]} rows to {args.predict}")
    if args.plot is not None:
        _plot(args.plot, model.history, data.task)
        out.say(f"wrote {args.plot}")
    status = EXIT_OK
    if stop_signal is not None:
        status = SIGNAL_EXIT.get(stop_signal, EXIT_SIGINT)
    elif verification is not None and not verification["passed"]:
        status = EXIT_VERIFY
    if args.metrics_json is not None:
        if run is not None and run.epoch_seconds:
            seconds = run.epoch_seconds
            later = seconds[1:] if len(seconds) > 1 else seconds
            timings.update(first_epoch_s=seconds[0], median_epoch_s=statistics.median(later))
            if not args.profile:  # the first epoch's extra time: loading or compiling kernels
                timings["first_epoch_extra_s"] = seconds[0] - timings["median_epoch_s"]
        timings["total_s"] = time.perf_counter() - started
        _write_json(args.metrics_json, _metrics_document(
            args, model, data, source, split, fit_settings, epochs, run, scores, timings,
            profile_report, verification, status, stored_path))
    if status == EXIT_VERIFY:
        out.error_line(f"{PROG}: verification failed: {verification['message']}")
    return status


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------


def _option(dest):
    return "--" + dest.replace("_", "-")


def _check_options(args, given):
    """Refuse combinations that make no sense, before anything is read or trained."""
    if args.load is not None and args.resume is not None:
        raise UsageError("give --load or --resume, not both")
    if args.resume is not None:
        if args.epochs is None:
            raise UsageError("--resume needs --epochs N (the epochs to add)")
        fixed = given & set(DATA_OPTIONS + NETWORK_OPTIONS + MODEL_OPTIONS + FIT_OPTIONS)
        if fixed:
            raise UsageError(f"--resume continues with the data and settings recorded in the "
                             f"model file; {', '.join(_option(d) for d in sorted(fixed))} cannot "
                             f"be given (use --load PATH --epochs N to train on with other data "
                             f"or batch settings)")
    if args.load is not None:
        fixed = given & set(NETWORK_OPTIONS + MODEL_OPTIONS)
        if fixed:
            raise UsageError(f"{', '.join(_option(d) for d in sorted(fixed))}: fixed by the "
                             f"model in {args.load} (its layers, optimizer, schedule, L2 and "
                             f"generator are stored)")
        if args.epochs is None and given & set(FIT_OPTIONS):
            raise UsageError(f"{', '.join(_option(d) for d in sorted(given & set(FIT_OPTIONS)))}"
                             f" only apply to training: add --epochs N")
    if "dataset" in given and args.data is not None:
        raise UsageError("give --dataset or --data, not both")
    for dest in ("target", "target_file"):
        if dest in given and args.data is None:
            raise UsageError(f"{_option(dest)} applies to a --data file")
    if args.data is None and args.dataset != "synthetic":
        extra = given & {"samples", "features", "classes"}
        if extra:
            raise UsageError(f"{', '.join(_option(d) for d in sorted(extra))} apply to "
                             f"--dataset synthetic")
    if args.load is None and args.resume is None:  # else the stored optimizer and schedule
        for dest, owners in OPTIMIZER_OPTIONS.items():
            if dest in given and args.optimizer not in owners:
                raise UsageError(f"{_option(dest)} applies to --optimizer {' or '.join(owners)}, "
                                 f"not {args.optimizer}")
        if args.nesterov and not args.momentum:
            raise UsageError("--nesterov needs --momentum > 0")
        for dest, owners in SCHEDULE_OPTIONS.items():
            if dest in given and args.schedule not in owners:
                raise UsageError(f"{_option(dest)} applies to --schedule {' or '.join(owners)}, "
                                 f"not {args.schedule}")
    if args.early_stopping is None and args.schedule != "plateau":
        for dest in ("min_delta", "monitor"):
            if dest in given:
                raise UsageError(f"{_option(dest)} applies to --early-stopping or "
                                 f"--schedule plateau")
    if args.no_restore_best and args.early_stopping is None:
        raise UsageError("--no-restore-best applies to --early-stopping")
    if args.profile and args.backend != "numba":
        raise UsageError("--profile times the compiled engine; not with --backend numpy")
    if args.scheduler is not None and (args.profile or args.verify):
        raise UsageError(f"{'--profile' if args.profile else '--verify'} runs in this process; "
                         f"not with --scheduler")
    if "sync_every" in given and args.scheduler is None:
        raise UsageError("--sync-every applies to --scheduler")
    if (args.scheduler or "").startswith("local:") and not (
            args.scheduler[6:].isdigit() and int(args.scheduler[6:]) >= 1):
        raise UsageError(f"--scheduler local:N needs a worker count N >= 1, got "
                         f"{args.scheduler!r}")
    if args.verify and args.backend != "numba":
        raise UsageError("--verify compares the compiled engine with the NumPy reference; "
                         "not with --backend numpy")
    if (args.profile or args.verify) and args.load is not None and args.epochs is None:
        raise UsageError(f"{'--profile' if args.profile else '--verify'} needs training: "
                         f"add --epochs N")


def _check_writable(path, option):
    """Fail before training, not after, when an output file cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a directory")
    if not os.path.isdir(directory):
        raise UsageError(f"{option} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{option} {path}: directory {directory} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: file is not writable")


def _import_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed; install it with "
                         "pip install fastnn[plot]  (or: pip install matplotlib)") from None


def _log_step(epochs):
    for step in _LOG_STEPS:
        if epochs <= step * MAX_PROGRESS_LINES:
            return step
    return -(-epochs // MAX_PROGRESS_LINES)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def _data_settings(args, given, record):
    """(DataSource, split settings): from the options, or from the model file's record."""
    use_record = record is not None and not (given & set(DATA_OPTIONS))
    if use_record:
        source = DataSource(**record["source"])
        return source, dict(record["split"])
    if args.data is not None:
        dataset, path = None, os.path.abspath(args.data)
    else:
        dataset, path = args.dataset, None
    target_file = os.path.abspath(args.target_file) if args.target_file else None
    source = DataSource(dataset=dataset, path=path, target=args.target, target_file=target_file,
                        task=args.task, samples=args.samples, features=args.features,
                        classes=args.classes, seed=args.seed)
    split = {"test_size": args.test_size, "split_seed": args.split_seed,
             "stratify": not args.no_stratify, "scaling": args.scaling}
    return source, split


def _describe_source(source):
    if source.path is not None:
        return source.path + (f" (targets {source.target_file})" if source.target_file else "")
    return source.dataset


def _head_for(task, requested, stored_head=None):
    if stored_head is not None:
        return stored_head
    if requested == "auto":
        return "softmax" if task == "classification" else "identity"
    if task == "regression" and requested != "identity":
        raise UsageError(f"regression needs --head identity (or auto), not {requested}")
    if task == "classification" and requested == "identity":
        raise UsageError("classification needs --head softmax or sigmoid (or auto)")
    return requested


def _build_data(source, split, record, model, args, whole, predict_only):
    """(Dataset, evaluation sets [(label, X, Y, y)]).

    whole: --load with other data and no training: every row is scored, with the
    model's recorded preprocessing (or one fitted on these rows when the file has no
    record).
    """
    try:
        raw = load_source(source, require_target=not predict_only)
        preprocessing = record["preprocessing"] if record is not None else None
        if preprocessing is not None and raw.task != preprocessing["task"] and \
                source.task == "auto":
            raw.task = preprocessing["task"]
        head = _head_for(raw.task, args.head, model.arch.head if model is not None else None)
        if whole:
            if preprocessing is None:
                preprocessing = _unrecorded_preprocessing(raw, split["scaling"], model, head)
            X, Y = transform(preprocessing, raw.X, raw.y, head)
            data = _whole_dataset(raw, X, Y, preprocessing)
            _check_fits_model(model, data)
            return data, [("data", X, Y, raw.y)]
        data = prepare(raw, head=head, test_size=split["test_size"],
                       split_seed=split["split_seed"], stratify=split["stratify"],
                       scaling=split["scaling"], preprocessing=preprocessing)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    if model is not None:
        _check_fits_model(model, data)
    sets = [("train", data.X_train, data.Y_train, data.y_train),
            ("test", data.X_test, data.Y_test, data.y_test)]
    return data, sets


def _unrecorded_preprocessing(raw, scaling, model, head):
    """Preprocessing for a model file without this program's record (saved from Python).

    The inputs are scaled as a new run would scale these rows; with targets, classes
    or target statistics come from them too; without, classes are numbered
    0..n_outputs-1 (two for one sigmoid output) and values are taken as they are.
    """
    print(f"note: {raw.name}: the model file has no record of its training data (saved from "
          f"Python?); these rows are scaled with their own statistics ({scaling} scaling)",
          file=sys.stderr)
    preprocessing = fit_preprocessing(raw.name, raw.X, raw.y, raw.task, scaling)
    if raw.y is None:
        outputs = model.arch.sizes[-1]
        if head == "identity":
            preprocessing.update(task="regression",
                                 targets={"mean": [0.0] * outputs, "scale": [1.0] * outputs})
        else:
            preprocessing.update(task="classification", classes=list(range(max(outputs, 2))))
    return preprocessing


def _whole_dataset(raw, X, Y, preprocessing):
    from .datasets import Dataset

    return Dataset(raw.name, raw.task, X, X[:0], Y, None if Y is None else Y[:0], raw.y,
                   None if raw.y is None else raw.y[:0], preprocessing)


def _check_fits_model(model, data):
    if data.n_features != model.input_dim:
        raise UsageError(f"the data have {data.n_features} features; the model takes "
                         f"{model.input_dim}")
    if data.Y_train is not None and data.Y_train.shape[1] != model.arch.sizes[-1]:
        raise UsageError(f"the data need {data.Y_train.shape[1]} outputs; the model has "
                         f"{model.arch.sizes[-1]}")


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

_KERAS_ACTIVATION = {"identity": "linear", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu",
                     "softmax": "softmax"}


def _metric_for(task):
    return "accuracy" if task == "classification" else "r2"


def _wants_epoch_metrics(args, task):
    """Whether accuracy (r2) is computed for every epoch, not only at the end.

    Accuracy always: the epoch kernels count it as they go (the running accuracy,
    as Keras reports it).  r2 costs a forward pass over the training rows and a
    scikit-learn scorer per epoch (see --profile), so only when something uses it:
    the progress lines of --verbose, --plot, --metrics-json, a validation split, or
    a --monitor on it.
    """
    monitor = (args.monitor or "").removeprefix("val_")
    return bool(_metric_for(task) in RUNNING_METRICS or args.verbose or args.plot
                or args.metrics_json or args.validation_split > 0 or monitor in ("accuracy", "r2"))


def _optimizer_config(args):
    config_ = {"name": args.optimizer}
    lr = args.lr if args.lr is not None else (SGD_LR if args.optimizer == "sgd" else None)
    if lr is not None:
        config_["lr"] = lr
    for dest, owners in OPTIMIZER_OPTIONS.items():
        value = getattr(args, dest)
        if args.optimizer in owners and value not in (None, False):
            config_[dest] = value
    return config_


def _schedule(args, epochs, validation):
    from . import schedules

    name = args.schedule
    if name == "constant":
        return None
    if name == "invscaling":
        return schedules.InverseScaling(**_given_fields(args, power_t="power_t"))
    if name == "step":
        return schedules.StepDecay(**_given_fields(args, step_size="step_size", gamma="gamma"))
    if name == "cosine":
        return schedules.Cosine(t_max=args.t_max or epochs,
                                **_given_fields(args, min_lr="min_lr"))
    return schedules.ReduceOnPlateau(monitor=_monitor(args, validation),
                                     **_given_fields(args, factor="gamma", patience="lr_patience",
                                                     min_delta="min_delta", min_lr="min_lr"))


def _given_fields(args, **fields):
    return {name: getattr(args, dest) for name, dest in fields.items()
            if getattr(args, dest) is not None}


def _monitor(args, validation):
    return args.monitor or ("val_loss" if validation else "loss")


def _new_model(args, data, epochs):
    """A compiled Sequential for the options: the same as building it in Python."""
    from .models import Dense, Sequential

    head = _head_for(data.task, args.head)
    widths = (*args.layers, data.n_outputs)
    activations = (*([args.activation] * len(args.layers)), head)
    layers = [Dense(width, activation=_KERAS_ACTIVATION[activation],
                    input_dim=data.n_features if i == 0 else None)
              for i, (width, activation) in enumerate(zip(widths, activations))]
    try:
        model = Sequential(layers, dtype=args.dtype, init=args.init, random_state=args.seed)
        metrics = [_metric_for(data.task)] if _wants_epoch_metrics(args, data.task) else []
        model.compile(optimizer=_optimizer_config(args), metrics=metrics,
                      l2=args.l2, schedule=_schedule(args, epochs, args.validation_split > 0))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    model.build()
    return model


def _load_model(path):
    """(Sequential, this program's record or None) from a model file."""
    from .models import Sequential

    try:
        stored = model_io.load(path)
        model = model_io.model_from_file(stored, path)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise UsageError(file_error(path, exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not isinstance(model, Sequential):
        raise UsageError(f"{path}: holds a {type(model).__name__}; the command line works with "
                         f"Sequential models")
    record = stored.metadata["extra"].get("config", {}).get("cli")
    if record is not None and record.get("version") != RECORD_VERSION:
        raise UsageError(f"{path}: command-line record version {record.get('version')!r}; this "
                         f"fastnn reads {RECORD_VERSION}")
    return model, record


class _WithRecord:
    """A model whose saved configuration carries this program's record (config["cli"]).

    ``model_io.save_model`` asks the object for ``_saved_state()``; the record rides
    in the kind's config, which ``Sequential._from_saved`` reads key by key, so the
    file still loads as a plain Sequential with ``fastnn.load``.
    """

    def __init__(self, model, record):
        self.model, self.record = model, record

    def _saved_state(self):
        saved = self.model._saved_state()
        return saved._replace(config={**saved.config, "cli": self.record})


def _record(source, split, data, fit_settings):
    return {"version": RECORD_VERSION, "source": source.to_json(), "split": split,
            "preprocessing": data.preprocessing, "fit": fit_settings,
            "fingerprint": data.fingerprint()}


def _save(model, path, record):
    try:
        model_io.save_model(path, _WithRecord(model, record))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def _fit_settings(args, given, record, epochs):
    """Batch size, validation split, shuffling and early stopping of this run's fit."""
    if record is not None:  # recorded settings, those given replacing them (--load)
        settings = dict(record["fit"])
        for dest, key in (("batch_size", "batch_size"), ("validation_split", "validation_split")):
            if dest in given:
                settings[key] = getattr(args, dest)
        if "no_shuffle" in given:
            settings["shuffle"] = False
    else:
        settings = {"batch_size": args.batch_size, "validation_split": args.validation_split,
                    "shuffle": not args.no_shuffle, "early_stopping": None}
    validation = settings["validation_split"] > 0
    if args.early_stopping is not None:
        settings["early_stopping"] = {
            "monitor": _monitor(args, validation), "patience": args.early_stopping,
            "min_delta": args.min_delta or 0.0, "restore_best_weights": not args.no_restore_best}
    if epochs:
        early = settings["early_stopping"]
        _check_monitor(early["monitor"] if early else None, validation, args)
    return settings


def _check_monitor(monitor, validation, args):
    monitors = [m for m in (monitor, args.monitor if args.schedule == "plateau" else None) if m]
    for name in monitors:
        base = name[4:] if name.startswith("val_") else name
        if base not in ("loss", "accuracy", "r2"):
            raise UsageError(f"--monitor {name}: choose loss, accuracy or r2, or val_ of one")
        if name.startswith("val_") and not validation:
            raise UsageError(f"--monitor {name} needs a validation split (--validation-split F)")


def _fit_kwargs(model, data, settings):
    from .trainer import EarlyStopping

    early = settings["early_stopping"]
    batch_size = settings["batch_size"] or data.X_train.shape[0]
    return dict(epochs=None, batch_size=batch_size, validation_split=settings["validation_split"],
                shuffle=settings["shuffle"],
                early_stopping=None if early is None else EarlyStopping(**early))


def _fit(model, data, settings, epochs, backend, threads, callbacks):
    """Train model on the training split (Sequential.fit) with the given backend."""
    kwargs = _fit_kwargs(model, data, settings)
    kwargs["epochs"] = epochs
    with warnings.catch_warnings():
        # Sequential.fit warns when interrupted; the command line says it itself.
        warnings.filterwarnings("ignore", message="training interrupted", category=UserWarning)
        return model.fit(data.X_train, data.Y_train, verbose=0, callbacks=callbacks,
                         threads=threads, backend=backend, **kwargs)


def _fit_distributed(model, data, settings, epochs, args, callbacks):
    """--scheduler: the training of ``_fit``, data-parallel with ``fastnn.distributed.fit``.

    The training rows are cut into one partition per worker; the validation split is
    held out here, as the trainer does (the last rows), and evaluated on this side.
    """
    try:
        from . import distributed
    except ImportError:
        raise UsageError("--scheduler needs dask and distributed: pip install 'fastnn[dask]'"
                         ) from None
    kwargs = _fit_kwargs(model, data, settings)
    fraction = kwargs.pop("validation_split")
    kwargs.pop("epochs")
    X = np.asarray(data.X_train, dtype=model.dtype)
    Y = np.asarray(data.Y_train, dtype=model.dtype).reshape(X.shape[0], -1)
    validation = None
    if fraction:
        split = X.shape[0] - int(round(fraction * X.shape[0]))
        X, Y, validation = X[:split], Y[:split], (X[split:], Y[split:])
    try:
        with distributed.connect(args.scheduler) as client:
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
            return distributed.fit(
                model.arch, model.params, X, Y, client=client, epochs=epochs,
                partitions=min(workers, X.shape[0]), sync_every=args.sync_every,
                optimizer=model.optimizer, schedule=model.schedule, l2=model.l2,
                validation_data=validation, metrics=model._fastnn_metrics(),
                callbacks=callbacks, history=model.history, random_state=model.rng,
                backend=args.backend, threads=args.threads, **kwargs)
    except distributed.WorkerLostError as exc:
        raise UsageError(f"--scheduler {args.scheduler}: {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"--scheduler {args.scheduler}: {exc}") from None


class _Progress(Callback):
    """Progress lines: every k epochs (all with --verbose), with the epoch's values."""

    def __init__(self, out, epochs, every, verbose):
        self.out, self.epochs, self.every, self.verbose = out, epochs, every, verbose

    def on_train_begin(self, history):
        self.first = history.epochs + 1
        self.last = history.epochs + self.epochs
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        done = epoch - self.first + 1
        if not (self.verbose or epoch == self.first or done % self.every == 0
                or epoch == self.last):
            return
        values = "  ".join(f"{key} {logs[key]:.6f}" if key.endswith("loss")
                           else f"{key} {logs[key]:.4f}"
                           for key in logs if key not in ("lr", "seconds", "batches"))
        extra = (f"  lr {logs['lr']:.4g}  {1e3 * logs['seconds']:.2f} ms" if self.verbose
                 else "")
        self.out.say(f"epoch {epoch:>{len(str(self.last))}}/{self.last}  {values}{extra}  "
                     f"elapsed {time.perf_counter() - self.start:.3f} s", flush=True)


class _Run:
    """One training call on the model, with progress lines and signal bookkeeping."""

    def __init__(self, model, data, settings, epochs, args, out):
        self.model, self.data, self.settings, self.epochs = model, data, settings, epochs
        self.args, self.out = args, out
        self.first_epoch = model.history.epochs + 1
        self.compile_source = None

    @property
    def epoch_seconds(self):
        return self.model.history.epoch_seconds[self.first_epoch - 1:]

    def fit(self):
        """Train; returns the number of the signal that stopped training, or None."""
        callbacks = []
        if not self.args.quiet:
            every = self.args.log_every or _log_step(self.epochs)
            callbacks.append(_Progress(self.out, self.epochs, every, self.args.verbose))
        try:
            # Overflow on the way to a non-finite loss is reported once, as DivergenceError.
            with np.errstate(over="ignore", invalid="ignore"):
                if self.args.scheduler is not None:
                    history = _fit_distributed(self.model, self.data, self.settings,
                                               self.epochs, self.args, callbacks)
                else:
                    history = _fit(self.model, self.data, self.settings, self.epochs,
                                   self.args.backend, self.args.threads, callbacks)
        except DivergenceError as exc:
            raise UsageError(str(exc)) from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if history.interrupted:
            return history.signal or signal.SIGINT
        return None


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _where_stopped(history):
    """'after epoch 7', or 'in epoch 8 after 128 of 1617 rows' (a batch boundary)."""
    partial = history.partial
    if partial is None:
        return f"after epoch {history.epochs}"
    return (f"in epoch {history.epochs + 1} after {partial.next_row} of "
            f"{partial.order.shape[0]} rows")


def _warm_up(model, data, settings, args):
    """Seconds of the first call of the epoch and prediction kernels, and where they came from.

    A one-epoch fit of a copy of the model (its weights, a fresh optimizer of the same
    configuration, another generator) on one batch of rows: the same compiled
    signatures as the real run, which then starts warm.  The model is not touched.
    """
    from . import trainer
    from .kernels import epoch as compiled
    from .optimizers import make_optimizer

    batch = settings["batch_size"] or data.X_train.shape[0]
    rows = min(batch, data.X_train.shape[0])
    hits = sum(compiled.train_epoch.stats.cache_hits.values())
    misses = sum(compiled.train_epoch.stats.cache_misses.values())
    start = time.perf_counter()
    trainer.fit(model.arch, model.params.copy(), data.X_train[:rows], data.Y_train[:rows],
                epochs=1, batch_size=batch, optimizer=make_optimizer(model.optimizer.get_config()),
                l2=model.l2, metrics=model._fastnn_metrics(), random_state=0,
                threads=args.threads, catch_signals=False)
    seconds = time.perf_counter() - start
    if sum(compiled.train_epoch.stats.cache_misses.values()) > misses:
        source = "compiled" if config.CACHE else "compiled in memory, no disk cache"
    elif sum(compiled.train_epoch.stats.cache_hits.values()) > hits:
        source = "loaded from Numba's disk cache"
    else:
        source = "already in memory"
    return seconds, source


def _verify(model, data, settings, epochs, args, stored_path):
    """Train the NumPy reference from the model's starting point; compare the weights.

    Returns the report (a dict; "signal" is set when a signal stopped the reference).
    """
    if stored_path is not None:
        reference_model, _ = _load_model(stored_path)
    else:
        reference_model = _new_model(args, data, epochs)
    start = time.perf_counter()
    history = _fit(reference_model, data, settings, epochs, "numpy", args.threads, [])
    seconds = time.perf_counter() - start
    if history.interrupted:
        signum = history.signal or signal.SIGINT
        return {"passed": False, "signal": signum,
                "message": f"the reference run was stopped by {_signal_name(signum)}"}
    deviation = float(np.max(np.abs(model.params.astype(np.float64)
                                    - reference_model.params.astype(np.float64))))
    scale = float(np.max(np.abs(reference_model.params.astype(np.float64))))
    relative = deviation / scale if scale else deviation
    tolerance = VERIFY_RTOL[model.dtype]
    same_epochs = reference_model.history.epochs == model.history.epochs
    passed = bool(relative <= tolerance and same_epochs and np.isfinite(relative))
    if not same_epochs:
        message = (f"the reference trained {reference_model.history.epochs} epochs, the compiled "
                   f"engine {model.history.epochs} (early stopping decided differently)")
    else:
        message = (f"largest weight deviation {deviation:.3g} = {relative:.3g} of max |w| "
                   f"{scale:.4g}, above the {model.dtype} tolerance {tolerance:g}")
    return {"passed": passed, "signal": None, "max_abs_deviation": deviation,
            "max_abs_weight": scale,
            "relative_deviation": relative, "tolerance": tolerance, "epochs": epochs,
            "reference_seconds": seconds, "message": message}


# ---------------------------------------------------------------------------
# Scores, predictions, reports
# ---------------------------------------------------------------------------


def _scores(model, eval_sets, args):
    """{label: {"loss", metric, "samples"}} of the model on each evaluation set with targets."""
    from . import trainer

    metric = metric_for(model.arch.head)
    scores = {}
    for label, X, Y, _ in eval_sets:
        if Y is None:
            continue
        entry = {"samples": int(X.shape[0])}
        if X.shape[0]:
            entry.update(trainer.evaluate(model.arch, model.params, X, Y, [metric],
                                          backend=args.backend, threads=args.threads))
        scores[label] = entry
    return scores


def _write_predictions(path, model, eval_set, preprocessing, args):
    import csv

    from .trainer import predict_output

    _, X, _, y = eval_set
    out = predict_output(model.arch, model.params, X, backend=args.backend, threads=args.threads)
    predicted = decode(preprocessing, out)
    classes = preprocessing.get("classes")
    if classes is not None:
        header = ["label"] + (["target"] if y is not None else [])
        columns = [predicted] + ([y] if y is not None else [])
        if out.shape[1] == len(classes):
            header += [f"p_{c}" for c in classes]
            columns += list(out.T)
        else:  # sigmoid on two classes: the probability of classes[1]
            header.append(f"p_{classes[1]}")
            columns.append(out[:, 0])
    else:
        k = predicted.shape[1]
        header = ["prediction"] if k == 1 else [f"prediction_{j}" for j in range(k)]
        columns = list(predicted.T)
        if y is not None:
            target = np.asarray(y).reshape(len(y), -1)
            header += ["target"] if k == 1 else [f"target_{j}" for j in range(k)]
            columns += list(target.T)
    try:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for row in zip(*columns):
                writer.writerow([_csv_value(v) for v in row])
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _csv_value(value):
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return value.item() if isinstance(value, np.generic) else value


def _plot(path, history, task):
    """Loss and accuracy (or r2) per epoch, training and validation, as a PNG."""
    from matplotlib.figure import Figure

    values = history.history
    metric = "accuracy" if "accuracy" in values else "r2"
    epochs = np.arange(1, history.epochs + 1)
    fig = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    for ax, key, title in zip(fig.subplots(1, 2), ("loss", metric),
                              ("loss", "accuracy" if metric == "accuracy" else "r2")):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in values and len(values[prefix + key]) == len(epochs):
                ax.plot(epochs, values[prefix + key], style,
                        label="validation" if prefix else "training")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if key == "loss":
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle(f"fastnn: {history.epochs} epochs ({task})")
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _profile(model, data, settings, run, timings, eval_sets, args):
    """The --profile report, a dict (printed by _Output.profile, stored in --metrics-json)."""
    import numba

    from . import profiling as profile

    threads = args.threads or numba.get_num_threads()
    n_rows = data.X_train.shape[0]
    validation = settings["validation_split"]
    n_val = int(round(validation * n_rows)) if validation else 0
    n_fit = n_rows - n_val
    batch = settings["batch_size"] or n_fit
    X_fit = np.asarray(data.X_train[:n_fit], dtype=model.dtype)
    Y_fit = np.asarray(data.Y_train[:n_fit], dtype=model.dtype)
    lr = model.history.history["lr"][-1]
    times = profile.kernel_times(model.arch, model.params, model.optimizer, model.l2, X_fit,
                                 Y_fit, batch, lr)
    phases = profile.epoch_breakdown(times, n_fit, batch, threads)
    phases["shuffle"] = (profile.shuffle_seconds(model.rng, n_fit)
                         if settings["shuffle"] and batch < n_fit else 0.0)
    epoch = statistics.median(run.epoch_seconds)
    # After each epoch the trainer predicts the validation rows (val_loss), and the
    # training rows for a metric computed every epoch that the epoch kernels do not
    # count as they go, r2 (see _wants_epoch_metrics).
    metrics = [m for m in model._fastnn_metrics() or [_metric_for(data.task)]
               if m not in RUNNING_METRICS]
    train_scoring = (profile.evaluation_seconds(model.arch, model.params, X_fit, Y_fit, metrics,
                                                threads=args.threads) if metrics else 0.0)
    val_scoring = 0.0
    if n_val:
        val_scoring = profile.evaluation_seconds(
            model.arch, model.params, data.X_train[n_fit:], data.Y_train[n_fit:],
            model._fastnn_metrics(), with_loss=True, threads=args.threads)
    evaluation = (train_scoring if model.metrics else 0.0) + val_scoring
    final = sum(profile.evaluation_seconds(model.arch, model.params, X, None, threads=args.threads)
                for _, X, _, _ in eval_sets)
    flops = profile.epoch_flops(model.arch.sizes, n_fit, batch)
    peak = profile.peak_gflops(model.dtype, threads)
    gflops = flops["total"] / epoch / 1e9
    return {
        "threads": threads, "dtype": model.dtype, "rows": n_fit, "validation_rows": n_val,
        "batch_size": min(batch, n_fit),
        "batches": len(profile.batch_sizes(n_fit, batch)), "chunk_rows": config.CHUNK_ROWS,
        "compile_s": timings.get("compile_s"), "compile_source": run.compile_source,
        "epochs_measured": len(run.epoch_seconds), "epoch_s": epoch,
        "first_epoch_s": run.epoch_seconds[0],
        "phases_s": phases, "remainder_s": epoch - sum(phases.values()),
        "evaluation_per_epoch_s": evaluation, "train_metrics": bool(model.metrics),
        "train_scoring_s": train_scoring, "final_evaluation_s": final,
        "flops_per_epoch": flops, "gflops": gflops, "peak_gflops": peak,
        "peak_method": f"NumPy BLAS {'s' if model.dtype == 'float32' else 'd'}gemm "
                       f"{profile.PEAK_N}^3, {threads} thread{'s' if threads != 1 else ''}",
        "percent_of_peak": 100.0 * gflops / peak,
    }


def _metrics_document(args, model, data, source, split, settings, epochs, run, scores, timings,
                      profile_report, verification, status, stored_path):
    history = model.history
    options = {key: (list(value) if isinstance(value, tuple) else value)
               for key, value in vars(args).items()}
    return {
        "fastnn_version": __version__,
        "command": [PROG, *sys.argv[1:]] if sys.argv and sys.argv[0] else [PROG],
        "options": options,
        "config": {
            "data": {"source": source.to_json(), "split": split, "name": data.name,
                     "task": data.task, "n_train": int(data.X_train.shape[0]),
                     "n_test": int(data.X_test.shape[0]), "n_features": int(data.n_features),
                     "classes": data.preprocessing.get("classes"),
                     "preprocessing": data.preprocessing["inputs"]["kind"]},
            "model": {"sizes": list(model.arch.sizes), "activations": list(model.arch.activations),
                      "head": model.arch.head, "dtype": model.dtype, "init": model.init,
                      "n_params": int(model.arch.n_params), "loss": model.loss,
                      "metrics": model.metrics,
                      "optimizer": model.optimizer.get_config(), "l2": model.l2,
                      "schedule": _schedule_json(model.schedule), "seed": model.random_state},
            "fit": settings, "epochs": epochs, "backend": args.backend,
            "threads": args.threads or config.NUMBA_MAX_THREADS, "loaded_from": stored_path,
        },
        "history": {"epochs": history.epochs,
                    "epochs_this_run": 0 if run is None else history.epochs - run.first_epoch + 1,
                    "stop_reason": history.stop_reason,
                    "best_epoch": history.best_epoch, "values": history.history},
        "final": scores,
        "timings": timings,
        "profile": profile_report,
        "verify": verification,
        "exit_status": status,
    }


def _schedule_json(schedule):
    """The model's schedule as model files store it (None: constant)."""
    return None if schedule is None else schedule_config(schedule)


def _write_json(path, document):
    try:
        with open(path, "w") as f:
            json.dump(document, f, indent=1, default=_json_default, allow_nan=True)
            f.write("\n")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _json_default(obj):
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class _Output:
    """What is printed: progress (not with --quiet), results (always), errors (stderr)."""

    def __init__(self, args):
        self.quiet, self.verbose = args.quiet, args.verbose

    def say(self, text="", flush=False):
        if not self.quiet:
            print(text, flush=flush)

    @staticmethod
    def result(text):
        print(text)

    @staticmethod
    def error_line(text):
        print(text, file=sys.stderr, flush=True)

    def header(self, model, data, eval_sets, source, settings, epochs, stored_path, args):
        if self.quiet:
            return
        n_threads = args.threads or config.NUMBA_MAX_THREADS
        if stored_path is not None:
            self.say(f"model {stored_path}: {model.history.epochs} epochs trained")
        if eval_sets[0][0] == "data":
            rows = f"{eval_sets[0][1].shape[0]} samples"
        else:
            rows = f"{data.X_train.shape[0]} train / {data.X_test.shape[0]} test samples"
        if data.classes is not None:
            kind = f"{len(data.classes)} classes"
        else:
            kind = f"regression of {len(data.preprocessing['targets']['mean'])} target(s)"
        self.say(f"{data.name}: {rows}, {data.n_features} features, {kind}")
        arch = model.arch
        self.say(f"network {'-'.join(map(str, arch.sizes))}, "
                 f"{'/'.join(sorted(set(arch.activations))) or 'no'} hidden layers, "
                 f"{arch.head} head, {arch.dtype}, init {model.init}; backend {args.backend}, "
                 f"{n_threads} thread{'s' if n_threads != 1 else ''}")
        if epochs:
            opt = model.optimizer.get_config()
            name = opt.pop("name")
            described = ", ".join(
                "nesterov" if k == "nesterov" else f"{k} {v:g}" for k, v in opt.items()
                if not (k in ("momentum", "nesterov") and not v))
            schedule = _schedule_json(model.schedule)
            parts = [f"{name.upper() if name == 'sgd' else name} ({described})",
                     f"{epochs} epochs", f"batch size {settings['batch_size'] or 'full'}"]
            if schedule:
                parts.append(f"schedule {schedule['name']}")
            if model.l2:
                parts.append(f"l2 {model.l2:g}")
            if settings["validation_split"]:
                parts.append(f"validation split {settings['validation_split']:g}")
            if settings["early_stopping"]:
                es = settings["early_stopping"]
                parts.append(f"early stopping on {es['monitor']} (patience {es['patience']})")
            if not settings["shuffle"]:
                parts.append("no shuffling")
            if stored_path is None:
                parts.append(f"seed {model.random_state}")
            self.say(": ".join([parts[0], ", ".join(parts[1:])]))
        if self.verbose:
            model.summary(print_fn=self.say)

    def scores(self, scores, eval_sets, model):
        for label, entry in scores.items():
            if "loss" not in entry:
                continue
            name = f"{label} "
            if "accuracy" in entry:
                self.result(f"{name:<6}accuracy {100 * entry['accuracy']:.2f} %  loss "
                            f"{entry['loss']:.6f}  ({entry['samples']} samples)")
            else:
                self.result(f"{name:<6}r2 {entry['r2']:.4f}  loss {entry['loss']:.6f}  "
                            f"({entry['samples']} samples)")

    def timing(self, run, total, args):
        seconds = run.epoch_seconds
        if not seconds:
            return
        cold = args.backend == "numba" and not args.profile
        first = (f"first epoch {seconds[0]:.3f} s"
                 + (", includes compiling or loading the Numba kernels" if cold else ""))
        later = seconds[1:] if cold and len(seconds) > 1 else seconds
        self.result(f"training time {total:.3f} s for {len(seconds)} epochs (median "
                    f"{1e3 * statistics.median(later):.2f} ms per epoch"
                    f"{' after the first' if later is not seconds else ''}; {first})")

    def verification(self, v):
        verdict = "passed" if v["passed"] else "FAILED"
        self.result(f"verify {verdict}: compiled vs NumPy reference after {v['epochs']} epochs: "
                    f"max |dw| {v['max_abs_deviation']:.3g} = {v['relative_deviation']:.3g} of "
                    f"max |w| (tolerance {v['tolerance']:g}; reference took "
                    f"{v['reference_seconds']:.2f} s)")

    def profile(self, p):
        ms = 1e3
        epoch = p["epoch_s"]
        lines = [
            f"profile: {p['threads']} thread{'s' if p['threads'] != 1 else ''}, {p['dtype']}, "
            f"{p['rows']} rows in {p['batches']} batches of {p['batch_size']} "
            f"(chunks of {p['chunk_rows']} rows)",
            f"  compile     {p['compile_s']:9.3f} s   first call of the epoch and prediction "
            f"kernels, timed before training ({p['compile_source']})",
            f"  epoch       {epoch * ms:9.3f} ms  measured: median of {p['epochs_measured']} "
            f"epochs (first {p['first_epoch_s'] * ms:.3f} ms)",
        ]
        notes = {"forward": "dense_forward, chunks of rows in parallel",
                 "backward": "output_delta + count_right + dense_backward",
                 "gradient": "param_grad, tasks in parallel",
                 "update": "optimizer_step (+ add_l2) + W.T refresh",
                 "shuffle": "permutation draw"}
        for name, seconds in p["phases_s"].items():
            lines.append(f"    {name:<9} {seconds * ms:9.3f} ms {100 * seconds / epoch:5.1f} %  "
                         f"{notes[name]}")
        lines.append(f"    {'remainder':<9} {p['remainder_s'] * ms:9.3f} ms "
                     f"{100 * p['remainder_s'] / epoch:5.1f} %  measured minus the above: "
                     f"parallel regions and waits, row gathers, loss sums")
        scored = []
        if p["train_metrics"] and p["train_scoring_s"]:
            scored.append(f"metrics on the {p['rows']} training rows")
        if p["validation_rows"]:
            scored.append(f"scores of the {p['validation_rows']} validation rows")
        evaluation = []  # (seconds, what), printed under one "evaluation" label
        if scored:
            evaluation.append((p["evaluation_per_epoch_s"], "per epoch, after it (not in the "
                               f"epoch time): {' and '.join(scored)}"))
        elif p["train_metrics"]:
            evaluation.append((0.0, "per epoch: the training accuracy is counted within it"))
        if not p["train_metrics"]:
            evaluation.append((p["train_scoring_s"], "per epoch if r2 were computed on the "
                               "training rows after every epoch (not in this run)"))
        evaluation.append((p["final_evaluation_s"], "once: final predictions on every split"))
        for i, (seconds, what) in enumerate(evaluation):
            lines.append(f"  {'evaluation' if i == 0 else '':<10}  {seconds * ms:9.3f} ms  {what}")
        lines.append(f"  speed       {p['flops_per_epoch']['total'] / 1e6:.1f} MFLOP per epoch: "
                     f"{p['gflops']:.1f} GFLOP/s = {p['percent_of_peak']:.1f} % of measured "
                     f"peak {p['peak_gflops']:.1f} GFLOP/s ({p['peak_method']})")
        for line in lines:
            self.result(line)


if __name__ == "__main__":
    sys.exit(main())
