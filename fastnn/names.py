"""The spellings of activation and loss names that the front ends accept, in one table each.

``network`` names the activations fastnn computes (``HIDDEN_ACTIVATIONS``, ``HEADS``);
scikit-learn and Keras spell some of them differently.  Each front end accepts
its own library's spellings, and every spelling is translated here.
"""

#: Every accepted spelling of an activation -> fastnn's name (None is Keras's default).
ACTIVATIONS = {None: "identity", "linear": "identity", "identity": "identity",
               "logistic": "sigmoid", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu",
               "softmax": "softmax", "leaky_relu": "leaky_relu", "elu": "elu", "selu": "selu",
               "gelu": "gelu", "softplus": "softplus", "silu": "silu", "swish": "silu"}

#: The activations added to the first four (Keras 3 and PyTorch have them all).
MODERN_ACTIVATIONS = ("leaky_relu", "elu", "selu", "gelu", "softplus", "silu")

#: The spellings each front end takes: scikit-learn's hidden activations (its four
#: and fastnn's), Keras's layers (Keras calls silu "swish" too).
SKLEARN_ACTIVATIONS = ("identity", "logistic", "sigmoid", "tanh", "relu", *MODERN_ACTIVATIONS)
KERAS_ACTIVATIONS = (None, "linear", "identity", "sigmoid", "tanh", "relu", "softmax",
                     *MODERN_ACTIVATIONS, "swish")

#: fastnn's names -> Keras's (for building Dense layers from fastnn's names).
KERAS_NAMES = {"identity": "linear", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu",
               "softmax": "softmax", **{name: name for name in MODERN_ACTIVATIONS}}

#: fastnn's output heads -> scikit-learn's ``out_activation_`` names.
SKLEARN_OUT_ACTIVATIONS = {"sigmoid": "logistic", "softmax": "softmax", "identity": "identity"}

#: Keras's loss names -> the head they belong to, and each head's loss.
LOSSES = {"categorical_crossentropy": "softmax", "binary_crossentropy": "sigmoid",
          "mse": "identity", "mean_squared_error": "identity"}
HEAD_LOSSES = {"softmax": "categorical_crossentropy", "sigmoid": "binary_crossentropy",
               "identity": "mse"}
