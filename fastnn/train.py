"""``python -m fastnn.train`` and the ``fastnn-train`` script: the command line of
``fastnn.cli`` (see its docstring for the options, exit statuses and parts)."""

import sys

from .cli import MAX_PROGRESS_LINES, VERIFY_RTOL, build_parser, entry_point, log_step, main

__all__ = ["MAX_PROGRESS_LINES", "VERIFY_RTOL", "build_parser", "entry_point", "log_step",
           "main"]

if __name__ == "__main__":
    sys.exit(entry_point())
