"""A pyroute2 link-kind plugin for netkit (pyroute2 0.9.7 has none).

This is nkplan's production encoder for netkit: every request that creates or changes a netkit
pair is encoded by pyroute2's ifinfmsg with this plugin (encode.py registers it on the first
write). Reading stays on nkplan's fast decoder (decode.py), which never imports pyroute2. The
plugin also serves anything else that uses pyroute2 on the same devices (tests observing the
kernel, scripts around nkplan). After ``register()``::

    IPRoute().link("add", ifname="nk0", kind="netkit", netkit_mode=1,
                   netkit_peer_info={"attrs": [["IFLA_IFNAME", "nk1"]]})
    IPRoute().get_links()  # IFLA_INFO_DATA decoded as IFLA_NETKIT_* instead of hex

Attribute numbers and types: include/uapi/linux/if_link.h (see NETKIT-FACTS.md)."""

from __future__ import annotations

from typing import Any

from pyroute2.netlink import nla  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg, ifinfveth  # type: ignore[import-untyped]


class netkit(nla):  # type: ignore[misc]  # noqa: N801 - pyroute2 names the class after the kind
    """IFLA_INFO_DATA of kind "netkit". Positions in nla_map are the attribute numbers; 2-tuples
    because pyroute2's link request builder unpacks nla_map entries as (name, type)."""

    prefix = "IFLA_"  # so link() accepts netkit_mode=, netkit_policy=, netkit_peer_info= ...
    nla_map = (
        ("IFLA_NETKIT_UNSPEC", "none"),  # 0
        ("IFLA_NETKIT_PEER_INFO", "info_peer"),  # 1: struct ifinfomsg + IFLA_* (like veth)
        ("IFLA_NETKIT_PRIMARY", "uint8"),  # 2: read-only
        ("IFLA_NETKIT_POLICY", "uint32"),  # 3: NETKIT_PASS 0 / NETKIT_DROP 2
        ("IFLA_NETKIT_PEER_POLICY", "uint32"),  # 4
        ("IFLA_NETKIT_MODE", "uint32"),  # 5: L2 0 / L3 1
        ("IFLA_NETKIT_SCRUB", "uint32"),  # 6: NONE 0 / DEFAULT 1 (6.13, 6.12.4)
        ("IFLA_NETKIT_PEER_SCRUB", "uint32"),  # 7
        ("IFLA_NETKIT_HEADROOM", "uint16"),  # 8 (6.14)
        ("IFLA_NETKIT_TAILROOM", "uint16"),  # 9 (6.14)
        ("IFLA_NETKIT_PAIRING", "uint32"),  # 10: PAIR 0 / SINGLE 1 (7.1)
    )

    @staticmethod
    def info_peer(self: Any, *argv: Any, **kwarg: Any) -> type:  # noqa: ARG004
        return ifinfveth  # type: ignore[no-any-return]  # the nested ifinfomsg used for VETH_INFO_PEER


def register() -> None:
    """Make pyroute2 know kind "netkit". Idempotent."""
    if ifinfmsg.ifinfo.data_map.get("netkit") is not netkit:
        ifinfmsg.ifinfo.register_link_kind(module={"netkit": netkit})
