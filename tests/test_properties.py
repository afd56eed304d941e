"""Property-based tests (hypothesis) of the kernels, the public API and the model-file loader.

Kernels: the compiled kernels against the reference on drawn shapes.

API: drawn shapes (1..40 rows, 1..8 features, up to two hidden layers of 1..8 units, 1..4
outputs, every head), the network's dtype, the input's dtype (float64, float32,
integers, booleans) and layout (C, Fortran, every other row or column of a larger
array, read-only), and values (moderate, up to 1e300, or with NaN and infinity).

* Any dtype and layout trains and predicts exactly as the same values in a plain
  C-contiguous array of the same dtype (bitwise; integers and booleans are exact in
  both float dtypes), with finite results for moderate values.
* Large finite values either train (finite weights) or stop with DivergenceError
  keeping finite weights, or are refused (ValueError) when they overflow the
  network's float32; NaN or infinity anywhere in X or Y is refused with ValueError
  before anything is trained.
* The estimators' predict: the same, on fitted estimators.
* Model files: random bytes, random mutations of valid files of every model kind,
  random .npz archives, and valid archives (checksums right) whose metadata holds
  random JSON give ValueError, never another exception; a damaged file that loads is
  the model that was saved.
"""

import json
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastnn
from fastnn import (Architecture, init_params, kernels, layer_views, model_io, predict_output,
                    reference, trainer)
from fastnn.estimators import FastMLPClassifier, FastMLPRegressor
from fastnn.models import Dense, Sequential
from fastnn.mynn import MyNN

from .conftest import assert_close


# ---------------------------------------------------------------------------
# Kernels against the reference
# ---------------------------------------------------------------------------


dims = st.integers(min_value=1, max_value=37)
dtypes = st.sampled_from(["float32", "float64"])
KERNEL_SETTINGS = settings(max_examples=60, deadline=None)


@KERNEL_SETTINGS
@given(m=dims, k=dims, n=dims, dtype=dtypes, seed=st.integers(0, 2**32 - 1),
       transposed=st.booleans())
def test_matmul_acc_adds_the_product(m, k, n, dtype, seed, transposed):
    rng = np.random.default_rng(seed)
    # a may be a transposed (non-contiguous) view, as in the gradient kernel.
    a = rng.standard_normal((k, m)).astype(dtype).T if transposed else \
        rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    expected = c + a.astype(np.float64) @ b.astype(np.float64)
    kernels.matmul_acc(a, b, c)
    assert_close(c, expected.astype(dtype), dtype=dtype)


@KERNEL_SETTINGS
@given(rows=dims, fan_in=dims, fan_out=dims, activation=st.sampled_from([0, 1, 2, 3, 4]),
       dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_dense_forward_matches_reference(rows, fan_in, fan_out, activation, dtype, seed):
    rng = np.random.default_rng(seed)
    a_prev = rng.standard_normal((rows, fan_in)).astype(dtype)
    W = rng.standard_normal((fan_in, fan_out)).astype(dtype)
    b = rng.standard_normal(fan_out).astype(dtype)
    expected, out = np.empty((rows, fan_out), dtype), np.empty((rows, fan_out), dtype)
    reference.dense_forward(a_prev, W, b, activation, expected)
    kernels.dense_forward(a_prev, W, b, activation, out)
    assert_close(out, expected, dtype=dtype)


@KERNEL_SETTINGS
@given(rows=dims, fan_in=dims, fan_out=dims, data=st.data(), dtype=dtypes,
       seed=st.integers(0, 2**32 - 1))
def test_param_grad_matches_reference_on_any_row_range(rows, fan_in, fan_out, data, dtype, seed):
    rng = np.random.default_rng(seed)
    a_prev = rng.standard_normal((rows, fan_in)).astype(dtype)
    delta = rng.standard_normal((rows, fan_out)).astype(dtype)
    start = data.draw(st.integers(0, fan_in))
    stop = data.draw(st.integers(start, fan_in + 1))
    expected = np.empty((stop - start, fan_out), dtype)
    out = np.empty((stop - start, fan_out), dtype)
    reference.param_grad(a_prev, delta, start, stop, expected)
    kernels.param_grad(a_prev, delta, start, stop, out)
    assert_close(out, expected, dtype=dtype)


# ---------------------------------------------------------------------------
# The public API and model files
# ---------------------------------------------------------------------------


SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
FILE_SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow])

