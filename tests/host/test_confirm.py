"""Confirm-or-revert on the host kernel, through the real `nkplan` command: `apply --confirm-within`
reverts to exactly what was there before (read back with iproute2, ifindexes included for what
changed in place) unless `nkplan confirm` or Enter arrives in time; the revert still happens when
the apply process is killed or its terminal hangs up mid-wait; a second apply meanwhile is refused."""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import pty
import signal
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.host.test_cli_veth import NKPLAN, Names
from tests.realkernel import _volatile, ip_json

pytestmark = pytest.mark.host

S1 = """\
stack: {n.stack}
namespaces: [{{name: {n.pa}}}]
links:
  - name: {n.va}
    kind: veth
    mtu: 1400
    addresses: [10.238.0.1/32]
    peer: {{name: eth0, namespace: {n.pa}, addresses: [10.238.1.2/32]}}
routes:
  - {{to: 10.238.1.2/32, dev: {n.va}}}
  - {{namespace: {n.pa}, to: default, dev: eth0}}
"""
# in place: mtu, one more address; deleted: the host route; created: a namespace and a pair
S2 = """\
stack: {n.stack}
namespaces: [{{name: {n.pa}}}, {{name: {n.pb}}}]
links:
  - name: {n.va}
    kind: veth
    mtu: 1300
    addresses: [10.238.0.1/32, 10.238.0.9/32]
    peer: {{name: eth0, namespace: {n.pa}, addresses: [10.238.1.2/32]}}
  - {{name: {n.vb}, kind: veth, peer: {{name: eth0, namespace: {n.pb}}}}}
routes:
  - {{namespace: {n.pa}, to: default, dev: eth0}}
"""


@pytest.fixture
def n(token: str, tmp_path: Path) -> Iterator[Names]:
    names = Names(token)
    env = os.environ.get("NKPLAN_LOCK_DIR")
    os.environ["NKPLAN_LOCK_DIR"] = str(tmp_path / "run")  # watcher files of this test only
    try:
        yield names
    finally:
        _kill_watcher(tmp_path / "run" / "confirm" / f"{names.stack}.pending")
        subprocess.run([*NKPLAN, "destroy", "--stack", names.stack, "--yes", "-q"], capture_output=True, timeout=120)
        for ns in (names.pa, names.pb):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for dev in (names.va, names.vb):
            subprocess.run(["ip", "link", "del", dev], capture_output=True)
        if env is None:
            os.environ.pop("NKPLAN_LOCK_DIR", None)
        else:
            os.environ["NKPLAN_LOCK_DIR"] = env


