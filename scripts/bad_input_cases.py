"""Bad and awkward inputs at every public entry point, and what each must get.

One table, ``CASES``: a case is an entry point (``fastnn.fit``, ``Sequential.fit``,
``FastMLPClassifier.predict``, ...), an input, and the expected outcome:

* ``Raises(type, regex)``: the call raises that exception (or a subclass) with a
  message matching the regex;
* ``Accepted(...)``: the call succeeds; the input is converted (or read in place, no
  copy, for ``no_copy``) and the result equals the result for the same values given
  as a plain C-contiguous float64 array (``same_as_plain``).

A case with ``known_issue`` describes what *should* happen where the code does
something else today (the test marks it xfail, strict, so it fails once fixed).

Used by ``tests/test_bad_inputs.py`` (runs every case) and
``scripts/bad_inputs_table.py`` (prints what each case actually gets, the table of
docs/errors.md).  Tiny problems only: 24 rows, 4 features, 3 classes, 2 epochs.
"""

import atexit
import contextlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import fastnn
from fastnn import Architecture, init_params, trainer
from fastnn.estimators import FastMLPClassifier, FastMLPRegressor
from fastnn.models import Dense, Dropout, Sequential
from fastnn.mynn import MyNN

N, N_FEATURES, N_CLASSES = 24, 4, 3
_ComplexWarning = getattr(np, "exceptions", np).ComplexWarning  # NumPy < 1.25: np.ComplexWarning
CLASSES = [0, 1, 2]
#: A learning rate that makes training overflow within a few epochs (relu hidden layers;
#: MyNN's sigmoid layers need 1e307).
HUGE_LR = 1e30


