"""The tutorial's "hard way" network (MyNN), written from its equations.

Sivasurya S., "Neural Networks from Scratch. Easy vs hard" (2018): a 64-128-128-10
network with sigmoid hidden layers and a softmax output, trained full batch with
lr = 0.5.  Forward pass::

    z1 = x w1 + b1,   a1 = sigmoid(z1)
    z2 = a1 w2 + b2,  a2 = sigmoid(z2)
    z3 = a2 w3 + b3,  a3 = softmax(z3)

Backward pass (softmax + cross-entropy, so the output error is a3 - y; the
sigmoid derivative is written with the layer output, a (1 - a))::

    a3_delta = (a3 - y) / n
    a2_delta = (a3_delta w3^T) * a2 (1 - a2)
    a1_delta = (a2_delta w2^T) * a1 (1 - a1)
    w3 -= lr a2^T a3_delta,   b3 -= lr sum_rows(a3_delta)
    w2 -= lr a1^T a2_delta,   b2 -= lr sum_rows(a2_delta)
    w1 -= lr x^T  a1_delta,   b1 -= lr sum_rows(a1_delta)

The tutorial's second listing prints ``=`` instead of ``-=`` in five of the six
updates (a typesetting slip: with ``=`` the weights would be replaced by the step);
the algorithm it describes, and this class, subtract in all six.
"""

import numpy as np


def sigmoid(s):
    return 1 / (1 + np.exp(-s))


def sigmoid_derv(a):
    return a * (1 - a)


def softmax(s):
    exps = np.exp(s - np.max(s, axis=1, keepdims=True))
    return exps / np.sum(exps, axis=1, keepdims=True)


def cross_entropy_delta(pred, real):
    return (pred - real) / real.shape[0]


def error(pred, real):
    n_samples = real.shape[0]
    logp = -np.log(pred[np.arange(n_samples), real.argmax(axis=1)])
    return np.sum(logp) / n_samples


class MyNN:
    """The tutorial's network; the six parameters are given, not drawn, so runs can be compared.

    w1 (64, 128), b1 (1, 128), w2 (128, 128), b2 (1, 128), w3 (128, 10), b3 (1, 10).
    """

    def __init__(self, x, y, w1, b1, w2, b2, w3, b3, lr=0.5):
        self.x = x
        self.y = y
        self.lr = lr
        self.w1, self.w2, self.w3 = (np.array(w, dtype=np.float64) for w in (w1, w2, w3))
        self.b1, self.b2, self.b3 = (
            np.array(b, dtype=np.float64).reshape(1, -1) for b in (b1, b2, b3)
        )

    def feedforward(self):
        z1 = np.dot(self.x, self.w1) + self.b1
        self.a1 = sigmoid(z1)
        z2 = np.dot(self.a1, self.w2) + self.b2
        self.a2 = sigmoid(z2)
        z3 = np.dot(self.a2, self.w3) + self.b3
        self.a3 = softmax(z3)

    def backprop(self):
        self.loss = error(self.a3, self.y)
        a3_delta = cross_entropy_delta(self.a3, self.y)  # w3
        z2_delta = np.dot(a3_delta, self.w3.T)
        a2_delta = z2_delta * sigmoid_derv(self.a2)  # w2
        z1_delta = np.dot(a2_delta, self.w2.T)
        a1_delta = z1_delta * sigmoid_derv(self.a1)  # w1

        self.w3 -= self.lr * np.dot(self.a2.T, a3_delta)
        self.b3 -= self.lr * np.sum(a3_delta, axis=0, keepdims=True)
        self.w2 -= self.lr * np.dot(self.a1.T, a2_delta)
        self.b2 -= self.lr * np.sum(a2_delta, axis=0)
        self.w1 -= self.lr * np.dot(self.x.T, a1_delta)
        self.b1 -= self.lr * np.sum(a1_delta, axis=0)

    def fit(self, epochs):
        for _ in range(epochs):
            self.feedforward()
            self.backprop()
        return self

    def predict(self, data):
        self.x = data
        self.feedforward()
        return self.a3.argmax(axis=1)

    def layers(self):
        """[(w1, b1), (w2, b2), (w3, b3)] with 1-D biases, for comparison with layer_views."""
        return [(self.w1, self.b1[0]), (self.w2, self.b2[0]), (self.w3, self.b3[0])]
