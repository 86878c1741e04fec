"""Orphan pins (core/resources/orphan.py) on the running kernel: one walk of each stack's bpffs
tree for what nothing nkplan manages holds (stale link pins are found by scan.fill_state, which
knows which links are on their hooks), and their removal. Layout: pins.py; known besides link
pins: the shared maps (:maps/NAME), host rule markers (:host/:rules/), a link's maps directory
(<pin>-maps/), a hook's marker (:applied@…/), a new link's temporary pin (<pin>-new, which the
hook writer clears)."""

from __future__ import annotations

import os
import posixpath

from nkplan.core.records import LiveState, OrphanPin
from nkplan.core.resources.orphan import inside_stack_tree
from nkplan.errors import InternalError, KernelError
from nkplan.kernel.bpf import bpffs, hookmarks, pins
from nkplan.kernel.bpf import consts as C
from nkplan.kernel.bpf.rulemarks import RULES_DIR


def _known_dir(rel: list[str], name: str, files: list[str]) -> bool:
    """A directory whose whole subtree is nkplan's own (not walked); a link's maps directory only
    while its link pin (a sibling file, or its temporary pin) is there: without it, what it pins
    is orphaned."""
    if rel == [] and name == pins.SHARED_MAPS_DIR:
        return False  # walked: only map pins belong there
    if rel == [pins.HOST_DIR] and name == RULES_DIR:
        return True
    if len(rel) == 3 and rel[2] in C.ATTACH_TYPES:
        return hookmarks.is_mark(name) or (
            name.endswith(pins.MAPS_SUFFIX)
            and pins.split_name(name[: -len(pins.MAPS_SUFFIX)]) is not None
            and any(name[: -len(pins.MAPS_SUFFIX)] + tail in files for tail in ("", pins.TEMP_SUFFIX))
        )  # (a link pinned but not yet renamed: the hook's leftovers, which its writer sweeps)
    return False


def _known_file(rel: list[str], name: str) -> bool:
    if rel == [pins.SHARED_MAPS_DIR]:
        return True  # read as shared maps (kernel/bpf/sharedmaps.py)
    if len(rel) == 3 and rel[2] in C.ATTACH_TYPES:
        return pins.split_name(name) is not None or name.endswith(pins.TEMP_SUFFIX)
    return False


def fill(live: LiveState, listing: bpffs.Listing | None = None) -> None:
    """live.orphan_pins += every stray pin of every stack's tree (sorted by path). `listing`: the
    read's bpffs.Listing, whose directories scan.fill_state listed already."""
    listing = listing or bpffs.Listing()
    for stack in bpffs.stacks():
        top = pins.stack_dir(stack)
        for base, dirs, files in listing.walk(top):
            rel_path = posixpath.relpath(base, top)
            rel = [] if rel_path == "." else rel_path.split("/")
            dirs[:] = sorted(d for d in dirs if not _known_dir(rel, d, files))
            for name in sorted(files):
                if not _known_file(rel, name):
                    path = posixpath.join(*rel, name) if rel else name
                    live.orphan_pins.append(OrphanPin(stack, path, "pinned outside nkplan"))


def remove(rec: OrphanPin) -> None:
    top = pins.stack_dir(rec.owner)
    path = posixpath.normpath(posixpath.join(top, rec.path))
    if not inside_stack_tree(rec.path) or not path.startswith(top + "/"):  # never outside the stack's tree
        raise InternalError(f"refusing to remove {rec.path!r}: not inside {top}")
    if os.path.isdir(path):
        bpffs.remove_tree(path)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KernelError(f"removing the pin {path}: {os.strerror(exc.errno or 0)}", exc.errno) from None
    if os.path.isdir(path + pins.MAPS_SUFFIX):  # a stale link pin's maps go with it
        bpffs.remove_tree(path + pins.MAPS_SUFFIX)
    bpffs.prune(posixpath.dirname(path))
