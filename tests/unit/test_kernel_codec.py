"""The kernel layer's pure parts, no root needed. Write requests are encoded by pyroute2 (with
nkplan's netkit plugin); they are checked here independently of pyroute2: byte by byte against the
kernel's numbers (consts.py, NETKIT-FACTS.md) with nkplan's own attribute parser, and through
nkplan's fast decoder. Also: the probe's hand-packed request equals the production encoding,
nkplan's decoder reads what pyroute2 encodes, netkit records from raw dumps (primary, policies
seen from each end), pairing across namespaces, and refusal wording."""

from __future__ import annotations

import dataclasses
import errno
import importlib
import os
import signal
import struct
import subprocess
import sys
import threading
from typing import cast

import pytest

from nkplan.core.records import HOST, RTPROT_NKPLAN, EndRec, LinkRec, NamespaceRec, NexthopRec, RouteRec
from nkplan.errors import InternalError, KernelError
from nkplan.kernel.netlink import consts as C
from nkplan.kernel.netlink import decode, encode, kinds, links, netkit_plugin, probe, reader, rtnl
from nkplan.kernel.netlink.decode import RawLink
from nkplan.kernel.netlink.links import newlink_body
from nkplan.kernel.netlink.nlsock import IFADDRMSG, IFINFOMSG, RTMSG, NetlinkRefusal, RtnlSocket, parse_attrs
from nkplan.kernel.netlink.refusals import Op, explain

pyroute2_ifinfmsg = importlib.import_module("pyroute2.netlink.rtnl.ifinfmsg")  # a dependency: no skip


def as_message(mtype: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 1, 0) + body


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def asciiz(s: str) -> bytes:
    return s.encode() + b"\0"


def link_attrs(body: bytes) -> tuple[tuple[int, int, int, int, int], dict[int, bytes]]:
    """(ifinfomsg fields, IFLA_* payloads) of a link request body, by nkplan's own parser."""
    return IFINFOMSG.unpack_from(body, 0), parse_attrs(body, IFINFOMSG.size, len(body))


def info_data(body: bytes, kind: str) -> dict[int, bytes]:
    _, a = link_attrs(body)
    info = parse_attrs(a[C.IFLA_LINKINFO], 0, len(a[C.IFLA_LINKINFO]))
    assert info[C.IFLA_INFO_KIND] == asciiz(kind)
    raw = info[C.IFLA_INFO_DATA]
    return parse_attrs(raw, 0, len(raw))


def peer_info(raw: bytes) -> tuple[tuple[int, int, int, int, int], dict[int, bytes]]:
    """VETH_INFO_PEER / IFLA_NETKIT_PEER_INFO: a struct ifinfomsg, then IFLA_* attributes."""
    return link_attrs(raw)


def test_plugin_registers_idempotently() -> None:
    netkit_plugin.register()
    netkit_plugin.register()
    assert pyroute2_ifinfmsg.ifinfmsg.ifinfo.data_map["netkit"] is netkit_plugin.netkit
    names = [n for n, _ in netkit_plugin.netkit.nla_map]
    for number in range(C.IFLA_NETKIT_PEER_INFO, C.IFLA_NETKIT_PAIRING + 1):
        name = next(k for k in dir(C) if k.startswith("IFLA_NETKIT_") and getattr(C, k) == number)
        assert names[number] == name


FULL = LinkRec(
    "netkit",
    EndRec(HOST, "nk-a", policy="forward", scrub="none"),
    EndRec("pod", "nk-b", policy="blackhole", scrub="default"),
    mode="l2",
    headroom=32,
    tailroom=16,
)


