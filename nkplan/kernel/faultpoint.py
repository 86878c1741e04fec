"""A test-only seam below the Kernel protocol: every low-level change the kernel layer makes
(a netlink request that is not a GET, a bpf() command that changes a hook or bpffs, a removal
or rename in bpffs, making or removing a namespace's mount) first calls `reached(what)`.

Nothing is installed in normal runs, so it costs one global read per change. A test (tests/faults.py)
installs a function that counts the calls and, at the k-th, raises OSError(errno) as the kernel
would refuse that change (or kills its own process), so rollback and recovery are tested at
every low-level operation of a plan step, not only between steps. The call sites turn that
OSError into the same KernelError a real refusal gives."""

from __future__ import annotations

from collections.abc import Callable

Hook = Callable[[str], None]

_hook: Hook | None = None


def install(hook: Hook | None) -> Hook | None:
    """Make `hook` see every low-level change (None: none); returns the one it replaces."""
    global _hook
    previous, _hook = _hook, hook
    return previous


def installed() -> bool:
    """Is a hook installed (a test is counting changes)?"""
    return _hook is not None


def reached(what: str) -> None:
    """Called just before a low-level change; may raise OSError (an injected refusal)."""
    if _hook is not None:
        _hook(what)