def data():
    """(X, labels, one-hot Y, regression target): fixed, every class present."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, N_FEATURES))
    labels = np.arange(N) % N_CLASSES
    return X, labels, np.eye(N_CLASSES)[labels], X @ np.array([1.0, -2.0, 0.5, 0.25])


# ---------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Raises:
    """The call raises ``type`` (or a subclass) with a message matching ``match``."""

    type: type
    match: str


@dataclass(frozen=True)
class Accepted:
    """The call succeeds.

    no_copy: the array the kernels read shares memory with the input.
    dtype: the dtype the kernels read (None: the entry point's).
    same_as_plain: the result equals the result for ``np.array(X, float64)`` (and the
    plain targets), i.e. the conversion loses nothing.
    """

    no_copy: bool = False
    dtype: str = None
    same_as_plain: bool = True


@dataclass(frozen=True)
class Case:
    entry: str
    input: str
    #: () -> (args, plain_args): the arguments of the call, made when the case runs
    #: (memory maps need a file), and those for the plain float64 data (or None).
    args: Callable
    #: (*args) -> Result
    call: Callable
    expect: object
    #: Why the current behaviour is wrong, and what the expected outcome is.
    known_issue: str = None
    #: What the input varies: "X", "y", or None (a setting, or the model's state).
    varies: str = None

    @property
    def id(self):
        return f"{self.entry} | {self.input}"


@dataclass
class Result:
    """What a call produced: values to compare (weights or predictions) and the classes."""

    values: np.ndarray
    classes: list = None


# ---------------------------------------------------------------------------
# What reaches the kernels
# ---------------------------------------------------------------------------

_SEEN = []


@contextlib.contextmanager
def kernel_inputs():
    """Record every X the compiled kernels are given (training and prediction) in a list.

    Wraps ``trainer._compiled_epoch`` and ``trainer._predict``, the two places where
    checked input enters compiled code; MyNN's NumPy ``predict`` records its own.
    """
    seen = []
    compiled_epoch, predict = trainer._compiled_epoch, trainer._predict

    def recording_epoch(arch, params, X, *rest):
        seen.append(X)
        return compiled_epoch(arch, params, X, *rest)

    def recording_predict(arch, params, X, backend):
        seen.append(X)
        return predict(arch, params, X, backend)

    trainer._compiled_epoch, trainer._predict = recording_epoch, recording_predict
    _SEEN.append(seen)
    try:
        yield seen
    finally:
        _SEEN.pop()
        trainer._compiled_epoch, trainer._predict = compiled_epoch, predict


def _record(X):
    if _SEEN:
        _SEEN[-1].append(X)


# ---------------------------------------------------------------------------
# Entry points: each runs one public call on (X, y) and returns a Result
# ---------------------------------------------------------------------------

ARCH = Architecture((N_FEATURES, 5, N_CLASSES), "tanh", "softmax", "float64")
ARCH_RELU = Architecture((N_FEATURES, 5, N_CLASSES), "relu", "softmax", "float64")


def trainer_fit(X, Y, arch=ARCH, params=None, **kwargs):
    params = init_params(arch, "glorot_uniform", 0) if params is None else params
    settings = dict(epochs=2, batch_size=8, lr=0.1, random_state=0)
    trainer.fit(arch, params, X, Y, **{**settings, **kwargs})
    return Result(np.array(params))


def trainer_predict(X, _y=None, arch=ARCH, params=None, **kwargs):
    params = init_params(arch, "glorot_uniform", 0) if params is None else params
    return Result(trainer.predict_output(arch, params, X, **kwargs))


def sequential(units=N_CLASSES, activation="softmax", optimizer="sgd", hidden="tanh",
               **kwargs):
    """A compiled float32 (Keras's default) model of 4 inputs, one hidden layer of 5."""
    model = Sequential([Dense(5, input_dim=N_FEATURES, activation=hidden),
                        Dense(units, activation=activation)], random_state=0, **kwargs)
    return model.compile(optimizer)


def sequential_fit(X, Y, model=None, **kwargs):
    model = sequential() if model is None else model
    model.fit(X, Y, **{**dict(epochs=2, batch_size=8, verbose=0), **kwargs})
    return Result(np.array(model.params))


def sequential_predict(X, _y=None):
    return Result(sequential().predict(X))


def sequential_evaluate(X, Y):
    return Result(np.array(sequential().evaluate(X, Y, verbose=0)))


def classifier(**params):
    settings = dict(hidden_layer_sizes=(5,), activation="tanh", solver="sgd",
                    learning_rate_init=0.1, batch_size=8, max_iter=2, random_state=0)
    return FastMLPClassifier(**{**settings, **params})


def regressor(**params):
    settings = dict(hidden_layer_sizes=(5,), activation="tanh", solver="sgd",
                    learning_rate_init=0.01, batch_size=8, max_iter=2, random_state=0)
    return FastMLPRegressor(**{**settings, **params})


def _weights(model):
    return np.concatenate([a.ravel() for a in model.coefs_ + model.intercepts_])


def estimator_fit(make):
    def run(X, y, **params):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ConvergenceWarning is one
            model = make(**params).fit(X, y)
        return Result(_weights(model), getattr(model, "classes_", np.array([])).tolist())

    return run


def _classes_of(y):
    """partial_fit's classes: the labels' own for strings, else 0, 1, 2."""
    try:
        values = np.asarray(y, dtype=object).ravel()
    except ValueError:
        return CLASSES
    if any(isinstance(v, str) for v in values):
        return sorted({v for v in values if isinstance(v, str)})
    return CLASSES


def classifier_partial_fit(X, y, classes=None, **params):
    model = classifier(**params)
    model.partial_fit(X, y, classes=_classes_of(y) if classes is None else classes)
    return Result(_weights(model), model.classes_.tolist())


def regressor_partial_fit(X, y, **params):
    return Result(_weights(regressor(**params).partial_fit(X, y)))


_FITTED = {}


def fitted(name):
    """Models trained once on the plain data, for the prediction entry points."""
    if name not in _FITTED:
        X, labels, Y, target = data()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _FITTED["classifier"] = classifier().fit(X, labels)
            _FITTED["regressor"] = regressor().fit(X, target)
        _FITTED["mynn"] = mynn(X, Y)
    return _FITTED[name]


def estimator_predict(name):
    def run(X, _y=None):
        return Result(np.asarray(fitted(name).predict(X)))

    return run


def mynn(X, Y):
    """MyNN(X, Y) drawing its weights with np.random.seed(0), global state restored."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        return MyNN(X, Y)
    finally:
        np.random.set_state(state)


def mynn_fit(X, Y, lr=None, epochs=2):
    model = mynn(X, Y)
    if lr is not None:
        model.lr = lr
    model.fit(epochs)
    return Result(np.array(model.params))


def mynn_predict_classes(X, _y=None):
    return Result(fitted("mynn").predict_classes(X))


def mynn_predict(X, _y=None):
    """The tutorial's predict (NumPy forward pass), on a copy of the fitted model."""
    model = mynn(*data()[::2])
    model.params[:] = fitted("mynn").params
    model.predict(X)
    _record(model.x)
    return Result(np.array(model.a3))


@dataclass(frozen=True)
class Entry:
    name: str
    run: Callable
    #: "onehot", "labels", "values", or None (prediction: X only)
    target: str = None
    #: dtype of the network, which inputs are converted to
    dtype: str = "float64"
    #: the number of input features is fixed before the call (a built model)
    fixed_width: bool = True


ENTRIES = [
    Entry("fastnn.fit", trainer_fit, "onehot"),
    Entry("fastnn.predict_output", trainer_predict),
    Entry("Sequential.fit", sequential_fit, "onehot", "float32"),
    Entry("Sequential.predict", sequential_predict, None, "float32"),
    Entry("Sequential.evaluate", sequential_evaluate, "onehot", "float32"),
    Entry("FastMLPClassifier.fit", estimator_fit(classifier), "labels", fixed_width=False),
    Entry("FastMLPClassifier.partial_fit", classifier_partial_fit, "labels", fixed_width=False),
    Entry("FastMLPClassifier.predict", estimator_predict("classifier")),
    Entry("FastMLPRegressor.fit", estimator_fit(regressor), "values", fixed_width=False),
    Entry("FastMLPRegressor.partial_fit", regressor_partial_fit, "values", fixed_width=False),
    Entry("FastMLPRegressor.predict", estimator_predict("regressor")),
    Entry("MyNN(x, y).fit", mynn_fit, "onehot", fixed_width=False),
    Entry("MyNN.predict_classes", mynn_predict_classes),
    Entry("MyNN.predict", mynn_predict),
]
ENTRY = {entry.name: entry for entry in ENTRIES}


def good_target(entry):
    """The plain targets of an entry point (None for prediction)."""
    _, labels, Y, target = data()
    return {"onehot": Y, "labels": labels, "values": target, None: None}[entry.target]


# ---------------------------------------------------------------------------
# Inputs: variations of X (all entry points) and of y (those that train)
# ---------------------------------------------------------------------------

_TMP = []


def memmap(array):
    """array written to a file and mapped back read-only (np.memmap, mode "r")."""
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="fastnn-bad-inputs-"))
        atexit.register(shutil.rmtree, _TMP[0], True)
    path = os.path.join(_TMP[0], f"x{len(os.listdir(_TMP[0]))}.dat")
    array = np.ascontiguousarray(array)
    array.tofile(path)
    return np.memmap(path, dtype=array.dtype, mode="r", shape=array.shape)


