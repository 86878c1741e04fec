"""`globals:` on program entries through the fake kernel: validation against the object's BTF
with file:line:col, a changed value as an update in place that says which globals change, and a
device reference that follows a replaced device (the real kernel: tests/host/test_bpf_values.py)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from nkplan.api import Loaded, load_text
from nkplan.core.records import GlobalRec, ProgramRec, SectionRec
from nkplan.core.resources.programvalues import what_changed
from nkplan.errors import SpecError
from nkplan.kernel.fake import FakeKernel
from nkplan.run.workflow import plan_for
from nkplan.spec.globals import instance_digest
from tests.unit.test_programs import changes, converge

BUILD = Path(__file__).resolve().parents[2] / "bpf" / "build"


@pytest.fixture
def objs(tmp_path: Path) -> Path:
    shutil.copy(BUILD / "redirect.o", tmp_path / "redirect.o")
    return tmp_path


def spec(tmp: Path, globals_: str, mode: str = "l3") -> Loaded:
    text = (
        "stack: t\nnamespaces: [{name: p1}, {name: p2}]\nlinks:\n"
        "  - name: ve1\n    kind: veth\n    peer: {name: eth0, namespace: p1}\n"
        "    tcx:\n      ingress:\n        - object: redirect.o\n          program: redirect_to\n"
        f"          globals: {globals_}\n"
        f"  - name: nk2\n    kind: netkit\n    mode: {mode}\n    peer: {{name: eth0, namespace: p2}}\n"
    )
    path = tmp / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


def test_globals_are_checked_against_the_objects_btf(objs: Path) -> None:
    with pytest.raises(SpecError) as info:
        spec(objs, "{target_ifindex: {ifindex: nowhere}, use_peer: 2, nope: 1}")
    found = info.value.problems
    assert any(
        "spec.yaml:11:47: links[0].tcx.ingress[0].globals.target_ifindex.ifindex: 'nowhere' is not a device" in p
        for p in found
    ), found
    assert any("globals.use_peer: 2 is not a boolean (_Bool takes true or false)" in p for p in found), found
    assert any("globals.nope: the object has no global variable 'nope' (it has: target_ifindex, use_peer)" in p
               for p in found), found  # fmt: skip
    with pytest.raises(SpecError, match="'eth0' is declared in more than one namespace: add namespace: NS"):
        spec(objs, "{target_ifindex: {ifindex: eth0}}")


def test_a_changed_global_is_an_update_in_place(objs: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(objs, "{target_ifindex: 3, use_peer: true}"))
    assert not plan_for(kernel, spec(objs, "{target_ifindex: 3, use_peer: true}")).plan.has_changes
    plan = plan_for(kernel, spec(objs, "{target_ifindex: 3, use_peer: false}")).plan
    action, reason = changes(plan)["hook[ve1 ingress]"]
    assert action == "update" and reason is not None and "update redirect_to in place (globals changed:" in reason
    converge(kernel, spec(objs, "{target_ifindex: 3, use_peer: false}"))
    assert not plan_for(kernel, spec(objs, "{target_ifindex: 3, use_peer: false}")).plan.has_changes


def test_a_reference_follows_a_replaced_device(objs: Path) -> None:
    kernel = FakeKernel()
    ref = "{target_ifindex: {ifindex: nk2}, use_peer: true}"
    converge(kernel, spec(objs, ref))
    first = kernel.state.hooks[("", "ve1", "ingress")].programs[0].digest
    assert not plan_for(kernel, spec(objs, ref)).plan.has_changes
    plan = plan_for(kernel, spec(objs, ref, mode="l2")).plan
    assert changes(plan)["hook[ve1 ingress]"] == ("update", "ifindex of nk2 changes: device replaced")
    ops = [(op.kind, op.address) for op in plan.operations]
    assert ops.index(("create", "link[nk2]")) < ops.index(("update", "hook[ve1 ingress]"))
    converge(kernel, spec(objs, ref, mode="l2"))
    assert kernel.state.hooks[("", "ve1", "ingress")].programs[0].digest != first
    assert not plan_for(kernel, spec(objs, ref, mode="l2")).plan.has_changes


def test_an_update_names_the_globals_that_change() -> None:
    g = (
        GlobalRec("target_ifindex", ".rodata", 0, "05000000", "5", "u"),
        GlobalRec("use_peer", ".rodata", 4, "01", "true", "bool"),
    )
    new = ProgramRec("redirect_to", "new", globals=g, object_digest="obj")
    running = ProgramRec("redirect_to", "old", sections=(SectionRec(".rodata", "0700000001"),))
    assert what_changed(running, new, "object changed") == "globals changed: target_ifindex: 7 → 5; object changed"
    was = (GlobalRec("target_ifindex", ".rodata", 0, "07000000", "7"), g[1])
    same_obj = ProgramRec(  # the running instance is the same object with other values
        "redirect_to", instance_digest("obj", was, lambda n, d: None), sections=(SectionRec(".rodata", "0700000001"),)
    )
    assert what_changed(same_obj, new, "object changed") == "globals changed: target_ifindex: 7 → 5"


def allow_spec(tmp: Path, entries: str, exclusive: str = "true") -> Loaded:
    shutil.copy(BUILD / "allow.o", tmp / "allow.o")
    text = (
        "stack: t\nnamespaces: [{name: p1}]\nlinks:\n"
        "  - name: ve1\n    kind: veth\n    peer:\n      name: eth0\n      namespace: p1\n"
        "      tcx:\n        egress:\n          - object: allow.o\n            program: allow_egress\n"
        f"            maps: {{allow: {{exclusive: {exclusive}, entries: {entries}}}}}\n"
    )
    path = tmp / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


WEB = "{key: {prefixlen: 24, addr: 10.0.0.0}, value: {port: 80}}"
DNS = "{key: {prefixlen: 32, addr: 10.0.1.53}, value: {port: 53}}"


def test_map_entries_plan_added_changed_and_removed(tmp_path: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, allow_spec(tmp_path, f"[{WEB}]"))
    assert not plan_for(kernel, allow_spec(tmp_path, f"[{WEB}]")).plan.has_changes
    plan = plan_for(kernel, allow_spec(tmp_path, f"[{WEB.replace('80', '443')}, {DNS}]")).plan
    assert changes(plan) == {
        "hook[p1/eth0 egress]": (
            "update",
            "map allow: ~ {prefixlen: 24, addr: 10.0.0.0}: 0x5000 → {port: 443}, "
            "+ {prefixlen: 32, addr: 10.0.1.53} → {port: 53}",
        )
    }
    converge(kernel, allow_spec(tmp_path, f"[{WEB.replace('80', '443')}, {DNS}]"))
    plan = plan_for(kernel, allow_spec(tmp_path, f"[{DNS}]")).plan
    assert changes(plan) == {"hook[p1/eth0 egress]": ("update", "map allow: - 0x180000000a000000 (0xbb01)")}
    # not exclusive: an entry the spec no longer names stays
    assert not plan_for(kernel, allow_spec(tmp_path, f"[{DNS}]", exclusive="false")).plan.has_changes


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ("[{key: {prefixlen: 24, adr: 10.0.0.0}, value: {port: 80}}]",
         "maps.allow.entries[0].key.adr: struct allow_key has no field 'adr' (it has: prefixlen, addr)"),
        ("[{key: {prefixlen: 24, addr: 10.0.0.0}, value: {port: 70000}}]",
         "maps.allow.entries[0].value.port: 70000 does not fit __u16 (0..65535)"),
        ("[{key: 3, value: {port: 1}}]",
         "maps.allow.entries[0].key: 3 is not a mapping of field names (struct allow_key)"),
        (f"[{WEB}, {WEB}]", "maps.allow.entries[1].key: key {prefixlen: 24, addr: 10.0.0.0} is declared twice"),
    ],
)  # fmt: skip
def test_bad_map_entries_are_located(tmp_path: Path, entries: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        allow_spec(tmp_path, entries)
    assert any("spec.yaml:13:" in p and words in p for p in info.value.problems), info.value.problems


def test_an_unknown_map_is_located(tmp_path: Path) -> None:
    text = allow_spec(tmp_path, "[]").text.replace("{allow:", "{alow:")
    where = r"spec.yaml:13:26: .*maps.alow: the object has no map 'alow' \(it has: allow, denied\)"
    with pytest.raises(SpecError, match=where):
        load_text(text, str(tmp_path / "spec.yaml"))


def test_a_writable_global_changed_outside_nkplan_is_drift() -> None:
    from nkplan.core.records import HookRec
    from nkplan.core.resources.hook import describe_programs
    from nkplan.core.resources.programvalues import view

    g = (
        GlobalRec("counter", ".data", 0, "0900000000000000", "9", "u"),
        GlobalRec("limit", ".rodata", 0, "01", "1", "u"),  # frozen: never drifts
    )
    want = HookRec("", "ve1", "ingress", (ProgramRec("values", "d1", globals=g, object_digest="obj"),), "t")
    same = (SectionRec(".data", "0900000000000000"), SectionRec(".rodata", "01"))
    have = HookRec("", "ve1", "ingress", (ProgramRec("values", "d1", sections=same),), "t")
    assert view(want, have) == want  # nothing drifted: equal
    changed = (SectionRec(".data", "0700000000000000"), SectionRec(".rodata", "01"))
    have = HookRec("", "ve1", "ingress", (ProgramRec("values", "d1", sections=changed),), "t")
    seen = view(want, have)
    assert seen != want and seen.programs[0].drifted == ("counter",)
    assert describe_programs(seen, want) == "set globals of values changed outside nkplan (counter: 7 → 9)"


def shared_allow_spec(tmp: Path, first: str, second: str) -> Loaded:
    """Two programs using the stack's shared map `allow`, each declaring entries of it."""
    shutil.copy(BUILD / "allow.o", tmp / "allow.o")
    prog = "          - object: allow.o\n            program: allow_egress\n"
    text = (
        "stack: t\nnamespaces: [{name: p1}]\nmaps: {allow: {like: 'allow.o:allow'}}\nlinks:\n"
        "  - name: ve1\n    kind: veth\n"
        f"    tcx:\n        egress:\n{prog}            maps: {{allow: {first}}}\n"
        "    peer:\n      name: eth0\n      namespace: p1\n"
        f"      tcx:\n        egress:\n{prog}            maps: {{allow: {second}}}\n"
    )
    path = tmp / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


