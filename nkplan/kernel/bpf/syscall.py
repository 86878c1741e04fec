"""The raw bpf(2) system call through ctypes, and the fd-level commands built on it.

Each command packs its part of union bpf_attr into a zeroed buffer at the byte offsets of the
uapi header (listed in NETKIT-FACTS.md; checked against Linux 6.1's header with offsetof).
Pointers inside the attr point at ctypes buffers that stay referenced until the call returns.

Failures leave as OSError(errno): only the caller knows which operation on which hook failed, so
wording happens one level up (refusals.py), as in the rtnetlink code."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from nkplan.kernel import faultpoint
from nkplan.kernel.bpf import consts as C

SYS_BPF = 321  # x86_64 (arch/x86/entry/syscalls/syscall_64.tbl)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
_libc.syscall.restype = ctypes.c_long


class Attr:
    """A zeroed union bpf_attr with typed setters; keeps the buffers it points at alive."""

    def __init__(self) -> None:
        self.buf = ctypes.create_string_buffer(C.BPF_ATTR_SIZE)
        self._keep: list[ctypes.Array[ctypes.c_char]] = []

    def u32(self, offset: int, value: int) -> Attr:
        struct.pack_into("=I", self.buf, offset, value)
        return self

    def u64(self, offset: int, value: int) -> Attr:
        struct.pack_into("=Q", self.buf, offset, value)
        return self

    def ptr(self, offset: int, target: ctypes.Array[ctypes.c_char]) -> Attr:
        self._keep.append(target)
        return self.u64(offset, ctypes.addressof(target))

    def get_u32(self, offset: int) -> int:
        return int(struct.unpack_from("=I", self.buf, offset)[0])

    def get_u64(self, offset: int) -> int:
        return int(struct.unpack_from("=Q", self.buf, offset)[0])


# the commands that change what a hook runs or what bpffs holds (faultpoint.py); loading a
# program or making a map changes nothing another process sees until it is attached or pinned
_CHANGES = {
    C.BPF_OBJ_PIN: "OBJ_PIN",
    C.BPF_LINK_CREATE: "LINK_CREATE",
    C.BPF_LINK_UPDATE: "LINK_UPDATE",
    C.BPF_LINK_DETACH: "LINK_DETACH",
}


def bpf(cmd: int, attr: Attr) -> int:
    """bpf(cmd, &attr, sizeof attr); the result (an fd for fd-returning commands), or OSError."""
    if cmd in _CHANGES:
        faultpoint.reached(f"bpf({_CHANGES[cmd]})")
    while True:
        rc = _libc.syscall(SYS_BPF, cmd, ctypes.addressof(attr.buf), C.BPF_ATTR_SIZE)
        if rc >= 0:
            return int(rc)
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def cstring(path: str) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(os.fsencode(path))


# pins ----------------------------------------------------------------------------------------
def obj_pin(fd: int, path: str) -> None:
    """Pin the program/map/link behind fd at path (in a bpffs): it then lives until unlinked."""
    bpf(C.BPF_OBJ_PIN, Attr().ptr(0, cstring(path)).u32(8, fd))


def obj_get(path: str) -> int:
    """A new fd for the object pinned at path."""
    return bpf(C.BPF_OBJ_GET, Attr().ptr(0, cstring(path)))


# ids → fds -----------------------------------------------------------------------------------
def prog_fd_by_id(prog_id: int) -> int:
    return bpf(C.BPF_PROG_GET_FD_BY_ID, Attr().u32(0, prog_id))


def map_fd_by_id(map_id: int) -> int:
    return bpf(C.BPF_MAP_GET_FD_BY_ID, Attr().u32(0, map_id))


def link_fd_by_id(link_id: int) -> int:
    return bpf(C.BPF_LINK_GET_FD_BY_ID, Attr().u32(0, link_id))


# OBJ_GET_INFO_BY_FD ----------------------------------------------------------------------------
_INFO_BUF = 512  # larger than any info struct of current kernels; the kernel checks the tail is zero


def info_by_fd(fd: int, fill: dict[int, int] | None = None) -> bytes:
    """The raw info struct (bpf_prog_info / bpf_map_info / bpf_link_info) for the object behind
    fd. fill presets u64 fields of the struct before the call (pointers and array lengths for
    the kernel to fill in)."""
    info = ctypes.create_string_buffer(_INFO_BUF)
    for offset, value in (fill or {}).items():
        struct.pack_into("=Q", info, offset, value)
    attr = Attr().u32(0, fd).u32(4, _INFO_BUF).ptr(8, info)
    bpf(C.BPF_OBJ_GET_INFO_BY_FD, attr)
    return info.raw[: attr.get_u32(4)]


# maps -----------------------------------------------------------------------------------------
def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int, name: str) -> int:
    """MAP_CREATE without BTF: an fd of the new map (close it; a pin keeps the map)."""
    attr = Attr().u32(0, map_type).u32(4, key_size).u32(8, value_size).u32(12, max_entries).u32(16, flags)
    struct.pack_into("=16s", attr.buf, 28, name.encode()[: C.BPF_OBJ_NAME_LEN - 1])  # map_name[16]
    return bpf(C.BPF_MAP_CREATE, attr)


def map_lookup_raw(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    """MAP_LOOKUP_ELEM: value_size bytes for key, or None when the map has no such key."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    try:
        bpf(C.BPF_MAP_LOOKUP_ELEM, Attr().u32(0, map_fd).ptr(8, k).ptr(16, v))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return v.raw


