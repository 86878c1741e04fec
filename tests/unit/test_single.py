"""netkit single-device mode (pairing: single, Linux 7.1+) through the fake kernel: the spec's
rules with their positions, plans that create, update in place, replace and delete a device
without a peer, the capability error on a kernel without the mode (nothing made), `show`,
snapshots, and BPF (tcx yes, netkit hooks no). The real kernel: tests/netkit."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from nkplan.api import Loaded, load_text
from nkplan.documents import snapshot
from nkplan.documents.json_plan import plan_schema, render_json
from nkplan.documents.show import stack_document, to_yaml
from nkplan.documents.text import render_plan
from nkplan.errors import PlanError, SpecError
from nkplan.kernel.fake import FakeKernel
from nkplan.run.workflow import empty_spec, plan_for
from tests.unit.test_planner import actions, converge

Spec = Callable[[str], Loaded]

SINGLE = """\
stack: t
namespaces: [{name: p1}]
links:
  - name: nks
    namespace: p1
    kind: netkit
    pairing: single
    mtu: 9000
    addresses: [10.0.0.1/24]
routes:
  - {namespace: p1, to: 10.1.0.0/16, dev: nks}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_text(text, "t.yaml")
    return err.value.problems


@pytest.mark.parametrize(
    "link,expected",
    [
        (
            "{name: a, kind: veth}",
            "t.yaml:2:9: links[0].peer: required field 'peer' is missing: a veth device is one end of a pair",
        ),
        (
            "{name: a, kind: netkit}",
            "t.yaml:2:9: links[0].peer: required field 'peer' is missing: a netkit pair has two ends "
            "(for a netkit device without a peer, write 'pairing: single')",
        ),
        (
            "{name: a, kind: netkit, pairing: single, peer: {name: b}}",
            "t.yaml:2:56: links[0].peer: 'a' is a single netkit device (pairing: single), which has no peer; "
            "remove 'peer:' or write 'pairing: pair'",
        ),
        (
            "{name: a, kind: netkit, pairing: single, policy: blackhole}",
            "t.yaml:2:58: links[0].policy: a single netkit device always forwards when no program runs; "
            "the kernel refuses policy: blackhole for 'a' (pairing: single)",
        ),
        (
            "{name: a, kind: netkit, pairing: single, scrub: none}",
            "t.yaml:2:57: links[0].scrub: the kernel takes no scrub setting for a single netkit device "
            "('a' has pairing: single)",
        ),
        (
            "{name: a, kind: netkit, pairing: single, programs: {primary: []}}",
            "t.yaml:2:60: links[0].programs: a single netkit device has no netkit hooks",
        ),
        (
            "{name: a, kind: veth, pairing: single, peer: {name: b}}",
            "t.yaml:2:40: links[0].pairing: 'pairing' is a netkit setting; 'a' is a veth pair",
        ),
        (
            "{name: a, kind: netkit, pairing: triple}",
            "t.yaml:2:42: links[0].pairing: Input should be 'pair' or 'single' (got 'triple')",
        ),
    ],
)
def test_spec_rules_are_located(link: str, expected: str) -> None:
    found = problems(f"stack: s\nlinks: [{link}]\n")
    assert any(p.startswith(expected) for p in found), found


def test_single_device_is_planned_made_and_kept(spec: Spec) -> None:
    kernel = FakeKernel()
    loaded = spec(SINGLE)
    plan = converge(kernel, loaded)
    assert actions(plan) == [
        ("namespace[p1]", "create"),
        ("link[p1/nks]", "create"),
        ("route[p1 10.1.0.0/16]", "create"),
    ]
    text = render_plan(plan)
    assert re.search(r'\n +pairing += "single"\n', text) and "peer" not in text
    jsonschema.validate(json.loads(render_json(plan)), plan_schema())
    live = kernel.state.links[("p1", "nks")]
    assert live.peer is None and live.pairing == "single" and live.primary.scrub is None
    assert ("p1", "nks") in kernel.state.devices and len([d for d in kernel.state.devices if d[0] == "p1"]) == 2  # + lo
    assert not plan_for(kernel, loaded).plan.has_changes
    # in place: MTU, addresses, up
    changed = spec(SINGLE.replace("mtu: 9000", "mtu: 1500\n    up: false").replace("10.0.0.1/24", "10.0.0.2/24"))
    plan = plan_for(kernel, changed).plan
    assert actions(plan) == [("link[p1/nks]", "update")]
    (change,) = [c for c in plan.changes if c.address == "link[p1/nks]"]
    assert set(change.changed_paths) == {"primary.mtu", "primary.up", "primary.addresses"}
    converge(kernel, changed)
    # gone when no longer declared (the route on it first)
    plan = converge(kernel, empty_spec("t"))
    assert actions(plan) == [
        ("route[p1 10.1.0.0/16]", "delete"),
        ("link[p1/nks]", "delete"),
        ("namespace[p1]", "delete"),
    ]
    assert kernel.state.links == {}


