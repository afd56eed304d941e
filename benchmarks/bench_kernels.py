"""Time per call of the serial dense-layer kernels (fastnn.kernels) on chunk-sized blocks.

Shapes are "rows x fan_in x fan_out": the forward and backward passes run on chunks of
16 rows (config.CHUNK_ROWS); the W1 layers are 64->128 and 128->128, W2's first is
784->512.  param_grad computes the whole (fan_in + 1, fan_out) block over those rows
and optimizer_step (SGD and Adam) updates the same number of parameters.
"""

import numpy as np

from fastnn.kernels import dense_backward, dense_forward, optimizer_step, param_grad
from fastnn.network import ACTIVATION_CODES
from fastnn.optimizers import SGD, Adam

from .common import random_array

SIGMOID = int(ACTIVATION_CODES["sigmoid"])


class TimeDenseKernels:
    params = (["16x64x128", "16x128x128", "16x784x512"], ["float32", "float64"])
    param_names = ["shape", "dtype"]

    def setup(self, shape, dtype):
        rows, fan_in, fan_out = (int(s) for s in shape.split("x"))
        self.a_prev = random_array((rows, fan_in), dtype, 0)
        self.W = random_array((fan_in, fan_out), dtype, 1) - 0.5
        self.WT = np.ascontiguousarray(self.W.T)
        self.b = random_array((fan_out,), dtype, 2)
        self.delta = random_array((rows, fan_out), dtype, 3) - 0.5
        self.out_fwd = np.empty((rows, fan_out), dtype)
        self.out_bwd = np.empty((rows, fan_in), dtype)
        self.grad = np.empty((fan_in + 1, fan_out), dtype)
        self.flat_params = random_array(((fan_in + 1) * fan_out,), dtype, 4)
        self.flat_grads = random_array(((fan_in + 1) * fan_out,), dtype, 5)
        self.lr = np.dtype(dtype).type(1e-6)
        self.sgd, self.adam = SGD(), Adam()
        self.sgd_slots = np.zeros((0, self.flat_params.size), dtype)
        self.adam_slots = np.zeros((2, self.flat_params.size), dtype)
        self.fan_in, self.n_params = fan_in, self.flat_params.size
        # Warm the JIT with exactly the types of the timed calls.
        self.time_dense_forward(shape, dtype)
        self.time_dense_backward(shape, dtype)
        self.time_param_grad(shape, dtype)
        self.time_sgd_step(shape, dtype)
        self.time_adam_step(shape, dtype)

    def time_dense_forward(self, shape, dtype):
        dense_forward(self.a_prev, self.W, self.b, SIGMOID, self.out_fwd)

    def time_dense_backward(self, shape, dtype):
        dense_backward(self.delta, self.WT, self.a_prev, SIGMOID, self.out_bwd)

    def time_param_grad(self, shape, dtype):
        param_grad(self.a_prev, self.delta, 0, self.fan_in + 1, self.grad)

    def time_sgd_step(self, shape, dtype):
        optimizer_step(self.flat_params, self.flat_grads, self.sgd_slots, 0, self.n_params,
                       self.sgd.code, self.sgd.hyperparameters(), self.lr, 1)

    def time_adam_step(self, shape, dtype):
        optimizer_step(self.flat_params, self.flat_grads, self.adam_slots, 0, self.n_params,
                       self.adam.code, self.adam.hyperparameters(), self.lr, 1)
