"""One apply per stack at a time: an flock on /run/nkplan/STACK.lock (released by the kernel when
the process dies, so a crashed apply never leaves a stale lock)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nkplan.errors import LockError


def lock_dir() -> Path:
    return Path(os.environ.get("NKPLAN_LOCK_DIR", "/run/nkplan"))


@contextmanager
def stack_lock(stack: str) -> Iterator[None]:
    path = lock_dir() / f"{stack}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise LockError(
                f"stack {stack!r} is locked by another nkplan process (pid {holder}, lock {path}); "
                "wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