HEADS = ["softmax", "sigmoid", "identity"]
ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu"]
INPUT_DTYPES = ["float64", "float32", "int64", "bool"]
LAYOUTS = ["C", "F", "rows", "columns", "read-only"]


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------


@st.composite
def networks(draw):
    """(arch, params) with 1..8 inputs, up to two hidden layers, 1..4 outputs."""
    n_features = draw(st.integers(1, 8))
    hidden = draw(st.lists(st.integers(1, 8), max_size=2))
    head = draw(st.sampled_from(HEADS))
    n_outputs = draw(st.integers(2 if head == "softmax" else 1, 4))
    arch = Architecture((n_features, *hidden, n_outputs),
                        tuple(draw(st.sampled_from(ACTIVATIONS)) for _ in hidden), head,
                        draw(st.sampled_from(["float32", "float64"])))
    params = init_params(arch, "glorot_uniform", draw(st.integers(0, 2**31 - 1)))
    for _, b in layer_views(arch, params):
        b[:] = draw(hnp.arrays(np.float64, b.shape, elements=st.floats(-1, 1)))
    return arch, params


def targets(draw, arch, n):
    k = arch.sizes[-1]
    if arch.head == "softmax":
        return np.eye(k)[draw(hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)))]
    if arch.head == "sigmoid":
        return draw(hnp.arrays(np.float64, (n, k), elements=st.sampled_from([0.0, 1.0])))
    return draw(hnp.arrays(np.float64, (n, k), elements=st.floats(-10, 10)))


def inputs(draw, n, n_features, dtype, magnitude=1e3):
    """X of shape (n, n_features) in dtype: numbers within +-magnitude (exact in float32
    for float32 inputs), integers within +-1000, or booleans."""
    shape = (n, n_features)
    if dtype == "bool":
        return draw(hnp.arrays(np.bool_, shape))
    if dtype == "int64":
        return draw(hnp.arrays(np.int64, shape, elements=st.integers(-1000, 1000)))
    width = 32 if dtype == "float32" else 64
    return draw(hnp.arrays(dtype, shape, elements=st.floats(
        -magnitude, magnitude, allow_nan=False, allow_infinity=False, width=width)))


def laid_out(X, layout):
    """The values of X in another layout: Fortran order, every other row or column of a
    larger array (non-contiguous views), or a read-only array."""
    if layout == "F":
        return np.asfortranarray(X)
    if layout == "rows":
        big = np.zeros((2 * X.shape[0], X.shape[1]), X.dtype)
        big[::2] = X
        return big[::2]
    if layout == "columns":
        big = np.zeros((X.shape[0], 2 * X.shape[1]), X.dtype)
        big[:, ::2] = X
        return big[:, ::2]
    X = np.array(X)
    if layout == "read-only":
        X.flags.writeable = False
    return X


def _fit(arch, params, X, Y, **kwargs):
    params = params.copy()
    history = trainer.fit(arch, params, X, Y, epochs=2, batch_size=7, lr=0.05,
                          random_state=0, **kwargs)
    return params, history


