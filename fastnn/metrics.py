"""Metrics by name, the names the front ends accept for them, and the scores of outputs.

Every front end measures a network on a data set with ``scores`` (through
``trainer.evaluate`` or the training loop): the mean loss of the head over the rows
and each metric, from the same functions.
"""

import numpy as np

from . import reference
from .network import HEADS


def accuracy(head, Y, out):
    """Fraction of rows predicted right (``reference.rows_right``: arg max for softmax,
    every output on its target's side of 0.5 otherwise).

    The value of scikit-learn's accuracy_score, without its input checks, which cost
    a good part of a small epoch: these inputs are the trainer's own.
    """
    return float(np.mean(reference.rows_right(head, Y, out)))


def r2(head, Y, out):
    """Coefficient of determination (scikit-learn's r2_score, averaged over outputs)."""
    from sklearn.metrics import r2_score

    if not np.isfinite(out).all():  # a diverging network: NaN, as scikit-learn's MLP scores it
        return float("nan")
    return r2_score(Y, out)


#: Metrics by name: f(head, Y, output) -> float.
METRICS = {"accuracy": accuracy, "r2": r2}

#: Metrics the epoch kernels keep a running sum of (``trainer.epoch_totals``): on the
#: training rows they cost no pass of their own.
RUNNING_METRICS = ("accuracy",)

#: Keras's metric names -> (fastnn's metric, the heads it makes sense for).
ALIASES = {
    "accuracy": ("accuracy", ("softmax", "sigmoid")),
    "acc": ("accuracy", ("softmax", "sigmoid")),
    "categorical_accuracy": ("accuracy", ("softmax",)),
    "binary_accuracy": ("accuracy", ("sigmoid",)),
    "r2": ("r2", tuple(HEADS)),
}


def metric_for(head):
    """The metric that scores a head: accuracy for softmax and sigmoid, r2 for identity."""
    return "r2" if head == "identity" else "accuracy"


def check_metrics(head, metrics):
    """Refuse metric names not in METRICS, and accuracy for an identity head."""
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRICS)}")
    if "accuracy" in metrics and head == "identity":
        raise ValueError("accuracy needs a softmax or sigmoid head; use r2 for regression")


def scores(head, out, Y, metrics=(), prefix="", with_loss=True):
    """{prefix + name: value}: the mean loss over the rows (with_loss) and each metric.

    out and Y are ndarrays of shape (n_samples, n_outputs): the head's output and
    the targets.
    """
    values = {}
    if with_loss:
        values[prefix + "loss"] = float(np.mean(reference.ROW_LOSSES[head](out, Y)))
    for name in metrics:
        values[prefix + name] = float(METRICS[name](head, Y, out))
    return values
