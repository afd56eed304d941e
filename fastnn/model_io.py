"""Save and load a trained network as one ``.npz`` file, without pickle.

The file is an ordinary NumPy ``.npz`` archive (``np.savez``, uncompressed) with
these arrays:

``params``
    The flat parameter buffer, shape (n_params,), dtype float32 or float64
    (layout: ``fastnn.network``).
``array_<name>``
    Any further numeric arrays (optimizer state, random generator state, ...).
``metadata``
    A UTF-8 JSON document stored as a uint8 array::

        {"format": "fastnn-model", "format_version": 2, "fastnn_version": "0.1.0",
         "architecture": {"sizes": [...], "activations": [...], "head": "...",
                          "dtype": "..."},
         "sha256": {"params": "...", "array_<name>": "...", "metadata": "..."},
         "extra": {...}}

Checksums.  ``sha256`` has one entry per array of the archive: for ``params`` and
each ``array_<name>``, the SHA-256 of the array's dtype string, shape and bytes
(``_sha256``); for ``metadata``, the SHA-256 of the document without that one entry,
as canonical JSON (``json.dumps(doc, sort_keys=True, separators=(",", ":"))``,
UTF-8; ``_metadata_sha256``).  ``load`` refuses a file with an array that has no
checksum, a checksum without an array, or any mismatch, so a damaged or edited file
is refused rather than loaded with wrong numbers or a wrong architecture.  (The zip
container's CRC-32, which ``zipfile`` checks, catches most accidental damage too.)

Safety.  Loading never runs code from the file: ``load`` reads the ``.npy`` members
itself (``numpy.lib.format`` header readers, no ``np.load``) and refuses arrays of
object dtype, which only pickle could restore.  It also refuses compressed members
and headers that declare more or less data than is stored, so it never allocates
much more memory than the size of the file.  A file is written to a temporary name
in the destination directory and then renamed over the destination, so readers
never see half a file.

On top of that format, ``save_model`` and ``load_model`` store a whole model of
any kind (``KINDS``): its configuration, weights, optimizer state, shuffling
generator and history, so that a loaded model predicts bitwise identically and
continues training exactly where it stopped.
"""

import hashlib
import importlib
import json
import math
import os
import secrets
import zipfile
from typing import NamedTuple

import numpy as np

from .checks import READ_ERRORS
from .network import NEGATIVE_SLOPE, Architecture, aligned_zeros
from .optimizers import make_optimizer

FORMAT = "fastnn-model"
FORMAT_VERSION = 2
_ARRAY_PREFIX = "array_"



class Model(NamedTuple):
    """What ``load`` returns."""

    arch: Architecture
    params: np.ndarray
    metadata: dict
    arrays: dict