def _fit_outcome(arch, params, X, Y):
    """("trained", weights) or ("diverged", the DivergenceError's message)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow on the way to inf
            return "trained", _fit(arch, params, X, Y)[0]
    except fastnn.DivergenceError as exc:
        return "diverged", str(exc)


# ---------------------------------------------------------------------------
# fastnn.fit and predict_output
# ---------------------------------------------------------------------------


@SETTINGS
@given(net=networks(), n=st.integers(1, 40), dtype=st.sampled_from(INPUT_DTYPES),
       layout=st.sampled_from(LAYOUTS), data=st.data())
def test_any_dtype_and_layout_trains_and_predicts_as_a_plain_array(net, n, dtype, layout, data):
    arch, params = net
    X = inputs(data.draw, n, arch.sizes[0], dtype)
    Y = targets(data.draw, arch, n)
    variant = laid_out(X, layout)
    plain = np.array(X)  # C-contiguous, writable, the same dtype and values
    out = predict_output(arch, params, variant)
    assert out.shape == (n, arch.sizes[-1]) and out.dtype == arch.dtype
    np.testing.assert_array_equal(out, predict_output(arch, params, plain))
    assert np.isfinite(out).all()
    # Inputs up to 1e3 can make lr 0.05 diverge (an identity head on x = 42: steps of
    # lr x^2 = 88); then the variant must diverge the same way, with the same message.
    trained = _fit_outcome(arch, params, variant, laid_out(Y, layout))
    expected = _fit_outcome(arch, params, plain, Y)
    assert trained[0] == expected[0]
    if expected[0] == "diverged":
        assert trained[1] == expected[1]
    else:
        np.testing.assert_array_equal(trained[1], expected[1])
        assert np.isfinite(trained[1]).all()
    np.testing.assert_array_equal(X, variant)  # the input is never written


@SETTINGS
@given(net=networks(), n=st.integers(1, 40), magnitude=st.sampled_from([1e10, 1e30, 1e300]),
       data=st.data())
def test_large_finite_values_train_diverge_or_are_refused_cleanly(net, n, magnitude, data):
    arch, params = net
    X = inputs(data.draw, n, arch.sizes[0], "float64", magnitude)
    Y = targets(data.draw, arch, n)
    too_large = arch.dtype == "float32" and np.abs(X).max() > np.finfo(np.float32).max
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow in the cast
        if too_large:
            with pytest.raises(ValueError, match="too large for dtype\\('float32'\\)"):
                predict_output(arch, params, X)
            with pytest.raises(ValueError, match="too large for dtype\\('float32'\\)"):
                _fit(arch, params, X, Y)
            return
        out = predict_output(arch, params, X)
    # Outputs of unbounded layers may overflow to inf (or inf - inf = NaN): IEEE
    # arithmetic, not a fault; what is checked is that prediction runs and is shaped.
    assert out.shape == (n, arch.sizes[-1]) and out.dtype == arch.dtype
    trained = params.copy()
    try:
        trainer.fit(arch, trained, X, Y, epochs=2, batch_size=7, lr=0.05, random_state=0)
    except fastnn.DivergenceError as exc:
        assert "training diverged" in str(exc)
    assert np.isfinite(trained).all()


@st.composite
def sprinkled(draw, shape):
    """A mask with at least one True, and the non-finite value to put there."""
    mask = draw(hnp.arrays(np.bool_, shape))
    assume(mask.any())
    return mask, draw(st.sampled_from([np.nan, np.inf, -np.inf]))


@SETTINGS
@given(net=networks(), n=st.integers(1, 40), where=st.sampled_from(["X", "Y"]), data=st.data())
def test_nan_or_infinity_anywhere_is_refused_before_training(net, n, where, data):
    arch, params = net
    X = inputs(data.draw, n, arch.sizes[0], "float64")
    Y = targets(data.draw, arch, n)
    bad = X.copy() if where == "X" else Y.copy()
    mask, value = data.draw(sprinkled(bad.shape))
    bad[mask] = value
    X, Y = (bad, Y) if where == "X" else (X, bad)
    trained = params.copy()
    with pytest.raises(ValueError, match=f"Input {where} contains (NaN|infinity)"):
        trainer.fit(arch, trained, X, Y, epochs=1)
    np.testing.assert_array_equal(trained, params)  # nothing was trained
    if where == "X":
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            predict_output(arch, params, X)


# ---------------------------------------------------------------------------
# The estimators' predict
# ---------------------------------------------------------------------------

_ESTIMATORS = {}


def fitted(kind, n_features):
    """A classifier or regressor fitted once per width on a small fixed problem."""
    key = kind, n_features
    if key not in _ESTIMATORS:
        rng = np.random.default_rng(n_features)
        X = rng.standard_normal((30, n_features))
        make = FastMLPClassifier if kind == "classifier" else FastMLPRegressor
        y = np.arange(30) % 3 if kind == "classifier" else X.sum(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ConvergenceWarning
            _ESTIMATORS[key] = make((5,), max_iter=3, random_state=0).fit(X, y)
    return _ESTIMATORS[key]


@SETTINGS
@given(kind=st.sampled_from(["classifier", "regressor"]), n_features=st.integers(1, 8),
       n=st.integers(1, 40), dtype=st.sampled_from(INPUT_DTYPES),
       layout=st.sampled_from(LAYOUTS), data=st.data())
def test_estimator_predict_takes_any_dtype_and_layout(kind, n_features, n, dtype, layout, data):
    model = fitted(kind, n_features)
    X = inputs(data.draw, n, n_features, dtype)
    variant = laid_out(X, layout)
    predicted = model.predict(variant)
    assert predicted.shape == (n,)
    np.testing.assert_array_equal(predicted, model.predict(np.array(X)))
    if kind == "classifier":
        assert set(predicted) <= set(model.classes_)
        proba = model.predict_proba(variant)
        assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1)
    else:
        assert np.isfinite(predicted).all()
    mask, value = data.draw(sprinkled(X.shape))
    bad = X.astype(np.float64)
    bad[mask] = value
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        model.predict(laid_out(bad, layout))
    other = data.draw(st.integers(1, 9).filter(lambda k: k != n_features))
    with pytest.raises(ValueError, match=f"X has {other} features, but \\w+ is expecting "
                                         f"{n_features}"):
        model.predict(np.zeros((n, other)))


# ---------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------


def _saved_files():
    """{kind: bytes of a small saved model}, one of each kind (Sequential with a
    Generator, whose state is stored as JSON)."""
    rng = np.random.default_rng(3)
    X, labels = rng.standard_normal((20, 3)), np.arange(20) % 2
    sequential = Sequential([Dense(4, input_dim=3, activation="tanh"),
                             Dense(2, activation="softmax")],
                            random_state=np.random.default_rng(1)).compile("adam")
    sequential.fit(X, np.eye(2)[labels], epochs=2, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        classifier = FastMLPClassifier((4,), max_iter=2, random_state=0).fit(
            X, np.array(["no", "yes"])[labels])
    np.random.seed(0)
    mynn = MyNN(X, np.eye(2)[labels])
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, model in [("Sequential", sequential), ("FastMLPClassifier", classifier),
                            ("MyNN", mynn)]:
            path = os.path.join(tmp, f"{kind}.npz")
            model.save(path)
            with open(path, "rb") as f:
                files[kind] = f.read()
    return files


FILES = _saved_files()


def _load_both(data):
    """(outcome of model_io.load, outcome of fastnn.load) for a file holding data:
    "refused" for a ValueError naming the path, the loaded object, or the exception."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        with open(path, "wb") as f:
            f.write(data)
        outcomes = []
        for loader in (model_io.load, fastnn.load):
            try:
                outcomes.append(loader(path))
            except ValueError as exc:
                assert path in str(exc), f"the message does not name the path: {exc}"
                outcomes.append("refused")
    return outcomes


