"""Saving and loading models: exact round trips, and clear errors for anything else."""

import json
import os

import numpy as np
import pytest

from fastnn import model_io
from fastnn.network import Architecture, init_params


def make_model(dtype="float32"):
    arch = Architecture((5, 7, 3), ("tanh",), "softmax", dtype)
    return arch, init_params(arch, "glorot_uniform", random_state=0)


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


def write_npz(path, **arrays):
    with open(path, "wb") as f:  # a file object, so np.savez keeps the exact name
        np.savez(f, **arrays)
    return path


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
