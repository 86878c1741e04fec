"""One apply per stack at a time: an flock on /run/nkplan/STACK.lock (released by the kernel when
the process dies, so a crashed apply never leaves a stale lock). The holder writes its pid and
command line into the file, so a refused process can name who holds the stack. Different stacks
have different files and never wait for each other.

`timeout` (`apply/destroy --lock-timeout SECONDS`) waits for the lock instead of failing at once:
polled, not a blocking flock, so SIGINT and SIGTERM stay prompt while waiting."""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nkplan.errors import LockError

POLL = 0.05  # s between attempts while waiting for the lock
MAX_COMMAND = 1000  # bytes of the holder's command line kept in the lock file


def lock_dir() -> Path:
    return Path(os.environ.get("NKPLAN_LOCK_DIR", "/run/nkplan"))


def command_line() -> str:
    """This process's command line as the kernel has it (`python -m nkplan.cli ...` shows as such)."""
    try:
        args = [a.decode(errors="replace") for a in Path("/proc/self/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        args = list(sys.argv)
    text = shlex.join(args).replace("\n", " ")
    return text[:MAX_COMMAND]


def holder(fd: int) -> str:
    """Who holds the lock, from what it wrote: 'pid N: COMMAND' (as much as is known)."""
    lines = os.pread(fd, MAX_COMMAND + 64, 0).decode(errors="replace").splitlines()
    pid = lines[0].strip() if lines and lines[0].strip() else "unknown"
    command = lines[1].strip() if len(lines) > 1 else ""
    return f"pid {pid}: {command}" if command else f"pid {pid}"


@contextmanager
def stack_lock(stack: str, timeout: float = 0.0) -> Iterator[None]:
    path = lock_dir() / f"{stack}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    waited = f"; waited {timeout:g} s (--lock-timeout)" if timeout > 0 else ""
                    hint = "wait for it to finish, or pass --lock-timeout SECONDS" if timeout <= 0 else "try again"
                    raise LockError(
                        f"stack {stack!r} is locked by another nkplan process ({holder(fd)}; lock {path}){waited}; "
                        + hint
                    ) from None
                time.sleep(POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command_line()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
