"""The kernel layer's pure parts, no root needed: nkplan's netlink codec against pyroute2 with the
netkit plugin (two independent codecs must agree), netkit records from raw dumps (primary,
policies seen from each end), pairing across namespaces, and refusal wording."""

from __future__ import annotations

import errno
import struct

import pytest

from nkplan.kernel import consts as C
from nkplan.kernel import decode, netkit_plugin, reader
from nkplan.kernel.decode import RawLink
from nkplan.kernel.links import newlink_body
from nkplan.kernel.nlsock import NetlinkRefusal
from nkplan.kernel.refusals import Op, explain
from nkplan.state import HOST, EndRec, LinkRec

pyroute2_ifinfmsg = pytest.importorskip("pyroute2.netlink.rtnl.ifinfmsg")


def as_message(mtype: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 1, 0) + body


def test_plugin_registers_idempotently() -> None:
    netkit_plugin.register()
    netkit_plugin.register()
    assert pyroute2_ifinfmsg.ifinfmsg.ifinfo.data_map["netkit"] is netkit_plugin.netkit
    names = [n for n, _ in netkit_plugin.netkit.nla_map]
    assert names.index("IFLA_NETKIT_PEER_INFO") == C.IFLA_NETKIT_PEER_INFO
    assert names.index("IFLA_NETKIT_PAIRING") == C.IFLA_NETKIT_PAIRING


def test_pyroute2_decodes_what_nkplan_sends() -> None:
    netkit_plugin.register()
    link = LinkRec(
        "netkit",
        EndRec(HOST, "nk-a", policy="forward", scrub="none"),
        EndRec("pod", "nk-b", policy="blackhole", scrub="default"),
        mode="l2",
        headroom=32,
        tailroom=16,
    )
    msg = pyroute2_ifinfmsg.ifinfmsg(as_message(C.RTM_NEWLINK, newlink_body(link, 7)))
    msg.decode()
    assert msg.get_attr("IFLA_IFNAME") == "nk-a"
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "netkit"
    data = info.get_attr("IFLA_INFO_DATA")
    got = {k: v for k, v in data["attrs"] if k != "IFLA_NETKIT_PEER_INFO"}
    assert got == {
        "IFLA_NETKIT_MODE": C.NETKIT_L2,
        "IFLA_NETKIT_POLICY": C.NETKIT_PASS,
        "IFLA_NETKIT_PEER_POLICY": C.NETKIT_DROP,
        "IFLA_NETKIT_SCRUB": C.NETKIT_SCRUB_NONE,
        "IFLA_NETKIT_PEER_SCRUB": C.NETKIT_SCRUB_DEFAULT,
        "IFLA_NETKIT_HEADROOM": 32,
        "IFLA_NETKIT_TAILROOM": 16,
    }
    peer = data.get_attr("IFLA_NETKIT_PEER_INFO")
    assert peer.get_attr("IFLA_IFNAME") == "nk-b" and peer.get_attr("IFLA_NET_NS_FD") == 7


def test_undeclared_netkit_attributes_are_not_sent() -> None:
    netkit_plugin.register()
    link = LinkRec("netkit", EndRec(HOST, "nk-a"), EndRec(HOST, "nk-b"))
    msg = pyroute2_ifinfmsg.ifinfmsg(as_message(C.RTM_NEWLINK, newlink_body(link, None)))
    msg.decode()
    data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    assert [k for k, _ in data["attrs"]] == ["IFLA_NETKIT_PEER_INFO"]
    assert data.get_attr("IFLA_NETKIT_PEER_INFO").get_attr("IFLA_NET_NS_FD") is None


def test_nkplan_decodes_what_pyroute2_encodes() -> None:
    netkit_plugin.register()
    msg = pyroute2_ifinfmsg.ifinfmsg()
    msg["index"] = 42
    msg["flags"] = C.IFF_UP | C.IFF_NOARP
    msg["attrs"] = [
        ["IFLA_IFNAME", "nk-a"],
        ["IFLA_MTU", 1400],
        ["IFLA_ADDRESS", "00:00:00:00:00:00"],
        ["IFLA_LINK", 7],
        ["IFLA_LINK_NETNSID", 3],
        ["IFLA_IFALIAS", "nkplan:s:primary"],
        [
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ["IFLA_INFO_KIND", "netkit"],
                    [
                        "IFLA_INFO_DATA",
                        {
                            "attrs": [
                                ["IFLA_NETKIT_PRIMARY", 1],
                                ["IFLA_NETKIT_POLICY", 2],
                                ["IFLA_NETKIT_MODE", 1],
                                ["IFLA_NETKIT_SCRUB", 0],
                                ["IFLA_NETKIT_HEADROOM", 32],
                                ["IFLA_NETKIT_TAILROOM", 16],
                                ["IFLA_NETKIT_PAIRING", 0],
                                ["IFLA_NETKIT_PEER_POLICY", 0],
                                ["IFLA_NETKIT_PEER_SCRUB", 1],
                            ]
                        },
                    ],
                ]
            },
        ],
    ]
    msg["header"]["type"] = C.RTM_NEWLINK
    msg.encode()
    data = bytes(msg.data)
    got = decode.link(data, 16, len(data))
    assert (got.ifindex, got.name, got.mtu, got.mac, got.kind, got.link, got.link_nsid, got.alias) == (
        42,
        "nk-a",
        1400,
        None,
        "netkit",
        7,
        3,
        "nkplan:s:primary",
    )
    assert got.netkit == {
        C.IFLA_NETKIT_PRIMARY: 1,
        C.IFLA_NETKIT_POLICY: 2,
        C.IFLA_NETKIT_MODE: 1,
        C.IFLA_NETKIT_SCRUB: 0,
        C.IFLA_NETKIT_HEADROOM: 32,
        C.IFLA_NETKIT_TAILROOM: 16,
        C.IFLA_NETKIT_PAIRING: 0,
        C.IFLA_NETKIT_PEER_POLICY: 0,
        C.IFLA_NETKIT_PEER_SCRUB: 1,
    }


