"""`nkplan stacks` on the host kernel: a stack applied through the real command is found through
its ownership marks alone (no state file), with the counts of what it owns; gone after destroy.
On the way: the apply's --metrics-file, and `nkplan graph` of the live stack and of a plan."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.host.test_cli_veth import Names, names, run, spec_text, write

pytestmark = pytest.mark.host
__all__ = ["names"]  # the fixture, imported for its cleanup


def _stack(n: Names) -> dict[str, int] | None:
    doc = json.loads(run("stacks", "--format", "json").stdout)
    found = [s for s in doc["stacks"] if s["stack"] == n.stack]
    return found[0] if found else None


def test_stacks_lists_an_applied_stack_with_its_counts(names: Names, tmp_path: Path) -> None:
    n = names
    text = spec_text(n, namespaces=f"  - name: {n.pa}\n    sysctls: {{net.ipv4.ip_forward: 1}}\n  - name: {n.pb}\n")
    text += f"rules:\n  - {{namespace: {n.pa}, priority: 100, from: 10.231.1.2/32, table: 100}}\n"
    spec = write(tmp_path, text)
    assert _stack(n) is None
    prom = tmp_path / "nkplan.prom"
    run("apply", spec, "--yes", "-q", "--metrics-file", str(prom))
    text_metrics = prom.read_text()  # a real apply: verified, so nothing is pending
    assert f'nkplan_last_apply_success_timestamp_seconds{{stack="{n.stack}"}}' in text_metrics
    assert f'nkplan_pending_changes{{stack="{n.stack}",command="apply",action="create"}} 0' in text_metrics
    assert f'nkplan_run_exit_code{{stack="{n.stack}",command="apply"}} 0' in text_metrics

    counts = _stack(n)
    assert counts is not None
    assert counts["namespaces"] == 2 and counts["pairs"] == 3 and counts["routes"] == 2
    assert counts["rules"] == 1 and counts["sysctls"] == 1
    assert counts["hooks"] == 0 and counts["programs"] == 0
    table = run("stacks").stdout.splitlines()
    assert table[0].split()[:5] == ["STACK", "NAMESPACES", "PAIRS", "ROUTES", "RULES"]
    row = next(line.split() for line in table if line.split()[0] == n.stack)
    assert row[1:5] == ["2", "3", "2", "1"]

    # the same stack drawn as the kernel holds it, and a plan against it (DOT, accepted by Graphviz)
    live = run("graph", "--stack", n.stack).stdout
    assert live.count("subgraph cluster_") == 3 and f"namespace {n.pa}" in live and "10.231.1.2/32" in live
    changed = write(tmp_path, text.replace("mtu: 1400", "mtu: 1300"), "changed.yaml")
    planned = run("graph", changed, "--plan", "--format", "dot").stdout
    assert "[update]" in planned and "cluster_legend" in planned
    svg = subprocess.run(["dot", "-Tsvg"], input=planned, capture_output=True, text=True, timeout=60)
    assert svg.returncode == 0, svg.stderr

    run("destroy", spec, "--yes", "-q")
    assert _stack(n) is None
