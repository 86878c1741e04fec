"""The routed pod network example (examples/routed-pods.yaml) on netkit, in the VM rig: two pods
routed through the host over L3 netkit pairs, with per-device sysctls on the host ends, a
namespace sysctl, routes in other tables, a blackhole route, a source rule in a pod and a rule in
the host. Traffic proves it: pod-a reaches pod-b from its first address and not from its second
(steered by the rule into a table that blackholes pod-b). Observed with Debian trixie's iproute2
and /proc/sys, not nkplan's reader; driven in-process (Python is slow in the guest)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nkplan.api import Loaded, load_text
from nkplan.documents.text import render_plan
from nkplan.kernel.linux import LinuxKernel
from nkplan.run.workflow import apply_and_verify, empty_spec, plan_for
from tests.netkit.test_e2e_netkit import observe, proc_sys

pytestmark = pytest.mark.netkit
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "routed-pods.yaml"


@pytest.fixture(scope="module")
def routed(token: str) -> Iterator[tuple[LinuxKernel, Loaded, dict[str, str]]]:
    names = {"pod-a": f"ra{token}", "pod-b": f"rb{token}", "nk-a": f"rka{token}", "nk-b": f"rkb{token}"}
    text = EXAMPLE.read_text().replace("stack: routed", f"stack: routed{token}")
    for old, new in names.items():
        text = text.replace(old, new)
    kernel = LinuxKernel()
    loaded = load_text(text, "routed-pods.yaml")
    yield kernel, loaded, names
    gone = empty_spec(f"routed{token}")
    try:
        apply_and_verify(kernel, gone, plan_for(kernel, gone).plan)
    finally:
        for ns in (names["pod-a"], names["pod-b"]):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def ping(ns: str, source: str, dest: str) -> bool:
    cmd = ["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "3", "-I", source, dest]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def test_the_routed_pod_network_example(routed: tuple[LinuxKernel, Loaded, dict[str, str]]) -> None:
    kernel, loaded, n = routed
    pa, pb, nka = n["pod-a"], n["pod-b"], n["nk-a"]
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)

    rules = {r["priority"]: r for r in observe("rule", "show", ns=pa)}
    assert (rules[100]["src"], rules[100]["table"], rules[100]["protocol"]) == ("10.30.1.3", "100", "237"), rules
    host_rule = [r for r in observe("rule", "show") if r["priority"] == 200]
    assert [(r["src"], r["srclen"], r["table"]) for r in host_rule] == [("10.30.2.0", 24, "200")]
    blackhole = observe("route", "show", "table", "100", ns=pa)
    assert {(r.get("type", "unicast"), r["dst"]) for r in blackhole} == {
        ("blackhole", "10.30.2.0/24"),
        ("unicast", "default"),
    }
    assert (proc_sys(f"ipv4/conf/{nka}/forwarding"), proc_sys(f"ipv4/conf/{nka}/rp_filter")) == (1, 0)
    assert proc_sys("ipv4/conf/all/rp_filter", pa) == 0

    assert ping(pa, "10.30.1.2", "10.30.2.2"), "pod-a's first address reaches pod-b through the host"
    assert not ping(pa, "10.30.1.3", "10.30.2.2"), "the rule sends the second address into the blackhole"
    assert ping(pb, "10.30.2.2", "10.30.1.2"), "pod-b reaches pod-a through the host's table 200"

    again = plan_for(kernel, loaded).plan
    assert not again.has_changes, render_plan(again)
