"""A per-sample, loop-based reference network, written independently of ``fastnn.reference``.

Nielsen style: every sample goes through the network on its own as a 1-D vector,
backpropagation runs per sample and accumulates the gradients, and the sums are
divided by n at the end.  Nothing here shares code with the package, and the
formulas are deliberately written in another form so that a bug common to the
package's two implementations (NumPy reference and Numba kernels) cannot hide:

* element-wise functions use the ``math`` module on Python floats;
* activation derivatives are taken from the pre-activation ``z`` (the package
  uses the layer output ``a``);
* the output error is ``p - y`` per sample, divided by n after the sum over
  samples (the package scales the delta by ``1 / n`` before the products);
* the bias gradient is accumulated like a weight whose input is always 1.

Layers are given as a list ``[(W_0, b_0), ...]`` with ``W_l`` of shape
(fan_in, fan_out) and ``b_l`` of shape (fan_out,), as ``fastnn.layer_views``
returns them.  Everything is computed in float64.
"""

import math

import numpy as np


def _sigmoid(z):
    # Two branches so that exp never overflows.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _hidden(name, z):
    """Activation of a hidden layer and its derivative, both as functions of z (a vector)."""
    if name == "identity":
        return list(z), [1.0] * len(z)
    if name == "sigmoid":
        s = [_sigmoid(v) for v in z]
        return s, [v * (1.0 - v) for v in s]
    if name == "tanh":
        return [math.tanh(v) for v in z], [1.0 / math.cosh(v) ** 2 for v in z]
    if name == "relu":
        return [v if v > 0 else 0.0 for v in z], [1.0 if v > 0 else 0.0 for v in z]
    raise ValueError(name)


def _head(name, z):
    """Output of the head for one sample's pre-activation z (a list of floats)."""
    if name == "softmax":
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = math.fsum(e)
        return [v / total for v in e]
    if name == "sigmoid":
        return [_sigmoid(v) for v in z]
    if name == "identity":
        return list(z)
    raise ValueError(name)


def _sample_loss(name, p, y):
    """Loss of one sample: categorical CE, binary CE, or half the squared error."""
    if name == "softmax":
        return -math.fsum(yj * math.log(pj) for pj, yj in zip(p, y) if yj != 0)
    if name == "sigmoid":
        return -math.fsum(
            (yj * math.log(pj) if yj != 0 else 0.0)
            + ((1.0 - yj) * math.log(1.0 - pj) if yj != 1 else 0.0)
            for pj, yj in zip(p, y)
        )
    if name == "identity":
        return 0.5 * math.fsum((pj - yj) ** 2 for pj, yj in zip(p, y))
    raise ValueError(name)


def _affine(a, W, b):
    """z_j = sum_k a_k W[k, j] + b_j for one sample, as explicit loops."""
    fan_in, fan_out = W.shape
    return [math.fsum([b[j]] + [a[k] * W[k, j] for k in range(fan_in)]) for j in range(fan_out)]


def _layers64(layers):
    return [(np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)) for W, b in layers]


def forward_sample(layers, activations, head, x):
    """Pre-activations and outputs of every layer for one sample x (1-D).

    Returns (zs, outs, slopes): zs[l] and outs[l] are lists for layer l (outs[-1] is
    the head's output), slopes[l] the derivative of hidden layer l at zs[l].
    """
    a = [float(v) for v in x]
    zs, outs, slopes = [], [], []
    for l, (W, b) in enumerate(layers):
        z = _affine(a, W, b)
        if l < len(layers) - 1:
            a, slope = _hidden(activations[l], z)
            slopes.append(slope)
        else:
            a = _head(head, z)
        zs.append(z)
        outs.append(a)
    return zs, outs, slopes


def predict(layers, activations, head, X):
    """Head output for every row of X, ndarray of shape (n_samples, n_outputs)."""
    layers = _layers64(layers)
    return np.array([forward_sample(layers, activations, head, x)[1][-1] for x in X])


