"""This process's effective capabilities (linux/capability.h numbers), read from
/proc/self/status: the privilege check before changing network state (linux.py) and the BPF
capability probe (bpf/probe.py) ask the same question of the same line."""

from __future__ import annotations

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_BPF = 39


def effective() -> int:
    """The CapEff mask (0 if the line is missing)."""
    # errors="replace": the Name: line is the process's comm, which need not be ASCII
    with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def has(mask: int, *caps: int) -> bool:
    """Does the mask hold every one of caps?"""
    return all(mask & (1 << c) for c in caps)
