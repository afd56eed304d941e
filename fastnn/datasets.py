"""The command line's data: built in, synthetic or read from a file; split, scaled, encoded.

Sources (``DataSource``)
------------------------
* ``digits``, ``iris``, ``breast_cancer``, ``wine``: scikit-learn's bundled data
  sets (nothing is downloaded); classification.
* ``synthetic``: ``make_classification`` or ``make_regression`` with ``samples``
  rows, ``features`` columns (and ``classes`` classes), seeded by ``seed``.
* A file (``path``):

  - ``.npz`` with arrays ``X`` (n_samples, n_features) and ``y`` (n_samples,) or
    (n_samples, n_targets), read with ``np.load(allow_pickle=False)``;
  - ``.npy`` holding X, with the targets in a second ``.npy`` file (``target_file``);
  - ``.csv`` with the target in column ``target`` (a name from the header, or a
    0-based index, negative from the end); every other column is a feature and
    must be numeric.  The delimiter (``,`` ``;`` or tab) is sniffed; the first line
    is a header when it has a non-numeric field in a column that is numeric on the
    second line.

  For prediction only, X may come without targets (no ``target`` / ``target_file``).

Task: ``"classification"`` or ``"regression"``; ``"auto"`` is classification for the
built-in sets and ``synthetic``, and for files classification when the targets
are labels (text, or one column of integral numbers), else regression.

Preparation (``prepare``)
-------------------------
* Split with ``train_test_split(test_size, random_state=split_seed)`` (the
  tutorial's 0.1 and 20 by default), stratified by class for classification
  unless ``stratify=False`` (``stratify=False`` on digits is the tutorial's split).
* Inputs (``scaling``): ``"auto"`` divides digits' pixel intensities 0..16 by 16
  (inputs in [0, 1], as the tutorial) and standardises everything else with a
  ``StandardScaler`` fitted on the training split only, so no test statistics leak
  into training; ``"standard"`` standardises digits too; ``"none"`` leaves the
  inputs as they are.  Columns that are constant in the training split keep a
  scale of 1 (scikit-learn's rule).
* Class labels are one-hot encoded with ``OneHotEncoder`` fitted on the training
  labels (one column per class, in sorted label order, also for two classes, as a
  softmax head needs; a sigmoid head on two classes gets the single column "is
  ``classes[1]``").  Labels may be numbers or text.
* Regression targets are standardised with the training split's mean and
  standard deviation, so that one learning rate suits any target scale; the loss
  is measured in those units, r2 does not depend on them, and ``decode`` maps the
  network's outputs back to the original units.

Everything fitted on the training split is kept in ``Dataset.preprocessing``, a
JSON-serialisable dict, so a saved model can be applied to new data the same way
(``transform``).
"""

import csv
import hashlib
import io
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from .checks import READ_ERRORS

#: Built-in data sets: name -> name of the scikit-learn loader (imported on use).
BUILTIN = {"digits": "load_digits", "iris": "load_iris", "breast_cancer": "load_breast_cancer",
           "wine": "load_wine"}
#: Names accepted as DataSource.dataset besides a file.
DATASETS = (*BUILTIN, "synthetic")
TASKS = ("auto", "classification", "regression")
SCALINGS = ("auto", "standard", "none")
FILE_TYPES = (".npz", ".npy", ".csv")

#: The tutorial's split.
TEST_SIZE = 0.1
SPLIT_SEED = 20


class DataError(ValueError):
    """Data that cannot be used as asked; the message names the file and the problem."""


def file_error(path, exc):
    """One line for an OSError met opening path: "PATH: no such file" and the like."""
    reasons = {FileNotFoundError: "no such file", IsADirectoryError: "is a directory",
               PermissionError: "permission denied"}
    return f"{path}: {reasons.get(type(exc), exc.strerror or exc)}"


@dataclass(frozen=True)
class DataSource:
    """Where the rows come from; JSON-serialisable (``asdict``), so it can be stored.

    dataset is a name from DATASETS, or None when path names a file.  target
    (CSV column name or index, as text) and target_file (.npy targets) apply to
    files; samples, features, classes and seed to ``synthetic``.
    """

    dataset: str = "digits"
    path: str = None
    target: str = None
    target_file: str = None
    task: str = "auto"
    samples: int = 1000
    features: int = 20
    classes: int = 2
    seed: int = 0

    @property
    def name(self):
        return os.path.basename(self.path) if self.path is not None else self.dataset

    def to_json(self):
        return asdict(self)


