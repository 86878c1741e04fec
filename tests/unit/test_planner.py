"""Planner and applier through the fake kernel: fast, pure cases. Not evidence that the product
works on a kernel (that is tests/host and tests/netkit)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from nkplan.api import Loaded, load_file
from nkplan.core.plan import Plan
from nkplan.core.records import DeviceInfo, NamespaceRec
from nkplan.documents.savedplan import read_saved, write_saved
from nkplan.errors import KernelError, PlanError
from nkplan.kernel.fake import FakeKernel
from nkplan.run.applier import ApplyFailed
from nkplan.run.workflow import apply_and_verify, empty_spec, plan_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
Spec = Callable[[str], Loaded]


def converge(kernel: FakeKernel, loaded: Loaded, adopt: bool = False) -> Plan:
    plan = plan_for(kernel, loaded, adopt=adopt).plan
    apply_and_verify(kernel, loaded, plan, sleep=lambda s: None)
    return plan


def actions(plan: Plan) -> list[tuple[str, str]]:
    return [(c.address, c.action) for c in plan.changes if c.action != "no-op"]


BASE = """\
stack: t
namespaces: [{name: p1}, {name: p2}]
links:
  - name: nk1
    kind: netkit
    addresses: [10.0.0.1/32]
    peer: {name: eth0, namespace: p1, addresses: [10.0.1.2/32]}
  - {name: ve2, kind: veth, peer: {name: eth0, namespace: p2}}
routes:
  - {namespace: p1, to: default, dev: eth0}
  - {to: 10.0.1.2/32, dev: nk1}
