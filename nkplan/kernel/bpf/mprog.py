"""Multi-program hooks (tcx and netkit, kernel/bpf/mprog.c): create, update and detach bpf_links,
and query a hook's programs in order. All take the hook's device as an ifindex of the calling
thread's network namespace; hooks.py does the namespace hop and the wording.

Position of a new program (Anchor): BPF_F_BEFORE / BPF_F_AFTER relative to a program or a link
given by fd or by id (BPF_F_ID, BPF_F_LINK); with no relative object, BEFORE means first and
AFTER means last; no anchor at all appends. expected_revision (0 = unchecked) makes the change
conditional: if the hook changed since the caller read its revision, the kernel says ESTALE."""

from __future__ import annotations

import ctypes
import errno
import struct
from dataclasses import dataclass
from typing import Literal

from nkplan.kernel.bpf import consts as C
from nkplan.kernel.bpf.syscall import Attr, bpf


@dataclass(frozen=True)
class Anchor:
    """Where a new program goes: before/after a program or link (by id or fd), or first/last."""

    where: Literal["before", "after"]
    prog_id: int | None = None
    link_id: int | None = None
    prog_fd: int | None = None
    link_fd: int | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.prog_id, self.link_id, self.prog_fd, self.link_fd) if v is not None]
        if len(given) > 1:
            raise ValueError("an anchor names at most one program or link")

    @classmethod
    def first(cls) -> Anchor:
        return cls("before")

    @classmethod
    def last(cls) -> Anchor:
        return cls("after")

    def flags(self) -> int:
        flags = C.BPF_F_BEFORE if self.where == "before" else C.BPF_F_AFTER
        if self.link_id is not None:
            flags |= C.BPF_F_LINK | C.BPF_F_ID
        elif self.link_fd is not None:
            flags |= C.BPF_F_LINK
        elif self.prog_id is not None:
            flags |= C.BPF_F_ID
        return flags

    def relative(self) -> int:
        for value in (self.prog_id, self.link_id, self.prog_fd, self.link_fd):
            if value is not None:
                return value
        return 0

    def words(self) -> str:
        if self.prog_id is not None:
            return f"{self.where} program id {self.prog_id}"
        if self.link_id is not None:
            return f"{self.where} link id {self.link_id}"
        if self.prog_fd is not None or self.link_fd is not None:
            return f"{self.where} the given {'program' if self.prog_fd is not None else 'link'}"
        return "first" if self.where == "before" else "last"


@dataclass(frozen=True)
class HookEntry:
    prog_id: int
    link_id: int | None  # None: attached without a link (legacy BPF_PROG_ATTACH), or not reported


@dataclass(frozen=True)
class HookState:
    """A hook's programs in run order, and its revision (bumped by every attach/detach/replace)."""

    revision: int
    entries: tuple[HookEntry, ...]

    @property
    def prog_ids(self) -> tuple[int, ...]:
        return tuple(e.prog_id for e in self.entries)

    @property
    def link_ids(self) -> tuple[int | None, ...]:
        return tuple(e.link_id for e in self.entries)


def link_create(
    prog_fd: int, ifindex: int, attach_type: int, anchor: Anchor | None = None, expected_revision: int = 0
) -> int:
    """BPF_LINK_CREATE on a tcx/netkit hook; returns the new link's fd (the link lives while an
    fd or a bpffs pin holds it)."""
    attr = Attr().u32(0, prog_fd).u32(4, ifindex).u32(8, attach_type)
    if anchor is not None:
        attr.u32(12, anchor.flags()).u32(16, anchor.relative())
    attr.u64(24, expected_revision)
    return bpf(C.BPF_LINK_CREATE, attr)


def link_update(link_fd: int, new_prog_fd: int, old_prog_fd: int | None = None) -> None:
    """BPF_LINK_UPDATE: the link runs new_prog from now on, swapped atomically in place (same link,
    same position, no moment without a program). With old_prog_fd the swap happens only if the
    link still runs that program (BPF_F_REPLACE; otherwise EPERM)."""
    attr = Attr().u32(0, link_fd).u32(4, new_prog_fd)
    if old_prog_fd is not None:
        attr.u32(8, C.BPF_F_REPLACE).u32(12, old_prog_fd)
    bpf(C.BPF_LINK_UPDATE, attr)


def link_detach(link_fd: int) -> None:
    """BPF_LINK_DETACH: take the link's program off its hook now. The link object stays (defunct)
    as long as fds or pins hold it; unpin it too."""
    bpf(C.BPF_LINK_DETACH, Attr().u32(0, link_fd))


def prog_query(ifindex: int, attach_type: int) -> HookState:
    """BPF_PROG_QUERY: the hook's program and link ids in run order, with its revision."""
    # First ask for the count alone (no buffers: the kernel fills in count and revision): most
    # hooks a plan reads are empty (two per owned device end), and then that is the answer.
    attr = Attr().u32(0, ifindex).u32(4, attach_type)
    bpf(C.BPF_PROG_QUERY, attr)
    if attr.get_u32(24) == 0:
        return HookState(attr.get_u64(56), ())
    capacity = C.MPROG_MAX + 1
    while True:
        progs = ctypes.create_string_buffer(4 * capacity)
        links = ctypes.create_string_buffer(4 * capacity)
        attr = Attr().u32(0, ifindex).u32(4, attach_type).ptr(16, progs).u32(24, capacity).ptr(40, links)
        try:
            bpf(C.BPF_PROG_QUERY, attr)
        except OSError as exc:
            if exc.errno == errno.ENOSPC and attr.get_u32(24) > capacity:
                capacity = attr.get_u32(24)  # the hook grew between calls (or a future limit)
                continue
            raise
        count = attr.get_u32(24)
        prog_ids = struct.unpack_from(f"={count}I", progs.raw)
        link_ids = struct.unpack_from(f"={count}I", links.raw)
        entries = tuple(HookEntry(p, lk or None) for p, lk in zip(prog_ids, link_ids, strict=True))
        return HookState(attr.get_u64(56), entries)