def test_netkit_creation_request_bytes() -> None:
    body = newlink_body(FULL, 7)
    hdr, a = link_attrs(body)
    assert hdr == (C.AF_UNSPEC, 0, 0, 0, 0) and a[C.IFLA_IFNAME] == asciiz("nk-a")
    data = info_data(body, "netkit")
    assert {k: v for k, v in data.items() if k != C.IFLA_NETKIT_PEER_INFO} == {
        C.IFLA_NETKIT_MODE: u32(C.NETKIT_L2),
        C.IFLA_NETKIT_POLICY: u32(C.NETKIT_PASS),
        C.IFLA_NETKIT_PEER_POLICY: u32(C.NETKIT_DROP),
        C.IFLA_NETKIT_SCRUB: u32(C.NETKIT_SCRUB_NONE),
        C.IFLA_NETKIT_PEER_SCRUB: u32(C.NETKIT_SCRUB_DEFAULT),
        C.IFLA_NETKIT_HEADROOM: struct.pack("=H", 32),  # NLA_U16: exactly 2 bytes (nla_len 6)
        C.IFLA_NETKIT_TAILROOM: struct.pack("=H", 16),
    }
    phdr, pa = peer_info(data[C.IFLA_NETKIT_PEER_INFO])
    assert phdr == (C.AF_UNSPEC, 0, 0, 0, 0)
    assert pa == {C.IFLA_IFNAME: asciiz("nk-b"), C.IFLA_NET_NS_FD: u32(7)}
    # and nkplan's fast decoder, which the reader uses on the kernel's dumps, agrees
    got = decode.link(as_message(C.RTM_NEWLINK, body), 16, 16 + len(body))
    assert (got.name, got.kind, got.info[C.IFLA_NETKIT_HEADROOM], got.info[C.IFLA_NETKIT_PEER_POLICY]) == (
        "nk-a",
        "netkit",
        32,
        C.NETKIT_DROP,
    )


def test_headroom_and_tailroom_take_the_full_u16_range() -> None:
    link = LinkRec("netkit", EndRec(HOST, "nk-a"), EndRec(HOST, "nk-b"), headroom=65535, tailroom=0)
    data = info_data(newlink_body(link, None), "netkit")
    assert (data[C.IFLA_NETKIT_HEADROOM], data[C.IFLA_NETKIT_TAILROOM]) == (b"\xff\xff", b"\0\0")


def test_single_creation_request_has_no_peer_and_says_single() -> None:
    """A single device: IFLA_NETKIT_PAIRING = SINGLE and no PEER_INFO (the kernel refuses one);
    a pair never carries PAIRING (the default, and what kernels before 7.1 would ignore)."""
    single = LinkRec("netkit", EndRec(HOST, "nks", policy="forward"), None, mode="l2", headroom=64, pairing="single")
    data = info_data(newlink_body(single, None), "netkit")
    assert data == {
        C.IFLA_NETKIT_MODE: u32(C.NETKIT_L2),
        C.IFLA_NETKIT_POLICY: u32(C.NETKIT_PASS),
        C.IFLA_NETKIT_HEADROOM: struct.pack("=H", 64),
        C.IFLA_NETKIT_PAIRING: u32(C.NETKIT_DEVICE_SINGLE),
    }
    paired = LinkRec("netkit", EndRec(HOST, "nk-a"), EndRec(HOST, "nk-b"), pairing="pair")
    assert list(info_data(newlink_body(paired, None), "netkit")) == [C.IFLA_NETKIT_PEER_INFO]


def test_single_device_is_a_record_of_its_own() -> None:
    """As 7.3 dumps one: IFLA_LINK 0, no link netns, PAIRING 1, no scrub or peer attributes."""
    nks = raw(3, "nks", 0, None, primary=1, policy=0, mode=1, headroom=0, tailroom=0, pairing=1)
    pair_a = raw(10, "nk-a", 11, None, primary=1, policy=0, peer_policy=0, mode=1, pairing=0)
    pair_b = raw(11, "nk-b", 10, None, primary=0, policy=0, peer_policy=0, mode=1, pairing=0)
    scans = {HOST: reader.NsScan(HOST, {3: nks, 10: pair_a, 11: pair_b})}
    snap = reader.Snapshot(scans, {}, reader.pair_ends(scans, {}, lambda a, b: -1))
    live = reader.build(snap)
    assert set(live.links) == {(HOST, "nks"), (HOST, "nk-a")}
    rec = live.links[(HOST, "nks")]
    assert rec.peer is None and rec.ends == (rec.primary,)
    assert (rec.pairing, rec.mode, rec.primary.policy, rec.primary.scrub) == ("single", "l3", "forward", None)
    assert live.links[(HOST, "nk-a")].pairing == "pair"


