"""The command line and its terminal: the signals that stop a command, daskstyle's warnings
shown as notes, and usage errors in one line. Only :mod:`daskstyle.frontends.cli` uses this module:
the library never prints.

SIGINT (Ctrl-C, which a terminal sends to the whole process group) and SIGTERM (``kill``,
``timeout``, SLURM) both raise :class:`Stopped` in the main thread, so that the command
unwinds as on Ctrl-C: the run's committed steps stay on disk, its cluster closes, and the
command ends in one line. From the first signal on, logging is off: the libraries' lines about
the work left undone are not the user's. A local cluster's workers do not get these signals at
all (:func:`daskstyle.compute.cluster.open_client`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import signal
import sys
import threading
import warnings
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)
AGAIN_AFTER = 0.1  # seconds: a signal that fell into a finalizer is raised again this late
_PACKAGE = Path(__file__).resolve().parents[1]  # daskstyle/: warnings from any of its modules
_received: list[int] = []  # the signals received while a command runs


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line too (the usage itself is in ``--help``)."""

    def error(self, message: str):
        self.exit(2, f"daskstyle: error: {message}\n")


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``status`` is the command's exit status, 128 + its number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum, self.status = signum, 128 + signum


def _stop(signum: int, frame) -> None:
    if not _received:
        logging.disable(logging.CRITICAL)
    _received.append(signum)
    raise Stopped(signum)


@contextlib.contextmanager
def signals_stop():
    """SIGINT and SIGTERM raise :class:`Stopped` while the block runs. A finalizer (``__del__``,
    a weakref callback) that was running when one arrived only hands the exception to
    ``sys.unraisablehook``: then nothing is printed, and the signal is raised again."""
    handlers = {sig: signal.signal(sig, _stop) for sig in SIGNALS}
    hook, logs = sys.unraisablehook, logging.root.manager.disable
    again: list[threading.Timer] = []

    def unraisable(unraisable) -> None:
        if not isinstance(unraisable.exc_value, Stopped):
            hook(unraisable)
            return
        main, signum = threading.main_thread().ident, unraisable.exc_value.signum
        timer = threading.Timer(AGAIN_AFTER, signal.pthread_kill, [main, signum])
        timer.daemon = True  # not from within the hook: that would be lost the same way
        again.append(timer)
        timer.start()

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        for timer in again:
            timer.cancel()
        if _received:
            gc.collect()  # what the stopped work left behind reports itself now, unheard
        sys.unraisablehook = hook
        logging.disable(logs)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        _received.clear()


def ignore_signals() -> None:
    """The command has stopped and says why: more signals change nothing."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def warnings_as_notes():
    """daskstyle's warnings (an input's alpha channel, ...) show as one line
    ``daskstyle: note: ...`` each, once however often they are raised; other warnings show
    as Python shows them."""
    shown = set()
    with warnings.catch_warnings():
        python = warnings.showwarning

        def note(message, category, filename, lineno, file=None, line=None):
            if not Path(filename).resolve().is_relative_to(_PACKAGE):
                python(message, category, filename, lineno, file, line)
                return
            text = " ".join(str(message).split())
            if text not in shown:
                shown.add(text)
                print(f"daskstyle: note: {text}", file=sys.stderr)

        warnings.showwarning = note
        yield
