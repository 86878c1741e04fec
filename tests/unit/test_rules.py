"""Policy routing rules: spec errors with their position, and planner cases through the fake
kernel (create, no-op, replace, ownership, adoption, stale markers, drift, show, snapshots)."""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from nkplan.api import Loaded, load_text
from nkplan.core.records import HOST, RuleRec
from nkplan.documents.show import stack_document, to_yaml
from nkplan.documents.snapshot import from_json, to_json
from nkplan.errors import PlanError, SpecError
from nkplan.kernel.fake import FakeKernel
from nkplan.run.workflow import plan_for
from tests.unit.test_planner import actions, converge

Spec = Callable[[str], Loaded]

RULES = """\
stack: t
namespaces: [{name: p1}]
links:
  - {name: ve1, kind: veth, peer: {name: eth0, namespace: p1}}
rules:
  - {namespace: p1, priority: 100, from: 10.0.1.3/32, table: 100}
  - {priority: 200, iif: ve1, table: main}
  - {priority: 300, to: "fd00::/64", fwmark: 0x10/0xff, action: prohibit}
  - {namespace: p1, priority: 100, family: inet6, oif: eth0, action: blackhole}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_text(textwrap.dedent(text), "t.yaml")
    return info.value.problems


def rule(kernel: FakeKernel, ns: str, family: str, priority: int) -> RuleRec:
    (found,) = [r for r in kernel.state.rules if r.key == (ns, family, priority) and not r.stale]
    return found


BAD = [
    ("{priority: 5, table: 10}", "t.yaml:3:5: rules[0]: rule 5 has no selector: give at least one of from, to"),
    ("{priority: 5, from: 10.0.0.0/8, table: 0}", "t.yaml:3:44: rules[0].table: routing table 0 is out of range"),
    ("{priority: 5, from: 10.0.0.0/8, table: nosuch}", "rules[0].table: routing table 'nosuch' is not a number"),
    ("{priority: 32766, from: 10.0.0.0/8, table: 5}", "t.yaml:3:16: rules[0].priority: priority 32766 is the kernel's"),
    ("{priority: 0, from: 10.0.0.0/8, table: 5}", "rules[0].priority: Input should be greater than or equal to 1"),
    ("{priority: 5, from: 10.0.0.1/8, table: 5}", "t.yaml:3:25: rules[0].from: rule prefix '10.0.0.1/8' has host bits"),
    ("{priority: 5, from: 10.0.0.0/8, to: 'fd00::/8', table: 5}", "rules[0].to: rule 5: from '10.0.0.0/8' and to"),
    ("{priority: 5, from: 10.0.0.0/8, family: inet6, table: 5}", "rules[0].family: rule 5: family 'inet6' does not"),
    ("{priority: 5, from: 10.0.0.0/8}", "t.yaml:3:5: rules[0]: rule 5 needs a table to look up"),
    ("{priority: 5, from: 10.0.0.0/8, action: blackhole, table: 5}", "rules[0].table: rule 5: action blackhole takes"),
    ("{priority: 5, fwmark: 0x1/0, table: 5}", "rules[0].fwmark: fwmark '0x1/0' has mask 0"),
    ("{priority: 5, fwmark: banana, table: 5}", "rules[0].fwmark: fwmark 'banana' is not MARK"),
    ("{priority: 5, iif: a/b, table: 5}", "rules[0].iif: device name 'a/b' must not contain '/'"),
    ("{priority: 5, namespace: nope, iif: x, table: 5}", "rules[0].namespace: namespace 'nope' is not declared"),
    ("{priority: 5, iif: x, table: 5, tos: 4}", "rules[0].tos: unknown field 'tos'"),
]


@pytest.mark.parametrize(("item", "expected"), BAD)
def test_bad_rules_are_located_and_named(item: str, expected: str) -> None:
    found = problems(f"stack: s\nrules:\n  - {item}\n")
    assert any(expected in p for p in found), found


def test_a_rule_declared_twice() -> None:
    found = problems("stack: s\nrules:\n  - {priority: 5, iif: a, table: 5}\n  - {priority: 5, oif: b, table: 6}\n")
    assert found == [
        "t.yaml:4:16: rules[1].priority: rule 5 (inet) in the host namespace is declared twice (rules[0] and rules[1])"
    ]
    # the same priority in the other family is another rule
    other = "stack: s\nrules:\n  - {priority: 5, iif: a, table: 5}\n  - {priority: 5, to: 'fd00::/8', table: 6}\n"
    load_text(other, "t")


def test_rules_are_created_then_no_op_and_change_by_replace(spec: Spec) -> None:
    kernel = FakeKernel()
    plan = converge(kernel, spec(RULES))
    order = [op.address for op in plan.operations]
    assert order == ["namespace[p1]", "rule[300 inet6]", "link[ve1]", "rule[p1 100]", "rule[200]", "rule[p1 100 inet6]"]
    # rules come after their namespace and their devices (rule[200]: iif ve1)
    r = rule(kernel, "p1", "inet", 100)
    assert (r.src, r.table, r.protocol, r.action) == ("10.0.1.3/32", 100, 237, "lookup")
    r = rule(kernel, HOST, "inet6", 300)
    assert (r.dst, r.fwmark, r.fwmask, r.action, r.table, r.owner) == ("fd00::/64", 16, 255, "prohibit", None, "t")
    assert rule(kernel, HOST, "inet", 200).table == 254  # `main`, resolved
    assert not plan_for(kernel, spec(RULES)).plan.has_changes
    changed = spec(RULES.replace("from: 10.0.1.3/32, table: 100", "from: 10.0.1.4/32, table: 100"))
    plan = plan_for(kernel, changed).plan
    (change,) = [c for c in plan.changes if c.action != "no-op"]
    assert (change.address, change.action, change.reason) == ("rule[p1 100]", "replace", "from cannot change in place")
    assert [(op.kind, op.address) for op in plan.operations] == [("delete", "rule[p1 100]"), ("create", "rule[p1 100]")]
    converge(kernel, changed)
    assert rule(kernel, "p1", "inet", 100).src == "10.0.1.4/32"


def test_undeclared_owned_rules_are_deleted_and_others_left_alone(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(RULES))
    theirs = RuleRec(HOST, "inet", 50, iif="eth9", table=7, protocol=0)  # `ip rule add`
    other = RuleRec(HOST, "inet", 60, iif="eth9", table=7, owner="other")  # another stack's
    kernel.state.rules += [theirs, other]
    text = RULES.split("rules:")[0] + "rules: []\n"
    plan = converge(kernel, spec(text))
    assert sorted(a for a, _ in actions(plan)) == ["rule[200]", "rule[300 inet6]", "rule[p1 100 inet6]", "rule[p1 100]"]
    assert kernel.state.rules == [theirs, other]


def test_a_host_rule_with_nkplans_protocol_but_no_marker_is_a_collision(spec: Spec) -> None:
    kernel = FakeKernel()
    kernel.state.rules.append(RuleRec(HOST, "inet", 200, iif="ve1", table=254))  # protocol 237, no owner
    with pytest.raises(PlanError) as err:
        plan_for(kernel, spec(RULES))
    (problem,) = err.value.problems
    assert problem.startswith("t.yaml:7:16: rule[200] (a rule with nkplan's protocol 237) already exists and is not")
    plan = converge(kernel, spec(RULES), adopt=True)
    assert ("rule[200]", "update") in actions(plan)  # only the marker is written
    assert rule(kernel, HOST, "inet", 200).owner == "t"


def test_a_hand_made_rule_at_a_declared_priority(spec: Spec) -> None:
    kernel = FakeKernel()
    hand = RuleRec(HOST, "inet", 200, iif="ve1", table=254, protocol=0)
    kernel.state.rules.append(hand)
    planned = plan_for(kernel, spec(RULES)).plan
    assert any(w.startswith("rule[200]: a rule made outside nkplan (protocol 0)") for w in planned.warnings)
    plan = converge(kernel, spec(RULES), adopt=True)  # taken over: made again with protocol 237
    (change,) = [c for c in plan.changes if c.address == "rule[200]"]
    assert change.action == "replace" and "protocol 237" in (change.reason or "")
    assert hand not in kernel.state.rules and rule(kernel, HOST, "inet", 200).protocol == 237


def test_a_stale_marker_is_removed_and_a_missing_rule_made_again(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(RULES))
    kernel.state.rules.remove(rule(kernel, HOST, "inet", 200))  # `ip rule del` by hand
    kernel.state.rules.append(RuleRec(HOST, "inet", 200, owner="t", applied="x", stale=True))
    kernel.state.rules.append(RuleRec(HOST, "inet", 900, owner="t", applied="y", stale=True))
    plan = converge(kernel, spec(RULES))
    assert actions(plan) == [("rule[900]", "delete"), ("rule[200]", "create")]
    assert not any(r.stale for r in kernel.state.rules if r.priority == 900)


def test_a_host_rule_changed_by_hand_is_drift(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(RULES))
    i = kernel.state.rules.index(rule(kernel, HOST, "inet", 200))
    kernel.state.rules[i] = dataclasses.replace(kernel.state.rules[i], table=100)  # same marker digest
    planned = plan_for(kernel, spec(RULES)).plan
    (drift,) = planned.drift
    assert (drift.address, drift.changed_paths) == ("rule[200]", ("table",))
    assert actions(planned) == [("rule[200]", "replace")]


def test_rules_die_with_their_namespace_and_show_exports_them(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(RULES))
    kernel.state.rules.append(RuleRec(HOST, "inet", 50, fwmark=1, fwmask=0xF, table=7, protocol=0))
    kernel.state.rules.append(RuleRec(HOST, "inet", 51, iif="x", table=7, protocol=0, extra=("ipproto",)))
    live = kernel.read()
    doc = stack_document(live, "t")
    assert doc["rules"] == [
        {"priority": 200, "iif": "ve1", "table": "main"},
        {"priority": 300, "to": "fd00::/64", "fwmark": "0x10/0xff", "action": "prohibit"},
        {"namespace": "p1", "priority": 100, "from": "10.0.1.3/32", "table": 100},
        {"namespace": "p1", "priority": 100, "family": "inet6", "oif": "eth0", "action": "blackhole"},
    ]
    everything = stack_document(live, "t", unowned=True)["rules"]
    assert {"priority": 50, "fwmark": "0x1/0xf", "table": 7} in everything
    assert not any(r["priority"] == 51 for r in everything)  # holds what a spec cannot say
    # a snapshot carries them: a plan against it is empty
    snap, _host = from_json(json.loads(json.dumps(to_json(live, {"hostname": "h"}))))
    assert not plan_for(None, spec(RULES), live=snap, source="snapshot").plan.has_changes
    # the exported document plans to no changes
    exported = load_text(to_yaml(doc), "shown.yaml")
    assert not plan_for(kernel, exported).plan.has_changes
    kernel.delete_namespace("p1")
    assert not any(r.namespace == "p1" for r in kernel.state.rules)


def test_host_rule_markers_live_beside_pins_and_the_pin_walkers_ignore_them(tmp_path: Path) -> None:
    from nkplan.core.records import LiveState
    from nkplan.kernel.bpf import bpffs, rulemarks

    root = str(tmp_path)
    (tmp_path / "s1" / ":host" / "nk-a" / "ingress").mkdir(parents=True)  # a hook directory
    rulemarks.write("s1", "inet", 100, "0123456789ab", root)
    rulemarks.write("s1", "inet6", 200, "ba9876543210", root)
    rulemarks.write("s1", "inet", 100, "aaaaaaaaaaaa", root)  # re-applied: one marker per rule
    assert sorted(os.listdir(rulemarks.rules_dir("s1", root))) == ["inet-100@aaaaaaaaaaaa", "inet6-200@ba9876543210"]
    assert [key for key, _ in bpffs.hook_dirs(root)] == [("s1", "", "nk-a", "ingress")]
    live = LiveState(rules=[RuleRec(HOST, "inet", 100, iif="x", table=5), RuleRec(HOST, "inet", 7, iif="x", table=5)])
    rulemarks.fill_owners(live, root)
    assert [(r.priority, r.family, r.owner, r.applied, r.stale) for r in live.rules] == [
        (100, "inet", "s1", "aaaaaaaaaaaa", False),
        (7, "inet", None, None, False),  # nkplan's protocol, no marker: someone else's
        (200, "inet6", "s1", "ba9876543210", True),  # a marker whose rule is gone
    ]
    rulemarks.remove("s1", "inet", 100, root)
    rulemarks.remove("s1", "inet6", 200, root)
    assert not os.path.exists(rulemarks.rules_dir("s1", root))  # empty directories pruned
    assert os.path.isdir(tmp_path / "s1" / ":host" / "nk-a" / "ingress")  # pins untouched