def test_two_programs_declaring_a_shared_maps_entries_differently_are_refused(tmp_path: Path) -> None:
    same = f"{{exclusive: true, entries: [{WEB}]}}"
    shared_allow_spec(tmp_path, same, same)  # the same declaration twice: both write the same
    with pytest.raises(SpecError) as info:
        shared_allow_spec(tmp_path, same, f"{{entries: [{DNS}]}}")
    spec = str(tmp_path / "spec.yaml")
    assert info.value.problems == [
        f"{spec}:19:27: links[0].peer.tcx.egress[0].maps.allow: entries of the shared map 'allow' are also "
        f"declared at {spec}:11:20, differently: both programs write into the one map and would undo each "
        "other; declare its entries once (or the same in both)"
    ]


def test_the_reader_is_asked_for_the_declared_maps_only(tmp_path: Path) -> None:
    """records.BpfReads: what the reader reads of running programs' maps; none for a spec whose
    programs declare no values (a plain --programs plan reads no map contents)."""
    from nkplan.core.desired import bpf_reads

    loaded = allow_spec(tmp_path, f"[{WEB}]", exclusive="false")
    reads = bpf_reads(loaded.spec, loaded.source.filename, loaded.objects, loaded.object_maps)
    assert list(reads) == [("p1", "eth0", "egress")]
    (want,) = reads[("p1", "eth0", "egress")].values()
    assert [(m.name, m.exclusive, [e.key for e in m.entries]) for m in want.map_entries] == [
        ("allow", False, ["180000000a000000"])
    ]
    plain = load_text(loaded.text.replace(f"            maps: {{allow: {{exclusive: false, entries: [{WEB}]}}}}\n", ""),
                      loaded.source.filename)  # fmt: skip
    assert "maps:" not in plain.text
    assert bpf_reads(plain.spec, plain.source.filename, plain.objects, plain.object_maps) == {}


