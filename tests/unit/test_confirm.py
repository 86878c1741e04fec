"""The confirm-or-revert watcher's decisions (nkplan/run/confirm.py), with the revert recorded
instead of applied: the kernel side is proven in tests/host/test_confirm.py."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nkplan.errors import LockError, NkplanError
from nkplan.run import confirm


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path))
    (tmp_path / "confirm").mkdir()
    return tmp_path


def start_watcher(state: dict[str, Any]) -> tuple[threading.Thread, list[dict[str, Any]]]:
    files = confirm.Files("s")
    confirm.write_state(files, {"stack": "s", "revert": {"stack": "s"}, "within": 1, **state})
    reverts: list[dict[str, Any]] = []
    t = threading.Thread(target=confirm.watch, args=("s", lambda doc, _marks: reverts.append(doc)), daemon=True)
    t.start()
    end = time.monotonic() + 5
    while confirm.watcher_pid("s") is None and t.is_alive():
        assert time.monotonic() < end
        time.sleep(0.01)
    return t, reverts


def test_deadline_passed_reverts() -> None:
    t, reverts = start_watcher({"phase": confirm.WAITING, "deadline": confirm.clock() + 0.3})
    t.join(60)
    assert reverts == [{"stack": "s"}]
    assert confirm.read_state(confirm.Files("s"))["phase"] == confirm.REVERTED
    assert confirm.watcher_pid("s") is None  # the pending lock is released


def test_confirmation_before_the_deadline_keeps() -> None:
    t, reverts = start_watcher({"phase": confirm.WAITING, "deadline": confirm.clock() + 30})
    state = confirm.confirm("s", wait=60)
    t.join(60)
    assert state["phase"] == confirm.CONFIRMED and reverts == []
    assert not confirm.Files("s").confirm.exists()


def test_an_apply_that_rolled_back_itself_is_not_reverted() -> None:
    t, reverts = start_watcher({"phase": confirm.APPLYING, "apply_pid": os.getpid()})
    confirm.update_state(confirm.Files("s"), phase=confirm.ABORTED, outcome="failed")
    t.join(60)
    assert reverts == []


def test_an_apply_that_died_mid_apply_is_reverted() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    t, reverts = start_watcher({"phase": confirm.APPLYING, "apply_pid": dead.pid})
    t.join(60)
    assert reverts == [{"stack": "s"}]


def test_a_failed_revert_is_reported() -> None:
    def refuse(doc: dict[str, Any], marks: dict[str, str]) -> None:
        raise NkplanError("the kernel said no")

    confirm.write_state(
        confirm.Files("s"), {"stack": "s", "revert": {}, "phase": confirm.WAITING, "deadline": 0, "within": 1}
    )
    confirm.watch("s", refuse)
    state = confirm.read_state(confirm.Files("s"))
    assert state["phase"] == confirm.REVERT_FAILED and "the kernel said no" in state["outcome"]


def test_changes_are_refused_while_another_process_waits() -> None:
    # the watcher is this process: its own revert may change the stack ...
    t, _ = start_watcher({"phase": confirm.WAITING, "deadline": confirm.clock() + 30})
    confirm.refuse_if_pending("s")
    # ... another process may not
    code = "from nkplan.run import confirm; confirm.refuse_if_pending('s')"
    out = subprocess.run(["python3", "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "."})
    assert "LockError" in out.stderr and "waits for confirmation of an earlier apply" in out.stderr
    confirm.confirm("s", wait=60)
    t.join(60)
    confirm.refuse_if_pending("s")  # nothing pending any more


def test_confirm_with_nothing_pending_is_an_error() -> None:
    with pytest.raises(NkplanError, match="no apply of stack 's' waits for confirmation"):
        confirm.confirm("s")
    assert LockError.exit_code == 4


def test_a_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nkplan.cli import main

    (tmp_path / "specs").mkdir()
    assert main(["apply", str(tmp_path / "specs"), "--yes", "--confirm-within", "5"]) == 1
    assert "--confirm-within keeps one stack's revert" in capsys.readouterr().err


def test_a_confirmation_while_the_apply_still_runs_is_refused() -> None:
    t, reverts = start_watcher({"phase": confirm.APPLYING, "apply_pid": os.getpid()})
    with pytest.raises(NkplanError, match="is still running: confirm once it waits"):
        confirm.confirm("s")
    assert not confirm.Files("s").confirm.exists()
    confirm.update_state(confirm.Files("s"), phase=confirm.ABORTED)
    t.join(60)
    assert reverts == []
