"""What the options mean: combinations refused, the model they build (a compiled
Sequential, as in Python) and the settings of its fit."""

import os

from ..metrics import RUNNING_METRICS
from ..names import KERAS_NAMES
from ..schedules import make_schedule
from .data import head_for
from .options import (DATA_OPTIONS, FIT_OPTIONS, LBFGS, MODEL_OPTIONS, NETWORK_OPTIONS,
                      OPTIMIZER_OPTIONS, SCHEDULE_OPTIONS, SGD_LR, UsageError, option_name)


def check_options(args, given):
    """Refuse combinations that make no sense, before anything is read or trained."""
    if args.load is not None and args.resume is not None:
        raise UsageError("give --load or --resume, not both")
    if args.resume is not None:
        if args.epochs is None:
            raise UsageError("--resume needs --epochs N (the epochs to add)")
        fixed = given & set(DATA_OPTIONS + NETWORK_OPTIONS + MODEL_OPTIONS + FIT_OPTIONS)
        if fixed:
            raise UsageError(f"--resume continues with the data and settings recorded in the "
                             f"model file; {', '.join(option_name(d) for d in sorted(fixed))} cannot "
                             f"be given (use --load PATH --epochs N to train on with other data "
                             f"or batch settings)")
    if args.load is not None:
        fixed = given & set(NETWORK_OPTIONS + MODEL_OPTIONS)
        if fixed:
            raise UsageError(f"{', '.join(option_name(d) for d in sorted(fixed))}: fixed by the "
                             f"model in {args.load} (its layers, optimizer, schedule, L2 and "
                             f"generator are stored)")
        if args.epochs is None and given & set(FIT_OPTIONS):
            raise UsageError(f"{', '.join(option_name(d) for d in sorted(given & set(FIT_OPTIONS)))}"
                             f" only apply to training: add --epochs N")
    if "dataset" in given and args.data is not None:
        raise UsageError("give --dataset or --data, not both")
    for dest in ("target", "target_file"):
        if dest in given and args.data is None:
            raise UsageError(f"{option_name(dest)} applies to a --data file")
    if args.data is None and args.dataset != "synthetic":
        extra = given & {"samples", "features", "classes"}
        if extra:
            raise UsageError(f"{', '.join(option_name(d) for d in sorted(extra))} apply to "
                             f"--dataset synthetic")
    if args.load is None and args.resume is None:  # else the stored optimizer and schedule
        for dest, owners in OPTIMIZER_OPTIONS.items():
            if dest in given and args.optimizer not in owners:
                raise UsageError(f"{option_name(dest)} applies to --optimizer {' or '.join(owners)}, "
                                 f"not {args.optimizer}")
        if args.nesterov and not args.momentum:
            raise UsageError("--nesterov needs --momentum > 0")
        for dest, owners in SCHEDULE_OPTIONS.items():
            if dest in given and args.schedule not in owners:
                raise UsageError(f"{option_name(dest)} applies to --schedule {' or '.join(owners)}, "
                                 f"not {args.schedule}")
        if args.optimizer == LBFGS:
            if "lr" in given:
                raise UsageError("--lr applies to the mini-batch optimizers; L-BFGS has no "
                                 "learning rate (a line search chooses each step)")
            if args.schedule != "constant":
                raise UsageError(f"--schedule {args.schedule} sets a learning rate per epoch; "
                                 f"L-BFGS has none")
            check_lbfgs_run(args, given, "--optimizer lbfgs")
    if args.early_stopping is None and args.schedule != "plateau":
        for dest in ("min_delta", "monitor"):
            if dest in given:
                raise UsageError(f"{option_name(dest)} applies to --early-stopping or "
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


def check_lbfgs_run(args, given, what):
    """Refuse the options an L-BFGS run (what: the model, in words) cannot honour."""
    if "batch_size" in given and args.batch_size != 0:
        raise UsageError(f"--batch-size {args.batch_size}: {what} trains on the whole training "
                         f"set at once (leave --batch-size out, or give 0)")
    if args.dropout:
        raise UsageError(f"--dropout needs a mini-batch optimizer: {what} minimises one "
                         f"deterministic full-batch loss")
    if args.scheduler is not None:
        raise UsageError(f"--scheduler trains mini-batches data-parallel; {what} trains in "
                         f"this process")
    if args.profile:
        raise UsageError(f"--profile times the phases of mini-batch epochs; not with {what}")
    if args.verify:
        raise UsageError(f"--verify compares mini-batch epochs with the NumPy reference; not "
                         f"with {what} (its loss and gradient are checked against the "
                         f"reference by the test suite)")
    if args.resume is not None:
        raise UsageError(f"--resume continues a run exactly, but {what} keeps no state between "
                         f"runs to continue (its curvature memory is not saved); use --load "
                         f"{args.resume} --epochs N to run L-BFGS again from the saved weights")


def check_writable(path, option):
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


def import_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed; install it with "
                         "pip install fastnn[plot]  (or: pip install matplotlib)") from None


