"""The stack-level shared maps (`maps:`, core/resources/sharedmap.py) on the running kernel: made
with BPF_MAP_CREATE from their definition and pinned at /sys/fs/bpf/nkplan/STACK/:maps/NAME
(pins.shared_map_pin); read back from those pins; deleted by unpinning (programs still holding
the map keep it until they go). The hook writer hands a pinned map to libbpf before it loads a
program that has a map of that name (hookwriter.py), as libbpf's pin-by-name does."""

from __future__ import annotations

import os

from nkplan.core.records import MAP_TYPE_NAMES, MAP_TYPES, LiveState, SharedMapRec
from nkplan.errors import KernelError
from nkplan.kernel.bpf import bpffs, info, pins
from nkplan.kernel.bpf import syscall as S
from nkplan.kernel.bpf.refusals import explain


def _names(stack: str) -> list[str]:
    try:
        return sorted(os.listdir(pins.shared_maps_dir(stack)))
    except (FileNotFoundError, NotADirectoryError):
        return []


def fill(live: LiveState, stacks: list[str] | None = None) -> None:
    """live.shared_maps: every stack's (or these stacks') pinned shared maps, as the kernel
    describes them."""
    for stack in bpffs.stacks() if stacks is None else stacks:
        for raw in _names(stack):
            name = pins.unescape(raw)
            fd = bpffs.open_pin(pins.shared_map_pin(stack, name))
            if fd is None:
                continue
            try:
                got = info.map_info(fd)
            except OSError:
                continue  # not a map (something else pinned there): not nkplan's
            finally:
                os.close(fd)
            kind = MAP_TYPE_NAMES.get(got.type, f"type {got.type}")
            live.shared_maps[(stack, name)] = SharedMapRec(
                name, kind, got.key_size, got.value_size, got.max_entries, got.flags, stack, got.id
            )


def pinned_ids(stack: str) -> dict[int, str]:
    """{map id: name} of the stack's pinned shared maps."""
    live = LiveState()
    fill(live, [stack])
    return {m.map_id: m.name for m in live.shared_maps.values() if m.map_id}


def open_shared(stack: str, names: tuple[str, ...]) -> dict[str, int]:
    """{name: fd} of the stack's pinned shared maps of these names (the caller closes the fds);
    a name without a pin is an error: the plan made the map before the programs using it."""
    out: dict[str, int] = {}
    for name in names:
        fd = bpffs.open_pin(pins.shared_map_pin(stack, name))
        if fd is None:
            for got in out.values():
                os.close(got)
            raise KernelError(
                f"the shared map {name} of stack {stack!r} is not pinned (deleted meanwhile?): plan again"
            )
        out[name] = fd
    return out


def create(rec: SharedMapRec) -> None:
    """Make the map and pin it (an existing pin of the name is replaced: a replace's create)."""
    if not rec.owner:
        raise KernelError(f"shared map {rec.name}: no owning stack")
    path = pins.shared_map_pin(rec.owner, rec.name)
    try:
        fd = S.map_create(MAP_TYPES[rec.type], rec.key_size, rec.value_size, rec.max_entries, rec.flags, rec.name)
    except OSError as exc:
        raise explain("create", f"creating the shared map {rec.name} ({rec.type})", exc) from None
    try:
        if os.path.exists(path):
            bpffs.unpin(path)
        bpffs.pin(fd, path)
    finally:
        os.close(fd)


def delete(rec: SharedMapRec) -> None:
    if rec.owner:
        bpffs.unpin(pins.shared_map_pin(rec.owner, rec.name))
