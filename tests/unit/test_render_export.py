"""Text rendering and `show` export, through the fake kernel."""

from __future__ import annotations

from collections.abc import Callable

from nkplan.api import Loaded, load_text
from nkplan.documents.show import stack_document, to_yaml
from nkplan.documents.text import render_plan
from nkplan.kernel.fake import FakeKernel
from nkplan.run.workflow import apply_and_verify, plan_for
from tests.unit.test_planner import BASE

Spec = Callable[[str], Loaded]


def test_text_plan_symbols_and_summary(spec: Spec) -> None:
    kernel = FakeKernel()
    loaded = spec(BASE)
    text = render_plan(plan_for(kernel, loaded).plan)
    assert "  + namespace[p1]" in text and "  + link[nk1]" in text and "  + route[p1 default]" in text
    assert 'primary.addresses = ["10.0.0.1/32"]' in text
    assert text.rstrip().endswith("Plan: 6 to add, 0 to change, 0 to destroy.")
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan, sleep=lambda s: None)
    assert render_plan(plan_for(kernel, loaded).plan).startswith("No changes.")
    changed = spec(BASE.replace("kind: netkit\n", "kind: netkit\n    mode: l2\n    policy: blackhole\n"))
    text = render_plan(plan_for(kernel, changed).plan)
    assert "  -/+ link[nk1]  (mode cannot change in place)" in text
    assert '        mode: "l3" → "l2"  # forces replacement' in text
    assert '        primary.policy: "forward" → "blackhole"\n' in text
    assert "Plan: 3 to add, 0 to change, 3 to destroy." in text


def test_show_round_trips_to_no_changes(spec: Spec) -> None:
    kernel = FakeKernel()
    text = BASE.replace("kind: netkit\n", "kind: netkit\n    mode: l2\n    mtu: 9000\n")
    text = text.replace(
        "peer: {name: eth0, namespace: p1,", "peer: {name: eth0, namespace: p1, mtu: 1400, policy: blackhole,"
    )
    loaded = spec(text)
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan, sleep=lambda s: None)
    exported = to_yaml(stack_document(kernel.read(), "t"))
    again = load_text(exported, "shown.yaml")
    assert not plan_for(kernel, again).plan.has_changes, exported
    assert "mac:" in exported  # L2 MACs chosen by the kernel are pinned in the export


def test_show_exports_routes_of_every_kind_to_no_changes(spec: Spec) -> None:
    kernel = FakeKernel()
    text = BASE + (
        "  - {namespace: p1, to: 10.5.0.0/24, table: 100, type: blackhole}\n"
        "  - {namespace: p1, to: 10.6.0.0/24, via: 10.0.1.1, dev: eth0, onlink: true, src: 10.0.1.2, mtu: 1400}\n"
        "  - {namespace: p1, to: 10.9.9.9/32, dev: eth0, type: local, metric: 5}\n"
        "  - {namespace: p1, to: 10.7.0.0/24, dev: eth0, scope: host}\n"
        "  - {to: 10.8.0.0/24, nexthops: [{dev: nk1, weight: 3}, {via: 10.0.0.9, dev: nk1, onlink: true}]}\n"
    )
    loaded = spec(text)
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan, sleep=lambda s: None)
    exported = to_yaml(stack_document(kernel.read(), "t"))
    assert not plan_for(kernel, load_text(exported, "shown.yaml")).plan.has_changes, exported
    assert "table: 100" in exported and "weight: 3" in exported and "scope: host" in exported