def read_only(array):
    array = np.array(array)
    array.flags.writeable = False
    return array


def _with(array, value, index=(0, 0)):
    array = np.array(array, dtype=float)
    array[index] = value
    return array


def _spaced_rows(X):
    """X as every other row of a larger array: a non-contiguous view."""
    big = np.zeros((2 * X.shape[0], X.shape[1]))
    big[::2] = X
    return big[::2]


def _spaced_columns(X):
    big = np.zeros((X.shape[0], 2 * X.shape[1]))
    big[:, ::2] = X
    return big[:, ::2]


def _sparse(X):
    import scipy.sparse

    return scipy.sparse.csr_matrix(X)


@dataclass(frozen=True)
class Input:
    """A variation of the plain data.

    make(entry, X, y) -> (X, y) for the call; plain(entry, X, y) -> (X, y) with the
    same values as plain float64 arrays, for Accepted cases (default: X as float64).
    outcome(entry) -> Raises, Accepted or None (the input does not apply to it), and
    known(entry) -> known_issue text or None.
    """

    name: str
    make: Callable
    outcome: Callable
    plain: Callable = None
    known: Callable = None


def _everywhere(outcome, **overrides):
    """outcome for every entry point but those named in overrides (value None: n/a)."""
    return lambda entry: overrides.get(entry.name, outcome)


def _for(targets, outcome, **overrides):
    """outcome for entry points whose target is in targets (None: prediction)."""
    return lambda entry: (overrides.get(entry.name, outcome) if entry.target in targets
                          else None)


FIT_ENTRIES = ("onehot", "labels", "values")
ALL = ("onehot", "labels", "values", None)
EMPTY_PREDICTION = Accepted(same_as_plain=False)
SAMPLE_ERROR = {"fastnn.fit": Raises(ValueError, r"X and Y need the same number of rows, got 24 "
                                                 r"and 23")}


def _x(transform):
    return lambda entry, X, y: (transform(X), y)


def _y(transform):
    transform_y = lambda entry, X, y: (X, transform(y))  # noqa: E731
    transform_y.varies = "y"
    return transform_y


def _text_labels(y, dtype=None):
    """y's classes as strings 'a', 'b', 'c' (one-hot rows by their class)."""
    labels = y.argmax(axis=1) if y.ndim == 2 else np.rint(y).astype(int) % N_CLASSES
    return np.array(["a", "b", "c"], dtype=dtype)[labels]


#: Text labels: the classifier estimators encode them, the one-hot front ends refuse them.
STRING_LABELS = _for(FIT_ENTRIES, Raises(ValueError, r"could not convert string to float"), **{
    "FastMLPClassifier.fit": Accepted(),
    "FastMLPClassifier.partial_fit": Accepted(),
    "Sequential.fit": Raises(ValueError, r"y must hold numbers.*holds strings"),
    "Sequential.evaluate": Raises(ValueError, r"y must hold numbers.*holds strings"),
    "MyNN(x, y).fit": Raises(ValueError, r"y must be one-hot numbers.*holds strings")})


