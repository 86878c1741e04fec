"""The public Python API (nkplan.api) through the fake kernel: load a spec from a file, text or
data; plan; apply with a review hook; a saved plan; show; destroy. The errors are the CLI's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nkplan import api
from nkplan.core.plan import Plan
from nkplan.core.records import KernelInfo, LiveState
from nkplan.documents.savedplan import write_saved
from nkplan.documents.snapshot import SNAPSHOT_KEY, to_json
from nkplan.errors import SpecError, StalePlanError
from nkplan.kernel.fake import FakeKernel
from tests.unit.test_planner import BASE


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))


def test_load_from_data_reports_positions_like_a_file() -> None:
    loaded = api.load_dict({"stack": "t", "namespaces": [{"name": "p1"}]})
    assert loaded.spec.namespaces[0].name == "p1"
    with pytest.raises(SpecError) as info:
        api.load_dict({"stack": "t", "namespaces": [{"name": "p1", "bogus": 1}]}, "inline")
    assert info.value.problems[0].startswith("inline:") and "bogus" in info.value.problems[0]


def test_plan_apply_show_destroy(tmp_path: Path) -> None:
    kernel = FakeKernel()
    spec = api.load_text(BASE, "t.yaml")
    planned = api.plan(spec, on=kernel)
    assert planned.plan.has_changes and planned.plan.summary()["add"] > 0

    seen: list[Plan] = []
    done = api.apply(spec, review=seen.append, on=kernel)
    assert seen == [done] and done.has_changes
    assert not api.plan(spec, on=kernel).plan.has_changes  # applied and verified

    shown = api.show("t", on=kernel)
    again = api.load_text(json.dumps(shown.document), "shown.json")
    assert not api.plan(again, on=kernel).plan.has_changes  # show plans to no changes

    gone = api.destroy("t", on=kernel)
    assert gone.summary()["destroy"] == done.summary()["add"]
    assert not kernel.state.namespaces and not kernel.state.links


def test_a_saved_plan_is_applied_or_refused_as_stale(tmp_path: Path) -> None:
    # a saved plan is bound to the host and kernel it was made on: the fake reports this one's
    kernel = FakeKernel(LiveState(kernel=KernelInfo(os.uname().release, True, True, True)))
    spec = api.load_text(BASE, "t.yaml")
    path = str(tmp_path / "plan.json")
    write_saved(api.plan(spec, on=kernel).plan, spec, path)
    saved, embedded = api.read_plan(path)
    api.apply(embedded, saved=saved, on=kernel)
    with pytest.raises(StalePlanError):  # the kernel now holds what the plan was to create
        api.apply(embedded, saved=saved, on=kernel)


def test_a_review_that_raises_changes_nothing() -> None:
    kernel = FakeKernel()

    def refuse(plan: Plan) -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        api.apply(api.load_text(BASE, "t.yaml"), review=refuse, on=kernel)
    assert not kernel.state.namespaces and kernel.calls == ["read"]


def test_show_with_the_spec_exports_the_sysctls_it_declares_and_snapshots_carry_them(tmp_path: Path) -> None:
    text = BASE.replace(
        "namespaces: [{name: p1}, {name: p2}]",
        "namespaces: [{name: p1, sysctls: {net.ipv4.ip_forward: 1}}, {name: p2}]",
    )
    text = text.replace("addresses: [10.0.0.1/32]", "addresses: [10.0.0.1/32]\n    sysctls: {ipv4.rp_filter: 2}")
    text += "host: {sysctls: {net.ipv4.conf.all.forwarding: 1}}\n"
    kernel = FakeKernel()
    spec = api.load_text(text, "t.yaml")
    api.apply(spec, on=kernel)
    shown = api.show("t", spec=spec, on=kernel)
    doc = shown.document
    assert doc["host"] == {"sysctls": {"net.ipv4.conf.all.forwarding": 1}}
    assert doc["namespaces"][0] == {"name": "p1", "sysctls": {"net.ipv4.ip_forward": 1}}
    assert doc["links"][0]["sysctls"] == {"ipv4.rp_filter": 2}
    assert not api.plan(api.load_text(json.dumps(doc), "shown.json"), on=kernel).plan.has_changes
    # an offline plan against the snapshot sees them: a changed value is an update
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({**doc, SNAPSHOT_KEY: to_json(shown.live, {"hostname": "h"})}))
    changed = api.load_text(text.replace("net.ipv4.ip_forward: 1", "net.ipv4.ip_forward: 0"), "t.yaml")
    offline = api.plan(changed, snapshot=str(snap)).plan
    assert [(c.address, c.action) for c in offline.changes if c.action != "no-op"] == [("sysctls[p1]", "update")]
