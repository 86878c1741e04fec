"""LinuxKernel.read() on the host kernel, against setups made by hand with iproute2: pairing
across namespaces, which end is primary, what is left out, odd /run/netns entries, no helper
processes, many namespaces, the netkit probe, privileges."""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nkplan.core.desired import sort_cidrs
from nkplan.core.records import HOST, KernelInfo, NamespaceRec
from nkplan.errors import CapabilityError, KernelError
from nkplan.kernel import caps
from nkplan.kernel.linux import LinuxKernel
from nkplan.kernel.netlink import reader
from nkplan.kernel.netlink.nlsock import NetlinkRefusal, RtnlSocket
from tests.host import observe
from tests.host.conftest import Names

pytestmark = pytest.mark.host
REPO = Path(__file__).resolve().parents[2]


def sh(*lines: str) -> None:
    subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=True)


@pytest.fixture
def kernel() -> LinuxKernel:
    return LinuxKernel()


def test_which_end_is_primary(kernel: LinuxKernel, ns: Names) -> None:
    a, b = ns("a"), ns("b")
    sh(
        f"netns add {a}",
        f"netns add {b}",
        # unowned, host <-> namespace: the host end
        f"link add {ns('h1')} type veth peer name z1 netns {a}",
        # unowned, both in the host: the lower name
        f"link add {ns('y2')} type veth peer name {ns('x2')}",
        # owned: the alias says which is the primary, wherever it is
        f"link add {ns('h4')} type veth peer name z4 netns {a}",
        f"link set {ns('h4')} alias nkplan:{ns.stack}:peer",
    )
    # unowned, two namespaces: the lower (namespace, name)
    subprocess.run(["ip", "-n", a, "link", "add", "q3", "type", "veth", "peer", "name", "p3", "netns", b], check=True)
    subprocess.run(["ip", "-n", a, "link", "set", "z4", "alias", f"nkplan:{ns.stack}:primary"], check=True)
    links = kernel.read().links
    assert (HOST, ns("h1")) in links and links[(HOST, ns("h1"))].peer.namespace == a
    assert (HOST, ns("x2")) in links and links[(HOST, ns("x2"))].peer.name == ns("y2")
    assert (a, "q3") in links and links[(a, "q3")].peer.namespace == b
    got = links[(a, "z4")]
    assert (got.peer.namespace, got.peer.name, got.owner) == (HOST, ns("h4"), ns.stack)
    assert all(link.owner is None for key, link in links.items() if key != (a, "z4") and ns.prefix in key[0] + key[1])


def test_link_local_addresses_are_left_out(kernel: LinuxKernel, ns: Names) -> None:
    sh(
        f"link add {ns('a')} type veth peer name {ns('b')}",
        f"link set {ns('a')} up",
        f"link set {ns('b')} up",
        f"addr add fe80::99/64 dev {ns('a')}",
        f"addr add fd00:244::1/64 dev {ns('a')}",
        f"addr add 10.244.0.1/24 dev {ns('a')}",
    )
    time.sleep(0.05)
    seen = [a["local"] for e in observe.ip_json("addr", "show", "dev", ns("a")) for a in e["addr_info"]]
    assert "fe80::99" in seen and any(a.startswith("fe80::") and a != "fe80::99" for a in seen)
    link = kernel.read().links[(HOST, ns("a"))]
    assert link.primary.addresses == ("10.244.0.1/24", "fd00:244::1/64")
    assert link.peer.addresses == ()


def test_addresses_are_in_the_spec_side_canonical_order(kernel: LinuxKernel, ns: Names) -> None:
    cidrs = ["fd00::10/64", "10.0.0.9/8", "10.0.0.10/24", "fd00::9/64", "192.168.0.1/32", "fd00:0:0:0:0:0:0:1/128"]
    sh(f"link add {ns('a')} type veth peer name {ns('b')}", *(f"addr add {c} dev {ns('a')} nodad" for c in cidrs))
    assert kernel.read().links[(HOST, ns("a"))].primary.addresses == sort_cidrs(cidrs)


