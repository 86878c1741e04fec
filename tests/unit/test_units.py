"""The shipped systemd units: rendered with an absolute nkplan, accepted by `systemd-analyze
verify` without a single warning, installed idempotently."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from nkplan.cli import main
from nkplan.run import units


def test_installed_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze (Debian package systemd) is needed"
    done = units.install(str(tmp_path))
    assert [i.path.name for i in done] == list(units.UNIT_NAMES) and all(i.changed for i in done)
    for item in done:
        text = item.path.read_text()
        assert units.PLACEHOLDER not in text
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                assert line.split("=", 1)[1].startswith("/"), line  # systemd wants an absolute path
    instances = [str(tmp_path / n.replace("@.", "@demo.")) for n in units.UNIT_NAMES]
    proc = subprocess.run(["systemd-analyze", "verify", *instances], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # unknown keys are only warnings
    # a broken unit does produce output: the check above can fail
    broken = tmp_path / "nkplan@.service"
    broken.write_text(broken.read_text().replace("Type=oneshot", "Type=oneshotx"))
    proc = subprocess.run(["systemd-analyze", "verify", instances[0]], capture_output=True, text=True)
    assert "Failed to parse service type" in proc.stderr


def test_install_is_idempotent_and_says_what_it_did(tmp_path: Path, capsys: object) -> None:
    assert main(["install-units", "--dir", str(tmp_path)]) == 0
    assert all(i.changed is False for i in units.install(str(tmp_path)))
    assert units.nkplan_command().endswith("nkplan") or "-m nkplan.cli" in units.nkplan_command()


def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["install-units", "--dir", str(blocker / "sub")]) == 1
