"""LinuxKernel on the host kernel: veth pairs (create, read, update, delete) and refusals.
Each test checks the kernel with iproute2 first, then that read() returns the same records."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from nkplan.core.records import HOST, EndRec, LinkRec, owner_alias
from nkplan.errors import InternalError, KernelError
from nkplan.kernel.linux import LinuxKernel
from tests.host import observe
from tests.host.conftest import Names

pytestmark = pytest.mark.host


@pytest.fixture
def kernel() -> LinuxKernel:
    return LinuxKernel()


def assert_observed(end: EndRec, kind: str, alias: str | None) -> str:
    """The end as iproute2 sees it matches the record; returns its MAC."""
    ns = end.namespace or None
    dev = observe.link(end.name, ns)
    assert dev is not None, f"{end.name} missing in {ns or 'host'}"
    assert observe.kind(dev) == kind
    assert dev["mtu"] == end.mtu
    assert observe.is_up(dev) == end.up
    if end.mac is not None:
        assert dev["address"] == end.mac
    assert sorted(observe.addrs(end.name, ns)) == sorted(end.addresses)
    assert dev.get("ifalias") == alias
    return str(dev["address"])


def with_macs(link: LinkRec, kind: str = "veth") -> LinkRec:
    """The record as the reader must return it: the kernel-chosen MACs filled in."""
    p = dataclasses.replace(
        link.primary, mac=observe.link(link.primary.name, link.primary.namespace or None)["address"]
    )  # type: ignore[index]
    q = dataclasses.replace(link.peer, mac=observe.link(link.peer.name, link.peer.namespace or None)["address"])  # type: ignore[index]
    return dataclasses.replace(link, primary=p, peer=q)


def check_link(kernel: LinuxKernel, link: LinkRec) -> None:
    owner = link.owner
    assert_observed(link.primary, link.kind, owner_alias(owner, "primary") if owner else None)
    assert_observed(link.peer, link.kind, owner_alias(owner, "peer") if owner else None)
    live = kernel.read()
    assert live.links[(link.primary.namespace, link.primary.name)] == with_macs(link)
    assert live.devices[(link.primary.namespace, link.primary.name)].role == ("primary" if owner else None)
    assert live.devices[(link.peer.namespace, link.peer.name)].kind == link.kind


def test_veth_with_peer_in_a_namespace(kernel: LinuxKernel, ns: Names) -> None:
    pod = ns("p")
    kernel.create_namespace(pod, ns.stack)
    link = LinkRec(
        "veth",
        EndRec(HOST, ns("h"), mtu=1400, mac="02:00:00:00:01:01", addresses=("10.230.0.1/30", "fd00:230::1/64")),
        EndRec(pod, "eth0", mtu=1450, addresses=("10.230.0.2/30", "10.230.9.2/32", "fd00:230::2/64")),
        owner=ns.stack,
    )
    kernel.create_link(link)
    check_link(kernel, link)
    # the peer really lives in the pod namespace, paired with the host end
    peer = observe.link("eth0", pod)
    host = observe.link(ns("h"))
    assert peer is not None and host is not None
    assert peer["link_index"] == host["ifindex"] and host["link_index"] == peer["ifindex"]
    assert observe.link("eth0") is None or observe.link("eth0")["ifindex"] != peer["ifindex"]  # type: ignore[index]


def test_veth_with_both_ends_in_the_host(kernel: LinuxKernel, ns: Names) -> None:
    link = LinkRec(
        "veth", EndRec(HOST, ns("a"), addresses=("10.230.1.1/24",)), EndRec(HOST, ns("b"), up=False), owner=ns.stack
    )
    kernel.create_link(link)
    check_link(kernel, link)


def test_veth_between_two_named_namespaces(kernel: LinuxKernel, ns: Names) -> None:
    a, b = ns("a"), ns("b")
    kernel.create_namespace(a, ns.stack)
    kernel.create_namespace(b, ns.stack)
    link = LinkRec("veth", EndRec(a, "x0", addresses=("fd00:231::1/64",)), EndRec(b, "y0", mtu=9000), owner=ns.stack)
    kernel.create_link(link)
    check_link(kernel, link)


def test_veth_with_primary_in_a_namespace_and_peer_in_the_host(kernel: LinuxKernel, ns: Names) -> None:
    a = ns("a")
    kernel.create_namespace(a, ns.stack)
    link = LinkRec("veth", EndRec(a, "x0"), EndRec(HOST, ns("h"), addresses=("10.230.2.1/24",)), owner=ns.stack)
    kernel.create_link(link)
    check_link(kernel, link)


def test_unowned_link_is_read_without_owner(kernel: LinuxKernel, ns: Names) -> None:
    link = LinkRec("veth", EndRec(HOST, ns("a")), EndRec(HOST, ns("b")), owner=None)
    kernel.create_link(link)
    check_link(kernel, link)


def test_update_link_in_place(kernel: LinuxKernel, ns: Names) -> None:
    pod = ns("p")
    kernel.create_namespace(pod, ns.stack)
    before = LinkRec(
        "veth",
        EndRec(HOST, ns("h"), mac="02:00:00:00:02:01", addresses=("10.230.3.1/24", "fd00:233::1/64")),
        EndRec(pod, "eth0", addresses=("10.230.3.2/24",)),
        owner=ns.stack,
    )
    kernel.create_link(before)
    after = LinkRec(
        "veth",
        EndRec(HOST, ns("h"), mtu=1280, mac="02:00:00:00:02:02", addresses=("10.230.3.1/24", "10.230.4.1/24")),
        EndRec(pod, "eth0", mtu=1300, up=False, addresses=("fd00:233::2/64",)),
        owner=f"{ns.stack}b",
    )
    kernel.update_link(before, after)
    check_link(kernel, after)
    # and back again: the applier's undo is the same call reversed
    kernel.update_link(after, before)
    check_link(kernel, dataclasses.replace(before, peer=dataclasses.replace(before.peer, mac=None)))


def test_going_down_keeps_ipv6_addresses(kernel: LinuxKernel, ns: Names) -> None:
    # the kernel flushes IPv6 addresses on admin down (keep_addr_on_down=0): update_link puts them back
    before = LinkRec(
        "veth", EndRec(HOST, ns("a"), addresses=("10.230.5.1/24", "fd00:235::1/64")), EndRec(HOST, ns("b"))
    )
    kernel.create_link(before)
    after = dataclasses.replace(before, primary=dataclasses.replace(before.primary, up=False))
    kernel.update_link(before, after)
    check_link(kernel, after)
    kernel.update_link(after, before)
    check_link(kernel, before)


def test_update_cannot_change_names_or_kind(kernel: LinuxKernel, ns: Names) -> None:
    link = LinkRec("veth", EndRec(HOST, ns("a")), EndRec(HOST, ns("b")), owner=ns.stack)
    kernel.create_link(link)
    renamed = dataclasses.replace(link, peer=dataclasses.replace(link.peer, name=ns("c")))
    with pytest.raises(InternalError):
        kernel.update_link(link, renamed)
    assert observe.link(ns("b")) is not None and observe.link(ns("c")) is None


def test_delete_link_removes_both_ends(kernel: LinuxKernel, ns: Names) -> None:
    pod = ns("p")
    kernel.create_namespace(pod, ns.stack)
    link = LinkRec("veth", EndRec(HOST, ns("h")), EndRec(pod, "eth0"), owner=ns.stack)
    kernel.create_link(link)
    kernel.delete_link(link)
    assert observe.link(ns("h")) is None
    assert observe.link_names(pod) == ["lo"]
    live = kernel.read()
    assert (HOST, ns("h")) not in live.links and (pod, "eth0") not in live.devices


def test_delete_link_refuses_a_device_of_another_kind(kernel: LinuxKernel, ns: Names) -> None:
    link = LinkRec("veth", EndRec(HOST, ns("a")), EndRec(HOST, ns("b")), owner=ns.stack)
    kernel.create_link(link)
    with pytest.raises(KernelError, match=f"refusing, {ns('a')} in host namespace is a veth device"):
        kernel.delete_link(dataclasses.replace(link, kind="netkit"))
    assert observe.link(ns("a")) is not None


def test_failed_create_leaves_nothing_behind(kernel: LinuxKernel, ns: Names) -> None:
    pod = ns("p")
    kernel.create_namespace(pod, ns.stack)
    link = LinkRec("veth", EndRec(HOST, ns("h")), EndRec(pod, "eth0", mtu=20), owner=ns.stack)
    with pytest.raises(KernelError, match=f"setting MTU 20 on eth0 in namespace {pod}: the MTU is outside"):
        kernel.create_link(link)
    assert observe.link(ns("h")) is None
    assert observe.link_names(pod) == ["lo"]


def test_name_taken_is_refused_in_words(kernel: LinuxKernel, ns: Names) -> None:
    pod = ns("p")
    kernel.create_namespace(pod, ns.stack)
    subprocess.run(["ip", "link", "add", ns("x"), "type", "veth", "peer", "name", "eth0", "netns", pod], check=True)
    with pytest.raises(KernelError, match=f"^device name {ns('x')} already exists in host namespace$"):
        kernel.create_link(LinkRec("veth", EndRec(HOST, ns("x")), EndRec(pod, "eth1")))
    with pytest.raises(KernelError, match=f"^device name eth0 already exists in namespace {pod}$"):
        kernel.create_link(LinkRec("veth", EndRec(HOST, ns("y")), EndRec(pod, "eth0")))
    assert observe.link(ns("y")) is None and observe.link_names(pod) == ["eth0", "lo"]


def test_missing_namespace_is_refused_in_words(kernel: LinuxKernel, ns: Names) -> None:
    with pytest.raises(KernelError, match=f"creating veth pair {ns('h')}: namespace {ns('zz')} does not exist"):
        kernel.create_link(LinkRec("veth", EndRec(HOST, ns("h")), EndRec(ns("zz"), "eth0")))
    assert observe.link(ns("h")) is None


def test_netkit_on_a_kernel_without_netkit(kernel: LinuxKernel, ns: Names) -> None:
    link = LinkRec("netkit", EndRec(HOST, ns("a")), EndRec(HOST, ns("b")), mode="l3")
    with pytest.raises(
        KernelError, match=f"^creating netkit pair {ns('a')}: this kernel has no netkit support \\(CONFIG_NETKIT\\)$"
    ):
        kernel.create_link(link)
    assert observe.link(ns("a")) is None
