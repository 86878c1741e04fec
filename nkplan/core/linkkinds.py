"""Link kinds as a table (netkit, veth): which settings a kind has, which of them are fixed when
the pair is created (a change means delete and recreate, NETKIT-FACTS.md), and their defaults.
The spec checks, the desired records, the link resource type and `show` read this table; the
kernel half of a kind (IFLA_INFO_DATA encoding and decoding, the capability probe) lives in
nkplan/kernel/netlink."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nkplan.core.records import Kind


@dataclass(frozen=True)
class LinkKind:
    name: Kind
    pair_fields: tuple[str, ...] = ()  # settings of the pair (on the link) only this kind has
    end_fields: tuple[str, ...] = ()  # settings of each end only this kind has
    # record paths fixed at creation → the reason shown when a change forces a replace
    fixed: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # what the kernel uses when omitted


# fixed by every kind: an end cannot be renamed into another pair or moved out of it in place
_ANY_KIND_FIXED = {
    "kind": "kind cannot change in place",
    "peer.name": "the peer's name cannot change in place",
    "peer.namespace": "the peer cannot move to another namespace in place",
}

NETKIT = LinkKind(
    "netkit",
    pair_fields=("mode", "headroom", "tailroom", "programs"),
    end_fields=("policy", "scrub"),
    fixed={
        **_ANY_KIND_FIXED,
        "mode": "mode cannot change in place",
        "headroom": "headroom cannot change in place",
        "tailroom": "tailroom cannot change in place",
        "primary.scrub": "scrub cannot change in place",
        "peer.scrub": "peer scrub cannot change in place",
        "primary.mac": "an L3 netkit device has no settable MAC",
        "peer.mac": "an L3 netkit device has no settable MAC",
    },
    defaults={"mode": "l3", "policy": "forward", "scrub": "default", "headroom": 0, "tailroom": 0},
)
VETH = LinkKind("veth", fixed=dict(_ANY_KIND_FIXED))

KINDS: dict[str, LinkKind] = {k.name: k for k in (NETKIT, VETH)}
# settings some kind has and another lacks: declaring one on a kind without it is a spec error
KIND_ONLY_PAIR = tuple(dict.fromkeys(f for k in KINDS.values() for f in k.pair_fields if f != "programs"))
KIND_ONLY_END = tuple(dict.fromkeys(f for k in KINDS.values() for f in k.end_fields))


def kind_of(name: str) -> LinkKind:
    return KINDS[name]


def mac_settable(kind: str, mode: str | None) -> bool:
    """An L3 netkit device has no MAC (all zero, IFF_NOARP); setting one is refused."""
    return not (kind == "netkit" and (mode or NETKIT.defaults["mode"]) == "l3")
