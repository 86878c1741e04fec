"""Link kinds as a table (netkit, veth): which settings a kind has, which of them are fixed when
the pair is created (a change means delete and recreate, NETKIT-FACTS.md), which it only reports,
and their defaults. The spec checks, the desired records, the link resource type, `show` and the
fake kernel read this table; its kernel half (how each setting travels in IFLA_INFO_DATA, the
capability probe) is nkplan/kernel/netlink/kinds.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nkplan.core.records import Kind


@dataclass(frozen=True)
class LinkKind:
    name: Kind
    pair_fields: tuple[str, ...] = ()  # settings of the pair (on the link) only this kind has
    end_fields: tuple[str, ...] = ()  # settings of each end only this kind has
    # record paths the kernel takes only at creation and refuses to change later → the reason
    # shown when a change forces a replace
    created_only: dict[str, str] = field(default_factory=dict)
    # other record paths a change of which forces a replace (names, kind, MACs that cannot be set)
    also_fixed: dict[str, str] = field(default_factory=dict)
    # record fields the kernel reports but nkplan does not let a spec set yet: always the default
    # on the desired side
    read_only: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)  # what the kernel uses when omitted

    @property
    def fixed(self) -> dict[str, str]:
        """Every record path whose change forces a replace → the reason."""
        return {**self.also_fixed, **self.created_only}


def value_at(rec: Any, path: str) -> Any:
    """A record's value at a path ("mode", "peer.scrub")."""
    for part in path.split("."):
        rec = getattr(rec, part)
    return rec


def path_label(path: str) -> str:
    """A record path as a message names it: "peer.scrub" → "peer scrub", "primary.scrub" → "scrub"."""
    return path.removeprefix("primary.").replace(".", " ")


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
    created_only={
        "mode": "mode cannot change in place",
        "primary.scrub": "scrub cannot change in place",
        "peer.scrub": "peer scrub cannot change in place",
        "headroom": "headroom cannot change in place",
        "tailroom": "tailroom cannot change in place",
        "pairing": "pairing cannot change in place",
    },
    also_fixed={
        **_ANY_KIND_FIXED,
        "primary.mac": "an L3 netkit device has no settable MAC",
        "peer.mac": "an L3 netkit device has no settable MAC",
    },
    # IFLA_NETKIT_PAIRING (Linux 7.1): "pair", or "single" for a device without a peer; a pair
    # on every older kernel
    read_only=("pairing",),
    defaults={"mode": "l3", "policy": "forward", "scrub": "default", "headroom": 0, "tailroom": 0, "pairing": "pair"},
)
VETH = LinkKind("veth", also_fixed=dict(_ANY_KIND_FIXED))

KINDS: dict[str, LinkKind] = {k.name: k for k in (NETKIT, VETH)}
# settings some kind has and another lacks: declaring one on a kind without it is a spec error
KIND_ONLY_PAIR = tuple(dict.fromkeys(f for k in KINDS.values() for f in k.pair_fields if f != "programs"))
KIND_ONLY_END = tuple(dict.fromkeys(f for k in KINDS.values() for f in k.end_fields))


def kind_of(name: str) -> LinkKind:
    return KINDS[name]


def mac_settable(kind: str, mode: str | None) -> bool:
    """An L3 netkit device has no MAC (all zero, IFF_NOARP); setting one is refused."""
    return not (kind == "netkit" and (mode or NETKIT.defaults["mode"]) == "l3")
