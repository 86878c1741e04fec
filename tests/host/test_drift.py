"""`nkplan drift` (what nkplan-drift@.service runs) on the host kernel: silent and 0 when the
kernel holds the spec, exit 2 and the difference when someone changed it by hand, --converge puts
it back (read with iproute2), and the metrics file says how much drifted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.host.test_cli_veth import Names, link, names, run, spec_text, write

pytestmark = pytest.mark.host
__all__ = ["names"]


@pytest.fixture
def n(names: Names) -> Names:
    return names


def test_drift_reports_then_converges(n: Names, tmp_path: Path) -> None:
    path = write(tmp_path, spec_text(n))
    run("apply", path, "--yes", "-q")
    out = run("drift", path).stdout
    assert f"stack {n.stack!r}: no drift" in out

    subprocess.run(["ip", "link", "set", "dev", n.va, "mtu", "1300"], check=True)
    metrics = tmp_path / "nkplan.prom"
    proc = run("drift", path, "--metrics-file", str(metrics), check=2)
    assert f"drift: stack {n.stack!r} differs from {path}: 1 change(s) pending, 1 of them made outside nkplan" in (
        proc.stdout
    ), proc.stdout
    assert "primary.mtu: 1300 → 1400" in proc.stdout.replace('"', ""), proc.stdout
    assert link(n.va)["mtu"] == 1300  # only reported
    text = metrics.read_text()
    assert "nkplan_drift_objects" in text and f'stack="{n.stack}"' in text

    proc = run("drift", path, "--converge", "--metrics-file", str(metrics))
    assert "converging" in proc.stdout and "Apply complete!" in proc.stdout
    assert link(n.va)["mtu"] == 1400
    text = metrics.read_text()
    assert f'nkplan_drift_objects{{stack="{n.stack}",command="drift"}} 0' in text, text
    assert "nkplan_last_apply_success_timestamp_seconds" in text
    run("drift", path)
