"""The fleet review offline (`nkplan plan SPEC --state SNAPDIR`): snapshots of several hosts (the
spec applied to the fake kernel, then edited to differ, one unreadable), one report grouped by
identical plans: text and Markdown against golden files, JSON validated by its schema; a fleet map
giving host groups their own spec; saved plans per host."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest

from nkplan.cli import main
from nkplan.documents.fleet import FleetPlan
from nkplan.documents.savedplan import read_saved
from tests.unit.test_pipeline import GOLDEN, golden

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from fleet import write_fleet  # noqa: E402


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[str, str]:
    """6 hosts of 3 pods: node-0000 has h0's MTU changed by hand, node-0001 lacks pod p1, the
    rest hold the spec; plus node-9999, whose snapshot is not JSON."""
    spec = write_fleet(tmp_path, pods=3, hosts=6, odd=1, missing=1)
    (tmp_path / "snapshots" / "node-9999.json").write_text("{not json")
    return str(spec), str(tmp_path / "snapshots")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["plan", *args])
    return code, capsys.readouterr().out


def relative(text: str, fleet: tuple[str, str]) -> str:
    return text.replace(str(Path(fleet[0]).parent), "FLEET")


def test_text_report_groups_identical_plans(fleet: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, fleet[0], "--state", fleet[1], "--detailed-exitcode")
    assert code == 1  # worst of the hosts': one could not be planned
    golden(GOLDEN / "fleet" / "report.txt", relative(out, fleet))
    assert "=== 4 hosts: No changes. ===" in out
    assert "hosts: node-0002, node-0003, node-0004, node-0005" in out
    assert "node-9999: error: " in out and "is not valid JSON" in out


def test_markdown_is_one_comment(fleet: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(capsys, fleet[0], "--state", fleet[1], "--format", "markdown")
    golden(GOLDEN / "fleet" / "report.md", relative(out, fleet))
    assert out.startswith("<!-- nkplan-fleet-plan spec=")


def test_json_carries_every_host_and_matches_its_schema(
    fleet: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = run(capsys, fleet[0], "--state", fleet[1], "--format", "json")
    doc = json.loads(out)
    jsonschema.validate(doc, FleetPlan.model_json_schema())
    assert [h["host"] for h in doc["hosts"]] == [f"node-000{i}" for i in range(6)] + ["node-9999"]
    assert [len(g["hosts"]) for g in doc["groups"]] == [4, 1, 1]
    odd = doc["hosts"][0]["plan"]
    assert [(c["address"], c["change"]["actions"]) for c in odd["resource_changes"]] == [("link[h0]", ["update"])]
    assert odd["planned_against"]["source"] == "snapshot" and doc["hosts"][6]["plan"] is None
    assert doc["exit_code"] == 1 and doc["has_errors"] and doc["has_changes"]


def test_fleet_map_and_saved_plans(fleet: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = Path(fleet[0])
    (spec.parent / "edge.yaml").write_text(spec.read_text().replace("count: 3", "count: 2"))
    fleet_map = spec.parent / "fleet.yaml"
    fleet_map.write_text("fleet:\n  node-000[01]: edge.yaml\n  node-00*: spec.yaml\n")
    (Path(fleet[1]) / "node-9999.json").unlink()
    (Path(fleet[1]) / "other.json").write_text((Path(fleet[1]) / "node-0002.json").read_text())
    out_dir = tmp_path / "plans"
    code, out = run(capsys, str(fleet_map), "--state", fleet[1], "--out", str(out_dir))
    assert code == 1 and "other: error: no pattern of the fleet map matches host 'other'" in out
    # edge.yaml has 2 pods: its hosts drop p2 (node-0001 also lacks p1, which edge does not want back)
    assert "=== 1 host: Plan: 0 to add, 1 to change, 4 to destroy. ===\nhosts: node-0000" in out, out
    assert sorted(p.name for p in out_dir.iterdir()) == [f"node-000{i}.json" for i in range(6)]
    saved, loaded = read_saved(str(out_dir / "node-0001.json"))
    assert saved.meta["source"] == "snapshot" and saved.meta["host"]["hostname"] == "node-0001"
    assert loaded.source.filename.endswith("edge.yaml")


def test_bad_fleet_inputs_are_clear_errors(
    fleet: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["plan", fleet[0], "--state", str(empty)]) == 1
    assert "no host snapshots" in capsys.readouterr().err
    bad_map = tmp_path / "map.yaml"
    bad_map.write_text("fleet: [a.yaml]\n")
    assert main(["plan", str(bad_map), "--state", fleet[1]]) == 1
    assert "a fleet map is one key, fleet:" in capsys.readouterr().err
    assert main(["plan", fleet[0], "--state", fleet[1], "--adopt"]) == 1


def test_the_example_fleet_map_plans_fresh_hosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/fleet/fleet.yaml as shipped: edge hosts get edge.yaml, node hosts pods.yaml."""
    from nkplan.documents import snapshot
    from nkplan.kernel.fake import FakeKernel

    example = Path(__file__).resolve().parents[2] / "examples" / "fleet" / "fleet.yaml"
    empty = snapshot.to_json(FakeKernel().read(probe_netkit=True), {})
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    for i, host in enumerate(("edge1", "node1", "node2")):
        doc = {**empty, "host": {"hostname": host, "machine_id": f"{i:032x}", "kernel": "7.3.4"}}
        (snaps / f"{host}.json").write_text(json.dumps({snapshot.SNAPSHOT_KEY: doc}))
    code, out = run(capsys, str(example), "--state", str(snaps), "--format", "json", "--detailed-exitcode")
    doc = json.loads(out)
    assert code == 2 and [g["hosts"] for g in doc["groups"]] == [["node1", "node2"], ["edge1"]]
    assert [h["plan"]["stack"] for h in doc["hosts"]] == ["edge", "pods", "pods"]


