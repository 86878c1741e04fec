"""What an interrupted apply can leave, through the fake kernel (the real kernel's side is
tests/host/test_faults.py): a hook's temporary `…-new` pins show in the plan and go with the next
apply or destroy, and a step that fails halfway is undone by its inverse where its type's kernel
half converges from what it finds (ResourceType.undo_failed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from nkplan.core.records import HookRec
from nkplan.documents.text import render_plan
from nkplan.errors import KernelError
from nkplan.kernel.fake import FakeKernel
from nkplan.kernel.seam import ApplySession
from nkplan.run.applier import ApplyFailed, apply_plan
from nkplan.run.workflow import empty_spec, plan_for
from tests.unit.test_programs import COUNT, POLICY, converge, objs, spec_with

__all__ = ["objs"]
LEFT = "count_pass@0123456789abcdef-new"


def with_leftover(kernel: FakeKernel, key: tuple[str, str, str]) -> None:
    kernel.state.hooks[key] = dataclasses.replace(kernel.state.hooks[key], leftovers=(LEFT,))


def test_a_leftover_pin_is_a_change_and_the_apply_removes_it(objs: Path) -> None:
    kernel = FakeKernel()
    loaded = spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n")
    converge(kernel, loaded)
    with_leftover(kernel, ("", "nk1", "primary"))
    plan = plan_for(kernel, loaded).plan
    (change,) = [c for c in plan.changes if c.action != "no-op"]
    assert (change.address, change.action) == ("hook[nk1 primary]", "update")
    text = render_plan(plan)
    assert f"remove the pin(s) an interrupted apply left: {LEFT}" in text, text
    converge(kernel, loaded)
    assert not plan_for(kernel, loaded).plan.has_changes


def test_leftover_pins_alone_make_destroy_delete_the_hook(objs: Path) -> None:
    kernel = FakeKernel()
    loaded = spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n")
    converge(kernel, loaded)
    key = ("", "nk1", "primary")
    kernel.state.hooks[key] = dataclasses.replace(kernel.state.hooks[key], programs=(), leftovers=(LEFT,))
    plan = plan_for(kernel, empty_spec("t")).plan
    assert ("hook[nk1 primary]", "delete") in [(c.address, c.action) for c in plan.changes]


def test_no_leftovers_means_no_new_attribute_in_plans(objs: Path) -> None:
    kernel = FakeKernel()
    plan = plan_for(kernel, spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n")).plan
    (hook,) = [c for c in plan.changes if c.type == "hook"]
    assert hook.after_attrs is not None and "leftovers" not in hook.after_attrs


class HalfDone(FakeKernel):
    """Does the first update of a record of type `kind`, then reports a refusal: a step that
    failed after doing (part of) its job."""

    def __init__(self, kind: type) -> None:
        super().__init__()
        self.kind, self.failed = kind, False

    def update(self, before: Any, after: Any, session: ApplySession | None = None) -> None:
        super().update(before, after, session)
        if isinstance(after, self.kind) and not self.failed:
            self.failed = True
            raise KernelError("refused halfway")


def test_a_hook_step_refused_halfway_is_undone(objs: Path) -> None:
    kernel = HalfDone(HookRec)
    converge(kernel, spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n"))
    kernel.failed = False
    before = kernel.state.hooks[("", "nk1", "primary")]
    plan = plan_for(kernel, spec_with(objs, f"    programs:\n      primary: [{POLICY}, {COUNT}]\n")).plan
    with pytest.raises(ApplyFailed, match="refused halfway") as failed:
        apply_plan(kernel, plan)
    assert not failed.value.rollback_errors
    assert kernel.state.hooks[("", "nk1", "primary")] == before  # the half-done update was taken back
