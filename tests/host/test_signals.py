"""SIGINT, SIGTERM and SIGHUP at any moment of `nkplan apply` and `nkplan destroy` (host kernel,
a stack of several veth pods): the command ends with exit 130 (or 0 when it had finished), never
a traceback, saying what happened; the kernel then holds either exactly what it held before or
exactly the spec (read with iproute2), as the message says; the stack's lock is free again."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.host.test_cli_veth import Names, names, run, write
from tests.realkernel import _volatile, ip_json

pytestmark = pytest.mark.host
__all__ = ["names"]
PODS = 8
COMMAND = [str(Path(sys.executable).with_name("nkplan"))]  # the console script, as users run it


def spec(n: Names) -> str:
    lines = [f"stack: {n.stack}", "namespaces:"]
    lines += [f"  - {{name: {n.pa}{i}}}" for i in range(PODS)]
    lines.append("links:")
    for i in range(PODS):
        lines.append(
            f"  - {{name: {n.va}{i}, kind: veth, addresses: [10.237.0.{i + 1}/32], "
            f"peer: {{name: eth0, namespace: {n.pa}{i}, addresses: [10.237.1.{i + 1}/32]}}}}"
        )
    lines.append("routes:")
    for i in range(PODS):
        lines.append(f"  - {{to: 10.237.1.{i + 1}/32, dev: {n.va}{i}}}")
        lines.append(f"  - {{namespace: {n.pa}{i}, to: default, dev: eth0}}")
    return "\n".join(lines) + "\n"


def view(n: Names) -> Any:
    """The stack's objects as iproute2 shows them (empty when nothing is there)."""
    netns = sorted(x["name"] for x in ip_json("netns", "list") if x["name"].startswith(n.pa))
    links = [_volatile(d) for d in ip_json("-d", "link", "show") if d["ifname"].startswith(n.va)]
    routes = [r for r in ip_json("route", "show") if str(r.get("dev", "")).startswith(n.va)]
    inside = [(ns, [d["ifname"] for d in ip_json("link", "show", ns=ns)]) for ns in netns]
    return {"netns": netns, "links": [(d["ifname"], d["mtu"]) for d in links], "routes": routes, "inside": inside}


def interrupted(cmd: list[str], delay: float, sig: signal.Signals) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def interpreter_start() -> float:
    """How long this Python takes to reach a program's first line (site and .pth files): before
    that no program can handle a signal (README: signals), so the test does not signal earlier."""
    took = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        took.append(time.monotonic() - t0)
    return max(took)


def timed(cmd: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.monotonic() - t0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_at_any_moment_has_one_outcome(names: Names, tmp_path: Path, sig: signal.Signals) -> None:
    n = names
    path = write(tmp_path, spec(n))
    empty = view(n)
    apply_cmd, destroy_cmd = [*COMMAND, "apply", path, "--yes"], [*COMMAND, "destroy", path, "--yes"]
    # how long each takes here, to spread the signals over the whole run
    took = timed(apply_cmd)
    full = view(n)
    took_destroy = timed(destroy_cmd)
    assert view(n) == empty and full != empty
    outcomes = set()
    floor = 1.5 * interpreter_start()
    for frac in (0.05, 0.25, 0.45, 0.6, 0.75, 0.9, 1.2):
        for cmd, start, goal, dur in ((apply_cmd, empty, full, took), (destroy_cmd, full, empty, took_destroy)):
            run("apply", path, "--yes", "-q") if start == full else run("destroy", path, "--yes", "-q")
            assert view(n) == start  # (and the lock is free after the last round, whatever it did)
            proc = interrupted(cmd, max(floor, frac * dur), sig)
            verb = cmd[len(COMMAND)]
            said = f"{verb} after {frac:.2f} of {dur:.1f} s → {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr, said
            now = view(n)
            if proc.returncode == 0:  # it had finished
                assert now == goal, said
                outcomes.add("finished")
            else:
                assert proc.returncode == 130, said
                assert f"by {sig.name}" in proc.stderr, said
                if "nothing was changed" in proc.stderr or "rolled back" in proc.stderr:
                    assert now == start, said
                    outcomes.add("rolled back" if "rolled back" in proc.stderr else "unchanged")
                else:
                    assert "had completed and is kept" in proc.stderr and now == goal, said
                    outcomes.add("kept")
    # the spread reached more than one kind of moment (if not, the machine was far faster or slower)
    assert len(outcomes) >= 2, outcomes
    run("destroy", path, "--yes", "-q")
