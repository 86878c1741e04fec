"""--metrics-file: node_exporter textfile metrics, parsed with the Prometheus text-format parser
(prometheus_client), carrying the documented names; written atomically, also on failure; the
last successful apply time survives a later plan or a failed apply writing the same file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nkplan import api, cli
from nkplan.core.records import KernelInfo, LiveState
from nkplan.documents.snapshot import SNAPSHOT_KEY, to_json
from nkplan.kernel.fake import FakeKernel
from nkplan.run import metrics
from tests.unit.test_planner import BASE

DOCUMENTED = {
    "nkplan_pending_changes",
    "nkplan_drift_objects",
    "nkplan_run_duration_seconds",
    "nkplan_run_exit_code",
    "nkplan_run_timestamp_seconds",
    "nkplan_last_apply_success_timestamp_seconds",
}


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))


def parse(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge" and family.documentation
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def snapshot(tmp_path: Path) -> str:
    path = tmp_path / "snap.json"
    live = LiveState(kernel=KernelInfo("6.12", True, True, True))
    path.write_text(json.dumps({"stack": "t", SNAPSHOT_KEY: to_json(live, {"hostname": "h"})}))
    return str(path)


def test_plan_writes_parseable_metrics_with_the_documented_names(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text(BASE)
    prom = tmp_path / "nkplan.prom"
    code = cli.main(["plan", str(spec), "--state", snapshot(tmp_path), "--metrics-file", str(prom),
                     "--detailed-exitcode"])
    assert code == 2
    got = parse(prom)
    assert set(got) == DOCUMENTED - {"nkplan_last_apply_success_timestamp_seconds"}
    pending = {dict(k)["action"]: v for k, v in got["nkplan_pending_changes"].items()}
    assert pending == {"create": 6.0, "update": 0.0, "replace": 0.0, "delete": 0.0}
    assert all(dict(k)["stack"] == "t" and dict(k)["command"] == "plan" for k in got["nkplan_pending_changes"])
    assert list(got["nkplan_run_exit_code"].values()) == [2.0]
    assert list(got["nkplan_drift_objects"].values()) == [0.0]
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []  # the temporary file was renamed


def test_a_failing_command_still_writes_its_exit_code(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("stack: t\nnamespaces: [{name: p1, bogus: 1}]\n")
    prom = tmp_path / "nkplan.prom"
    assert cli.main(["plan", str(spec), "--metrics-file", str(prom)]) == 1
    got = parse(prom)
    assert list(got["nkplan_run_exit_code"].values()) == [1.0]
    assert "nkplan_pending_changes" not in got  # no plan was made


def test_last_successful_apply_is_kept_across_runs(tmp_path: Path) -> None:
    kernel = FakeKernel()
    spec = api.load_text(BASE, "t.yaml")
    prom = tmp_path / "nkplan.prom"
    run = metrics.Run("apply")
    run.observe(api.apply(spec, on=kernel))
    metrics.write(str(prom), run, 0, now=1000.5)
    got = parse(prom)
    assert got["nkplan_last_apply_success_timestamp_seconds"] == {(("stack", "t"),): 1000.5}
    assert set(got["nkplan_pending_changes"].values()) == {0.0}  # applied and verified

    failed = metrics.Run("apply")
    failed.observe(api.plan(api.load_text(BASE.replace("p2", "p3"), "t.yaml"), on=kernel).plan)
    metrics.write(str(prom), failed, 1, now=2000.0)
    got = parse(prom)
    assert got["nkplan_last_apply_success_timestamp_seconds"] == {(("stack", "t"),): 1000.5}
    assert list(got["nkplan_run_exit_code"].values()) == [1.0]
    assert sum(got["nkplan_pending_changes"].values()) > 0  # rolled back: still pending
