"""Command line: train, evaluate, resume and profile a dense network.

    python -m fastnn.train                      # the tutorial's 64-128-128-10 network on digits
    python -m fastnn.train --dataset iris --layers 16 --epochs 100 --save iris.npz
    python -m fastnn.train --resume iris.npz --epochs 50 --save iris.npz
    python -m fastnn.train --load iris.npz --data new.csv --target species --predict out.csv
    fastnn-train --help

Every model is a ``fastnn.models.Sequential``: the command line builds it, compiles
it and calls its ``fit``, so a model trained here has bitwise the weights of the same
configuration written in Python (see docs/cli.md), and ``--save`` writes a file that
``fastnn.load`` returns as a Sequential, with its optimizer state, shuffling
generator and history, and this program's record of the data (source, split,
scaling, class labels) for ``--load`` and ``--resume``.

Exit status: 0 success; 1 ``--verify`` found the compiled engine and the NumPy
reference apart; 2 usage or input error, reported as one line
``fastnn.train: error: ...`` on stderr; 130 stopped by SIGINT (Ctrl-C), 143 by
SIGTERM: training stops at the next mini-batch boundary, and with ``--save`` the
model is saved, unfinished epoch included, so that ``--resume`` finishes the run
bitwise as an uninterrupted one; 141 when stdout is a closed pipe.

The parts, by job: ``options`` (the parser and shared constants), ``settings``
(what the options mean: checks, the model, the fit settings), ``data`` (data sets
and model files), ``run`` (the entry point and training), ``report`` (scores and
everything written).
"""

from .options import MAX_PROGRESS_LINES, VERIFY_RTOL, build_parser, log_step
from .run import entry_point, main

__all__ = ["MAX_PROGRESS_LINES", "VERIFY_RTOL", "build_parser", "entry_point", "log_step",
           "main"]