def test_hooks_of_a_single_device_are_tcx_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel answers EOPNOTSUPP to a query of a single device's netkit hooks (7.3): the
    reader's hook scan must not ask, or one such device would make every read fail."""
    from nkplan.kernel.bpf import consts as BC
    from nkplan.kernel.bpf import mprog, scan

    asked: list[tuple[int, int]] = []

    def query(ifindex: int, attach_type: int) -> mprog.HookState:
        asked.append((ifindex, attach_type))
        return mprog.HookState(1, ())

    monkeypatch.setattr(mprog, "prog_query", query)
    owned = "nkplan:s:primary"  # only owned devices are scanned
    single = dataclasses.replace(raw(3, "nks", 0, None, primary=1, policy=0, mode=1, pairing=1), alias=owned)
    paired = dataclasses.replace(raw(4, "nk-a", 5, None, primary=1, policy=0, peer_policy=0, pairing=0), alias=owned)
    scan.HookScanner()(HOST, reader.NsScan(HOST, {3: single, 4: paired}))
    assert [t for i, t in asked if i == 3] == [BC.BPF_TCX_INGRESS, BC.BPF_TCX_EGRESS]
    assert [t for i, t in asked if i == 4] == [BC.BPF_NETKIT_PRIMARY, BC.BPF_NETKIT_PEER, BC.BPF_TCX_INGRESS,
                                               BC.BPF_TCX_EGRESS]  # fmt: skip


def test_undeclared_netkit_attributes_are_not_sent() -> None:
    link = LinkRec("netkit", EndRec(HOST, "nk-a"), EndRec(HOST, "nk-b"))
    data = info_data(newlink_body(link, None), "netkit")
    assert list(data) == [C.IFLA_NETKIT_PEER_INFO]  # in particular never the read-only PRIMARY
    assert peer_info(data[C.IFLA_NETKIT_PEER_INFO])[1] == {C.IFLA_IFNAME: asciiz("nk-b")}


def test_veth_creation_request_bytes() -> None:
    link = LinkRec("veth", EndRec(HOST, "h0"), EndRec("pod", "eth0"))
    body = newlink_body(link, 9)
    assert link_attrs(body)[1][C.IFLA_IFNAME] == asciiz("h0")
    data = info_data(body, "veth")
    assert list(data) == [C.VETH_INFO_PEER]
    assert peer_info(data[C.VETH_INFO_PEER]) == (
        (0, 0, 0, 0, 0),
        {C.IFLA_IFNAME: asciiz("eth0"), C.IFLA_NET_NS_FD: u32(9)},
    )


@pytest.mark.parametrize("extras", [True, False])
def test_probe_request_equals_the_production_encoding(extras: bool) -> None:
    # the probe runs inside read(), which must not import pyroute2, so it packs its request itself
    assert probe.probe_body(extras) == newlink_body(probe.probe_link(extras), None)


