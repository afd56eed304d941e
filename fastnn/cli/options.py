"""The command line's options: the parser, the option types, and the names and
constants the other parts share (exit statuses, option groups, defaults)."""

import argparse
import math
import signal

from .. import config
from ..datasets import DATASETS, SCALINGS, SPLIT_SEED, TEST_SIZE
from ..network import DTYPES, HIDDEN_ACTIVATIONS, INITIALIZERS
from ..optimizers import OPTIMIZERS
from ..schedules import SCHEDULES
from ..trainer import BACKENDS


PROG = "fastnn.train"

#: Default number of epochs of a new model, the tutorial's network's: with its N(0, 1)
#: initialisation the test accuracy on digits is near its best by then (docs/cli.md).
DEFAULT_EPOCHS = 300

#: Learning rate of plain SGD when --lr is not given (the tutorial's); the other
#: optimizers use their own defaults (rmsprop and adam 0.001, adadelta 1.0).
SGD_LR = 0.5

#: Progress lines are printed every k epochs, k the smallest of these values that
#: keeps the progress output to at most MAX_PROGRESS_LINES lines.
LOG_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

MAX_PROGRESS_LINES = 20

#: --verify: the largest |w_compiled - w_reference| allowed, relative to max |w_reference|.
#: float64 is the test suite's TRAINING_RTOL (tests/conftest.py).  In float32 the suite
#: allows 1e-5 after 5 epochs at a small learning rate; each step carries the rounding
#: differences of the two engines (~1e-7 relative) forward and can amplify them, so
#: whole runs at the default rate drift further (docs/cli.md, "--verify");
#: 1e-3 leaves room for long runs and is still far below what a real error does (a
#: wrong row or task moves weights by lr * |grad| >= 1e-3).
VERIFY_RTOL = {"float64": 1e-9, "float32": 1e-3}

#: Exit statuses.
EXIT_OK, EXIT_VERIFY, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM, EXIT_PIPE = 0, 1, 2, 130, 143, 141

SIGNAL_EXIT = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}

#: --optimizer's full-batch choice besides the update rules of ``optimizers.OPTIMIZERS``:
#: scikit-learn's L-BFGS (``Sequential`` compiled with ``LBFGS``; ``trainer.fit_lbfgs``).
LBFGS = "lbfgs"

#: Hyperparameter options and the optimizers / schedules they belong to.
OPTIMIZER_OPTIONS = {"momentum": ("sgd",), "nesterov": ("sgd",), "beta1": ("adam",),
                     "beta2": ("adam",), "rho": ("rmsprop", "adadelta"),
                     "eps": ("rmsprop", "adam", "adadelta"), "tol": (LBFGS,),
                     "max_fun": (LBFGS,)}

SCHEDULE_OPTIONS = {"power_t": ("invscaling",), "step_size": ("step",),
                    "gamma": ("step", "plateau"), "t_max": ("cosine",),
                    "min_lr": ("cosine", "plateau"), "lr_patience": ("plateau",)}

#: Option groups (argparse dests) by what a model file fixes.
DATA_OPTIONS = ("dataset", "data", "target", "target_file", "task", "samples", "features",
                "classes", "test_size", "split_seed", "no_stratify", "scaling")

NETWORK_OPTIONS = ("layers", "activation", "negative_slope", "dropout", "head", "dtype",
                   "init")

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


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse would print the whole usage block; one line is easier to read and grep.
        raise UsageError(f"{message} (see --help)")


def int_at_least(low):
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


def float_in(low, high, low_open=False, high_open=True):
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


positive = float_in(0.0, math.inf, low_open=True)

non_negative = float_in(0.0, math.inf)

fraction = float_in(0.0, 1.0)            # [0, 1)

open_fraction = float_in(0.0, 1.0, low_open=True)


def parse_test_size(text):
    """A fraction in (0, 1), or a number of rows >= 1."""
    if text.strip().lstrip("+").isdigit():
        return int_at_least(1)(text)
    return open_fraction(text)


def layer_widths(text):
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