def test_map_entries_written_outside_nkplan_are_drift(tmp_path: Path) -> None:
    """An entry changed by hand: the drift section says which entry (now → as applied) in text,
    JSON and Markdown, and the plan writes it back."""
    import dataclasses
    import json

    from nkplan.documents.json_plan import render_json
    from nkplan.documents.markdown import render_markdown
    from nkplan.documents.text import render_plan

    kernel = FakeKernel()
    converge(kernel, allow_spec(tmp_path, f"[{WEB}]"))
    key = ("p1", "eth0", "egress")
    hook = kernel.state.hooks[key]
    (prog,) = hook.programs
    (m,) = prog.map_entries
    written = dataclasses.replace(m, entries=(dataclasses.replace(m.entries[0], value="bb01"),))
    kernel.state.hooks[key] = dataclasses.replace(hook, programs=(dataclasses.replace(prog, map_entries=(written,)),))
    plan = plan_for(kernel, allow_spec(tmp_path, f"[{WEB}]")).plan
    words = "map allow: ~ {prefixlen: 24, addr: 10.0.0.0}: 0xbb01 → {port: 80} (now → as applied)"
    assert [(c.address, c.reason) for c in plan.drift] == [("hook[p1/eth0 egress]", f"changed outside nkplan: {words}")]
    text = render_plan(plan)
    drift_part = text.split("The plan below")[0]
    assert words in drift_part and "(applied) →" not in drift_part, text  # no "X → X" program line
    (drifted,) = json.loads(render_json(plan))["resource_drift"]
    assert drifted["reason"] == f"changed outside nkplan: {words}"
    assert drifted["action_reason"] == "changed_outside_nkplan"
    assert "0xbb01" in render_markdown(plan).split("Applying this plan")[1].split("\n\n")[0]
    converge(kernel, allow_spec(tmp_path, f"[{WEB}]"))
    assert not plan_for(kernel, allow_spec(tmp_path, f"[{WEB}]")).plan.has_changes