def save(path, arch, params, extra_metadata=None, arrays=None):
    """Write ``arch`` and ``params`` to ``path`` (the exact name; no suffix is added).

    Parameters
    ----------
    path : str or os.PathLike
    arch : network.Architecture
    params : ndarray of shape (arch.n_params,) and dtype arch.dtype
    extra_metadata : dict or None
        Anything JSON-serialisable (training settings, class labels, scores);
        NumPy scalars and arrays are stored as numbers and lists.  Returned by
        ``load`` as ``metadata["extra"]``.
    arrays : dict of str to ndarray, or None
        Further numeric arrays, returned by ``load`` under the same names.

    Raises
    ------
    ValueError
        params do not match arch, or extra_metadata is not JSON-serialisable.
    OSError
        The file cannot be written; an existing file at ``path`` is left as it was.
    """
    from .version import __version__

    params = np.asarray(params)
    _check_params(arch, params, where="params")
    stored = {"params": np.ascontiguousarray(params)}
    for name, array in (arrays or {}).items():
        array = np.ascontiguousarray(array)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"array {name!r} has dtype {array.dtype}; only numbers are stored")
        stored[_ARRAY_PREFIX + name] = array
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastnn_version": __version__,
        "architecture": {
            "sizes": list(arch.sizes),
            "activations": list(arch.activations),
            "head": arch.head,
            "dtype": arch.dtype,
            **({} if arch.negative_slope == NEGATIVE_SLOPE
               else {"negative_slope": arch.negative_slope}),  # leaky_relu's, when not the default
        },
        "sha256": {name: _sha256(array) for name, array in stored.items()},
        "extra": {} if extra_metadata is None else extra_metadata,
    }
    try:
        # Through JSON and back first: what is hashed is exactly what load will parse.
        metadata = json.loads(json.dumps(metadata, allow_nan=False, default=_numpy_to_json))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra_metadata must be JSON-serialisable: {exc}") from None
    metadata["sha256"]["metadata"] = _metadata_sha256(metadata)
    text = json.dumps(metadata, allow_nan=False)
    encoded = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as for any new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, metadata=encoded, **stored)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load(path):
    """Read a model written by ``save``.

    Returns
    -------
    Model
        ``(arch, params, metadata, arrays)``; ``params`` and the arrays are fresh
        writable arrays and ``metadata`` the whole JSON document
        (``metadata["extra"]`` holds what was passed as ``extra_metadata``).

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        As ``open`` raises them.
    ValueError
        The file is not a fastnn model (not an ``.npz``, arrays missing, pickled
        objects inside), is truncated or corrupt (checksum mismatch), or has an
        unknown format version.
        The message names the path.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            stored = _read_npz(f, os.fstat(f.fileno()).st_size)
            missing = {"params", "metadata"} - set(stored)
            if missing:
                raise ValueError(f"array(s) {sorted(missing)} missing")
            raw = stored.pop("metadata")
        except READ_ERRORS as exc:
            raise ValueError(f"{path}: not a readable fastnn model file ({exc})") from exc

    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("metadata is not a 1-D uint8 array")
        try:
            metadata = json.loads(raw.tobytes().decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError and json.JSONDecodeError
            raise ValueError(f"metadata is not UTF-8 JSON ({exc}): damaged, or not a fastnn "
                             "model") from None
        checksums = metadata.get("sha256") if isinstance(metadata, dict) else None
        # Checked before any field is read, so that damage is reported as such.
        if isinstance(checksums, dict) and "metadata" in checksums:
            if checksums["metadata"] != _metadata_sha256(metadata):
                raise ValueError("metadata is damaged or was edited (SHA-256 mismatch)")
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ValueError("no fastnn-model marker in metadata")
        version = metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"format version {version!r}, this fastnn reads {FORMAT_VERSION}")
        checksums = dict(metadata["sha256"])
        if checksums.pop("metadata", None) is None:
            raise ValueError("no SHA-256 of the metadata")
        if set(checksums) != set(stored):
            raise ValueError(f"arrays {sorted(stored)} do not match the list {sorted(checksums)}")
        for name, array in stored.items():
            if _sha256(array) != checksums[name]:
                raise ValueError(f"array {name!r} is damaged (SHA-256 mismatch)")
        a = metadata["architecture"]
        arch = Architecture(tuple(a["sizes"]), tuple(a["activations"]), a["head"], a["dtype"],
                            a.get("negative_slope", NEGATIVE_SLOPE))
        params = stored.pop("params")
        _check_params(arch, params, where="stored params")
    except (ValueError, KeyError, TypeError) as exc:
        # UnicodeDecodeError and json.JSONDecodeError are ValueErrors.
        detail = f"key {exc} missing" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{path}: not a valid fastnn model file ({detail})") from exc
    arrays = {name[len(_ARRAY_PREFIX):]: np.array(array, copy=True) for name, array in stored.items()}
    copy = aligned_zeros(arch.n_params, arch.dtype)  # aligned as init_params's
    copy[:] = params
    return Model(arch, copy, metadata, arrays)


def _sha256(array):
    """Hex SHA-256 of an array's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _metadata_sha256(metadata):
    """Hex SHA-256 of the metadata document without sha256["metadata"], as canonical JSON."""
    doc = dict(metadata, sha256={key: value for key, value in metadata["sha256"].items()
                                 if key != "metadata"})
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _read_npz(f, file_size):
    """Every ``.npy`` member of the zip archive in file f, as {name: read-only ndarray}."""
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not an .npz (zip) archive: {exc}") from None
    arrays = {}
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"member {info.filename!r} is not an .npy array")
            name = info.filename[:-len(".npy")]
            if name in arrays:
                raise ValueError(f"array {name!r} stored twice")
            arrays[name] = _read_npy(zf, info, file_size)
    return arrays