def test_pair_and_single_replace_each_other(spec: Spec) -> None:
    kernel = FakeKernel()
    paired = SINGLE.replace("    pairing: single\n", "    peer: {name: eth0}\n")
    converge(kernel, spec(paired))
    assert kernel.state.links[("p1", "nks")].peer is not None
    plan = plan_for(kernel, spec(SINGLE)).plan
    (change,) = [c for c in plan.changes if c.address == "link[p1/nks]"]
    assert change.action == "replace" and change.reason == "pairing cannot change in place"
    assert change.replace_paths == ("pairing",)
    assert "-/+ link[p1/nks]  (pairing cannot change in place)" in render_plan(plan)
    converge(kernel, spec(SINGLE))
    assert kernel.state.links[("p1", "nks")].peer is None
    assert ("p1", "eth0") not in kernel.state.devices  # the old peer went with its pair
    converge(kernel, spec(paired))  # and back
    assert kernel.state.links[("p1", "nks")].pairing == "pair"


def test_a_kernel_without_single_mode_is_a_capability_error_and_nothing_is_made(spec: Spec) -> None:
    """Linux before 7.1 ignores IFLA_NETKIT_PAIRING and would make a pair: refused at plan time,
    with the position and the kernel's release, before any change."""
    kernel = FakeKernel(single=False)
    with pytest.raises(PlanError) as err:
        plan_for(kernel, spec(SINGLE))
    assert err.value.problems == [
        "t.yaml:7:14: pairing: single (a netkit device without a peer) needs Linux 7.1 or "
        "newer; this kernel (fake) would silently create a pair instead"
    ]
    assert kernel.calls == ["read"] and kernel.state.links == {}
    # the fake's kernel half refuses too (as nkplan's read-back does on such a kernel)
    single = load_text(SINGLE, "t.yaml")
    with pytest.raises(PlanError):
        converge(FakeKernel(single=False), single)


def test_show_and_snapshot_round_trip(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(SINGLE))
    doc = stack_document(kernel.read(), "t")
    (link,) = doc["links"]
    assert link["pairing"] == "single" and "peer" not in link and "policy" not in link and "scrub" not in link
    again = load_text(to_yaml(doc), "shown.yaml")
    assert not plan_for(kernel, again).plan.has_changes
    host = {"hostname": "h", "machine_id": "m", "kernel": "fake"}
    state, _ = snapshot.from_json(json.loads(json.dumps(snapshot.to_json(kernel.read(probe_netkit=True), host))))
    assert state.links == kernel.state.links and state.kernel.netkit_single is True
    assert not plan_for(None, again, live=state, source="snapshot", host=host).plan.has_changes


def test_tcx_runs_on_a_single_device(tmp_path: Path) -> None:
    """The kernel refuses its netkit hooks (validation says so, above) but tcx works on it."""
    shutil.copy(Path(__file__).resolve().parents[2] / "bpf" / "build" / "count.o", tmp_path / "count.o")
    text = SINGLE.replace(
        "    mtu: 9000\n", "    mtu: 9000\n    tcx: {ingress: [{object: count.o, program: count_pass}]}\n"
    )
    (tmp_path / "s.yaml").write_text(text)
    kernel = FakeKernel()
    converge(kernel, load_text(text, str(tmp_path / "s.yaml")))
    assert [p.program for p in kernel.state.hooks[("p1", "nks", "ingress")].programs] == ["count_pass"]


def test_a_hand_made_single_device_is_shown_and_adopted(spec: Spec) -> None:
    """`show --all` lists an unowned single device (made with `ip link add … type netkit single`);
    declaring it is refused unless adopted, and adopting it changes nothing but the mark."""
    import dataclasses

    kernel = FakeKernel()
    converge(kernel, spec(SINGLE))
    for key, link in list(kernel.state.links.items()):
        kernel.state.links[key] = dataclasses.replace(link, owner=None, applied=None)
    kernel.state.devices = {k: dataclasses.replace(d, owner=None, role=None) for k, d in kernel.state.devices.items()}
    kernel.state.namespaces = {n: dataclasses.replace(r, owner=None) for n, r in kernel.state.namespaces.items()}
    doc = stack_document(kernel.read(), "t", unowned=True)
    assert [(link["name"], link["pairing"]) for link in doc["links"]] == [("nks", "single")]
    with pytest.raises(PlanError) as err:
        plan_for(kernel, spec(SINGLE))
    assert any(p.startswith("t.yaml:4:11: device 'nks' in p1 already exists") for p in err.value.problems)
    plan = converge(kernel, spec(SINGLE), adopt=True)
    assert ("link[p1/nks]", "update") in actions(plan) and "create" not in {a for _, a in actions(plan)}
    assert kernel.state.links[("p1", "nks")].owner == "t"