def map_update_raw(map_fd: int, key: bytes, value: bytes) -> None:
    """MAP_UPDATE_ELEM with BPF_ANY (create or replace)."""
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
    bpf(C.BPF_MAP_UPDATE_ELEM, Attr().u32(0, map_fd).ptr(8, k).ptr(16, v).u64(24, 0))


ENOTSUPP = 524  # the kernel's internal "not supported", which bpf() hands out as is


class BatchError(OSError):
    """MAP_UPDATE_BATCH failed after the kernel wrote the first `written` entries."""

    def __init__(self, err: int, written: int) -> None:
        super().__init__(err, os.strerror(err))
        self.written = written


def map_update_batch(map_fd: int, keys: list[bytes], values: list[bytes]) -> bool:
    """All entries in one MAP_UPDATE_BATCH (Linux >= 5.6, hash, LRU hash and array maps; the keys
    and values each one contiguous buffer). False when the kernel refuses the command before
    writing anything (an older kernel, a map type without batch operations): the caller writes
    them one by one. BatchError when it fails after writing `written` of them (the entry at that
    index is the one refused)."""
    if not keys:
        return True
    k, v = b"".join(keys), b"".join(values)
    kb, vb = ctypes.create_string_buffer(k, len(k)), ctypes.create_string_buffer(v, len(v))
    # union bpf_attr's batch: in_batch, out_batch, keys, values (u64), count, map_fd (u32), elem_flags, flags
    attr = Attr().ptr(16, kb).ptr(24, vb).u32(32, len(keys)).u32(36, map_fd).u64(40, 0)
    try:
        bpf(C.BPF_MAP_UPDATE_BATCH, attr)
    except OSError as exc:
        # the kernel writes `count` back only once it has begun; refused up front, it still
        # holds what was asked (ENOTSUPP: the map type has no batch operation)
        written = attr.get_u32(32)
        if exc.errno in (ENOTSUPP, errno.EOPNOTSUPP, errno.EINVAL) and written in (0, len(keys)):
            return False
        raise BatchError(exc.errno or errno.EIO, written if written < len(keys) else 0) from None
    return True


def map_delete_raw(map_fd: int, key: bytes) -> None:
    """MAP_DELETE_ELEM; a key that is already gone is fine."""
    k = ctypes.create_string_buffer(key, len(key))
    try:
        bpf(C.BPF_MAP_DELETE_ELEM, Attr().u32(0, map_fd).ptr(8, k))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def map_keys(map_fd: int, key_size: int, limit: int) -> list[bytes] | None:
    """Every key of a map (MAP_GET_NEXT_KEY from none), or None when it has more than `limit`."""
    keys: list[bytes] = []
    nxt = ctypes.create_string_buffer(key_size)
    prev: ctypes.Array[ctypes.c_char] | None = None
    while True:
        attr = Attr().u32(0, map_fd).ptr(16, nxt)
        if prev is not None:
            attr.ptr(8, prev)
        try:
            bpf(C.BPF_MAP_GET_NEXT_KEY, attr)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return keys
            raise
        if len(keys) >= limit:
            return None
        keys.append(nxt.raw)
        prev = ctypes.create_string_buffer(nxt.raw, key_size)


def possible_cpus() -> int:
    """How many value slots a per-CPU map returns: the kernel's possible CPUs, not the online ones."""
    with open("/sys/devices/system/cpu/possible", encoding="ascii") as fh:
        text = fh.read().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count
