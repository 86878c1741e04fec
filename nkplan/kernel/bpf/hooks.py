"""BPF hooks of devices in named namespaces: attach, query, update, detach, in words.

A hook's device is given by name and namespace. Its ifindex means something only inside that
namespace, and the kernel resolves LINK_CREATE / PROG_QUERY ifindexes in the calling thread's
namespace, so both the name lookup and the syscall run in one short-lived worker thread that has
setns()'ed there (netns.py). The fds it returns belong to the whole process, so the caller's
thread never leaves its namespace. LINK_UPDATE / LINK_DETACH act on a link fd: no hop needed.

netkit hooks (primary, peer) are reached through the primary's ifindex from the primary's
namespace, so a HookRef for them names the primary end, whichever end the program runs on."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from nkplan.core.records import HOST
from nkplan.errors import KernelError
from nkplan.kernel.bpf import bpffs, info, mprog
from nkplan.kernel.bpf import consts as C
from nkplan.kernel.bpf.errors import StaleHookError
from nkplan.kernel.bpf.mprog import Anchor, HookState
from nkplan.kernel.bpf.refusals import explain
from nkplan.kernel.netlink import netns
from nkplan.kernel.netlink.refusals import no_namespace, where

T = TypeVar("T")


@dataclass(frozen=True)
class HookRef:
    namespace: str  # HOST ("") or a named namespace: where `device` lives
    device: str  # for netkit hooks: the primary end
    hook: C.Hook

    @property
    def attach_type(self) -> int:
        return C.ATTACH_TYPES[self.hook]

    def words(self) -> str:
        return f"{C.HOOK_WORDS[self.hook]} of {self.device} in {where(self.namespace)}"


def in_netns(namespace: str, doing: str, fn: Callable[[], T]) -> T:
    """Run fn in a thread inside the named namespace (HOST: right here, no thread)."""
    if namespace == HOST:
        return fn()
    try:
        fd = netns.open_ns(namespace)
    except FileNotFoundError:
        raise no_namespace(namespace, doing) from None
    try:
        return netns.in_namespace(fd, fn)
    finally:
        os.close(fd)


def _ifindex(ref: HookRef, doing: str) -> int:
    try:
        return socket.if_nametoindex(ref.device)
    except OSError:
        raise KernelError(f"{doing}: no device {ref.device} in {where(ref.namespace)}", errno.ENODEV) from None


def ifindex(namespace: str, device: str) -> int:
    """The device's ifindex inside its namespace."""
    ref = HookRef(namespace, device, "ingress")
    doing = f"looking up {device} in {where(namespace)}"
    return in_netns(namespace, doing, lambda: _ifindex(ref, doing))


def _label(prog_fd: int, program: str | None) -> str:
    if program:
        return program
    try:
        return info.prog_info(prog_fd).name or "the program"
    except OSError:
        return "the program"


def attach(
    ref: HookRef, prog_fd: int, *, anchor: Anchor | None = None, expected_revision: int = 0, program: str | None = None
) -> int:
    """Create a bpf_link running prog_fd at the hook, positioned by anchor (None: last); with
    expected_revision (from query().revision) only if the hook has not changed since. Returns the
    link fd (close it once the link is pinned, or the program detaches when the process ends).
    Raises StaleHookError on a revision mismatch, KernelError with words otherwise."""
    where_to = f" ({anchor.words()})" if anchor is not None else ""
    doing = f"attaching {_label(prog_fd, program)} at {ref.words()}{where_to}"

    def inside() -> int:
        idx = _ifindex(ref, doing)
        try:
            return mprog.link_create(prog_fd, idx, ref.attach_type, anchor, expected_revision)
        except OSError as exc:
            if exc.errno == errno.ESTALE:
                try:
                    now: int | None = mprog.prog_query(idx, ref.attach_type).revision
                except OSError:
                    now = None
                raise _stale(doing, expected_revision, now) from None
            raise explain("attach", doing, exc, anchor.words() if anchor else "") from None

    return in_netns(ref.namespace, doing, inside)


def _stale(doing: str, expected: int, now: int | None) -> StaleHookError:
    seen = f"revision {now}" if now is not None else "a newer revision"
    return StaleHookError(
        f"{doing}: the hook changed concurrently ({seen}, planned against revision {expected}): another "
        "process attached, detached or replaced a program there since it was read; nothing was changed, plan again",
        expected,
        now,
    )


def query(ref: HookRef) -> HookState:
    """The hook's programs and links in run order, and its revision."""
    doing = f"reading the programs at {ref.words()}"

    def inside() -> HookState:
        idx = _ifindex(ref, doing)
        try:
            return mprog.prog_query(idx, ref.attach_type)
        except OSError as exc:
            raise explain("query", doing, exc) from None

    return in_netns(ref.namespace, doing, inside)


def update(link_fd: int, new_prog_fd: int, *, old_prog_fd: int | None = None, what: str = "the link") -> None:
    """Swap the link's program atomically (BPF_LINK_UPDATE): same link id, same position, no
    moment without a program. With old_prog_fd, only if the link still runs that program.
    `what` names the link in messages (e.g. "count_pass at tcx ingress of eth0 in namespace p")."""
    doing = f"updating {what} to {_label(new_prog_fd, None)}"
    try:
        mprog.link_update(link_fd, new_prog_fd, old_prog_fd)
    except OSError as exc:
        raise explain("update", doing, exc) from None


def detach(link_fd: int, *, what: str = "the link") -> None:
    """Take the link's program off its hook now (BPF_LINK_DETACH); its pin, if any, stays until
    unpinned. Detaching a link that is already defunct is not an error."""
    try:
        mprog.link_detach(link_fd)
    except OSError as exc:
        if exc.errno == errno.ENOLINK:
            return
        raise explain("detach", f"detaching {what}", exc) from None


def remove_pinned_link(path: str, *, what: str = "the pinned link") -> bool:
    """Detach the link pinned at path and remove the pin (and its maps). Detaching first makes
    the program leave the hook now: after a bare unpin the kernel frees the link in deferred work,
    a moment later. False if nothing was pinned there."""
    fd = bpffs.open_pin(path)
    if fd is None:
        return bpffs.unpin(path)
    try:
        detach(fd, what=what)
    finally:
        os.close(fd)
    bpffs.unpin(path)
    return True
