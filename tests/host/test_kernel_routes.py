"""LinuxKernel on the host kernel: main-table routes with nkplan's protocol, in a namespace."""

from __future__ import annotations

import subprocess

import pytest

from nkplan.core.records import HOST, RTPROT_NKPLAN, EndRec, LinkRec, RouteRec
from nkplan.errors import KernelError
from nkplan.kernel.linux import LinuxKernel
from tests.host import observe
from tests.host.conftest import Names

pytestmark = pytest.mark.host


@pytest.fixture
def kernel() -> LinuxKernel:
    return LinuxKernel()


@pytest.fixture
def pod(kernel: LinuxKernel, ns: Names) -> str:
    """A namespace with eth0 (10.232.0.2/24, fd00:232::2/64) paired with a host end."""
    name = ns("p")
    kernel.create_namespace(name, ns.stack)
    kernel.create_link(
        LinkRec(
            "veth",
            EndRec(HOST, ns("h"), addresses=("10.232.0.1/24", "fd00:232::1/64")),
            EndRec(name, "eth0", addresses=("10.232.0.2/24", "fd00:232::2/64")),
            owner=ns.stack,
        )
    )
    return name


def ours(kernel: LinuxKernel, ns: str) -> list[RouteRec]:
    return sorted((r for r in kernel.read().routes if r.namespace == ns), key=lambda r: (r.to, r.metric))


def test_default_route_via_gateway_and_dev(kernel: LinuxKernel, ns: Names, pod: str) -> None:
    route = RouteRec(pod, "0.0.0.0/0", via="10.232.0.1", dev="eth0", metric=0, owner=ns.stack)
    kernel.add_route(route)
    seen = observe.routes(pod)
    assert seen == [
        {"dst": "default", "gateway": "10.232.0.1", "dev": "eth0", "protocol": str(RTPROT_NKPLAN), "flags": []}
    ]
    assert ours(kernel, pod) == [route]


def test_ipv6_routes_with_and_without_via_keep_their_metric(kernel: LinuxKernel, ns: Names, pod: str) -> None:
    default6 = RouteRec(pod, "::/0", via="fd00:232::1", dev="eth0", metric=0, owner=ns.stack)
    onlink6 = RouteRec(pod, "fd00:299::/64", dev="eth0", metric=7, owner=ns.stack)
    kernel.add_route(default6)
    kernel.add_route(onlink6)
    seen = {r["dst"]: r for r in observe.routes(pod)}
    assert seen["default"]["gateway"] == "fd00:232::1" and seen["default"]["dev"] == "eth0"
    assert seen["fd00:299::/64"]["metric"] == 7 and "gateway" not in seen["fd00:299::/64"]
    # IPv6 has no metric 0: the kernel stores 1024 even when told 0 explicitly (the spec side's
    # effective_metric() accounts for it); the reader reports what the kernel holds
    assert seen["default"]["metric"] == 1024
    live = {r.to: r for r in ours(kernel, pod)}
    assert live["fd00:299::/64"] == onlink6
    assert live["::/0"] == RouteRec(pod, "::/0", via="fd00:232::1", dev="eth0", metric=1024, owner=ns.stack)


def test_dev_route_and_replace_and_delete(kernel: LinuxKernel, ns: Names, pod: str) -> None:
    before = RouteRec(pod, "10.240.0.0/16", dev="eth0", metric=5, owner=ns.stack)
    kernel.add_route(before)
    seen = observe.routes(pod)
    assert [(r["dst"], r["dev"], r.get("scope"), r["metric"]) for r in seen] == [("10.240.0.0/16", "eth0", "link", 5)]
    after = RouteRec(pod, "10.240.0.0/16", via="10.232.0.1", dev="eth0", metric=5, owner=ns.stack)
    kernel.replace_route(before, after)
    seen = observe.routes(pod)
    assert [(r["dst"], r.get("gateway"), r["metric"]) for r in seen] == [("10.240.0.0/16", "10.232.0.1", 5)]
    assert ours(kernel, pod) == [after]
    kernel.delete_route(after)
    assert observe.routes(pod) == [] and ours(kernel, pod) == []


def test_route_in_the_host_namespace(kernel: LinuxKernel, ns: Names, pod: str) -> None:
    route = RouteRec(HOST, "10.241.7.0/24", via="10.232.0.2", dev=ns("h"), metric=3, owner=ns.stack)
    kernel.add_route(route)
    mine = [r for r in observe.routes() if r["dev"] == ns("h")]
    assert [(r["dst"], r["gateway"], r["metric"]) for r in mine] == [("10.241.7.0/24", "10.232.0.2", 3)]
    assert [r for r in kernel.read().routes if r.dev == ns("h")] == [route]
    kernel.delete_route(route)
    assert not [r for r in observe.routes() if r["dev"] == ns("h")]


def test_routes_of_other_protocols_are_not_read(kernel: LinuxKernel, ns: Names, pod: str) -> None:
    subprocess.run(["ip", "-n", pod, "route", "add", "10.242.0.0/16", "dev", "eth0"], check=True)  # proto boot
    assert ours(kernel, pod) == []


def test_route_owner_comes_from_its_device(kernel: LinuxKernel, ns: Names, pod: str) -> None:
    subprocess.run(["ip", "-n", pod, "link", "add", "d0", "type", "veth", "peer", "name", "d1"], check=True)
    subprocess.run(["ip", "-n", pod, "link", "set", "d0", "up"], check=True)
    subprocess.run(
        ["ip", "-n", pod, "route", "add", "10.243.0.0/16", "dev", "d0", "proto", str(RTPROT_NKPLAN)], check=True
    )
    assert ours(kernel, pod) == [RouteRec(pod, "10.243.0.0/16", dev="d0", metric=0, owner=None)]


def test_route_refusals_in_words(kernel: LinuxKernel, ns: Names, pod: str) -> None:
    route = RouteRec(pod, "0.0.0.0/0", via="10.232.0.1", dev="eth0", owner=ns.stack)
    kernel.add_route(route)
    with pytest.raises(
        KernelError,
        match=f"adding route to 0.0.0.0/0 in namespace {pod}: a route to 0.0.0.0/0 with that metric already exists",
    ):
        kernel.add_route(route)
    with pytest.raises(
        KernelError, match=f"adding route to 10.9.0.0/16 in namespace {pod}: the gateway is not reachable"
    ):
        kernel.add_route(RouteRec(pod, "10.9.0.0/16", via="10.99.0.1", dev="eth0"))
    with pytest.raises(KernelError, match=f"looking up device nope in namespace {pod}: no such device"):
        kernel.add_route(RouteRec(pod, "10.9.0.0/16", dev="nope"))
    with pytest.raises(KernelError, match=f"deleting route to 10.8.0.0/16 in namespace {pod}: no such route"):
        kernel.delete_route(RouteRec(pod, "10.8.0.0/16", dev="eth0"))
    with pytest.raises(
        KernelError, match=f"adding route to 10.9.0.0/16 in namespace {ns('zz')}: namespace {ns('zz')} does not exist"
    ):
        kernel.add_route(RouteRec(ns("zz"), "10.9.0.0/16", dev="eth0"))
    assert [r["dst"] for r in observe.routes(pod)] == ["default"]
