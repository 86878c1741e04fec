"""The foundation's netkit acceptance, run inside the VM rig on each Debian kernel: the demo spec
applies; Debian trixie's iproute2 (an independent observer) shows every netkit attribute as
declared; re-plan is empty; a policy change is an in-place update, a mode change a replace with its
reason; removing a link deletes both ends; removing a namespace deletes it and what it held.

Python is ~35x slower in the emulated guest, so this drives nkplan in-process (the same workflow
functions the CLI calls) in one pytest process, instead of one CLI process per check."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nkplan.api import Loaded, load_text
from nkplan.core.plan import Plan
from nkplan.documents.show import stack_document, to_yaml
from nkplan.documents.text import render_plan
from nkplan.errors import PlanError
from nkplan.kernel.linux import LinuxKernel
from nkplan.run.workflow import apply_and_verify, empty_spec, plan_for
from tests import bpfobserve as obs
from tests.realkernel import ip_json

pytestmark = pytest.mark.netkit
TRIXIE_IP = str(Path(__file__).resolve().parents[1] / "vm" / "trixie-ip")
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


def observe(*args: str, ns: str | None = None) -> Any:
    return ip_json(*args, ns=ns, tool=TRIXIE_IP)


def dev(name: str, ns: str | None = None) -> dict[str, Any]:
    found = observe("-d", "link", "show", "dev", name, ns=ns)
    assert len(found) == 1, found
    return found[0]  # type: ignore[no-any-return]


def info(name: str, ns: str | None = None) -> dict[str, Any]:
    link = dev(name, ns)["linkinfo"]
    assert link["info_kind"] == "netkit", link
    return link["info_data"]  # type: ignore[no-any-return]


def addrs(name: str, ns: str | None = None) -> list[str]:
    out = []
    for entry in observe("addr", "show", "dev", name, ns=ns):
        out += [f"{a['local']}/{a['prefixlen']}" for a in entry["addr_info"] if not a["local"].startswith("fe80")]
    return sorted(out)


def netns() -> set[str]:
    return {n["name"] for n in observe("netns", "list")}


@pytest.fixture(scope="module")
def kernel() -> LinuxKernel:
    return LinuxKernel()


@pytest.fixture(scope="module")
def demo(token: str) -> str:
    # the demo file itself, with names made unique for this run
    text = DEMO.read_text()
    for old, new in (("pod-a", f"pa{token}"), ("pod-b", f"pb{token}"), ("nk-a", f"nka{token}"),
                     ("nk-b", f"nkb{token}"), ("ve-c", f"vec{token}"), ("stack: demo", f"stack: demo{token}")):
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module", autouse=True)
def cleanup(kernel: LinuxKernel, token: str) -> Iterator[None]:
    yield
    loaded = empty_spec(f"demo{token}")
    try:
        apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
    finally:
        for ns in (f"pa{token}", f"pb{token}"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def converge(kernel: LinuxKernel, text: str) -> tuple[Plan, Loaded]:
    loaded = load_text(text, "demo.yaml")
    plan = plan_for(kernel, loaded).plan
    apply_and_verify(kernel, loaded, plan)
    return plan, loaded


def test_demo_applies_as_declared(kernel: LinuxKernel, demo: str, token: str) -> None:
    pa, pb = f"pa{token}", f"pb{token}"
    plan, loaded = converge(kernel, demo)
    assert plan.summary()["add"] == 7
    assert {pa, pb} <= netns()

    a, a_peer = info(f"nka{token}"), info("eth0", pa)
    assert a["mode"] == "l3" and a["type"] == "primary" and a_peer["type"] == "peer"
    assert a["policy"] == "forward" and a["peer_policy"] == "forward"
    assert a["scrub"] == "none" and a["peer_scrub"] == "default"
    assert dev(f"nka{token}")["mtu"] == 1500 and dev("eth0", pa)["mtu"] == 1500
    assert "UP" in dev(f"nka{token}")["flags"] and "UP" in dev("eth0", pa)["flags"]
    assert addrs(f"nka{token}") == ["10.10.0.1/32"]
    assert addrs("eth0", pa) == ["10.10.1.2/32", "fd00:10::2/128"]

    b = info(f"nkb{token}")
    assert b["mode"] == "l2"
    assert dev(f"nkb{token}")["address"] == "02:00:00:00:0b:01"
    assert dev("eth0", pb)["address"] == "02:00:00:00:0b:02"
    assert addrs("eth0", pb) == ["10.10.2.2/24"]
    assert dev("eth1", pb)["linkinfo"]["info_kind"] == "veth"

    assert any(r["dst"] == "default" and r["dev"] == "eth0" for r in observe("route", "show", ns=pa))
    assert any(r["dst"] == "10.10.1.2" for r in observe("route", "show", "dev", f"nka{token}"))

    # a packet crosses the netkit pair
    ping = subprocess.run(["ping", "-c", "1", "-W", "5", "10.10.1.2"], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    again = plan_for(kernel, loaded).plan
    assert not again.has_changes, render_plan(again)

    # show → plan round trip: the live state exported as a spec plans to no changes
    shown = to_yaml(stack_document(kernel.read(probe_netkit=True), f"demo{token}"))
    round_trip = plan_for(kernel, load_text(shown, "shown.yaml")).plan
    assert not round_trip.has_changes, shown + render_plan(round_trip)


def proc_sys(path: str, ns: str | None = None) -> int:
    cmd = ["cat", f"/proc/sys/net/{path}"]
    out = subprocess.run(["ip", "netns", "exec", ns, *cmd] if ns else cmd, capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_sysctls_on_a_netkit_pair_update_in_place(kernel: LinuxKernel, demo: str, token: str) -> None:
    """Cilium's host-end setting (rp_filter 0) and forwarding on the primary, an ARP setting on
    the peer: applied in place (same device), read back from /proc/sys in each namespace, and
    no longer declared means left alone."""
    pa, nka = f"pa{token}", f"nka{token}"
    index = dev(nka)["ifindex"]
    kind = "    kind: netkit                 # netkit | veth\n"  # nk-a's, the first link
    marked = demo.replace(kind, kind + "    sysctls: {ipv4.rp_filter: 0, ipv4.forwarding: 1}\n", 1).replace(
        f"      namespace: {pa}\n", f"      namespace: {pa}\n      sysctls: {{ipv4.arp_ignore: 2}}\n", 1
    )
    assert marked.count("sysctls") == 2, marked
    plan, loaded = converge(kernel, marked)
    assert [(c.address, c.action) for c in plan.changes if c.action != "no-op"] == [(f"link[{nka}]", "update")]
    assert dev(nka)["ifindex"] == index
    assert (proc_sys(f"ipv4/conf/{nka}/rp_filter"), proc_sys(f"ipv4/conf/{nka}/forwarding")) == (0, 1)
    assert proc_sys("ipv4/conf/eth0/arp_ignore", pa) == 2
    assert not plan_for(kernel, loaded).plan.has_changes
    plan, _ = converge(kernel, demo)  # undeclared again: nothing to do, values stay
    assert not plan.has_changes and proc_sys("ipv4/conf/eth0/arp_ignore", pa) == 2


def test_policy_change_is_in_place(kernel: LinuxKernel, demo: str, token: str) -> None:
    index = dev(f"nka{token}")["ifindex"]
    text = demo.replace("    policy: forward              # netkit", "    policy: blackhole            # netkit")
    text = text.replace("      policy: forward\n", "      policy: blackhole\n")
    plan = plan_for(kernel, load_text(text, "demo.yaml")).plan
    (change,) = [c for c in plan.changes if c.action != "no-op"]
    assert change.action == "update" and set(change.changed_paths) == {"primary.policy", "peer.policy"}
    converge(kernel, text)
    a = info(f"nka{token}")
    assert a["policy"] == "blackhole" and a["peer_policy"] == "blackhole"
    assert dev(f"nka{token}")["ifindex"] == index
    converge(kernel, demo)
    assert info(f"nka{token}")["policy"] == "forward"


def test_mode_change_is_a_replace_with_reason(kernel: LinuxKernel, demo: str, token: str) -> None:
    text = demo.replace("    mode: l3 ", "    mode: l2 ")
    plan = plan_for(kernel, load_text(text, "demo.yaml")).plan
    change = next(c for c in plan.changes if c.address == f"link[nka{token}]")
    assert change.action == "replace" and change.reason == "mode cannot change in place"
    assert "mode: \"l3\" → \"l2\"  # forces replacement" in render_plan(plan)
    converge(kernel, text)
    assert info(f"nka{token}")["mode"] == "l2"
    converge(kernel, demo)
    assert info(f"nka{token}")["mode"] == "l3"


def test_removing_link_and_namespace(kernel: LinuxKernel, demo: str, token: str) -> None:
    pa, pb = f"pa{token}", f"pb{token}"
    no_b = demo.split("  - name: nkb")[0] + "routes:" + demo.split("routes:")[1]
    no_b = no_b.replace(f"  - name: {pb}\n", "")
    plan, _ = converge(kernel, no_b)
    deleted = {c.address for c in plan.changes if c.action == "delete"}
    assert {f"link[nkb{token}]", f"link[vec{token}]", f"namespace[{pb}]"} <= deleted
    assert pb not in netns() and pa in netns()
    for name in (f"nkb{token}", f"vec{token}"):
        assert subprocess.run([TRIXIE_IP, "link", "show", "dev", name], capture_output=True).returncode != 0
    assert info(f"nka{token}")["mode"] == "l3"


SINGLE = """\
stack: single{t}
namespaces: [{{name: ps{t}}}]
links:
  - name: nks{t}
    namespace: ps{t}
    kind: netkit
    pairing: single
    mode: l2
    mac: "02:00:00:00:5e:01"
    mtu: 9000
    addresses: [10.10.9.1/24]
    tcx: {{ingress: [{{object: {count}, program: count_pass}}]}}