INPUTS = [
    # --- values -------------------------------------------------------------
    Input("NaN in X", _x(lambda X: _with(X, np.nan)),
          _everywhere(Raises(ValueError, r"^Input (X|x|data) contains NaN"))),
    Input("infinity in X", _x(lambda X: _with(X, -np.inf, (5, 2))),
          _everywhere(Raises(ValueError, r"^Input (X|x|data) contains infinity"))),
    Input("X beyond float32's range (1e39, finite)", _x(lambda X: _with(X, 1e39)),
          _everywhere(Accepted(),
                      **dict.fromkeys(["Sequential.fit", "Sequential.predict",
                                       "Sequential.evaluate"],
                                      Raises(ValueError, r"contains infinity or a value too "
                                                         r"large for dtype\('float32'\)")))),
    Input("complex X", _x(lambda X: X + 1j),
          _everywhere(Raises(ValueError, r"Complex data not supported"))),
    Input("X of strings that are not numbers", _x(lambda X: np.full(X.shape, "a")),
          _everywhere(Raises(ValueError, r"could not convert string to float"))),
    Input("X of numbers written as strings", _x(lambda X: X.astype(str)),
          _everywhere(Accepted())),
    # --- dimensions and sizes -----------------------------------------------
    Input("X of 1 dimension", _x(lambda X: X[:, 0]),
          _everywhere(Raises(ValueError, r"Expected 2D array, got 1D array"),
                      **{"MyNN.predict": Raises(ValueError, r"data must have shape \(4,\) or "
                                                            r"\(n_rows, 4\).*got shape \(24,\)")})),
    Input("X of 3 dimensions", _x(lambda X: X[:, :, None]),
          _everywhere(Raises(ValueError, r"Found array with dim 3"))),
    Input("X a scalar", _x(lambda X: 1.5),
          _everywhere(Raises(ValueError, r"Expected 2D array, got scalar array"),
                      **{"MyNN.predict": Raises(ValueError, r"data must be a row of 4 numbers")})),
    Input("X is None", _x(lambda X: None),
          _everywhere(Raises(ValueError, r"Expected 2D array, got scalar array"),
                      **{"MyNN.predict": Raises(ValueError, r"data must be a row of 4 numbers")})),
    Input("X a ragged list", _x(lambda X: [list(X[0]), list(X[1, :2])]),
          _everywhere(Raises(ValueError, r"inhomogeneous shape"))),
    Input("X and y of different lengths", _y(lambda y: y[:-1]),
          _for(FIT_ENTRIES, Raises(ValueError, r"inconsistent numbers of samples: \[24, 23\]"),
               **SAMPLE_ERROR)),
    Input("no rows", lambda entry, X, y: (X[:0], None if y is None else y[:0]),
          _everywhere(Raises(ValueError, r"Found array with 0 sample\(s\) \(shape=\(0, 4\)\) "
                                         r"while a minimum of 1 is required"),
                      **{"fastnn.predict_output": EMPTY_PREDICTION,
                         "MyNN.predict_classes": EMPTY_PREDICTION})),
    Input("no columns", _x(lambda X: X[:, :0]),
          _everywhere(Raises(ValueError, r"0 feature\(s\) \(shape=\(24, 0\)\) while a minimum "
                                         r"of 1 is required"))),
    Input("X with 3 features, the model takes 4", _x(lambda X: X[:, :3]),
          lambda entry: None if not entry.fixed_width else {
              "fastnn.fit": Raises(ValueError, r"X must have shape \(n_samples, 4\), got \(24, 3\)"),
              "fastnn.predict_output": Raises(ValueError, r"X must have shape \(n_samples, 4\), "
                                                          r"got \(24, 3\)"),
              "MyNN.predict_classes": Raises(ValueError, r"X must have shape \(n_samples, 4\)"),
              "MyNN.predict": Raises(ValueError, r"data must have shape \(4,\) or \(n_rows, 4\)"),
          }.get(entry.name, Raises(ValueError, r"3 features, but (the model takes|FastMLP\w+ is "
                                               r"expecting) 4"))),
    Input("sparse matrix X", _x(_sparse),
          # The engine trains on and predicts from sparse X (the first layer reads the
          # non-zeros): the same model as from dense X, to rounding.
          _everywhere(Accepted(same_as_plain=False), **{
              name: Raises(TypeError, r"Sparse data was passed.*dense data is required")
              for name in ("Sequential.fit", "Sequential.predict", "Sequential.evaluate",
                           "MyNN(x, y).fit", "MyNN.predict")}),
          plain=lambda entry, X, y: (X, y)),
    # --- dtypes and layouts (accepted) ----------------------------------------
    Input("integer X", lambda entry, X, y: (np.rint(3 * X).astype(np.int64), y),
          _everywhere(Accepted()),
          plain=lambda entry, X, y: (np.rint(3 * X), y)),
    Input("boolean X", lambda entry, X, y: (X > 0, y), _everywhere(Accepted()),
          plain=lambda entry, X, y: ((X > 0).astype(float), y)),
    Input("float32 X", lambda entry, X, y: (X.astype(np.float32), y),
          _everywhere(Accepted(), **{
              name: Accepted(no_copy=True, dtype="float32", same_as_plain=False)
              for name in ("FastMLPClassifier.fit", "FastMLPClassifier.partial_fit",
                           "FastMLPRegressor.fit", "FastMLPRegressor.partial_fit")},
              **{name: Accepted(no_copy=True) for name in ("Sequential.fit",
                 "Sequential.predict", "Sequential.evaluate")}),
          plain=lambda entry, X, y: (X.astype(np.float32).astype(float), y)),
    Input("X a list of lists", _x(lambda X: X.tolist()), _everywhere(Accepted())),
    Input("Fortran-ordered X", _x(np.asfortranarray), _everywhere(Accepted())),
    Input("non-contiguous X (every other row)", _x(_spaced_rows), _everywhere(Accepted())),
    Input("non-contiguous X (every other column)", _x(_spaced_columns), _everywhere(Accepted())),
    Input("read-only X", lambda entry, X, y: (read_only(X.astype(entry.dtype)), y),
          _everywhere(Accepted(no_copy=True), **{"MyNN.predict": Accepted()}),
          plain=lambda entry, X, y: (X.astype(entry.dtype).astype(float), y)),
    Input("memory-mapped X (np.memmap, mode 'r')",
          lambda entry, X, y: (memmap(X.astype(entry.dtype)), y),
          _everywhere(Accepted(no_copy=True), **{"MyNN.predict": Accepted()}),
          plain=lambda entry, X, y: (X.astype(entry.dtype).astype(float), y)),
    # --- targets -------------------------------------------------------------
    Input("NaN in y", _y(lambda y: _with(y, np.nan, (3, 0)[:y.ndim])),
          _for(FIT_ENTRIES, Raises(ValueError, r"^Input (y|Y) contains NaN"))),
    Input("infinity in y", _y(lambda y: _with(y, np.inf, (3, 0)[:y.ndim])),
          _for(FIT_ENTRIES, Raises(ValueError, r"^Input (y|Y) contains infinity"))),
    Input("y of 3 dimensions", _y(lambda y: y.reshape(y.shape[0], -1)[:, :, None]),
          _for(FIT_ENTRIES, Raises(ValueError, r"Found array with dim 3"))),
    Input("one class in y", _y(lambda y: np.zeros_like(y) if y.ndim == 1 else np.eye(y.shape[1])[
        np.zeros(len(y), int)]),
          _for(FIT_ENTRIES, Accepted(same_as_plain=False))),
    Input("y with one column (a single class)", _y(lambda y: np.ones((len(y), 1))),
          _for(("onehot",), Raises(ValueError, r"y must have shape \(n_samples, 3\)"), **{
              "fastnn.fit": Raises(ValueError, r"Y must have shape \(n_samples, 3\), got \(24, 1\)"),
              "MyNN(x, y).fit": Raises(ValueError, r"y has one column \(one class\)")})),
    Input("class labels where one-hot rows are expected", _y(lambda y: y.argmax(axis=1)),
          _for(("onehot",), Raises(ValueError, r"y must have shape \(n_samples, 3\) .*one-hot"), **{
              "fastnn.fit": Raises(ValueError, r"Expected 2D array, got 1D array"),
              "MyNN(x, y).fit": Raises(ValueError, r"y must be one-hot, of shape")})),
    Input("targets outside [0, 1] for a softmax output", _y(lambda y: 5 * y),
          _for(("onehot",), Raises(ValueError, r"y must hold values in \[0, 1\] for a softmax "
                                               r"output"), **{
              "fastnn.fit": Raises(ValueError, r"Y must hold probabilities in \[0, 1\] for a "
                                               r"softmax output"),
              "MyNN(x, y).fit": Raises(ValueError, r"y must be one-hot: 0s and 1s")})),
    Input("continuous y for a classifier", _y(lambda y: y + 0.5),
          _for(("labels",), Raises(ValueError, r"Unknown label type: continuous"))),
    Input("string labels", _y(_text_labels),
          STRING_LABELS),
    Input("object labels (strings in an object array)", _y(lambda y: _text_labels(y, object)),
          STRING_LABELS),
    Input("labels mixing strings and numbers",
          _y(lambda y: np.array(["a", 1, 2.5], dtype=object)[
              y.argmax(axis=1) if y.ndim == 2 else np.rint(y).astype(int) % N_CLASSES]),
          _for(("labels",), Raises(ValueError, r"y mixes labels of different types \(number, "
                                               r"string\)"))),
    Input("boolean one-hot y", _y(lambda y: y.astype(bool)), _for(("onehot",), Accepted())),
    Input("integer targets for a regressor", _y(lambda y: np.rint(y).astype(np.int64)),
          _for(("values",), Accepted()), plain=lambda entry, X, y: (X, np.rint(y))),
]


