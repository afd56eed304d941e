"""fastnn: a Numba-accelerated trainer for fully connected networks.

The pieces, one module each:

* ``network``   - architecture and the flat parameter layout, initialisers;
* ``reference`` - the plain NumPy forward/backward/update (the oracle);
* ``kernels``   - the compiled twins of the reference, and the parallel epoch driver;
* ``trainer``   - the one training loop every front end calls;
* ``train``     - the command line (``python -m fastnn.train``).
"""

from .network import Architecture, init_params, layer_views
from .trainer import DivergenceError, fit, predict_output

__version__ = "0.1.0"

__all__ = ["Architecture", "DivergenceError", "fit", "init_params", "layer_views",
           "predict_output", "__version__"]
