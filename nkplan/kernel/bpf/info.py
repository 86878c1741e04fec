"""What the kernel says about a program, a link or a map (BPF_OBJ_GET_INFO_BY_FD), as typed
records, and map lookups by key. Offsets: struct bpf_{prog,link,map}_info of the uapi header."""

from __future__ import annotations

import ctypes
import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass

from nkplan.core.records import MapDef
from nkplan.errors import KernelError
from nkplan.kernel.bpf import consts as C
from nkplan.kernel.bpf import syscall as S
from nkplan.kernel.bpf.refusals import explain

# struct bpf_prog_info
_PROG_TYPE, _PROG_ID, _PROG_TAG, _PROG_NR_MAP_IDS, _PROG_MAP_IDS, _PROG_NAME = 0, 4, 8, 52, 56, 64
# struct bpf_link_info (the union at 16 is {ifindex, attach_type} for tcx and netkit links)
_LINK_TYPE, _LINK_ID, _LINK_PROG_ID, _LINK_IFINDEX, _LINK_ATTACH_TYPE = 0, 4, 8, 16, 20
# struct bpf_map_info
_MAP_TYPE, _MAP_ID, _MAP_KEY_SIZE, _MAP_VALUE_SIZE, _MAP_MAX_ENTRIES, _MAP_FLAGS, _MAP_NAME = 0, 4, 8, 12, 16, 20, 24


def _u32(raw: bytes, offset: int) -> int:
    return int(struct.unpack_from("=I", raw, offset)[0])


def _name(raw: bytes, offset: int) -> str:
    return raw[offset : offset + C.BPF_OBJ_NAME_LEN].split(b"\0", 1)[0].decode(errors="replace")


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    name: str  # the kernel's copy: at most 15 characters of the ELF name
    tag: str  # hex of the kernel's 8-byte tag (a hash of the loaded instructions)
    map_ids: tuple[int, ...]


@dataclass(frozen=True)
class LinkInfo:
    id: int
    type: int  # C.BPF_LINK_TYPE_*
    prog_id: int
    ifindex: int  # tcx/netkit links only; 0 once the device is gone (the link is then defunct)
    attach_type: int  # tcx/netkit links only

    @property
    def hook(self) -> C.Hook | None:
        if self.type not in (C.BPF_LINK_TYPE_TCX, C.BPF_LINK_TYPE_NETKIT):
            return None
        return C.HOOK_OF_ATTACH_TYPE.get(self.attach_type)


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0

    def definition(self) -> MapDef:
        return MapDef(self.name, self.type, self.key_size, self.value_size, self.max_entries, self.flags)

    @property
    def per_cpu(self) -> bool:
        return self.type in C.PERCPU_MAP_TYPES


def prog_info(fd: int) -> ProgInfo:
    raw = S.info_by_fd(fd)
    nr_maps = _u32(raw, _PROG_NR_MAP_IDS)
    map_ids: tuple[int, ...] = ()
    if nr_maps:
        # second call: let the kernel fill an array of map ids
        ids = ctypes.create_string_buffer(4 * nr_maps)
        raw = S.info_by_fd(fd, {_PROG_NR_MAP_IDS: nr_maps, _PROG_MAP_IDS: ctypes.addressof(ids)})
        got = min(nr_maps, _u32(raw, _PROG_NR_MAP_IDS))
        map_ids = struct.unpack_from(f"={got}I", ids.raw)
    return ProgInfo(
        id=_u32(raw, _PROG_ID),
        type=_u32(raw, _PROG_TYPE),
        name=_name(raw, _PROG_NAME),
        tag=raw[_PROG_TAG : _PROG_TAG + C.BPF_TAG_SIZE].hex(),
        map_ids=tuple(map_ids),
    )


def link_info(fd: int) -> LinkInfo:
    raw = S.info_by_fd(fd)
    return LinkInfo(
        id=_u32(raw, _LINK_ID),
        type=_u32(raw, _LINK_TYPE),
        prog_id=_u32(raw, _LINK_PROG_ID),
        ifindex=_u32(raw, _LINK_IFINDEX),
        attach_type=_u32(raw, _LINK_ATTACH_TYPE),
    )


def map_info(fd: int) -> MapInfo:
    raw = S.info_by_fd(fd)
    return MapInfo(
        id=_u32(raw, _MAP_ID),
        type=_u32(raw, _MAP_TYPE),
        name=_name(raw, _MAP_NAME),
        key_size=_u32(raw, _MAP_KEY_SIZE),
        value_size=_u32(raw, _MAP_VALUE_SIZE),
        max_entries=_u32(raw, _MAP_MAX_ENTRIES),
        flags=_u32(raw, _MAP_FLAGS),
    )


def map_lookup(map_fd: int, key: bytes) -> list[bytes] | None:
    """The value stored under key: one bytes object for an ordinary map, one per possible CPU for
    a per-CPU map (sum them for a total). None if the map holds no such key. The key must be
    exactly the map's key size (for an array: struct.pack('=I', index))."""
    info = map_info(map_fd)
    if len(key) != info.key_size:
        raise ValueError(f"map {info.name} takes {info.key_size}-byte keys, got {len(key)} bytes")
    if not info.per_cpu:
        raw = S.map_lookup_raw(map_fd, key, info.value_size)
        return None if raw is None else [raw]
    slot = (info.value_size + 7) & ~7  # the kernel rounds each CPU's slot up to 8 bytes
    raw = S.map_lookup_raw(map_fd, key, slot * S.possible_cpus())
    if raw is None:
        return None
    return [raw[i : i + info.value_size] for i in range(0, len(raw), slot)]


def _by_id(kind: str, opener: Callable[[int], int], obj_id: int) -> int:
    try:
        return opener(obj_id)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise KernelError(f"opening BPF {kind} id {obj_id}: no such {kind} (any more)", exc.errno) from None
        raise explain("open", f"opening BPF {kind} id {obj_id}", exc) from None


def open_prog(prog_id: int) -> int:
    """A new fd for the loaded program with this id (close it)."""
    return _by_id("program", S.prog_fd_by_id, prog_id)


def open_link(link_id: int) -> int:
    """A new fd for the link with this id (close it)."""
    return _by_id("link", S.link_fd_by_id, link_id)


def open_map(map_id: int) -> int:
    """A new fd for the map with this id (close it)."""
    return _by_id("map", S.map_fd_by_id, map_id)