def _kill_watcher(pending: Path) -> None:
    try:
        pid = int(pending.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def nkplan(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*NKPLAN, *args], capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    if check is not None:
        assert proc.returncode == check, f"nkplan {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def view(n: Names) -> dict[str, Any]:
    """Everything the stack's objects are, as iproute2 prints them, once IPv6 duplicate address
    detection is over (it adds the link-local routes and clears `tentative` on its own time)."""
    wait_for(lambda: "tentative" not in json.dumps(_view(n)), 10, "IPv6 DAD to finish")
    return _view(n)


def _view(n: Names) -> dict[str, Any]:
    out: dict[str, Any] = {"netns": sorted(x["name"] for x in ip_json("netns", "list") if x["name"] in (n.pa, n.pb))}
    out["host_links"] = [_volatile(d) for d in ip_json("-d", "link", "show") if d["ifname"] in (n.va, n.vb)]
    out["host_addrs"] = [_volatile(d) for d in ip_json("addr", "show") if d["ifname"] in (n.va, n.vb)]
    out["host_routes"] = [r for r in ip_json("route", "show", "table", "all") if r.get("dev") in (n.va, n.vb)]
    for ns in out["netns"]:
        out[ns] = (
            _volatile(ip_json("-d", "link", "show", ns=ns)),
            _volatile(ip_json("addr", "show", ns=ns)),
            ip_json("route", "show", "table", "all", ns=ns),
        )
    return out


def same(after: dict[str, Any], before: dict[str, Any]) -> None:
    """after == before, or an AssertionError with a line diff of the two."""
    a, b = (json.dumps(x, indent=1, sort_keys=True).splitlines() for x in (after, before))
    diff = "\n".join(difflib.unified_diff(b, a, "before", "after", lineterm="", n=2))
    assert after == before, f"the stack is not as it was before:\n{diff}"


def mtu(dev: str) -> int:
    return int(ip_json("link", "show", "dev", dev)[0]["mtu"])


def write(tmp_path: Path, template: str, n: Names, name: str) -> str:
    path = tmp_path / name
    path.write_text(template.format(n=n))
    return str(path)


def state(tmp_path: Path, n: Names) -> dict[str, Any]:
    try:
        return json.loads((tmp_path / "run" / "confirm" / f"{n.stack}.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def wait_for(pred: Any, limit: float, what: str) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {limit} s waiting for {what}")


def read_until(stream: IO[str], marker: str, limit: float = 120) -> str:
    seen = ""
    end = time.monotonic() + limit
    while marker not in seen:
        assert time.monotonic() < end, f"no {marker!r} in {seen!r}"
        line = stream.readline()
        assert line, f"the stream ended before {marker!r}: {seen!r}"
        seen += line
    return seen


def test_not_confirmed_reverts_to_exactly_what_was_there(n: Names, tmp_path: Path) -> None:
    s1, s2 = write(tmp_path, S1, n, "s1.yaml"), write(tmp_path, S2, n, "s2.yaml")
    nkplan("apply", s1, "--yes", "-q")
    before = view(n)

    t0 = time.monotonic()
    proc = nkplan("apply", s2, "--yes", "--confirm-within", "3", check=1)
    assert "Confirm within 3 s" in proc.stdout, proc.stdout
    assert "error: not confirmed within 3 s: reverted to the state before the apply" in proc.stderr, proc.stderr
    assert time.monotonic() - t0 >= 3

    same(view(n), before)  # the pair and namespace gone, mtu/addresses back, the route back
    nkplan("plan", s1, "--detailed-exitcode")  # and nkplan agrees: nothing to do
    assert (
        "reverted: the stack is as it was before the apply" in (tmp_path / "run/confirm" / f"{n.stack}.log").read_text()
    )


def test_confirmed_change_is_kept_and_a_second_apply_meanwhile_is_refused(n: Names, tmp_path: Path) -> None:
    s1, s2 = write(tmp_path, S1, n, "s1.yaml"), write(tmp_path, S2, n, "s2.yaml")
    nkplan("apply", s1, "--yes", "-q")
    nkplan("confirm", n.stack, check=1)  # nothing waits yet

    apply = subprocess.Popen(
        [*NKPLAN, "apply", s2, "--yes", "-q", "--confirm-within", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert apply.stdout is not None
        read_until(apply.stdout, f"run `nkplan confirm {n.stack}`")
        assert mtu(n.va) == 1300  # applied, pending

        again = nkplan("apply", s1, "--yes", check=4)
        assert f"stack {n.stack!r} waits for confirmation of an earlier apply" in again.stderr, again.stderr
        nkplan("destroy", "--stack", n.stack, "--yes", check=4)
        assert mtu(n.va) == 1300

        out = nkplan("confirm", n.stack)
        assert f"Confirmed: stack {n.stack!r} keeps the change." in out.stdout
        assert apply.wait(30) == 0, apply.stderr.read() if apply.stderr else ""
        assert "Confirmed: the change is kept." in apply.stdout.read()
    finally:
        apply.kill()
    assert mtu(n.va) == 1300 and n.pb in {x["name"] for x in ip_json("netns", "list")}
    nkplan("plan", s2, "--detailed-exitcode")
    nkplan("apply", s1, "--yes", "-q")  # no longer pending: changes are allowed again
    assert mtu(n.va) == 1400


@pytest.mark.parametrize("how", ["SIGKILL", "SIGHUP"])
def test_killed_apply_is_still_reverted(n: Names, tmp_path: Path, how: str) -> None:
    s1, s2 = write(tmp_path, S1, n, "s1.yaml"), write(tmp_path, S2, n, "s2.yaml")
    nkplan("apply", s1, "--yes", "-q")
    before = view(n)

    apply = subprocess.Popen(
        [*NKPLAN, "apply", s2, "--yes", "-q", "--confirm-within", "4"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert apply.stdout is not None
    read_until(apply.stdout, "Confirm within 4 s")
    assert mtu(n.va) == 1300
    apply.send_signal(getattr(signal, how))
    # SIGKILL: it died of it; SIGHUP (the terminal went away): it ends like Ctrl-C, exit 130
    assert apply.wait(30) == (-signal.SIGKILL if how == "SIGKILL" else 130)

    wait_for(lambda: state(tmp_path, n).get("phase") in ("reverted", "revert-failed"), 60, "the watcher's revert")
    assert state(tmp_path, n)["phase"] == "reverted", state(tmp_path, n)
    same(view(n), before)


def _on_terminal(cmd: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """Run cmd with a new pseudo-terminal as its controlling terminal; returns (process, master fd)."""
    master, slave = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, preexec_fn=own_terminal)
    os.close(slave)
    return proc, master


def _read_terminal(master: int, marker: bytes, limit: float = 120) -> bytes:
    seen = b""
    end = time.monotonic() + limit
    while marker not in seen:
        assert time.monotonic() < end, f"no {marker!r} on the terminal: {seen!r}"
        try:
            seen += os.read(master, 4096)
        except OSError:
            break
    return seen


def test_enter_on_the_terminal_confirms_and_a_closed_terminal_reverts(n: Names, tmp_path: Path) -> None:
    s1, s2 = write(tmp_path, S1, n, "s1.yaml"), write(tmp_path, S2, n, "s2.yaml")
    nkplan("apply", s1, "--yes", "-q")
    before = view(n)

    # Enter confirms
    proc, master = _on_terminal([*NKPLAN, "apply", s2, "--yes", "-q", "--confirm-within", "60", "--no-color"])
    try:
        _read_terminal(master, b"press Enter here")
        os.write(master, b"\n")
        assert proc.wait(30) == 0
        assert b"Confirmed: the change is kept." in _read_terminal(master, b"kept.")
    finally:
        proc.kill()
        os.close(master)
    assert mtu(n.va) == 1300

    # back to S1 (confirmed by Enter again), then S2 again, and the terminal goes away mid-wait
    proc, master = _on_terminal([*NKPLAN, "apply", s1, "--yes", "-q", "--confirm-within", "60"])
    _read_terminal(master, b"press Enter here")
    os.write(master, b"\n")
    assert proc.wait(30) == 0
    os.close(master)
    same(view(n), before)

    proc, master = _on_terminal([*NKPLAN, "apply", s2, "--yes", "-q", "--confirm-within", "4"])
    _read_terminal(master, b"press Enter here")
    os.close(master)  # the terminal hangs up: SIGHUP to the apply
    proc.wait(30)
    wait_for(lambda: state(tmp_path, n).get("phase") in ("reverted", "revert-failed"), 60, "the watcher's revert")
    assert state(tmp_path, n)["phase"] == "reverted", state(tmp_path, n)
    same(view(n), before)


def test_adopting_with_confirm_within_is_refused_before_any_change(n: Names, tmp_path: Path) -> None:
    """The revert would delete what the apply adopted (made by hand before it): refused up front."""
    s1, s2 = write(tmp_path, S1, n, "s1.yaml"), write(tmp_path, S2, n, "s2.yaml")
    nkplan("apply", s1, "--yes", "-q")
    subprocess.run(["ip", "netns", "add", n.pb], check=True)  # S2 declares it: adopting takes it over
    before = view(n)
    proc = nkplan("apply", s2, "--yes", "--adopt", "--confirm-within", "30", check=1)
    assert "--confirm-within cannot be combined with adopting" in proc.stderr, proc.stderr
    same(view(n), before)
    assert not (tmp_path / "run" / "confirm" / f"{n.stack}.pending").exists()