def raw(ifindex: int, name: str, link: int, nsid: int | None, **nk: int) -> RawLink:
    attrs = {getattr(C, f"IFLA_NETKIT_{k.upper()}"): v for k, v in nk.items()}
    return RawLink(ifindex, name, C.IFF_UP | C.IFF_NOARP, 1500, None, "nkplan:s:x", "netkit", link, nsid, attrs)


def test_netkit_record_from_both_ends_own_view() -> None:
    # as dumped: each end reports its own policy/scrub as POLICY/SCRUB, the other's as PEER_*
    primary = raw(
        10, "nk-a", 2, 0, primary=1, policy=0, peer_policy=2, mode=1, scrub=0, peer_scrub=1, headroom=0, tailroom=0
    )
    peer = raw(
        2, "eth0", 10, 0, primary=0, policy=2, peer_policy=0, mode=1, scrub=1, peer_scrub=0, headroom=0, tailroom=0
    )
    for a, b in (((HOST, primary), ("pod", peer)), (("pod", peer), (HOST, primary))):  # order does not matter
        rec = reader.link_record(a, b)
        assert (rec.primary.namespace, rec.primary.name) == (HOST, "nk-a")
        assert (rec.primary.policy, rec.primary.scrub) == ("forward", "none")
        assert (rec.peer.policy, rec.peer.scrub) == ("blackhole", "default")
        assert (rec.mode, rec.headroom, rec.tailroom) == ("l3", 0, 0)
        assert rec.primary.mac is None


def test_old_kernel_without_scrub_and_headroom_reports_none() -> None:
    primary = raw(10, "nk-a", 11, None, primary=1, policy=0, peer_policy=0, mode=0)
    peer = raw(11, "nk-b", 10, None, primary=0, policy=0, peer_policy=0, mode=0)
    rec = reader.link_record((HOST, primary), (HOST, peer))
    assert (rec.mode, rec.headroom, rec.tailroom, rec.primary.scrub, rec.peer.scrub) == ("l2", None, None, None, None)


def veth(ifindex: int, name: str, link: int, nsid: int | None) -> RawLink:
    return RawLink(ifindex, name, 0, 1500, "02:00:00:00:00:01", None, "veth", link, nsid)


def test_pairing_across_namespaces_is_confirmed_by_nsid() -> None:
    scans = {
        HOST: reader.NsScan(HOST, {5: veth(5, "h", 2, 0)}),
        "a": reader.NsScan("a", {2: veth(2, "eth0", 5, 0), 3: veth(3, "x", 2, 1)}),
        "b": reader.NsScan("b", {2: veth(2, "y", 3, 4)}),
        # a decoy: mirrors a's "x" by ifindex, but lives where a's id 1 does not point
        "c": reader.NsScan("c", {2: veth(2, "z", 3, 9)}),
    }
    asked: list[tuple[str, str]] = []

    def between(a: str, b: str) -> int:
        asked.append((a, b))
        return {("a", "b"): 1, ("a", "c"): 6}[(a, b)]

    pairs = reader.pair_ends(scans, {0: "a"}, between)
    got = {((a[0], a[1].name), (b[0], b[1].name)) for a, b in pairs}
    assert got == {((HOST, "h"), ("a", "eth0")), (("a", "x"), ("b", "y"))}
    assert ("a", "b") in asked


REFUSALS = [
    (
        Op("change_fixed", "nk-a", HOST, "mode"),
        NetlinkRefusal(errno.EACCES, "netkit link operating mode cannot be changed after device creation"),
        "cannot change netkit mode of nk-a in place: the kernel refuses "
        "(EACCES, 'netkit link operating mode cannot be changed after device creation')",
    ),
    (
        Op("create_netkit", "nk-a"),
        NetlinkRefusal(errno.EOPNOTSUPP, "Unknown device type"),
        "creating netkit pair nk-a: this kernel has no netkit support (CONFIG_NETKIT)",
    ),
    (
        Op("set_mac", "nk-a", "pod", "02:00:00:00:00:01"),
        NetlinkRefusal(errno.EOPNOTSUPP, None),
        "setting MAC address 02:00:00:00:00:01 on nk-a in namespace pod: "
        "the device has no settable MAC address (an L3 netkit has none)",
    ),
    (
        Op("set_policy", "eth0", "pod", "forward/forward (primary/peer)"),
        NetlinkRefusal(errno.EACCES, "netkit link settings can be changed only through the primary device"),
        "changing the netkit policies of eth0 to forward/forward (primary/peer): netkit settings can only be "
        "changed through the primary device "
        "(kernel: 'netkit link settings can be changed only through the primary device')",
    ),
    (
        Op("set_mtu", "x", HOST, 99999),
        NetlinkRefusal(errno.ERANGE, None),
        "setting MTU 99999 on x in host namespace: the kernel refuses (ERANGE: Numerical result out of range)",
    ),
]


@pytest.mark.parametrize(("op", "exc", "words"), REFUSALS)
def test_refusals_in_words(op: Op, exc: NetlinkRefusal, words: str) -> None:
    err = explain(op, exc)
    assert str(err) == words and err.errno == exc.errno
