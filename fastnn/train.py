"""Command line: train a dense network on a small scikit-learn data set.

    python -m fastnn.train                      # the tutorial's 64-128-128-10 network on digits
    python -m fastnn.train --dataset iris --layers 16 --epochs 100 --save iris.npz
    fastnn-train --help

Prints one progress line every few epochs, then the train and test accuracy and
the training time.  Exit status: 0 on success, 2 for a usage or input error
(bad option, diverged training, unwritable ``--save`` path), 130 when
interrupted.  Errors are one line on stderr: ``fastnn.train: error: ...``.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

from . import config, model_io
from .datasets import LOADERS, load_dataset, predict_labels
from .network import DTYPES, HEADS, HIDDEN_ACTIVATIONS, INITIALIZERS, Architecture, init_params
from .trainer import BACKENDS, DivergenceError, fit, predict_output

PROG = "fastnn.train"

#: Default number of epochs.  With the tutorial's N(0, 1) initialisation, 50
#: epochs give 95.6 % test accuracy on digits (seed 0); from about epoch 230 on the
#: test accuracy stays at 97.2-97.8 %.
DEFAULT_EPOCHS = 300

#: Progress lines are printed every k epochs, k the smallest of these values that
#: keeps the progress output to at most MAX_PROGRESS_LINES lines.
_LOG_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
MAX_PROGRESS_LINES = 20


class UsageError(Exception):
    """A bad option value or input; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse would print the whole usage block; one line is easier to read and grep.
        raise UsageError(f"{message} (see --help)")


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


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


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


def _threads(text):
    value = _int_at_least(1)(text)
    if value > config.NUMBA_MAX_THREADS:
        raise argparse.ArgumentTypeError(
            f"at most {config.NUMBA_MAX_THREADS} threads are available, got {value}"
        )
    return value


def build_parser(prog=PROG):
    """The argument parser (also used by the tests to list every option)."""
    parser = _Parser(
        prog=prog,
        description="Train a fully connected network with mini-batch SGD on a small "
        "scikit-learn data set and report its train and test accuracy. The defaults "
        "are the tutorial's network: 64-128-128-10, sigmoid hidden layers, softmax "
        "output, trained on the digits data set with the split "
        "train_test_split(test_size=0.1, random_state=20).",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="digits", choices=list(LOADERS),
                      help="data set to train on (default: %(default)s). digits: inputs divided "
                      "by 16; the others: standardised with statistics of the training split")

    net = parser.add_argument_group("network")
    net.add_argument("--layers", type=_layer_widths, default=(128, 128), metavar="W1,W2,...",
                     help="widths of the hidden layers, comma-separated; '' for none "
                     "(default: 128,128)")
    net.add_argument("--activation", default="sigmoid", choices=list(HIDDEN_ACTIVATIONS),
                     help="activation of every hidden layer (default: %(default)s)")
    net.add_argument("--head", default="auto", choices=["auto", *HEADS],
                     help="output activation and its loss (default: auto = softmax with "
                     "cross-entropy, as all data sets are classification problems)")
    net.add_argument("--dtype", default="float32", choices=list(DTYPES),
                     help="floating-point type of parameters and computation (default: %(default)s)")
    net.add_argument("--init", default="normal", choices=list(INITIALIZERS),
                     help="weight initialisation (default: %(default)s, N(0, 1) weights as in "
                     "the tutorial)")

    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=_int_at_least(1), default=DEFAULT_EPOCHS, metavar="N",
                     help="passes over the training set (default: %(default)s)")
    fit.add_argument("--batch-size", type=_int_at_least(0), default=64, metavar="N",
                     help="rows per mini-batch; 0 = the whole training set (default: %(default)s)")
    fit.add_argument("--lr", type=_positive_float, default=0.5, help="SGD learning rate (default: %(default)s)")
    fit.add_argument("--seed", type=_seed, default=0,
                     help="seed of the weight initialisation and of the shuffling (default: "
                     "%(default)s)")

    run = parser.add_argument_group("execution and output")
    run.add_argument("--backend", default="numba", choices=list(BACKENDS),
                     help="numba: compiled parallel kernels; numpy: the plain NumPy "
                     "reference, slower (default: %(default)s)")
    run.add_argument("--threads", type=_threads, default=None, metavar="N",
                     help=f"threads for Numba and BLAS (default: all, here "
                     f"{config.NUMBA_MAX_THREADS})")
    run.add_argument("--save", metavar="PATH", default=None,
                     help="write the trained model to PATH, an .npz file that "
                     "fastnn.model_io.load reads (default: do not save)")
    run.add_argument("--log-every", type=_int_at_least(0), default=0, metavar="K",
                     help=f"print a progress line every K epochs; 0 = choose K so that "
                     f"at most {MAX_PROGRESS_LINES} lines are printed (default)")
    run.add_argument("--quiet", action="store_true",
                     help="print only the final accuracies and time, no progress lines")
    return parser