SYSCTL_SPEC = """\
stack: s
host: {sysctls: {net.ipv4.ip_forward: 1}}
namespaces: [{name: p1, sysctls: {net.ipv4.conf.all.rp_filter: 0}}]
links:
  - {name: v1, kind: veth, sysctls: {ipv4.forwarding: 1}, peer: {name: eth0, namespace: p1}}
"""


def test_a_snapshot_without_the_declared_sysctls_is_a_plan_error(tmp_path: Path) -> None:
    """A snapshot taken without the spec holds no sysctl values: planning them would show false
    changes (and the saved plan would be refused on its host); taken with it, it plans clean."""
    from nkplan.core.capabilities import declared_net_keys, declared_sysctls
    from nkplan.documents import snapshot
    from nkplan.errors import PlanError
    from nkplan.kernel.fake import FakeKernel
    from nkplan.run.workflow import apply_and_verify, plan_for
    from nkplan.spec.loader import load_text

    loaded = load_text(SYSCTL_SPEC, str(tmp_path / "s.yaml"))
    kernel = FakeKernel()
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan, sleep=lambda s: None)
    host = {"hostname": "h", "machine_id": "0" * 32, "kernel": "fake"}

    def offline(live: object) -> object:
        state, ident = snapshot.from_json(json.loads(json.dumps(snapshot.to_json(live, host))))  # type: ignore[arg-type]
        return plan_for(None, loaded, live=state, source="snapshot", host=ident).plan

    with pytest.raises(PlanError) as info:
        offline(kernel.read(probe_netkit=True))
    text = "\n".join(info.value.problems)
    for where in ("s.yaml:2:39: the snapshot holds no value of net.ipv4.ip_forward for the host",
                  "namespace 'p1'", "ipv4.forwarding for device 'v1'"):  # fmt: skip
        assert where in text, text
    assert "nkplan show SPEC --format json" in text
    spec = loaded.spec
    full = kernel.read(probe_netkit=True, sysctls=declared_sysctls(spec), net_keys=declared_net_keys(spec))
    assert not offline(full).has_changes  # type: ignore[attr-defined]
