"""Network description and the flat parameter layout.

A network is a stack of dense layers.  Layer ``l`` maps ``fan_in = sizes[l]``
features to ``fan_out = sizes[l + 1]`` features.  All parameters live in one
contiguous 1-D buffer; layer ``l`` owns the block

    params[offsets[l] : offsets[l + 1]]  ==  [W_l (fan_in, fan_out) | b_l (fan_out,)]

stored row-major, so the block is also a ``(fan_in + 1, fan_out)`` matrix whose
last row is the bias.  The gradient and optimizer-state buffers use the same
layout, so one kernel can update them all and saving a model is one array.
"""

from dataclasses import dataclass, field

import numpy as np

#: Activations allowed on hidden layers, with the integer code the kernels use
#: (formulas in ``fastnn.kernels.activations``).
HIDDEN_ACTIVATIONS = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 5, "elu": 6,
                      "selu": 7, "gelu": 8, "softplus": 9, "silu": 10}

#: Hidden activations whose derivative the forward pass saves (it needs z, not a).
SAVED_DERIVATIVES = ("gelu", "softplus", "silu")

#: leaky_relu's slope for z < 0 unless given: Keras 3's (keras.activations.leaky_relu;
#: PyTorch's is 0.01, Keras's LeakyReLU layer's 0.3).
NEGATIVE_SLOPE = 0.2

#: Output heads: the activation of the last layer and the loss it is paired with.
#: Each pair is a canonical link, so the output delta is always ``(p - y) / n``.
HEADS = {
    "softmax": "categorical cross-entropy",
    "sigmoid": "binary cross-entropy",
    "identity": "mean squared error",
}

#: Kernel codes of all activations (hidden ones plus softmax).
ACTIVATION_CODES = dict(HIDDEN_ACTIVATIONS, softmax=4)

#: Losses an identity head can be trained with instead of its squared error
#: (``Architecture.loss``), with the kernel code the head then has.  "poisson" is
#: scikit-learn's: the prediction is exp(z), z the head's output, and the loss the half
#: Poisson deviance, whose output delta through exp is again exp(z) - y (exp is its
#: canonical link; ``kernels.dense.output_delta``).  The head's output stays z, so
#: these codes name no activation: they are negative, which the kernels' activation
#: rules treat as the identity (``activations.fused`` holds, ``activate_rows`` applies
#: nothing, ``saves_derivative`` does not).  Codes are runtime ints: no driver is
#: specialised for them (output_delta's branch is compiled into every driver).
LOSS_CODES = {"poisson": -1}

INITIALIZERS = ("normal", "glorot_uniform", "he_normal", "sklearn")
DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class Architecture:
    """Shapes and functions of a dense network.

    Parameters
    ----------
    sizes : tuple of int
        ``(n_features, hidden_1, ..., n_outputs)``; at least two entries.
    activations : tuple of str
        One hidden activation per hidden layer (``len(sizes) - 2`` entries).
    head : str
        Output activation: ``"softmax"``, ``"sigmoid"`` or ``"identity"``.
    dtype : str
        ``"float32"`` or ``"float64"``.
    negative_slope : float
        leaky_relu's slope for z < 0, in [0, 1) (used only by leaky_relu layers).
    loss : str or None
        None: the head's own loss (``HEADS``); or a key of ``LOSS_CODES`` ("poisson"),
        on an identity head only: the head's kernel code is then that loss's.
    """

    sizes: tuple
    activations: tuple
    head: str = "softmax"
    dtype: str = "float64"
    negative_slope: float = field(default=NEGATIVE_SLOPE, repr=False)
    loss: str = None

    def __post_init__(self):
        sizes = tuple(self.sizes)
        if (len(sizes) < 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                      for s in sizes) or min(sizes) < 1):
            raise ValueError(f"sizes must hold at least two positive integer widths, got "
                             f"{self.sizes!r}")
        sizes = tuple(int(s) for s in sizes)
        if isinstance(self.activations, str):
            object.__setattr__(self, "activations", (self.activations,) * (len(sizes) - 2))
        activations = tuple(self.activations)
        if len(activations) != len(sizes) - 2:
            raise ValueError(
                f"{len(sizes) - 2} hidden layers need {len(sizes) - 2} activations, "
                f"got {len(activations)}: {activations!r}"
            )
        for name in activations:
            if name not in HIDDEN_ACTIVATIONS:
                raise ValueError(
                    f"unknown hidden activation {name!r}; choose from {sorted(HIDDEN_ACTIVATIONS)}"
                )
        if self.head not in HEADS:
            raise ValueError(f"unknown output head {self.head!r}; choose from {sorted(HEADS)}")
        dtype = np.dtype(self.dtype).name
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        slope = self.negative_slope
        if not (isinstance(slope, (int, float, np.integer, np.floating))
                and not isinstance(slope, bool) and 0 <= slope < 1):
            raise ValueError(f"negative_slope must be a number in [0, 1), got {slope!r}")
        object.__setattr__(self, "negative_slope", float(slope))
        if self.loss is not None:
            if self.loss not in LOSS_CODES:
                raise ValueError(f"unknown loss {self.loss!r}; choose from None (the head's own) "
                                 f"or {sorted(LOSS_CODES)}")
            if self.head != "identity":
                raise ValueError(f"the {self.loss} loss goes on an identity head, got "
                                 f"{self.head!r}")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "activations", activations)
        object.__setattr__(self, "dtype", dtype)

    @property
    def n_layers(self):
        """Number of dense layers (weight matrices)."""
        return len(self.sizes) - 1

    @property
    def layer_activations(self):
        """Activation name of every layer, the head included."""
        return self.activations + (self.head,)

    @property
    def activation_codes(self):
        """int64 array of shape (n_layers,): kernel code of each layer's activation; the
        head's is its loss's (``LOSS_CODES``) when ``loss`` is set."""
        codes = [ACTIVATION_CODES[a] for a in self.layer_activations]
        if self.loss is not None:
            codes[-1] = LOSS_CODES[self.loss]
        return np.array(codes, dtype=np.int64)

    @property
    def saves_derivatives(self):
        """True when a hidden layer's activation saves its derivative (``SAVED_DERIVATIVES``)."""
        return any(a in SAVED_DERIVATIVES for a in self.activations)

    @property
    def offsets(self):
        """int64 array of shape (n_layers + 1,): start of each layer's block in the flat buffer."""
        blocks = [(fan_in + 1) * fan_out for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:])]
        return np.concatenate([[0], np.cumsum(blocks)]).astype(np.int64)

    @property
    def n_params(self):
        return int(self.offsets[-1])


