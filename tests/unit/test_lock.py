"""The stack lock (run/lock.py) between real processes, no root needed: the holder's pid and
command line are named; --lock-timeout waits, then gives up (LockError, exit 4), or gets the lock
once the holder lets go; other stacks never wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nkplan.errors import LockError
from nkplan.run.lock import stack_lock

HOLD = """
import sys, time
from nkplan.run.lock import stack_lock
with stack_lock("s1"):
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
"""


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path))


def holder(seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


@pytest.fixture
def held() -> Iterator[subprocess.Popen[str]]:
    proc = holder(30)
    yield proc
    proc.kill()
    proc.wait()


def test_refused_at_once_naming_the_holder(held: subprocess.Popen[str]) -> None:
    t0 = time.monotonic()
    with pytest.raises(LockError) as info, stack_lock("s1"):
        pass
    assert time.monotonic() - t0 < 1
    assert f"(pid {held.pid}: {sys.executable} -c " in str(info.value) and "--lock-timeout" in str(info.value)
    assert info.value.exit_code == 4


def test_timeout_waits_then_gives_up(held: subprocess.Popen[str]) -> None:
    t0 = time.monotonic()
    with pytest.raises(LockError, match=r"waited 0\.5 s \(--lock-timeout\)"), stack_lock("s1", 0.5):
        pass
    assert time.monotonic() - t0 >= 0.5
    with stack_lock("s2", 0.5):  # another stack: its own lock
        pass


def test_timeout_gets_the_lock_when_the_holder_ends(tmp_path: Path) -> None:
    proc = holder(0.5)
    t0 = time.monotonic()
    with stack_lock("s1", 30):
        assert time.monotonic() - t0 >= 0.3  # only once the holder let go
        assert (tmp_path / "s1.lock").read_text().split("\n")[0] == str(os.getpid())
    proc.wait()
