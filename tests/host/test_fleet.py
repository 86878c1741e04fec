"""The fleet review from snapshots made on the host kernel: a stack applied for real, `show --format
json` taken, copied for three hosts and edited to differ (another host identity each, one with an
MTU changed), then one changed spec planned against all of them, offline, as an unprivileged user:
the hosts group by what their plans do, and each saved plan names its own host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.host.test_cli_veth import NKPLAN, Names, names, run, spec_text, write

pytestmark = pytest.mark.host
__all__ = ["names"]


def test_fleet_plan_of_host_snapshots(names: Names, tmp_path: Path) -> None:
    n = names
    run("apply", write(tmp_path, spec_text(n)), "--yes", "-q")
    snap = json.loads(run("show", "--stack", n.stack, "--format", "json").stdout)
    public = Path(f"/tmp/nkplan-fleet-{n.stack}")
    shutil.rmtree(public, ignore_errors=True)
    (public / "snapshots").mkdir(parents=True)
    try:
        for i, host in enumerate(("alpha", "beta", "gamma")):
            doc = json.loads(json.dumps(snap))
            ident = doc["x-nkplan-snapshot"]["host"]
            ident.update(hostname=host, machine_id=f"{i + 1:032x}")
            if host == "gamma":  # someone changed its MTU by hand
                for link in doc["x-nkplan-snapshot"]["links"]:
                    if link["primary"]["name"] == n.va:
                        link["primary"]["mtu"] = 1300
            (public / "snapshots" / f"{host}.json").write_text(json.dumps(doc))
        (public / "spec.yaml").write_text(spec_text(n).replace("mtu: 1400", "mtu: 1450"))
        for p in [public, *public.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(public, 0o777)  # nobody writes the saved plans
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        cmd = [*nobody, *NKPLAN, "plan", f"{public}/spec.yaml", "--state", f"{public}/snapshots", "--out",
               f"{public}/plans", "--format", "json"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert [g["hosts"] for g in doc["groups"]] == [["alpha", "beta"], ["gamma"]]
        assert [g["summary"] for g in doc["groups"]] == ["Plan: 0 to add, 1 to change, 0 to destroy."] * 2
        gamma = doc["hosts"][2]["plan"]["resource_changes"]
        assert [(c["address"], c["change"]["before"]["primary"]["mtu"]) for c in gamma] == [(f"link[{n.va}]", 1300)]
        saved = json.loads((public / "plans" / "beta.json").read_text())
        assert saved["planned_against"]["host"]["hostname"] == "beta"
        # on this machine (another machine-id) beta's plan is refused and changes nothing
        refused = run("apply", str(public / "plans" / "beta.json"), check=3)
        assert "this plan was made against a snapshot of host 'beta'" in refused.stderr
    finally:
        shutil.rmtree(public, ignore_errors=True)
