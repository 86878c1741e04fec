"""bpf() ABI numbers nkplan uses (include/uapi/linux/bpf.h of Linux >= 6.7; bookworm's headers
and libbpf 1.1 predate netkit, so the numbers live here, checked against NETKIT-FACTS.md).
Pure: no ctypes, so planning code may import the hook names."""

from __future__ import annotations

from typing import Literal

# bpf() commands (enum bpf_cmd)
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_MAP_UPDATE_BATCH = 26
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_DETACH = 34

# attach flags (multi-program hooks: tcx and netkit, kernel/bpf/mprog.c)
BPF_F_REPLACE = 0x4
BPF_F_BEFORE = 0x8
BPF_F_AFTER = 0x10
BPF_F_ID = 0x20
BPF_F_LINK = 0x2000

# attach types (enum bpf_attach_type)
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
BPF_NETKIT_PRIMARY = 54
BPF_NETKIT_PEER = 55

# link types (enum bpf_link_type)
BPF_LINK_TYPE_TCX = 11
BPF_LINK_TYPE_NETKIT = 13

# program types (enum bpf_prog_type)
BPF_PROG_TYPE_UNSPEC = 0
BPF_PROG_TYPE_SCHED_CLS = 3

# map types whose values come back once per possible CPU (enum bpf_map_type)
PERCPU_MAP_TYPES = frozenset({5, 6, 10, 21})  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8
# sizeof(union bpf_attr) in Linux 6.1's uapi header: covers every field used here. The kernel
# zero-fills a shorter attr and accepts a longer one only if its tail is zero, so one zeroed
# buffer of this size serves every kernel this project meets.
BPF_ATTR_SIZE = 144

MPROG_MAX = 63  # programs per multi-program hook

# nkplan's hook names → attach types. netkit hooks are reached through the primary's ifindex.
Hook = Literal["primary", "peer", "ingress", "egress"]
ATTACH_TYPES: dict[Hook, int] = {
    "primary": BPF_NETKIT_PRIMARY,
    "peer": BPF_NETKIT_PEER,
    "ingress": BPF_TCX_INGRESS,
    "egress": BPF_TCX_EGRESS,
}
HOOK_OF_ATTACH_TYPE: dict[int, Hook] = {v: k for k, v in ATTACH_TYPES.items()}
NETKIT_HOOKS: tuple[Hook, ...] = ("primary", "peer")
TCX_HOOKS: tuple[Hook, ...] = ("ingress", "egress")

# how a hook is named in messages
HOOK_WORDS: dict[Hook, str] = {
    "primary": "the netkit primary hook",
    "peer": "the netkit peer hook",
    "ingress": "tcx ingress",
    "egress": "tcx egress",
}
