"""Concurrent nkplan processes on the host kernel, through the real `nkplan` command: four stacks
applied (and destroyed) at once in parallel processes all succeed and each holds exactly its own
objects; a second apply of one stack waits with --lock-timeout while the first holds the lock and
succeeds once it is done, or gives up with exit 4 naming the holder's pid and command; a plan
saved while another process applies the stack is refused as stale (exit 3) when applied later.

An apply holds the stack's lock while it asks for confirmation on a terminal: the tests give the
first apply a pseudo-terminal and answer it only when the second process has shown what it does,
so the order is fixed by the test, not by timing. The kernel is read with iproute2 (`ip -j`)."""

from __future__ import annotations

import os
import pty
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host.test_cli_veth import NKPLAN, addrs, exists, link, netns
from tests.realkernel import host_snapshot, ip_json

pytestmark = pytest.mark.host
STACKS = 4


class Stack:
    def __init__(self, token: str, i: int, tmp_path: Path) -> None:
        self.name = f"cc{i}-{token}"  # stack, namespace and host device: 8 characters
        self.i = i
        self.file = tmp_path / f"{self.name}.yaml"
        self.file.write_text(
            f"stack: {self.name}\n"
            f"namespaces: [{{name: {self.name}}}]\n"
            "links:\n"
            f"  - name: {self.name}\n"
            "    kind: veth\n"
            f"    addresses: [10.232.{i}.1/32]\n"
            f"    peer: {{name: eth0, namespace: {self.name}, addresses: [10.232.{i}.2/32]}}\n"
            "routes:\n"
            f"  - {{namespace: {self.name}, to: default, dev: eth0}}\n"
            f"  - {{to: 10.232.{i}.2/32, dev: {self.name}}}\n"
        )

    def held_by_itself(self) -> None:
        """What the kernel holds of this stack, read with iproute2: its namespace, its pair, owned
        by this stack, its addresses and route."""
        assert self.name in netns()
        host_end = link(self.name)
        assert self.name in host_end.get("ifalias", ""), host_end
        assert addrs(self.name) == [f"10.232.{self.i}.1/32"]
        assert addrs("eth0", ns=self.name) == [f"10.232.{self.i}.2/32"]
        routes = ip_json("route", "show", f"10.232.{self.i}.2/32")
        assert [r["dev"] for r in routes] == [self.name], routes

    def gone(self) -> bool:
        return self.name not in netns() and not exists(self.name)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The processes' environment: a lock directory of the test's own (so the test can read who
    holds a lock without touching /run/nkplan), no plan verification key from outside."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("NKPLAN_PLAN_")}
    e["NKPLAN_LOCK_DIR"] = str(tmp_path / "locks")
    return e


@pytest.fixture
def stacks(token: str, tmp_path: Path, env: dict[str, str]) -> Iterator[list[Stack]]:
    made = [Stack(token, i, tmp_path) for i in range(STACKS)]
    before = host_snapshot()
    yield made
    for s in made:  # always clean up, also after a failure: through nkplan, then by hand
        subprocess.run(
            [*NKPLAN, "destroy", "--stack", s.name, "--yes", "-q"], capture_output=True, env=env, timeout=120
        )
        subprocess.run(["ip", "netns", "del", s.name], capture_output=True)
        subprocess.run(["ip", "link", "del", s.name], capture_output=True)
    assert host_snapshot() == before


def start(*args: str, env: dict[str, str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([*NKPLAN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)  # type: ignore[call-overload, no-any-return]


def finish(proc: subprocess.Popen[str], code: int) -> tuple[str, str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, f"{proc.args} → {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err
    return out, err


def test_four_stacks_in_parallel_do_not_interfere(stacks: list[Stack], env: dict[str, str]) -> None:
    procs = [start("apply", str(s.file), "--yes", "-q", env=env) for s in stacks]
    for p in procs:
        out, _ = finish(p, 0)
        assert "Apply complete!" in out
    for s in stacks:
        s.held_by_itself()
    plans = [start("plan", str(s.file), "--detailed-exitcode", env=env) for s in stacks]
    for p in plans:
        finish(p, 0)  # each stack holds exactly what its file declares, nothing of the others
    procs = [start("destroy", str(s.file), "--yes", "-q", env=env) for s in stacks]
    for p in procs:
        finish(p, 0)
    assert all(s.gone() for s in stacks)


class Waiting:
    """An `nkplan apply` holding the stack's lock at its confirmation prompt, on a pseudo-terminal."""

    def __init__(self, stack: Stack, env: dict[str, str], *more: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = start("apply", str(stack.file), *more, env=env, stdin=slave)
        os.close(slave)
        lock = Path(env["NKPLAN_LOCK_DIR"]) / f"{stack.name}.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().split("\n", 1)[0] == str(self.proc.pid)):
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the first apply never took the lock"
            time.sleep(0.05)

    def answer(self, text: str, code: int) -> tuple[str, str]:
        os.write(self.master, f"{text}\n".encode())
        try:
            return finish(self.proc, code)
        finally:
            os.close(self.master)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_second_apply_waits_for_the_lock_then_succeeds(stacks: list[Stack], env: dict[str, str]) -> None:
    s = stacks[0]
    first = Waiting(s, env)
    try:
        second = start("apply", str(s.file), "--yes", "--lock-timeout", "60", env=env)
        time.sleep(1.5)
        assert second.poll() is None, "the second apply did not wait for the lock"
        assert s.gone()  # nothing applied yet: the first waits for its answer, the second for the lock
        out, _ = first.answer("yes", 0)
        assert "Apply complete! 4 to add" in out, out
        out, _ = finish(second, 0)  # planned after the first finished: nothing left to do
        assert "No changes" in out and "Apply complete" not in out, out
        s.held_by_itself()
    finally:
        first.stop()


def test_lock_timeout_expires_with_exit_4_naming_the_holder(stacks: list[Stack], env: dict[str, str]) -> None:
    s = stacks[1]
    first = Waiting(s, env)
    try:
        t0 = time.monotonic()
        second = start("destroy", str(s.file), "--yes", "--lock-timeout", "1", env=env)
        _, err = finish(second, 4)
        assert time.monotonic() - t0 >= 1.0
        assert f"stack {s.name!r} is locked by another nkplan process (pid {first.proc.pid}: " in err, err
        assert f"nkplan.cli apply {s.file}" in err and "waited 1 s (--lock-timeout)" in err, err
        first.answer("no", 1)  # cancelled: nothing changed
        assert s.gone()
    finally:
        first.stop()


def test_plan_saved_during_another_apply_is_stale_later(
    stacks: list[Stack], env: dict[str, str], tmp_path: Path
) -> None:
    s = stacks[2]
    saved = str(tmp_path / "plan.json")
    first = Waiting(s, env)
    try:
        finish(start("plan", str(s.file), "--out", saved, env=env), 0)  # plan takes no lock: it runs now
        first.answer("yes", 0)
    finally:
        first.stop()
    s.held_by_itself()
    before = host_snapshot(), netns(), link(s.name)["ifindex"]
    _, err = finish(start("apply", saved, env=env), 3)
    assert "the live state changed since the plan was made" in err, err
    assert (host_snapshot(), netns(), link(s.name)["ifindex"]) == before
    s.held_by_itself()
