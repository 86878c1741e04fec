"""The `nkplan` command's entry point. Importing the CLI and its libraries takes a moment; a
signal in that moment is noted (not raised inside some library's import) and, once the CLI runs,
ends the command with exit 130 and a message, like a signal at any later moment
(run/signals.py). Only the first milliseconds of the interpreter's own start are out of reach."""

from __future__ import annotations

import gc
import signal
import sys
from types import FrameType

EARLY: list[int] = []  # signals that came before the CLI took over


def _note(signum: int, frame: FrameType | None) -> None:
    EARLY.append(signum)


def note_early_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _note)
        except ValueError:  # not the main thread
            return


def collect_young_only() -> None:
    """No full passes of the cyclic garbage collector for the rest of the process, a command.
    What a command keeps (the spec, the live state, the plan) lives until it ends and holds no
    garbage, and the full passes over it grow with it: at 10,000 pods they took a quarter of a
    plan's CPU (1.6 of 6.2 s) and found next to nothing. Short-lived objects are still collected in the
    young generations, as before; what survives into the old one is freed when the process
    ends. The confirm watcher (a long-running process) does not come through here."""
    young, middle, _old = gc.get_threshold()
    gc.set_threshold(young, middle, 1 << 30)


def ignore_late_signals() -> None:
    """The command's outcome is decided: from here to the end of the process a signal changes
    nothing. Ignored, not handled: the interpreter puts SIGINT's default action (die) back while
    it shuts down, and a signal then would turn exit 0 into death by signal."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:
            return


def run() -> None:
    note_early_signals()
    collect_young_only()
    from nkplan.cli import main

    code = main()
    ignore_late_signals()
    sys.exit(code)
