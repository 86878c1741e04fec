"""/proc/sys files of a network namespace, read and written as sysctl(8) does (so the kernel's
handlers run: route cache flushes, netconf notifications). /proc/sys/net shows the namespace of
the thread that opens a file, so callers run these inside the namespace (netns.in_namespace, or
the reader's worker thread, which is already there)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from nkplan.core.sysctls import Value, value
from nkplan.errors import KernelError

Entry = tuple[str, str, Value]  # (/proc/sys path, the key as messages name it, value)


def read(paths: Iterable[tuple[str, str]]) -> dict[str, Value]:
    """key → canonical value for each (key, path) that this namespace has; a key the kernel
    does not have, or will not let anyone read (write-only), is left out."""
    out: dict[str, Value] = {}
    for key, path in paths:
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                out[key] = value(f.read())
        except OSError:
            continue
    return out


def write(entries: Iterable[Entry], where: str) -> None:
    for path, key, val in entries:
        what = f"setting {key} = {val} in {where}"
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write(f"{val}\n")
        except FileNotFoundError:
            raise KernelError(f"{what}: this kernel has no such sysctl (or no such device)") from None
        except OSError as exc:
            raise KernelError(f"{what}: the kernel refused it ({os.strerror(exc.errno or 0)})", exc.errno) from None
