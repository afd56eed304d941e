"""The entry point: a run from options to exit status, training through Sequential.fit."""

import gc
import os
import signal
import statistics
import sys
import threading
import time
import warnings

import numpy as np

from .. import config, profiling
from ..trainer import DivergenceError, EpochPrinter
from .data import (build_data, data_settings, describe_source, load_model, record_of,
                   save_with_record)
from .options import (DATA_OPTIONS, DEFAULT_EPOCHS, EXIT_OK, EXIT_PIPE, EXIT_SIGINT,
                      EXIT_SIGTERM, EXIT_USAGE, EXIT_VERIFY, LBFGS, PROG, SIGNAL_EXIT,
                      VERIFY_RTOL, Terminated, UsageError, build_parser, given_options, log_step,
                      step_name)
from .report import (Output, metrics_document, plot_history, scores_of, write_json,
                     write_predictions)
from .settings import (check_lbfgs_run, check_options, check_writable, fit_settings_for,
                       import_matplotlib, new_model)


def entry_point():
    """What ``python -m fastnn.train`` and ``fastnn-train`` run: ``main()`` between two
    ``gc.freeze()`` calls; returns the exit status.

    A freeze moves every object alive out of the cycle collector's reach.  The first
    (fastnn's and Numba's modules, imported by then) spares them the collections that
    scikit-learn's import and the run trigger; the second spares all of them the
    collections of the interpreter's teardown (measured in docs/performance.md,
    "Start-up").  Objects in reference cycles are then left to
    the operating system at exit instead of being finalised; everything the command
    line writes is closed before ``main`` returns.  ``main`` does not freeze: it also
    runs inside other programs and the tests.
    """
    gc.freeze()
    try:
        return main()
    finally:
        gc.freeze()


def main(argv=None):
    """The command line on argv (default ``sys.argv[1:]``), in this process; returns the
    exit status."""
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


def _compile_only(args):
    """--compile-only: fill Numba's cache for the common configurations and the one asked for
    (with --optimizer lbfgs: its full-batch objective, which warm_up does not know)."""
    from ..compilation import COMMON_CONFIGURATIONS, warm_up

    asked = (args.dtype, args.optimizer)
    configurations = COMMON_CONFIGURATIONS + (
        () if asked in COMMON_CONFIGURATIONS or args.optimizer == LBFGS else (asked,))
    if args.backend != "numba":
        raise UsageError("--compile-only compiles the numba backend's kernels")
    warm_up(configurations, verbose=not args.quiet)
    if args.optimizer == LBFGS:
        _warm_up_lbfgs(args.dtype, verbose=not args.quiet)
    return EXIT_OK


def _warm_up_lbfgs(dtype, verbose):
    """Compile (or load) the L-BFGS objective and prediction kernels of dtype: one iteration
    on a tiny network, as ``compilation.warm_up`` does for the update rules."""
    from ..compilation import compile_notice, describe
    from ..network import Architecture, init_params
    from ..trainer import fit_lbfgs

    arch = Architecture((2, 3, 2), ("sigmoid",), "softmax", dtype)
    X, Y = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), np.eye(2)[[0, 1, 1]]
    with compile_notice(describe(arch, LBFGS), enabled=verbose) as compiled:
        fit_lbfgs(arch, init_params(arch, "normal", random_state=0), X, Y, max_iter=1,
                  metrics=["accuracy"], catch_signals=False)
    if verbose and not compiled():
        print(f"fastnn kernels for {describe(arch, LBFGS)}: already compiled", file=sys.stderr,
              flush=True)