def main(argv=None):
    """Entry point of ``python -m fastnn.train`` and ``fastnn-train``; returns the exit status."""
    try:
        return _main(argv)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which has exited: stop quietly, as other tools do.
        # Python flushes stdout again at exit, so point it at devnull first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv):
    prog = "fastnn-train" if os.path.basename(sys.argv[0]) == "fastnn-train" else PROG
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if args.save is not None:
        _check_writable(args.save)

    head = "softmax" if args.head == "auto" else args.head
    data = load_dataset(args.dataset, head=head)
    arch = Architecture((data.n_features, *args.layers, data.n_outputs), args.activation,
                        head, args.dtype)
    params = init_params(arch, args.init, random_state=args.seed)

    threads = args.threads
    n_threads = threads or config.NUMBA_MAX_THREADS
    log_every = args.log_every or _log_step(args.epochs)
    say = (lambda *a, **k: None) if args.quiet else print
    say(f"{data.name}: {len(data.y_train)} train / {len(data.y_test)} test samples, "
        f"{data.n_features} features, {len(data.classes)} classes")
    say(f"network {'-'.join(map(str, arch.sizes))}, {args.activation} hidden layers, "
        f"{head} head, {arch.dtype}, init {args.init}; backend {args.backend}, "
        f"{n_threads} thread{'s' if n_threads != 1 else ''}")
    say(f"SGD: {args.epochs} epochs, batch size {args.batch_size or 'full'}, lr {args.lr}, "
        f"seed {args.seed}")

    start = time.perf_counter()

    def progress(epoch, logs):
        loss = logs["loss"]
        if epoch == 1 or epoch % log_every == 0 or epoch == args.epochs:
            say(f"epoch {epoch:>{len(str(args.epochs))}}/{args.epochs}  loss {loss:.6f}  "
                f"elapsed {time.perf_counter() - start:.3f} s", flush=True)

    try:
        # Overflow on the way to a non-finite loss is reported once, as DivergenceError.
        with np.errstate(over="ignore", invalid="ignore"):
            history = fit(arch, params, data.X_train, data.Y_train, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, random_state=args.seed,
                            backend=args.backend, threads=threads, callbacks=[progress])
    except DivergenceError as exc:
        raise UsageError(str(exc)) from None
    total = time.perf_counter() - start
    if history.interrupted:
        print(f"interrupted after epoch {history.epochs}", file=sys.stderr)

    scores = {}
    for split, X, y in (("train", data.X_train, data.y_train), ("test", data.X_test, data.y_test)):
        output = predict_output(arch, params, X, backend=args.backend, threads=threads)
        scores[split] = 100.0 * float(np.mean(predict_labels(output, data.classes) == y))
    print(f"train accuracy {scores['train']:.2f} %  ({len(data.y_train)} samples)")
    print(f"test accuracy  {scores['test']:.2f} %  ({len(data.y_test)} samples)")
    first = history.epoch_seconds[0]
    print(f"training time  {total:.3f} s for {args.epochs} epochs "
          f"(first epoch {first:.3f} s"
          + (", includes compiling or loading the Numba kernels" if args.backend == "numba"
             else "")
          + ")")

    if args.save is not None:
        extra = {
            "dataset": data.name,
            "classes": data.classes.tolist(),
            "preprocessing": data.preprocessing,
            "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                         "seed": args.seed, "init": args.init, "backend": args.backend,
                         "final_loss": float(history.loss[-1])},
            "accuracy_percent": scores,
        }
        try:
            model_io.save(args.save, arch, params, extra)
        except OSError as exc:
            raise UsageError(f"cannot write {args.save}: {exc.strerror or exc}") from None
        print(f"saved model to {args.save}")
    return 130 if history.interrupted else 0


def _log_step(epochs):
    for step in _LOG_STEPS:
        if epochs <= step * MAX_PROGRESS_LINES:
            return step
    return -(-epochs // MAX_PROGRESS_LINES)


def _check_writable(path):
    """Fail before training, not after, when ``--save`` cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"--save {path}: is a directory")
    if not os.path.isdir(directory):
        raise UsageError(f"--save {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"--save {path}: directory {directory} is not writable")


if __name__ == "__main__":
    sys.exit(main())