def test_namespace_owner_needs_the_ns_role(kernel: LinuxKernel, ns: Names) -> None:
    sh(f"netns add {ns('a')}", f"netns add {ns('b')}")
    subprocess.run(["ip", "-n", ns("a"), "link", "set", "lo", "alias", f"nkplan:{ns.stack}:ns"], check=True)
    subprocess.run(["ip", "-n", ns("b"), "link", "set", "lo", "alias", f"nkplan:{ns.stack}:primary"], check=True)
    live = kernel.read().namespaces
    assert live[ns("a")] == NamespaceRec(ns("a"), ns.stack)
    assert live[ns("b")] == NamespaceRec(ns("b"), None)


def test_a_second_name_for_a_namespace_and_a_stale_file(kernel: LinuxKernel, ns: Names) -> None:
    a, alias, stale = ns("a"), ns("b"), ns("c")
    sh(f"netns add {a}", f"link add {ns('h')} type veth peer name eth0 netns {a}")
    subprocess.run(["ip", "-n", a, "link", "set", "lo", "alias", f"nkplan:{ns.stack}:ns"], check=True)
    Path(f"/run/netns/{alias}").touch()
    Path(f"/run/netns/{stale}").touch()
    try:
        subprocess.run(["mount", "--bind", f"/run/netns/{a}", f"/run/netns/{alias}"], check=True)
        live = kernel.read()
        assert live.namespaces[a] == NamespaceRec(a, ns.stack)
        # the same namespace again: listed, never owned twice, its devices read once
        assert live.namespaces[alias] == NamespaceRec(alias, None)
        assert not [k for k in live.devices if k[0] == alias]
        assert live.links[(HOST, ns("h"))].peer.namespace == a
        # a plain file is no namespace, but it is listed (its name is taken)
        assert live.namespaces[stale] == NamespaceRec(stale, None)
    finally:
        subprocess.run(["umount", f"/run/netns/{alias}"], capture_output=True)
        for p in (alias, stale):
            Path(f"/run/netns/{p}").unlink(missing_ok=True)


def test_read_spawns_no_process(kernel: LinuxKernel, ns: Names, monkeypatch: pytest.MonkeyPatch) -> None:
    """No helper process, whatever the number of namespaces; the one forked copy of itself that
    reads half of many namespaces (test_a_second_process_reads_the_later_share) is kept out here."""
    monkeypatch.setattr(reader, "SPLIT_MIN", 10**9)
    sh(f"netns add {ns('a')}", f"link add {ns('h')} type veth peer name eth0 netns {ns('a')}")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("read() tried to start a process")

    for mod, name in [
        (os, "fork"),
        (os, "posix_spawn"),
        (os, "posix_spawnp"),
        (os, "system"),
        (os, "execv"),
        (os, "execve"),
        (subprocess, "Popen"),
    ]:
        monkeypatch.setattr(mod, name, refuse)
    live = kernel.read(probe_netkit=True)
    assert (HOST, ns("h")) in live.links


