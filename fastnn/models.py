"""A Keras-like ``Sequential`` model of ``Dense`` layers, trained by ``fastnn.trainer.fit``.

The tutorial's Keras script runs with its imports changed::

    from fastnn.models import Adadelta, Dense, Sequential

    model = Sequential()
    model.add(Dense(128, input_dim=x_train.shape[1], activation="sigmoid"))
    model.add(Dense(128, activation="sigmoid"))
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer=Adadelta(), loss="categorical_crossentropy",
                  metrics=["categorical_accuracy"])
    model.fit(x_train, y_train, epochs=50, batch_size=64)
    scores = model.evaluate(x_test, y_test)
    model.summary()

This module only translates: a stack of ``Dense`` specs becomes a
``network.Architecture`` and one flat parameter buffer, ``fit`` is one call of
``trainer.fit`` (the loop every front end shares), ``predict`` one call of
``trainer.predict_output``.  Where fastnn and Keras differ:

* **One head, one loss.**  The last layer's activation picks the output head and
  the loss is the head's: softmax with ``categorical_crossentropy``, sigmoid with
  ``binary_crossentropy``, linear with ``mse``.  Other pairs are refused at
  ``compile``.  fastnn's losses sum over the outputs of a row and average over rows
  (Keras averages over outputs too), and its squared error carries a factor 1/2:
  ``mse`` here is ``mean over rows of 0.5 * sum((p - y)**2)``.  The three are the
  same as Keras's for a single output but for that 1/2.
* **One initialiser for the whole model** (``Sequential(init=...)``, default
  ``"glorot_uniform"`` as Keras): ``network.init_params`` draws every layer with one
  scheme.  ``Dense(kernel_initializer=...)`` is accepted only when it names the
  model's scheme; biases start at zero.
* **The history goes on.**  ``model.history`` is one ``trainer.History`` for the
  model's whole life; each ``fit`` continues it (epochs, schedule, optimizer state
  and shuffling stream), and returns it.  Keras's ``fit(initial_epoch=k)`` resume
  idiom is accepted when k is the number of epochs already trained.
* **L-BFGS** as an optimizer (``compile(optimizer="lbfgs")`` or ``LBFGS(tol=...)``):
  scikit-learn's ``solver="lbfgs"``, which Keras does not have.  ``fit(epochs=N)``
  runs at most N L-BFGS-B iterations on all training rows (batch_size does not
  apply), one history entry each, and may stop earlier once converged.
* **Metric names** are fastnn's: ``"categorical_accuracy"``, ``"binary_accuracy"``
  and ``"acc"`` are ``"accuracy"`` in the history (``evaluate`` and
  ``metrics_names`` keep the names given to ``compile``).
* ``evaluate``'s loss is the data loss alone (the trainer's ``val_loss``), without
  the L2 penalty that Keras adds from its regularisers.

Seeding.  ``random_state`` makes one generator, ``model.rng`` (a RandomState),
when the model is built; it draws the initial weights and then, epoch after epoch,
the row orders.  So, for an int seed, ::

    model = Sequential(layers, random_state=seed).compile(...); model.fit(x, y, ...)

trains the same weights, bitwise, as ::

    rng = np.random.RandomState(seed)
    params = init_params(model.arch, init, random_state=rng)
    trainer.fit(model.arch, params, x, y, ..., optimizer=..., random_state=rng)

A RandomState or Generator is used as it is; None seeds a new RandomState from
NumPy's global generator (so ``np.random.seed`` makes a run repeatable).
"""

import dataclasses
import sys
import warnings

import numpy as np
from sklearn.utils import check_array, check_consistent_length

from . import model_io, trainer
from .checks import check_dropout_rate, check_l2, class_sample_weight, holds_text
from .metrics import ALIASES as METRIC_ALIASES
from .names import ACTIVATIONS, HEAD_LOSSES, KERAS_ACTIVATIONS, LOSSES
from .network import (DTYPES, HEADS, HIDDEN_ACTIVATIONS, INITIALIZERS, NEGATIVE_SLOPE,
                      Architecture, as_random_state, init_params, layer_views)
from .optimizers import SGD, Adadelta, Adam, RMSprop, make_optimizer  # noqa: F401 (re-exported)
from .schedules import ReduceOnPlateau, make_schedule, schedule_config
from .trainer import Callback, EarlyStopping, History

__all__ = ["Adadelta", "Adam", "Callback", "Dense", "Dropout", "EarlyStopping", "LBFGS",
           "ModelCheckpoint", "RMSprop", "SGD", "Sequential"]

#: Keras's name of each head, for messages.
_HEAD_NAMES = {"softmax": "softmax", "sigmoid": "sigmoid", "identity": "linear"}