def _read_npy(zf, info, file_size):
    """One uncompressed ``.npy`` member, built from exactly the bytes it stores; no pickle."""
    member = info.filename
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise ValueError(f"{member} is compressed; fastnn model files are not")
    if info.file_size > file_size:
        raise ValueError(f"{member} claims {info.file_size} bytes, more than the whole file")
    with zf.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"{member}: .npy format version {version} is not supported")
        if dtype.hasobject:
            raise ValueError(f"{member} holds Python objects, which only pickle could load; "
                             "refused")
        nbytes = math.prod(shape) * dtype.itemsize
        if min(shape, default=0) < 0 or fp.tell() + nbytes != info.file_size:
            raise ValueError(f"{member}: the header declares {nbytes} bytes of data, the "
                             f"archive stores {info.file_size - fp.tell()}")
        data = fp.read(nbytes + 1)  # up to the member's end, where zipfile checks the CRC-32
    if len(data) != nbytes:
        raise ValueError(f"{member}: {len(data)} bytes of data, the header declares {nbytes}")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def _check_params(arch, params, where):
    if params.dtype != np.dtype(arch.dtype) or params.shape != (arch.n_params,):
        raise ValueError(
            f"{where} have shape {params.shape} and dtype {params.dtype}; the architecture "
            f"needs ({arch.n_params},) and {arch.dtype}"
        )


def _numpy_to_json(obj):
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# ---------------------------------------------------------------------------
# Whole models: configuration, weights, optimizer, shuffling generator, history
# ---------------------------------------------------------------------------

#: Model classes ``load_model`` can rebuild, by kind (the class name): "module:Class".
KINDS = {
    "Sequential": "fastnn.models:Sequential",
    "FastMLPClassifier": "fastnn.estimators:FastMLPClassifier",
    "FastMLPRegressor": "fastnn.estimators:FastMLPRegressor",
    "MyNN": "fastnn.mynn:MyNN",
}


class SavedModel(NamedTuple):
    """Everything a model kind stores and gets back (``_saved_state`` / ``_from_saved``).

    config is the kind's own JSON-serialisable settings; optimizer an
    ``optimizers.Optimizer`` with its state, rng the shuffling generator
    (RandomState or Generator) and history a ``trainer.History``, each or None;
    arrays further numeric arrays of the kind's own.
    """

    kind: str
    arch: Architecture
    params: np.ndarray
    config: dict
    optimizer: object = None
    rng: object = None
    history: object = None
    arrays: dict = {}


