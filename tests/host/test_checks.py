"""Reachability checks on the host kernel, through the real `nkplan` command: a declared-reachable
check fails when a BPF policy program (pod_policy.o's pod_egress at the pod end's tcx egress:
drops ICMP echo requests) drops the traffic, and apply rolls the change back (or keeps it with
--keep-on-check-failure); expect-unreachable checks pass behind a blackhole route; TCP checks
against a listener the test opens inside the namespace. What the kernel holds afterwards is read
with bpftool and iproute2, independently of nkplan."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nkplan.kernel.netlink import netns as nsops
from tests import bpfobserve as obs
from tests.host.test_cli_veth import Names, names, run, write
from tests.realkernel import ip_json

__all__ = ["names"]
pytestmark = pytest.mark.host
POLICY = "{object: pod_policy.o, program: pod_egress}"
PORT = 18443


def spec(n: Names, egress: str = "", checks: str = "", routes: str = "") -> str:
    tcx = f", tcx: {{egress: [{egress}]}}" if egress else ""
    return (
        f"stack: {n.stack}\nnamespaces: [{{name: {n.pa}}}]\nlinks:\n"
        f"  - name: {n.va}\n    kind: veth\n    addresses: [10.233.0.1/32]\n"
        f"    peer: {{name: eth0, namespace: {n.pa}, addresses: [10.233.1.2/32]{tcx}}}\n"
        f"routes:\n  - {{namespace: {n.pa}, to: default, dev: eth0}}\n  - {{to: 10.233.1.2/32, dev: {n.va}}}\n"
        f"{routes}"
        f"checks:\n{checks}"
    )


PING_HOST = "  - {{from: {pa}, to: 10.233.0.1, expect: reachable}}\n"
PING_POD = "  - {to: 10.233.1.2, expect: reachable}\n"


@pytest.fixture
def objs(tmp_path: Path) -> Path:
    shutil.copy(obs.obj("pod_policy"), tmp_path / "pod_policy.o")
    return tmp_path


@pytest.fixture
def listener(names: Names) -> Iterator[Callable[[], None]]:
    """Opens, when called, a TCP listener on 10.233.1.2:PORT inside the pod namespace (from a
    thread that entered it; the kernel completes handshakes from the backlog without accept)."""
    held: list[socket.socket] = []

    def open_it() -> None:
        fd = nsops.open_ns(names.pa)
        try:
            held.append(nsops.in_namespace(fd, lambda: socket.create_server(("10.233.1.2", PORT), backlog=64)))
        finally:
            os.close(fd)

    yield open_it
    for s in held:
        s.close()


def egress_programs(n: Names) -> list[str]:
    return [name for name, _pid, _lid in obs.hook_progs("tcx/egress", ns=n.pa, dev="eth0")]


def test_a_policy_that_drops_pings_fails_a_reachable_check_and_apply_rolls_back(names: Names, objs: Path) -> None:
    n = names
    checks = PING_HOST.format(pa=n.pa) + PING_POD
    base = write(objs, spec(n, checks=checks))
    applied = run("apply", base, "--yes")
    assert "Checks passed: 2 of 2." in applied.stdout
    assert run("check", base).stdout.count("ok   check") == 2

    # the same spec plus the policy at the pod end's egress: pod → host pings are dropped
    policed = write(objs, spec(n, POLICY, checks=checks), "policed.yaml")
    failed = run("apply", policed, "--yes", check=1)
    err = failed.stderr
    assert f"error:   check 1 ({n.pa} → 10.233.0.1, expect reachable): " in err, err
    assert "no echo reply within 1 s" in err or "dropped on the way out" in err, err
    rolled = re.search(r"error: rolled back (\d+) of (\d+) completed step\(s\)", err)
    assert rolled and rolled[1] == rolled[2] != "0", err
    assert "rolled back (" in failed.stdout
    assert egress_programs(n) == []  # the program is gone again
    assert "No changes." in run("plan", base).stdout
    assert run("check", base).returncode == 0

    # kept on request: the program stays, the command still fails and says so
    kept = run("apply", policed, "--yes", "-q", "--keep-on-check-failure", check=1)
    assert "error: the apply was kept (--keep-on-check-failure)" in kept.stderr
    assert egress_programs(n) == ["pod_egress"]
    seen = run("check", policed, check=1).stdout
    assert f"FAIL check 1 ({n.pa} → 10.233.0.1, expect reachable)" in seen
    assert "ok   check 2 (host → 10.233.1.2, expect reachable)" in seen  # the other way round passes

    # expecting the drop: the same policy now passes its checks
    expecting = PING_HOST.format(pa=n.pa).replace("expect: reachable", "expect: unreachable") + PING_POD
    assert run("check", write(objs, spec(n, POLICY, checks=expecting), "expecting.yaml")).returncode == 0
    run("destroy", "--stack", n.stack, "--yes", "-q")
    assert n.pa not in {x["name"] for x in ip_json("netns", "list")}


def test_expect_unreachable_passes_behind_a_blackhole_and_tcp_checks(
    names: Names, tmp_path: Path, listener: Callable[[], None]
) -> None:
    n = names
    routes = f"  - {{namespace: {n.pa}, to: 10.233.9.0/24, type: blackhole}}\n"
    checks = (
        f"  - {{from: {n.pa}, to: 10.233.9.1, expect: unreachable}}\n"
        f"  - {{from: {n.pa}, to: 10.233.9.1, port: 80, expect: unreachable, timeout: 2}}\n"
        + PING_HOST.format(pa=n.pa)
        + f"  - {{to: 10.233.1.2, port: {PORT}, expect: reachable}}\n"
        + f"  - {{to: 10.233.1.2, port: {PORT + 1}, expect: unreachable}}\n"
    )
    path = write(tmp_path, spec(n, checks=checks, routes=routes))
    # before the apply: the namespace is not there, so every check fails and nothing changes
    early = run("check", path, check=1).stdout
    assert f"FAIL check 1 ({n.pa} → 10.233.9.1, expect unreachable): namespace '{n.pa}' does not exist" in early
    assert n.pa not in {x["name"] for x in ip_json("netns", "list")}

    run("apply", path, "--yes", check=1)  # the TCP check fails (no listener yet): rolled back
    assert n.pa not in {x["name"] for x in ip_json("netns", "list")}

    run("apply", path, "--yes", "--keep-on-check-failure", check=1)
    listener()
    out = run("check", path).stdout
    assert f"ok   check 1 ({n.pa} → 10.233.9.1, expect unreachable): no route: Invalid argument" in out, out
    assert f"ok   check 2 ({n.pa} → 10.233.9.1:80, expect unreachable): connect failed: Invalid argument" in out, out
    assert f"ok   check 4 (host → 10.233.1.2:{PORT}, expect reachable): connected in" in out, out
    assert f"ok   check 5 (host → 10.233.1.2:{PORT + 1}, expect unreachable): connection refused in" in out, out
    assert "Checks: 5 passed, 0 failed." in out
    again = run("apply", path, "--yes")
    assert "Checks passed: 5 of 5." in again.stdout

    # a reachable check behind the blackhole fails, and says what it saw
    flipped = checks.replace("expect: unreachable}", "expect: reachable}", 1)
    wrong = write(tmp_path, spec(n, checks=flipped, routes=routes), "w.yaml")
    seen = run("check", wrong, check=1).stdout
    assert f"FAIL check 1 ({n.pa} → 10.233.9.1, expect reachable): no route: Invalid argument" in seen, seen
