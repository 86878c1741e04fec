"""`nkplan stacks` on the host kernel: a stack applied through the real command is found through
its ownership marks alone (no state file), with the counts of what it owns; gone after destroy."""

from __future__ import annotations

import json
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
    run("apply", spec, "--yes", "-q")

    counts = _stack(n)
    assert counts is not None
    assert counts["namespaces"] == 2 and counts["pairs"] == 3 and counts["routes"] == 2
    assert counts["rules"] == 1 and counts["sysctls"] == 1
    assert counts["hooks"] == 0 and counts["programs"] == 0
    table = run("stacks").stdout.splitlines()
    assert table[0].split()[:5] == ["STACK", "NAMESPACES", "PAIRS", "ROUTES", "RULES"]
    row = next(line.split() for line in table if line.split()[0] == n.stack)
    assert row[1:5] == ["2", "3", "2", "1"]

    run("destroy", spec, "--yes", "-q")
    assert _stack(n) is None
