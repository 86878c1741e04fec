"""Markdown plans (the pull-request comment) through the fake kernel, against golden files in
tests/unit/golden/markdown/. After an intended change of the output, regenerate them with

    NKPLAN_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/unit/test_markdown.py

and review the diff of the golden files before committing."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from nkplan.api import Loaded
from nkplan.core.plan import Change, Decision, Operation, Plan
from nkplan.core.records import EndRec, LinkRec, NamespaceRec
from nkplan.documents.markdown import render_markdown
from nkplan.kernel.fake import FakeKernel
from nkplan.run.workflow import apply_and_verify, plan_for
from tests.unit.test_planner import BASE

GOLDEN = Path(__file__).parent / "golden" / "markdown"
Spec = Callable[[str], Loaded]

SMALLER = "stack: t\nnamespaces: [{name: p2}]\nlinks:\n  - {name: ve2, kind: veth, peer: {name: eth0, namespace: p2}}\n"


def pods(n: int, stack: str = "big") -> str:
    """n pods: a namespace, a veth pair with the peer inside it, and a host route each (3n resources)."""
    lines = [f"stack: {stack}", "namespaces:"]
    lines += [f"  - {{name: pod{i}}}" for i in range(n)]
    lines.append("links:")
    lines += [
        f"  - {{name: ve{i}, kind: veth, addresses: [10.1.{i // 250}.{i % 250 + 1}/32],"
        f" peer: {{name: eth0, namespace: pod{i}, addresses: [10.2.{i // 250}.{i % 250 + 1}/32]}}}}"
        for i in range(n)
    ]
    lines.append("routes:")
    lines += [f"  - {{to: 10.2.{i // 250}.{i % 250 + 1}/32, dev: ve{i}}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def applied(spec: Spec, text: str = BASE) -> FakeKernel:
    kernel = FakeKernel()
    loaded = spec(text)
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan, sleep=lambda s: None)
    return kernel


def case_create(spec: Spec) -> str:
    return render_markdown(plan_for(FakeKernel(), spec(BASE)).plan)


def case_update(spec: Spec) -> str:
    kernel = applied(spec)
    return render_markdown(
        plan_for(kernel, spec(BASE.replace("kind: netkit\n", "kind: netkit\n    policy: blackhole\n"))).plan
    )


def case_replace(spec: Spec) -> str:
    kernel = applied(spec)
    return render_markdown(plan_for(kernel, spec(BASE.replace("kind: netkit\n", "kind: netkit\n    mode: l2\n"))).plan)


def case_delete(spec: Spec) -> str:
    return render_markdown(plan_for(applied(spec), spec(SMALLER)).plan)


def case_drift(spec: Spec) -> str:
    kernel = applied(spec)
    key = ("", "nk1")
    live = kernel.state.links[key]
    kernel.state.links[key] = dataclasses.replace(live, primary=dataclasses.replace(live.primary, policy="blackhole"))
    plan = plan_for(kernel, spec(BASE)).plan
    assert plan.drift, "the planner reported no drift for a policy changed by hand"
    return render_markdown(plan)


def case_no_changes(spec: Spec) -> str:
    return render_markdown(plan_for(applied(spec), spec(BASE)).plan)


def case_truncated_diff(spec: Spec) -> str:
    return render_markdown(plan_for(FakeKernel(), spec(pods(12, "mid"))).plan, limit=5000)


def case_truncated_table(spec: Spec) -> str:
    return render_markdown(plan_for(FakeKernel(), spec(pods(12, "mid"))).plan, limit=1500)


CASES = {
    "create": case_create,
    "update": case_update,
    "replace": case_replace,
    "delete": case_delete,
    "drift": case_drift,
    "no_changes": case_no_changes,
    "truncated_diff": case_truncated_diff,
    "truncated_table": case_truncated_table,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, spec: Spec) -> None:
    got = CASES[name](spec)
    assert got == CASES[name](spec), "rendering is not deterministic"
    path = GOLDEN / f"{name}.md"
    if os.environ.get("NKPLAN_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert path.exists(), f"{path} missing; run with NKPLAN_UPDATE_GOLDEN=1 to create it"
    assert got == path.read_text(encoding="utf-8"), f"{name}: differs from {path} (NKPLAN_UPDATE_GOLDEN=1 regenerates)"


def test_marker_summary_and_banners(spec: Spec) -> None:
    create, update, replace, delete = (CASES[n](spec) for n in ("create", "update", "replace", "delete"))
    for text in (create, update, replace, delete, CASES["no_changes"](spec)):
        assert text.splitlines()[0] == "<!-- nkplan-plan stack=t -->"
    assert "**Plan:** 6 to add, 0 to change, 0 to destroy." in create
    assert "**Plan:** 0 to add, 1 to change, 0 to destroy." in update
    assert "| `~` update | `link[nk1]` | link | `primary.policy` |  |" in update
    assert '!     primary.policy: "forward" → "blackhole"' in update
    for text in (create, update):
        assert "[!WARNING]" not in text and "[!CAUTION]" not in text
    assert "**Plan:** 3 to add, 0 to change, 3 to destroy." in replace  # a replace is 1 add + 1 destroy
    assert "> [!WARNING]" in replace and "Traffic is disrupted" in replace
    assert "| `mode` (forces replacement) | mode cannot change in place |" in replace
    assert '!     mode: "l3" → "l2"  # forces replacement' in replace
    assert "> [!CAUTION]" in delete and "> - delete `namespace[p1]`" in delete and "> - delete `link[nk1]`" in delete
    assert "Deleting a namespace also removes every device and route inside it." in delete
    assert CASES["no_changes"](spec).splitlines()[3] == "**No changes.** The kernel matches the spec of stack `t`."
    assert "<details>" not in CASES["no_changes"](spec)


def test_drift_note(spec: Spec) -> None:
    text = CASES["drift"](spec)
    assert "> [!NOTE]" in text and "changed outside nkplan" in text
    assert '> - `link[nk1]`: `primary.policy` `"forward"` → `"blackhole"`' in text
    assert "~     primary.policy: " in text  # the drift's own diff section, besides the restoring update


def test_huge_plan_is_truncated_under_the_limit_and_says_so(spec: Spec) -> None:
    plan = plan_for(FakeKernel(), spec(pods(1000))).plan
    assert len([c for c in plan.changes if c.action != "no-op"]) == 3000
    text = render_markdown(plan)
    assert len(text) <= 60000
    lines = text.splitlines()
    assert lines[0] == "<!-- nkplan-plan stack=big -->"
    assert "**Plan:** 3000 to add, 0 to change, 0 to destroy." in lines
    assert re.search(r"\*\*… table truncated: \d+ more rows; see the saved plan artifact\.\*\*", text)
    assert re.search(r"\*\*… truncated: \d+ more lines; see the saved plan artifact\.\*\*", text)
    assert text.rstrip().endswith("</details>")
    # with a limit that holds the table, the diff is cut at a line boundary instead
    big = render_markdown(plan, limit=400000)
    assert "table truncated" not in big and len(big) <= 400000
    assert re.search(r"^\*\*… truncated: \d+ more lines; see the saved plan artifact\.\*\*$", big, re.M)
    fence = big.index("```diff\n")
    shown = big[fence:].split("\n```\n")[0].splitlines()[1:]
    full = render_markdown(plan, limit=10**9)
    assert "truncated" not in full
    assert "\n".join(shown) in full  # whole lines of the full diff, nothing cut mid-line


def test_every_limit_is_respected(spec: Spec) -> None:
    plan = plan_for(FakeKernel(), spec(pods(12, "mid"))).plan
    full = render_markdown(plan, limit=10**9)
    for limit in range(800, len(full) + 200, 97):
        text = render_markdown(plan, limit=limit)
        assert len(text) <= limit, limit
        assert text.startswith("<!-- nkplan-plan stack=mid -->\n")
        assert ("truncated" in text) == (len(full) > limit), limit


def test_table_cells_are_escaped() -> None:
    end, peer = EndRec("", "a|b`c"), EndRec("", "p")
    change = Change(
        address="link[a|b`c]",
        type="link",
        decision=Decision("replace", ("mode",), ("mode",), "odd | reason with `ticks` and <b>html</b>"),
        before=LinkRec("netkit", end, peer, mode="l3"),
        after=LinkRec("netkit", end, peer, mode="l2"),
    )
    plan = Plan("s", (change,), (Operation("create", change.address, "link", None, change.after),))
    row = next(line for line in render_markdown(plan).splitlines() if line.startswith("| `-/+` replace"))
    assert "``link[a\\|b`c]``" in row  # a code span longer than the backtick run inside, pipe escaped
    assert "odd \\| reason with \\`ticks\\` and &lt;b>html&lt;/b>" in row
    assert row.count(" | ") == 4  # the cells still line up: no unescaped pipe split a cell


def test_diff_fence_outgrows_backticks_in_values() -> None:
    change = Change("namespace[x```y]", "namespace", Decision("create"), None, NamespaceRec("x```y"))
    text = render_markdown(
        Plan("s", (change,), (Operation("create", change.address, "namespace", None, change.after),))
    )
    assert "````diff\n" in text and "\n````\n" in text


def test_snapshot_plans_say_so(spec: Spec) -> None:
    plan = plan_for(FakeKernel(), spec(BASE)).plan
    assert "snapshot" not in render_markdown(plan)
    snap = dataclasses.replace(plan, meta={**plan.meta, "source": "snapshot", "host": {"hostname": "web-1"}})
    assert "> Planned against a snapshot of `web-1`'s live state (`plan --state`)" in render_markdown(snap)