def _data_cases():
    cases = []
    for item in INPUTS:
        for entry in ENTRIES:
            expect = item.outcome(entry)
            if expect is None:
                continue
            known = item.known(entry) if item.known else None

            def args(entry=entry, item=item):
                X, target = data()[0], good_target(entry)
                call_args = item.make(entry, X, target)
                if item.plain is not None:
                    plain = item.plain(entry, X, target)
                elif getattr(item.make, "varies", "X") == "X":
                    plain = (call_args[0], target)
                else:
                    plain = (X, target)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error", _ComplexWarning)
                        plain = (np.array(plain[0], dtype=np.float64), plain[1])
                except (TypeError, ValueError, _ComplexWarning):
                    plain = None  # not real numbers: only for cases that raise
                return call_args, plain

            varies = getattr(item.make, "varies", "X")
            cases.append(Case(entry.name, item.name, args, entry.run, expect, known, varies))
    return cases


# ---------------------------------------------------------------------------
# Hyperparameters, model state and divergence: one call each
# ---------------------------------------------------------------------------


def _call(entry, name, run, expect, known_issue=None, target="onehot"):
    """A case that runs run(X, y) on the plain data, y as the entry point takes it."""
    target = ENTRY[entry].target if entry in ENTRY else target

    def args():
        return (data()[0], good_target(Entry("", None, target))), None

    return Case(entry, name, args, run, expect, known_issue)


def _read_only_params():
    params = init_params(ARCH, "glorot_uniform", 0)
    params.flags.writeable = False
    return params


