"""Request bodies for changing the kernel, encoded by pyroute2's message classes (ifinfmsg with
nkplan's netkit plugin, ifaddrmsg, rtmsg) and sent over nkplan's own namespace-bound RtnlSocket,
which keeps the kernel's extended-ack text that pyroute2 drops.

pyroute2 is imported on the first write only: `validate`, `plan` and every read (the reader and
the netkit probe, which hand-pack their few request headers) never load it (~0.1 s).

Attributes are given as (pyroute2 name, value) pairs, nested ones as {"attrs": [...]}. pyroute2
silently skips a name it does not know; encode() refuses instead, so a typo or a rename in a
later pyroute2 cannot turn into a request that quietly lacks an attribute.

A request made only of flat attributes (addresses, routes, a device's name, MTU, MAC, alias,
group) is packed here instead: pyroute2 takes ~0.3 ms to encode one message, over a second of
a 1000-pod apply; `_SIMPLE` packs them in microseconds, and a unit test holds every one of them
byte for byte to pyroute2's encoding. What it does not know (the nested kind data and peer
info of a new device pair) goes to pyroute2."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from functools import cache
from typing import Any

from nkplan.errors import InternalError
from nkplan.kernel.netlink.nlsock import IFADDRMSG, IFINFOMSG, RTMSG, attr

Attr = tuple[str, Any]
_NLMSGHDR = 16  # struct nlmsghdr: pyroute2 reserves it at the start of msg.data


@cache
def _pyroute2() -> tuple[Any, Any, Any, Any]:
    from pyroute2.netlink import nla_slot  # type: ignore[import-untyped]
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # type: ignore[import-untyped]
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # type: ignore[import-untyped]
    from pyroute2.netlink.rtnl.rtmsg import rtmsg  # type: ignore[import-untyped]

    from nkplan.kernel.netlink import netkit_plugin
    netkit_plugin.register()
    return ifinfmsg, ifaddrmsg, rtmsg, nla_slot


def _all_encoded(msg: Any, slot: Any, where: str) -> None:
    # encode_nlas() replaces every attribute it encoded by an nla_slot and leaves the rest alone
    for cell in msg.get("attrs") or ():
        if not isinstance(cell, slot):
            raise InternalError(f"pyroute2 does not know the netlink attribute {cell[0]} (in {where})")
        name, inner = cell.cell
        _all_encoded(inner, slot, name)


def encode(msg: Any) -> bytes:
    """The body of a pyroute2 message: what follows its struct nlmsghdr, which RtnlSocket writes."""
    msg.encode()
    _all_encoded(msg, _pyroute2()[3], type(msg).__name__)
    return bytes(msg.data[_NLMSGHDR : msg["header"]["length"]])


def _fill(msg: Any, fields: dict[str, int], attrs: tuple[Attr, ...]) -> bytes:
    msg.update(fields)
    msg["attrs"] = list(attrs)
    return encode(msg)


def _u32(value: Any) -> bytes:
    return struct.pack("=I", value)


def _asciiz(value: Any) -> bytes:
    return str(value).encode() + b"\0"


def _ip(value: Any) -> bytes:
    return ipaddress.ip_address(value).packed


def _mac(value: Any) -> bytes:
    return bytes.fromhex(str(value).replace(":", ""))


def _rtvia(value: Any) -> bytes:
    return struct.pack("=H", value["family"]) + _ip(value["addr"])


def _metrics(value: Any) -> bytes:
    return b"".join(attr(_RTAX[name], _u32(v)) for name, v in value["attrs"])


_RTAX = {"RTAX_MTU": 2}
# pyroute2 name → (attribute type, packer), for the attributes packed here (nlsock.attr pads)
_SIMPLE: dict[str, tuple[int, Callable[[Any], bytes]]] = {
    "IFLA_ADDRESS": (1, _mac),
    "IFLA_IFNAME": (3, _asciiz),
    "IFLA_MTU": (4, _u32),
    "IFLA_IFALIAS": (20, _asciiz),
    "IFLA_GROUP": (27, _u32),
    "IFA_ADDRESS": (1, _ip),
    "IFA_LOCAL": (2, _ip),
    "RTA_DST": (1, _ip),
    "RTA_OIF": (4, _u32),
    "RTA_GATEWAY": (5, _ip),
    "RTA_PRIORITY": (6, _u32),
    "RTA_PREFSRC": (7, _ip),
    "RTA_METRICS": (8, _metrics),
    "RTA_TABLE": (15, _u32),
    "RTA_VIA": (18, _rtvia),
}


def _packed(attrs: tuple[Attr, ...]) -> bytes | None:
    """The attributes packed here, or None if one of them is not a flat one this module knows."""
    if not all(name in _SIMPLE and (name != "RTA_METRICS" or _metrics_known(v)) for name, v in attrs):
        return None
    return b"".join(attr(_SIMPLE[name][0], _SIMPLE[name][1](value)) for name, value in attrs)


def _metrics_known(value: Any) -> bool:
    return all(name in _RTAX for name, _v in value["attrs"])


def link(*attrs: Attr, index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    """struct ifinfomsg + IFLA_* attributes (RTM_NEWLINK, RTM_SETLINK, RTM_DELLINK)."""
    packed = _packed(attrs)
    if packed is not None:
        return IFINFOMSG.pack(0, 0, index, flags, change) + packed
    return _fill(_pyroute2()[0](), {"index": index, "flags": flags, "change": change}, attrs)


def address(*attrs: Attr, family: int, prefixlen: int, index: int) -> bytes:
    """struct ifaddrmsg + IFA_* attributes (RTM_NEWADDR, RTM_DELADDR)."""
    packed = _packed(attrs)
    if packed is not None:
        return IFADDRMSG.pack(family, prefixlen, 0, 0, index) + packed
    return _fill(_pyroute2()[1](), {"family": family, "prefixlen": prefixlen, "index": index}, attrs)


def route(
    *attrs: Attr, family: int, dst_len: int, table: int, proto: int, scope: int, rtype: int, flags: int = 0
) -> bytes:
    """struct rtmsg + RTA_* attributes (RTM_NEWROUTE, RTM_DELROUTE). RTA_DST and RTA_GATEWAY
    take their address family from the header's."""
    fields = {
        "family": family,
        "dst_len": dst_len,
        "table": table,
        "proto": proto,
        "scope": scope,
        "type": rtype,
        "flags": flags,
    }
    packed = _packed(attrs)
    if packed is not None:
        return RTMSG.pack(family, dst_len, 0, 0, table, proto, scope, rtype, flags) + packed
    return _fill(_pyroute2()[2](), fields, attrs)
