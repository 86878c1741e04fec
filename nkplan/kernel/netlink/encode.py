"""Request bodies for changing the kernel, encoded by pyroute2's message classes (ifinfmsg with
nkplan's netkit plugin, ifaddrmsg, rtmsg) and sent over nkplan's own namespace-bound RtnlSocket,
which keeps the kernel's extended-ack text that pyroute2 drops.

pyroute2 is imported on the first write only: `validate`, `plan` and every read (the reader and
the netkit probe, which hand-pack their few request headers) never load it (~0.1 s).

Attributes are given as (pyroute2 name, value) pairs, nested ones as {"attrs": [...]}. pyroute2
silently skips a name it does not know; encode() refuses instead, so a typo or a rename in a
later pyroute2 cannot turn into a request that quietly lacks an attribute."""

from __future__ import annotations

from functools import cache
from typing import Any

from nkplan.errors import InternalError

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


def link(*attrs: Attr, index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    """struct ifinfomsg + IFLA_* attributes (RTM_NEWLINK, RTM_SETLINK, RTM_DELLINK)."""
    return _fill(_pyroute2()[0](), {"index": index, "flags": flags, "change": change}, attrs)


def address(*attrs: Attr, family: int, prefixlen: int, index: int) -> bytes:
    """struct ifaddrmsg + IFA_* attributes (RTM_NEWADDR, RTM_DELADDR)."""
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
    return _fill(_pyroute2()[2](), fields, attrs)