routes:
  - {{namespace: ps{t}, to: 10.10.90.0/24, dev: nks{t}}}
"""


def test_single_device_or_the_capability_error(kernel: LinuxKernel, token: str) -> None:
    """7.1+ (7.3 in the rig): a netkit device without a peer is made as declared, alone (trixie's
    iproute2: kind netkit, primary, no other end, no peer policy), plans to no changes, changes
    MTU and addresses in place, runs a tcx program (its netkit hooks the kernel refuses: the spec
    cannot ask for them), exports and re-plans to no changes, and is destroyed. Older
    kernels (6.12, which would silently make a pair): a plan error naming the kernel, nothing made."""
    pod, nks, stack = f"ps{token}", f"nks{token}", f"single{token}"
    text = SINGLE.format(t=token, count=obs.obj("count"))
    release = kernel.read(probe_netkit=True).kernel
    has_single = tuple(int(x) for x in release.release.split(".")[:2]) >= (7, 1)
    assert release.netkit_single is has_single, release
    try:
        if not has_single:
            with pytest.raises(PlanError) as err:
                plan_for(kernel, load_text(text, "single.yaml"))
            assert err.value.problems == [
                "single.yaml:7:14: pairing: single (a netkit device without a peer) needs Linux 7.1 or newer; "
                f"this kernel ({release.release}) would silently create a pair instead"
            ]
            assert pod not in netns()
            assert subprocess.run([TRIXIE_IP, "link", "show", "dev", nks], capture_output=True).returncode != 0
            return
        plan, loaded = converge(kernel, text)
        assert [(c.address, c.action) for c in plan.changes] == [
            (f"namespace[{pod}]", "create"), (f"link[{pod}/{nks}]", "create"),
            (f"route[{pod} 10.10.90.0/24]", "create"), (f"hook[{pod}/{nks} ingress]", "create"),
        ]  # fmt: skip
        d = dev(nks, pod)
        assert d["link"] is None and "link_netnsid" not in d, d  # no other end
        assert d["linkinfo"]["info_data"] == {"mode": "l2", "type": "primary", "policy": "forward"}
        assert d["address"] == "02:00:00:00:5e:01" and d["mtu"] == 9000
        assert "UP" in d["flags"] and "LOWER_UP" in d["flags"]  # carrier without a peer
        assert addrs(nks, pod) == ["10.10.9.1/24"]
        assert [x["ifname"] for x in observe("link", "show", ns=pod)] == ["lo", nks]  # no peer anywhere
        assert any(r["dst"] == "10.10.90.0/24" for r in observe("route", "show", "dev", nks, ns=pod))
        assert [p[0] for p in obs.hook_progs("tcx/ingress", ns=pod, dev=nks)] == ["count_pass"]  # trixie's bpftool
        assert not plan_for(kernel, loaded).plan.has_changes

        index = d["ifindex"]
        # (an address is added, not swapped: removing a device's last IPv4 address makes the
        # kernel flush the routes through it, and a link update removes before it adds)
        changed = text.replace("mtu: 9000", "mtu: 1500").replace("[10.10.9.1/24]", "[10.10.9.1/24, 10.10.9.2/24]")
        plan, loaded = converge(kernel, changed)
        assert [(c.address, c.action) for c in plan.changes if c.action != "no-op"] == [
            (f"link[{pod}/{nks}]", "update")
        ]
        assert dev(nks, pod)["ifindex"] == index and dev(nks, pod)["mtu"] == 1500
        assert addrs(nks, pod) == ["10.10.9.1/24", "10.10.9.2/24"]

        live = kernel.read(probe_netkit=True)
        count = obs.obj("count")
        shown = to_yaml(stack_document(live, stack, programs=lambda _h, p: {"object": count, "program": p.program}))
        assert "pairing: single" in shown and "peer" not in shown and "count_pass" in shown, shown
        assert not plan_for(kernel, load_text(shown, "shown.yaml")).plan.has_changes, shown

        destroy = empty_spec(stack)
        plan = plan_for(kernel, destroy).plan
        apply_and_verify(kernel, destroy, plan)
        assert {(c.address, c.action) for c in plan.changes} >= {(f"link[{pod}/{nks}]", "delete")}
        assert pod not in netns()
        pinned = Path(f"/sys/fs/bpf/nkplan/{stack}")
        assert not pinned.exists() or not any(pinned.rglob("*@*"))  # its tcx link's pin went with it
    finally:
        loaded = empty_spec(stack)
        apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
        subprocess.run(["ip", "netns", "del", pod], capture_output=True)