#: Bytes of a cache line: every buffer ``aligned_zeros`` gives starts on one.
CACHE_LINE_BYTES = 64


def aligned_zeros(size, dtype):
    """A 1-D array of size zeros of dtype whose first element starts a cache line.

    NumPy aligns a large array to 16 bytes only.  Rows and panels whose width is a
    multiple of 64 bytes then start inside a line: each 512-bit load of them
    straddles two, and where two update tasks on different cores write parts of one
    panel row of W.T, they write the same line (false sharing).  The parameters,
    gradients, optimizer state and the drivers' workspaces are allocated here
    (docs/benchmarks.md: 2-3 % on the tutorial's network).  The array is a view of
    a buffer one line longer.
    """
    itemsize = np.dtype(dtype).itemsize
    buffer = np.zeros(size + CACHE_LINE_BYTES // itemsize, dtype=dtype)
    start = (-buffer.ctypes.data % CACHE_LINE_BYTES) // itemsize
    return buffer[start : start + size]


def layer_views(arch, flat):
    """Per-layer views ``[(W_0, b_0), ...]`` into a flat buffer (no copies).

    ``W_l`` has shape (fan_in, fan_out) and ``b_l`` shape (fan_out,); writing to
    a view writes to ``flat``.
    """
    views = []
    for l, (fan_in, fan_out) in enumerate(zip(arch.sizes[:-1], arch.sizes[1:])):
        block = flat[arch.offsets[l] : arch.offsets[l + 1]].reshape(fan_in + 1, fan_out)
        views.append((block[:fan_in], block[fan_in]))
    return views


def as_random_state(random_state):
    """A NumPy generator from a seed, with scikit-learn's ``check_random_state`` rules.

    None gives NumPy's global RandomState (so ``np.random.seed`` applies, as for the
    tutorial's ``np.random.randn``), an int a new RandomState seeded with it, and a
    RandomState or Generator is used as it is.  Written out here because importing
    scikit-learn for this alone costs about 0.5 s of start-up.
    """
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return np.random.RandomState(int(random_state))
    raise ValueError(f"random_state must be None, an int, a RandomState or a Generator, "
                     f"got {random_state!r}")


def init_params(arch, init="normal", random_state=None):
    """A new flat parameter buffer of shape (n_params,) and dtype ``arch.dtype``.

    ``normal`` draws every weight from N(0, 1), as the tutorial's ``np.random.randn``;
    ``glorot_uniform`` draws from U(-l, l) with l = sqrt(6 / (fan_in + fan_out));
    ``he_normal`` from N(0, 2 / fan_in); with these biases start at zero.
    ``sklearn`` is scikit-learn's MLP rule: the weights, then the biases, of each
    layer from U(-l, l), l = sqrt(f / (fan_in + fan_out)), f = 2 when the hidden
    layers are sigmoid ("logistic") and 6 otherwise (6 without hidden layers, where
    scikit-learn would read its ``activation`` setting), so the same RandomState gives
    scikit-learn's initial weights.  Values are drawn in float64 layer by layer, then
    cast, so both dtypes start from the same values.
    """
    if init not in INITIALIZERS:
        raise ValueError(f"unknown initializer {init!r}; choose from {list(INITIALIZERS)}")
    rng = as_random_state(random_state)
    params = aligned_zeros(arch.n_params, arch.dtype)
    factor = 2.0 if arch.n_layers > 1 and set(arch.activations) == {"sigmoid"} else 6.0
    for W, b in layer_views(arch, params):
        fan_in, fan_out = W.shape
        if init == "sklearn":
            limit = np.sqrt(factor / (fan_in + fan_out))
            W[:] = rng.uniform(-limit, limit, (fan_in, fan_out))
            b[:] = rng.uniform(-limit, limit, fan_out)
        elif init == "normal":
            W[:] = rng.standard_normal((fan_in, fan_out))
        elif init == "glorot_uniform":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W[:] = rng.uniform(-limit, limit, (fan_in, fan_out))
        else:
            W[:] = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
    return params