class Recorder:
    """Stands in for RtnlSocket: records what would be sent, acks everything."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, bytes]] = []

    def request(self, mtype: int, flags: int, body: bytes) -> list[tuple[int, bytes, int, int]]:
        self.sent.append((mtype, flags, body))
        return []


def recorded(fn: object, *args: object, **kwargs: object) -> tuple[int, int, bytes]:
    rec = Recorder()
    fn(cast(RtnlSocket, rec), *args, **kwargs)  # type: ignore[operator]
    assert len(rec.sent) == 1
    return rec.sent[0]


MAC = bytes.fromhex("020000abcd01")
CHANGES = [
    ("up", lambda: recorded(rtnl.set_up, 5, "x", HOST, True)[2], (0, 0, 5, C.IFF_UP, C.IFF_UP), {}),
    ("down", lambda: recorded(rtnl.set_up, 5, "x", HOST, False)[2], (0, 0, 5, 0, C.IFF_UP), {}),
    ("mtu", lambda: links.mtu_body(5, 9000), (0, 0, 5, 0, 0), {C.IFLA_MTU: u32(9000)}),
    ("mac", lambda: links.mac_body(5, "02-00-00-AB-cd-01"), (0, 0, 5, 0, 0), {C.IFLA_ADDRESS: MAC}),
    (
        "alias",
        lambda: recorded(rtnl.set_alias, 5, "x", HOST, "nkplan:s:primary")[2],
        (0, 0, 5, 0, 0),
        {C.IFLA_IFALIAS: asciiz("nkplan:s:primary")},
    ),
    ("delete by index", lambda: rtnl.setlink(5), (0, 0, 5, 0, 0), {}),
    ("group", lambda: rtnl.setlink(5, ("IFLA_GROUP", 0x40000001)), (0, 0, 5, 0, 0), {C.IFLA_GROUP: u32(0x40000001)}),
]


@pytest.mark.parametrize(("label", "build", "hdr", "attrs"), CHANGES, ids=[c[0] for c in CHANGES])
def test_link_change_request_bytes(label: str, build: object, hdr: tuple[int, ...], attrs: dict[int, bytes]) -> None:
    assert link_attrs(build()) == (hdr, attrs)  # type: ignore[operator]


NETKIT_CHANGES = [
    (
        links.info_body(5, "netkit", ("IFLA_NETKIT_POLICY", 2), ("IFLA_NETKIT_PEER_POLICY", 0)),
        {C.IFLA_NETKIT_POLICY: u32(2), C.IFLA_NETKIT_PEER_POLICY: u32(0)},
    ),
    (links.info_body(5, "netkit", ("IFLA_NETKIT_MODE", C.NETKIT_L2)), {C.IFLA_NETKIT_MODE: u32(C.NETKIT_L2)}),
    (links.info_body(5, "netkit", ("IFLA_NETKIT_PEER_SCRUB", 1)), {C.IFLA_NETKIT_PEER_SCRUB: u32(1)}),
    (links.info_body(5, "netkit", ("IFLA_NETKIT_HEADROOM", 64)), {C.IFLA_NETKIT_HEADROOM: struct.pack("=H", 64)}),
    (links.info_body(5, "netkit", ("IFLA_NETKIT_TAILROOM", 128)), {C.IFLA_NETKIT_TAILROOM: struct.pack("=H", 128)}),
]


def test_the_kind_table_speaks_the_kernels_numbers() -> None:
    """Each netkit setting of the table maps the record's words to the kernel's enum values
    (NETKIT-FACTS.md) and its record paths to the attribute that carries them."""
    nk = kinds.NETKIT
    assert [(s.field, s.number(), s.number(True) if s.per_end else None) for s in nk.settings] == [
        ("mode", 5, None),
        ("policy", 3, 4),
        ("scrub", 6, 7),
        ("headroom", 8, None),
        ("tailroom", 9, None),
        ("pairing", 10, None),
    ]
    assert nk.at("peer.scrub") == (nk.settings[2], True) and nk.at("mode") == (nk.settings[0], False)
    assert [s.field for s in nk.changeable()] == ["policy"]  # the only settings netkit changes in place
    assert nk.pair_values({C.IFLA_NETKIT_MODE: 0, C.IFLA_NETKIT_HEADROOM: 32}) == {
        "mode": "l2", "headroom": 32, "tailroom": None, "pairing": "pair"  # no PAIRING (before 7.1): a pair
    }  # fmt: skip
    assert nk.pair_values({C.IFLA_NETKIT_PAIRING: 1})["pairing"] == "single"
    own = {C.IFLA_NETKIT_POLICY: 2, C.IFLA_NETKIT_PEER_POLICY: 0}  # an end's own dump: POLICY is its own
    assert nk.end_values(own) == {"policy": "blackhole", "scrub": None}
    # the core table's created-only paths are all settings the kernel half knows
    assert all(nk.at(p) for p in nk.table.created_only)


@pytest.mark.parametrize(("body", "data"), NETKIT_CHANGES)
def test_netkit_change_request_bytes(body: bytes, data: dict[int, bytes]) -> None:
    hdr, a = link_attrs(body)
    assert hdr == (0, 0, 5, 0, 0) and list(a) == [C.IFLA_LINKINFO]
    assert info_data(body, "netkit") == data


@pytest.mark.parametrize(
    ("cidr", "family", "packed"),
    [
        ("10.1.2.3/24", C.AF_INET, bytes([10, 1, 2, 3])),
        ("fd00:1::2/128", C.AF_INET6, bytes.fromhex("fd000001" + "0" * 22 + "02")),
    ],
)
def test_address_request_bytes(cidr: str, family: int, packed: bytes) -> None:
    body = rtnl.addr_body(cidr, 42)
    assert IFADDRMSG.unpack_from(body, 0) == (family, int(cidr.split("/")[1]), 0, 0, 42)
    assert parse_attrs(body, IFADDRMSG.size, len(body)) == {C.IFA_LOCAL: packed, C.IFA_ADDRESS: packed}
    got = decode.address(as_message(C.RTM_NEWADDR, body), 16, 16 + len(body))
    assert got is not None and got[0] == 42 and got[1][2] == cidr


ROUTES = [
    (RouteRec("pod", "0.0.0.0/0", dev="eth0"), 3, C.RT_SCOPE_LINK),
    (RouteRec("pod", "10.0.0.0/8", via="10.0.0.1", metric=5), None, C.RT_SCOPE_UNIVERSE),
    (RouteRec("pod", "::/0", via="fe80::1", dev="eth0"), 3, C.RT_SCOPE_UNIVERSE),
    (RouteRec("pod", "10.9.0.0/16", via="fd00::1", dev="eth0", metric=100), 3, C.RT_SCOPE_UNIVERSE),
    (RouteRec("pod", "fd00:5::/64", dev="eth0", metric=1024), 3, C.RT_SCOPE_UNIVERSE),
]


@pytest.mark.parametrize(("route", "oif", "scope"), ROUTES)
def test_route_request_bytes(route: RouteRec, oif: int | None, scope: int) -> None:
    body = rtnl.route_body(route, oif)
    family, dst_len, _, _, table, proto, got_scope, rtype, flags = RTMSG.unpack_from(body, 0)
    assert (table, proto, got_scope, rtype, flags) == (C.RT_TABLE_MAIN, RTPROT_NKPLAN, scope, C.RTN_UNICAST, 0)
    a = parse_attrs(body, RTMSG.size, len(body))
    assert a[C.RTA_TABLE] == u32(C.RT_TABLE_MAIN) and a[C.RTA_PRIORITY] == u32(route.metric)
    assert (C.RTA_DST in a) == (dst_len > 0)
    if route.via == "fd00::1":  # an IPv4 route via an IPv6 next hop: struct rtvia, no RTA_GATEWAY
        assert C.RTA_GATEWAY not in a
        assert a[C.RTA_VIA] == struct.pack("=H", C.AF_INET6) + bytes.fromhex("fd00" + "0" * 26 + "01")
    # the fast decoder reads the request back as the route it describes
    got = decode.route(as_message(C.RTM_NEWROUTE, body), 16, 16 + len(body))
    assert got is not None and got.family == family
    assert (got.to, got.via, got.oif, got.metric) == (route.to, route.via, oif, route.metric)


FULL_ROUTES = [
    RouteRec("pod", "10.5.0.0/24", table=100, type="blackhole"),
    RouteRec("pod", "10.6.0.0/24", via="10.99.0.1", dev="eth0", onlink=True, src="10.0.0.2", mtu=1400, table=70000),
    RouteRec("pod", "10.7.0.0/24", dev="eth0", scope="host", metric=9),
    RouteRec("pod", "10.9.9.9/32", dev="eth0", type="local", table=255),
    RouteRec("pod", "fd00:9::/64", type="unreachable", metric=1024),
    RouteRec("pod", "10.8.0.0/24", nexthops=(NexthopRec(None, "eth0", 3), NexthopRec("10.0.0.7", "eth1", 1, True))),
    RouteRec("pod", "fd00:7::/64", metric=1024, nexthops=(NexthopRec("fd00::2", "eth0", 2), NexthopRec("fd00::3"))),
]
OIFS = {"eth0": 3, "eth1": 4}


@pytest.mark.parametrize("route", FULL_ROUTES, ids=lambda r: r.to)
def test_every_route_field_survives_the_round_trip(route: RouteRec) -> None:
    """What the writer asks for is what the fast decoder reads back from the same bytes."""
    hop_oifs = [OIFS.get(nh.dev or "") for nh in route.nexthops]
    body = rtnl.route_body(route, OIFS.get(route.dev or ""), hop_oifs=hop_oifs)
    _f, _d, _s, _t, small_table, _p, _scope, rtype, _flags = RTMSG.unpack_from(body, 0)
    assert small_table == (route.table if route.table < 256 else 0) and rtype == C.ROUTE_TYPES[route.type]
    got = decode.route(as_message(C.RTM_NEWROUTE, body), 16, 16 + len(body))
    assert got is not None
    names = {v: k for k, v in OIFS.items()}
    hops = tuple(NexthopRec(h.via, names.get(h.oif or 0), h.weight, h.onlink) for h in got.nexthops)
    back = RouteRec(
        "pod", got.to, got.via, names.get(got.oif or 0), got.metric, None, got.table, got.type,  # type: ignore[arg-type]
        got.scope, got.src, got.onlink, got.mtu, hops,  # type: ignore[arg-type]
    )  # fmt: skip
    assert back == route


def test_a_route_that_sends_nowhere_has_no_device_even_where_ipv6_reports_lo() -> None:
    body = rtnl.route_body(RouteRec("pod", "fd00:9::/64", type="prohibit", metric=1024), 1)  # lo's ifindex
    got = decode.route(as_message(C.RTM_NEWROUTE, body), 16, 16 + len(body))
    assert got is not None and got.oif is None and got.type == "prohibit"


def test_route_delete_matches_any_scope_and_type() -> None:
    body = rtnl.route_body(RouteRec("pod", "10.0.0.0/8", dev="eth0"), None, delete=True)
    assert RTMSG.unpack_from(body, 0)[6:8] == (rtnl.RT_SCOPE_NOWHERE, 0)
    assert C.RTA_OIF not in parse_attrs(body, RTMSG.size, len(body))


def test_an_attribute_pyroute2_does_not_know_is_refused_not_dropped() -> None:
    with pytest.raises(InternalError, match="IFLA_NO_SUCH"):
        encode.link(("IFLA_NO_SUCH", 1), index=5)
    with pytest.raises(InternalError, match="IFLA_NETKIT_BOGUS"):
        rtnl.setlink(5, links._linkinfo("netkit", ("IFLA_NETKIT_BOGUS", 1)))


def test_pyroute2_is_imported_by_the_first_write_that_needs_it() -> None:
    code = (
        "import sys\n"
        "from nkplan.kernel import linux\nfrom nkplan.kernel.netlink import batch, links, probe, rtnl\n"
        "assert 'pyroute2' not in sys.modules, 'imported with the kernel layer'\n"
        "links.mtu_body(1, 1500)\n"
        "assert 'pyroute2' not in sys.modules, 'a flat request is packed without it'\n"
        "rtnl.setlink(1, links._linkinfo('veth'))\n"
        "assert 'pyroute2' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nkplan_decodes_what_pyroute2_encodes() -> None:
    netkit_plugin.register()  # as a kernel dump would carry them, incl. read-only PRIMARY, PAIRING
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
    assert got.info == {
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

    pairs = reader.pair_ends(scans, {"a": 0}, between)
    got = {((a[0], a[1].name), (b[0], b[1].name)) for a, b in pairs}
    assert got == {((HOST, "h"), ("a", "eth0")), (("a", "x"), ("b", "y"))}
    assert ("a", "b") in asked


def test_host_end_pairs_with_the_end_whose_nsid_is_its_namespace_id_of_the_host() -> None:
    """Two named ends mirror the host end by ifindex; only the one whose netnsid is its own
    namespace's id of the host (asked from inside it) is its other end, in whichever order."""
    for order in (("d", "e"), ("e", "d")):
        scans = {HOST: reader.NsScan(HOST, {5: veth(5, "h", 2, 0)})}
        # d's eth0 points at d's id 3, which is another named namespace, not the host (id 1)
        ends = {ns: reader.NsScan(ns, {2: veth(2, "eth0", 5, nsid)}) for ns, nsid in (("d", 3), ("e", 7))}
        scans.update((ns, ends[ns]) for ns in order)
        pairs = reader.pair_ends(scans, {"d": 1, "e": 7}, lambda a, b: -1)
        assert [((a[0], a[1].name), (b[0], b[1].name)) for a, b in pairs] == [((HOST, "h"), ("e", "eth0"))]


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
        Op("create_netkit_single", "nks"),
        NetlinkRefusal(errno.EOPNOTSUPP, None),
        "creating single netkit device nks: the kernel refuses it "
        "(a single netkit device takes no peer, no scrub and no policy but forward; "
        "or this kernel has no netkit, CONFIG_NETKIT)",
    ),
    (
        Op("delete_link", "nks", "pod", "single netkit device"),
        NetlinkRefusal(errno.ENODEV, None),
        "deleting single netkit device nks in namespace pod: no such device",
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


FLAT_REQUESTS = [
    ("link", {"index": 5}, (("IFLA_IFALIAS", ""),)),
    ("link", {"index": 5}, (("IFLA_IFALIAS", "nkplan:st:primary:0123456789ab"),)),
    ("link", {"index": 5, "flags": C.IFF_UP, "change": C.IFF_UP}, ()),
    ("link", {"index": 7}, (("IFLA_MTU", 9000),)),
    ("link", {"index": 7}, (("IFLA_ADDRESS", "02:00:00:00:0b:01"),)),
    ("link", {"index": 0}, (("IFLA_IFNAME", "nk-a"), ("IFLA_GROUP", 4242))),
    (
        "address",
        {"family": C.AF_INET, "prefixlen": 24, "index": 9},
        (("IFA_LOCAL", "10.1.2.3"), ("IFA_ADDRESS", "10.1.2.3")),
    ),
    (
        "address",
        {"family": C.AF_INET6, "prefixlen": 64, "index": 9},
        (("IFA_LOCAL", "fd00::1"), ("IFA_ADDRESS", "fd00::1")),
    ),
]
ROUTE_HEADER = {"family": C.AF_INET, "dst_len": 24, "table": 100, "proto": RTPROT_NKPLAN, "scope": 0, "rtype": 1}


@pytest.mark.parametrize(("kind", "fields", "attrs"), FLAT_REQUESTS)
def test_flat_requests_are_packed_exactly_as_pyroute2_encodes_them(
    kind: str, fields: dict[str, int], attrs: tuple[encode.Attr, ...]
) -> None:
    fast = getattr(encode, kind)(*attrs, **fields)
    msg = encode._pyroute2()[0 if kind == "link" else 1]()
    assert fast == encode._fill(msg, fields, attrs)


@pytest.mark.parametrize("route", [*FULL_ROUTES, *(r for r, _oif, _scope in ROUTES)], ids=lambda r: r.to)
def test_route_requests_are_packed_exactly_as_pyroute2_encodes_them(route: RouteRec) -> None:
    """Every route the writer can ask for, added and deleted (RTA_MULTIPATH is packed by rtnl)."""
    for delete in (False, True):
        attrs, header = rtnl.route_request(route, 3, delete=delete)
        fields = {k: v for k, v in header.items() if k != "rtype"} | {"type": header["rtype"]}
        assert encode.route(*attrs, **header) == encode._fill(encode._pyroute2()[2](), fields, tuple(attrs))


def test_a_forked_reader_hands_back_its_part_or_its_failure() -> None:
    """reader._Child: what the forked half of a read returns comes back pickled, visitor
    included; what it raises is raised here, with its errno; an abandoned one is reaped."""
    from nkplan.kernel.bpf.scan import HookScanner

    part = reader._Part({"a": reader.NsScan("a", {2: veth(2, "eth0", 5, 0)})}, {"a": NamespaceRec("a", "s")}, {"a": 0})
    part.visitor = HookScanner()
    got = reader._Child(lambda: part).result()
    assert (got.scans, got.namespaces, got.home_ids, got.visitor) == (
        part.scans,
        part.namespaces,
        part.home_ids,
        part.visitor,
    )

    def fails() -> reader._Part:
        raise KernelError("reading network state: nope", errno.EBUSY)

    with pytest.raises(KernelError, match="nope") as caught:
        reader._Child(fails).result()
    assert caught.value.errno == errno.EBUSY
    reader._Child(lambda: part).abandon()


def test_a_forked_reader_that_dies_or_cannot_start_is_a_readable_error() -> None:
    """reader._Child killed before it wrote (the OOM killer, a signal to it alone) is a KernelError
    naming how it ended, not an unpickling traceback; a refused fork is an OSError with the pipe's
    fds closed (the caller then reads everything itself)."""

    def killed() -> reader._Part:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    with pytest.raises(KernelError, match=f"ended without a result \\(killed by signal {int(signal.SIGKILL)}\\)"):
        reader._Child(killed).result()

    def refused() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    before = set(os.listdir("/proc/self/fd"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reader.os, "fork", refused)
        with pytest.raises(OSError):
            reader._Child(lambda: reader._Part())
    # no new fd (the pipe's two closed); one of `before` may be a file the collector closed meanwhile
    assert set(os.listdir("/proc/self/fd")) <= before


def test_the_reader_forks_only_beside_its_own_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A program embedding nkplan with threads of its own gets no fork (a lock one of them held
    would stay held in the child); nkplan's own threads (nkplan-…) and the one waiting for the
    read (the main thread) do not count. The live threads are given, as the read's worker sees them."""
    me = threading.current_thread()

    class Other:
        def __init__(self, name: str) -> None:
            self.name = name

    waiting, hop = Other("MainThread"), Other("nkplan-netns-hop")
    monkeypatch.setattr(reader.threading, "enumerate", lambda: [waiting, me, hop])
    assert reader._forkable()
    monkeypatch.setattr(reader.threading, "enumerate", lambda: [waiting, me, hop, Other("embedder")])
    assert not reader._forkable()