def gradients(layers, activations, head, X, Y):
    """Gradient of the mean loss over the rows of (X, Y), and the mean loss.

    Returns (grads, loss): grads is a list ``[(gW_0, gb_0), ...]`` shaped like layers.
    """
    layers = _layers64(layers)
    n = len(X)
    gW = [np.zeros_like(W) for W, _ in layers]
    gb = [np.zeros_like(b) for _, b in layers]
    total = 0.0
    for x, y in zip(X, Y):
        y = [float(v) for v in y]
        zs, outs, slopes = forward_sample(layers, activations, head, x)
        total += _sample_loss(head, outs[-1], y)
        # Canonical link: d(loss)/dz of the last layer is p - y for all three heads.
        err = [pj - yj for pj, yj in zip(outs[-1], y)]
        for l in range(len(layers) - 1, -1, -1):
            a_in = [float(v) for v in x] if l == 0 else outs[l - 1]
            for k in range(len(a_in)):
                for j in range(len(err)):
                    gW[l][k, j] += a_in[k] * err[j]
            for j in range(len(err)):
                gb[l][j] += err[j]  # the bias is a weight on a constant input of 1
            if l > 0:
                W = layers[l][0]
                err = [
                    math.fsum(W[k, j] * err[j] for j in range(len(err))) * slopes[l - 1][k]
                    for k in range(W.shape[0])
                ]
    return [(g / n, h / n) for g, h in zip(gW, gb)], total / n


# ---------------------------------------------------------------------------
# Update rules, one scalar at a time, in their textbook forms
# ---------------------------------------------------------------------------
#
# Each rule takes the parameters and their gradient as lists of Python floats, the
# state as a dict of lists (created on the first call), the step count t (1 for the
# first update) and the learning rate, and returns the new parameters.  The forms
# are the papers', not fastnn's rearrangements, so that a formula changed in both
# of the package's implementations still disagrees with these.


def sgd(p, g, state, t, lr, momentum=0.0, nesterov=False):
    """Momentum as Sutskever et al. (2013); Nesterov in Bengio et al.'s (2013) form
    p += (1 + mu) v_new - mu v_old, which needs no gradient at a look-ahead point."""
    if momentum == 0.0:
        return [pi - lr * gi for pi, gi in zip(p, g)]
    old = state.setdefault("velocity", [0.0] * len(p))
    new = [momentum * vi - lr * gi for vi, gi in zip(old, g)]
    state["velocity"] = new
    if nesterov:
        return [pi + (1.0 + momentum) * vn - momentum * vo for pi, vn, vo in zip(p, new, old)]
    return [pi + vn for pi, vn in zip(p, new)]


def rmsprop(p, g, state, t, lr, rho, eps):
    """Hinton's lecture 6e: divide the gradient by a running root mean square of it."""
    mean_square = state.setdefault("mean_square", [0.0] * len(p))
    out = []
    for i, (pi, gi) in enumerate(zip(p, g)):
        mean_square[i] = rho * mean_square[i] + (1.0 - rho) * gi**2
        out.append(pi - lr * gi / (math.sqrt(mean_square[i]) + eps))
    return out


def adam(p, g, state, t, lr, beta1, beta2, eps):
    """Kingma and Ba, Algorithm 1, with bias-corrected moments m_hat and v_hat; eps is
    the "eps hat" of their section 2 (eps / sqrt(1 - beta2^t) in Algorithm 1's terms)."""
    m = state.setdefault("m", [0.0] * len(p))
    v = state.setdefault("v", [0.0] * len(p))
    eps_hat = eps / math.sqrt(1.0 - beta2**t)
    out = []
    for i, (pi, gi) in enumerate(zip(p, g)):
        m[i] = beta1 * m[i] + (1.0 - beta1) * gi
        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi
        m_hat, v_hat = m[i] / (1.0 - beta1**t), v[i] / (1.0 - beta2**t)
        out.append(pi - lr * m_hat / (math.sqrt(v_hat) + eps_hat))
    return out


def adadelta(p, g, state, t, lr, rho, eps):
    """Zeiler (2012), Algorithm 1, with RMS[y] = sqrt(E[y^2] + eps); the step is scaled
    by lr as in Keras (lr = 1 is the paper's)."""
    eg2 = state.setdefault("E[g^2]", [0.0] * len(p))
    edx2 = state.setdefault("E[dx^2]", [0.0] * len(p))
    out = []
    for i, (pi, gi) in enumerate(zip(p, g)):
        eg2[i] = rho * eg2[i] + (1.0 - rho) * gi * gi
        dx = -math.sqrt(edx2[i] + eps) / math.sqrt(eg2[i] + eps) * gi
        edx2[i] = rho * edx2[i] + (1.0 - rho) * dx * dx
        out.append(pi + lr * dx)
    return out


#: The rules above by fastnn's optimizer names.
UPDATE_RULES = {"sgd": sgd, "rmsprop": rmsprop, "adam": adam, "adadelta": adadelta}