def test_a_written_global_is_described_in_the_drift_section() -> None:
    from nkplan.core.records import HookRec
    from nkplan.core.resources.hook import HookType
    from nkplan.core.resources.programvalues import view

    g = (GlobalRec("counter", ".data", 0, "0900000000000000", "9", "u"),)
    want = HookRec("", "ve1", "ingress", (ProgramRec("values", "d1", globals=g, object_digest="obj"),), "t")
    changed = (SectionRec(".data", "0700000000000000"),)
    now = view(want, HookRec("", "ve1", "ingress", (ProgramRec("values", "d1", sections=changed),), "t"))
    assert HookType().describe_drift(want, now) == "globals of values: counter: 7 → 9 (now → as applied)"
    assert HookType().describe_drift(want, want) is None


def guard_spec(tmp: Path, pod_addr: str = "10.9.1.2/32") -> Loaded:
    """source_guard on ve1: the address of p1's eth0 and the cookie of namespace p2."""
    shutil.copy(BUILD / "source_guard.o", tmp / "source_guard.o")
    text = (
        "stack: t\nnamespaces: [{name: p1}, {name: p2}]\nlinks:\n"
        "  - name: ve1\n    kind: veth\n"
        f"    peer: {{name: eth0, namespace: p1, addresses: [{pod_addr}, 'fd00::2/64']}}\n"
        "    tcx:\n      ingress:\n        - object: source_guard.o\n          program: source_guard\n"
        "          globals: {pod_addr: {address: eth0, namespace: p1}, pod_netns_cookie: {netns_cookie: p2}}\n"
        "  - name: ve2\n    kind: veth\n    peer: {name: eth0, namespace: p2}\n"
    )
    path = tmp / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


def test_a_cookie_reference_follows_its_namespace_and_an_address_its_declaration(tmp_path: Path) -> None:
    kernel = FakeKernel()
    converge(kernel, guard_spec(tmp_path))
    first = kernel.state.hooks[("", "ve1", "ingress")].programs[0].digest
    assert not plan_for(kernel, guard_spec(tmp_path)).plan.has_changes
    # the namespace goes (outside nkplan) and comes again with another cookie: the program's
    # value is not known until it exists, so the hook is updated after it is made
    kernel.delete_namespace("p2")
    plan = plan_for(kernel, guard_spec(tmp_path)).plan
    action, reason = changes(plan)["hook[ve1 ingress]"]
    assert action == "update" and "pod_netns_cookie: ? → {netns_cookie: p2}" in str(reason), reason
    ops = [(op.kind, op.address) for op in plan.operations]
    assert ops.index(("create", "namespace[p2]")) < ops.index(("update", "hook[ve1 ingress]"))
    converge(kernel, guard_spec(tmp_path))
    second = kernel.state.hooks[("", "ve1", "ingress")].programs[0].digest
    assert second != first and not plan_for(kernel, guard_spec(tmp_path)).plan.has_changes
    # the declared address changes: so does the global that names it
    plan = plan_for(kernel, guard_spec(tmp_path, "10.9.1.3/32")).plan
    assert changes(plan)["hook[ve1 ingress]"][0] == "update"
    converge(kernel, guard_spec(tmp_path, "10.9.1.3/32"))
    assert not plan_for(kernel, guard_spec(tmp_path, "10.9.1.3/32")).plan.has_changes