@dataclasses.dataclass(frozen=True)
class Dense:
    """A fully connected layer: ``activation(x @ W + b)`` with ``units`` outputs.

    Parameters
    ----------
    units : int
        Width of the layer's output, >= 1.
    activation : str or None
        ``"linear"`` (or ``"identity"``, or None), ``"sigmoid"``, ``"tanh"``, ``"relu"``,
        or ``"softmax"`` (last layer only).  The last layer's activation is the
        model's output head: softmax, sigmoid or linear.
    input_dim : int or None
        Number of input features; only on the first layer, and optional there (the
        model then takes it from the data of the first ``fit`` or from ``build``).
    input_shape : tuple of one int, or None
        Keras's other spelling of input_dim: ``input_shape=(64,)`` (stored as input_dim).
    kernel_initializer : str or None
        None (the model's ``init``) or the name of the model's ``init``; fastnn draws
        all layers with one scheme, so a different name is refused when the layer is
        added to a model.
    name : str or None
        Shown by ``summary``; None gives Keras's ``dense``, ``dense_1``, ... (counted
        per model).
    """

    units: int
    activation: str = "linear"
    input_dim: int = None
    input_shape: tuple = None
    kernel_initializer: str = None
    name: str = None

    def __post_init__(self):
        if not (isinstance(self.units, (int, np.integer)) and not isinstance(self.units, bool)
                and self.units >= 1):
            raise ValueError(f"Dense units must be an integer >= 1, got {self.units!r}")
        object.__setattr__(self, "units", int(self.units))
        if not (self.activation is None or isinstance(self.activation, str)) \
                or self.activation not in KERAS_ACTIVATIONS:
            names = sorted(name for name in KERAS_ACTIVATIONS if name is not None)
            raise ValueError(f"unknown activation {self.activation!r}; choose from {names}")
        if self.activation is None:
            object.__setattr__(self, "activation", "linear")
        if self.input_shape is not None:
            shape = tuple(self.input_shape) if isinstance(self.input_shape, (tuple, list)) else ()
            if len(shape) != 1:
                raise ValueError(f"input_shape must be a tuple of one int, (n_features,), got "
                                 f"{self.input_shape!r}: fastnn's layers take flat rows")
            if self.input_dim is not None and self.input_dim != shape[0]:
                raise ValueError(f"input_dim={self.input_dim!r} and input_shape={shape!r} "
                                 f"disagree")
            object.__setattr__(self, "input_dim", shape[0])
            object.__setattr__(self, "input_shape", None)
        if self.input_dim is not None:
            if not (isinstance(self.input_dim, (int, np.integer))
                    and not isinstance(self.input_dim, bool) and self.input_dim >= 1):
                raise ValueError(f"input_dim must be an integer >= 1, got {self.input_dim!r}")
            object.__setattr__(self, "input_dim", int(self.input_dim))
        if self.kernel_initializer is not None and self.kernel_initializer not in INITIALIZERS:
            raise ValueError(f"unknown kernel_initializer {self.kernel_initializer!r}; choose "
                             f"from {list(INITIALIZERS)} (one for the whole model: prefer "
                             f"Sequential(init=...))")

    @property
    def fastnn_activation(self):
        """fastnn's name of the activation (``"identity"`` for linear)."""
        return ACTIVATIONS[self.activation]

    def get_config(self):
        """The constructor's arguments, JSON-serialisable."""
        return {"units": self.units, "activation": self.activation, "input_dim": self.input_dim,
                "kernel_initializer": self.kernel_initializer, "name": self.name}



@dataclasses.dataclass(frozen=True)
class Dropout:
    """Keras's Dropout layer: in training, each unit of its input is set to 0 with
    probability rate and the others are multiplied by 1 / (1 - rate); prediction
    passes the input unchanged.

    It applies to the input of the Dense layer that follows it (the features, when
    it comes first; Dropout layers in a row combine, keeping a unit with the product
    of their keep probabilities).  The masks are drawn by ``fastnn.kernels.dropout``
    from (seed, mini-batch, row, unit): bitwise the same with any thread count, and
    continued exactly by a resumed run.

    Parameters
    ----------
    rate : float in [0, 1)
    seed : int or None
        The model's dropout seed (the first Dropout that gives one sets it); None
        draws it from the model's generator when the model is built.
    name : str or None
    """

    rate: float
    seed: int = None
    name: str = None

    def __post_init__(self):
        object.__setattr__(self, "rate", check_dropout_rate(self.rate, "Dropout rate"))
        if self.seed is not None and not (isinstance(self.seed, (int, np.integer))
                                          and not isinstance(self.seed, bool)
                                          and 0 <= self.seed < 2**63):
            raise ValueError(f"Dropout seed must be None or an integer in [0, 2**63), got "
                             f"{self.seed!r}")

    def get_config(self):
        return {"rate": self.rate, "seed": None if self.seed is None else int(self.seed),
                "name": self.name}


