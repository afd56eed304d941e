"""What a run reports: final scores, predictions, plots, the --metrics-json document
and every line printed."""

import json
import statistics
import sys

import numpy as np

from .. import config, profiling
from ..datasets import decode
from ..metrics import metric_for
from ..schedules import schedule_config
from ..version import __version__
from .options import PROG, UsageError, step_name


def scores_of(model, eval_sets, args):
    """{label: {"loss", metric, "samples"}} of the model on each evaluation set with targets."""
    from .. import trainer

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


def write_predictions(path, model, eval_set, preprocessing, args):
    import csv

    from ..trainer import predict_output

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


def plot_history(path, history, task):
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


def metrics_document(args, model, data, source, split, settings, epochs, run, scores, timings,
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


def write_json(path, document):
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


class Output:
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
            self.say(f"model {stored_path}: {model.history.epochs} {step_name(model)}s trained")
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
                     f"{epochs} {step_name(model)}s",
                     f"batch size {settings['batch_size'] or 'full'}"]
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
        step = step_name(run.model)  # "epoch", or "iteration" of L-BFGS
        # fit compiles or loads the kernels before the first epoch: that time is part of
        # the total, not of any epoch.
        cold = args.backend == "numba" and not args.profile
        first = f"first {step} {seconds[0]:.3f} s"
        if cold:
            first += (f"; {total - sum(seconds):.3f} s outside the {step}s, compiling or "
                      f"loading the Numba kernels included")
        self.result(f"training time {total:.3f} s for {len(seconds)} {step}s (median "
                    f"{1e3 * statistics.median(seconds):.2f} ms per {step}; {first})")

    def verification(self, v):
        verdict = "passed" if v["passed"] else "FAILED"
        self.result(f"verify {verdict}: compiled vs NumPy reference after {v['epochs']} epochs: "
                    f"max |dw| {v['max_abs_deviation']:.3g} = {v['relative_deviation']:.3g} of "
                    f"max |w| (tolerance {v['tolerance']:g}; reference took "
                    f"{v['reference_seconds']:.2f} s)")

    def profile(self, report):
        for line in profiling.report_lines(report):
            self.result(line)
