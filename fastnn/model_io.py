"""Save and load a trained network as one ``.npz`` file, without pickle.

The file is an ordinary NumPy ``.npz`` archive (``np.savez``, uncompressed) with
two arrays:

``params``
    The flat parameter buffer, shape (n_params,), dtype float32 or float64
    (layout: ``fastnn.network``).
``metadata``
    A UTF-8 JSON document stored as a uint8 array::

        {"format": "fastnn-model", "format_version": 1, "fastnn_version": "0.1.0",
         "architecture": {"sizes": [...], "activations": [...], "head": "...",
                          "dtype": "..."},
         "extra": {...}}

Both are read back with ``np.load(allow_pickle=False)``, so loading a file never
runs code from it.  A file is written to a temporary name in the destination
directory and then renamed over the destination, so readers never see half a file.
"""

import json
import os
import secrets
import zipfile
from typing import NamedTuple

import numpy as np

from .network import Architecture

FORMAT = "fastnn-model"
FORMAT_VERSION = 1


class Model(NamedTuple):
    """What ``load`` returns."""

    arch: Architecture
    params: np.ndarray
    metadata: dict


def save(path, arch, params, extra_metadata=None):
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

    Raises
    ------
    ValueError
        params do not match arch, or extra_metadata is not JSON-serialisable.
    OSError
        The file cannot be written; an existing file at ``path`` is left as it was.
    """
    from . import __version__

    params = np.asarray(params)
    _check_params(arch, params, where="params")
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastnn_version": __version__,
        "architecture": {
            "sizes": list(arch.sizes),
            "activations": list(arch.activations),
            "head": arch.head,
            "dtype": arch.dtype,
        },
        "extra": {} if extra_metadata is None else extra_metadata,
    }
    try:
        text = json.dumps(metadata, allow_nan=False, default=_numpy_to_json)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra_metadata must be JSON-serialisable: {exc}") from None
    encoded = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as for any new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, params=np.ascontiguousarray(params), metadata=encoded)
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
        ``(arch, params, metadata)``; ``params`` is a fresh writable array and
        ``metadata`` the whole JSON document (``metadata["extra"]`` holds what was
        passed as ``extra_metadata``).

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        As ``open`` raises them.
    ValueError
        The file is not a fastnn model (not an ``.npz``, arrays missing, pickled
        objects inside), is truncated or corrupt, or has an unknown format version.
        The message names the path.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            archive = np.load(f, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with archive:
                missing = {"params", "metadata"} - set(archive.files)
                if missing:
                    raise ValueError(f"array(s) {sorted(missing)} missing")
                raw = archive["metadata"]
                params = archive["params"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable fastnn model file ({exc})") from exc

    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("metadata is not a 1-D uint8 array")
        metadata = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ValueError("no fastnn-model marker in metadata")
        version = metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"format version {version!r}, this fastnn reads {FORMAT_VERSION}")
        a = metadata["architecture"]
        arch = Architecture(tuple(a["sizes"]), tuple(a["activations"]), a["head"], a["dtype"])
        _check_params(arch, params, where="stored params")
    except (ValueError, KeyError, TypeError) as exc:
        # UnicodeDecodeError and json.JSONDecodeError are ValueErrors.
        detail = f"key {exc} missing" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{path}: not a valid fastnn model file ({detail})") from exc
    return Model(arch, np.array(params, copy=True), metadata)


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