"""


def test_example_from_empty_orders_by_dependency() -> None:
    kernel = FakeKernel()
    plan = plan_for(kernel, load_file(str(EXAMPLE))).plan
    assert [op.address for op in plan.operations] == [
        "namespace[pod-a]",
        "namespace[pod-b]",
        "link[nk-a]",
        "link[nk-b]",
        "link[ve-c]",
        "route[pod-a default]",
        "route[10.10.1.2/32]",
    ]
    assert {op.kind for op in plan.operations} == {"create"}
    assert plan.summary()["add"] == 7


def test_apply_then_no_changes(spec: Spec) -> None:
    kernel = FakeKernel()
    loaded = spec(BASE)
    converge(kernel, loaded)
    again = plan_for(kernel, loaded).plan
    assert not again.has_changes
    assert all(c.action == "no-op" for c in again.changes)


def test_policy_change_is_in_place_update(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(BASE))
    plan = plan_for(kernel, spec(BASE.replace("kind: netkit\n", "kind: netkit\n    policy: blackhole\n"))).plan
    assert actions(plan) == [("link[nk1]", "update")]
    change = plan.changes[0]
    assert change.changed_paths == ("primary.policy",)
    assert change.before.primary.policy == "forward" and change.after.primary.policy == "blackhole"  # type: ignore[union-attr]


def test_mode_change_replaces_with_reason_and_cascades_to_routes(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(BASE))
    changed = spec(BASE.replace("kind: netkit\n", "kind: netkit\n    mode: l2\n"))
    plan = plan_for(kernel, changed).plan
    found = dict(actions(plan))
    assert found["link[nk1]"] == "replace"
    assert found["route[p1 default]"] == "replace"
    assert found["route[10.0.1.2/32]"] == "replace"
    link = next(c for c in plan.changes if c.address == "link[nk1]")
    assert link.reason == "mode cannot change in place" and link.replace_paths == ("mode",)
    kinds = [(op.kind, op.address) for op in plan.operations]
    # routes go before their device, the device is recreated before its routes
    assert kinds.index(("delete", "route[p1 default]")) < kinds.index(("delete", "link[nk1]"))
    assert kinds.index(("create", "link[nk1]")) < kinds.index(("create", "route[p1 default]"))
    apply_and_verify(kernel, changed, plan, sleep=lambda s: None)
    assert kernel.state.links[("", "nk1")].mode == "l2"


def test_address_and_mtu_changes_are_updates(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(BASE))
    new = BASE.replace("addresses: [10.0.0.1/32]", "addresses: [10.0.0.1/32, 'fd00::1/128']\n    mtu: 9000")
    plan = plan_for(kernel, spec(new)).plan
    assert actions(plan) == [("link[nk1]", "update")]
    assert plan.changes[0].changed_paths == ("peer.mtu", "primary.addresses", "primary.mtu")


def test_removed_link_and_namespace_are_deleted_in_reverse_order(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(BASE))
    smaller = spec(
        "stack: t\nnamespaces: [{name: p2}]\nlinks:\n  - {name: ve2, kind: veth, peer: {name: eth0, namespace: p2}}\n"
    )
    plan = plan_for(kernel, smaller).plan
    assert [(op.kind, op.address) for op in plan.operations] == [
        ("delete", "route[p1 default]"),
        ("delete", "route[10.0.1.2/32]"),
        ("delete", "link[nk1]"),
        ("delete", "namespace[p1]"),
    ]
    apply_and_verify(kernel, smaller, plan, sleep=lambda s: None)
    assert set(kernel.state.namespaces) == {"p2"}


def test_destroy_removes_everything_owned_and_nothing_else(spec: Spec) -> None:
    kernel = FakeKernel()
    kernel.state.namespaces["other"] = NamespaceRec("other", None)
    converge(kernel, spec(BASE))
    converge(kernel, empty_spec("t"))
    assert set(kernel.state.namespaces) == {"other"}
    assert not kernel.state.links and not kernel.state.routes


def test_unowned_namespace_is_refused_unless_adopted(spec: Spec) -> None:
    kernel = FakeKernel()
    kernel.state.namespaces["p1"] = NamespaceRec("p1", None)
    with pytest.raises(PlanError) as info:
        plan_for(kernel, spec(BASE))
    assert "t.yaml:2:21: namespace 'p1' already exists and is not managed by nkplan" in info.value.problems[0]
    assert "--adopt" in info.value.problems[0]
    plan = converge(kernel, spec(BASE), adopt=True)
    assert ("namespace[p1]", "update") in actions(plan)
    assert kernel.state.namespaces["p1"].owner == "t"


def test_other_stacks_objects_are_refused(spec: Spec) -> None:
    kernel = FakeKernel()
    kernel.state.devices[("", "nk1")] = DeviceInfo("", "nk1", "veth", 7, "other", "primary")
    with pytest.raises(PlanError) as info:
        plan_for(kernel, spec(BASE))
    assert "device 'nk1' in host already exists and is owned by stack 'other'" in str(info.value)


def test_unowned_device_that_is_not_a_pair_cannot_be_adopted(spec: Spec) -> None:
    kernel = FakeKernel()
    kernel.state.devices[("", "nk1")] = DeviceInfo("", "nk1", "dummy", 7, None, None)
    with pytest.raises(PlanError) as info:
        plan_for(kernel, spec(BASE), adopt=True)
    assert "exists but is not the netkit pair declared here (dummy); cannot adopt it" in str(info.value)


def test_no_netkit_kernel_is_a_plan_error_but_veth_works(spec: Spec) -> None:
    kernel = FakeKernel(netkit=False)
    with pytest.raises(PlanError) as info:
        plan_for(kernel, spec(BASE))
    assert "t.yaml:5:11: this kernel (fake) has no netkit support (CONFIG_NETKIT)" in str(info.value)
    converge(kernel, spec("stack: t\nlinks:\n  - {name: ve2, kind: veth, peer: {name: eth9}}\n"))


def test_unhonoured_attributes_are_plan_errors(spec: Spec) -> None:
    kernel = FakeKernel()
    kernel.state.kernel = kernel.state.kernel.__class__("6.8.0", True, False, False)
    text = "stack: t\nlinks:\n  - {name: a, kind: netkit, scrub: none, headroom: 64, peer: {name: b}}\n"
    with pytest.raises(PlanError) as info:
        plan_for(kernel, spec(text))
    msg = str(info.value)
    assert "scrub: none needs Linux 6.12.4/6.13 or newer" in msg and "headroom: 64 needs Linux 6.14" in msg
    # undeclared, the same attributes are simply not compared: no perpetual diff
    converge(kernel, spec("stack: t\nlinks:\n  - {name: a, kind: netkit, peer: {name: b}}\n"))


def test_failure_rolls_back_completed_steps(spec: Spec) -> None:
    def fail(op: str, obj: object) -> KernelError | None:
        return KernelError("route refused (EINVAL)") if op == "add_route" else None

    kernel = FakeKernel(fail=fail)
    before = copy.deepcopy(kernel.state)
    loaded = spec(BASE)
    plan = plan_for(kernel, loaded).plan
    with pytest.raises(ApplyFailed) as info:
        apply_and_verify(kernel, loaded, plan, sleep=lambda s: None)
    assert "route refused (EINVAL)" in str(info.value)
    assert "rolled back 4 of 4" in str(info.value)
    assert kernel.state.namespaces == before.namespaces and kernel.state.links == before.links


def test_plans_are_deterministic_and_saved_plans_round_trip(spec: Spec, tmp_path: Path) -> None:
    """The one serialiser (the saved plan document) gives back the typed plan: the same records
    in every step and change, the same decisions."""
    loaded = spec(BASE)
    one = plan_for(FakeKernel(), loaded).plan
    two = plan_for(FakeKernel(), loaded).plan
    assert one == two
    write_saved(one, loaded, str(tmp_path / "plan.json"))
    back, _ = read_saved(str(tmp_path / "plan.json"))
    assert back.operations == one.operations
    assert back.changes == one.changes and back.fingerprint == one.fingerprint


def test_route_via_change_is_update(spec: Spec) -> None:
    kernel = FakeKernel()
    text = BASE.replace(
        "{namespace: p1, to: default, dev: eth0}", "{namespace: p1, to: default, via: 10.0.0.1, dev: eth0}"
    )
    converge(kernel, spec(BASE))
    plan = plan_for(kernel, spec(text)).plan
    assert actions(plan) == [("route[p1 default]", "update")]
    assert plan.changes[0].changed_paths == ("scope", "via")  # a gateway makes the scope global, as ip route


def test_pair_deletes_in_one_namespace_run_as_one_kernel_call(spec: Spec) -> None:
    kernel = FakeKernel()
    text = "stack: t\nlinks:\n" + "".join(f"  - {{name: v{i}, kind: veth, peer: {{name: p{i}}}}}\n" for i in range(5))
    converge(kernel, spec(text))
    kernel.calls.clear()
    converge(kernel, empty_spec("t"))
    assert kernel.calls.count("delete_links") == 1 and "delete_link" not in kernel.calls
    assert not kernel.state.links


def test_drift_is_told_apart_from_spec_changes(spec: Spec) -> None:
    import dataclasses

    kernel = FakeKernel()
    converge(kernel, spec(BASE))
    key = ("", "nk1")
    live = kernel.state.links[key]
    kernel.state.links[key] = dataclasses.replace(live, primary=dataclasses.replace(live.primary, policy="blackhole"))
    plan = plan_for(kernel, spec(BASE)).plan
    (drift,) = plan.drift
    assert drift.address == "link[nk1]" and drift.changed_paths == ("primary.policy",)
    assert drift.before.primary.policy == "forward" and drift.after.primary.policy == "blackhole"  # type: ignore[union-attr]
    assert actions(plan) == [("link[nk1]", "update")]  # and the plan restores the declared value
    # when the spec changed too, the difference is the spec's: no drift is claimed
    changed = spec(BASE.replace("addresses: [10.0.0.1/32]", "addresses: [10.0.0.7/32]"))
    assert plan_for(kernel, changed).plan.drift == ()
    converge(kernel, spec(BASE))
    assert plan_for(kernel, spec(BASE)).plan.drift == ()


def test_late_pairing_fills_in_documents_written_before_it_was_read(spec: Spec) -> None:
    """A snapshot or saved plan of an earlier release has no `pairing`: loading it gives the only
    value it had then, so an offline plan against it shows no change; a kernel reporting another
    pairing than declared is a replace with the kind table's reason."""
    import dataclasses

    from nkplan.core.desired import applied_digest
    from nkplan.core.records import plain
    from nkplan.core.resources import BY_NAME

    kernel = FakeKernel()
    converge(kernel, spec(BASE))
    key = ("", "nk1")
    live = kernel.state.links[key]
    assert live.pairing == "pair" and kernel.state.links[("", "ve2")].pairing is None  # netkit only
    old = plain(live)
    del old["pairing"]
    assert BY_NAME["link"].from_plain(old) == live
    # the digest marking the declaration as applied leaves the late field out while it holds the
    # default (the marks of stacks applied before stay valid); a single device's counts
    assert applied_digest(live) == applied_digest(dataclasses.replace(live, pairing=None))
    assert applied_digest(live) != applied_digest(dataclasses.replace(live, pairing="single"))
    kernel.state.links[key] = dataclasses.replace(live, pairing="single")
    (change,) = [c for c in plan_for(kernel, spec(BASE)).plan.changes if c.address == "link[nk1]"]
    assert change.action == "replace" and "pairing cannot change in place" in (change.reason or "")


