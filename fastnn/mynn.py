"""A drop-in replacement for the tutorial's ``MyNN``, trained by fastnn's compiled loop.

Sivasurya S., "Neural Networks from Scratch. Easy vs hard" (2018), builds a
64-128-128-10 network with sigmoid hidden layers and a softmax output, and trains
it full batch with lr = 0.5::

    model = MyNN(x_train / 16.0, np.array(y_train))
    for x in range(1500):
        model.feedforward()
        model.backprop()

This class keeps that interface and its maths, so the script runs unchanged but
for its import (``from fastnn.mynn import MyNN``).  The six weights and biases are
views into one flat float64 buffer laid out as ``fastnn.network`` describes, so the
new ``fit(epochs)`` can hand the whole run to ``fastnn.trainer.fit``: every epoch
is one compiled call instead of a dozen NumPy ones.
"""

import numpy as np
from sklearn.utils import check_array, check_consistent_length

from . import model_io, reference, trainer
from .checks import holds_text
from .network import Architecture, init_params, layer_views

#: Width of both hidden layers and the learning rate, as in the tutorial.
NEURONS = 128
LEARNING_RATE = 0.5


def _parameter(name, layer, part):
    """A property for the weights (part 0) or bias (part 1) of ``layer``, 0-based.

    Reading it gives a view into the flat buffer, made on each access (so copies and
    pickles of the model stay consistent); assigning to it copies the new values into
    the buffer, so the buffer that ``fit`` trains stays the one the attribute shows.
    """

    def get(self):
        W, b = layer_views(self._arch, self._params)[layer]
        return W if part == 0 else b[np.newaxis]

    def set(self, value):
        view = get(self)
        value = np.asarray(value, dtype=np.float64)
        if value.shape != view.shape:
            raise ValueError(f"{name} must have shape {view.shape}, got {value.shape}")
        view[...] = value

    return property(get, set, doc=f"{name}: a view into ``params``; assignment copies into it.")


