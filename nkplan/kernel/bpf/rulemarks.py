"""Ownership markers of host-namespace rules, in the owning stack's bpffs tree (pins.py):

    /sys/fs/bpf/nkplan/<stack>/:host/:rules/<family>-<priority>@<digest>

an empty directory per rule (bpffs allows mkdir, and a directory is all it holds besides pins).
A rule in the host namespace has no attribute that could name a stack: its FRA_PROTOCOL 237 says
"nkplan's", the marker says whose, and <digest> (12 hex digits of the rule as applied) lets a
later plan tell drift. ':' cannot start a device name, so ':rules' never collides with a device
directory; the hook and pin walkers (bpffs.hook_dirs) only descend into hook names, and device
pin cleanup only removes device directories, so neither sees or removes a marker. Reading never
mounts bpffs (absent: no markers); writing mounts it, as pinning does."""

from __future__ import annotations

import dataclasses
import errno
import os
import posixpath
from dataclasses import dataclass

from nkplan.core.records import HOST, RTPROT_NKPLAN, LiveState, RuleRec
from nkplan.errors import KernelError
from nkplan.kernel.bpf import bpffs, pins

RULES_DIR = ":rules"
SEP = "@"


@dataclass(frozen=True)
class Marker:
    stack: str
    family: str  # inet | inet6
    priority: int
    digest: str


def rules_dir(stack: str, root: str = pins.ROOT) -> str:
    return posixpath.join(pins.stack_dir(stack, root), pins.HOST_DIR, RULES_DIR)


def _name(family: str, priority: int, digest: str) -> str:
    return f"{family}-{priority}{SEP}{digest}"


def _parse(stack: str, name: str) -> Marker | None:
    head, sep, digest = name.partition(SEP)
    family, dash, prio = head.partition("-")
    if not sep or not dash or family not in ("inet", "inet6") or not prio.isdigit():
        return None
    return Marker(stack, family, int(prio), digest)


def _entries(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_all(root: str = pins.ROOT) -> list[Marker]:
    """Every stack's markers (one listdir per stack)."""
    out = []
    for stack in bpffs.stacks(root):
        for name in _entries(rules_dir(stack, root)):
            marker = _parse(stack, name)
            if marker is not None:
                out.append(marker)
    return out


def remove(stack: str, family: str, priority: int, root: str = pins.ROOT) -> None:
    """Remove the stack's marker(s) of (family, priority), and directories left empty."""
    directory = rules_dir(stack, root)
    prefix = f"{family}-{priority}{SEP}"
    for name in _entries(directory):
        if name.startswith(prefix):
            try:
                os.rmdir(posixpath.join(directory, name))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise KernelError(
                    f"removing the ownership marker of rule {priority} ({family}) in {directory}: "
                    f"{os.strerror(exc.errno or 0)}",
                    exc.errno,
                ) from None
    bpffs.prune(directory, root)


def write(stack: str, family: str, priority: int, digest: str, root: str = pins.ROOT) -> None:
    """Mark (family, priority) in the host namespace as the stack's, as applied with digest."""
    if root == pins.ROOT:
        bpffs.ensure_mounted()
    directory = rules_dir(stack, root)
    target = posixpath.join(directory, _name(family, priority, digest))
    for name in _entries(directory):
        old = posixpath.join(directory, name)
        if name.startswith(f"{family}-{priority}{SEP}") and old != target:
            try:
                os.rmdir(old)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise KernelError(
                    f"replacing the ownership marker of rule {priority} ({family}) at {old}: "
                    f"{os.strerror(exc.errno or 0)}",
                    exc.errno,
                ) from None
    try:
        os.makedirs(target, mode=0o700, exist_ok=True)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise KernelError(
                f"writing the ownership marker of rule {priority} ({family}) at {target}: "
                f"{os.strerror(exc.errno or 0)}",
                exc.errno,
            ) from None


def fill_owners(live: LiveState, root: str = pins.ROOT) -> None:
    """Host rules with nkplan's protocol get the stack (and applied digest) of their marker; a
    marker whose rule is gone becomes a `stale` record of its stack (removed by its next apply)."""
    marks: dict[tuple[str, int], Marker] = {}
    for m in read_all(root):
        marks.setdefault((m.family, m.priority), m)
    used: set[tuple[str, int]] = set()
    for i, r in enumerate(live.rules):
        if r.namespace != HOST or r.protocol != RTPROT_NKPLAN:
            continue
        found = marks.get((r.family, r.priority))
        if found is not None and (r.family, r.priority) not in used:
            used.add((r.family, r.priority))
            live.rules[i] = dataclasses.replace(r, owner=found.stack, applied=found.digest)
    for key, m in sorted(marks.items()):
        if key not in used:
            live.rules.append(
                RuleRec(HOST, m.family, m.priority, owner=m.stack, applied=m.digest, stale=True)  # type: ignore[arg-type]
            )