SYSCTLS = BASE.replace(
    "    addresses: [10.0.0.1/32]\n",
    "    addresses: [10.0.0.1/32]\n    sysctls: {ipv4.rp_filter: 0, ipv4.forwarding: 1}\n",
)


def test_sysctls_update_in_place_and_only_declared_keys_count(spec: Spec) -> None:
    import dataclasses

    from nkplan.core.sysctls import Sysctls

    kernel = FakeKernel()
    converge(kernel, spec(SYSCTLS))
    key = ("", "nk1")
    assert dict(kernel.state.links[key].primary.sysctls) == {"ipv4.forwarding": 1, "ipv4.rp_filter": 0}
    # a key the spec does not declare (set by someone else) is not compared
    live = kernel.state.links[key]
    extra = Sysctls(sorted({**dict(live.primary.sysctls), "ipv4.proxy_arp": 1}.items()))
    kernel.state.links[key] = dataclasses.replace(live, primary=dataclasses.replace(live.primary, sysctls=extra))
    assert not plan_for(kernel, spec(SYSCTLS)).plan.has_changes
    changed = spec(SYSCTLS.replace("ipv4.rp_filter: 0", "ipv4.rp_filter: 2"))
    plan = plan_for(kernel, changed).plan
    assert actions(plan) == [("link[nk1]", "update")]
    (change,) = [c for c in plan.changes if c.address == "link[nk1]"]
    assert change.changed_paths == ("primary.sysctls",)
    converge(kernel, changed)
    got = dict(kernel.state.links[key].primary.sysctls)
    assert got == {"ipv4.forwarding": 1, "ipv4.proxy_arp": 1, "ipv4.rp_filter": 2}  # proxy_arp left alone