def _main(argv):
    started = time.perf_counter()
    prog = "fastnn-train" if os.path.basename(sys.argv[0]) == "fastnn-train" else PROG
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if args.compile_only:
        return _compile_only(args)
    given = given_options(argv)
    check_options(args, given)
    for option in ("save", "predict", "metrics_json", "plot", "export_onnx"):
        if getattr(args, option) is not None:
            check_writable(getattr(args, option), "--" + option.replace("_", "-"))
    if args.plot is not None:
        import_matplotlib()
    if args.export_onnx is not None:
        from ..onnx_export import require_onnx

        try:
            require_onnx()
        except ImportError as exc:
            raise UsageError(f"--export-onnx: {exc}") from None
    out = Output(args)
    timings = {}

    # ---- the model and its data -------------------------------------------------
    tick = time.perf_counter()
    stored_path = args.resume or args.load
    record = None
    if stored_path is not None:
        model, record = load_model(stored_path)
        epochs = args.epochs or 0
        if epochs and model.compiled and model.optimizer.name == LBFGS:
            check_lbfgs_run(args, given, f"the L-BFGS model in {stored_path}")
    else:
        model, epochs = None, args.epochs or DEFAULT_EPOCHS
    source, split = data_settings(args, given, record)
    whole = args.load is not None and epochs == 0 and bool(given & set(DATA_OPTIONS))
    data, eval_sets = build_data(source, split, record, model, args, whole, predict_only=(
        whole and args.predict is not None))
    fit_settings = fit_settings_for(args, given, record, epochs)
    if model is None:
        model = new_model(args, data, epochs)
    elif not model.compiled:
        raise UsageError(f"{stored_path}: the model was saved before compile; it can only be "
                         f"trained or evaluated once compiled (from Python)")
    if record is not None and args.resume is not None:
        if data.fingerprint() != record["fingerprint"]:
            raise UsageError(f"--resume {stored_path}: the training data differ from those the "
                             f"model was trained on ({describe_source(source)} changed?)")
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
        lbfgs = model.optimizer.name == LBFGS
        if stop_signal is not None:
            resumable = "" if lbfgs else " (--resume finishes the run as if uninterrupted)"
            out.error_line(f"{PROG}: {_signal_name(stop_signal)} received: training stopped "
                           f"{_where_stopped(history, step_name(model))}"
                           + (f"; saving the model to {args.save}{resumable}" if args.save
                              else ""))
        elif lbfgs and history.stop_reason in _LBFGS_STOPS:
            out.say(f"L-BFGS {_LBFGS_STOPS[history.stop_reason]} after iteration "
                    f"{history.epochs}")
        elif history.stop_reason == "early stopping":
            out.say(f"early stopping after epoch {history.epochs}; best epoch "
                    f"{history.best_epoch}"
                    + ("" if not fit_settings["early_stopping"]["restore_best_weights"]
                       else ", whose weights are kept"))
    if args.save is not None:
        # A model only evaluated keeps the record of the data it was trained on.
        keep = record is not None and not epochs
        save_with_record(model, args.save, record if keep else record_of(source, split, data, fit_settings))
    if args.export_onnx is not None:
        _export_onnx(model, args.export_onnx, data.preprocessing)
    if args.verify and stop_signal is None:
        verification = _verify(model, data, fit_settings, epochs, args, stored_path)
        stop_signal = verification.pop("signal")
        if stop_signal is not None:
            out.error_line(f"{PROG}: {_signal_name(stop_signal)} received: --verify's "
                           f"reference run stopped, nothing verified")

    # ---- scores and reports -----------------------------------------------------
    tick = time.perf_counter()
    scores = scores_of(model, eval_sets, args)
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
        profile_report = profiling.report(
            model, data.X_train, data.Y_train, fit_settings, run.epoch_seconds,
            timings.get("compile_s"), run.compile_source, [X for _, X, _, _ in eval_sets],
            args.threads)
        out.profile(profile_report)
    if args.predict is not None:
        write_predictions(args.predict, model, eval_sets[-1], data.preprocessing, args)
        out.say(f"wrote predictions for {eval_sets[-1][1].shape[0]} rows to {args.predict}")
    if args.plot is not None:
        plot_history(args.plot, model.history, data.task)
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
        write_json(args.metrics_json, metrics_document(
            args, model, data, source, split, fit_settings, epochs, run, scores, timings,
            profile_report, verification, status, stored_path))
    if status == EXIT_VERIFY:
        out.error_line(f"{PROG}: verification failed: {verification['message']}")
    return status


#: How an L-BFGS run that ended before --epochs iterations is reported, by stop_reason.
_LBFGS_STOPS = {"converged": "converged (gradient below --tol, or no more decrease of the loss)",
                "max_fun": "stopped: --max-fun loss evaluations done",
                "stalled": "stopped: it found no lower loss (scaled inputs or --dtype float64 "
                           "may help)"}


def _fit_kwargs(model, data, settings):
    from ..trainer import EarlyStopping

    early = settings["early_stopping"]
    batch_size = settings["batch_size"] or data.X_train.shape[0]
    return dict(epochs=None, batch_size=batch_size, validation_split=settings["validation_split"],
                shuffle=settings["shuffle"],
                early_stopping=None if early is None else EarlyStopping(**early))


def _fit(model, data, settings, epochs, backend, threads, callbacks, runner=None):
    """Train model on the training split (Sequential.fit) with the given backend and runner."""
    kwargs = _fit_kwargs(model, data, settings)
    kwargs["epochs"] = epochs
    with warnings.catch_warnings():
        # Sequential.fit warns when interrupted, or when L-BFGS stops early; the command
        # line says it itself.
        warnings.filterwarnings("ignore", message="training interrupted", category=UserWarning)
        warnings.filterwarnings("ignore", message="L-BFGS stopped", category=UserWarning)
        return model.fit(data.X_train, data.Y_train, verbose=0, callbacks=callbacks,
                         threads=threads, backend=backend, runner=runner, **kwargs)


