"""The argument and data checks that more than one module makes, in one place.

Every check raises ValueError (TypeError for a wrong kind of object) with a message
that names the argument and what it must be; the front ends add their own wording
only where their users know the argument by another name.
"""

import math
import struct
import sys
import zipfile
import zlib

import numpy as np

#: What reading a damaged, truncated or foreign file as a NumPy or zip archive can raise
#: (zipfile: BadZipFile for a broken structure or a CRC mismatch, RuntimeError for an
#: encrypted member, NotImplementedError for an unknown compression method): model
#: files and the command line's data files turn each into a one-line error.
READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, zipfile.BadZipFile,
               RuntimeError, NotImplementedError, zlib.error, struct.error, OverflowError)


def check_choice(value, name, choices):
    """Refuse value unless it is one of choices: "<name> must be 'a' or 'b', got ..."."""
    if value not in choices:
        raise ValueError(f"{name} must be {' or '.join(repr(c) for c in choices)}, got {value!r}")


def check_backend(backend, backends):
    """Refuse a backend name not in backends."""
    if backend not in backends:
        raise ValueError(f"unknown backend {backend!r}; choose from {list(backends)}")


def check_epochs(epochs):
    """Refuse anything but an integer >= 0 (bool included: it is no count)."""
    if not (isinstance(epochs, (int, np.integer)) and not isinstance(epochs, bool) and epochs >= 0):
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")


def check_batch_size(batch_size):
    """Refuse a batch size that is not None or an integer >= 0 (0 and None: the full batch)."""
    if batch_size is not None and not (isinstance(batch_size, (int, np.integer))
                                       and batch_size >= 0):
        raise ValueError(f"batch_size must be an integer >= 0 (0 or None: the full batch), "
                         f"got {batch_size!r}")


def check_l2(l2):
    """Refuse an L2 penalty that is not a finite number >= 0."""
    if not (isinstance(l2, (int, float, np.number)) and not isinstance(l2, bool)
            and math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")


def check_params(arch, params, writable=True):
    """Raise unless params is arch's flat buffer: an ndarray of the right shape and dtype,
    finite, and writable where it is to be trained in place."""
    if not isinstance(params, np.ndarray):
        raise TypeError(f"params must be a NumPy array (see fastnn.init_params), got "
                        f"{type(params).__name__}")
    if params.dtype != np.dtype(arch.dtype) or params.shape != (arch.n_params,):
        raise ValueError(f"params must have shape ({arch.n_params},) and dtype {arch.dtype}, "
                         f"got {params.shape} {params.dtype}")
    if writable and not (params.flags.writeable and params.flags.c_contiguous):
        raise ValueError("params must be a writable, contiguous array: fit updates it in place")
    if not np.isfinite(params).all():
        raise ValueError("params contain NaN or infinity")


def as_array(arch, A, name, width, min_rows=1, accept_sparse=False, test_finite=True):
    """A as a read-only, C-contiguous 2-D array of the network's dtype, ``width`` columns.

    With accept_sparse a SciPy sparse A is returned as a CSR matrix of that dtype
    instead (check_array converts it and refuses NaN and infinity in its values).
    test_finite=False leaves out the test for NaN and infinity of a plain ndarray,
    a pass over all of A, for a caller whose kernel tests the values as it reads them
    and then calls ``refuse_non_finite`` (prediction, ``epoch.predict_rows``).

    scikit-learn's check_array does the conversion (lists, integers, booleans,
    Fortran order, read-only and memory-mapped arrays are accepted, the last without
    a copy when already suitable) and refuses NaN, infinity, complex numbers and
    wrong dimensions; a plain finite numeric ndarray, which it would convert with
    np.asarray alone, is converted here without importing scikit-learn.  The compiled
    kernels trust the shapes they are given, so everything they rely on is checked
    here, with a message that names the problem.
    """
    if accept_sparse and is_sparse(A):
        from sklearn.utils import check_array

        A = check_array(A, accept_sparse="csr", dtype=arch.dtype, ensure_min_samples=min_rows,
                        input_name=name)
        if A.shape[1] != width:
            raise ValueError(f"{name} must have shape (n_samples, {width}), got {A.shape}")
        return A
    converted = _plain_array(A, arch.dtype, min_rows, test_finite)
    if converted is None:
        # Everything else (lists, data frames, memory maps, bad values) goes through
        # scikit-learn, which converts it or raises its own message; importing it
        # costs about a second, which a plain array never pays.
        from sklearn.utils import check_array

        converted = check_array(A, dtype=arch.dtype, order="C", ensure_min_samples=min_rows,
                                input_name=name)
    A = converted
    if A.shape[1] != width:
        raise ValueError(f"{name} must have shape (n_samples, {width}), got {A.shape}")
    return read_only(A)  # nothing downstream writes the caller's data


def read_only(A):
    """A read-only view of the array A (no copy).  The compiled kernels get their
    inputs this way whatever the caller's were (``kernels.sparse.driver_inputs``): Numba
    compiles a read-only array and a writable one as two types."""
    view = A.view()
    view.flags.writeable = False
    return view


def is_sparse(A):
    """Whether A is a SciPy sparse matrix or array.  SciPy's sparse module is not
    imported for this (about 80 ms): an A made by it means the module is loaded."""
    module = sys.modules.get("scipy.sparse")
    return module is not None and module.issparse(A)


def _plain_array(A, dtype, min_rows, test_finite=True):
    """A as a C-contiguous array of dtype when check_array would take it without a word:
    an ndarray (not a subclass) of booleans, integers or floats, 2-D, with at least
    min_rows rows and one column, finite after the conversion (unless not
    test_finite).  Else None."""
    if not (type(A) is np.ndarray and A.dtype.kind in "biuf" and A.ndim == 2
            and A.shape[0] >= min_rows and A.shape[1] >= 1):
        return None
    converted = np.asarray(A, dtype=dtype, order="C")
    if not test_finite:
        return converted
    # A finite sum means finite values, without a mask as large as the array (as
    # check_array tests); a sum that overflows leaves the verdict to check_array.
    return converted if np.isfinite(converted.sum(dtype=np.float64)) else None


def refuse_non_finite(A, name="X"):
    """Raise check_array's ValueError for NaN or infinity in A (an ndarray that holds
    one, e.g. found by a kernel after ``as_array(..., test_finite=False)``)."""
    from sklearn.utils import assert_all_finite

    assert_all_finite(A, input_name=name)
    # Finite now: the values changed while the kernel read them (another thread wrote A).
    raise ValueError(f"Input {name} contained NaN or infinity while it was read, and "
                     f"changed since")


def as_input(arch, X, name="X", min_rows=1, accept_sparse=False, test_finite=True):
    """X checked and converted for the network's input layer (see ``as_array``)."""
    return as_array(arch, X, name, arch.sizes[0], min_rows, accept_sparse, test_finite)


def check_data(arch, X, Y, names=("X", "Y"), accept_sparse=False):
    """X and Y checked and converted (see ``as_array``), with the same number of rows.

    Targets must suit the head's loss: probabilities in [0, 1] for sigmoid, and for
    softmax rows that also sum to 1 (the delta p - y is the gradient only then).
    """
    X = as_input(arch, X, names[0], accept_sparse=accept_sparse)
    Y = as_array(arch, Y, names[1], arch.sizes[-1])
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} need the same number of rows, got "
                         f"{X.shape[0]} and {Y.shape[0]}")
    if arch.head != "identity" and not ((Y >= 0).all() and (Y <= 1).all()):
        raise ValueError(f"{names[1]} must hold probabilities in [0, 1] for a {arch.head} "
                         f"output (one-hot rows for softmax)")
    if arch.head == "softmax" and not np.allclose(Y.sum(axis=1), 1, rtol=0, atol=1e-3):
        raise ValueError(f"{names[1]} rows must sum to 1 for a softmax output (one-hot, e.g. "
                         f"np.eye(n_classes)[labels])")
    return X, Y