def test_sysctl_changed_by_hand_is_drift(spec: Spec) -> None:
    import dataclasses

    from nkplan.core.sysctls import canonical

    kernel = FakeKernel()
    converge(kernel, spec(SYSCTLS))
    key = ("", "nk1")
    live = kernel.state.links[key]
    hand = canonical({"ipv4.forwarding": 1, "ipv4.rp_filter": 2})
    kernel.state.links[key] = dataclasses.replace(live, primary=dataclasses.replace(live.primary, sysctls=hand))
    (drift,) = plan_for(kernel, spec(SYSCTLS)).plan.drift
    assert drift.address == "link[nk1]" and drift.changed_paths == ("primary.sysctls",)


def test_a_sysctl_this_kernel_lacks_is_a_plan_error_with_its_position(spec: Spec) -> None:
    kernel = FakeKernel()
    kernel.missing_sysctls = {"ipv4.forwarding"}
    with pytest.raises(PlanError) as err:
        plan_for(kernel, spec(SYSCTLS))
    (problem,) = err.value.problems
    assert problem.endswith(":7:51: this kernel (fake) has no net.ipv4.conf.DEV.forwarding"), problem
    assert kernel.calls == ["read"]  # nothing was written


NS_SYSCTLS = BASE.replace(
    "namespaces: [{name: p1}, {name: p2}]\n",
    "namespaces:\n  - {name: p1, sysctls: {net.ipv4.ip_forward: 1, net.ipv4.conf.eth0.rp_filter: 0}}\n  - {name: p2}\n"
    "host: {sysctls: {net.ipv4.conf.all.rp_filter: 0, net.ipv4.ip_local_port_range: '32768   60999'}}\n",
)


