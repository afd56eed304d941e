"""Numba kernels, each a twin of the function of the same name in ``fastnn.reference``."""

from .dense import dense_backward, dense_forward, matmul_acc, output_delta, param_grad, sgd_update

__all__ = ["dense_backward", "dense_forward", "matmul_acc", "output_delta", "param_grad", "sgd_update"]
