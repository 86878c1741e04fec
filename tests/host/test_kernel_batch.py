"""Batched pair deletion (kernel/netlink/batch.py) on the host kernel: one group delete removes exactly
the pairs asked for; a device nkplan did not create that happens to carry the group stops it."""

from __future__ import annotations

import subprocess

import pytest

from nkplan.core.records import HOST, EndRec, LinkRec
from nkplan.errors import KernelError
from nkplan.kernel.linux import LinuxKernel
from nkplan.kernel.netlink import batch
from tests.host import observe
from tests.host.conftest import Names

pytestmark = pytest.mark.host


def pairs(ns: Names, count: int) -> list[LinkRec]:
    return [
        LinkRec("veth", EndRec(HOST, ns(f"h{i}")), EndRec(HOST, ns(f"p{i}")), owner=ns.stack) for i in range(count)
    ]


def test_group_delete_removes_exactly_the_batch(ns: Names) -> None:
    kernel = LinuxKernel()
    links = pairs(ns, 6)
    for link in links:
        kernel.create_link(link)
    subprocess.run(["ip", "link", "add", ns("keep"), "type", "veth", "peer", "name", ns("keepp")], check=True)
    kernel.delete_links(links[:5])
    names = observe.link_names()
    assert not any(ns(f"h{i}") in names or ns(f"p{i}") in names for i in range(5))
    assert ns("h5") in names and ns("p5") in names and ns("keep") in names and ns("keepp") in names
    assert observe.link(ns("keep"))["group"] == "default"  # type: ignore[index]


def test_foreign_device_in_the_group_stops_the_delete(ns: Names, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = LinuxKernel()
    links = pairs(ns, 2)
    for link in links:
        kernel.create_link(link)
    monkeypatch.setattr(batch.secrets, "randbelow", lambda n: 4242)
    group = str(0x40000000 + 4242)
    subprocess.run(["ip", "link", "add", ns("x"), "type", "veth", "peer", "name", ns("xp")], check=True)
    subprocess.run(["ip", "link", "set", ns("x"), "group", group], check=True)
    with pytest.raises(KernelError, match="also used by devices nkplan did not create"):
        kernel.delete_links(links)
    for link in links:  # nothing deleted, and our devices are back in the default group
        dev = observe.link(link.primary.name)
        assert dev is not None and dev["group"] == "default"
    assert observe.link(ns("x")) is not None


def test_lookups_and_moves_many_to_a_datagram(ns: Names) -> None:
    """40 pairs (the requests go 16 to a datagram): one missing among them stops the delete before
    anything changed, naming it; then the 39 go at once."""
    kernel = LinuxKernel()
    links = pairs(ns, 40)
    for link in links[:20] + links[21:]:
        kernel.create_link(link)
    with pytest.raises(KernelError, match=ns("h20")):
        kernel.delete_links(links)
    names = observe.link_names()
    assert all(ns(f"h{i}") in names for i in range(40) if i != 20)
    kernel.delete_links(links[:20] + links[21:])
    names = observe.link_names()
    assert not any(ns(f"h{i}") in names or ns(f"p{i}") in names for i in range(40))