def _nan_params():
    return np.full(ARCH.n_params, np.nan)


def _continued_partial_fit(X, y):
    model = classifier().partial_fit(X, y, classes=CLASSES)
    model.partial_fit(X[:, :3], y)


def _diverging_sequential(X, Y):
    model = sequential(optimizer={"name": "sgd", "lr": HUGE_LR}, hidden="relu")
    return sequential_fit(X, Y, model=model, epochs=20)


DIVERGED = Raises(fastnn.DivergenceError, r"^training diverged: a non-finite loss or weight in "
                                          r"epoch \d+ .*were kept")
#: The estimators raise it with scikit-learn's message first (it is also a ValueError).
ESTIMATOR_DIVERGED = Raises(fastnn.DivergenceError, r"^Solver produced non-finite parameter "
                                                    r"weights\. .*\(training diverged: .*were kept")
LR = r"lr must be a number in \(0\.0, inf\), got "

CALL_CASES = [
    # fastnn.fit / predict_output
    _call("fastnn.fit", "lr=-1", lambda X, Y: trainer_fit(X, Y, lr=-1), Raises(ValueError, LR + "-1")),
    _call("fastnn.fit", "lr=nan", lambda X, Y: trainer_fit(X, Y, lr=np.nan),
          Raises(ValueError, LR + "nan")),
    _call("fastnn.fit", "lr=0", lambda X, Y: trainer_fit(X, Y, lr=0), Raises(ValueError, LR + "0")),
    _call("fastnn.fit", "epochs=-1", lambda X, Y: trainer_fit(X, Y, epochs=-1),
          Raises(ValueError, r"epochs must be a non-negative integer, got -1")),
    _call("fastnn.fit", "epochs=2.5", lambda X, Y: trainer_fit(X, Y, epochs=2.5),
          Raises(ValueError, r"epochs must be a non-negative integer, got 2\.5")),
    _call("fastnn.fit", "batch_size=-1", lambda X, Y: trainer_fit(X, Y, batch_size=-1),
          Raises(ValueError, r"batch_size must be an integer >= 0")),
    _call("fastnn.fit", "l2=-1", lambda X, Y: trainer_fit(X, Y, l2=-1.0),
          Raises(ValueError, r"l2 must be a finite number >= 0")),
    _call("fastnn.fit", "optimizer='lbfgs'", lambda X, Y: trainer_fit(X, Y, optimizer="lbfgs"),
          Raises(ValueError, r"unknown optimizer 'lbfgs'")),
    _call("fastnn.fit", "backend='gpu'", lambda X, Y: trainer_fit(X, Y, backend="gpu"),
          Raises(ValueError, r"unknown backend 'gpu'")),
    _call("fastnn.fit", "threads=0", lambda X, Y: trainer_fit(X, Y, threads=0),
          Raises(ValueError, r"threads must be between 1 and \d+, got 0")),
    _call("fastnn.fit", "negative sample_weight",
          lambda X, Y: trainer_fit(X, Y, sample_weight=-np.ones(N)),
          Raises(ValueError, r"sample_weight must be finite and >= 0")),
    _call("fastnn.fit", "validation_split=1.5",
          lambda X, Y: trainer_fit(X, Y, validation_split=1.5),
          Raises(ValueError, r"validation_split must be in \[0, 1\)")),
    _call("fastnn.fit", "params of the wrong length",
          lambda X, Y: trainer_fit(X, Y, params=init_params(ARCH)[:-1]),
          Raises(ValueError, r"params must have shape \(43,\) and dtype float64, got \(42,\)")),
    _call("fastnn.fit", "params a list",
          lambda X, Y: trainer_fit(X, Y, params=init_params(ARCH).tolist()),
          Raises(TypeError, r"params must be a NumPy array")),
    _call("fastnn.fit", "read-only params",
          lambda X, Y: trainer_fit(X, Y, params=_read_only_params()),
          Raises(ValueError, r"params must be a writable")),
    _call("fastnn.fit", f"lr={HUGE_LR:g} (training diverges)",
          lambda X, Y: trainer_fit(X, Y, arch=ARCH_RELU, lr=HUGE_LR, epochs=20), DIVERGED),
    _call("fastnn.Architecture", "activations='mish'",
          lambda X, Y: trainer_fit(X, Y, arch=Architecture((4, 5, 3), "mish")),
          Raises(ValueError, r"unknown hidden activation 'mish'")),
    _call("fastnn.Architecture", "zero layers: sizes=(4,)",
          lambda X, Y: trainer_fit(X, Y, arch=Architecture((4,), ())),
          Raises(ValueError, r"sizes must hold at least two positive integer widths")),
    _call("fastnn.Architecture", "a layer of width 0", lambda X, Y: trainer_fit(
        X, Y, arch=Architecture((4, 0, 3), "tanh")),
          Raises(ValueError, r"sizes must hold at least two positive integer widths")),
    _call("fastnn.Architecture", "a layer of width 2.5", lambda X, Y: trainer_fit(
        X, Y, arch=Architecture((4, 2.5, 3), "tanh")),
          Raises(ValueError, r"sizes must hold at least two positive integer widths, got "
                             r"\(4, 2.5, 3\)")),
    _call("fastnn.predict_output", "backend='gpu'",
          lambda X, _: trainer_predict(X, backend="gpu"),
          Raises(ValueError, r"unknown backend 'gpu'")),
    _call("fastnn.predict_output", "params holding NaN",
          lambda X, _: trainer_predict(X, params=_nan_params()),
          Raises(ValueError, r"params contain NaN or infinity")),
    # Sequential
    _call("Sequential.compile", "optimizer lr=-1",
          lambda X, Y: sequential(optimizer={"name": "sgd", "lr": -1}),
          Raises(ValueError, LR + "-1")),
    _call("Sequential.compile", "no layers",
          lambda X, Y: Sequential().compile("sgd"),
          Raises(ValueError, r"the model has no layers")),
    _call("Dense", "Dense(0)", lambda X, Y: Dense(0),
          Raises(ValueError, r"Dense units must be an integer >= 1, got 0")),
    _call("Dense", "activation='mish'", lambda X, Y: Dense(3, activation="mish"),
          Raises(ValueError, r"unknown activation 'mish'")),
    _call("Dropout", "rate=1.0", lambda X, Y: Dropout(1.0),
          Raises(ValueError, r"Dropout rate must be a number in \[0, 1\), got 1.0")),
    _call("Sequential.fit", "class_weight={7: 2.0} (no class 7)",
          lambda X, Y: sequential_fit(X, Y, class_weight={7: 2.0}),
          Raises(ValueError, r"class_weight names \[7\], which the targets do not hold")),
    _call("fastnn.to_onnx", "path in a missing directory",
          lambda X, Y: fastnn.to_onnx(sequential().build(), "/nonexistent-fastnn-dir/m.onnx"),
          Raises(OSError, r"cannot write the ONNX file '/nonexistent-fastnn-dir/m.onnx'")),
    _call("Sequential.compile", "softmax over one unit", lambda X, Y: sequential(units=1),
          Raises(ValueError, r"a softmax over one unit always outputs 1")),
    _call("Sequential()", "dtype='int32'", lambda X, Y: sequential(dtype="int32"),
          Raises(ValueError, r"dtype must be 'float32' or 'float64'")),
    _call("Sequential.fit", "batch_size=0", lambda X, Y: sequential_fit(X, Y, batch_size=0),
          Raises(ValueError, r"batch_size must be an integer >= 1, got 0")),
    _call("Sequential.fit", "epochs=-1", lambda X, Y: sequential_fit(X, Y, epochs=-1),
          Raises(ValueError, r"epochs must be an integer >= 0, got -1")),
    _call("Sequential.fit", "fit before compile",
          lambda X, Y: Sequential([Dense(3, activation="softmax")]).fit(X, Y, verbose=0),
          Raises(RuntimeError, r"compile the model before fit")),
    _call("Sequential.fit", f"lr={HUGE_LR:g} (training diverges)", _diverging_sequential,
          DIVERGED),
    # Estimators
    _call("FastMLPClassifier.fit", "learning_rate_init=-1",
          lambda X, y: estimator_fit(classifier)(X, y, learning_rate_init=-1.0),
          Raises(ValueError, r"'learning_rate_init' parameter of FastMLPClassifier must be a "
                             r"float in the range \(0.0, inf\)")),
    _call("FastMLPClassifier.fit", "hidden_layer_sizes=(0,)",
          lambda X, y: estimator_fit(classifier)(X, y, hidden_layer_sizes=(0,)),
          Raises(ValueError, r"hidden_layer_sizes must hold integers > 0, got \(0,\)")),
    _call("FastMLPClassifier.fit", "hidden_layer_sizes=0",
          lambda X, y: estimator_fit(classifier)(X, y, hidden_layer_sizes=0),
          Raises(ValueError, r"'hidden_layer_sizes' parameter")),
    _call("FastMLPClassifier.fit", "activation='mish'",
          lambda X, y: estimator_fit(classifier)(X, y, activation="mish"),
          Raises(ValueError, r"'activation' parameter of FastMLPClassifier must be a str among")),
    _call("FastMLPClassifier.fit", "dropout=1.0",
          lambda X, y: estimator_fit(classifier)(X, y, dropout=1.0),
          Raises(ValueError, r"'dropout' parameter of FastMLPClassifier must be a float in the "
                             r"range \[0.0, 1.0\)")),
    _call("FastMLPClassifier.fit", "class_weight={9: 2.0} (no class 9)",
          lambda X, y: estimator_fit(classifier)(X, y, class_weight={9: 2.0}),
          Raises(ValueError, r"class_weight names \[9\], which the targets do not hold")),
    _call("FastMLPClassifier.fit", "solver='newton'",
          lambda X, y: estimator_fit(classifier)(X, y, solver="newton"),
          Raises(ValueError, r"'solver' parameter of FastMLPClassifier must be a str among")),
    _call("FastMLPClassifier.fit", "max_iter=0",
          lambda X, y: estimator_fit(classifier)(X, y, max_iter=0),
          Raises(ValueError, r"'max_iter' parameter")),
    _call("FastMLPClassifier.fit", "alpha=-1",
          lambda X, y: estimator_fit(classifier)(X, y, alpha=-1.0),
          Raises(ValueError, r"'alpha' parameter")),
    _call("FastMLPClassifier.fit", f"learning_rate_init={HUGE_LR:g} (training diverges)",
          lambda X, y: estimator_fit(classifier)(X, y, learning_rate_init=HUGE_LR, max_iter=20),
          ESTIMATOR_DIVERGED),
    _call("FastMLPClassifier.partial_fit", "classes=[0] (one class)",
          lambda X, y: classifier_partial_fit(X, y, classes=[0]),
          Raises(ValueError, r"`y` has classes not in `self.classes_`")),
    _call("FastMLPClassifier.partial_fit", "no classes on the first call",
          lambda X, y: classifier().partial_fit(X, y),
          Raises(ValueError, r"classes must be passed on the first call to partial_fit")),
    _call("FastMLPClassifier.partial_fit", "3 features after a call with 4",
          _continued_partial_fit,
          Raises(ValueError, r"X has 3 features, but FastMLPClassifier is expecting 4")),
    _call("FastMLPClassifier.predict", "predict before fit",
          lambda X, _: classifier().predict(X),
          Raises(ValueError, r"This FastMLPClassifier instance is not fitted yet")),
    _call("FastMLPRegressor.fit", "learning_rate_init=-1",
          lambda X, y: estimator_fit(regressor)(X, y, learning_rate_init=-1.0),
          Raises(ValueError, r"'learning_rate_init' parameter of FastMLPRegressor")),
    _call("FastMLPRegressor.fit", "learning_rate_init=10 (training diverges)",
          lambda X, y: estimator_fit(regressor)(X, 100 * y, learning_rate_init=10.0,
                                                activation="relu", max_iter=50),
          ESTIMATOR_DIVERGED),
    # MyNN
    _call("MyNN.fit", "lr=-1", lambda X, Y: mynn_fit(X, Y, lr=-1),
          Raises(ValueError, LR + "-1")),
    _call("MyNN.fit", "lr='0.5'", lambda X, Y: mynn_fit(X, Y, lr="0.5"),
          Raises(ValueError, LR + "'0.5'")),
    _call("MyNN.fit", "fit(-1)", lambda X, Y: mynn_fit(X, Y, epochs=-1),
          Raises(ValueError, r"epochs must be a non-negative integer, got -1")),
    _call("MyNN.fit", "lr=1e307 (training diverges)",
          lambda X, Y: mynn_fit(X, Y, lr=1e307, epochs=20), DIVERGED),
]

