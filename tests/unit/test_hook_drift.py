"""Hook drift through the fake kernel: a managed program detached outside nkplan, an orphan pin in
the stack's bpffs tree, a program others attached since the last apply; all in the drift section,
put back / removed / acknowledged (never detached) by apply."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from nkplan.api import Loaded, load_text
from nkplan.core.records import ForeignProgram, OrphanPin
from nkplan.documents.json_plan import render_json
from nkplan.documents.text import render_plan
from nkplan.kernel.fake import FakeKernel
from nkplan.run.workflow import apply_and_verify, plan_for

BUILD = Path(__file__).resolve().parents[2] / "bpf" / "build"


@pytest.fixture
def loaded(tmp_path: Path) -> Loaded:
    for name in ("count.o", "pod_policy.o"):
        shutil.copy(BUILD / name, tmp_path / name)
    text = (
        "stack: t\nnamespaces: [{name: p1}]\nlinks:\n  - name: nk1\n    kind: netkit\n"
        "    programs: {primary: [{object: count.o, program: count_pass},\n"
        "                         {object: pod_policy.o, program: pod_egress}]}\n"
        "    peer: {name: eth0, namespace: p1}\n"
    )
    (tmp_path / "spec.yaml").write_text(text)
    return load_text(text, str(tmp_path / "spec.yaml"))


def applied(kernel: FakeKernel, loaded: Loaded) -> FakeKernel:
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan, sleep=lambda s: None)
    assert not plan_for(kernel, loaded).plan.has_changes
    return kernel


def test_a_program_detached_outside_nkplan_is_drift_and_put_back(loaded: Loaded) -> None:
    kernel = applied(FakeKernel(), loaded)
    key = ("", "nk1", "primary")
    hook = kernel.state.hooks[key]
    kernel.state.hooks[key] = dataclasses.replace(hook, programs=hook.programs[1:])  # count_pass detached
    plan = plan_for(kernel, loaded).plan
    ((drift,),) = [plan.drift]
    assert (drift.address, drift.changed_paths, drift.reason) == (
        "hook[nk1 primary]",
        ("programs",),
        "changed outside nkplan",
    )
    assert [p["program"] for p in drift.before_attrs["programs"]] == ["count_pass", "pod_egress"]  # type: ignore[index]
    assert [p["program"] for p in drift.after_attrs["programs"]] == ["pod_egress"]  # type: ignore[index]
    text = render_plan(plan)
    assert "Objects changed outside nkplan since the last apply (drift):" in text and "~ hook[nk1 primary]" in text
    assert '"resource_drift": [' in render_json(plan) and '"changed_outside_nkplan"' in render_json(plan)
    applied(kernel, loaded)
    assert [p.program for p in kernel.state.hooks[key].programs] == ["count_pass", "pod_egress"]


def test_a_changed_spec_is_not_drift(loaded: Loaded, tmp_path: Path) -> None:
    kernel = applied(FakeKernel(), loaded)
    text = (tmp_path / "spec.yaml").read_text().replace("{object: count.o, program: count_pass},", "")
    (tmp_path / "spec.yaml").write_text(text)
    plan = plan_for(kernel, load_text(text, str(tmp_path / "spec.yaml"))).plan
    assert plan.has_changes and not plan.drift


def test_orphan_pins_are_drift_and_removed(loaded: Loaded) -> None:
    kernel = applied(FakeKernel(), loaded)
    stray = OrphanPin("t", "stray", "pinned outside nkplan")
    stale_declared = OrphanPin(
        "t", ":host/nk1/primary/count_pass@0123456789abcdef", "stale", ("", "nk1", "primary"), "count_pass"
    )
    other = OrphanPin("u", "x", "pinned outside nkplan")  # another stack's: not ours to touch
    kernel.state.orphan_pins += [stray, stale_declared, other]
    plan = plan_for(kernel, loaded).plan
    assert [(c.address, c.action, c.reason) for c in plan.drift] == [
        ("pin[stray]", "create", "pinned outside nkplan; no declared program, map or rule owns it")
    ]
    assert [(c.address, c.action) for c in plan.changes if c.action != "no-op"] == [("pin[stray]", "delete")]
    assert "pinned outside nkplan; no declared program, map or rule owns it" in render_plan(plan)
    apply_and_verify(kernel, loaded, plan, sleep=lambda s: None)
    assert kernel.state.orphan_pins == [stale_declared, other]


def test_foreign_programs_present_at_the_first_apply_are_not_drift(loaded: Loaded) -> None:
    kernel = FakeKernel()
    kernel.state.foreign_programs.append(ForeignProgram("", "nk1", "primary", 5, "early", 6))
    applied(kernel, loaded)
    assert kernel.state.hooks[("", "nk1", "primary")].foreign == ("early (id 5)",)
    kernel.state.foreign_programs.clear()  # its owner detached it: drift, and apply forgets it
    plan = plan_for(kernel, loaded).plan
    assert [c.changed_paths for c in plan.drift] == [("foreign",)]
    assert [c.reason for c in plan.changes if c.action != "no-op"] == ["forget early (id 5) (no longer attached)"]


@pytest.mark.parametrize("path", ["/etc/passwd", "../../etc/x", "a/../../b", "", "a//b", "./x", "a/\0b"])
def test_a_saved_plans_pin_path_cannot_leave_the_stack_tree(path: str) -> None:
    """A saved plan is input that apply, as root, executes: a pin it names to remove must lie in
    the stack's bpffs tree, whatever the plan file says."""
    from nkplan.core.resources import from_plain
    from nkplan.errors import PlanFileError

    with pytest.raises(PlanFileError, match="not inside the stack's bpffs tree"):
        from_plain("pin", {"owner": "t", "path": path, "what": "pinned outside nkplan"})
    assert from_plain("pin", {"owner": "t", "path": "ns/dev/x", "what": "w"}).path == "ns/dev/x"