@dataclass
class Raw:
    """Rows as read: X float64 (n_samples, n_features), y labels (n,) or values (n, k) or None."""

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str


@dataclass
class Dataset:
    """A split, scaled and encoded data set.

    Attributes
    ----------
    name : str
    task : {"classification", "regression"}
    X_train : ndarray of shape (n_train, n_features), float64
    X_test : ndarray of shape (n_test, n_features), float64
    Y_train : ndarray of shape (n_train, n_outputs), float64
        Network targets: one-hot rows (or one 0/1 column for a sigmoid head on two
        classes), or standardised values for regression.
    Y_test : ndarray of shape (n_test, n_outputs), float64
    y_train : ndarray of shape (n_train,) or (n_train, n_targets)
        Class labels, or target values in their original units.
    y_test : ndarray of shape (n_test,) or (n_test, n_targets)
    preprocessing : dict
        Everything fitted on the training split (see ``fit_preprocessing``).
    """

    name: str
    task: str
    X_train: np.ndarray
    X_test: np.ndarray
    Y_train: np.ndarray
    Y_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    preprocessing: dict

    @property
    def n_features(self):
        return self.X_train.shape[1]

    @property
    def n_outputs(self):
        return self.Y_train.shape[1]

    @property
    def classes(self):
        """Class labels in output column order (ndarray), or None for regression."""
        return classes_of(self.preprocessing)

    def fingerprint(self):
        """SHA-256 of the split arrays as the network sees them (a resumed run checks it)."""
        digest = hashlib.sha256()
        for array in (self.X_train, self.Y_train, self.X_test, self.Y_test):
            array = np.ascontiguousarray(array, dtype=np.float64)
            digest.update(str(array.shape).encode())
            digest.update(array.tobytes())
        return digest.hexdigest()


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def load_source(source, require_target=True):
    """Read the rows of a DataSource; returns a Raw.  Raises DataError for unusable data."""
    if source.task not in TASKS:
        raise DataError(f"unknown task {source.task!r}; choose from {', '.join(TASKS)}")
    if source.path is not None:
        raw = _load_file(source, require_target)
    elif source.dataset in BUILTIN:
        if source.task == "regression":
            raise DataError(f"{source.dataset} is a classification data set; use --task "
                            f"classification (or auto), or --dataset synthetic --task regression")
        from sklearn import datasets

        bunch = getattr(datasets, BUILTIN[source.dataset])()
        raw = Raw(source.dataset, bunch.data.astype(np.float64), bunch.target, "classification")
    elif source.dataset == "synthetic":
        raw = _synthetic(source)
    else:
        raise DataError(f"unknown data set {source.dataset!r}; choose from {', '.join(DATASETS)} "
                        f"or give a file with --data")
    _check_finite(raw.X, f"{raw.name}: X")
    if raw.y is not None and raw.task == "regression":
        _check_finite(raw.y, f"{raw.name}: targets")
    return raw