def test_namespace_and_host_sysctls(spec: Spec) -> None:
    import dataclasses

    from nkplan.core.sysctls import Sysctls

    kernel = FakeKernel()
    plan = plan_for(kernel, spec(NS_SYSCTLS)).plan
    order = [op.address for op in plan.operations]
    # a key about a device comes after the device; the host's values are an update of what it holds
    assert order.index("sysctls[p1]") > order.index("link[nk1]")
    (host,) = [c for c in plan.changes if c.address == "sysctls[host]"]
    assert host.action == "update" and dict(host.before.values) == {  # type: ignore[union-attr]
        "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.ip_local_port_range": 0
    }  # fmt: skip
    converge(kernel, spec(NS_SYSCTLS))
    assert dict(kernel.state.sysctls["p1"].values) == {"net.ipv4.conf.eth0.rp_filter": 0, "net.ipv4.ip_forward": 1}
    assert dict(kernel.state.sysctls[""].values)["net.ipv4.ip_local_port_range"] == "32768 60999"  # normalised
    assert not plan_for(kernel, spec(NS_SYSCTLS)).plan.has_changes
    # by hand in the namespace: drift (its lo carries the digest); in the host: a plain update
    held = kernel.state.sysctls["p1"]
    by_hand = Sysctls(sorted({**dict(held.values), "net.ipv4.ip_forward": 0}.items()))
    kernel.state.sysctls["p1"] = dataclasses.replace(held, values=by_hand)
    plan = plan_for(kernel, spec(NS_SYSCTLS)).plan
    assert [d.address for d in plan.drift] == ["sysctls[p1]"]
    converge(kernel, spec(NS_SYSCTLS))
    # destroy: the namespace's values go with it, the host's stay as set (nothing to restore)
    converge(kernel, spec("stack: t\n"))
    assert "p1" not in kernel.state.sysctls
    assert dict(kernel.state.sysctls[""].values)["net.ipv4.conf.all.rp_filter"] == 0


def test_a_namespace_sysctl_this_kernel_lacks_is_a_plan_error(spec: Spec) -> None:
    kernel = FakeKernel()
    kernel.missing_sysctls = {"net.ipv4.ip_forward"}
    with pytest.raises(PlanError) as err:
        plan_for(kernel, spec(NS_SYSCTLS))
    (problem,) = err.value.problems
    assert "namespace 'p1' on this kernel (fake) has no readable sysctl net.ipv4.ip_forward" in problem, problem


