"""What this machine lacks for BPF programs on tcx/netkit hooks, found out without changing
anything (no mount, no load, no attach): for plan-time capability errors.

The one kernel call is a read: BPF_PROG_QUERY of tcx ingress on the loopback device of the
calling thread's namespace, which answers EINVAL on kernels without tcx (before 6.6, or without
CONFIG_NET_XGRESS) and EPERM without the capabilities. Whether netkit itself exists is the
netkit probe's business (nkplan/kernel/netlink/probe.py)."""

from __future__ import annotations

import ctypes
import errno
import os

from nkplan.kernel import caps
from nkplan.kernel.bpf import consts as C
from nkplan.kernel.bpf import mprog

LOOPBACK_IFINDEX = 1  # lo is ifindex 1 in every network namespace


def problems() -> list[str]:
    """Sentences naming each missing piece; empty if programs can be loaded, attached and pinned."""
    found: list[str] = []
    release = os.uname().release
    with open("/proc/filesystems", encoding="ascii") as fh:
        if not any(line.split()[-1:] == ["bpf"] for line in fh):
            found.append(f"this kernel ({release}) has no bpffs, so nkplan cannot pin programs (CONFIG_BPF_SYSCALL)")
    eff = caps.effective()
    if not (caps.has(eff, caps.CAP_BPF, caps.CAP_NET_ADMIN) or caps.has(eff, caps.CAP_SYS_ADMIN, caps.CAP_NET_ADMIN)):
        found.append("loading and attaching BPF programs needs root (CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN)")
    try:
        ctypes.CDLL("libbpf.so.1")
    except OSError:
        found.append("libbpf.so.1 is not installed (Debian package libbpf1)")
    try:
        mprog.prog_query(LOOPBACK_IFINDEX, C.BPF_TCX_INGRESS)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            found.append(f"this kernel ({release}) has no tcx hooks (Linux >= 6.6 with CONFIG_NET_XGRESS)")
        elif exc.errno == errno.ENOSYS:
            found.append(f"this kernel ({release}) has no bpf() system call (CONFIG_BPF_SYSCALL)")
        elif exc.errno == errno.EPERM and not found:
            found.append("reading BPF hooks is not permitted: needs root (CAP_NET_ADMIN)")
    return found