def parse_seed(text):
    value = int_at_least(0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {value}")
    return value


def parse_sync_every(text):
    if text == "epoch":
        return text
    return int_at_least(1)(text)


def parse_threads(text):
    value = int_at_least(1)(text)
    if value > config.NUMBA_MAX_THREADS:
        raise argparse.ArgumentTypeError(
            f"at most {config.NUMBA_MAX_THREADS} threads are available, got {value}"
        )
    return value


def build_parser(prog=PROG):
    """The argument parser (also used by the tests to list every option)."""
    parser = Parser(
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
    data.add_argument("--samples", type=int_at_least(2), default=1000, metavar="N",
                      help="synthetic: rows (default: %(default)s)")
    data.add_argument("--features", type=int_at_least(1), default=20, metavar="N",
                      help="synthetic: feature columns (default: %(default)s)")
    data.add_argument("--classes", type=int_at_least(2), default=2, metavar="N",
                      help="synthetic classification: classes (default: %(default)s)")
    data.add_argument("--test-size", type=parse_test_size, default=TEST_SIZE, metavar="F",
                      help="test split: a fraction in (0, 1) or a number of rows (default: "
                      "%(default)s)")
    data.add_argument("--split-seed", type=parse_seed, default=SPLIT_SEED, metavar="N",
                      help="seed of the train/test split (default: %(default)s, the tutorial's)")
    data.add_argument("--no-stratify", action="store_true",
                      help="split classification data without stratifying by class "
                      "(digits then gets the tutorial's exact split)")
    data.add_argument("--scaling", default="auto", choices=SCALINGS,
                      help="inputs: auto divides digits by 16 and standardises the rest with "
                      "training-split statistics; standard; none (default: %(default)s)")

    net = parser.add_argument_group("network")
    net.add_argument("--layers", type=layer_widths, default=(128, 128), metavar="W1,W2,...",
                     help="widths of the hidden layers, comma-separated; '' for none "
                     "(default: 128,128)")
    net.add_argument("--activation", default="sigmoid", choices=list(HIDDEN_ACTIVATIONS),
                     help="activation of every hidden layer (default: %(default)s)")
    net.add_argument("--negative-slope", type=fraction, default=0.2, metavar="S",
                     help="leaky_relu's slope for z < 0, in [0, 1) (default: %(default)s, "
                     "Keras's; PyTorch's is 0.01)")
    net.add_argument("--dropout", type=fraction, default=0.0, metavar="RATE",
                     help="dropout rate in [0, 1) of every hidden layer's output, in training "
                     "(Keras's Dropout after each hidden Dense; default: %(default)s)")
    net.add_argument("--head", default="auto", choices=["auto", "softmax", "sigmoid", "identity"],
                     help="output activation, with its loss: softmax + categorical "
                     "cross-entropy, sigmoid + binary cross-entropy, identity + squared "
                     "error; auto: softmax for classification, identity for regression")
    net.add_argument("--dtype", default="float32", choices=list(DTYPES),
                     help="floating-point type of weights and computation (default: %(default)s)")
    net.add_argument("--init", default="normal", choices=list(INITIALIZERS),
                     help="weight initialisation (default: %(default)s, N(0, 1) as the tutorial)")

    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int_at_least(1), default=None, metavar="N",
                     help=f"epochs to train (default: {DEFAULT_EPOCHS}; with --load none; "
                     f"with --resume required: epochs to add)")
    fit.add_argument("--batch-size", type=int_at_least(0), default=64, metavar="N",
                     help="rows per mini-batch; 0 = the whole training set (default: %(default)s)")
    fit.add_argument("--optimizer", default="sgd", choices=[*OPTIMIZERS, LBFGS],
                     help="update rule; lbfgs is scikit-learn's full-batch L-BFGS (scipy's "
                     "L-BFGS-B): --epochs is its most iterations, no --lr, --batch-size or "
                     "--dropout (default: %(default)s)")
    fit.add_argument("--lr", type=positive, default=None,
                     help=f"learning rate (default: {SGD_LR} for sgd, else the optimizer's: "
                     f"rmsprop and adam 0.001, adadelta 1.0)")
    fit.add_argument("--momentum", type=fraction, default=None,
                     help="sgd: momentum in [0, 1) (default: 0)")
    fit.add_argument("--nesterov", action="store_true", help="sgd: Nesterov momentum")
    fit.add_argument("--beta1", type=fraction, default=None, help="adam: beta1 (default: 0.9)")
    fit.add_argument("--beta2", type=fraction, default=None, help="adam: beta2 (default: 0.999)")
    fit.add_argument("--rho", type=fraction, default=None,
                     help="rmsprop, adadelta: decay of the running averages (default: 0.9, 0.95)")
    fit.add_argument("--eps", type=positive, default=None,
                     help="rmsprop, adam, adadelta: epsilon (default: 1e-7, 1e-8, 1e-7)")
    fit.add_argument("--tol", type=non_negative, default=None,
                     help="lbfgs: stop when the largest entry of the gradient is <= tol "
                     "(default: 1e-4, scikit-learn's)")
    fit.add_argument("--max-fun", type=int_at_least(1), default=None, metavar="N",
                     help="lbfgs: the most loss evaluations (default: 15000, scikit-learn's)")
    fit.add_argument("--schedule", default="constant", choices=list(SCHEDULES),
                     help="learning rate per epoch: constant; invscaling lr/(epoch+1)^power_t; "
                     "step lr*gamma^(epoch//step_size); cosine from lr to min-lr over t-max "
                     "epochs; plateau: times gamma when --monitor stalls for lr-patience "
                     "epochs (default: %(default)s)")
    fit.add_argument("--power-t", type=non_negative, default=None,
                     help="invscaling: exponent (default: 0.5)")
    fit.add_argument("--step-size", type=int_at_least(1), default=None, metavar="N",
                     help="step: epochs between reductions (default: 10)")
    fit.add_argument("--gamma", type=open_fraction, default=None,
                     help="step, plateau: factor of each reduction, in (0, 1) (default: 0.1)")
    fit.add_argument("--t-max", type=int_at_least(1), default=None, metavar="N",
                     help="cosine: epochs of the annealing (default: --epochs)")
    fit.add_argument("--min-lr", type=non_negative, default=None,
                     help="cosine, plateau: lowest rate (default: 0)")
    fit.add_argument("--lr-patience", type=int_at_least(1), default=None, metavar="N",
                     help="plateau: epochs without improvement before a reduction (default: 10)")
    fit.add_argument("--l2", type=non_negative, default=0.0,
                     help="L2 penalty on the weights, scikit-learn's alpha (default: %(default)s)")
    fit.add_argument("--validation-split", type=fraction, default=0.0, metavar="F",
                     help="fraction of the training rows (the last ones) held out and scored "
                     "after every epoch (default: %(default)s)")
    fit.add_argument("--early-stopping", type=int_at_least(1), default=None,
                     metavar="PATIENCE",
                     help="stop when --monitor has not improved for PATIENCE epochs, then "
                     "restore the best epoch's weights (default: off)")
    fit.add_argument("--min-delta", type=non_negative, default=None,
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
    fit.add_argument("--seed", type=parse_seed, default=0,
                     help="seed of the weights and then of the shuffling, one generator "
                     "(model.rng); also of the synthetic data (default: %(default)s)")

    files = parser.add_argument_group("model files")
    files.add_argument("--save", metavar="PATH", default=None,
                       help="write the model to PATH (.npz; fastnn.load reads it), also when "
                       "interrupted by SIGINT or SIGTERM")
    files.add_argument("--load", metavar="PATH", default=None,
                       help="evaluate a saved model (on its recorded data, or on the data "
                       "options given: all their rows); train it further with --epochs")
    files.add_argument("--export-onnx", metavar="PATH", default=None,
                       help="also write the model (trained, or --load's) as an ONNX file to "
                       "PATH, runnable without fastnn (needs pip install 'fastnn[onnx]')")
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
    out.add_argument("--log-every", type=int_at_least(0), default=0, metavar="K",
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
    run.add_argument("--threads", type=parse_threads, default=None, metavar="N",
                     help=f"threads for Numba and BLAS (default: all, here "
                     f"{config.NUMBA_MAX_THREADS})")
    run.add_argument("--compile-only", action="store_true",
                     help="compile the Numba kernels of the common configurations (every front "
                     "end's default) and of --dtype with --optimizer into the cache, then exit; "
                     "for images and CI set-up steps (the cache is specific to the machine)")
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
    run.add_argument("--sync-every", type=parse_sync_every, default="epoch", metavar="K",
                     help="with --scheduler: average the workers' weights every K mini-batches, "
                     "or once per epoch (default: %(default)s)")
    return parser


def given_options(argv):
    """The dests of the options given on the command line (not defaulted)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def option_name(dest):
    return "--" + dest.replace("_", "-")


def step_name(model):
    """What one history entry of the model is: "iteration" of L-BFGS, else "epoch"."""
    return "iteration" if getattr(model.optimizer, "name", None) == LBFGS else "epoch"


def log_step(epochs):
    for step in LOG_STEPS:
        if epochs <= step * MAX_PROGRESS_LINES:
            return step
    return -(-epochs // MAX_PROGRESS_LINES)