@dataclasses.dataclass
class LBFGS:
    """L-BFGS as a ``compile`` optimizer: scipy's L-BFGS-B on the full-batch loss.

    scikit-learn's ``solver="lbfgs"`` (``trainer.fit_lbfgs``, which the estimators run
    too).  It is no ``optimizers.Optimizer``: it has no learning rate, no schedule and
    no state kept between fits.  ``fit(epochs=N)`` runs at most N iterations, each on
    all training rows, and records one history entry per iteration.

    Parameters
    ----------
    tol : float >= 0
        Converged (and stopped) when the largest entry of the gradient is <= tol
        (L-BFGS-B's gtol; scikit-learn's tol and default), or when the loss
        decreases by less than scipy's relative ftol.
    max_fun : int >= 1
        The most loss evaluations per fit (scikit-learn's max_fun and default).
    """

    tol: float = 1e-4
    max_fun: int = 15000

    name = "lbfgs"

    def __post_init__(self):
        if not (isinstance(self.tol, (int, float, np.number)) and not isinstance(self.tol, bool)
                and np.isfinite(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be a finite number >= 0, got {self.tol!r}")
        if not (isinstance(self.max_fun, (int, np.integer)) and not isinstance(self.max_fun, bool)
                and self.max_fun >= 1):
            raise ValueError(f"max_fun must be an integer >= 1, got {self.max_fun!r}")
        self.tol, self.max_fun = float(self.tol), int(self.max_fun)

    def get_config(self):
        """{"name": "lbfgs", "tol": ..., "max_fun": ...}, which ``compile`` also takes."""
        return {"name": self.name, "tol": self.tol, "max_fun": self.max_fun}


def _make_optimizer(spec):
    """compile's optimizer: an ``LBFGS`` for "lbfgs" (name, config dict or instance), else
    ``optimizers.make_optimizer``'s."""
    if isinstance(spec, LBFGS):
        return spec
    if spec == "lbfgs":
        return LBFGS()
    if isinstance(spec, dict) and spec.get("name") == "lbfgs":
        settings = {key: value for key, value in spec.items() if key != "name"}
        try:
            return LBFGS(**settings)
        except TypeError as error:
            raise ValueError(f"bad lbfgs settings {settings}: {error}") from None
    return make_optimizer(spec)


class ModelCheckpoint(Callback):
    """Save a model to one file every ``every`` epochs and when training ends.

    Training ending includes an interruption (Ctrl-C, SIGTERM) in the middle of an
    epoch: the file then holds the unfinished epoch, and ``fastnn.load(path).fit``
    continues it bitwise.  Each save is atomic (a temporary file renamed over the
    old one), so a crash mid-write leaves the previous checkpoint intact.
    """

    def __init__(self, model, path, every=1):
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        self.model, self.path, self.every = model, path, every

    def on_epoch_end(self, epoch, logs):
        if epoch % self.every == 0:
            self.model.save(self.path)

    def on_train_end(self, history):
        self.model.save(self.path)


class _EpochLines(trainer.EpochPrinter):
    """verbose=2: one line per epoch on stdout, as Keras prints them."""

    def on_epoch_end(self, epoch, logs):
        values = " - ".join(f"{key}: {logs[key]:.4f}" for key in self.shown(logs))
        print(f"Epoch {epoch}/{self.last_epoch} - {1e3 * logs['seconds']:.0f}ms/epoch - {values}",
              flush=True)


class Sequential:
    """A linear stack of ``Dense`` layers with Keras's ``compile`` / ``fit`` / ``evaluate``.

    Parameters
    ----------
    layers : sequence of Dense or None
        Added in order, as with ``add``.
    dtype : str
        ``"float32"`` (Keras's default) or ``"float64"``: of the weights, and of the
        inputs, which are cast to it.
    init : str
        Initialiser of every layer's weights, from ``network.INITIALIZERS``
        (``"glorot_uniform"``, as Keras; ``"he_normal"``; ``"normal"``, N(0, 1) as the
        tutorial's NumPy network).  Biases start at zero.
    random_state : int, RandomState, Generator or None
        Seeds the initial weights and then the shuffling (one generator, see the
        module's docstring).
    name : str or None
        Shown by ``summary`` (default ``"sequential"``).
    negative_slope : float in [0, 1)
        The slope for z < 0 of the model's leaky_relu layers (default 0.2, what
        ``Dense(activation="leaky_relu")`` means in Keras 3; fastnn's own parameter,
        where Keras would use a LeakyReLU layer).

    Attributes
    ----------
    layers : list of Dense
    arch : network.Architecture or None
        Set by ``build`` (or the first ``fit``).
    params : ndarray of shape (arch.n_params,) or None
        The flat parameter buffer that training updates in place.
    optimizer : optimizers.Optimizer, LBFGS or None
        Set by ``compile``; an Optimizer holds its state (slots, iterations) across fits.
    history : trainer.History
        Every epoch trained so far.
    rng : RandomState or Generator or None
        The generator of the weights and row orders, made by ``build``.
    """

    def __init__(self, layers=None, dtype="float32", init="glorot_uniform", random_state=None,
                 name=None, negative_slope=NEGATIVE_SLOPE):
        try:
            dtype_name = np.dtype(dtype).name
        except TypeError:
            dtype_name = None
        if dtype_name not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if init not in INITIALIZERS:
            raise ValueError(f"unknown init {init!r}; choose from {list(INITIALIZERS)}")
        as_random_state(random_state)  # only to check it; the generator is made by build
        Architecture((1, 1), (), "identity", negative_slope=negative_slope)  # checks the slope
        self.dtype, self.init, self.random_state = dtype_name, init, random_state
        self.negative_slope = float(negative_slope)
        self.name = "sequential" if name is None else str(name)
        self.layers = []
        self.arch = self.params = self.rng = None
        self.optimizer = self.loss = None
        self.metrics, self.l2, self.schedule = [], 0.0, None
        self.history = History()
        #: (index of the Dense layer whose input it drops, Dropout), in the order added.
        self.dropout_layers = []
        #: The seed of the dropout masks: set by build when the model has dropout.
        self.dropout_seed = None
        for layer in layers or ():
            self.add(layer)

    def __repr__(self):
        widths = "-".join(str(w) for w in self._sizes(self.input_dim))
        return f"<Sequential {self.name!r} {widths or 'empty'} {self.dtype}>"

    # ------------------------------------------------------------------
    # Structure
    # ------------------------------------------------------------------

    def add(self, layer):
        """Append a Dense or Dropout layer (before the model is built)."""
        if not isinstance(layer, (Dense, Dropout)):
            raise TypeError(f"Sequential takes Dense and Dropout layers, got {layer!r}")
        if self.arch is not None:
            raise ValueError("the model is already built; layers cannot be added any more")
        if isinstance(layer, Dropout):
            self.dropout_layers.append((len(self.layers), layer))
            return self
        if self.compiled:
            raise ValueError("the model is compiled for its current last layer; add layers "
                             "before compile")
        if self.layers and self.layers[-1].activation == "softmax":
            raise ValueError("softmax is only allowed on the last layer, and a layer is being "
                             "added after a softmax layer")
        if self.layers and layer.input_dim is not None and layer.input_dim != self.layers[-1].units:
            raise ValueError(f"input_dim={layer.input_dim} on layer {len(self.layers) + 1}, which "
                             f"follows a layer of {self.layers[-1].units} units; give input_dim "
                             f"on the first layer only")
        if layer.kernel_initializer is not None and layer.kernel_initializer != self.init:
            raise ValueError(
                f"layer {len(self.layers) + 1} asks for kernel_initializer="
                f"{layer.kernel_initializer!r}, but fastnn draws all layers with one scheme, the "
                f"model's init={self.init!r}; use Sequential(init={layer.kernel_initializer!r}) "
                f"instead of per-layer initializers")
        self.layers.append(layer)
        return self

    @property
    def input_dim(self):
        """Number of input features: the first layer's input_dim, or what build was given."""
        if self.arch is not None:
            return self.arch.sizes[0]
        return self.layers[0].input_dim if self.layers else None

    @property
    def built(self):
        return self.arch is not None

    @property
    def layer_names(self):
        """Each layer's name: its own, or Keras's dense, dense_1, ... (counted in this model)."""
        names, count = [], 0
        for layer in self.layers:
            if layer.name is not None:
                names.append(layer.name)
            else:
                names.append("dense" if count == 0 else f"dense_{count}")
                count += 1
        return names

    def _sizes(self, input_dim):
        units = [layer.units for layer in self.layers]
        return ([input_dim] if input_dim is not None else []) + units

    def _head(self):
        """fastnn's head of the last layer, after checking that it can be one."""
        if not self.layers:
            raise ValueError("the model has no layers; add Dense layers first")
        head = self.layers[-1].fastnn_activation
        if head not in HEADS:
            raise ValueError(
                f"the last layer's activation {self.layers[-1].activation!r} cannot be an output; "
                f"use softmax (with categorical_crossentropy), sigmoid (binary_crossentropy) or "
                f"linear (mse)")
        if head == "softmax" and self.layers[-1].units < 2:
            raise ValueError("a softmax over one unit always outputs 1, so there is nothing to "
                             "learn; for two classes use Dense(1, activation='sigmoid') with "
                             "binary_crossentropy, or Dense(2, activation='softmax')")
        return head

    @property
    def dropout_rates(self):
        """tuple of float: the dropout rate of each Dense layer's input (0.0: none)."""
        rates = [0.0] * len(self.layers)
        for index, layer in self.dropout_layers:
            if index < len(rates):  # Dropouts in a row keep a unit if each of them does
                rates[index] = layer.rate if rates[index] == 0 else (
                    1.0 - (1.0 - rates[index]) * (1.0 - layer.rate))
        return tuple(rates)

    def _architecture(self, input_dim):
        if self.dropout_layers and self.dropout_layers[-1][0] == len(self.layers):
            raise ValueError("a Dropout layer after the last Dense layer would drop the model's "
                             "outputs; put Dropout before a Dense layer")
        head = self._head()
        hidden = tuple(layer.fastnn_activation for layer in self.layers[:-1])
        for i, activation in enumerate(hidden, start=1):
            if activation not in HIDDEN_ACTIVATIONS:
                raise ValueError(f"layer {i} has activation {self.layers[i - 1].activation!r}, "
                                 f"which is only allowed on the last layer")
        return Architecture((input_dim, *(layer.units for layer in self.layers)), hidden, head,
                            self.dtype, self.negative_slope)

    def build(self, input_dim=None):
        """Create the architecture and draw the initial weights; return self.

        Parameters
        ----------
        input_dim : int, tuple or None
            Number of input features, or Keras's input shape ``(None, n_features)``;
            None takes the first layer's input_dim.  Building a built model again
            with the same input_dim does nothing.
        """
        if isinstance(input_dim, (tuple, list)):
            input_dim = input_dim[-1] if input_dim else None
        if input_dim is None:
            input_dim = self.input_dim
            if input_dim is None:
                raise ValueError("input_dim unknown: give input_dim to the first Dense layer or "
                                 "to build, or call fit")
        if not (isinstance(input_dim, (int, np.integer)) and not isinstance(input_dim, bool)
                and input_dim >= 1):
            raise ValueError(f"input_dim must be an integer >= 1, got {input_dim!r}")
        input_dim = int(input_dim)
        if self.input_dim is not None and input_dim != self.input_dim:
            raise ValueError(f"the model takes {self.input_dim} input features, not {input_dim}")
        if self.arch is not None:
            return self
        arch = self._architecture(input_dim)
        if self.random_state is None:
            # The model's own stream, seeded from NumPy's global one (np.random.seed applies).
            rng = np.random.RandomState(np.random.randint(0, 2**32 - 1, dtype=np.int64))
        else:
            rng = as_random_state(self.random_state)
        self.params = init_params(arch, self.init, random_state=rng)
        if any(self.dropout_rates) and self.dropout_seed is None:
            seeds = [layer.seed for _, layer in self.dropout_layers if layer.seed is not None]
            self.dropout_seed = seeds[0] if seeds else int(
                rng.randint(0, 2**63 - 1, dtype=np.int64) if hasattr(rng, "randint")
                else rng.integers(0, 2**63 - 1))
        self.arch, self.rng = arch, rng
        return self

    def _ensure_built(self):
        if self.arch is None:
            if self.input_dim is None:
                raise RuntimeError("the model is not built yet: call fit, or build(input_dim), "
                                   "or give input_dim to the first layer")
            self.build()

    def count_params(self):
        """Number of weights and biases."""
        self._ensure_built()
        return self.arch.n_params

    # ------------------------------------------------------------------
    # Weights
    # ------------------------------------------------------------------

    @property
    def weights(self):
        """[W_1, b_1, W_2, b_2, ...]: views into params (writing them writes the model)."""
        self._ensure_built()
        return [array for pair in layer_views(self.arch, self.params) for array in pair]

    def get_weights(self):
        """Copies of the weights in Keras's order [W_1, b_1, W_2, b_2, ...].

        W_l has shape (fan_in, units), b_l shape (units,).
        """
        return [array.copy() for array in self.weights]

    def set_weights(self, weights):
        """Copy a list [W_1, b_1, ...] (as get_weights returns it) into the model.

        Every shape is checked before anything is written; values are cast to the
        model's dtype.
        """
        views = self.weights
        weights = list(weights)
        if len(weights) != len(views):
            raise ValueError(f"set_weights needs {len(views)} arrays (a weight matrix and a bias "
                             f"per layer), got {len(weights)}")
        arrays = [np.asarray(w) for w in weights]
        for i, (array, view) in enumerate(zip(arrays, views)):
            if array.shape != view.shape:
                kind = "bias" if i % 2 else "weights"
                raise ValueError(f"array {i} ({kind} of layer {i // 2 + 1}) must have shape "
                                 f"{view.shape}, got {array.shape}")
        for array, view in zip(arrays, views):
            view[...] = array

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------

    def compile(self, optimizer="sgd", loss=None, metrics=(), l2=0.0, schedule=None):
        """Choose the optimizer, check the loss against the head, choose metrics; return self.

        Parameters
        ----------
        optimizer : str, dict, optimizers.Optimizer or LBFGS
            "sgd", "rmsprop", "adam", "adadelta" (each with its default learning
            rate), a config dict (``{"name": "adam", "lr": 0.01}``) or an instance
            (``Adadelta()``), kept as it is with its state.  Or "lbfgs" (also
            ``{"name": "lbfgs", "tol": 1e-6}`` or ``LBFGS(tol=1e-6, max_fun=500)``):
            scikit-learn's full-batch L-BFGS (see ``fit``); not with a schedule or
            Dropout layers.  Compiling again replaces the optimizer (and its state);
            weights and history are kept.
        loss : str or None
            "categorical_crossentropy" (softmax), "binary_crossentropy" (sigmoid),
            "mse" / "mean_squared_error" (linear); None takes the head's.
        metrics : sequence of str
            "accuracy" (also "acc", "categorical_accuracy" for softmax and
            "binary_accuracy" for sigmoid), "r2".  During ``fit``, the training
            accuracy is the running mean over each epoch's batches, measured before
            their updates, like the loss (as Keras reports both; it costs nothing);
            r2 takes a forward pass over the training rows after each epoch.
        l2 : float
            L2 penalty on the weights (not the biases), added to the training loss.
        schedule : str, schedules.Schedule, callable or None
            Learning rate per epoch (``fastnn.schedules``); None is constant.  Only
            the named schedules can be saved.
        """
        head = self._head()
        if loss is None:
            loss = HEAD_LOSSES[head]
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {sorted(LOSSES)}")
        if LOSSES[loss] != head:
            raise ValueError(
                f"loss {loss!r} does not match the last layer's activation "
                f"{self.layers[-1].activation!r}: fastnn pairs each output activation with one "
                f"loss (softmax with categorical_crossentropy, sigmoid with binary_crossentropy, "
                f"linear with mse); use loss={HEAD_LOSSES[head]!r} or change the last layer")
        if isinstance(metrics, str):
            metrics = [metrics]
        metrics = list(metrics)
        for name in metrics:
            if not isinstance(name, str) or name not in METRIC_ALIASES:
                raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRIC_ALIASES)}")
            if head not in METRIC_ALIASES[name][1]:
                raise ValueError(f"metric {name!r} does not apply to a {_HEAD_NAMES[head]} output")
        check_l2(l2)
        optimizer = _make_optimizer(optimizer)
        if isinstance(optimizer, LBFGS):
            if schedule is not None:
                raise ValueError("a schedule sets the learning rate of each epoch; L-BFGS has "
                                 "none (a line search chooses each step): compile without one")
            self._refuse_dropout_with_lbfgs()
        self.optimizer = optimizer
        schedule = None if schedule is None else make_schedule(schedule)
        if isinstance(schedule, ReduceOnPlateau):
            schedule = dataclasses.replace(schedule, monitor=_fastnn_key(schedule.monitor))
        self.schedule = schedule
        self.loss, self.metrics, self.l2 = loss, metrics, float(l2)
        return self

    @property
    def compiled(self):
        return self.loss is not None

    @property
    def metrics_names(self):
        """["loss", *metrics] as given to compile: the order of evaluate's values."""
        return ["loss", *self.metrics]

    def fastnn_metrics(self):
        """The compile metrics as fastnn's names (``metrics.METRICS``), each once."""
        return list(dict.fromkeys(METRIC_ALIASES[name][0] for name in self.metrics))

    def fit(self, x, y, epochs=1, batch_size=None, verbose="auto", validation_split=0.0,
            validation_data=None, shuffle=True, callbacks=(), early_stopping=None,
            sample_weight=None, class_weight=None, initial_epoch=0, on_divergence="raise",
            threads=None,
            backend="numba", runner=None):
        """Train, continuing the model's history; return it (a trainer.History).

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples, units of the last layer)
            One-hot rows for a softmax output; 0/1 for sigmoid; values for linear.  A
            1-D y is accepted when the last layer has one unit.
        epochs : int
            Epochs to train in this call (with initial_epoch = k > 0: up to epoch
            number ``epochs``, i.e. ``epochs - k`` more, as Keras).  With L-BFGS: the
            most iterations (scikit-learn's max_iter), each one history entry.
        batch_size : int or None
            Rows per mini-batch (None: 32, as Keras).  L-BFGS always uses all the
            training rows: a batch_size smaller than x is ignored with a warning.
        verbose : "auto", 0, 1 or 2
            0 silent; 1 a progress bar on stderr; 2 one line per epoch on stdout;
            "auto" is 1 when stderr is a terminal, else 0.
        validation_split : float
            Fraction of the rows, from the end of x (before shuffling), held out.
        validation_data : (x_val, y_val) or None
            Evaluated after every epoch (val_loss, val_<metric>); wins over the split.
        shuffle : bool
        callbacks : sequence of trainer.Callback or functions f(epoch, logs)
            An EarlyStopping found here is used as early_stopping (Keras habit).
        early_stopping : trainer.EarlyStopping or None
        sample_weight : array-like of shape (n_samples,) or None
        class_weight : dict, "balanced" or None
            {class index: weight} (the column of a softmax output; 0 or 1 for one
            sigmoid unit), or "balanced" (n_samples / (n_classes * count)); each
            row's weight is multiplied by its class's, as Keras does.  A class the
            targets do not hold is an error.
        initial_epoch : int
            0 (continue from wherever the model is), or the number of epochs the
            model has trained, as Keras's resume idiom ``fit(epochs=50,
            initial_epoch=20)`` after loading a model saved at epoch 20.
        on_divergence : "raise" or "stop"
            See ``trainer.fit``.
        threads : int or None
            Threads for this call (None: Numba's current setting).
        backend : "numba" or "numpy"
            The compiled engine, or the NumPy reference (to check the engine).
        runner : None or a runner of ``trainer.fit``
            None trains in this process; ``distributed.DataParallel(client, ...)``
            trains data-parallel on a Dask cluster (x and y are checked here first).

        Returns
        -------
        trainer.History
            ``model.history``: ``.history`` maps "loss", metrics, "val_..." values,
            "lr" and "seconds" to one value per epoch ever trained.  A Ctrl-C (or
            SIGTERM) during training ends it at the next mini-batch boundary, with a
            warning; the model keeps the weights after that batch, and the next
            ``fit`` finishes the interrupted epoch first, exactly as if it had not
            stopped (also after ``save`` and ``fastnn.load``).

        With L-BFGS (``compile(optimizer="lbfgs")``), fit is one ``trainer.fit_lbfgs``
        run: scipy's L-BFGS-B on the loss of all training rows (plus the L2 term),
        at most ``epochs`` iterations, stopping earlier when converged (the largest
        gradient entry <= tol, or the loss no longer decreasing: ``history.stop_reason``
        "converged"), and with a
        warning when the loss evaluations (max_fun) run out or the line search finds
        no lower loss ("max_fun", "stalled").  Each iteration is one history entry:
        loss, training metrics (a forward pass over the training rows), validation
        values and seconds, no "lr".  Validation data, callbacks, early stopping,
        sample and class weights, verbose, threads and backend work as for the
        other optimizers; shuffle does not matter (full batch), and a runner and
        Dropout layers are refused.  A signal ends training after the current
        iteration.  Each fit starts L-BFGS afresh from the weights reached (its
        curvature memory is not kept, nor saved): two fits of 10 iterations are
        not one of 20.
        """
        if not self.compiled:
            raise RuntimeError("compile the model before fit, e.g. "
                               "model.compile(optimizer='sgd', loss='categorical_crossentropy')")
        for value, label in ((epochs, "epochs"), (initial_epoch, "initial_epoch")):
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                    and value >= 0):
                raise ValueError(f"{label} must be an integer >= 0, got {value!r}")
        if initial_epoch:
            if initial_epoch != self.history.epochs:
                raise ValueError(f"initial_epoch={initial_epoch}, but the model has trained "
                                 f"{self.history.epochs} epochs; fastnn continues from where the "
                                 f"model is (initial_epoch=0 or {self.history.epochs})")
            epochs = max(0, epochs - initial_epoch)
        lbfgs = isinstance(self.optimizer, LBFGS)
        if batch_size is None and not lbfgs:
            batch_size = 32
        if batch_size is not None and not (isinstance(batch_size, (int, np.integer))
                                           and not isinstance(batch_size, bool)
                                           and batch_size >= 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if lbfgs:
            self._refuse_dropout_with_lbfgs()
            if runner is not None:
                raise ValueError("L-BFGS trains in this process: a runner (data-parallel "
                                 "training) needs a mini-batch optimizer")
        progress, lines = _verbosity(verbose)
        x, y = self._check_xy(x, y, building=True)
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            validation_data = self._check_xy(*validation_data, names=("x_val", "y_val"))
        callbacks = list(callbacks)
        for callback in [c for c in callbacks if isinstance(c, EarlyStopping)]:
            if early_stopping is not None:
                raise ValueError("two early stopping rules given (early_stopping and one in "
                                 "callbacks); give one")
            early_stopping = callback
            callbacks.remove(callback)
        if early_stopping is not None:
            early_stopping = dataclasses.replace(
                early_stopping, monitor=_fastnn_key(early_stopping.monitor))
        if lines:
            callbacks.append(_EpochLines(epochs))
        if class_weight is not None:
            sample_weight = class_sample_weight(class_weight, self._class_labels(y), sample_weight)
        if lbfgs:
            if batch_size is not None and batch_size < x.shape[0]:
                warnings.warn(f"batch_size={batch_size} is ignored: L-BFGS evaluates the loss "
                              f"and gradient on all training rows at once", UserWarning,
                              stacklevel=2)
            history = self._fit_lbfgs(x, y, epochs, validation_split, validation_data,
                                      callbacks, early_stopping, sample_weight, on_divergence,
                                      progress, threads, backend)
        else:
            history = self._fit_stochastic(
                x, y, epochs, int(batch_size), validation_split, validation_data, shuffle,
                callbacks, early_stopping, sample_weight, on_divergence, progress, threads,
                backend, runner)
        if history.interrupted:
            where = f"epoch {history.epochs}"
            if history.partial is not None:
                where += (f" and {history.partial.next_row} of {history.partial.order.size} rows "
                          f"of epoch {history.epochs + 1}")
            warnings.warn(f"training interrupted after {where}; the model keeps the weights "
                          f"of that point, and the next fit continues from it", UserWarning,
                          stacklevel=2)
        return history

    def _fit_stochastic(self, x, y, epochs, batch_size, validation_split, validation_data,
                        shuffle, callbacks, early_stopping, sample_weight, on_divergence,
                        progress, threads, backend, runner):
        """fit with a mini-batch optimizer: one ``trainer.fit`` call; the History."""
        return trainer.fit(
            self.arch, self.params, x, y, epochs=epochs, batch_size=batch_size,
            optimizer=self.optimizer, schedule=self.schedule, l2=self.l2,
            sample_weight=sample_weight, validation_data=validation_data,
            validation_split=validation_split, metrics=self.fastnn_metrics(),
            early_stopping=early_stopping, on_divergence=on_divergence, callbacks=callbacks,
            progress=progress, history=self.history, random_state=self.rng, shuffle=shuffle,
            backend=backend, threads=threads, runner=runner,
            dropout=self.dropout_rates if any(self.dropout_rates) else None,
            dropout_seed=self.dropout_seed or 0)

    def _fit_lbfgs(self, x, y, epochs, validation_split, validation_data, callbacks,
                   early_stopping, sample_weight, on_divergence, progress, threads, backend):
        """fit with L-BFGS: one ``trainer.fit_lbfgs`` call (none for 0 epochs); the History."""
        if epochs == 0:
            return self.history
        result = trainer.fit_lbfgs(
            self.arch, self.params, x, y, max_iter=epochs, max_fun=self.optimizer.max_fun,
            tol=self.optimizer.tol, l2=self.l2, sample_weight=sample_weight,
            validation_data=validation_data, validation_split=validation_split,
            metrics=self.fastnn_metrics(), early_stopping=early_stopping,
            on_divergence=on_divergence, callbacks=callbacks, progress=progress,
            history=self.history, backend=backend, threads=threads)
        history = result.history
        if history.stop_reason in ("max_fun", "stalled"):
            why = (f"max_fun={self.optimizer.max_fun} loss evaluations done"
                   if history.stop_reason == "max_fun" else
                   "no lower loss found (scaled inputs or dtype='float64' may help)")
            warnings.warn(f"L-BFGS stopped after {result.n_iter} of {epochs} iterations: {why} "
                          f"({result.message})", UserWarning, stacklevel=3)
        return history

    def _refuse_dropout_with_lbfgs(self):
        if any(self.dropout_rates):
            raise ValueError("Dropout layers need a mini-batch optimizer ('sgd', 'rmsprop', "
                             "'adam' or 'adadelta'): L-BFGS minimises one deterministic "
                             "full-batch loss, which random masks would change between its "
                             "evaluations")

    def _class_labels(self, y):
        """Each row's class index: the arg max of a softmax target, a sigmoid unit's 0/1."""
        head = self.arch.head
        if head == "softmax":
            return y.argmax(axis=1)
        if head == "sigmoid" and y.shape[1] == 1:
            return (y[:, 0] > 0.5).astype(np.int64)
        raise ValueError("class_weight needs a softmax output or a single sigmoid unit (classes); "
                         f"this model's output is {y.shape[1]} {_HEAD_NAMES[head]} unit(s)")

    def evaluate(self, x, y, verbose="auto", return_dict=False):
        """Loss and metrics on (x, y): [loss, metric, ...] (a float without metrics).

        The loss is the mean over rows of the head's loss (the trainer's val_loss,
        without the L2 penalty); metrics in the order given to compile.  verbose 1 or
        2 prints them on one line ("auto": when stderr is a terminal).  return_dict
        gives {name: value} with the names of ``metrics_names``.
        """
        if not self.compiled:
            raise RuntimeError("compile the model before evaluate (it needs the loss and metrics)")
        progress, lines = _verbosity(verbose)
        self._ensure_built()
        x, y = self._check_xy(x, y)
        scores = trainer.evaluate(self.arch, self.params, x, y, self.fastnn_metrics())
        values = {"loss": scores["loss"]}
        values.update({name: scores[METRIC_ALIASES[name][0]] for name in self.metrics})
        if progress or lines:
            print(" - ".join(f"{name}: {value:.4f}" for name, value in values.items()), flush=True)
        if return_dict:
            return values
        return values["loss"] if not self.metrics else list(values.values())

    def predict(self, x):
        """Output of the last layer, ndarray of shape (n_samples, units) in the model's dtype."""
        self._ensure_built()
        return trainer.predict_output(self.arch, self.params, self._check_x(x))

    def predict_proba(self, x):
        """Probabilities (the same as predict) for a softmax or sigmoid output."""
        self._ensure_built()
        if self.arch.head == "identity":
            raise ValueError("predict_proba needs a softmax or sigmoid output; this model's "
                             "last layer is linear (use predict)")
        return self.predict(x)

    # ------------------------------------------------------------------
    # Input checks
    # ------------------------------------------------------------------

    def _check_x(self, x, name="x"):
        """x as a finite, C-contiguous 2-D array of the model's dtype with input_dim columns."""
        x = check_array(x, dtype=self.dtype, order="C", input_name=name)
        if self.input_dim is not None and x.shape[1] != self.input_dim:
            raise ValueError(f"{name} has {x.shape[1]} features, but the model takes "
                             f"{self.input_dim} (input_dim)")
        return x

    def _check_xy(self, x, y, names=("x", "y"), building=False):
        """(x, y) checked and cast; builds the model from x's width when building."""
        x = self._check_x(x, names[0])
        units = self.layers[-1].units
        try:
            y = check_array(y, dtype=self.dtype, order="C", ensure_2d=False, input_name=names[1])
        except ValueError as exc:
            if not holds_text(y):
                raise
            raise ValueError(f"{names[1]} must hold numbers: one-hot rows for a softmax output, "
                             f"0/1 for sigmoid; it holds strings ({exc}). Encode class labels, "
                             f"e.g. with sklearn.preprocessing.LabelBinarizer") from None
        if y.ndim == 1 and units == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != units:
            hint = ""
            if self.layers[-1].activation == "softmax":
                hint = (" (one row per sample, one column per class: one-hot encode class labels, "
                        "e.g. with sklearn.preprocessing.OneHotEncoder or LabelBinarizer)")
            raise ValueError(f"{names[1]} must have shape (n_samples, {units}) for a last layer of "
                             f"{units} units{hint}, got shape {y.shape}")
        check_consistent_length(x, y)
        head = self.layers[-1].fastnn_activation
        if head in ("softmax", "sigmoid") and not ((y >= 0) & (y <= 1)).all():
            raise ValueError(f"{names[1]} must hold values in [0, 1] for a "
                             f"{_HEAD_NAMES[head]} output, got values from {y.min()} to {y.max()}")
        if head == "softmax" and not np.allclose(y.sum(axis=1), 1, rtol=0, atol=1e-3):
            raise ValueError(f"each row of {names[1]} must sum to 1 for a softmax output (one-hot "
                             f"class labels, e.g. with sklearn.preprocessing.OneHotEncoder)")
        if building and self.arch is None:
            self.build(x.shape[1])
        return x, y

    # ------------------------------------------------------------------
    # Summary
    # ------------------------------------------------------------------

    def summary(self, line_length=None, positions=None, print_fn=None):
        """Print Keras's table: Layer (type), Output Shape, Param #, then the totals.

        The layout is tf.keras 2's for sequential models (65 columns, the columns
        ending at 45 %, 85 % and 100 % of the line); print_fn(line) is called once per
        line (default: print).
        """
        input_dim = self.input_dim
        if input_dim is None:
            raise ValueError("this model has not yet been built: give input_dim to the first "
                             "layer, or call build(input_dim) or fit, before summary")
        print_fn = print if print_fn is None else print_fn
        line_length = line_length or 65
        positions = positions or [0.45, 0.85, 1.0]
        if positions[-1] <= 1:
            positions = [int(line_length * p) for p in positions]

        def print_row(fields):
            line = ""
            for i, (text, end) in enumerate(zip(fields, positions)):
                if i > 0:
                    line = line[:-1] + " "
                line = (line + str(text))[:end]
                line += " " * (end - len(line))
            print_fn(line)

        sizes = self._sizes(input_dim)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * line_length)
        print_row(["Layer (type)", "Output Shape", "Param #"])
        print_fn("=" * line_length)
        dropped = 0  # Dropout layers shown so far (Keras names them dropout, dropout_1, ...)
        for i, (name, fan_in, fan_out) in enumerate(zip(self.layer_names, sizes[:-1], sizes[1:])):
            for index, layer in self.dropout_layers:
                if index == i:  # it drops this Dense layer's input: a row before it
                    label = layer.name or ("dropout" if dropped == 0 else f"dropout_{dropped}")
                    dropped += 1
                    print_row([f"{label} (Dropout)", f"(None, {fan_in})", 0])
                    print_fn("_" * line_length)
            print_row([f"{name} (Dense)", f"(None, {fan_out})", (fan_in + 1) * fan_out])
            print_fn("=" * line_length if i == len(self.layers) - 1 else "_" * line_length)
        total = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {total:,}")
        print_fn("Non-trainable params: 0")
        print_fn("_" * line_length)

    # ------------------------------------------------------------------
    # Saving
    # ------------------------------------------------------------------

    def save(self, path):
        """Write the whole model to one ``.npz`` file (``fastnn.load`` reads it back).

        Layers, compile settings, weights, optimizer state, the shuffling generator
        and the history: a loaded model predicts bitwise the same and continues
        training exactly as this one would.
        """
        return model_io.save_model(path, self)

    def _saved_state(self):
        self._ensure_built()
        compiled = None
        lbfgs = isinstance(self.optimizer, LBFGS)
        if self.compiled:
            compiled = {"loss": self.loss, "metrics": self.metrics, "l2": self.l2,
                        "schedule": None if self.schedule is None
                        else schedule_config(self.schedule)}
            if lbfgs:  # no state: its settings are all there is to keep
                compiled["optimizer"] = self.optimizer.get_config()
        random_state = self.random_state
        if not (isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)):
            random_state = None  # a generator: its state is saved as rng
        config = {"name": self.name, "dtype": self.dtype, "init": self.init,
                  "random_state": random_state,
                  "layers": [layer.get_config() for layer in self.layers], "compile": compiled}
        if self.negative_slope != NEGATIVE_SLOPE:
            config["negative_slope"] = self.negative_slope
        if self.dropout_layers:
            config["dropout"] = [[index, layer.get_config()]
                                 for index, layer in self.dropout_layers]
            config["dropout_seed"] = self.dropout_seed
        return model_io.SavedModel("Sequential", self.arch, self.params, config,
                                   optimizer=self.optimizer if self.compiled and not lbfgs
                                   else None,
                                   rng=self.rng, history=self.history)

    @classmethod
    def _from_saved(cls, saved):
        config = saved.config
        layers = [Dense(**layer) for layer in config["layers"]]
        for index, layer in reversed(config.get("dropout", [])):
            layers.insert(index, Dropout(**layer))
        model = cls(layers, dtype=config["dtype"], init=config["init"],
                    random_state=config["random_state"], name=config["name"],
                    negative_slope=config.get("negative_slope", NEGATIVE_SLOPE))
        model.dropout_seed = config.get("dropout_seed")
        arch = model._architecture(saved.arch.sizes[0])
        if arch != saved.arch:
            raise ValueError(f"the stored layers describe {arch}, the weights {saved.arch}")
        model.arch, model.params, model.rng = arch, saved.params, saved.rng
        compiled = config["compile"]
        if compiled is not None:
            optimizer = compiled.get("optimizer", saved.optimizer)  # LBFGS's settings, or
            if optimizer is None:                                    # the Optimizer and state
                raise ValueError("a compiled model without its optimizer")
            model.compile(optimizer=optimizer, loss=compiled["loss"],
                          metrics=compiled["metrics"], l2=compiled["l2"],
                          schedule=compiled["schedule"])
        if saved.history is not None:
            model.history = saved.history
        return model


def _fastnn_key(key):
    """A history key with Keras's metric names ("val_categorical_accuracy") in fastnn's."""
    prefix = "val_" if key.startswith("val_") else ""
    name = key[len(prefix):]
    return prefix + METRIC_ALIASES[name][0] if name in METRIC_ALIASES else key


def _verbosity(verbose):
    """(progress bar, one line per epoch) for a Keras verbose value."""
    if verbose == "auto":
        return sys.stderr is not None and sys.stderr.isatty(), False
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return verbose == 1, verbose == 2

