"""SIGINT, SIGTERM and SIGHUP have one outcome at any moment of any command (README: signals):

- outside an apply's kernel steps (loading, planning, the prompt, printing) they raise
  KeyboardInterrupt where they land (`as_interrupt`, installed by the CLI), and the command
  exits 130 saying whether anything was changed;
- during an apply (run/applier.py) they are `Deferred`: the step the kernel is carrying out
  finishes, then the completed steps are rolled back (a rollback is never interrupted) and the
  command exits 130; verification and checks, which change nothing, stop at once and roll back too.

A pipeline runner cancelling a job sends SIGTERM, a closed SSH session SIGHUP: both are Ctrl-C."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

EXIT_INTERRUPTED = 130
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


RECEIVED: list[int] = []  # every interrupt that reached a handler of this module, in order


def _raise(signum: int, frame: FrameType | None) -> None:
    # once: the command is on its way out, saying what happened; a second signal must not cut
    # that short (it would end the process with a traceback instead of the message)
    RECEIVED.append(signum)
    for sig in INTERRUPTS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def received() -> str:
    """The name of the first interrupt received ("" when none): the CLI's last word on an
    exception that a library made of a KeyboardInterrupt raised inside it (pydantic-core and
    other extensions turn one raised during their import into an error of their own)."""
    return signal.Signals(RECEIVED[0]).name if RECEIVED else ""


def as_interrupt() -> dict[int, Any]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt (main thread only); returns the
    handlers they had, for `restore`."""
    old: dict[int, Any] = {}
    for sig in INTERRUPTS:
        try:
            old[sig] = signal.signal(sig, _raise)
        except ValueError:  # not the main thread (an embedding program): leave its handlers
            break
    return old


def restore(old: dict[int, Any]) -> None:
    """The handlers as they were: the entry point's, which only note a signal, once the command
    is over (one landing while the interpreter shuts down must not turn exit 0 into a traceback)."""
    for sig, handler in old.items():
        signal.signal(sig, handler)


class Deferred:
    """Signals noted, not raised, while a kernel step runs; `check()` raises KeyboardInterrupt
    between steps when one came. Inside `immediate()` they raise where they land."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._now = False
        self._old: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.pending).name if self.pending else ""

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        RECEIVED.append(signum)
        if self.pending is None:
            self.pending = signum
        if self._now:
            self._now = False  # one raise; a second signal while rolling back is only noted
            raise KeyboardInterrupt(signal.Signals(signum).name)

    def check(self) -> None:
        if self.pending is not None:
            raise KeyboardInterrupt(self.name)

    @contextmanager
    def immediate(self) -> Iterator[None]:
        self.check()
        self._now = True
        try:
            yield
        finally:
            self._now = False

    def __enter__(self) -> Deferred:
        for sig in INTERRUPTS:
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: signals are the embedding program's business
                break
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
