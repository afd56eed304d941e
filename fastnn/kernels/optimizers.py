"""Compiled update rules on a range of the flat parameter buffer; twins in ``fastnn.reference``.

The epoch driver calls these once per update task, on the task's own range
[start, stop) of the buffer, so each parameter and its state are touched by one
thread only.  The formulas are in ``fastnn.optimizers``.
"""

import math

from numba import njit, types
from numba.extending import overload

from .. import config
from ..optimizers import OPTIMIZER_CODES

SGD, RMSPROP, ADAM, ADADELTA = (OPTIMIZER_CODES[name] for name in ("sgd", "rmsprop", "adam",
                                                                   "adadelta"))


@njit(**config.UPDATE_JIT_OPTIONS)
def add_l2(grads, params, start, stop, l2):
    """grads[start:stop] += l2 * params[start:stop] (the L2 penalty's gradient), in place.

    Returns sum(params[start:stop] ** 2), accumulated in float64 (the penalty's value).
    """
    # Loops run over views from index 0: from a variable start, Numba's check for
    # negative indices stays in the loop and LLVM leaves it scalar (measured: sgd on
    # 8320 float32 parameters 4.5 us per call, vectorised 1.1 us).
    g, p = grads[start:stop], params[start:stop]
    squares = 0.0
    for q in range(g.shape[0]):
        g[q] += l2 * p[q]
        squares += float(p[q]) * float(p[q])
    return squares


@njit(**config.UPDATE_JIT_OPTIONS)
def sgd_step(params, grads, slots, start, stop, code, hyper, lr, step):
    """SGD on params[start:stop] from grads[start:stop]: plain, momentum or Nesterov.

    The arguments are ``optimizer_step``'s (code is not read).
    """
    p, g = params[start:stop], grads[start:stop]
    dtype = p.dtype.type
    momentum, nesterov = dtype(hyper[0]), hyper[1] != 0.0
    if slots.shape[0] == 0:
        for q in range(p.shape[0]):
            p[q] -= lr * g[q]
    elif nesterov:
        v = slots[0, start:stop]
        for q in range(p.shape[0]):
            v[q] = momentum * v[q] - lr * g[q]
            p[q] += momentum * v[q] - lr * g[q]
    else:
        v = slots[0, start:stop]
        for q in range(p.shape[0]):
            v[q] = momentum * v[q] - lr * g[q]
            p[q] += v[q]


@njit(**config.UPDATE_JIT_OPTIONS)
def rmsprop_step(params, grads, slots, start, stop, code, hyper, lr, step):
    """RMSprop on params[start:stop] (see ``sgd_step``)."""
    p, g = params[start:stop], grads[start:stop]
    dtype = p.dtype.type
    one = dtype(1.0)
    rho, eps = dtype(hyper[0]), dtype(hyper[1])
    s = slots[0, start:stop]
    for q in range(p.shape[0]):
        s[q] = rho * s[q] + (one - rho) * g[q] * g[q]
        p[q] -= lr * g[q] / (math.sqrt(s[q]) + eps)


@njit(**config.UPDATE_JIT_OPTIONS)
def adam_step(params, grads, slots, start, stop, code, hyper, lr, step):
    """Adam on params[start:stop] (see ``sgd_step``)."""
    p, g = params[start:stop], grads[start:stop]
    dtype = p.dtype.type
    one = dtype(1.0)
    beta1, beta2, eps = dtype(hyper[0]), dtype(hyper[1]), dtype(hyper[2])
    lr_t = dtype(lr * math.sqrt(1.0 - hyper[1] ** step) / (1.0 - hyper[0] ** step))
    m, v = slots[0, start:stop], slots[1, start:stop]
    for q in range(p.shape[0]):
        m[q] = beta1 * m[q] + (one - beta1) * g[q]
        v[q] = beta2 * v[q] + (one - beta2) * g[q] * g[q]
        p[q] -= lr_t * m[q] / (math.sqrt(v[q]) + eps)


@njit(**config.UPDATE_JIT_OPTIONS)
def adadelta_step(params, grads, slots, start, stop, code, hyper, lr, step):
    """Adadelta on params[start:stop] (see ``sgd_step``)."""
    p, g = params[start:stop], grads[start:stop]
    dtype = p.dtype.type
    one = dtype(1.0)
    rho, eps = dtype(hyper[0]), dtype(hyper[1])
    s, u = slots[0, start:stop], slots[1, start:stop]
    for q in range(p.shape[0]):
        s[q] = rho * s[q] + (one - rho) * g[q] * g[q]
        d = math.sqrt(u[q] + eps) / math.sqrt(s[q] + eps) * g[q]
        u[q] = rho * u[q] + (one - rho) * d * d
        p[q] -= lr * d


#: The update rule of each optimizer code.
RULES = {SGD: sgd_step, RMSPROP: rmsprop_step, ADAM: adam_step, ADADELTA: adadelta_step}


@njit(**config.UPDATE_JIT_OPTIONS)
def optimizer_step(params, grads, slots, start, stop, code, hyper, lr, step):
    """One update of params[start:stop] from grads[start:stop], in place.

    slots (n_slots, n_params) is the optimizer's state, updated in place on the
    same range; code is from ``optimizers.OPTIMIZER_CODES``; hyper (3,) float64 holds
    the rule's constants (``Optimizer.hyperparameters``); lr is a scalar of the
    parameters' dtype; step counts mini-batches from 1 (Adam's bias correction).
    Compiled code whose code is a literal calls ``rule_step`` instead, which
    compiles that rule only.
    """
    if code == SGD:
        sgd_step(params, grads, slots, start, stop, code, hyper, lr, step)
    elif code == RMSPROP:
        rmsprop_step(params, grads, slots, start, stop, code, hyper, lr, step)
    elif code == ADAM:
        adam_step(params, grads, slots, start, stop, code, hyper, lr, step)
    elif code == ADADELTA:
        adadelta_step(params, grads, slots, start, stop, code, hyper, lr, step)


def rule_step(params, grads, slots, start, stop, code, hyper, lr, step):
    """``optimizer_step``; in compiled code with code a literal, that rule alone (RULES).

    The epoch's task worker gets the optimizer code as a literal type
    (``epoch.task_worker``), so it compiles one update rule, not four.
    """
    optimizer_step(params, grads, slots, start, stop, code, hyper, lr, step)


@overload(rule_step, jit_options=config.UPDATE_JIT_OPTIONS, prefer_literal=True)
def _rule_step_typed(params, grads, slots, start, stop, code, hyper, lr, step):
    if not isinstance(code, types.IntegerLiteral):
        return rule_step
    return RULES[code.literal_value].py_func  # the rule itself: no wrapper to compile
