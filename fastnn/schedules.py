"""Learning-rate schedules: the learning rate of each epoch.

A schedule is a function ``schedule(epoch, lr, history) -> float`` of the epoch
index (0 for the first epoch ever trained, counting on across calls that continue
a history), the optimizer's base learning rate and the history so far (a dict of
per-epoch lists).  Being a function of the record alone, a schedule needs no state
of its own: a resumed run gets exactly the rates an uninterrupted one would.
"""

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Constant:
    """lr in every epoch."""

    def __call__(self, epoch, lr, history):
        return lr


@dataclass(frozen=True)
class InverseScaling:
    """lr / (epoch + 1) ** power_t (scikit-learn's "invscaling", counted in epochs)."""

    power_t: float = 0.5

    def __call__(self, epoch, lr, history):
        return lr / (epoch + 1) ** self.power_t


@dataclass(frozen=True)
class StepDecay:
    """lr * gamma ** (epoch // step_size): multiplied by gamma every step_size epochs."""

    step_size: int = 10
    gamma: float = 0.1

    def __post_init__(self):
        _check_count(self.step_size, "step_size")
        _check_fraction(self.gamma, "gamma")

    def __call__(self, epoch, lr, history):
        return lr * self.gamma ** (epoch // self.step_size)


@dataclass(frozen=True)
class Cosine:
    """Cosine annealing from lr to min_lr over t_max epochs, then min_lr."""

    t_max: int = 100
    min_lr: float = 0.0

    def __post_init__(self):
        _check_count(self.t_max, "t_max")
        if not (math.isfinite(self.min_lr) and self.min_lr >= 0):
            raise ValueError(f"min_lr must be a finite number >= 0, got {self.min_lr!r}")

    def __call__(self, epoch, lr, history):
        progress = min(epoch, self.t_max) / self.t_max
        return self.min_lr + (lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class ReduceOnPlateau:
    """Multiply the rate by factor when ``monitor`` has not improved for patience epochs.

    As Keras's ReduceLROnPlateau (without cooldown): an improvement is a decrease by
    more than min_delta (an increase for monitors not ending in "loss"); after each
    reduction the count starts again; the rate never goes below min_lr.
    """

    monitor: str = "loss"
    factor: float = 0.1
    patience: int = 10
    min_delta: float = 1e-4
    min_lr: float = 0.0

    def __post_init__(self):
        _check_fraction(self.factor, "factor")
        _check_count(self.patience, "patience")

    def __call__(self, epoch, lr, history):
        best, wait = None, 0
        for value in history.get(self.monitor, [])[:epoch]:
            if best is None or improvement(self.monitor, value, best) > self.min_delta:
                best, wait = value, 0
            else:
                wait += 1
                if wait >= self.patience:
                    lr, wait = max(lr * self.factor, self.min_lr), 0
        return lr


#: Schedules by name.
SCHEDULES = {"constant": Constant, "invscaling": InverseScaling, "step": StepDecay,
             "cosine": Cosine, "plateau": ReduceOnPlateau}


def improvement(monitor, value, best):
    """How much better value is than best: monitors ending in "loss" improve downwards,
    the others (accuracy, r2) upwards.  Shared by this module and early stopping."""
    return best - value if monitor.endswith("loss") else value - best


def make_schedule(spec=None):
    """A schedule from None (constant), a name in SCHEDULES, a config dict
    (``schedule_config``), or a callable (returned as is)."""
    if spec is None:
        return Constant()
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, dict):
        config = dict(spec)
        name = config.pop("name", None)
        if name not in SCHEDULES:
            raise ValueError(f"unknown schedule {name!r}; choose from {sorted(SCHEDULES)}")
        try:
            return SCHEDULES[name](**config)
        except TypeError as error:
            raise ValueError(f"bad {name} schedule settings {config}: {error}") from None
    if callable(spec):
        return spec
    raise TypeError(f"schedule must be None, a name, a config dict or a callable, got {spec!r}")


def schedule_config(schedule):
    """{"name": ..., **fields}: a JSON-serialisable description of a schedule of this
    module, which ``make_schedule`` reads back; ValueError for any other function."""
    for name, cls in SCHEDULES.items():
        if type(schedule) is cls:
            return {"name": name, **dataclasses.asdict(schedule)}
    raise ValueError(f"cannot describe the custom schedule {schedule!r}; only those of "
                     f"fastnn.schedules ({sorted(SCHEDULES)}) can be saved")


def _check_count(value, name):
    if not (isinstance(value, int) and value >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_fraction(value, name):
    if not (isinstance(value, (int, float)) and 0 < value < 1):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
