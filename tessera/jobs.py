"""Running one workflow job: its output goes to the job's log, and a user error reads as one line."""

import contextlib
import os
import signal
import sys
import traceback

from tessera import TesseraError
from tessera.files import disk_error

_terminal = sys.stderr


class Terminated(BaseException):
    """SIGTERM: what SLURM sends at a job's time limit (SIGKILL follows), and what scancel sends.
    A BaseException, so that no library's `except Exception` swallows it."""


def _terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def job(log_path, stage):
    """Send everything the job prints to its log; turn failures into a one-line message and exit 1.

    The redirection is done on the file descriptors, so that what native libraries print (TensorFlow's
    start-up lines) lands in the log too. A TesseraError is the user's to fix, so it is shown without
    a traceback; anything else is a bug, whose traceback stays in the log while the terminal gets one
    line pointing there.
    """
    global _terminal
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    signal.signal(signal.SIGTERM, _terminate)
    sys.stdout.flush()
    sys.stderr.flush()
    _terminal = os.fdopen(os.dup(2), "w", buffering=1)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        log = open(log_path, "w", buffering=1)
    except OSError as e:
        reason, _ = disk_error(e) or (e.strerror or str(e), None)
        _fail(f"tessera {stage}: error: cannot write the log {log_path}: {reason}")
    with log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        try:
            yield log
        except TesseraError as e:
            _fail(f"tessera {stage}: error: {e}")
        except KeyboardInterrupt:
            _fail(f"tessera {stage}: interrupted; run the same command again to carry on", 130)
        except Terminated:
            _fail(
                f"tessera {stage}: stopped by SIGTERM (a time limit, or scancel); run the same "
                "command again to carry on",
                143,
            )
        except Exception as e:
            if disk := disk_error(e):
                reason, path = disk
                # a write with no file name is one to the log (stdout and stderr go there)
                _fail(
                    f"tessera {stage}: error: {reason} writing {path or log_path}; free some "
                    "space (or make the folder writable) and run the same command again"
                )
            with contextlib.suppress(OSError):
                traceback.print_exc()
            _fail(f"tessera {stage}: unexpected {type(e).__name__}: {e} (traceback in {log_path})")
        finally:
            # on a full disk the log cannot take the last lines: the terminal has the message
            with contextlib.suppress(OSError):
                sys.stdout.flush()
                sys.stderr.flush()


def _fail(message, status=1):
    print(message, file=_terminal)
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr)
    sys.exit(status)


def warn(stage, message):
    """A warning a user should see in the terminal, not only in the log."""
    print(f"tessera {stage}: warning: {message}", file=_terminal)
    print(f"warning: {message}", file=sys.stderr)
