"""The kernel half of the link-kind table (core/linkkinds.py): how each kind's settings travel in
IFLA_INFO_DATA, both ways. The encoder (links.py), the dump decoder (decode.py) and the reader
(reader.py) iterate over this table; none of them names a setting.

A pair-wide setting (netkit mode) is one attribute. A per-end setting (netkit policy, scrub) is
two: in the primary's create or change request and in the primary's dump, `attr` carries the
primary's value and `peer_attr` the peer's; each end's own dump reports its own value as `attr`
(NETKIT-FACTS.md: seen from the peer the pair is reversed), which is how the reader reads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nkplan.core.linkkinds import LinkKind, kind_of
from nkplan.core.records import LinkRec
from nkplan.kernel.netlink import consts as C

Attr = tuple[str, Any]  # (pyroute2 attribute name, value) as encode.py takes it


@dataclass(frozen=True)
class Setting:
    field: str  # the LinkRec field, or the EndRec field when peer_attr is set
    attr: str  # the attribute's name (consts.py and pyroute2 spell it the same)
    peer_attr: str | None = None  # per-end settings: the attribute carrying the peer's value
    width: int = 4  # bytes of the value in a dump (u32 unless said)
    words: Mapping[str, int] | None = None  # record word → kernel number; None: the number itself
    writable: bool = True  # False: only reported (never sent)
    # False: not sent when it holds the kind's default (what every kernel makes without it, and
    # what a kernel older than the attribute, which would ignore it, makes anyway)
    send_default: bool = True

    def number(self, peer: bool = False) -> int:
        return int(getattr(C, (self.peer_attr if peer else self.attr) or ""))

    def to_kernel(self, value: object) -> int:
        if self.words is not None:
            return self.words[str(value)]
        assert isinstance(value, int)
        return value

    def from_kernel(self, number: int | None) -> object:
        if number is None or self.words is None:
            return number
        return next((w for w, n in self.words.items() if n == number), None)

    @property
    def per_end(self) -> bool:
        return self.peer_attr is not None

    @property
    def paths(self) -> tuple[str, ...]:
        """The record paths it sets: ("mode",) or ("primary.scrub", "peer.scrub")."""
        return (f"primary.{self.field}", f"peer.{self.field}") if self.per_end else (self.field,)


@dataclass(frozen=True)
class KernelKind:
    table: LinkKind
    peer_info: str  # the attribute nesting the peer's struct ifinfomsg + IFLA_* attributes
    settings: tuple[Setting, ...] = ()
    # other attributes the decoder keeps (not record fields): number → width
    reported: Mapping[int, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.table.name

    def widths(self) -> dict[int, int]:
        out = dict(self.reported)
        for s in self.settings:
            out[s.number()] = s.width
            if s.per_end:
                out[s.number(peer=True)] = s.width
        return out

    def at(self, path: str) -> tuple[Setting, bool]:
        """The setting behind a record path ("mode", "primary.scrub", "peer.scrub") and whether
        it is the peer's attribute."""
        side, _, fld = path.rpartition(".")
        s = next(s for s in self.settings if s.field == fld and s.per_end == bool(side))
        return s, side == "peer"

    # create ---------------------------------------------------------------------------------
    def create_data(self, link: LinkRec) -> list[Attr]:
        """The declared settings of a new pair, in table order; what the record leaves None is not
        sent, so the kernel's defaults apply (and an old kernel is not handed attributes it would
        ignore)."""
        data: list[Attr] = []
        for s in self.settings:
            if not s.writable:
                continue
            pairs = ((s.attr, link.primary), (s.peer_attr, link.peer)) if s.per_end else ((s.attr, link),)
            for name, holder in pairs:
                value = getattr(holder, s.field) if holder is not None else None  # a single device: no peer
                if not s.send_default and value == self.table.defaults.get(s.field):
                    continue
                if name is not None and value is not None:
                    data.append((name, s.to_kernel(value)))
        return data

    # read -----------------------------------------------------------------------------------
    def pair_values(self, info: Mapping[int, int]) -> dict[str, Any]:
        """LinkRec fields from the primary's decoded IFLA_INFO_DATA; a read-only or late setting
        the kernel does not report (older than the attribute) is the kind's default."""
        out: dict[str, Any] = {}
        for s in self.settings:
            if s.per_end:
                continue
            value = s.from_kernel(info.get(s.number()))
            if value is None and s.field in (*self.table.read_only, *self.table.late):
                value = self.table.defaults[s.field]
            out[s.field] = value
        return out

    def end_values(self, info: Mapping[int, int]) -> dict[str, Any]:
        """EndRec fields from an end's own decoded IFLA_INFO_DATA (its own values are `attr`)."""
        return {s.field: s.from_kernel(info.get(s.number())) for s in self.settings if s.per_end}

    def changeable(self) -> tuple[Setting, ...]:
        """The settings the kernel changes in place (netkit: the policies)."""
        fixed = self.table.created_only
        return tuple(s for s in self.settings if s.writable and not any(p in fixed for p in s.paths))


NETKIT = KernelKind(
    kind_of("netkit"),
    peer_info="IFLA_NETKIT_PEER_INFO",
    settings=(
        Setting("mode", "IFLA_NETKIT_MODE", words=C.MODE_TO_KERNEL),
        Setting("policy", "IFLA_NETKIT_POLICY", "IFLA_NETKIT_PEER_POLICY", words=C.POLICY_TO_KERNEL),
        Setting("scrub", "IFLA_NETKIT_SCRUB", "IFLA_NETKIT_PEER_SCRUB", words=C.SCRUB_TO_KERNEL),
        Setting("headroom", "IFLA_NETKIT_HEADROOM", width=2),
        Setting("tailroom", "IFLA_NETKIT_TAILROOM", width=2),
        # sent only for a single device: a pair's request stays what every kernel understands
        Setting("pairing", "IFLA_NETKIT_PAIRING", words=C.PAIRING_TO_KERNEL, send_default=False),
    ),
    reported={C.IFLA_NETKIT_PRIMARY: 1},  # u8: which end is the primary (reader._primary_first)
)
VETH = KernelKind(kind_of("veth"), peer_info="VETH_INFO_PEER")

KERNEL_KINDS: dict[str, KernelKind] = {k.name: k for k in (NETKIT, VETH)}
# decoded IFLA_INFO_DATA attribute widths per kind; a kind without settings is not decoded
DECODED: dict[str, dict[int, int]] = {k.name: k.widths() for k in KERNEL_KINDS.values() if k.settings}
