"""Link kinds as a table (netkit, veth): which settings a kind has, which of them are fixed when
the pair is created (a change means delete and recreate, NETKIT-FACTS.md), which it only reports,
and their defaults. The spec checks, the desired records, the link resource type, `show` and the
fake kernel read this table; its kernel half (how each setting travels in IFLA_INFO_DATA, the
capability probe) is nkplan/kernel/netlink/kinds.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nkplan.core.records import Kind, LinkRec


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
    # record fields added after stacks were applied (and the kernel attributes after kernels
    # shipped): a document written before, or a kernel older than the attribute, holds the
    # default; the applied digest leaves them out while they hold it, so the drift marks of
    # stacks applied before stay valid
    late: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)  # what the kernel uses when omitted

    @property
    def fixed(self) -> dict[str, str]:
        """Every record path whose change forces a replace → the reason."""
        return {**self.also_fixed, **self.created_only}


def value_at(rec: Any, path: str) -> Any:
    """A record's value at a path ("mode", "peer.scrub"); None under an absent end (the peer
    of a single device)."""
    for part in path.split("."):
        if rec is None:
            return None
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
    pair_fields=("mode", "headroom", "tailroom", "pairing", "programs"),
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
    # on every older kernel (and in documents written before nkplan read it)
    late=("pairing",),
    defaults={"mode": "l3", "policy": "forward", "scrub": "default", "headroom": 0, "tailroom": 0, "pairing": "pair"},
)
VETH = LinkKind("veth", also_fixed=dict(_ANY_KIND_FIXED))

KINDS: dict[str, LinkKind] = {k.name: k for k in (NETKIT, VETH)}
# settings some kind has and another lacks: declaring one on a kind without it is a spec error
KIND_ONLY_PAIR = tuple(dict.fromkeys(f for k in KINDS.values() for f in k.pair_fields if f != "programs"))

# A netkit device in single mode (pairing: single) has no peer, and the kernel (7.1+, checked on
# 7.3) refuses at creation what belongs to a peer or to the pair's policy: peer info, peer
# policy, peer scrub, a scrub of its own, policy blackhole (EOPNOTSUPP); later it refuses any
# policy change (EOPNOTSUPP) and BPF at the netkit hooks (EOPNOTSUPP; tcx works). Spec settings
# it cannot take → why, for the spec checks.
SINGLE_REFUSES = {
    "scrub": "the kernel takes no scrub setting for a single netkit device",
    "programs": (
        "a single netkit device has no netkit hooks (the kernel refuses BPF there); "
        "use 'tcx: {ingress: [...], egress: [...]}'"
    ),
}
SINGLE_POLICY = "forward"  # the only policy a single device has (blackhole is refused)
KIND_ONLY_END = tuple(dict.fromkeys(f for k in KINDS.values() for f in k.end_fields))


def kind_of(name: str) -> LinkKind:
    return KINDS[name]


def noun(rec: LinkRec) -> str:
    """What a link is, in messages: "netkit pair", "veth pair", "single netkit device"."""
    return f"single {rec.kind} device" if rec.peer is None else f"{rec.kind} pair"


def mac_settable(kind: str, mode: str | None) -> bool:
    """An L3 netkit device has no MAC (all zero, IFF_NOARP); setting one is refused."""
    return not (kind == "netkit" and (mode or NETKIT.defaults["mode"]) == "l3")
