"""fastnn: a Numba-accelerated trainer for fully connected networks.

The pieces, one module each:

* ``network``    - architecture and the flat parameter layout, initialisers;
* ``reference``  - the plain NumPy forward/backward/update (the oracle);
* ``kernels``    - the compiled twins of the reference, and the parallel epoch driver;
* ``optimizers`` - SGD (momentum, Nesterov), RMSprop, Adam, Adadelta and their state;
* ``schedules``  - learning rate per epoch;
* ``trainer``    - the one training loop every front end calls;
* ``model_io``   - model files (no pickle) and ``load``;
* ``train``      - the command line (``python -m fastnn.train``).
"""

from .model_io import load_model as load
from .network import Architecture, init_params, layer_views
from .optimizers import SGD, Adadelta, Adam, RMSprop
from .trainer import (Callback, DivergenceError, DivergenceWarning, EarlyStopping, History,
                      StopTraining, fit, predict_output)

__version__ = "0.1.0"

__all__ = ["Adadelta", "Adam", "Architecture", "Callback", "DivergenceError",
           "DivergenceWarning", "EarlyStopping", "History", "RMSprop", "SGD", "StopTraining",
           "fit", "init_params", "layer_views", "load", "predict_output", "__version__"]
