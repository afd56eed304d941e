"""Optimizers: update rules on the flat parameter buffer, with their hyperparameters and state.

Every optimizer updates the whole flat buffer (``fastnn.network``) with one
compiled kernel, ``kernels.optimizers.optimizer_step``, whose NumPy twin is
``reference.optimizer_step``.  For gradient g, learning rate lr and step count t
(1 for the first mini-batch)::

    SGD        v = momentum v - lr g;   p += v      (Nesterov: p += momentum v - lr g)
               momentum = 0:            p -= lr g   (no state)
    RMSprop    s = rho s + (1 - rho) g^2;  p -= lr g / (sqrt(s) + eps)
    Adam       m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
               p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)
    Adadelta   s = rho s + (1 - rho) g^2;  d = sqrt(u + eps) / sqrt(s + eps) g
               u = rho u + (1 - rho) d^2;  p -= lr d

(the forms of scikit-learn's ``_stochastic_optimizers`` and of Keras).  The state
(v; s; m and v; s and u) lives in ``slots``, an array of shape (n_slots, n_params)
with the layout of the parameters, and ``iterations`` counts the mini-batches
done, so that saving an optimizer is saving two arrays and a small dict.
"""

import math
from dataclasses import dataclass, field, fields

import numpy as np

from .network import aligned_zeros

#: Kernel code of each update rule.
OPTIMIZER_CODES = {"sgd": 0, "rmsprop": 1, "adam": 2, "adadelta": 3}


#: Valid values of each hyperparameter: (low, high, low excluded); high is excluded.
RANGES = {"lr": (0.0, math.inf, True), "momentum": (0.0, 1.0, False), "rho": (0.0, 1.0, False),
          "beta1": (0.0, 1.0, False), "beta2": (0.0, 1.0, False), "eps": (0.0, math.inf, True)}


@dataclass
class Optimizer:
    """Base class: the learning rate, the state, and the hyperparameters as the kernel wants them.

    A subclass names its rule (``name``), its slots per parameter (``n_state``) and its
    constants in the order the kernel reads them (``constants``, at most 3).
    """

    lr: float
    slots: np.ndarray = field(default=None, repr=False, compare=False, kw_only=True)
    iterations: int = field(default=0, repr=False, compare=False, kw_only=True)

    name = None
    n_state = 0
    constants = ()

    def __post_init__(self):
        for key in ("lr", *self.constants):
            if key in RANGES:
                _check(getattr(self, key), key, *RANGES[key])

    @property
    def code(self):
        return OPTIMIZER_CODES[self.name]

    @property
    def n_slots(self):
        return self.n_state

    def hyperparameters(self):
        """float64 array of shape (3,): the rule's constants in kernel order, zero-padded."""
        values = [float(getattr(self, key)) for key in self.constants]
        return np.array(values + [0.0] * (3 - len(values)))

    def get_config(self):
        """JSON-serialisable dict: the name and hyperparameters (not the state)."""
        config = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        return {"name": self.name, **config}

    def prepare(self, n_params, dtype):
        """Allocate zero state for n_params parameters, or check the state already held."""
        shape = (self.n_slots, n_params)
        if self.slots is None:
            self.slots = aligned_zeros(self.n_slots * n_params, dtype).reshape(shape)
            self.iterations = 0
        elif self.slots.shape != shape or self.slots.dtype != np.dtype(dtype):
            raise ValueError(f"{self.name} state has shape {self.slots.shape} and dtype "
                             f"{self.slots.dtype}; this network needs {shape} {np.dtype(dtype)}")

    def reset(self):
        """Forget the state (a fresh start)."""
        self.slots = None
        self.iterations = 0


@dataclass
class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False

    name = "sgd"
    constants = ("momentum", "nesterov")

    def __post_init__(self):
        super().__post_init__()
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    @property
    def n_slots(self):
        return 1 if self.momentum > 0 else 0


@dataclass
class RMSprop(Optimizer):
    """RMSprop: the step divided by a running root mean square of the gradient."""

    lr: float = 0.001
    rho: float = 0.9
    eps: float = 1e-7

    name = "rmsprop"
    n_state = 1
    constants = ("rho", "eps")


@dataclass
class Adam(Optimizer):
    """Adam, with the bias correction folded into the step size."""

    lr: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    name = "adam"
    n_state = 2
    constants = ("beta1", "beta2", "eps")


@dataclass
class Adadelta(Optimizer):
    """Adadelta; lr = 1.0 is the Keras 2.0-2.2 default the tutorial's Keras model used."""

    lr: float = 1.0
    rho: float = 0.95
    eps: float = 1e-7

    name = "adadelta"
    n_state = 2
    constants = ("rho", "eps")


#: Optimizer classes by name.
OPTIMIZERS = {cls.name: cls for cls in (SGD, RMSprop, Adam, Adadelta)}


def make_optimizer(spec="sgd", lr=None):
    """An Optimizer from a name, a config dict (``get_config()``) or an instance.

    lr, when given, replaces the learning rate of a name or dict (an instance is
    returned as it is: it may hold state).
    """
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise TypeError(f"optimizer must be a name, a config dict or an Optimizer, got {spec!r}")
    config = dict(spec)
    name = config.pop("name", None)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")
    if lr is not None:
        config["lr"] = lr
    try:
        return OPTIMIZERS[name](**config)
    except TypeError as error:
        raise ValueError(f"bad {name} hyperparameters {config}: {error}") from None


def _check(value, name, low, high, low_open):
    """Raise ValueError unless value is a real number in [low, high) ((low, high) if low_open)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if low_open else value >= low)
    ok = ok and (value < high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high})"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
