"""Shared maps (`maps:`) through the fake kernel: planned before the programs that use them,
kept when their last user goes, deleted when no longer declared; bad definitions located."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nkplan.api import Loaded, load_text
from nkplan.core.plan import Plan
from nkplan.core.records import SharedMapRec
from nkplan.core.resources import attrs
from nkplan.errors import SpecError
from nkplan.kernel.fake import FakeKernel
from nkplan.run.workflow import apply_and_verify, plan_for

BUILD = Path(__file__).resolve().parents[2] / "bpf" / "build"
COUNT = "{object: count.o, program: count_pass}"
COUNTERS = "  counters: {type: array, key_size: 4, value_size: 16, max_entries: 1}\n"


@pytest.fixture
def objs(tmp_path: Path) -> Path:
    for name in ("count.o", "pod_policy.o"):
        shutil.copy(BUILD / name, tmp_path / name)
    return tmp_path


def spec(tmp: Path, maps: str, primary: str = COUNT, peer: str = COUNT) -> Loaded:
    text = (
        "stack: t\nnamespaces: [{name: p1}]\n"
        + (f"maps:\n{maps}" if maps else "")
        + "links:\n  - name: nk1\n    kind: netkit\n"
        f"    programs: {{primary: [{primary}], peer: [{peer}]}}\n"
        "    peer: {name: eth0, namespace: p1}\n"
    )
    path = tmp / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


def converge(kernel: FakeKernel, loaded: Loaded) -> Plan:
    plan = plan_for(kernel, loaded).plan
    apply_and_verify(kernel, loaded, plan, sleep=lambda s: None)
    assert not plan_for(kernel, loaded).plan.has_changes
    return plan


def changes(plan: Plan) -> dict[str, tuple[str, str | None]]:
    return {c.address: (c.action, c.reason) for c in plan.changes if c.action != "no-op"}


def test_a_shared_map_is_made_before_the_programs_that_use_it(objs: Path) -> None:
    kernel = FakeKernel()
    plan = converge(kernel, spec(objs, COUNTERS))
    order = [op.address for op in plan.operations]
    assert order.index("map[counters]") < order.index("hook[nk1 primary]")
    assert kernel.state.shared_maps[("t", "counters")] == SharedMapRec("counters", "array", 4, 16, 1, 0, "t")
    for hook in ("primary", "peer"):
        assert kernel.state.hooks[("", "nk1", hook)].programs[0].shared == ("counters",)
    change = next(c for c in plan.changes if c.address == "map[counters]")
    assert change.after_attrs == {
        "name": "counters", "type": "array", "key_size": 4, "value_size": 16, "max_entries": 1, "flags": 0, "owner": "t"
    }  # fmt: skip


def test_like_takes_the_definition_from_an_object(objs: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(objs, "  counters: {like: 'count.o:counters'}\n"))
    assert kernel.state.shared_maps[("t", "counters")] == SharedMapRec("counters", "array", 4, 16, 1, 0, "t")


def test_the_last_user_going_keeps_the_map_and_undeclaring_deletes_it(objs: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(objs, COUNTERS))
    policy = "{object: pod_policy.o, program: pod_egress}"
    assert "map[counters]" not in changes(plan_for(kernel, spec(objs, COUNTERS, policy, policy)).plan)
    converge(kernel, spec(objs, COUNTERS, policy, policy))
    assert ("t", "counters") in kernel.state.shared_maps
    plan = converge(kernel, spec(objs, "", policy, policy))
    assert changes(plan) == {"map[counters]": ("delete", "not declared in the spec")}
    assert not kernel.state.shared_maps


def test_undeclaring_map_and_users_deletes_the_users_first(objs: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(objs, COUNTERS))
    text = "stack: t\nnamespaces: [{name: p1}]\nlinks:\n"
    text += "  - {name: nk1, kind: netkit, peer: {name: eth0, namespace: p1}}"
    text += "\n"
    (objs / "spec.yaml").write_text(text)
    plan = converge(kernel, load_text(text, str(objs / "spec.yaml")))
    order = [(op.kind, op.address) for op in plan.operations]
    assert order.index(("delete", "hook[nk1 primary]")) < order.index(("delete", "map[counters]"))


def test_declaring_a_shared_map_loads_its_users_again(objs: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(objs, ""))
    plan = plan_for(kernel, spec(objs, COUNTERS)).plan
    assert changes(plan)["hook[nk1 primary]"] == ("update", "load count_pass again to use the shared maps: counters")
    converge(kernel, spec(objs, COUNTERS))
    # a new definition replaces the map, and the programs with it (a program keeps the map it was loaded with)
    plan = plan_for(kernel, spec(objs, "  counters: {like: 'count.o:counters'}\n")).plan
    assert not plan.has_changes


def test_undeclaring_a_used_map_updates_its_users_in_place(objs: Path) -> None:
    """Not 'replace because deleted and made again': the map is gone for good, the programs are
    loaded again with maps of their own and swapped in (no moment without a program)."""
    kernel = FakeKernel()
    converge(kernel, spec(objs, COUNTERS))
    plan = converge(kernel, spec(objs, ""))
    got = changes(plan)
    assert got["map[counters]"] == ("delete", "not declared in the spec")
    for hook in ("hook[nk1 primary]", "hook[nk1 peer]"):
        assert got[hook][0] == "update", got[hook]
        assert "shared maps: none" in (got[hook][1] or ""), got[hook]


def test_plans_without_shared_maps_read_as_before(objs: Path) -> None:
    kernel = FakeKernel()
    plan = plan_for(kernel, spec(objs, "")).plan
    hook = next(c for c in plan.changes if c.address == "hook[nk1 primary]")
    assert "shared" not in attrs(hook.after)["programs"][0]


def problems(tmp: Path, maps: str, primary: str = COUNT) -> list[str]:
    with pytest.raises(SpecError) as info:
        spec(tmp, maps, primary)
    return info.value.problems


def test_a_definition_mismatch_names_both_sides(objs: Path) -> None:
    kernel = FakeKernel()
    found = problems(objs, "  counters: {type: hash, key_size: 4, value_size: 16, max_entries: 1024}\n")
    assert len(found) == 2, found  # both programs
    assert found[0].startswith(f"{objs}/spec.yaml:8:35: links[0].programs.primary[0].object: "), found
    assert (
        "object 'count.o' defines map 'counters' as array, key_size 4, value_size 16, max_entries 1, map_flags 0, "
        f"but the shared map 'counters' declared at {objs}/spec.yaml:4:3 is hash, key_size 4, value_size 16, "
        "max_entries 1024, map_flags 0" in found[0]
    ), found
    assert kernel.calls == []  # nothing asked of a kernel


def test_bad_shared_maps_are_located(objs: Path) -> None:
    found = problems(objs, "  counters: {like: 'count.o:nosuch'}\n")
    assert any(
        "spec.yaml:4:" in p and "unknown map 'nosuch': object 'count.o' has no such map (it has: counters)" in p
        for p in found
    ), found
    found = problems(objs, "  counters: {type: array, key_size: 4}\n")
    assert any("shared map 'counters': missing value_size, max_entries" in p for p in found), found
    found = problems(objs, "  counters: {like: 'count.o:counters', type: array}\n")
    assert any("'like' or the definition" in p for p in found), found
    found = problems(objs, "  bad-name: {like: 'count.o:counters'}\n")
    assert any("shared map name 'bad-name'" in p for p in found), found
    found = problems(objs, "  counters: {type: ringbuf, key_size: 4, value_size: 4, max_entries: 1}\n")
    assert any("spec.yaml:4:" in p and "type" in p for p in found), found


def test_show_exports_them_and_destroy_deletes_them(objs: Path) -> None:
    from nkplan import api
    from nkplan.run.workflow import empty_spec

    kernel = FakeKernel()
    converge(kernel, spec(objs, COUNTERS))
    doc = api.show("t", on=kernel).document
    assert doc["maps"] == {"counters": {"type": "array", "key_size": 4, "value_size": 16, "max_entries": 1}}
    plan = plan_for(kernel, empty_spec("t")).plan
    assert changes(plan)["map[counters]"] == ("delete", "not declared in the spec")
