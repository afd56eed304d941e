"""fastnn: a Numba-accelerated trainer for fully connected networks.

The pieces, one module each:

* ``config``     - Numba flags, thread count, chunk sizes;
* ``network``    - architecture and the flat parameter layout, initialisers;
* ``reference``  - the plain NumPy forward/backward/update (the oracle);
* ``kernels``    - the compiled twins of the reference, and the parallel epoch driver;
* ``optimizers`` - SGD (momentum, Nesterov), RMSprop, Adam, Adadelta and their state;
* ``schedules``  - learning rate per epoch;
* ``checks``     - the argument and data checks the modules share;
* ``metrics``    - metrics by name, their Keras names, and the scores of outputs;
* ``names``      - activation and loss spellings of scikit-learn and Keras;
* ``trainer``    - the one training loop every front end calls, and its local runner;
* ``compilation``- compiling only what a run uses, the compile notice, ``warm_up``;
* ``distributed``- the Dask runner of that loop (data-parallel training; the dask extra);
* ``model_io``   - model files (no pickle) and ``load``;
* ``models``     - Keras-like ``Sequential`` of ``Dense`` layers;
* ``estimators`` - scikit-learn's ``FastMLPClassifier`` and ``FastMLPRegressor``;
* ``mynn``       - drop-in replacement for the tutorial's ``MyNN``;
* ``onnx_export``- ``to_onnx``: any model as an ONNX file (the onnx extra);
* ``datasets``   - the command line's data sets and files;
* ``profiling``  - where an epoch's time goes (``--profile``);
* ``cli``        - the command line (``python -m fastnn.train``, ``fastnn-train``).
"""

from .compilation import warm_up
from .model_io import load_model as load
from .network import Architecture, init_params, layer_views
from .optimizers import SGD, Adadelta, Adam, RMSprop
from .trainer import (Callback, DivergenceError, DivergenceWarning, EarlyStopping, History,
                      StopTraining, fit, predict_output)
from .version import __version__

#: Front ends, imported on first use (they import scikit-learn: 0.5 s of start-up).
_LAZY = {"Dense": "models", "Dropout": "models", "Sequential": "models",
         "ModelCheckpoint": "models", "FastMLPClassifier": "estimators",
         "FastMLPRegressor": "estimators", "MyNN": "mynn", "to_onnx": "onnx_export"}

__all__ = ["Adadelta", "Adam", "Architecture", "Callback", "DivergenceError",
           "DivergenceWarning", "EarlyStopping", "History", "RMSprop", "SGD", "StopTraining",
           "fit", "init_params", "layer_views", "load", "predict_output", "warm_up", "__version__",
           *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
