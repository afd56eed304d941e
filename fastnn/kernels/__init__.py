"""Numba kernels, each a twin of the function of the same name in ``fastnn.reference``."""

from .dense import (count_right, dense_backward, dense_forward, matmul_acc, output_delta,
                    param_grad)
from .optimizers import add_l2, optimizer_step

__all__ = ["add_l2", "count_right", "dense_backward", "dense_forward", "matmul_acc",
           "optimizer_step", "output_delta", "param_grad"]
