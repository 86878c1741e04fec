"""Decode the few rtnetlink attributes the reader needs, straight from the dump buffers.

Only what nkplan compares is decoded; everything else in a message is skipped. Values stay raw
ints here (kind settings, flags); reader.py turns them into the canonical records."""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field

from nkplan.core.records import RTPROT_NKPLAN
from nkplan.kernel.netlink import consts as C
from nkplan.kernel.netlink.kinds import DECODED
from nkplan.kernel.netlink.nlsock import IFADDRMSG, IFINFOMSG, RTMSG, Pickles, asciiz, parse_attrs, s32, u32


@dataclass(slots=True)
class RawLink(Pickles):
    ifindex: int
    name: str
    flags: int
    mtu: int
    mac: str | None  # lower-case colon form; None for an all-zero address
    alias: str | None
    kind: str  # IFLA_INFO_KIND, "" when absent (physical devices, lo)
    link: int | None  # IFLA_LINK: for veth/netkit, the other end's ifindex
    link_nsid: int | None  # IFLA_LINK_NETNSID: where the other end lives, None = same namespace
    info: dict[int, int] = field(default_factory=dict)  # IFLA_INFO_DATA of kinds.DECODED: attribute → value
    addresses: list[tuple[int, int, str]] = field(default_factory=list)  # (version, int ip, cidr): pair ends only
    af_spec: bytes | None = None  # IFLA_AF_SPEC, kept raw (and only) when the read wants sysctls


@dataclass(slots=True)
class RawNexthop(Pickles):
    via: str | None
    oif: int | None
    weight: int
    onlink: bool


@dataclass(slots=True)
class RawRoute(Pickles):
    family: int
    to: str
    via: str | None
    oif: int | None  # None for a route that sends nowhere (IPv6 reports those on lo)
    metric: int
    table: int = C.RT_TABLE_MAIN
    type: str = "unicast"
    scope: str = "global"
    src: str | None = None
    onlink: bool = False
    mtu: int | None = None
    nexthops: list[RawNexthop] = field(default_factory=list)


def _mac(raw: bytes | None) -> str | None:
    if raw is None or raw.strip(b"\0") == b"":
        return None
    return ":".join(f"{b:02x}" for b in raw)