CASES = _data_cases() + CALL_CASES


# ---------------------------------------------------------------------------
# Running a case
# ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a case got: an exception, or a result with the arrays the kernels read."""

    error: BaseException = None
    result: Result = None
    seen: list = field(default_factory=list)
    args: tuple = ()

    def describe(self, varies="X"):
        """One line for the table: the exception and its first line, or what was accepted
        (for a variation of X: how the kernels got it, copied or in place)."""
        if self.error is not None:
            first = str(self.error).strip().splitlines()[0] if str(self.error).strip() else ""
            return f"{type(self.error).__name__}: {first}"
        values = self.result.values
        if varies != "X" or not self.seen:
            how = "accepted"
            if varies is None and values.size and not np.isfinite(values).all():
                how += f" (returns non-finite values: {values.ravel()[:3]})"
        elif self.seen[0].shape[0] == 0:
            how = f"accepted: an empty result of shape {values.shape}"
        else:
            read, x = self.seen[0], self.args[0]
            if not isinstance(read, np.ndarray):  # a SciPy sparse matrix
                how = f"accepted: read as a {read.format.upper()} matrix of {read.dtype}"
            elif isinstance(x, np.ndarray) and np.shares_memory(read, x):
                how = f"accepted: read in place as {read.dtype} (no copy)"
            else:
                how = f"accepted: converted to a C-contiguous {read.dtype} copy"
        classes = self.result.classes
        if classes and any(isinstance(c, str) for c in classes):
            how += f"; labels encoded, classes_ {classes}"
        return how


def run(case):
    """Run a case; return its Outcome (never raises the call's exception)."""
    args, _ = case.args()
    with kernel_inputs() as seen, warnings.catch_warnings():
        _quiet()
        try:
            result = case.call(*args)
        except Exception as exc:  # noqa: BLE001 (what it raises is the outcome)
            return Outcome(error=exc, seen=list(seen), args=args)
    if not isinstance(result, Result):
        result = Result(np.array([]))
    return Outcome(result=result, seen=list(seen), args=args)


def run_plain(case):
    """The case's call on the plain float64 data (for Accepted cases)."""
    _, plain = case.args()
    with warnings.catch_warnings():
        _quiet()
        return case.call(*plain)


def _quiet():
    """Ignore the warnings tiny runs give by design: no convergence in 2 epochs (a
    UserWarning), and NumPy's while casting 1e39 to float32 (before the check refuses it)."""
    warnings.simplefilter("ignore", UserWarning)
    warnings.filterwarnings("ignore", "(overflow|invalid value) encountered in cast", RuntimeWarning)
