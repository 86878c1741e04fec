"""bpf() refusals in words: (operation, errno) → the reason, as kernel/netlink/refusals.py does for
rtnetlink. Pure: no ctypes. Errnos checked on Linux 6.12, 7.3 (netkit) and 6.18 (tcx):

- LINK_CREATE: EEXIST the same program is already on the hook; ESTALE expected_revision
  mismatch; ENOENT the anchor program/link is not on that hook (or does not exist); ERANGE the
  hook is full (63); EACCES a netkit hook addressed through the peer; ENXIO a netkit hook on a
  device that is not netkit; EINVAL netkit attach types on a kernel without netkit.
- LINK_UPDATE: EPERM the link no longer runs old_prog; ENOLINK defunct link (device gone or
  detached); EEXIST the new program already sits elsewhere on the hook."""

from __future__ import annotations

import errno as E
import os

from nkplan.errors import KernelError
from nkplan.kernel.netlink.refusals import errname

_ROOT = "not permitted: BPF needs root (CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN)"

REASONS: dict[tuple[str, int], str] = {
    ("attach", E.EEXIST): "that program is already attached at this hook (a program runs at most once per hook)",
    ("attach", E.ENOENT): "the anchor ({anchor}) is not attached at this hook",
    ("attach", E.ERANGE): "the hook already holds the most programs it can (63)",
    ("attach", E.EACCES): "netkit hooks are reached only through the primary device, not the peer",
    ("attach", E.ENXIO): "the device is not a netkit device (netkit hooks exist only on netkit pairs)",
    ("attach", E.EINVAL): "the kernel rejects the attachment (EINVAL): for a netkit hook, this kernel may "
    "lack netkit (CONFIG_NETKIT); otherwise the program may not be a tc (SCHED_CLS) program",
    ("update", E.EPERM): "the link no longer runs the program the change was planned against "
    "(it was replaced concurrently)",
    ("update", E.ENOLINK): "the link is defunct: its device is gone or the program was detached",
    ("update", E.EEXIST): "the new program is already attached elsewhere at this hook",
    ("update", E.EINVAL): "the kernel rejects the swap (EINVAL): the new program must be a tc (SCHED_CLS) program",
    ("create", E.EINVAL): "the kernel refuses this definition (EINVAL): sizes or flags do not suit the map type "
    "(an lpm_trie needs map_flags 1, BPF_F_NO_PREALLOC, and a key of 4 bytes of prefix length and the address)",
    ("create", E.E2BIG): "the map would be too large (E2BIG)",
    ("create", E.ENOMEM): "the kernel cannot allocate that much memory for the map (ENOMEM)",
    ("pin", E.EEXIST): "something is already pinned at that path",
    ("pin", E.ENOENT): "its directory does not exist",
    ("pin", E.EPERM): "not permitted: the path is not in a bpffs, or BPF needs root",
    ("get", E.ENOENT): "nothing is pinned there",
    ("get", E.EPERM): "not permitted: the path is not in a bpffs, or BPF needs root",
    ("*", E.ENODEV): "no such device",
    ("*", E.EPERM): _ROOT,
    ("*", E.EBADF): "the file descriptor does not refer to the expected BPF object",
    ("*", E.ENOSYS): "this kernel has no bpf() system call (CONFIG_BPF_SYSCALL)",
}


def explain(operation: str, doing: str, exc: OSError, anchor: str = "") -> KernelError:
    """KernelError "<doing>: <reason>" for a refusal of one of the operations above."""
    num = exc.errno or 0
    reason = REASONS.get((operation, num)) or REASONS.get(("*", num))
    if reason is None:
        reason = f"the kernel refuses ({errname(num)}: {os.strerror(num)})"
    return KernelError(f"{doing}: {reason.format(anchor=anchor)}", num)
