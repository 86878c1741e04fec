"""Errors of the BPF layer. Pure (no ctypes), so the applier and the CLI may catch them by class.

- BpfObjectError: the object file named in the spec is wrong (missing, not BPF, lacks the
  program, wrong program type): the spec's fault.
- ProgramLoadError: the kernel refused to load a program (the verifier, usually); carries the
  full verifier log in .log, the message quotes its end.
- StaleHookError: a conditional change (expected_revision) found the hook changed since it was
  read: someone else attached, detached or replaced a program there concurrently. Re-read and
  re-plan; never retry blindly.
- every other refusal is a plain KernelError with words (refusals.py)."""

from __future__ import annotations

import errno

from nkplan.errors import KernelError, NkplanError


class BpfObjectError(NkplanError):
    """A BPF object file or program named in the spec cannot be used."""

    fault = "spec"

    def __init__(self, message: str, path: str, program: str | None = None) -> None:
        self.path, self.program = path, program
        super().__init__(message)


class ProgramLoadError(KernelError):
    def __init__(self, message: str, err: int, log: str) -> None:
        self.log = log
        super().__init__(message, err)


class StaleHookError(KernelError):
    """ESTALE: the hook's revision is no longer the one the change was planned against."""

    def __init__(self, message: str, expected: int, current: int | None) -> None:
        self.expected_revision, self.current_revision = expected, current
        super().__init__(message, errno.ESTALE)
