"""Model files: exact round trips, and clear refusals of damaged, foreign or hostile files.

Saving and loading is bitwise and atomic, and never unpickles.

Every bad file must give a ValueError whose message names the path and the problem
(FileNotFoundError / IsADirectoryError for path problems), never another exception,
and never a model that differs from the one saved.  The checksums are recomputed
here from the format's description in ``fastnn.model_io`` (not with its helpers), so
the tests also pin the documented format.
"""

import hashlib
import io
import json
import os
import pathlib
import pickle
import re
import zipfile
from typing import NamedTuple

import numpy as np
import pytest

from fastnn import model_io
from fastnn.network import Architecture, init_params


# ---------------------------------------------------------------------------
# Round trips and the simple refusals
# ---------------------------------------------------------------------------




@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bitwise(tmp_path, dtype):
    arch, params = make_model(dtype)
    params[0] = np.nextafter(params[0], np.inf)  # a value that text formats would round
    path = tmp_path / "model.npz"
    extra = {"classes": [0, 1, 2], "note": "ünïcode", "lr": 0.1}
    assert model_io.save(path, arch, params, extra) == str(path)

    loaded = model_io.load(path)
    assert loaded.arch == arch
    assert loaded.params.dtype == params.dtype
    assert loaded.params.tobytes() == params.tobytes()
    assert loaded.params.flags.writeable and loaded.params.flags.c_contiguous
    assert loaded.metadata["extra"] == extra
    assert loaded.metadata["format_version"] == model_io.FORMAT_VERSION


def test_numpy_values_in_extra_metadata_are_stored_as_json(tmp_path):
    arch, params = make_model()
    path = tmp_path / "model.npz"
    model_io.save(path, arch, params, {"loss": np.float32(0.5), "classes": np.arange(3)})
    assert model_io.load(path).metadata["extra"] == {"loss": 0.5, "classes": [0, 1, 2]}


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    arch, params = make_model()
    path = tmp_path / "model.npz"
    model_io.save(path, arch, params)
    model_io.save(path, arch, params + 1)
    np.testing.assert_array_equal(model_io.load(path).params, params + 1)
    assert os.listdir(tmp_path) == ["model.npz"]


def test_failed_save_keeps_the_old_file(tmp_path):
    arch, params = make_model()
    path = tmp_path / "model.npz"
    model_io.save(path, arch, params)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="JSON"):
        model_io.save(path, arch, params, {"bad": object()})
    with pytest.raises(ValueError, match="shape"):
        model_io.save(path, arch, params[:-1])
    with pytest.raises(ValueError, match="dtype"):
        model_io.save(path, arch, params.astype(np.float64))
    with pytest.raises(OSError):
        model_io.save(tmp_path / "missing" / "model.npz", arch, params)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        model_io.load(tmp_path / "nothing.npz")


def metadata_array(params=None, **changes):
    """A metadata document; with params, it carries their and its own correct checksums."""
    doc = {"format": model_io.FORMAT, "format_version": model_io.FORMAT_VERSION,
           "fastnn_version": "0.1.0",
           "architecture": {"sizes": [5, 7, 3], "activations": ["tanh"], "head": "softmax",
                            "dtype": "float32"}, "extra": {},
           "sha256": {} if params is None else {"params": model_io._sha256(params)}}
    doc.update(changes)
    if params is not None:
        doc["sha256"]["metadata"] = model_io._metadata_sha256(doc)
    return np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)


@pytest.mark.parametrize("arrays, message", [
    (lambda p: {"weights": p}, "missing"),                       # a foreign .npz
    (lambda p: {"params": p}, "missing"),                        # no metadata
    (lambda p: {"metadata": metadata_array()}, "missing"),       # no params
    (lambda p: {"params": p, "metadata": metadata_array(format="other")}, "marker"),
    (lambda p: {"params": p, "metadata": metadata_array(format_version=99)}, "version 99"),
    (lambda p: {"params": p, "metadata": metadata_array(p, architecture={})}, "sizes"),
    (lambda p: {"params": p[:-1], "metadata": metadata_array(p[:-1])}, "shape"),
    (lambda p: {"params": p, "metadata": metadata_array(p[:-1])}, "damaged"),
    (lambda p: {"params": p, "metadata": np.frombuffer(b"{not json", np.uint8)}, "model"),
    (lambda p: {"params": p, "metadata": np.zeros(3)}, "uint8"),
])
def test_foreign_or_malformed_npz_raises_value_error(tmp_path, arrays, message):
    _, params = make_model()
    path = write_npz(tmp_path / "foreign.npz", **arrays(params))
    with pytest.raises(ValueError, match=message) as info:
        model_io.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -10])