class MyNN:
    """The tutorial's network: x -> sigmoid -> sigmoid -> softmax, trained full batch.

    Weights are drawn with ``np.random.randn`` in the tutorial's order (w1, w2, w3)
    from NumPy's global generator, so ``np.random.seed(s)`` before construction gives
    the tutorial's starting point; biases start at zero.

    Parameters
    ----------
    x : array-like of shape (n_samples, n_features)
        Training inputs (the tutorial's ``x_train / 16.0``); finite numbers.
    y : array-like of shape (n_samples, n_classes)
        One-hot targets (0/1, or booleans, one 1 per row).

    Attributes
    ----------
    x : ndarray of shape (n_samples, n_features)
        Input of the next ``feedforward``; ``predict`` replaces it, as in the tutorial.
    y : ndarray of shape (n_samples, n_classes)
        One-hot targets, float64.
    lr : float
        Learning rate (0.5); may be changed between calls.
    w1, w2, w3 : ndarray of shape (n_features, 128), (128, 128), (128, n_classes)
    b1, b2, b3 : ndarray of shape (1, 128), (1, 128), (1, n_classes)
        Views into ``params``; assigning an array of the same shape copies it in.
    a1, a2, a3 : ndarray of shape (n_rows, 128), (n_rows, 128), (n_rows, n_classes)
        Layer outputs of the last ``feedforward`` (a3: class probabilities).
    """

    w1 = _parameter("w1", 0, 0)
    b1 = _parameter("b1", 0, 1)
    w2 = _parameter("w2", 1, 0)
    b2 = _parameter("b2", 1, 1)
    w3 = _parameter("w3", 2, 0)
    b3 = _parameter("b3", 2, 1)

    def __init__(self, x, y):
        self.x, self.y = _check_data(x, y)
        self.lr = LEARNING_RATE
        self._arch = Architecture((self.x.shape[1], NEURONS, NEURONS, self.y.shape[1]),
                                  "sigmoid", "softmax", "float64")
        # N(0, 1) from the global generator, layer by layer: np.random.randn's stream.
        self._params = init_params(self._arch, "normal", random_state=None)

    @property
    def arch(self):
        """network.Architecture: (n_features, 128, 128, n_classes), sigmoid, softmax, float64."""
        return self._arch

    @property
    def params(self):
        """ndarray of shape (arch.n_params,): the flat buffer holding w1, b1, w2, b2, w3, b3."""
        return self._params

    def feedforward(self):
        """Compute a1, a2 and a3 for ``self.x`` with the current weights."""
        # A single row of shape (n_features,) gives outputs of shape (1, width), as in
        # the tutorial, where it broadcasts against the (1, width) biases.
        x = np.atleast_2d(self.x)
        _, self.a1, self.a2, self.a3 = reference.forward(self._arch, self._params, x)

    def backprop(self):
        """Print ``Error : <loss>`` and take one full-batch gradient step.

        The loss is the tutorial's, the mean over rows of -log a3[true class], and the
        gradient is computed from the a1, a2, a3 of the preceding ``feedforward``, so
        both describe the weights before this step.
        """
        activations = [self.x, self.a1, self.a2, self.a3]
        grads, loss = reference.backward(self._arch, self._params, activations, self.y)
        print("Error :", loss)
        self._params -= self.lr * grads

    def fit(self, epochs, verbose=False):
        """Train ``epochs`` full-batch epochs in compiled code (the fast training loop).

        Same steps as ``epochs`` rounds of ``feedforward(); backprop()`` (equal up to
        rounding): on ``self.x`` and ``self.y`` with ``self.lr``.  (``predict`` replaces
        ``self.x``, as in the tutorial; set it back before training again.)  Afterwards
        a1, a2, a3 are those of the final weights.

        Parameters
        ----------
        epochs : int
        verbose : bool
            Print one ``Error : <loss>`` line per epoch, as ``backprop`` prints them:
            the loss before that epoch's update.

        Returns
        -------
        trainer.History
            ``loss``: the loss before each epoch's update, one per epoch.
        """
        callbacks = [lambda epoch, logs: print("Error :", logs["loss"])] if verbose else []
        history = trainer.fit(self._arch, self._params, self.x, self.y, epochs=epochs,
                              batch_size=0, lr=self.lr, shuffle=False, callbacks=callbacks)
        self.feedforward()
        return history

    def save(self, path):
        """Write the model (weights, lr, and the training data x, y it is bound to) to path.

        ``fastnn.load(path)`` returns a MyNN; no pickle is involved (``fastnn.model_io``).
        """
        return model_io.save_model(path, self)

    def _saved_state(self):
        return model_io.SavedModel("MyNN", self._arch, self._params, {"lr": self.lr},
                                   arrays={"x": np.atleast_2d(self.x), "y": self.y})

    @classmethod
    def _from_saved(cls, saved):
        model = cls.__new__(cls)  # not __init__: it would draw from the global generator
        model.x, model.y = _check_data(saved.arrays["x"], saved.arrays["y"])
        model.lr, model._arch, model._params = saved.config["lr"], saved.arch, saved.params
        return model

    def predict(self, data):
        """The tutorial's prediction: ``self.x = data``, feedforward, then ``a3.argmax()``.

        Parameters
        ----------
        data : array-like of shape (n_features,) or (n_rows, n_features)
            Finite numbers (checked: a wrong width or NaN raises ValueError).

        Returns
        -------
        numpy integer
            For one row, its class.  As in the tutorial the argmax is taken over the
            flattened a3, so for n_rows > 1 it is a flat index (row * n_classes + class);
            use ``predict_classes`` for the class of every row.
        """
        self.x = _check_rows(data, self._arch.sizes[0])
        self.feedforward()
        return self.a3.argmax()

    def predict_classes(self, data):
        """Class of every row, by fastnn's compiled prediction (the fast batch path).

        Parameters
        ----------
        data : array-like of shape (n_rows, n_features)

        Returns
        -------
        ndarray of shape (n_rows,)
            The argmax of each row's softmax output.  ``self.x`` and a1..a3 are unchanged.
        """
        return trainer.predict_output(self._arch, self._params, data).argmax(axis=1)


def _check_data(x, y):
    """x and y as float64 arrays, after checking that they are a finite one-hot data set."""
    x = check_array(x, dtype=np.float64, input_name="x")
    try:
        y = check_array(y, dtype=np.float64, ensure_2d=False, input_name="y")
    except ValueError as exc:
        if holds_text(y):
            raise ValueError(f"y must be one-hot numbers, of shape (n_samples, n_classes); it "
                             f"holds strings ({exc}): for class labels use "
                             f"sklearn.preprocessing.LabelBinarizer().fit_transform(labels)") from None
        raise
    if y.ndim != 2:
        raise ValueError(f"y must be one-hot, of shape (n_samples, n_classes), got shape "
                         f"{y.shape}; for class labels use np.eye(n_classes)[labels]")
    if y.shape[1] < 2:
        raise ValueError("y has one column (one class): a softmax over one class is always 1, "
                         "so there is nothing to learn; MyNN needs two classes or more")
    if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
        raise ValueError("y must be one-hot: 0s and 1s with exactly one 1 per row")
    check_consistent_length(x, y)
    return x, y


def _check_rows(data, n_features):
    """data as a finite float64 row (n_features,) or rows (n_rows, n_features), for predict."""
    if data is None or np.ndim(data) == 0:
        raise ValueError(f"data must be a row of {n_features} numbers or a 2-D array of rows, "
                         f"got {data!r}")
    data = check_array(data, dtype=np.float64, ensure_2d=False, input_name="data")
    if data.shape[-1] != n_features:
        raise ValueError(f"data must have shape ({n_features},) or (n_rows, {n_features}), the "
                         f"network's {n_features} input features; got shape {data.shape}")
    return data
