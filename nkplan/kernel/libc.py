"""The C library calls nkplan makes through ctypes for namespaces and mounts, bound once:
setns(2), unshare(2), mount(2), umount2(2). Named namespaces (netlink/netns.py) and bpffs
(bpf/bpffs.py) both mount, and one prototype of mount keeps their argument types from drifting.
Failures leave as OSError(errno, "<what>: <strerror>"): only the caller can word them."""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace behind fd."""
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int, what: str) -> None:
    """Move the calling thread into new namespaces (`what` names them in the error)."""
    _check(_libc.unshare(flags), what)


def mount(source: str, target: str, fstype: str, flags: int, data: str | None = None) -> None:
    data_b = None if data is None else data.encode()
    _check(_libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags, data_b), f"mount {target}")


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(os.fsencode(target), flags), f"umount {target}")
