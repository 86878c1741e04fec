"""What the kernel holds, as iproute2 (`ip -j`) reports it: the independent observer for the
real-kernel tests. Nothing here imports nkplan. The netkit tests point IP at Debian trixie's
iproute2 (bookworm's 6.1 does not print netkit attributes)."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from tests import realkernel

IP = os.environ.get("NKPLAN_OBSERVER_IP", "ip")


def ip_json(*args: str, ns: str | None = None, check: bool = True) -> Any:
    return realkernel.ip_json(*args, ns=ns, check=check, tool=IP)


def netns_names() -> list[str]:
    return sorted(n["name"] for n in ip_json("netns", "list"))


def link_names(ns: str | None = None) -> list[str]:
    return sorted(d["ifname"] for d in ip_json("link", "show", ns=ns))


def link(name: str, ns: str | None = None) -> dict[str, Any] | None:
    """`ip -d -j link show dev NAME`, or None when there is no such device."""
    found = ip_json("-d", "link", "show", "dev", name, ns=ns, check=False)
    return found[0] if found else None


def kind(dev: dict[str, Any]) -> str:
    return str(dev.get("linkinfo", {}).get("info_kind", ""))


def is_up(dev: dict[str, Any]) -> bool:
    return "UP" in dev["flags"]


def addrs(name: str, ns: str | None = None) -> list[str]:
    """Addresses on a device as canonical CIDR strings, without IPv6 link-local ones."""
    out = []
    for entry in ip_json("addr", "show", "dev", name, ns=ns):
        for a in entry.get("addr_info", []):
            iface = ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
            if not (iface.version == 6 and iface.ip.is_link_local):
                out.append(iface.with_prefixlen)
    return sorted(out)


def routes(ns: str | None = None, proto: str = "237") -> list[dict[str, Any]]:
    """Main-table routes of one protocol, both families, as iproute2 prints them."""
    found = []
    for fam in ("-4", "-6"):
        for r in ip_json(fam, "route", "show", "table", "main", ns=ns):
            if r.get("protocol") == proto:
                found.append(r)
    return found
