"""BPF programs in the spec and the plan, through the fake kernel (the real attach is tested in
tests/host/test_kernel_programs.py and tests/netkit): validation of object files, hooks per
kind, and plans that attach, reorder, update in place, detach, and follow a replaced device."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from nkplan.api import Loaded, load_text
from nkplan.core.plan import Plan
from nkplan.core.records import ForeignProgram, HookRec, MapDef, ProgramRec
from nkplan.core.resources.hook import describe_programs
from nkplan.documents.text import render_plan
from nkplan.errors import KernelError, SpecError
from nkplan.kernel.fake import FakeKernel
from nkplan.run.applier import ApplyFailed, _batches
from nkplan.run.workflow import apply_and_verify, empty_spec, plan_for

BUILD = Path(__file__).resolve().parents[2] / "bpf" / "build"


@pytest.fixture
def objs(tmp_path: Path) -> Path:
    """The example objects, copied next to the spec (paths in a spec are relative to it)."""
    for name in ("count.o", "pod_policy.o"):
        shutil.copy(BUILD / name, tmp_path / name)
    return tmp_path


def spec_with(tmp: Path, programs: str, tcx: str = "", kind: str = "netkit", mode: str = "") -> Loaded:
    text = (
        "stack: t\nnamespaces: [{name: p1}]\nlinks:\n"
        f"  - name: nk1\n    kind: {kind}\n{mode}{programs}"
        f"    peer: {{name: eth0, namespace: p1{tcx}}}\n"
    )
    path = tmp / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


COUNT = "{object: count.o, program: count_pass}"
POLICY = "{object: pod_policy.o, program: pod_egress}"


def converge(kernel: FakeKernel, loaded: Loaded) -> Plan:
    plan = plan_for(kernel, loaded).plan
    apply_and_verify(kernel, loaded, plan, sleep=lambda s: None)
    return plan


def changes(plan: Plan) -> dict[str, tuple[str, str | None]]:
    return {c.address: (c.action, c.reason) for c in plan.changes if c.action != "no-op"}


def test_programs_attach_after_their_device_and_replan_is_empty(objs: Path) -> None:
    kernel = FakeKernel()
    loaded = spec_with(
        objs, f"    programs:\n      peer: [{POLICY}]\n      primary: [{COUNT}]\n", ", tcx: {ingress: [" + COUNT + "]}"
    )
    plan = converge(kernel, loaded)
    order = [op.address for op in plan.operations]
    assert order.index("link[nk1]") < order.index("hook[nk1 primary]")
    assert {"hook[nk1 peer]", "hook[nk1 primary]", "hook[p1/eth0 ingress]"} <= set(order)
    assert kernel.state.hooks[("", "nk1", "peer")].programs[0].program == "pod_egress"
    assert not plan_for(kernel, loaded).plan.has_changes


def test_reorder_update_in_place_and_detach(objs: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, spec_with(objs, f"    programs:\n      primary: [{COUNT}, {POLICY}]\n"))
    reordered = spec_with(objs, f"    programs:\n      primary: [{POLICY}, {COUNT}]\n")
    assert changes(plan_for(kernel, reordered).plan) == {
        "hook[nk1 primary]": ("update", "reorder: pod_egress, count_pass")
    }
    converge(kernel, reordered)
    with open(objs / "count.o", "ab") as fh:  # a rebuilt object: same program, new content
        fh.write(b"\0")
    changed = spec_with(objs, f"    programs:\n      primary: [{POLICY}, {COUNT}]\n")
    assert changes(plan_for(kernel, changed).plan) == {
        "hook[nk1 primary]": ("update", "update count_pass in place (object changed; maps kept: counters)")
    }
    converge(kernel, changed)
    fewer = spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n")
    assert changes(plan_for(kernel, fewer).plan) == {"hook[nk1 primary]": ("update", "detach pod_egress")}
    none = spec_with(objs, "")
    assert changes(plan_for(kernel, none).plan) == {"hook[nk1 primary]": ("delete", "not declared in the spec")}
    converge(kernel, none)
    assert not kernel.state.hooks


def test_replaced_device_takes_its_programs_along(objs: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n"))
    plan = plan_for(kernel, spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n", mode="    mode: l2\n")).plan
    assert changes(plan)["hook[nk1 primary]"] == ("replace", "its device link[nk1] is replaced")
    ops = [(op.kind, op.address) for op in plan.operations]
    assert ops.index(("delete", "hook[nk1 primary]")) < ops.index(("delete", "link[nk1]"))
    assert ops.index(("create", "link[nk1]")) < ops.index(("create", "hook[nk1 primary]"))


def test_foreign_programs_are_a_warning_and_one_attached_since_is_drift(objs: Path) -> None:
    kernel = FakeKernel()
    loaded = spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n")
    converge(kernel, loaded)
    kernel.state.foreign_programs.append(ForeignProgram("", "nk1", "primary", 99, "theirs", 7))
    plan = plan_for(kernel, loaded).plan
    warning = "hook[nk1 primary]: program 'theirs' (id 99) was attached by someone else; nkplan leaves it alone"
    assert plan.warnings == (warning,)
    assert [(c.address, c.changed_paths, c.before_attrs and c.before_attrs.get("foreign")) for c in plan.drift] == [
        ("hook[nk1 primary]", ("foreign",), None)
    ]
    assert plan.drift[0].after_attrs is not None and plan.drift[0].after_attrs["foreign"] == ["theirs (id 99)"]
    assert changes(plan) == {
        "hook[nk1 primary]": ("update", "acknowledge theirs (id 99), attached outside nkplan (left attached)")
    }
    converge(kernel, loaded)  # acknowledged: still attached, no longer drift
    plan = plan_for(kernel, loaded).plan
    assert not plan.has_changes and not plan.drift and plan.warnings == (warning,)
    assert kernel.state.foreign_programs[0].prog_id == 99


def problems(tmp: Path, programs: str, tcx: str = "", kind: str = "netkit") -> list[str]:
    with pytest.raises(SpecError) as info:
        spec_with(tmp, programs, tcx, kind)
    return info.value.problems


def test_bad_programs_are_located(objs: Path) -> None:
    (objs / "notbpf.o").write_text("hello")
    found = problems(objs, "    programs:\n      primary: [{object: missing.o, program: x}]\n")
    assert any("spec.yaml:7:26:" in p and "object 'missing.o'" in p and "no such file" in p for p in found), found
    found = problems(objs, "    programs:\n      primary: [{object: count.o, program: nope}]\n")
    assert any("object 'count.o' has no program 'nope' (it has: count_pass)" in p for p in found), found
    found = problems(objs, "    programs:\n      primary: [{object: notbpf.o, program: x}]\n")
    assert any("not an ELF object file" in p for p in found), found
    found = problems(objs, f"    programs:\n      primary: [{COUNT}]\n", kind="veth")
    assert any("'programs' attaches to netkit hooks; 'nk1' is a veth pair" in p for p in found), found
    found = problems(objs, f"    programs:\n      primary: [{COUNT}, {COUNT}]\n")
    assert any("program 'count_pass' is listed twice on hook 'primary'" in p for p in found), found
    found = problems(objs, "", ", tcx: {sideways: [" + COUNT + "]}")
    assert any("unknown field 'sideways'" in p for p in found), found
    many = ", ".join("{object: count.o, program: count_pass}" for _ in range(64))
    found = problems(objs, f"    programs:\n      primary: [{many}]\n")
    assert any("64 programs on hook 'primary'; the kernel runs at most 63" in p for p in found), found


def test_tcx_on_a_veth_end_is_fine(objs: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, spec_with(objs, "", ", tcx: {ingress: [" + COUNT + "]}", kind="veth"))
    assert ("p1", "eth0", "ingress") in kernel.state.hooks
    text = render_plan(plan_for(kernel, spec_with(objs, "", ", tcx: {egress: [" + COUNT + "]}", kind="veth")).plan)
    assert "- hook[p1/eth0 ingress]" in text and "+ hook[p1/eth0 egress]" in text


def test_drift_ignores_program_bookkeeping(objs: Path) -> None:
    kernel = FakeKernel()
    loaded = spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n")
    converge(kernel, loaded)
    hook = kernel.state.hooks[("", "nk1", "primary")]
    ids = tuple(dataclasses.replace(p, prog_id=5, tag="ab", link_id=6, object="") for p in hook.programs)
    kernel.state.hooks[("", "nk1", "primary")] = dataclasses.replace(hook, programs=ids)
    assert not plan_for(kernel, loaded).plan.has_changes


def test_an_update_says_which_maps_carry_over() -> None:
    """Same name and definition: kept; redefined or new: starting empty; unknown on either side
    (a snapshot, or a program without maps): nothing said."""
    counters = MapDef("counters", 2, 4, 16, 1, 0)
    seen = MapDef("seen", 1, 4, 8, 1024, 0)

    def hook(digest: str, *maps: MapDef) -> HookRec:
        return HookRec("", "nk1", "primary", (ProgramRec("count_pass", digest, maps=maps),), "s")

    said = describe_programs(hook("a", counters), hook("b", counters, seen))
    assert said == "update count_pass in place (object changed; maps kept: counters; maps starting empty: seen)"
    wider = dataclasses.replace(counters, max_entries=2)
    said = describe_programs(hook("a", counters, seen), hook("b", wider))
    assert said == "update count_pass in place (object changed; maps starting empty: counters)"
    assert describe_programs(hook("a"), hook("b", counters)) == "update count_pass in place (object changed)"
    dup = describe_programs(hook("a", counters, counters), hook("b", counters))  # ambiguous names: not reused
    assert dup == "update count_pass in place (object changed; maps starting empty: counters)"


def test_a_snapshot_carries_the_programs(objs: Path) -> None:
    """`plan --state` against a snapshot plans programs as against the kernel it was taken from."""
    import json

    from nkplan.documents import snapshot

    kernel = FakeKernel()
    loaded = spec_with(objs, f"    programs:\n      primary: [{COUNT}, {POLICY}]\n")
    converge(kernel, loaded)
    kernel.state.foreign_programs.append(ForeignProgram("", "nk1", "primary", 77, "theirs", 78))
    converge(kernel, loaded)  # acknowledged
    host = {"hostname": "h", "machine_id": "0" * 32, "kernel": "6.12.0"}
    state, _ = snapshot.from_json(json.loads(json.dumps(snapshot.to_json(kernel.read(probe_netkit=True), host))))
    assert state.hooks == kernel.state.hooks and state.foreign_programs == kernel.state.foreign_programs
    maps = [[p.maps for p in h.programs] for h in state.hooks.values()]  # not compared by ==: check them
    assert maps == [[p.maps for p in h.programs] for h in kernel.state.hooks.values()] and maps[0][0], maps
    assert not plan_for(None, loaded, live=state, source="snapshot", host=host).plan.has_changes
    reordered = spec_with(objs, f"    programs:\n      primary: [{POLICY}, {COUNT}]\n")
    offline = plan_for(None, reordered, live=state, source="snapshot", host=host).plan
    assert offline.changes == plan_for(kernel, reordered).plan.changes


def test_object_paths_stay_inside_the_spec_or_working_directory(
    objs: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spec may not make nkplan read files elsewhere (a pull request planned in CI): an object
    outside the spec's directory and the working directory, or a symbolic link leading out, is a
    located error naming the path; NKPLAN_ALLOW_PATHS allows more directories."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(BUILD / "count.o", elsewhere / "count.o")
    (objs / "link.o").symlink_to(elsewhere / "count.o")
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    monkeypatch.delenv("NKPLAN_ALLOW_PATHS", raising=False)
    for obj in (str(elsewhere / "count.o"), "link.o", "../" + elsewhere.name + "/count.o"):
        found = problems(objs, f"    programs:\n      primary: [{{object: {obj}, program: count_pass}}]\n")
        assert any(
            "spec.yaml:7:26:" in p and f"object {obj!r}" in p and "leads outside the spec's directory" in p
            for p in found
        ), found
    monkeypatch.setenv("NKPLAN_ALLOW_PATHS", str(elsewhere))
    spec_with(objs, "    programs:\n      primary: [{object: link.o, program: count_pass}]\n")  # allowed now
    monkeypatch.chdir(elsewhere.parent)  # the working directory's tree is allowed too
    monkeypatch.delenv("NKPLAN_ALLOW_PATHS")
    spec_with(objs, f"    programs:\n      primary: [{{object: {elsewhere / 'count.o'}, program: count_pass}}]\n")


def test_a_destroy_deletes_its_hooks_as_one_batch_all_or_nothing(objs: Path) -> None:
    """Consecutive hook deletes reach the kernel as one delete_many (the real kernel then detaches
    every program before it removes any pin); a refusal at any hook leaves every hook in place."""
    refusing = False

    def refuse_peer(op: str, obj: object) -> Exception | None:  # the second hook of the batch
        if refusing and op == "set_programs" and isinstance(obj, HookRec) and obj.hook == "peer":
            return KernelError("refused")
        return None

    kernel = FakeKernel(fail=refuse_peer)
    converge(kernel, spec_with(objs, f"    programs:\n      primary: [{COUNT}]\n      peer: [{POLICY}]\n"))
    empty = empty_spec("t")
    plan = plan_for(kernel, empty).plan
    hooks = [[op.address for op in b] for b in _batches(plan.operations) if b[0].type == "hook"]
    assert hooks == [["hook[nk1 primary]", "hook[nk1 peer]"]]
    refusing = True
    with pytest.raises(ApplyFailed):
        apply_and_verify(kernel, empty, plan, sleep=lambda s: None)
    assert set(kernel.state.hooks) == {("", "nk1", "primary"), ("", "nk1", "peer")}
    refusing = False
    converge(kernel, empty)
    assert not kernel.state.hooks and not kernel.state.links
