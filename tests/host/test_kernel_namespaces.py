"""LinuxKernel on the host kernel: named namespaces. Checked with iproute2, then with read()."""

from __future__ import annotations

import os
import subprocess

import pytest

from nkplan.core.records import NamespaceRec, owner_alias
from nkplan.errors import KernelError
from nkplan.kernel.linux import LinuxKernel
from tests.host import observe
from tests.host.conftest import Names

pytestmark = pytest.mark.host


@pytest.fixture
def kernel() -> LinuxKernel:
    return LinuxKernel()


def test_create_namespace_like_ip_netns_add(kernel: LinuxKernel, ns: Names) -> None:
    name = ns("a")
    kernel.create_namespace(name, ns.stack)

    assert name in observe.netns_names()
    assert os.path.ismount(f"/run/netns/{name}")
    lo = observe.link("lo", name)
    assert lo is not None and observe.is_up(lo)
    assert lo["ifalias"] == owner_alias(ns.stack, "ns")
    assert observe.link_names(name) == ["lo"]  # a fresh, empty namespace
    # iproute2 makes /run/netns a shared mount point so unmounts propagate
    mountinfo = open("/proc/self/mountinfo").read().splitlines()
    run_netns = [m for m in mountinfo if m.split()[4] == "/run/netns"]
    assert run_netns and any("shared:" in m for m in run_netns)

    live = kernel.read()
    assert live.namespaces[name] == NamespaceRec(name, ns.stack)
    assert live.devices[(name, "lo")].role == "ns"


def test_set_and_clear_namespace_owner(kernel: LinuxKernel, ns: Names) -> None:
    name = ns("a")
    subprocess.run(["ip", "netns", "add", name], check=True)  # made by hand: unowned
    assert kernel.read().namespaces[name] == NamespaceRec(name, None)

    kernel.set_namespace_owner(name, ns.stack)
    assert observe.link("lo", name)["ifalias"] == owner_alias(ns.stack, "ns")  # type: ignore[index]
    assert kernel.read().namespaces[name].owner == ns.stack

    kernel.set_namespace_owner(name, None)
    assert "ifalias" not in (observe.link("lo", name) or {})
    assert kernel.read().namespaces[name].owner is None


def test_delete_namespace_like_ip_netns_del(kernel: LinuxKernel, ns: Names) -> None:
    name = ns("a")
    kernel.create_namespace(name, ns.stack)
    kernel.delete_namespace(name)
    assert name not in observe.netns_names()
    assert not os.path.exists(f"/run/netns/{name}")
    assert name not in kernel.read().namespaces


def test_delete_namespace_takes_its_pairs_synchronously(kernel: LinuxKernel, ns: Names) -> None:
    name, host_end = ns("a"), ns("h")
    kernel.create_namespace(name, ns.stack)
    subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", "p0", "netns", name], check=True)
    kernel.delete_namespace(name)
    # no waiting: the host end is gone the moment delete_namespace returns
    assert observe.link(host_end) is None
    assert (("", host_end)) not in kernel.read().devices


def test_create_existing_namespace_is_refused_in_words(kernel: LinuxKernel, ns: Names) -> None:
    name = ns("a")
    kernel.create_namespace(name, ns.stack)
    with pytest.raises(KernelError, match=f"creating namespace {name}: a namespace with that name already exists"):
        kernel.create_namespace(name, ns.stack)
    assert observe.link("lo", name) is not None  # the first one is untouched


def test_delete_missing_namespace_is_refused_in_words(kernel: LinuxKernel, ns: Names) -> None:
    with pytest.raises(KernelError, match=f"deleting namespace {ns('zz')}: no such namespace"):
        kernel.delete_namespace(ns("zz"))


def test_invalid_namespace_name(kernel: LinuxKernel, ns: Names) -> None:
    with pytest.raises(KernelError, match="not a valid namespace name"):
        kernel.create_namespace(f"{ns('a')}/x", ns.stack)


def test_a_hop_runs_inside_the_namespace_and_the_worker_goes_back_home(kernel: LinuxKernel, ns: Names) -> None:
    """netns.in_namespace: the job sees the namespace it hops into; the long-lived worker is back
    in the process's own namespace before the caller goes on (so it never holds a namespace the
    caller deletes next); errors reach the caller; a hop from inside a hop works."""
    from nkplan.kernel.netlink import netns

    name = ns("a")
    kernel.create_namespace(name, ns.stack)
    home = os.stat("/proc/self/ns/net").st_ino
    fd = netns.open_ns(name)
    try:
        inside = netns.in_namespace(fd, lambda: os.stat("/proc/thread-self/ns/net").st_ino)
        assert inside == os.fstat(fd).st_ino != home
        hopper = netns._hopper
        assert hopper is not None and hopper.thread.native_id is not None
        assert os.stat(f"/proc/self/task/{hopper.thread.native_id}/ns/net").st_ino == home

        def fails() -> None:
            raise ValueError("inside")

        with pytest.raises(ValueError, match="inside"):
            netns.in_namespace(fd, fails)
        assert os.stat(f"/proc/self/task/{hopper.thread.native_id}/ns/net").st_ino == home
        nested = netns.in_namespace(fd, lambda: netns.in_namespace(fd, lambda: "again"))
        assert nested == "again"
    finally:
        os.close(fd)
    kernel.delete_namespace(name)
    assert name not in observe.netns_names()
