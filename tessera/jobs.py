"""Running one workflow job: its output goes to the job's log, and a user error reads as one line."""

import contextlib
import os
import sys
import traceback

from tessera import TesseraError


@contextlib.contextmanager
def job(log_path, stage):
    """Send everything the job prints to its log; turn failures into a one-line message and exit 1.

    A TesseraError is the user's to fix, so it is shown without a traceback; anything else is a bug,
    whose traceback stays in the log while the terminal gets one line pointing there.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    terminal = sys.stderr
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            yield log
        except TesseraError as e:
            message = f"tessera {stage}: error: {e}"
            print(message, file=log)
            print(message, file=terminal)
            sys.exit(1)
        except Exception as e:
            traceback.print_exc(file=log)
            print(f"tessera {stage}: unexpected {type(e).__name__}: {e} (traceback in {log_path})", file=terminal)
            sys.exit(1)


def warn(stage, message):
    """A warning a user should see in the terminal, not only in the log."""
    print(f"tessera {stage}: warning: {message}", file=sys.__stderr__)
    print(f"warning: {message}")
