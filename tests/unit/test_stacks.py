"""`nkplan stacks` through the fake kernel: stacks grouped by owner, with counts; text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nkplan import api
from nkplan.documents.stacks import render_json, render_text
from nkplan.kernel.fake import FakeKernel
from tests.unit.test_planner import BASE


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))


def test_two_stacks_are_told_apart_by_their_marks() -> None:
    kernel = FakeKernel()
    assert api.stacks(on=kernel) == []
    assert "No stacks" in render_text([])
    api.apply(api.load_text(BASE, "t.yaml"), on=kernel)
    other = "stack: u\nnamespaces: [{name: q1, sysctls: {net.ipv4.ip_forward: 1}}]\n"
    api.apply(api.load_text(other, "u.yaml"), on=kernel)

    rows = api.stacks(on=kernel)
    assert [r.stack for r in rows] == ["t", "u"]
    t, u = rows
    assert (t.namespaces, t.pairs, t.routes, t.rules, t.hooks, t.sysctls) == (2, 2, 2, 0, 0, 0)
    assert (u.namespaces, u.pairs, u.routes, u.sysctls) == (1, 0, 0, 1)

    doc = json.loads(render_json(rows))
    assert doc["stacks"][0]["stack"] == "t" and doc["stacks"][0]["pairs"] == 2
    text = render_text(rows).splitlines()
    assert text[0].split() == ["STACK", "NAMESPACES", "PAIRS", "ROUTES", "RULES", "HOOKS", "PROGRAMS", "SYSCTLS"]
    assert text[1].split() == ["t", "2", "2", "2", "0", "0", "0", "0"]
