"""A directory of stack files on the host kernel, through the real `nkplan` command: three stacks
(one split with include:) applied, re-planned to no changes and destroyed; a directory with one
broken file plans the others but `apply DIR` changes nothing at all. Checked with iproute2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host import observe
from tests.host.conftest import Names

pytestmark = pytest.mark.host
NKPLAN = [sys.executable, "-m", "nkplan.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NKPLAN, *args], capture_output=True, text=True, timeout=180)


@pytest.fixture
def stacks(ns: Names, tmp_path: Path) -> Iterator[tuple[Names, Path]]:
    d = tmp_path / "stacks"
    (d / "parts").mkdir(parents=True)
    n = ns
    (d / "a.yaml").write_text(
        f"stack: {n.stack}a\nnamespaces: [{{name: {n('pa')}}}]\n"
        f"links:\n  - {{name: {n('va')}, kind: veth, addresses: [10.233.0.1/32],\n"
        f"     peer: {{name: eth0, namespace: {n('pa')}, addresses: [10.233.1.2/32]}}}}\n"
        f"routes:\n  - {{to: 10.233.1.2/32, dev: {n('va')}}}\n"
    )
    (d / "b.yaml").write_text(f"stack: {n.stack}b\ninclude: [parts/b-links.yaml]\nnamespaces: [{{name: {n('pb')}}}]\n")
    (d / "parts" / "b-links.yaml").write_text(
        f"links:\n  - {{name: {n('vb')}, kind: veth, peer: {{name: eth0, namespace: {n('pb')}}}}}\n"
    )
    (d / "c.yaml").write_text(f"stack: {n.stack}c\nnamespaces: [{{name: {n('pc')}}}]\n")
    try:
        yield n, d
    finally:
        for s in "abc":
            run("destroy", "--stack", f"{n.stack}{s}", "--yes", "-q")


def mine(n: Names) -> tuple[set[str], set[str]]:
    return (
        {x for x in observe.netns_names() if x.startswith(n.prefix)},
        {x for x in observe.link_names() if x.startswith(n.prefix)},
    )


def test_three_stacks_applied_and_destroyed(stacks: tuple[Names, Path]) -> None:
    n, d = stacks
    p = run("plan", str(d), "--detailed-exitcode")
    assert p.returncode == 2, p.stderr
    assert "3 stacks: 3 with changes, 0 without, 0 not planned (errors)." in p.stdout

    a = run("apply", str(d), "--yes")
    assert a.returncode == 0, a.stdout + a.stderr
    assert mine(n) == ({n("pa"), n("pb"), n("pc")}, {n("va"), n("vb")})
    assert observe.addrs(n("va")) == ["10.233.0.1/32"]
    assert "10.233.1.2/32" in observe.addrs("eth0", ns=n("pa"))
    assert any(r.get("dst") == "10.233.1.2" for r in observe.routes())
    listed = run("stacks").stdout
    assert all(f"{n.stack}{s}" in listed for s in "abc")

    again = run("plan", str(d), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 stacks: 0 with changes, 3 without" in again.stdout

    gone = run("destroy", str(d), "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert gone.stdout.index(f"stack '{n.stack}c'") < gone.stdout.index(f"stack '{n.stack}a'")
    assert mine(n) == (set(), set())


def test_a_broken_file_stops_only_its_plan_and_apply_changes_nothing(stacks: tuple[Names, Path]) -> None:
    n, d = stacks
    (d / "c.yaml").write_text(f"stack: {n.stack}c\nnamespaces: [{{name: {n('pc')}, bogus: 1}}]\n")
    p = run("plan", str(d), "--detailed-exitcode")
    assert p.returncode == 1
    assert f"{d}/c.yaml:2:" in p.stderr and "unknown field 'bogus'" in p.stderr
    assert f"=== stack '{n.stack}a'" in p.stdout and f"=== stack '{n.stack}b'" in p.stdout
    assert "2 with changes, 0 without, 1 not planned" in p.stdout

    a = run("apply", str(d), "--yes")
    assert a.returncode == 1
    assert "nothing was changed" in a.stderr
    assert mine(n) == (set(), set())
