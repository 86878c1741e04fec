"""Policy routing rules on the host kernel, through the real `nkplan` command: applied, re-planned
to no changes, proven by traffic (a source rule steers one address of a pod into a table whose
route is a blackhole: pings from it fail, from the other address they pass), changed by hand
(drift for a host rule, a replace in a named namespace), put back, changed in the spec (replace),
imported with `show --all`, destroyed; bad input changes nothing. The kernel is observed with
iproute2 (`ip -j rule`) and the bpffs marker directory, never with nkplan's reader."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.host.test_cli_veth import Names, names, run, write
from tests.realkernel import host_snapshot

__all__ = ["names"]
pytestmark = pytest.mark.host


def rules(ns: str | None = None, family: str = "-4") -> list[dict[str, Any]]:
    cmd = ["ip", *(["-n", ns] if ns else []), family, "-j", "rule", "show"]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def at(priority: int, ns: str | None = None, family: str = "-4") -> list[dict[str, Any]]:
    return [r for r in rules(ns, family) if r["priority"] == priority]


def ping(ns: str, source: str, target: str) -> bool:
    cmd = ["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", "-I", source, target]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def markers(stack: str) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/fs/bpf/nkplan/{stack}/:host/:rules"))
    except FileNotFoundError:
        return []


def spec(n: Names, pod_rule: str, host_prio: int) -> str:
    return textwrap.dedent(f"""\
        stack: {n.stack}
        namespaces: [{{name: {n.pa}}}, {{name: {n.pb}}}]
        links:
          - name: {n.va}
            namespace: {n.pb}
            kind: veth
            addresses: [10.234.0.1/24]
            peer: {{name: eth0, namespace: {n.pa}, addresses: [10.234.0.2/24, 10.234.0.3/24]}}
          - {{name: {n.vb}, kind: veth, peer: {{name: eth1, namespace: {n.pb}}}}}
        rules:
          - {{namespace: {n.pa}, priority: 100, {pod_rule}}}
          - {{namespace: {n.pa}, priority: 110, family: inet6, fwmark: 0x20/0xff, action: prohibit}}
          - {{priority: {host_prio}, iif: {n.vb}, table: 100}}
        """)


def test_rules_lifecycle_and_traffic(names: Names, tmp_path: Path) -> None:
    n = names
    prio = 20000 + os.getpid() % 10000  # a host priority no one else uses
    before = host_snapshot()
    host_rules_before = [r for r in rules() if r["priority"] != prio]
    path = write(tmp_path, spec(n, "from: 10.234.0.3/32, table: 100", prio))
    out = run("apply", path, "--yes").stdout
    assert "Apply complete!" in out, out
    assert at(100, n.pa) == [{"priority": 100, "src": "10.234.0.3", "table": "100", "protocol": "237"}]
    assert at(110, n.pa, "-6") == [
        {"priority": 110, "src": "all", "fwmark": "0x20", "fwmask": "0xff", "action": "prohibit", "protocol": "237"}
    ]
    assert at(prio) == [{"priority": prio, "src": "all", "iif": n.vb, "table": "100", "protocol": "237"}]
    (marker,) = markers(n.stack)
    assert marker.startswith(f"inet-{prio}@")
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout

    # traffic: table 100 of the pod holds a blackhole; only the source the rule names is steered there
    subprocess.run(["ip", "-n", n.pa, "route", "add", "blackhole", "10.234.0.0/24", "table", "100"], check=True)
    assert ping(n.pa, "10.234.0.2", "10.234.0.1")
    assert not ping(n.pa, "10.234.0.3", "10.234.0.1")

    # changed by hand: the host rule (its marker holds the digest as applied) shows as drift
    subprocess.run(["ip", "rule", "del", "pref", str(prio)], check=True)
    subprocess.run(["ip", "rule", "add", "pref", str(prio), "iif", n.vb, "table", "200", "protocol", "237"], check=True)
    subprocess.run(["ip", "-n", n.pa, "rule", "del", "pref", "100"], check=True)
    doc = json.loads(run("plan", path, "--format", "json").stdout)
    (drift,) = doc["resource_drift"]
    assert (drift["address"], drift["change"]["changed_paths"]) == (f"rule[{prio}]", ["table"])
    assert (drift["change"]["before"]["table"], drift["change"]["after"]["table"]) == (100, 200)
    changes = {c["address"]: c["change"]["actions"] for c in doc["resource_changes"]}
    assert changes[f"rule[{prio}]"] == ["delete", "create"] and changes[f"rule[{n.pa} 100]"] == ["create"]
    run("apply", path, "--yes")
    assert [r["table"] for r in at(prio)] == ["100"]
    assert len(at(100, n.pa)) == 1 and not ping(n.pa, "10.234.0.3", "10.234.0.1")

    # a spec change replaces the rule: now the other source is steered into the blackhole
    path = write(tmp_path, spec(n, "from: 10.234.0.2/32, table: 100", prio))
    text = run("plan", path).stdout
    assert f"rule[{n.pa} 100]" in text and "from cannot change in place" in text, text
    run("apply", path, "--yes")
    assert at(100, n.pa) == [{"priority": 100, "src": "10.234.0.2", "table": "100", "protocol": "237"}]
    assert ping(n.pa, "10.234.0.3", "10.234.0.1") and not ping(n.pa, "10.234.0.2", "10.234.0.1")

    # import: show --all lists a hand-made rule too (not the kernel's own), show alone only ours
    subprocess.run(["ip", "-n", n.pa, "rule", "add", "pref", "300", "from", "10.234.0.9", "table", "7"], check=True)
    shown = run("show", "--stack", n.stack, "--all").stdout
    assert "priority: 300" in shown and "priority: 32766" not in shown, shown
    assert "priority: 300" not in run("show", "--stack", n.stack).stdout

    # bad input (a table out of range, a rule without a selector): file:line:col errors naming
    # the value, and nothing changed
    bad = write(tmp_path, spec(n, "from: 10.234.0.2/32, table: 0", prio).replace(f"iif: {n.vb}, ", ""))
    proc = run("apply", bad, "--yes", check=1)
    col = Path(bad).read_text().splitlines()[10].index("table: 0") + len("table: ") + 1
    assert f"spec.yaml:11:{col}: rules[0].table: routing table 0 is out of range" in proc.stderr, proc.stderr
    assert f"spec.yaml:13:5: rules[2]: rule {prio} has no selector" in proc.stderr, proc.stderr
    assert len(at(100, n.pa)) == 1 and len(at(prio)) == 1

    run("destroy", "--stack", n.stack, "--yes")
    assert at(prio) == [] and markers(n.stack) == []
    assert [r for r in rules() if r["priority"] != prio] == host_rules_before
    assert host_snapshot() == before