def save_model(path, model, config=None):
    """Write a model of any kind in KINDS to path, via its ``_saved_state()``.

    config: further entries for the kind's configuration (the command line's record
    of its data); the kind's ``_from_saved`` reads its own keys and ignores them.
    """
    saved = model._saved_state()
    if config:
        saved = saved._replace(config={**saved.config, **config})
    if saved.kind not in KINDS:
        raise ValueError(f"cannot save a {saved.kind}; kinds: {sorted(KINDS)}")
    extra = {"kind": saved.kind, "config": saved.config}
    arrays = dict(saved.arrays)
    if saved.optimizer is not None:
        extra["optimizer"] = {"config": saved.optimizer.get_config(),
                              "iterations": int(saved.optimizer.iterations)}
        if saved.optimizer.slots is not None:
            arrays["optimizer_slots"] = saved.optimizer.slots
    if saved.rng is not None:
        extra["rng"], rng_arrays = rng_to_json(saved.rng)
        arrays.update(rng_arrays)
    if saved.history is not None:
        history = saved.history
        extra["history"] = {"history": history.history, "stop_reason": history.stop_reason,
                            "best_epoch": history.best_epoch, "signal": history.signal}
        if history.partial is not None:  # an epoch interrupted part-way
            extra["history"]["partial"] = {"next_row": int(history.partial.next_row),
                                           "totals": history.partial.totals.tolist()}
            arrays["history_partial_order"] = history.partial.order
    return save(path, saved.arch, saved.params, extra, arrays)


def load_model(path):
    """Read a file written by ``save_model`` (or ``model.save``): a model of the saved kind.

    Raises ValueError (naming the path) for anything but a valid model file of a
    known kind, as ``load`` does.
    """
    return model_from_file(load(path), path)


def model_from_file(model, path):
    """The model of the saved kind, from what ``load(path)`` returned (a ``Model``).

    For callers that also read the file's own metadata, so that it is read once.
    """
    from .trainer import History, PartialEpoch

    extra = model.metadata["extra"]
    try:
        kind = extra["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}")
        arrays = dict(model.arrays)
        optimizer = None
        if "optimizer" in extra:
            optimizer = make_optimizer(extra["optimizer"]["config"])
            optimizer.slots = arrays.pop("optimizer_slots", None)
            optimizer.iterations = int(extra["optimizer"]["iterations"])
        rng = rng_from_json(extra["rng"], arrays) if "rng" in extra else None
        history = None
        if "history" in extra:
            record = extra["history"]
            partial = None
            if "partial" in record:
                partial = PartialEpoch(arrays.pop("history_partial_order"),
                                       int(record["partial"]["next_row"]),
                                       record["partial"]["totals"])
            history = History({key: list(values) for key, values in record["history"].items()},
                              optimizer, record["stop_reason"], record["best_epoch"],
                              record.get("signal"), partial)
        saved = SavedModel(kind, model.arch, model.params, extra["config"], optimizer, rng,
                           history, arrays)
        module, name = KINDS[kind].split(":")
        return getattr(importlib.import_module(module), name)._from_saved(saved)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # The checksums passed, so only a crafted file gets here: a document of the
        # right shape at the top with wrong types or values inside.
        detail = f"key {exc} missing" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{os.fspath(path)}: not a valid fastnn model file ({detail})") from exc


def rng_to_json(rng):
    """(JSON document, arrays) holding the state of a RandomState or Generator."""
    if isinstance(rng, np.random.RandomState):
        name, keys, pos, has_gauss, cached = rng.get_state(legacy=True)
        return ({"type": "RandomState", "pos": int(pos), "has_gauss": int(has_gauss),
                 "cached_gaussian": float(cached)}, {"rng_keys": keys})
    return {"type": "Generator", "state": rng.bit_generator.state}, {}


def rng_from_json(doc, arrays):
    """The generator saved by ``rng_to_json``; its arrays are taken out of ``arrays``."""
    if doc["type"] == "RandomState":
        rng = np.random.RandomState()
        rng.set_state(("MT19937", arrays.pop("rng_keys"), doc["pos"], doc["has_gauss"],
                       doc["cached_gaussian"]))
        return rng
    state = doc["state"]
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:  # never look up (and call) a name the file chose
        raise ValueError(f"unknown bit generator {name!r}; fastnn reads {list(_BIT_GENERATORS)}")
    rng = np.random.Generator(getattr(np.random, name)())
    rng.bit_generator.state = state
    return rng


#: The bit generators a saved Generator may name.
_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")