def test_truncated_file_raises_value_error(tmp_path, keep):
    arch, params = make_model()
    path = tmp_path / "model.npz"
    model_io.save(path, arch, params)
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="model.npz"):
        model_io.load(path)


@pytest.mark.parametrize("content", [b"hello, not a model\n", b"PK\x03\x04garbage"])
def test_other_files_raise_value_error(tmp_path, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="model.npz"):
        model_io.load(path)


def test_plain_npy_raises_value_error(tmp_path):
    path = tmp_path / "model.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match="npz"):
        model_io.load(path)


class _Trap:
    """Unpickling this object creates the file ``marker``: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("key", ["params", "metadata"])
def test_pickled_object_array_is_refused_without_running_it(tmp_path, key):
    marker = tmp_path / "code-ran"
    arrays = {"params": make_model()[1], "metadata": metadata_array()}
    arrays[key] = np.array([_Trap(marker)], dtype=object)
    path = write_npz(tmp_path / "evil.npz", **arrays)
    with pytest.raises(ValueError, match="evil.npz"):
        model_io.load(path)
    assert not marker.exists()
    # The trap is real: loading with pickle allowed does run it.
    with np.load(path, allow_pickle=True) as archive:
        archive[key][0].close()
    assert marker.exists()


# ---------------------------------------------------------------------------
# Damaged, foreign and hostile files
# ---------------------------------------------------------------------------


def make_model(dtype="float32", seed=0):
    arch = Architecture((5, 7, 3), ("tanh",), "softmax", dtype)
    return arch, init_params(arch, "glorot_uniform", random_state=seed)


class Saved(NamedTuple):
    path: pathlib.Path
    arch: Architecture
    params: np.ndarray
    slots: np.ndarray  # an extra array, as optimizer state is stored
    metadata: dict
    data: bytes  # the file's bytes


@pytest.fixture
def saved(tmp_path):
    """A model written by model_io.save, with an extra array."""
    arch, params = make_model()
    slots = np.random.default_rng(1).standard_normal(2 * params.size).astype(np.float32)
    path = tmp_path / "model.npz"
    model_io.save(path, arch, params, {"lr": 0.1, "note": "ünïcode"}, arrays={"slots": slots})
    return Saved(path, arch, params, slots, model_io.load(path).metadata, path.read_bytes())


def write_npz(path, **arrays):
    with open(path, "wb") as f:  # a file object, so np.savez keeps the exact name
        np.savez(f, **arrays)
    return path


def metadata_doc(**changes):
    doc = {"format": "fastnn-model", "format_version": 2, "fastnn_version": "0.1.0",
           "architecture": {"sizes": [5, 7, 3], "activations": ["tanh"], "head": "softmax",
                            "dtype": "float32"}, "extra": {}}
    doc.update(changes)
    return doc


def array_sha256(array):
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype.str}{array.shape}".encode() + array.tobytes()).hexdigest()


def with_checksums(doc, **arrays):
    """doc with the checksums of the format: SHA-256 of each array's dtype, shape and
    bytes, and of the document itself without its own entry, as canonical JSON."""
    doc = dict(doc, sha256={name: array_sha256(a) for name, a in arrays.items()})
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    doc["sha256"]["metadata"] = hashlib.sha256(canonical).hexdigest()
    return doc


def as_array(doc):
    return np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)


def assert_refused(path, *patterns, exc=ValueError):
    """load(path) raises exc, naming the path and matching every regex in patterns."""
    with pytest.raises(exc) as info:
        model_io.load(path)
    message = str(info.value)
    assert str(path) in message, message
    for pattern in patterns:
        assert re.search(pattern, message, re.IGNORECASE), message
    return message


def load_or_refuse(saved):
    """None if load refused the file at saved.path with a ValueError; 'same' if it
    returned the very model that was saved; otherwise what went wrong."""
    try:
        model = model_io.load(saved.path)
    except ValueError as exc:
        return None if str(saved.path) in str(exc) else f"ValueError without the path: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other exception is the failure reported
        return f"{type(exc).__name__}: {exc}"
    if (model.arch == saved.arch and model.params.tobytes() == saved.params.tobytes()
            and model.metadata == saved.metadata and list(model.arrays) == ["slots"]
            and model.arrays["slots"].tobytes() == saved.slots.tobytes()):
        return "same"
    return "a different model was returned"


# ---------------------------------------------------------------------------
# Pickle: never
# ---------------------------------------------------------------------------


class Trap:
    """Unpickling this object creates the file ``marker``: the proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make any use of pickle's loaders fail the test, whoever calls them."""

    def forbidden(*args, **kwargs):
        raise AssertionError("load used pickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)


@pytest.mark.parametrize("where", ["params", "metadata", "extra array with checksum",
                                   "extra array without checksum"])
def test_pickled_objects_are_refused_without_running_them(tmp_path, where, no_unpickling):
    marker = tmp_path / "code-ran"
    trap = np.array([Trap(marker)], dtype=object)
    _, params = make_model()
    arrays = {"params": params}
    if where == "params":
        arrays["params"] = trap
    elif where == "extra array with checksum":
        arrays["array_slots"] = np.zeros(3)  # its checksum goes in; the trap replaces it
    doc = with_checksums(metadata_doc(), **arrays)
    arrays["metadata"] = trap if where == "metadata" else as_array(doc)
    if where.startswith("extra array"):
        arrays["array_slots"] = trap
    path = tmp_path / "evil.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # np.savez pickles object arrays (the real pickle: not patched)

    assert_refused(path, "python objects|pickle")
    assert not marker.exists()


def test_the_trap_is_real(tmp_path):
    """With pickle allowed, loading such a file does run code: the test above is not vacuous."""
    marker = tmp_path / "code-ran"
    path = write_npz(tmp_path / "evil.npz", params=np.array([Trap(marker)], dtype=object))
    with np.load(path, allow_pickle=True) as archive:
        archive["params"]
    assert marker.exists()


# ---------------------------------------------------------------------------
# Damaged files
# ---------------------------------------------------------------------------


def test_every_truncation_is_refused(saved):
    failures = {}
    for cut in range(len(saved.data)):  # every length from 0 (an empty file) to 1 byte short
        saved.path.write_bytes(saved.data[:cut])
        outcome = load_or_refuse(saved)
        if outcome is not None:
            failures[cut] = outcome
    assert not failures, failures


@pytest.mark.parametrize("payload", ["params", "slots", "metadata"])
def test_bit_flips_in_a_payload_are_refused(saved, payload):
    stored = {"params": saved.params.tobytes(), "slots": saved.slots.tobytes(),
              "metadata": json.dumps(saved.metadata).encode()}[payload]
    start = saved.data.find(stored)
    assert start > 0 and saved.data.find(stored, start + 1) == -1
    failures = {}
    for offset in range(start, start + len(stored)):
        damaged = bytearray(saved.data)
        damaged[offset] ^= 1 << (offset % 8)  # one bit per byte, every bit position in turn
        saved.path.write_bytes(bytes(damaged))
        outcome = load_or_refuse(saved)
        if outcome is not None:
            failures[offset] = outcome
    assert not failures, failures
    # What catches a flip in a payload written by np.savez first: the zip's CRC-32.
    assert_refused(saved.path, "CRC")


def test_a_bit_flip_anywhere_gives_an_error_or_the_same_model(saved):
    """Some header bytes of a zip are not checked (e.g. time stamps): loading may then
    succeed, but only with exactly the model saved."""
    failures = {}
    for offset in range(len(saved.data)):
        for bit in (offset % 8, 7 - offset % 8):
            damaged = bytearray(saved.data)
            damaged[offset] ^= 1 << bit
            saved.path.write_bytes(bytes(damaged))
            outcome = load_or_refuse(saved)
            if outcome not in (None, "same"):
                failures[offset, bit] = outcome
    assert not failures, failures


def stored_arrays(saved):
    with np.load(saved.path) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.mark.parametrize("name", ["params", "array_slots"])
def test_changed_arrays_in_a_valid_zip_fail_the_checksum(saved, tmp_path, name):
    """Repacked with np.savez, the zip's CRC is right again: only the checksum can tell."""
    arrays = stored_arrays(saved)
    arrays[name] = arrays[name].copy()
    arrays[name].view(np.uint32)[10] ^= 1  # one bit of the mantissa of one number
    assert_refused(write_npz(tmp_path / "edited.npz", **arrays),
                   f"'{name}' is damaged", "SHA-256 mismatch")


def test_weights_of_another_model_fail_the_checksum(saved, tmp_path):
    arrays = dict(stored_arrays(saved), params=make_model(seed=1)[1])  # same architecture
    assert_refused(write_npz(tmp_path / "swapped.npz", **arrays), "'params' is damaged")


@pytest.mark.parametrize("edit", [
    lambda doc: doc["architecture"].update(activations=["relu"]),  # same shapes, other model
    lambda doc: doc["architecture"].update(head="sigmoid"),
    lambda doc: doc["extra"].update(lr=0.2),
    lambda doc: doc.update(fastnn_version="0.1.1"),
    lambda doc: doc["sha256"].update(params="0" * 64),
])
def test_changed_metadata_in_a_valid_zip_fails_the_checksum(saved, tmp_path, edit):
    doc = json.loads(json.dumps(saved.metadata))
    edit(doc)
    arrays = dict(stored_arrays(saved), metadata=as_array(doc))
    assert_refused(write_npz(tmp_path / "edited.npz", **arrays),
                   "metadata is damaged or was edited", "SHA-256 mismatch")


def test_saved_checksums_follow_the_documented_format(saved):
    doc = saved.metadata
    assert doc["format_version"] == model_io.FORMAT_VERSION == 2
    expected = with_checksums({k: v for k, v in doc.items() if k != "sha256"},
                              params=saved.params, array_slots=saved.slots)
    assert doc["sha256"] == expected["sha256"]


# ---------------------------------------------------------------------------
# Foreign and malformed files
# ---------------------------------------------------------------------------


def test_wrong_format_version_is_refused(tmp_path):
    _, params = make_model()
    # Version 1 files had no checksums; a version 3 file, even with valid checksums.
    v1 = write_npz(tmp_path / "v1.npz", params=params,
                   metadata=as_array(metadata_doc(format_version=1)))
    assert_refused(v1, "format version 1", "reads 2")
    doc = with_checksums(metadata_doc(format_version=3), params=params)
    v3 = write_npz(tmp_path / "v3.npz", params=params, metadata=as_array(doc))
    assert_refused(v3, "format version 3")


def test_missing_checksums_are_refused(tmp_path):
    _, params = make_model()
    path = write_npz(tmp_path / "model.npz", params=params, metadata=as_array(metadata_doc()))
    assert_refused(path, "'sha256' missing")
    doc = metadata_doc(sha256={"params": array_sha256(params)})  # none of the metadata
    path = write_npz(tmp_path / "model.npz", params=params, metadata=as_array(doc))
    assert_refused(path, "no SHA-256 of the metadata")


def test_arrays_and_checksums_must_match_one_to_one(tmp_path):
    _, params = make_model()
    doc = with_checksums(metadata_doc(), params=params)
    unlisted = write_npz(tmp_path / "unlisted.npz", params=params, metadata=as_array(doc),
                         array_slots=np.zeros_like(params))
    assert_refused(unlisted, r"arrays \['array_slots', 'params'\] do not match the list "
                             r"\['params'\]")
    doc = with_checksums(metadata_doc(), params=params, array_slots=np.zeros_like(params))
    absent = write_npz(tmp_path / "absent.npz", params=params, metadata=as_array(doc))
    assert_refused(absent, r"arrays \['params'\] do not match the list \['array_slots', "
                           r"'params'\]")


def test_foreign_npz_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    path = write_npz(tmp_path / "foreign.npz", x=rng.standard_normal((4, 3)),
                     y=rng.integers(0, 9, 7))
    assert_refused(path, r"\['metadata', 'params'\] missing")


def test_compressed_npz_is_refused(saved, tmp_path):
    compressed = tmp_path / "compressed.npz"
    with open(compressed, "wb") as f:
        np.savez_compressed(f, **stored_arrays(saved))
    assert_refused(compressed, "compressed")


def npy_bytes(array, shape=None):
    """array as an .npy file, optionally with a header that declares another shape."""
    buffer = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    if shape is not None:
        header["shape"] = shape
    np.lib.format.write_array_header_1_0(buffer, header)
    buffer.write(array.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("shape", [(10**15,), (67,), (65,), (-66,), (66, 10**9)])
def test_header_declaring_other_sizes_is_refused_without_allocating(tmp_path, shape):
    """A header may claim petabytes: load compares it with the bytes stored, before reading."""
    _, params = make_model()
    doc = with_checksums(metadata_doc(), params=params)
    path = tmp_path / "model.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("params.npy", npy_bytes(params, shape))
        zf.writestr("metadata.npy", npy_bytes(as_array(doc)))
    assert_refused(path, "declares")


@pytest.mark.parametrize("content, problem", [
    (b"", "not an .npz"),                                  # an empty file
    (b"hello, not a model\n", "not an .npz"),
    (b"PK\x03\x04garbage", "not an .npz"),                 # a zip's first bytes, then nothing
    (b"PK\x05\x06" + b"\0" * 18, r"\['metadata', 'params'\] missing"),  # an empty zip
])
def test_files_that_are_not_npz_archives_are_refused(tmp_path, content, problem):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    assert_refused(path, problem)


def test_plain_npy_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    assert_refused(path, "not an .npz")


def test_directory_raises_is_a_directory_error(tmp_path):
    assert_refused(tmp_path, exc=IsADirectoryError)


def test_missing_file_raises_file_not_found_naming_the_path(tmp_path):
    assert_refused(tmp_path / "nothing.npz", exc=FileNotFoundError)