ROUTES = BASE + """\
  - {namespace: p1, to: 10.5.0.0/24, table: 100, type: blackhole}
  - {namespace: p1, to: 10.6.0.0/24, via: 10.0.1.1, dev: eth0, onlink: true, src: 10.0.1.2, mtu: 1400, table: main}
  - {namespace: p1, to: 10.9.9.9/32, dev: eth0, type: local}
  - {to: 10.8.0.0/24, nexthops: [{dev: nk1, weight: 3}, {via: 10.0.0.9, dev: ve2, onlink: true}]}
"""


def test_routes_in_tables_of_every_type_and_multipath(spec: Spec) -> None:
    kernel = FakeKernel()
    plan = converge(kernel, spec(ROUTES))
    order = [op.address for op in plan.operations]
    assert "route[p1 10.5.0.0/24 table 100]" in order and "route[p1 10.9.9.9/32 table local]" in order
    # multipath: after both devices; replaced with either of them
    assert order.index("route[10.8.0.0/24]") > max(order.index("link[nk1]"), order.index("link[ve2]"))
    assert not plan_for(kernel, spec(ROUTES)).plan.has_changes
    # type, gateway and nexthops change in place; a table is part of the identity
    changed = ROUTES.replace("table: 100, type: blackhole", "table: 100, type: unreachable").replace(
        "{dev: nk1, weight: 3}", "{dev: nk1, weight: 1}"
    )
    assert actions(plan_for(kernel, spec(changed)).plan) == [
        ("route[p1 10.5.0.0/24 table 100]", "update"),
        ("route[10.8.0.0/24]", "update"),
    ]
    moved = ROUTES.replace("table: 100, type: blackhole", "table: 101, type: blackhole")
    assert sorted(actions(plan_for(kernel, spec(moved)).plan)) == [
        ("route[p1 10.5.0.0/24 table 100]", "delete"),
        ("route[p1 10.5.0.0/24 table 101]", "create"),
    ]
    replaced = ROUTES.replace("{name: ve2, kind: veth,", "{name: ve2, kind: netkit,")
    assert ("route[10.8.0.0/24]", "replace") in actions(plan_for(kernel, spec(replaced)).plan)
    converge(kernel, spec(changed))
    converge(kernel, spec("stack: t\n"))
    assert kernel.state.routes == []


def test_routes_on_devices_the_plan_deletes_are_left_to_the_kernel(spec: Spec) -> None:
    """A destroy asks the kernel for no route delete (they die with their devices), a route
    whose device stays is still deleted, and a failure rolls everything back."""
    from nkplan.core.implied import implied_deletes

    kernel = FakeKernel()
    converge(kernel, spec(ROUTES))
    plan = plan_for(kernel, spec("stack: t\n")).plan
    implied = {plan.operations[i].address for i in implied_deletes(plan.operations)}
    routes = {op.address for op in plan.operations if op.type == "route"}
    # the blackhole in table 100 sends nowhere: nothing to die with but its namespace, asked for
    assert implied == routes - {"route[p1 10.5.0.0/24 table 100]"}, implied
    kernel.calls.clear()
    apply_and_verify(kernel, spec("stack: t\n"), plan, sleep=lambda s: None)
    assert [c for c in kernel.calls if c.startswith("delete_route")] == ["delete_route"]  # the blackhole only
    assert kernel.state.routes == []

    # only one route goes, its device stays: asked for
    converge(kernel, spec(ROUTES))
    fewer = spec(ROUTES.replace("  - {namespace: p1, to: 10.9.9.9/32, dev: eth0, type: local}\n", ""))
    assert implied_deletes(plan_for(kernel, fewer).plan.operations) == frozenset()

    # a failure after the route was left to the kernel puts it back with everything else
    before = copy.deepcopy(kernel.state)
    kernel.fail = lambda op, obj: KernelError("refused") if op == "delete_namespace" else None
    with pytest.raises(ApplyFailed):
        apply_and_verify(kernel, spec("stack: t\n"), plan_for(kernel, spec("stack: t\n")).plan, sleep=lambda s: None)
    kernel.fail = None
    assert sorted(kernel.state.routes, key=lambda r: r.key) == sorted(before.routes, key=lambda r: r.key)
    assert not plan_for(kernel, spec(ROUTES)).plan.has_changes


