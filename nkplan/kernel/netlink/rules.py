"""Policy routing rules over rtnetlink (RTM_NEWRULE / RTM_DELRULE / RTM_GETRULE; struct
fib_rule_hdr + FRA_* attributes, include/uapi/linux/fib_rules.h): the dump decoder (by hand,
as decode.py does for routes), the request bodies (pyroute2's fibmsg, as encode.py does for the
rest) and the two writes. The kernel has no in-place change of a rule (net/core/fib_rules.c
ignores NLM_F_REPLACE for rules): a changed rule is deleted and made again (the planner says so)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from nkplan.core.records import RuleRec
from nkplan.kernel.netlink import consts as C
from nkplan.kernel.netlink import encode
from nkplan.kernel.netlink.nlsock import Pickles, asciiz, parse_attrs, u32
from nkplan.kernel.netlink.refusals import Op
from nkplan.kernel.netlink.rtnl import call, ns_socket

RTM_NEWRULE = 32
RTM_DELRULE = 33
RTM_GETRULE = 34
RTPROT_KERNEL = 2  # the kernel's own rules (0 local, 32766 main, 32767 default)

FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table res1 res2 action flags
FIB_RULE_INVERT = 0x2

FRA_DST = 1
FRA_SRC = 2
FRA_IIFNAME = 3
FRA_PRIORITY = 6
FRA_FWMARK = 10
FRA_TABLE = 15
FRA_FWMASK = 16
FRA_OIFNAME = 17
FRA_PAD = 18
FRA_PROTOCOL = 21
_MODELLED = frozenset({FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_FWMARK, FRA_TABLE, FRA_FWMASK, FRA_OIFNAME,
                       FRA_PAD, FRA_PROTOCOL})  # fmt: skip
# what else a rule may hold, as `ip rule` names it (attributes the kernel sends only when set)
_OTHERS = {
    4: "goto",
    11: "realms",
    12: "tun_id",
    13: "suppress_ifgroup",
    14: "suppress_prefixlength",
    19: "l3mdev",
    20: "uidrange",
    22: "ipproto",
    23: "sport",
    24: "dport",
    25: "dscp",
    26: "flowlabel",
    27: "flowlabel mask",
    28: "sport mask",
    29: "dport mask",
    30: "dscp mask",
}

# reported by some kernels on every rule, with -1 for "not set"
_UNSET = {13: 0xFFFFFFFF, 14: 0xFFFFFFFF}

ACTIONS = {"lookup": 1, "blackhole": 6, "unreachable": 7, "prohibit": 8}  # FR_ACT_*
_ACTION_NAMES = {v: k for k, v in ACTIONS.items()}
_OTHER_ACTIONS = {2: "goto", 3: "nop"}
FAMILIES = {"inet": C.AF_INET, "inet6": C.AF_INET6}
_FAMILY_NAMES = {v: k for k, v in FAMILIES.items()}

DUMP = FIB_RULE_HDR.pack(C.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)  # strict: header zero, no attributes


@dataclass(slots=True)
class RawRule(Pickles):
    """A rule as dumped (not the kernel's own): RuleRec's fields without namespace and owner."""

    family: str
    priority: int
    src: str | None
    dst: str | None
    iif: str | None
    oif: str | None
    fwmark: int | None
    fwmask: int | None
    action: str
    table: int | None
    protocol: int
    extra: tuple[str, ...]


def _prefix(raw: bytes | None, plen: int, v6: bool) -> str | None:
    if not plen:
        return None
    addr = (raw or b"")[: 16 if v6 else 4].ljust(16 if v6 else 4, b"\0")
    iface = ipaddress.IPv6Interface((addr, plen)) if v6 else ipaddress.IPv4Interface((addr, plen))
    return iface.with_prefixlen  # host bits, if the kernel holds any, stay visible


def decode(data: bytes, start: int, end: int) -> RawRule | None:
    """One RTM_NEWRULE of a dump, or None for what nkplan never reads: the kernel's own rules
    (protocol kernel) and families other than IPv4/IPv6 (multicast routing rules)."""
    family, dst_len, src_len, tos, table, _r1, _r2, action, flags = FIB_RULE_HDR.unpack_from(data, start)
    fam = _FAMILY_NAMES.get(family)
    if fam is None:
        return None
    a = parse_attrs(data, start + FIB_RULE_HDR.size, end)
    protocol = a[FRA_PROTOCOL][0] if FRA_PROTOCOL in a else 0
    if protocol == RTPROT_KERNEL:
        return None
    extra = [name for n, name in _OTHERS.items() if n in a and not (n in _UNSET and u32(a[n]) == _UNSET[n])]
    extra += [f"attribute {n}" for n in sorted(a) if n not in _MODELLED and n not in _OTHERS]
    if flags & FIB_RULE_INVERT:
        extra.insert(0, "not")
    if tos:
        extra.append(f"tos {tos:#x}")
    name = _ACTION_NAMES.get(action)
    if name is None:
        extra.append(f"action {_OTHER_ACTIONS.get(action, action)}")
        name = "lookup"
    if FRA_TABLE in a:
        table = u32(a[FRA_TABLE])
    has_mark = FRA_FWMARK in a or FRA_FWMASK in a
    v6 = fam == "inet6"
    return RawRule(
        family=fam,
        priority=u32(a[FRA_PRIORITY]) if FRA_PRIORITY in a else 0,
        src=_prefix(a.get(FRA_SRC), src_len, v6),
        dst=_prefix(a.get(FRA_DST), dst_len, v6),
        iif=asciiz(a[FRA_IIFNAME]) if FRA_IIFNAME in a else None,
        oif=asciiz(a[FRA_OIFNAME]) if FRA_OIFNAME in a else None,
        fwmark=u32(a[FRA_FWMARK]) if FRA_FWMARK in a else (0 if has_mark else None),
        fwmask=u32(a[FRA_FWMASK]) if FRA_FWMASK in a else (0 if has_mark else None),
        action=name,
        table=table or None,
        protocol=protocol,
        extra=tuple(extra),
    )


def record(ns: str, raw: RawRule, owner: str | None) -> RuleRec:
    return RuleRec(
        namespace=ns,
        family=raw.family,  # type: ignore[arg-type]
        priority=raw.priority,
        src=raw.src,
        dst=raw.dst,
        iif=raw.iif,
        oif=raw.oif,
        fwmark=raw.fwmark,
        fwmask=raw.fwmask,
        action=raw.action,  # type: ignore[arg-type]
        table=raw.table,
        protocol=raw.protocol,
        extra=raw.extra,
        owner=owner,
    )


def body(rule: RuleRec) -> bytes:
    """struct fib_rule_hdr + FRA_* attributes: the whole rule (RTM_NEWRULE), or, to delete it,
    what the kernel matches (RTM_DELRULE: every attribute given must match; protocol too)."""
    from pyroute2.netlink.rtnl.fibmsg import fibmsg  # type: ignore[import-untyped]

    attrs: list[tuple[str, Any]] = [("FRA_PRIORITY", rule.priority)]
    src = ipaddress.ip_interface(rule.src) if rule.src else None
    dst = ipaddress.ip_interface(rule.dst) if rule.dst else None
    if src is not None:
        attrs.append(("FRA_SRC", str(src.ip)))
    if dst is not None:
        attrs.append(("FRA_DST", str(dst.ip)))
    if rule.iif:
        attrs.append(("FRA_IIFNAME", rule.iif))
    if rule.oif:
        attrs.append(("FRA_OIFNAME", rule.oif))
    if rule.fwmark is not None:
        attrs.append(("FRA_FWMARK", rule.fwmark))
        attrs.append(("FRA_FWMASK", rule.fwmask if rule.fwmask is not None else 0xFFFFFFFF))
    if rule.table is not None:
        attrs.append(("FRA_TABLE", rule.table))
    if rule.protocol:
        attrs.append(("FRA_PROTOCOL", rule.protocol))
    msg = fibmsg()
    msg.update(
        {
            "family": FAMILIES[rule.family],
            "dst_len": dst.network.prefixlen if dst is not None else 0,
            "src_len": src.network.prefixlen if src is not None else 0,
            "table": rule.table if rule.table is not None and rule.table < 256 else 0,
            "action": ACTIONS[rule.action],
        }
    )
    msg["attrs"] = attrs
    return encode.encode(msg)


def _name(rule: RuleRec) -> str:
    return f"{rule.priority}" + (" (inet6)" if rule.family == "inet6" else "")


def add(rule: RuleRec) -> None:
    op = Op("add_rule", _name(rule), rule.namespace)
    with ns_socket(rule.namespace, op.phrase()) as sock:
        call(sock, op, RTM_NEWRULE, C.NLM_F_CREATE | C.NLM_F_EXCL, body(rule))


def delete(rule: RuleRec) -> None:
    op = Op("delete_rule", _name(rule), rule.namespace)
    with ns_socket(rule.namespace, op.phrase()) as sock:
        call(sock, op, RTM_DELRULE, 0, body(rule))