def test_references_are_checked_with_their_positions(tmp_path: Path) -> None:
    shutil.copy(BUILD / "source_guard.o", tmp_path / "source_guard.o")
    text = (
        "stack: t\nnamespaces: [{name: p1}]\nlinks:\n"
        "  - name: ve1\n    kind: veth\n    peer: {name: eth0, namespace: p1, addresses: [10.9.1.2/32, 10.9.1.3/32]}\n"
        "    tcx:\n      ingress:\n        - object: source_guard.o\n          program: source_guard\n"
        "          globals: {pod_addr: {address: eth0}, pod_netns_cookie: {netns_cookie: p9}}\n"
    )
    (tmp_path / "spec.yaml").write_text(text)
    with pytest.raises(SpecError) as info:
        load_text(text, str(tmp_path / "spec.yaml"))
    found = info.value.problems
    assert any(
        "spec.yaml:11:41: links[0].tcx.ingress[0].globals.pod_addr.address: eth0 declares 2 IPv4 addresses "
        "(10.9.1.2/32, 10.9.1.3/32): __be32 takes exactly one; write it out" in p
        for p in found
    ), found
    assert any(
        "globals.pod_netns_cookie.netns_cookie: 'p9' is not a namespace this spec declares (or host)" in p
        for p in found
    ), found


def test_show_names_a_running_instance_and_writes_its_values(objs: Path) -> None:
    """documents.programexport against records made by hand (the fake kernel keeps no data
    sections): the object is found by the instance digest of the running bytes; values that are
    what FILE declares are written as FILE writes them, others decoded; a program running
    without globals is named without them; another object is not named."""
    from nkplan.core.records import DeviceInfo, HookRec, LiveState
    from nkplan.documents.programexport import SpecPrograms, declared_programs
    from nkplan.spec.btf import read_object
    from nkplan.spec.globals import resolver

    loaded = spec(objs, "{target_ifindex: {ifindex: nk2}, use_peer: true}")
    declared = declared_programs(loaded.spec, loaded.source.filename, loaded.objects, loaded.object_maps)
    ((want,),) = declared.values()
    live = LiveState(devices={("", "nk2"): DeviceInfo("", "nk2", "netkit", 7)})
    name = SpecPrograms(declared, live, resolver(loaded.spec), read_object)
    hook = HookRec("", "ve1", "ingress")

    def running(target: int, use_peer: int) -> ProgramRec:
        data = target.to_bytes(4, "little") + bytes([use_peer])
        held = tuple(
            dataclasses.replace(g, data=data[g.offset : g.offset + len(g.data) // 2].hex(), refs=())
            for g in want.rec.globals
        )
        digest = instance_digest(want.rec.object_digest, held, lambda _r: None)
        return ProgramRec("redirect_to", digest, sections=(SectionRec(".rodata", data.hex()),))

    as_declared = name(hook, running(7, 1))
    assert as_declared == {
        "object": str(objs / "redirect.o"),
        "program": "redirect_to",
        "globals": {"target_ifindex": {"ifindex": "nk2"}, "use_peer": True},
    }
    other = name(hook, running(9, 0))  # not what FILE declares: the bytes, decoded
    assert other is not None and other["globals"] == {"target_ifindex": 9, "use_peer": False}
    plain = name(hook, ProgramRec("redirect_to", want.rec.object_digest))  # loaded without globals
    assert plain == {"object": str(objs / "redirect.o"), "program": "redirect_to"}
    assert name(hook, ProgramRec("redirect_to", "f" * 16, sections=(SectionRec(".rodata", "0700000001"),))) is None
