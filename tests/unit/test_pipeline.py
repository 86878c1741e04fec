"""Pipeline outputs through the fake kernel: golden text and JSON plans over a set of cases,
every JSON plan valid against the published schema, saved plans sealed and checked for staleness,
snapshots, the spec schema. Regenerate golden files with NKPLAN_UPDATE_GOLDEN=1."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from nkplan.api import Loaded, load_file, load_text
from nkplan.core.plan import Plan
from nkplan.documents import snapshot
from nkplan.documents.json_plan import plan_schema, render_json
from nkplan.documents.savedplan import check_fresh, read_saved, write_saved
from nkplan.documents.text import render_plan
from nkplan.errors import PlanFileError, StalePlanError
from nkplan.kernel.fake import FakeKernel
from nkplan.run.workflow import apply_and_verify, plan_for
from nkplan.spec.schema import spec_schema
from tests.unit.test_planner import BASE

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
HOST = {"hostname": "testhost", "machine_id": "0123456789abcdef", "kernel": "fake"}
Spec = Callable[[str], Loaded]


def planned(kernel: FakeKernel, loaded: Loaded) -> Plan:
    return plan_for(kernel, loaded, host=HOST).plan


def converge(kernel: FakeKernel, loaded: Loaded) -> None:
    apply_and_verify(kernel, loaded, planned(kernel, loaded), sleep=lambda s: None)


def _cases() -> dict[str, Callable[[Spec], Plan]]:
    def create(spec: Spec) -> Plan:
        return planned(FakeKernel(), spec(BASE))

    def after_base(text: str) -> Callable[[Spec], Plan]:
        def case(spec: Spec) -> Plan:
            kernel = FakeKernel()
            converge(kernel, spec(BASE))
            return planned(kernel, spec(text))

        return case

    def drift(spec: Spec) -> Plan:
        kernel = FakeKernel()
        converge(kernel, spec(BASE))
        live = kernel.state.links[("", "nk1")]
        kernel.state.links[("", "nk1")] = dataclasses.replace(live, peer=dataclasses.replace(live.peer, mtu=1280))
        return planned(kernel, spec(BASE))

    return {
        "create": create,
        "update": after_base(BASE.replace("kind: netkit\n", "kind: netkit\n    policy: blackhole\n")),
        "replace": after_base(BASE.replace("kind: netkit\n", "kind: netkit\n    mode: l2\n")),
        "delete": after_base(
            "stack: t\nnamespaces: [{name: p2}]\nlinks:\n"
            "  - {name: ve2, kind: veth, peer: {name: eth0, namespace: p2}}\n"
        ),  # fmt: skip
        "drift": drift,
        "no-changes": after_base(BASE),
    }


CASES = _cases()


def golden(path: Path, text: str) -> None:
    if os.environ.get("NKPLAN_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with NKPLAN_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs; if intended, regenerate with NKPLAN_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_text_golden(case: str, spec: Spec) -> None:
    golden(GOLDEN / "text" / f"{case}.txt", render_plan(CASES[case](spec)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_json_golden_and_valid_against_schema(case: str, spec: Spec) -> None:
    text = render_json(CASES[case](spec))
    golden(GOLDEN / "json" / f"{case}.json", text)
    jsonschema.validate(json.loads(text), plan_schema())


def test_json_actions_are_terraform_like(spec: Spec) -> None:
    doc = json.loads(render_json(CASES["replace"](spec)))
    link = next(rc for rc in doc["resource_changes"] if rc["address"] == "link[nk1]")
    assert link["change"]["actions"] == ["delete", "create"]
    assert link["change"]["replace_paths"] == [["mode"]]
    assert link["action_reason"] == "replace_because_cannot_update"
    assert doc["summary"] == {"add": 3, "change": 0, "destroy": 3, "replace": 3, "unchanged": 3}
    drift = json.loads(render_json(CASES["drift"](spec)))["resource_drift"]
    assert drift[0]["action_reason"] == "changed_outside_nkplan" and drift[0]["change"]["changed_paths"] == ["peer.mtu"]


def test_empty_state_has_a_fingerprint(spec: Spec) -> None:
    plan = planned(FakeKernel(), spec("stack: t\n"))
    assert plan.fingerprint.startswith("sha256:") and not plan.has_changes


def test_published_schemas_are_current() -> None:
    assert json.loads((ROOT / "schema" / "plan.schema.json").read_text()) == plan_schema()
    assert json.loads((ROOT / "schema" / "spec.schema.json").read_text()) == spec_schema()


def test_spec_schema_accepts_the_examples() -> None:
    from ruamel.yaml import YAML

    for path in sorted((ROOT / "examples").glob("*.yaml")):
        assert "yaml-language-server: $schema=" in path.read_text().splitlines()[0], path
        jsonschema.validate(YAML(typ="safe").load(path.read_text()), spec_schema())
        load_file(str(path))


def saved(tmp_path: Path, spec: Spec) -> tuple[FakeKernel, Loaded, str]:
    kernel = FakeKernel()
    loaded = spec(BASE)
    path = str(tmp_path / "plan.json")
    write_saved(planned(kernel, loaded), loaded, path)
    return kernel, loaded, path


def test_saved_plan_round_trips(tmp_path: Path, spec: Spec) -> None:
    kernel, loaded, path = saved(tmp_path, spec)
    plan, again = read_saved(path)
    original = planned(kernel, loaded)
    assert plan.operations == original.operations and plan.changes == original.changes
    assert again.text == loaded.text and plan.meta["fingerprint"] == original.fingerprint
    jsonschema.validate(json.loads(Path(path).read_text()), plan_schema())
    check_fresh(plan, planned(kernel, again), HOST)  # same state: fine


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda t: t.replace('"pod', '"pad').replace('"nk1"', '"nk9"'), "was modified after it was written"),
        (lambda t: t[: len(t) // 2], "not a complete JSON plan (truncated?)"),
        (lambda t: t.replace('"checksum"', '"checksun"'), "not a saved nkplan plan"),
    ],
)
def test_damaged_saved_plan_is_refused(tmp_path: Path, spec: Spec, damage: Callable[[str], str], message: str) -> None:
    _, _, path = saved(tmp_path, spec)
    Path(path).write_text(damage(Path(path).read_text()))
    with pytest.raises(PlanFileError, match=re.escape(message)):
        read_saved(path)


def test_stale_saved_plan_names_what_changed(tmp_path: Path, spec: Spec) -> None:
    kernel, loaded, path = saved(tmp_path, spec)
    plan, _ = read_saved(path)
    kernel.create_namespace("p1", "t")  # someone made one of the namespaces meanwhile
    with pytest.raises(StalePlanError, match=r"namespace\[p1\] now exists"):
        check_fresh(plan, planned(kernel, loaded), HOST)
    with pytest.raises(StalePlanError, match="this plan was made on host 'testhost'"):
        check_fresh(plan, plan, {**HOST, "machine_id": "other", "hostname": "elsewhere"})


def test_snapshot_round_trip_plans_the_same(spec: Spec) -> None:
    kernel = FakeKernel()
    converge(kernel, spec(BASE))
    live = kernel.read(probe_netkit=True)
    state, host = snapshot.from_json(json.loads(json.dumps(snapshot.to_json(live, HOST))))
    changed = spec(BASE.replace("kind: netkit\n", "kind: netkit\n    mode: l2\n"))
    offline = plan_for(None, changed, live=state, source="snapshot", host=host).plan
    assert offline.changes == planned(kernel, changed).changes
    assert "planned against a snapshot of testhost" in render_plan(offline)
    # on the host the snapshot was taken on, holding what it held: it applies
    check_fresh(
        dataclasses.replace(offline, meta={**offline.meta, "fingerprint": offline.fingerprint}),
        planned(kernel, changed),
        HOST,
    )
    kernel.create_namespace("px", "t")
    with pytest.raises(StalePlanError, match=r"differs from the snapshot the plan was made against: namespace\[px\]"):
        check_fresh(
            dataclasses.replace(offline, meta={**offline.meta, "fingerprint": offline.fingerprint}),
            planned(kernel, changed),
            HOST,
        )
    with pytest.raises(StalePlanError, match="this plan was made on host 'testhost'"):
        check_fresh(offline, offline, {**HOST, "machine_id": "other"})
    # a clone sharing the machine-id but not the name (fleet plans are copied to hosts by name)
    with pytest.raises(StalePlanError, match="made against a snapshot of host 'testhost'; this is 'elsewhere'"):
        check_fresh(offline, offline, {**HOST, "hostname": "elsewhere"})


def test_x_keys_are_ignored_by_the_loader() -> None:
    loaded = load_text("stack: s\nx-nkplan-snapshot: {anything: 1}\n", "s.yaml")
    assert loaded.spec.stack == "s"


def test_every_exit_code_is_documented() -> None:
    out = subprocess.run([sys.executable, "-m", "nkplan.cli", "--help"], capture_output=True, text=True).stdout
    readme = (ROOT / "README.md").read_text()
    for code in ("0", "1", "2", "3", "4", "130"):
        assert f"\n  {code} " in out, f"exit code {code} missing from --help"
        assert f"| {code} |" in readme, f"exit code {code} missing from README"


def test_truncated_saved_plan_is_recognised_as_a_plan(tmp_path: Path, spec: Spec) -> None:
    from nkplan.documents.savedplan import is_saved_plan

    _, _, path = saved(tmp_path, spec)
    text = Path(path).read_text()
    Path(path).write_text(text[: len(text) // 3])
    assert is_saved_plan(path)
    proc = subprocess.run([sys.executable, "-m", "nkplan.cli", "apply", path], capture_output=True, text=True)
    assert proc.returncode == 1 and "not a complete JSON plan (truncated?)" in proc.stderr, proc.stderr
    assert not is_saved_plan(str(ROOT / "examples" / "demo.yaml"))


def test_plain_is_asdict_through_json() -> None:
    """state.plain (the fast path every plan uses) gives exactly what asdict + a JSON round trip gives,
    except that an end's sysctls (sorted pairs in the record) are a mapping in documents."""
    import dataclasses

    from nkplan.core.records import EndRec, HookRec, LinkRec, MapDef, ProgramRec, RouteRec, plain
    from nkplan.core.sysctls import canonical

    maps = (MapDef("counters", 2, 4, 16, 1, 0),)
    records = [
        LinkRec(
            "netkit",
            EndRec("", "nk1", addresses=("10.0.0.1/32",), sysctls=canonical({"ipv4.rp_filter": 0, "ipv4.tag": 1})),
            EndRec("p1", "eth0"),
            owner="s",
        ),
        HookRec("p1", "eth0", "ingress", (ProgramRec("count_pass", "ab" * 8, True, "/x.o", 3, "t", 4, maps),), "s"),
        RouteRec("p1", "0.0.0.0/0", None, "eth0", 0, "s"),
    ]
    for rec in records:
        expected = json.loads(json.dumps(dataclasses.asdict(rec)))
        for side in ("primary", "peer"):
            if side in expected:
                expected[side]["sysctls"] = dict(expected[side]["sysctls"])
        assert plain(rec) == expected, rec
    assert plain(records[0])["primary"]["sysctls"] == {"ipv4.rp_filter": 0, "ipv4.tag": 1}
