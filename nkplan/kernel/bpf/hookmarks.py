"""The marker apply leaves in each hook's pin directory, to tell drift (core/resources/hook.py):

    /sys/fs/bpf/nkplan/<stack>/<ns>/<device>/<hook>/:applied@<digest>/<id>@<name>   (directories)

<digest>: 12 hex digits of the hook's programs as applied (hook.programs_digest); one entry per
program others had attached at the hook then (prog id and name; a program with another id is
another program). bpffs allows mkdir, and directories are all it holds besides pins; ':' starts
no program name, and the link pin parser (pins.split_name) and the hook walkers ignore it.
Reading never mounts bpffs."""

from __future__ import annotations

import os
import posixpath

from nkplan.errors import KernelError
from nkplan.kernel.bpf import bpffs, pins

PREFIX = ":applied@"


def _marks(directory: str, listed: list[str] | None = None) -> list[str]:
    return [n for n in (bpffs.names(directory) if listed is None else listed) if n.startswith(PREFIX)]


def is_mark(name: str) -> bool:
    return name.startswith(PREFIX)


def read(directory: str, listed: list[str] | None = None) -> tuple[str, tuple[str, ...]] | None:
    """(digest, foreign programs as "NAME (id N)") of a hook directory's marker, or None
    (listed: the directory's bpffs.names(), if known)."""
    found = _marks(directory, listed)
    if len(found) != 1:
        return None  # none, or a crashed write left two: no drift can be told
    mark = posixpath.join(directory, found[0])
    foreign = []
    try:
        entries = os.listdir(mark)
    except OSError:
        return None
    for entry in entries:
        pid, sep, name = entry.partition("@")
        if sep and pid.isdigit():
            foreign.append((int(pid), pins.unescape(name)))
    return found[0][len(PREFIX) :], tuple(f"{name} (id {pid})" for pid, name in sorted(foreign))


def write(directory: str, digest: str, foreign: list[tuple[int, str]]) -> None:
    """Replace the hook directory's marker (bpffs mounted already: the links are pinned there)."""
    remove(directory)
    mark = posixpath.join(directory, PREFIX + digest)
    try:
        os.makedirs(mark, mode=0o700)
        for pid, name in foreign:
            os.mkdir(posixpath.join(mark, f"{pid}@{pins.escape(name or '-')}"))
    except OSError as exc:
        raise KernelError(f"writing the marker {mark}: {os.strerror(exc.errno or 0)}", exc.errno) from None


def remove(directory: str) -> None:
    for name in _marks(directory):
        bpffs.remove_tree(posixpath.join(directory, name))