#: Each schedule's settings -> the options that give them.
SCHEDULE_FIELDS = {"constant": {}, "invscaling": {"power_t": "power_t"},
                   "step": {"step_size": "step_size", "gamma": "gamma"},
                   "cosine": {"min_lr": "min_lr"},
                   "plateau": {"factor": "gamma", "patience": "lr_patience",
                               "min_delta": "min_delta", "min_lr": "min_lr"}}


def metric_for_task(task):
    return "accuracy" if task == "classification" else "r2"


def wants_epoch_metrics(args, task):
    """Whether accuracy (r2) is computed for every epoch, not only at the end.

    Accuracy always: the epoch kernels count it as they go (the running accuracy,
    as Keras reports it).  r2 costs a forward pass over the training rows and a
    scikit-learn scorer per epoch (see --profile), so only when something uses it:
    the progress lines of --verbose, --plot, --metrics-json, a validation split, or
    a --monitor on it.
    """
    monitor = (args.monitor or "").removeprefix("val_")
    return bool(metric_for_task(task) in RUNNING_METRICS or args.verbose or args.plot
                or args.metrics_json or args.validation_split > 0 or monitor in ("accuracy", "r2"))


def optimizer_config(args):
    config_ = {"name": args.optimizer}
    lr = args.lr if args.lr is not None else (SGD_LR if args.optimizer == "sgd" else None)
    if lr is not None:
        config_["lr"] = lr
    for dest, owners in OPTIMIZER_OPTIONS.items():
        value = getattr(args, dest)
        if args.optimizer in owners and value not in (None, False):
            config_[dest] = value
    return config_


def schedule_for(args, epochs, validation):
    """The schedule of the options (None for constant, as a model compiled without one)."""
    name = args.schedule
    if name == "constant":
        return None
    settings = given_fields(args, **SCHEDULE_FIELDS[name])
    if name == "cosine":
        settings["t_max"] = args.t_max or epochs
    if name == "plateau":
        settings["monitor"] = monitor_for(args, validation)
    return make_schedule({"name": name, **settings})


def given_fields(args, **fields):
    return {name: getattr(args, dest) for name, dest in fields.items()
            if getattr(args, dest) is not None}


def monitor_for(args, validation):
    return args.monitor or ("val_loss" if validation else "loss")


def new_model(args, data, epochs):
    """A compiled Sequential for the options: the same as building it in Python."""
    from ..models import Dense, Sequential

    head = head_for(data.task, args.head)
    widths = (*args.layers, data.n_outputs)
    activations = (*([args.activation] * len(args.layers)), head)
    layers = [Dense(width, activation=KERAS_NAMES[activation],
                    input_dim=data.n_features if i == 0 else None)
              for i, (width, activation) in enumerate(zip(widths, activations))]
    if args.dropout:  # a Dropout after every hidden layer
        from ..models import Dropout

        layers = [part for layer in layers[:-1] for part in (layer, Dropout(args.dropout))] + [
            layers[-1]]
    try:
        model = Sequential(layers, dtype=args.dtype, init=args.init, random_state=args.seed,
                           negative_slope=args.negative_slope)
        metrics = [metric_for_task(data.task)] if wants_epoch_metrics(args, data.task) else []
        model.compile(optimizer=optimizer_config(args), metrics=metrics,
                      l2=args.l2, schedule=schedule_for(args, epochs, args.validation_split > 0))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    model.build()
    return model


def fit_settings_for(args, given, record, epochs):
    """Batch size, validation split, shuffling and early stopping of this run's fit."""
    if record is not None:  # recorded settings, those given replacing them (--load)
        settings = dict(record["fit"])
        for dest, key in (("batch_size", "batch_size"), ("validation_split", "validation_split")):
            if dest in given:
                settings[key] = getattr(args, dest)
        if "no_shuffle" in given:
            settings["shuffle"] = False
    else:  # L-BFGS: the whole training set (check_lbfgs_run refuses another batch size)
        settings = {"batch_size": 0 if args.optimizer == LBFGS else args.batch_size,
                    "validation_split": args.validation_split,
                    "shuffle": not args.no_shuffle, "early_stopping": None}
    validation = settings["validation_split"] > 0
    if args.early_stopping is not None:
        settings["early_stopping"] = {
            "monitor": monitor_for(args, validation), "patience": args.early_stopping,
            "min_delta": args.min_delta or 0.0, "restore_best_weights": not args.no_restore_best}
    if epochs:
        early = settings["early_stopping"]
        check_monitor(early["monitor"] if early else None, validation, args)
    return settings


def check_monitor(monitor, validation, args):
    monitors = [m for m in (monitor, args.monitor if args.schedule == "plateau" else None) if m]
    for name in monitors:
        base = name[4:] if name.startswith("val_") else name
        if base not in ("loss", "accuracy", "r2"):
            raise UsageError(f"--monitor {name}: choose loss, accuracy or r2, or val_ of one")
        if name.startswith("val_") and not validation:
            raise UsageError(f"--monitor {name} needs a validation split (--validation-split F)")