def _info_data(raw: bytes, widths: dict[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for kind, val in parse_attrs(raw, 0, len(raw)).items():
        width = widths.get(kind)
        if width is not None:  # others (the nested peer info) are not settings
            out[kind] = int.from_bytes(val[:width], "little")
    return out


_LINK_ATTRS = frozenset(
    {C.IFLA_ADDRESS, C.IFLA_IFNAME, C.IFLA_MTU, C.IFLA_LINK, C.IFLA_LINKINFO, C.IFLA_IFALIAS, C.IFLA_LINK_NETNSID}
)
_LINK_ATTRS_AF = _LINK_ATTRS | {C.IFLA_AF_SPEC}
_ADDR_ATTRS = frozenset({C.IFA_ADDRESS, C.IFA_LOCAL})
_CONF_OF = {"ipv4": (C.AF_INET, C.IFLA_INET_CONF), "ipv6": (C.AF_INET6, C.IFLA_INET6_CONF)}


def device_conf(af_spec: bytes) -> dict[str, tuple[int, ...]]:
    """A device's IPv4/IPv6 conf arrays from its IFLA_AF_SPEC ("ipv4" → values by DEVCONF
    position), as signed ints like /proc/sys prints them; a family the device lacks is absent."""
    fams = parse_attrs(af_spec, 0, len(af_spec))
    out: dict[str, tuple[int, ...]] = {}
    for family, (af, attr) in _CONF_OF.items():
        raw = fams.get(af)
        conf = parse_attrs(raw, 0, len(raw)).get(attr) if raw is not None else None
        if conf is not None:
            out[family] = struct.unpack(f"={len(conf) // 4}i", conf[: len(conf) // 4 * 4])
    return out


def link(data: bytes, start: int, end: int, with_af: bool = False) -> RawLink:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(data, start)
    a = parse_attrs(data, start + IFINFOMSG.size, end, _LINK_ATTRS_AF if with_af else _LINK_ATTRS)
    kind = ""
    settings: dict[int, int] = {}
    info = a.get(C.IFLA_LINKINFO)
    if info is not None:
        ia = parse_attrs(info, 0, len(info))
        if C.IFLA_INFO_KIND in ia:
            kind = asciiz(ia[C.IFLA_INFO_KIND])
        widths = DECODED.get(kind)
        if widths is not None and C.IFLA_INFO_DATA in ia:
            settings = _info_data(ia[C.IFLA_INFO_DATA], widths)
    alias = a.get(C.IFLA_IFALIAS)
    lk = a.get(C.IFLA_LINK)
    nsid = a.get(C.IFLA_LINK_NETNSID)
    return RawLink(
        ifindex=index,
        name=asciiz(a.get(C.IFLA_IFNAME, b"")),
        flags=flags,
        mtu=u32(a[C.IFLA_MTU]) if C.IFLA_MTU in a else 0,
        mac=_mac(a.get(C.IFLA_ADDRESS)),
        alias=asciiz(alias) if alias else None,
        kind=kind,
        link=u32(lk) if lk is not None else None,
        link_nsid=s32(nsid) if nsid is not None else None,
        info=settings,
        af_spec=a.get(C.IFLA_AF_SPEC),
    )


def address(data: bytes, start: int, end: int) -> tuple[int, tuple[int, int, str]] | None:
    """(ifindex, (version, int ip, canonical CIDR)) of one address, or None for what nkplan
    ignores: other families, and IPv6 link-local addresses the kernel generates itself."""
    family, plen, _flags, _scope, index = IFADDRMSG.unpack_from(data, start)
    if family not in (C.AF_INET, C.AF_INET6):
        return None
    a = parse_attrs(data, start + IFADDRMSG.size, end, _ADDR_ATTRS)
    raw = a.get(C.IFA_LOCAL) or a.get(C.IFA_ADDRESS)  # IFA_LOCAL is ours; IFA_ADDRESS the peer's on ptp
    if raw is None:
        return None
    if family == C.AF_INET:  # inet_ntoa writes IPv4 exactly as ipaddress does, without its cost
        return index, (4, int.from_bytes(raw, "big"), f"{socket.inet_ntoa(raw)}/{plen}")
    if len(raw) == 16 and raw[0] == 0xFE and raw[1] & 0xC0 == 0x80:  # link-local, fe80::/10
        return None
    return index, (6, int.from_bytes(raw, "big"), f"{ipv6_text(raw)}/{plen}")


def ipv6_text(raw: bytes) -> str:
    """An IPv6 address as ipaddress writes it (the spec side's canonical form, compressed).
    inet_ntop writes the same (RFC 5952) at a fraction of the cost, except for addresses whose
    first 80 bits are zero, which it may write with a dotted IPv4 tail: those go to ipaddress."""
    if len(raw) == 16 and raw[:10] != bytes(10):
        return socket.inet_ntop(socket.AF_INET6, raw)
    return str(ipaddress.IPv6Address(raw))


def _ip(raw: bytes, v6: bool) -> str:
    if v6:
        return ipv6_text(raw[:16])
    # inet_ntoa writes IPv4 exactly as ipaddress does; a short value is ipaddress's to refuse
    return socket.inet_ntoa(raw[:4]) if len(raw) >= 4 else str(ipaddress.IPv4Address(raw[:4]))


def _network(dst: bytes | None, plen: int, v6: bool) -> str:
    """The route's destination as ipaddress writes the network (host bits cleared, compressed),
    without building one: a dump holds a route per pod, and IPv{4,6}Network was most of its cost."""
    width = 128 if v6 else 32
    raw = dst or bytes(width // 8)
    if len(raw) != width // 8 or not 0 <= plen <= width:  # the odd case: as ipaddress takes (or refuses) it
        return (ipaddress.IPv6Network if v6 else ipaddress.IPv4Network)((raw, plen), strict=False).with_prefixlen
    value = int.from_bytes(raw, "big") & (((1 << plen) - 1) << (width - plen))
    return f"{_ip(value.to_bytes(width // 8, 'big'), v6)}/{plen}"


def _gateway(a: dict[int, bytes], v6: bool) -> str | None:
    if C.RTA_GATEWAY in a:
        return _ip(a[C.RTA_GATEWAY], v6)
    if C.RTA_VIA in a:  # struct rtvia: u16 family + address (an IPv4 route via an IPv6 next hop)
        raw = a[C.RTA_VIA]
        return _ip(raw[2:], int.from_bytes(raw[:2], "little") == C.AF_INET6)
    return None


def _nexthops(raw: bytes, v6: bool) -> list[RawNexthop]:
    """RTA_MULTIPATH: struct rtnexthop records, each followed by its own attributes."""
    out: list[RawNexthop] = []
    off = 0
    while off + C.RTNEXTHOP.size <= len(raw):
        length, flags, hops, ifindex = C.RTNEXTHOP.unpack_from(raw, off)
        if length < C.RTNEXTHOP.size:
            break
        a = parse_attrs(raw, off + C.RTNEXTHOP.size, off + length)
        out.append(RawNexthop(_gateway(a, v6), ifindex or None, hops + 1, bool(flags & C.RTNH_F_ONLINK)))
        off += (length + 3) & ~3
    return out


def _mtu(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    value = parse_attrs(raw, 0, len(raw)).get(C.RTAX_MTU)
    return u32(value) if value is not None else None


def route(data: bytes, start: int, end: int) -> RawRoute | None:
    """A route nkplan installed (protocol RTPROT_NKPLAN) of a type nkplan manages, in any
    table, else None."""
    family, dst_len, _src_len, _tos, table, protocol, scope, rtype, flags = RTMSG.unpack_from(data, start)
    if protocol != RTPROT_NKPLAN or family not in (C.AF_INET, C.AF_INET6) or rtype not in C.ROUTE_TYPE_NAMES:
        return None
    a = parse_attrs(data, start + RTMSG.size, end)
    if C.RTA_TABLE in a:
        table = u32(a[C.RTA_TABLE])
    v6 = family == C.AF_INET6
    kind = C.ROUTE_TYPE_NAMES[rtype]
    sends = kind in ("unicast", "local")
    multipath = a.get(C.RTA_MULTIPATH)
    return RawRoute(
        family=family,
        to=_network(a.get(C.RTA_DST), dst_len, v6),
        via=_gateway(a, v6),
        oif=u32(a[C.RTA_OIF]) if C.RTA_OIF in a and sends else None,
        metric=u32(a[C.RTA_PRIORITY]) if C.RTA_PRIORITY in a else 0,
        table=table,
        type=kind,
        scope=C.SCOPE_NAMES.get(scope, str(scope)),
        src=_ip(a[C.RTA_PREFSRC], v6) if C.RTA_PREFSRC in a else None,
        # the kernel also reports a nexthop's state here (linkdown, dead): only onlink is declared
        onlink=bool(flags & C.RTNH_F_ONLINK),
        mtu=_mtu(a.get(C.RTA_METRICS)),
        nexthops=_nexthops(multipath, v6) if multipath is not None else [],
    )