def check_weights(sample_weight, n_samples, dtype):
    """Sample weights as a C-contiguous (n_samples,) array of dtype; ones for None."""
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype)
    weights = np.ascontiguousarray(sample_weight, dtype=dtype)
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {weights.shape}")
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise ValueError("sample_weight must be finite and >= 0, with a positive sum")
    return weights


def holds_text(values):
    """Whether array-like values hold a string (class labels given where numbers are expected)."""
    try:
        return any(isinstance(v, (str, bytes)) for v in np.asarray(values, dtype=object).ravel())
    except ValueError:  # ragged nested lists
        return False


def class_sample_weight(class_weight, labels, sample_weight=None):
    """Each row's weight: sample_weight (or 1) times the weight class_weight gives its class.

    class_weight is None, "balanced" (n_samples / (n_classes * count of the class), as
    scikit-learn and Keras define it) or a dict {class: weight}; classes missing from
    the dict weigh 1.  labels (n_samples,) holds each row's class.  This is what
    scikit-learn's classifiers and Keras's ``fit(class_weight=...)`` do: the two
    weights multiply.  Returns a float64 ndarray of shape (n_samples,), or
    sample_weight unchanged when class_weight is None.  A dict naming a class that
    labels do not hold is refused (it is almost always a mislabelled key).
    """
    if class_weight is None:
        return sample_weight
    from sklearn.utils.class_weight import compute_sample_weight

    labels = np.asarray(labels)
    classes = np.unique(labels)
    if isinstance(class_weight, dict):
        unseen = [key for key in class_weight if key not in set(classes.tolist())]
        if unseen:
            raise ValueError(f"class_weight names {unseen}, which the targets do not hold; "
                             f"their classes are {classes.tolist()}")
        for key, weight in class_weight.items():
            if not (isinstance(weight, (int, float, np.integer, np.floating))
                    and math.isfinite(weight) and weight >= 0):
                raise ValueError(f"class_weight[{key!r}] must be a finite number >= 0, got "
                                 f"{weight!r}")
    elif not (isinstance(class_weight, str) and class_weight == "balanced"):
        raise ValueError(f"class_weight must be None, 'balanced' or a dict {{class: weight}}, "
                         f"got {class_weight!r}")
    weights = compute_sample_weight(class_weight, labels)
    if sample_weight is None:
        return weights
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    if sample_weight.shape != weights.shape:
        raise ValueError(f"sample_weight has shape {sample_weight.shape}; the targets have "
                         f"{weights.shape[0]} rows")
    return sample_weight * weights


def check_dropout_rate(rate, name="rate"):
    """A dropout rate as a float in [0, 1); anything else is refused (1 would drop every unit)."""
    if not (isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
            and 0 <= rate < 1):
        raise ValueError(f"{name} must be a number in [0, 1), got {rate!r}")
    return float(rate)