def test_a_route_is_replaced_with_the_device_holding_its_source_address(spec: Spec) -> None:
    """The kernel drops a route whose `src` address goes away, even from another device: when that
    device is replaced, so is the route."""
    ve3 = "  - {name: ve3, kind: veth, addresses: [10.0.3.1/32], peer: {name: eth9, namespace: p2}}\n"
    pair = "  - {name: ve2, kind: veth, peer: {name: eth0, namespace: p2}}\n"
    text = BASE.replace(pair, pair + ve3) + "  - {to: 10.7.0.0/24, dev: nk1, src: 10.0.3.1}\n"
    kernel = FakeKernel()
    order = [op.address for op in converge(kernel, spec(text)).operations]
    assert order.index("route[10.7.0.0/24]") > order.index("link[ve3]")
    replaced = text.replace("{name: ve3, kind: veth,", "{name: ve3, kind: netkit,")
    changes = {c.address: c for c in plan_for(kernel, spec(replaced)).plan.changes}
    assert changes["route[10.7.0.0/24]"].action == "replace", changes["route[10.7.0.0/24]"]


def test_what_lives_on_a_peer_is_made_again_when_its_primary_moves(spec: Spec) -> None:
    """A pair whose primary moves to another namespace has another address (delete + create), while
    its peer stays where it was: the peer's device is made again, so the routes and programs on it
    are replaced too (found by the random transitions: they were left as no-op and lost)."""
    obj = Path(__file__).resolve().parents[2] / "bpf" / "build" / "count.o"
    text = f"""\
stack: t
namespaces: [{{name: p1}}, {{name: p2}}]
links:
  - name: ve1
    kind: veth
    peer: {{name: eth0, namespace: p2, tcx: {{egress: [{{object: {obj}, program: count_pass}}]}}}}
routes:
  - {{namespace: p2, to: 10.7.0.0/24, dev: eth0}}
"""
    kernel = FakeKernel()
    converge(kernel, spec(text))
    moved = spec(text.replace("  - name: ve1\n", "  - name: ve1\n    namespace: p1\n"))
    changes = {c.address: c for c in plan_for(kernel, moved).plan.changes}
    assert (changes["link[ve1]"].action, changes["link[p1/ve1]"].action) == ("delete", "create")
    for addr in ("route[p2 10.7.0.0/24]", "hook[p2/eth0 egress]"):
        assert (changes[addr].action, changes[addr].reason) == ("replace", DELETED), addr
    converge(kernel, moved)
    assert not plan_for(kernel, moved).plan.has_changes


DELETED = "its device link[ve1] is deleted (and made again elsewhere)"


def test_declared_addresses_are_canonical_and_in_the_readers_order(spec: Spec) -> None:
    """desired only orders a spec's addresses: it takes them as loading made them (canonical),
    so the records must come out as sort_cidrs makes any spelling of them."""
    from nkplan.core.desired import desired, sort_cidrs
    from nkplan.core.records import KernelInfo

    written = ["fd00:0:0:0::10/64", "10.0.0.10/24", "fd00::9/64", "192.168.0.1/32", "10.0.0.9/8", "FD00::1/128"]
    link = f"{{name: ve1, kind: veth, addresses: [{', '.join(written)}], peer: {{name: ve2}}}}"
    want = desired(spec(f"stack: t\nlinks: [{link}]").spec, KernelInfo("fake", True, True, True, True))
    [(rec, _path)] = list(want.links.values())
    assert rec.primary.addresses == sort_cidrs(written)
    assert rec.primary.addresses[0] == "10.0.0.9/8" and rec.primary.addresses[-1] == "fd00::10/64"