def _same_model(loaded, kind):
    """Whether a loaded model is the one saved in FILES[kind] (weights and kind)."""
    original = _load_both(FILES[kind])[1]
    return type(loaded) is type(original) and np.array_equal(
        _weights_of(loaded), _weights_of(original))


def _weights_of(model):
    return model._params if hasattr(model, "_params") else model.params


@FILE_SETTINGS
@given(data=st.binary(max_size=2000))
def test_random_bytes_are_refused(data):
    assert _load_both(data) == ["refused", "refused"]


@st.composite
def mutations(draw):
    """(kind, bytes): a saved file with 1..4 random edits (overwrite, insert, delete, cut)."""
    kind = draw(st.sampled_from(sorted(FILES)))
    data = bytearray(FILES[kind])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        edit = draw(st.sampled_from(["overwrite", "insert", "delete", "cut"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if edit == "overwrite":
            data[at:at + len(chunk)] = chunk
        elif edit == "insert":
            data[at:at] = chunk
        elif edit == "delete":
            del data[at:at + len(chunk)]
        else:
            del data[at:]
    assume(bytes(data) != FILES[kind])
    return kind, bytes(data)


@FILE_SETTINGS
@given(mutation=mutations())
def test_mutated_files_are_refused_or_load_the_same_model(mutation):
    kind, data = mutation
    low, model = _load_both(data)
    if model == "refused":
        return
    assert _same_model(model, kind), "a damaged file loaded as a different model"
    assert low != "refused"


array_dtypes = st.sampled_from(["uint8", "int64", "float32", "float64", "bool", "<U3", "c16"])


@FILE_SETTINGS
@given(arrays=st.dictionaries(
    st.sampled_from(["params", "metadata", "array_slots", "array_rng_keys", "other"]),
    array_dtypes.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0,
                                                                          max_side=5))),
    max_size=4))