def _synthetic(source):
    from sklearn.datasets import make_classification, make_regression

    task = "classification" if source.task == "auto" else source.task
    n, d = source.samples, source.features
    if task == "regression":
        X, y = make_regression(n_samples=n, n_features=d, n_informative=min(d, 10), noise=1.0,
                               random_state=source.seed)
        return Raw("synthetic", X, y, task)
    k = source.classes
    if k < 2:
        raise DataError(f"synthetic classification needs at least 2 classes, got {k}")
    # make_classification puts 2 clusters per class on the vertices of a hypercube in
    # the informative dimensions, so it needs 2 * k <= 2 ** n_informative.
    informative = max(math.ceil(math.log2(2 * k)), d // 2)
    if informative > d:
        raise DataError(f"synthetic classification with {k} classes needs at least "
                        f"{informative} features (--features), got {d}")
    if n < 2 * k:
        raise DataError(f"synthetic classification with {k} classes needs at least {2 * k} "
                        f"samples (--samples), got {n}")
    X, y = make_classification(n_samples=n, n_features=d, n_informative=informative,
                               n_redundant=0, n_classes=k, random_state=source.seed)
    return Raw("synthetic", X, y, task)


def _load_file(source, require_target):
    path = source.path
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_TYPES:
        raise DataError(f"{path}: unsupported file type {ext or '(none)'!r}; use "
                        f"{', '.join(FILE_TYPES)}")
    if source.target is not None and ext != ".csv":
        raise DataError(f"--target names a column of a .csv file; {path} is {ext} "
                        f"(.npz files hold y, .npy files take --target-file)")
    if source.target_file is not None and ext != ".npy":
        raise DataError(f"--target-file goes with a .npy file of inputs; {path} is {ext}")
    if ext == ".npz":
        archive = _np_load(path)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single array, not an .npz archive of X and y")
        with archive:
            names = set(archive.files)
            wanted = {"X", "y"} if require_target else {"X"}
            if not wanted <= names:
                raise DataError(f"{path}: needs arrays {sorted(wanted)}, found "
                                f"{sorted(names) or 'none'}")
            X = _read_member(archive, "X", path)
            y = _read_member(archive, "y", path) if "y" in names else None
    elif ext == ".npy":
        X = _np_load(path)
        y = None
        if source.target_file is not None:
            y = _np_load(source.target_file)
            if not isinstance(y, np.ndarray):
                raise DataError(f"{source.target_file}: not a .npy array")
        elif require_target:
            raise DataError(f"{path}: a .npy file holds only the inputs; give the targets with "
                            f"--target-file y.npy (or use an .npz with X and y, or a .csv)")
        if not isinstance(X, np.ndarray):
            raise DataError(f"{path}: not a .npy array")
    else:
        if source.target is None and require_target:
            raise DataError(f"{path}: name the target column with --target (a header name or a "
                            f"0-based column index)")
        X, y = _read_csv(path, source.target)
    X = _as_features(X, path)
    if y is not None:
        y = np.asarray(y)
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise DataError(f"{path}: targets of shape {y.shape} do not match {X.shape[0]} rows "
                            f"of X; need ({X.shape[0]},) or ({X.shape[0]}, n_targets)")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.dtype.kind not in "biufUS":
            raise DataError(f"{path}: targets of dtype {y.dtype}; numbers or text labels needed")
    task = _infer_task(y, source.task, path)
    if task == "regression" and y is not None:
        y = y.astype(np.float64)
    return Raw(os.path.basename(path), X, y, task)


def _np_load(path):
    try:
        return np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise DataError(file_error(path, exc)) from None
    except READ_ERRORS as exc:  # not NumPy's format, or a damaged .npz (BadZipFile, ...)
        raise DataError(f"{path}: not a readable NumPy file ({exc})") from None


def _read_member(archive, name, path):
    try:
        return archive[name]
    except ValueError as exc:  # object arrays, which would need pickle
        raise DataError(f"{path}: array {name!r} cannot be read without pickle ({exc})") from None
    except Exception as exc:  # a damaged member: zlib, zipfile or header errors
        raise DataError(f"{path}: array {name!r} is damaged ({exc})") from None


def _as_features(X, path):
    X = np.asarray(X)
    if X.ndim != 2:
        raise DataError(f"{path}: X must be 2-D, (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise DataError(f"{path}: X of shape {X.shape} has too few rows or no columns")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X has dtype {X.dtype}; features must be numbers")
    return X.astype(np.float64)


def _infer_task(y, task, path):
    if task != "auto":
        if task == "regression" and y is not None and y.dtype.kind in "US":
            raise DataError(f"{path}: text targets cannot be regressed; use --task classification")
        return task
    if y is None:
        return "classification"
    if y.dtype.kind in "US" or y.dtype.kind in "biu":
        return "classification"
    if y.ndim == 1 and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return "classification"
    return "regression"


def _number(text):
    """float(text), or None when text is not a number ('' and 'nan' are numbers: NaN)."""
    text = text.strip()
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _read_csv(path, target):
    """(X float64, y) from a CSV file; y holds numbers when all its fields are numbers."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise DataError(file_error(path, exc)) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        rows = [(reader.line_num, row) for row in reader if any(field.strip() for field in row)]
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: {exc}") from None
    if len(rows) < 2:
        raise DataError(f"{path}: fewer than two lines of data")
    width = len(rows[0][1])
    for number, row in rows:
        if len(row) != width:
            raise DataError(f"{path}: line {number} has {len(row)} fields, line {rows[0][0]} "
                            f"has {width}")
    first, second = rows[0][1], rows[1][1]
    header = any(_number(a) is None and _number(b) is not None for a, b in zip(first, second))
    names = [name.strip() for name in first] if header else [str(i) for i in range(width)]
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"{path}: a header but no rows")
    column = None if target is None else _column(target, names, header, path)
    if width < (2 if column is not None else 1):
        raise DataError(f"{path}: no feature columns besides the target")
    features = [j for j in range(width) if j != column]
    X = np.empty((len(body), len(features)))
    for i, (number, row) in enumerate(body):
        for k, j in enumerate(features):
            value = _number(row[j])
            if value is None:
                raise DataError(f"{path}: line {number}, column {names[j]!r}: {row[j].strip()!r} "
                                f"is not a number (features must be numeric)")
            X[i, k] = value
    if column is None:
        return X, None
    labels = [row[column].strip() for _, row in body]
    values = [_number(label) for label in labels]
    if any(value is None for value in values):
        return X, np.array(labels)
    y = np.array(values)
    if np.all(np.isfinite(y)) and np.all(y == np.round(y)) and np.all(np.abs(y) < 2**53):
        return X, y.astype(np.int64)
    return X, y


def _column(target, names, header, path):
    """Index of the target column: a header name, else a 0-based index (negative: from the end)."""
    if header and target in names:
        return names.index(target)
    try:
        index = int(target)
    except ValueError:
        known = ", ".join(names) if header else "the file has no header line"
        raise DataError(f"{path}: no column named {target!r} ({known})") from None
    if not -len(names) <= index < len(names):
        raise DataError(f"{path}: column index {index} out of range for {len(names)} columns")
    return index % len(names)


def _check_finite(array, what):
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        position = np.argwhere(bad)[0]
        where = f"row {position[0]}" + (f", column {position[1]}" if array.ndim == 2 else "")
        raise DataError(f"{what} has {int(bad.sum())} NaN or infinite value(s), the first at "
                        f"{where} (0-based); remove or impute them first")


# ---------------------------------------------------------------------------
# Preparation
# ---------------------------------------------------------------------------


def prepare(raw, *, head, test_size=TEST_SIZE, split_seed=SPLIT_SEED, stratify=True,
            scaling="auto", preprocessing=None):
    """Split a Raw data set, scale its inputs and encode its targets; returns a Dataset.

    preprocessing, when given (from a saved model), is applied instead of being
    fitted on the training split.
    """
    from sklearn.model_selection import train_test_split

    if raw.y is None:
        raise DataError(f"{raw.name}: no targets to train or evaluate on")
    if raw.task == "classification" and raw.y.ndim != 1:
        raise DataError(f"{raw.name}: classification needs one label per row, got targets of "
                        f"shape {raw.y.shape} (use --task regression for several targets)")
    strata = raw.y if raw.task == "classification" and stratify else None
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            raw.X, raw.y, test_size=test_size, random_state=split_seed, stratify=strata)
    except ValueError as exc:
        hint = " (or split without stratification: --no-stratify)" if strata is not None else ""
        raise DataError(f"{raw.name}: cannot split {raw.X.shape[0]} rows with test size "
                        f"{test_size}: {exc}{hint}") from None
    if preprocessing is None:
        preprocessing = fit_preprocessing(raw.name, X_train, y_train, raw.task, scaling)
    X_train, Y_train = transform(preprocessing, X_train, y_train, head)
    X_test, Y_test = transform(preprocessing, X_test, y_test, head)
    return Dataset(raw.name, raw.task, X_train, X_test, Y_train, Y_test, y_train, y_test,
                   preprocessing)


def fit_preprocessing(name, X_train, y_train, task, scaling="auto"):
    """What ``transform`` applies, fitted on the training split; a JSON-serialisable dict.

    ``{"inputs": {"kind": "divide", "by": 16.0} | {"kind": "standardize", "mean": [...],
    "scale": [...]} | {"kind": "none"}, "n_features": d, "task": ..., "classes": [...]
    (classification) | "targets": {"mean": [...], "scale": [...]} (regression)}``;
    without y_train (None) only the inputs' part.
    """
    from sklearn.preprocessing import StandardScaler

    if scaling not in SCALINGS:
        raise DataError(f"unknown scaling {scaling!r}; choose from {', '.join(SCALINGS)}")
    if scaling == "auto" and name == "digits":
        inputs = {"kind": "divide", "by": 16.0}
    elif scaling == "none":
        inputs = {"kind": "none"}
    else:
        scaler = StandardScaler().fit(X_train)
        inputs = {"kind": "standardize", "mean": scaler.mean_.tolist(),
                  "scale": scaler.scale_.tolist()}
    result = {"inputs": inputs, "n_features": int(X_train.shape[1]), "task": task}
    if y_train is None:
        return result
    if task == "classification":
        from sklearn.preprocessing import OneHotEncoder

        classes = OneHotEncoder().fit(np.asarray(y_train).reshape(-1, 1)).categories_[0]
        if len(classes) < 2:
            raise DataError(f"{name}: the training split has a single class, {classes[0]!r}")
        result["classes"] = classes.tolist()
    else:
        Y = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
        scaler = StandardScaler().fit(Y)
        result["targets"] = {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}
    return result


def classes_of(preprocessing):
    """Class labels (ndarray) of a preprocessing dict, or None for regression."""
    classes = preprocessing.get("classes")
    return None if classes is None else np.asarray(classes)


def transform(preprocessing, X, y=None, head="softmax"):
    """(X scaled, Y encoded for the head, or None without y) with a fitted preprocessing."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[1] != preprocessing["n_features"]:
        raise DataError(f"the data have {X.shape[1]} features; the model was trained on "
                        f"{preprocessing['n_features']}")
    inputs = preprocessing["inputs"]
    if inputs["kind"] == "divide":
        X = X / inputs["by"]
    elif inputs["kind"] == "standardize":
        X = (X - np.asarray(inputs["mean"])) / np.asarray(inputs["scale"])
    if y is None:
        return X, None
    classes = classes_of(preprocessing)
    if classes is None:
        if np.asarray(y).dtype.kind in "US":
            raise DataError("text targets given to a regression model")
        targets = preprocessing["targets"]
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if Y.shape[1] != len(targets["mean"]):
            raise DataError(f"{Y.shape[1]} target columns; the model predicts "
                            f"{len(targets['mean'])}")
        return X, (Y - np.asarray(targets["mean"])) / np.asarray(targets["scale"])
    return X, encode_labels(y, classes, head)


def encode_labels(y, classes, head="softmax"):
    """One-hot float64 rows (n, n_classes); one 0/1 column for a sigmoid head on two classes."""
    from sklearn.preprocessing import OneHotEncoder

    y = np.asarray(y).reshape(-1, 1)
    if classes.dtype.kind in "US" and y.dtype.kind not in "US":
        y = y.astype(str)  # numbers in a file, text labels in the model
    elif classes.dtype.kind not in "US" and y.dtype.kind in "US":
        raise DataError(f"text labels such as {y[0, 0]!r}; the model's classes are "
                        f"{classes.tolist()[:10]}")
    encoder = OneHotEncoder(categories=[classes], sparse_output=False, dtype=np.float64)
    try:
        Y = encoder.fit_transform(y)
    except ValueError:
        unknown = sorted(set(y[:, 0].tolist()) - set(classes.tolist()), key=str)
        raise DataError(f"label(s) {unknown[:5]} not among the model's classes "
                        f"{classes.tolist()[:10]}") from None
    if head == "sigmoid" and len(classes) == 2:
        Y = Y[:, 1:]
    return Y


def decode(preprocessing, output):
    """Predictions in the data's terms: class labels (n,), or values (n, k) in original units."""
    output = np.asarray(output, dtype=np.float64)
    classes = classes_of(preprocessing)
    if classes is None:
        targets = preprocessing["targets"]
        return output * np.asarray(targets["scale"]) + np.asarray(targets["mean"])
    if output.shape[1] == 1:
        return classes[(output[:, 0] > 0.5).astype(np.intp)]
    return classes[np.argmax(output, axis=1)]


def load_dataset(name="digits", *, head="softmax", test_size=TEST_SIZE,
                 random_state=SPLIT_SEED, stratify=True, scaling="auto"):
    """A built-in data set, split, scaled and encoded (shortcut of ``prepare``)."""
    raw = load_source(DataSource(dataset=name))
    return prepare(raw, head=head, test_size=test_size, split_seed=random_state,
                   stratify=stratify, scaling=scaling)
