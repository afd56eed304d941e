"""The data of a run (built-in, synthetic or a file, split and scaled as recorded)
and the model files that carry this program's record of them."""

import os
import sys

from .. import model_io
from ..datasets import (DataError, DataSource, file_error, fit_preprocessing, load_source,
                        prepare, transform)
from .options import DATA_OPTIONS, RECORD_VERSION, UsageError


def data_settings(args, given, record):
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


def describe_source(source):
    if source.path is not None:
        return source.path + (f" (targets {source.target_file})" if source.target_file else "")
    return source.dataset


def head_for(task, requested, stored_head=None):
    if stored_head is not None:
        return stored_head
    if requested == "auto":
        return "softmax" if task == "classification" else "identity"
    if task == "regression" and requested != "identity":
        raise UsageError(f"regression needs --head identity (or auto), not {requested}")
    if task == "classification" and requested == "identity":
        raise UsageError("classification needs --head softmax or sigmoid (or auto)")
    return requested


def build_data(source, split, record, model, args, whole, predict_only):
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
        head = head_for(raw.task, args.head, model.arch.head if model is not None else None)
        if whole:
            if preprocessing is None:
                preprocessing = unrecorded_preprocessing(raw, split["scaling"], model, head)
            X, Y = transform(preprocessing, raw.X, raw.y, head)
            data = whole_dataset(raw, X, Y, preprocessing)
            check_fits_model(model, data)
            return data, [("data", X, Y, raw.y)]
        data = prepare(raw, head=head, test_size=split["test_size"],
                       split_seed=split["split_seed"], stratify=split["stratify"],
                       scaling=split["scaling"], preprocessing=preprocessing)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    if model is not None:
        check_fits_model(model, data)
    sets = [("train", data.X_train, data.Y_train, data.y_train),
            ("test", data.X_test, data.Y_test, data.y_test)]
    return data, sets


def unrecorded_preprocessing(raw, scaling, model, head):
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


def whole_dataset(raw, X, Y, preprocessing):
    from ..datasets import Dataset

    return Dataset(raw.name, raw.task, X, X[:0], Y, None if Y is None else Y[:0], raw.y,
                   None if raw.y is None else raw.y[:0], preprocessing)


def check_fits_model(model, data):
    if data.n_features != model.input_dim:
        raise UsageError(f"the data have {data.n_features} features; the model takes "
                         f"{model.input_dim}")
    if data.Y_train is not None and data.Y_train.shape[1] != model.arch.sizes[-1]:
        raise UsageError(f"the data need {data.Y_train.shape[1]} outputs; the model has "
                         f"{model.arch.sizes[-1]}")


def load_model(path):
    """(Sequential, this program's record or None) from a model file."""
    from ..models import Sequential

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


def record_of(source, split, data, fit_settings):
    return {"version": RECORD_VERSION, "source": source.to_json(), "split": split,
            "preprocessing": data.preprocessing, "fit": fit_settings,
            "fingerprint": data.fingerprint()}


def save_with_record(model, path, record):
    try:
        # The record rides in the model's config, which Sequential._from_saved reads key by
        # key: the file still loads as a plain Sequential with fastnn.load.
        model_io.save_model(path, model, {"cli": record})
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