def test_read_does_not_import_pyroute2(ns: Names) -> None:
    code = (
        "import sys; from nkplan.kernel.linux import LinuxKernel; LinuxKernel().read(probe_netkit=True); "
        "assert 'pyroute2' not in sys.modules, 'pyroute2 imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_second_process_reads_the_later_share(
    kernel: LinuxKernel, ns: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From reader.SPLIT_MIN named namespaces on, a forked copy of the reader reads the later ones
    (reader.CHILD_SHARE of them): what is read is the same, in the same order, as one process
    reads it (a pair between namespaces of both shares, a second name and a stale file
    included), and a failure there fails the read."""
    pods = [ns(f"s{i}") for i in range(6)]
    lines = []
    for i, pod in enumerate(pods):
        host = ns(f"h{i}")
        lines += [f"netns add {pod}", f"link add {host} type veth peer name eth0 netns {pod}"]
        lines += [
            f"link set {host} alias nkplan:{ns.stack}:primary up",
            f"route add 10.9.{i}.2/32 dev {host} proto 237",
        ]
    sh(*lines)
    subprocess.run(
        ["ip", "-n", pods[0], "link", "add", "q", "type", "veth", "peer", "name", "p", "netns", pods[5]], check=True
    )
    for i, pod in enumerate(pods):
        inside = [f"link set lo alias nkplan:{ns.stack}:ns up", f"link set eth0 alias nkplan:{ns.stack}:peer up"]
        inside += [f"addr add 10.9.{i}.2/32 dev eth0", "route add default dev eth0 proto 237"]
        subprocess.run(["ip", "-n", pod, "-batch", "-"], input="\n".join(inside) + "\n", text=True, check=True)
    alias, stale = ns("s3x"), ns("s4x")
    Path(f"/run/netns/{alias}").touch()
    Path(f"/run/netns/{stale}").touch()
    try:
        subprocess.run(["mount", "--bind", f"/run/netns/{pods[1]}", f"/run/netns/{alias}"], check=True)
        monkeypatch.setattr(reader, "SPLIT_MIN", 10**9)
        one = kernel.read()
        monkeypatch.setattr(reader, "SPLIT_MIN", 1)
        two = kernel.read()
        for f in dataclasses.fields(one):
            a, b = getattr(one, f.name), getattr(two, f.name)
            assert (list(a.items()) if isinstance(a, dict) else a) == (list(b.items()) if isinstance(b, dict) else b)
        assert two.namespaces[alias] == NamespaceRec(alias, None) and two.namespaces[stale] == NamespaceRec(stale, None)
        assert two.links[(pods[0], "q")].peer.namespace == pods[5]
        assert len([k for k in two.links if ns.prefix in k[1]]) == len(pods)

        parent, real = os.getpid(), reader.scan

        def failing(sock: RtnlSocket, name: str, with_af: bool = False) -> reader.NsScan:
            if os.getpid() != parent:
                raise NetlinkRefusal(errno.EBUSY, None)
            return real(sock, name, with_af)

        monkeypatch.setattr(reader, "scan", failing)
        with pytest.raises(KernelError, match="the kernel refused a dump"):
            kernel.read()
    finally:
        subprocess.run(["umount", f"/run/netns/{alias}"], capture_output=True)
        for p in (alias, stale):
            Path(f"/run/netns/{p}").unlink(missing_ok=True)


def test_many_namespaces(kernel: LinuxKernel, ns: Names) -> None:
    n = 200
    lines = []
    for i in range(n):
        lines += [f"netns add {ns(f'n{i}')}", f"link add {ns(f'h{i}')} type veth peer name eth0 netns {ns(f'n{i}')}"]
    sh(*lines)
    start = time.perf_counter()
    live = kernel.read()
    took = time.perf_counter() - start
    for i in range(n):
        link = live.links[(HOST, ns(f"h{i}"))]
        assert (link.peer.namespace, link.peer.name) == (ns(f"n{i}"), "eth0")
    assert took < 1.0, f"read() of {n} namespaces took {took:.2f} s"


def test_probe_finds_no_netkit_on_this_host(kernel: LinuxKernel, ns: Names) -> None:
    before = observe.netns_names()
    info = kernel.read(probe_netkit=True).kernel
    assert info == KernelInfo(os.uname().release, False, False, False, False)
    assert observe.netns_names() == before  # the scratch namespace was anonymous
    assert kernel.read().kernel == KernelInfo(os.uname().release, None, None, None)


def test_check_privileges(kernel: LinuxKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    kernel.check_privileges()
    monkeypatch.setattr(caps, "effective", lambda: 1 << caps.CAP_NET_ADMIN)  # CAP_NET_ADMIN only
    with pytest.raises(CapabilityError, match=r"nkplan needs root \(CAP_NET_ADMIN and CAP_SYS_ADMIN\)"):
        kernel.check_privileges()
    monkeypatch.undo()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(CapabilityError):
        kernel.check_privileges()
