"""LinuxKernel on a kernel with netkit (inside the VM rig: `python tests/vm/rig.py run --kernel
6.12 -- .venv/bin/python -m pytest tests/netkit`). Creates L3 and L2 pairs with policies, scrub,
MACs and (where the kernel honours it) head/tailroom; reads them back; changes policies in place;
has a mode change refused in words; deletes. Every result is checked with Debian trixie's
iproute2 (bookworm's does not print netkit attributes), independently of nkplan's reader.

Python runs ~35x slower in the emulated guest: few kernel round trips, one module-scoped kernel,
everything in this one pytest process."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nkplan.core.records import HOST, EndRec, KernelInfo, LinkRec, owner_alias
from nkplan.errors import KernelError
from nkplan.kernel.linux import LinuxKernel
from tests.host.conftest import Names, sweep_prefix
from tests.realkernel import ip_json

pytestmark = pytest.mark.netkit
TRIXIE_IP = str(Path(__file__).resolve().parents[1] / "vm" / "trixie-ip")


def tip(*args: str, ns: str | None = None, check: bool = True) -> Any:
    return ip_json(*args, ns=ns, check=check, tool=TRIXIE_IP)


def dev(name: str, ns: str | None = None) -> dict[str, Any] | None:
    found = tip("-d", "link", "show", "dev", name, ns=ns, check=False)
    return found[0] if found else None


def data(name: str, ns: str | None = None) -> dict[str, Any]:
    d = dev(name, ns)
    assert d is not None, f"{name} missing in {ns or 'host'}"
    assert d["linkinfo"]["info_kind"] == "netkit"
    return d["linkinfo"]["info_data"]  # type: ignore[no-any-return]


def addrs(name: str, ns: str | None = None) -> list[str]:
    out = []
    for entry in tip("addr", "show", "dev", name, ns=ns):
        out += [f"{a['local']}/{a['prefixlen']}" for a in entry["addr_info"] if not a["local"].startswith("fe80")]
    return sorted(out)


def release_at_least(release: str, *want: int) -> bool:
    got = tuple(int(x) for x in re.findall(r"\d+", release.split("+")[0].split("-")[0])[:3])
    return got >= want


@pytest.fixture(scope="module")
def kernel() -> LinuxKernel:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return LinuxKernel()


@pytest.fixture(scope="module")
def info(kernel: LinuxKernel) -> KernelInfo:
    found = kernel.read(probe_netkit=True).kernel
    if not found.netkit and os.environ.get("NKPLAN_IN_VM") != "1":
        pytest.skip("this kernel has no netkit: run these in the VM rig (tests/vm/rig.py)")
    return found


@pytest.fixture(scope="module")
def n(kernel: LinuxKernel) -> Iterator[Names]:
    names = Names()
    sweep_prefix(names.prefix)
    try:
        yield names
    finally:
        sweep_prefix(names.prefix)


@pytest.fixture(scope="module")
def pod(kernel: LinuxKernel, info: KernelInfo, n: Names) -> str:
    kernel.create_namespace(n("p"), n.stack)
    return n("p")


def test_probe_matches_the_kernel_release(info: KernelInfo) -> None:
    rel = os.uname().release
    assert info.release == rel and info.netkit is True
    major_minor = tuple(int(x) for x in re.findall(r"\d+", rel)[:2])
    # scrub: 6.13, backported to 6.12.4; head/tailroom: 6.14
    assert info.netkit_scrub is (
        release_at_least(rel, 6, 13) or (major_minor == (6, 12) and release_at_least(rel, 6, 12, 4))
    )
    assert info.netkit_headroom is release_at_least(rel, 6, 14)
    assert info.netkit_single is release_at_least(rel, 7, 1)  # single-device mode (IFLA_NETKIT_PAIRING)


def l3_link(n: Names, pod: str, info: KernelInfo) -> LinkRec:
    return LinkRec(
        "netkit",
        EndRec(
            HOST,
            n("a"),
            mtu=1400,
            addresses=("10.250.0.1/32",),
            policy="forward",
            scrub="none" if info.netkit_scrub else None,
        ),
        EndRec(
            pod,
            "eth0",
            mtu=1450,
            addresses=("10.250.1.2/32", "fd00:250::2/128"),
            policy="blackhole",
            scrub="default" if info.netkit_scrub else None,
        ),
        mode="l3",
        headroom=64 if info.netkit_headroom else None,
        tailroom=32 if info.netkit_headroom else None,
        pairing="pair",  # what the reader says on every kernel (IFLA_NETKIT_PAIRING from 7.1)
        owner=n.stack,
    )


def test_l3_pair_with_peer_in_a_namespace(kernel: LinuxKernel, info: KernelInfo, n: Names, pod: str) -> None:
    link = l3_link(n, pod, info)
    kernel.create_link(link)

    prim, peer = dev(n("a")), dev("eth0", pod)
    assert prim is not None and peer is not None
    assert prim["address"] == "00:00:00:00:00:00" and "NOARP" in prim["flags"]
    assert (prim["mtu"], peer["mtu"]) == (1400, 1450)
    assert "UP" in prim["flags"] and "UP" in peer["flags"]
    assert prim["ifalias"] == owner_alias(n.stack, "primary") and peer["ifalias"] == owner_alias(n.stack, "peer")
    assert addrs(n("a")) == ["10.250.0.1/32"] and addrs("eth0", pod) == ["10.250.1.2/32", "fd00:250::2/128"]
    p, q = data(n("a")), data("eth0", pod)
    assert (p["mode"], p["type"], q["type"]) == ("l3", "primary", "peer")
    assert (p["policy"], p["peer_policy"]) == ("forward", "blackhole")
    assert (q["policy"], q["peer_policy"]) == ("blackhole", "forward")  # the peer's own view
    if info.netkit_scrub:
        assert (p["scrub"], p["peer_scrub"]) == ("none", "default")
    # head/tailroom: trixie's iproute2 (6.15) does not print them; pyroute2 checks them below

    live = kernel.read()
    got = live.links[(HOST, n("a"))]
    expect = link
    if not info.netkit_headroom:  # not reported by this kernel
        expect = dataclasses.replace(link, headroom=None, tailroom=None)
    assert got == expect
    assert live.devices[(pod, "eth0")].kind == "netkit"


def test_pyroute2_with_the_plugin_decodes_the_real_device(info: KernelInfo, n: Names) -> None:
    """pyroute2 + nkplan's plugin as a second observer, and a check that the plugin knows every
    attribute this kernel reports (7.x adds HEADROOM, TAILROOM, PAIRING)."""
    from pyroute2 import IPRoute

    from nkplan.kernel.netlink import netkit_plugin
    netkit_plugin.register()
    with IPRoute() as ipr:
        (msg,) = ipr.get_links(ifname=n("a"))
    infodata = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    names = {k for k, _ in infodata["attrs"]}
    assert not [k for k in names if "UNKNOWN" in k], names
    assert infodata.get_attr("IFLA_NETKIT_PRIMARY") == 1 and infodata.get_attr("IFLA_NETKIT_MODE") == 1
    assert infodata.get_attr("IFLA_NETKIT_PEER_POLICY") == 2
    if info.netkit_headroom:
        assert (infodata.get_attr("IFLA_NETKIT_HEADROOM"), infodata.get_attr("IFLA_NETKIT_TAILROOM")) == (64, 32)
    if info.netkit_scrub:
        assert (infodata.get_attr("IFLA_NETKIT_SCRUB"), infodata.get_attr("IFLA_NETKIT_PEER_SCRUB")) == (0, 1)
    # pairing (read-only in nkplan): reported from 7.1 on, NETKIT_DEVICE_PAIR for a pair; older
    # kernels report nothing, and the reader's "pair" (test above) then is the kind's default
    if release_at_least(os.uname().release, 7, 1):
        assert infodata.get_attr("IFLA_NETKIT_PAIRING") == 0
    else:
        assert "IFLA_NETKIT_PAIRING" not in names


def test_policies_change_in_place(kernel: LinuxKernel, info: KernelInfo, n: Names, pod: str) -> None:
    before = l3_link(n, pod, info)
    index = dev(n("a"))["ifindex"]  # type: ignore[index]
    after = dataclasses.replace(
        before,
        primary=dataclasses.replace(before.primary, policy="blackhole"),
        peer=dataclasses.replace(before.peer, policy="forward", mtu=1500),
    )
    kernel.update_link(before, after)
    p = data(n("a"))
    assert (p["policy"], p["peer_policy"]) == ("blackhole", "forward")
    assert dev(n("a"))["ifindex"] == index and dev("eth0", pod)["mtu"] == 1500  # type: ignore[index]
    got = kernel.read().links[(HOST, n("a"))]
    assert (got.primary.policy, got.peer.policy, got.peer.mtu) == ("blackhole", "forward", 1500)
    kernel.update_link(after, before)
    assert (data(n("a"))["policy"], data(n("a"))["peer_policy"]) == ("forward", "blackhole")


def test_fixed_attributes_are_refused_in_words(kernel: LinuxKernel, info: KernelInfo, n: Names, pod: str) -> None:
    before = l3_link(n, pod, info)
    with pytest.raises(
        KernelError, match=rf"^cannot change netkit mode of {n('a')} in place: the kernel refuses \(EACCES"
    ):
        kernel.update_link(before, dataclasses.replace(before, mode="l2"))
    if info.netkit_scrub:
        with pytest.raises(KernelError, match=rf"^cannot change netkit scrub of {n('a')} in place: the kernel refuses"):
            kernel.update_link(
                before, dataclasses.replace(before, primary=dataclasses.replace(before.primary, scrub="default"))
            )
    if info.netkit_headroom:
        with pytest.raises(
            KernelError, match=rf"^cannot change netkit headroom of {n('a')} in place: the kernel refuses"
        ):
            kernel.update_link(before, dataclasses.replace(before, headroom=128))
    else:  # an older kernel takes the attribute without a word and does nothing: caught by reading back
        with pytest.raises(KernelError, match=rf"^cannot change netkit headroom of {n('a')} in place: .*ignored it"):
            kernel.update_link(before, dataclasses.replace(before, headroom=128))
    with pytest.raises(KernelError, match=rf"setting MAC address 02:00:00:00:00:09 on {n('a')} .*no settable MAC"):
        kernel.update_link(
            before, dataclasses.replace(before, primary=dataclasses.replace(before.primary, mac="02:00:00:00:00:09"))
        )
    # nothing changed on the way
    assert data(n("a"))["mode"] == "l3" and dev(n("a"))["address"] == "00:00:00:00:00:00"  # type: ignore[index]


def test_l2_pair_with_macs_between_two_namespaces(kernel: LinuxKernel, info: KernelInfo, n: Names, pod: str) -> None:
    other = n("q")
    kernel.create_namespace(other, n.stack)
    link = LinkRec(
        "netkit",
        EndRec(pod, "nk0", mac="02:00:00:00:0c:01", addresses=("10.250.2.1/24",), policy="forward"),
        EndRec(other, "nk1", mac="02:00:00:00:0c:02", up=False, policy="forward"),
        mode="l2",
        owner=n.stack,
    )
    kernel.create_link(link)
    assert dev("nk0", pod)["address"] == "02:00:00:00:0c:01"  # type: ignore[index]
    peer = dev("nk1", other)
    assert peer is not None and peer["address"] == "02:00:00:00:0c:02" and "UP" not in peer["flags"]
    assert data("nk0", pod)["mode"] == "l2" and "NOARP" not in peer["flags"]
    got = kernel.read().links[(pod, "nk0")]
    assert (got.peer.namespace, got.peer.name, got.mode) == (other, "nk1", "l2")
    assert (got.primary.mac, got.peer.mac, got.peer.up) == ("02:00:00:00:0c:01", "02:00:00:00:0c:02", False)
    # a MAC can change in place in L2 mode
    after = dataclasses.replace(link, peer=dataclasses.replace(link.peer, mac="02:00:00:00:0c:03"))
    kernel.update_link(link, after)
    assert dev("nk1", other)["address"] == "02:00:00:00:0c:03"  # type: ignore[index]


def test_netkit_on_both_ends_in_the_host_then_delete(kernel: LinuxKernel, info: KernelInfo, n: Names) -> None:
    link = LinkRec("netkit", EndRec(HOST, n("x")), EndRec(HOST, n("y")), mode="l3", owner=n.stack)
    kernel.create_link(link)
    got = kernel.read().links[(HOST, n("x"))]
    assert (got.peer.name, got.primary.policy, got.peer.policy) == (n("y"), "forward", "forward")
    kernel.delete_link(link)
    assert dev(n("x")) is None and dev(n("y")) is None


def test_delete_pair_and_namespace(kernel: LinuxKernel, info: KernelInfo, n: Names, pod: str) -> None:
    kernel.delete_link(l3_link(n, pod, info))
    assert dev(n("a")) is None and dev("eth0", pod) is None
    kernel.delete_namespace(n("q"))  # takes nk0/nk1 with it, at once
    assert dev("nk0", pod) is None
    assert n("q") not in {x["name"] for x in tip("netns", "list")}
    live = kernel.read()
    assert not [k for k in live.links if n.prefix in k[0] + k[1]]