def _fit_distributed(model, data, settings, epochs, args, callbacks):
    """--scheduler: the training of ``_fit``, data-parallel (``distributed.DataParallel``),
    one partition of the training rows per worker."""
    try:
        from .. import distributed
    except ImportError:
        raise UsageError("--scheduler needs dask and distributed: pip install 'fastnn[dask]'"
                         ) from None
    try:
        with distributed.connect(args.scheduler) as client:
            runner = distributed.DataParallel(client, sync_every=args.sync_every,
                                              partitions="workers")
            return _fit(model, data, settings, epochs, args.backend, args.threads, callbacks,
                        runner)
    except distributed.WorkerLostError as exc:
        raise UsageError(f"--scheduler {args.scheduler}: {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"--scheduler {args.scheduler}: {exc}") from None


class _Progress(EpochPrinter):
    """Progress lines: every k epochs (all with --verbose), with the epoch's values."""

    def __init__(self, out, epochs, every, verbose, step="epoch"):
        super().__init__(epochs)
        self.out, self.every, self.verbose, self.step = out, every, verbose, step

    def on_train_begin(self, history):
        super().on_train_begin(history)
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        done = epoch - self.first_epoch + 1
        if not (self.verbose or epoch == self.first_epoch or done % self.every == 0
                or epoch == self.last_epoch):
            return
        values = "  ".join(f"{key} {logs[key]:.6f}" if key.endswith("loss")
                           else f"{key} {logs[key]:.4f}" for key in self.shown(logs))
        extra = ""
        if self.verbose:  # L-BFGS has no learning rate
            extra = (f"  lr {logs['lr']:.4g}" if "lr" in logs else "") + \
                f"  {1e3 * logs['seconds']:.2f} ms"
        self.out.say(f"{self.step} {epoch:>{len(str(self.last_epoch))}}/{self.last_epoch}  "
                     f"{values}{extra}  elapsed {time.perf_counter() - self.start:.3f} s",
                     flush=True)


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
            every = self.args.log_every or log_step(self.epochs)
            callbacks.append(_Progress(self.out, self.epochs, every, self.args.verbose,
                                       step_name(self.model)))
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


def _export_onnx(model, path, preprocessing):
    """--export-onnx: the model, with the data's scaling and labels, as an ONNX file; a path
    that cannot be written is a usage error (exit 2)."""
    from ..onnx_export import to_onnx

    try:
        to_onnx(model, path, preprocessing)
    except (ImportError, OSError) as exc:
        raise UsageError(f"--export-onnx {path}: {exc}") from None


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _where_stopped(history, step="epoch"):
    """'after epoch 7' ('after iteration 7' of L-BFGS), or 'in epoch 8 after 128 of 1617
    rows' (a batch boundary)."""
    partial = history.partial
    if partial is None:
        return f"after {step} {history.epochs}"
    return (f"in epoch {history.epochs + 1} after {partial.next_row} of "
            f"{partial.order.shape[0]} rows")


def _warm_up(model, data, settings, args):
    """Seconds of the first call of the epoch and prediction kernels, and where they came from.

    A one-epoch fit of a copy of the model (its layers, weights and compile settings
    with a fresh optimizer, another generator) on one batch of rows: the same
    compiled signatures as the real run, which then starts warm.  The model is not
    touched.  A signal during it ends the program as one outside training does.
    """
    from ..kernels import epoch as compiled
    from ..models import Sequential

    batch = settings["batch_size"] or data.X_train.shape[0]
    rows = min(batch, data.X_train.shape[0])
    warm = Sequential(model.layers, dtype=model.dtype, init=model.init, random_state=0)
    warm.compile(optimizer=model.optimizer.get_config(), loss=model.loss, metrics=model.metrics,
                 l2=model.l2)
    warm.build(model.input_dim).params[:] = model.params
    hits = sum(compiled.train_epoch.stats.cache_hits.values())
    misses = sum(compiled.train_epoch.stats.cache_misses.values())
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="training interrupted", category=UserWarning)
        warm.fit(data.X_train[:rows], data.Y_train[:rows], epochs=1, batch_size=batch, verbose=0,
                 threads=args.threads)
    seconds = time.perf_counter() - start
    if warm.history.interrupted:
        raise KeyboardInterrupt if warm.history.signal == signal.SIGINT else Terminated
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
        reference_model, _ = load_model(stored_path)
    else:
        reference_model = new_model(args, data, epochs)
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