def test_random_npz_archives_are_refused(arrays):
    with tempfile.TemporaryFile() as f:
        np.savez(f, **arrays)
        f.seek(0)
        data = f.read()
    assert _load_both(data) == ["refused", "refused"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False,
                                                                       allow_infinity=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6),
                                                                      children, max_size=3),
    max_leaves=8)


def _replace_somewhere(doc, draw):
    """doc with one value (at a path drawn through dicts and lists) replaced by random JSON."""
    if not isinstance(doc, (dict, list)) or not doc or draw(st.integers(0, 3)) == 0:
        return draw(json_values)
    keys = sorted(doc) if isinstance(doc, dict) else list(range(len(doc)))
    key = draw(st.sampled_from(keys))
    doc = dict(doc) if isinstance(doc, dict) else list(doc)
    doc[key] = _replace_somewhere(doc[key], draw)
    return doc


def _archive(members):
    """An uncompressed .npz holding members (name -> array), as np.savez writes it."""
    with tempfile.TemporaryFile() as f:
        np.savez(f, **members)
        f.seek(0)
        return f.read()


def _with_checksums(metadata, members):
    """metadata with the format's checksums recomputed for members and itself."""
    metadata = dict(metadata, sha256={name: model_io._sha256(array)
                                      for name, array in members.items()})
    metadata["sha256"]["metadata"] = model_io._metadata_sha256(metadata)
    return metadata


@FILE_SETTINGS
@given(kind=st.sampled_from(sorted(FILES)), data=st.data())
def test_valid_archives_with_wrong_metadata_are_refused(kind, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        with open(path, "wb") as f:
            f.write(FILES[kind])
        model = model_io.load(path)
    members = {"params": model.params, **{f"array_{name}": array
                                          for name, array in model.arrays.items()}}
    metadata = {key: value for key, value in model.metadata.items() if key != "sha256"}
    metadata = _replace_somewhere(metadata, data.draw)
    assume(isinstance(metadata, dict))
    try:
        metadata = _with_checksums(metadata, members)
        text = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError):  # replaced the whole document by a non-dict
        assume(False)
    members["metadata"] = np.frombuffer(text.encode(), dtype=np.uint8)
    # A ValueError naming the path, or a model: the metadata is valid JSON with right
    # checksums, so a harmless change (the fastnn version, a learning rate) may load.
    _load_both(_archive(members))


@pytest.mark.parametrize("name", ["seed", "random", "no_such_generator"])
def test_a_file_naming_a_function_as_its_bit_generator_is_refused_without_calling_it(name):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        with open(path, "wb") as f:
            f.write(FILES["Sequential"])  # its generator is a Generator (PCG64)
        model = model_io.load(path)
    members = {"params": model.params, **{f"array_{name}": array
                                          for name, array in model.arrays.items()}}
    metadata = json.loads(json.dumps({key: value for key, value in model.metadata.items()
                                      if key != "sha256"}))
    assert metadata["extra"]["rng"]["state"]["bit_generator"] == "PCG64"
    metadata["extra"]["rng"]["state"]["bit_generator"] = name
    metadata = _with_checksums(metadata, members)
    members["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    state = np.random.get_state()
    try:
        assert _load_both(_archive(members))[1] == "refused"
        after = np.random.get_state()
        assert after[0] == state[0] and np.array_equal(after[1], state[1]) \
            and after[2:] == state[2:], "loading the file changed NumPy's global generator"
    finally:
        np.random.set_state(state)
