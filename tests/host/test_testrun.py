"""The run guard (tests/testrun.py) removes what a killed run left, and only that: objects named
with the dead run's token, found again with iproute2 afterwards."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from nkplan.kernel.bpf import bpffs
from tests import testrun
from tests.host import observe
from tests.realkernel import TOKEN

pytestmark = pytest.mark.host


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def test_reap_removes_a_dead_runs_objects_and_nothing_else() -> None:
    dead = TOKEN
    while dead == TOKEN:
        dead = secrets.token_hex(2)
    other = f"kx{TOKEN}zz"  # a device of this run that merely looks alike: must survive
    ns, dev, stack = f"pa-{dead}", f"va-{dead}", Path(f"/sys/fs/bpf/nkplan/e2e-{dead}")
    marker = stack / ":host" / ":rules" / "inet-31337@0123456789ab"
    try:
        sh("ip", "netns", "add", f"nkt-{dead}")
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "add", other, "type", "veth", "peer", "name", f"kx{TOKEN}zy")
        sh("ip", "link", "set", dev, "up")
        sh("ip", "route", "add", "10.239.1.2/32", "dev", dev, "proto", "237")
        sh("ip", "rule", "add", "priority", "31337", "from", "10.239.1.2", "lookup", "main", "protocol", "237")
        bpffs.ensure_mounted()
        marker.mkdir(parents=True)

        gone = testrun.reap(dead)

        assert f"netns {ns}" in gone and f"link {dev}" in gone and f"bpffs e2e-{dead}" in gone, gone
        assert ns not in observe.netns_names() and f"nkt-{dead}" not in observe.netns_names()
        assert dev not in observe.link_names() and other in observe.link_names()
        assert not stack.exists()
        assert not [r for r in observe.ip_json("rule", "show") if r.get("priority") == 31337]
        assert not [r for r in observe.ip_json("route", "show") if r.get("dst") == "10.239.1.2"]
    finally:
        for cmd in (
            ["ip", "rule", "del", "priority", "31337"],
            ["ip", "link", "del", dev],
            ["ip", "link", "del", other],
            ["ip", "netns", "del", ns],
            ["ip", "netns", "del", f"nkt-{dead}"],
        ):
            subprocess.run(cmd, capture_output=True)
        if stack.exists():
            testrun._remove_tree(stack)


def test_the_lock_is_held_by_this_run() -> None:
    """Another process cannot take the kernel-wide lock while this run holds it."""
    probe = (
        "import socket; s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.bind(b'\\0nkplan-real-kernel-tests'); print('free')\n"
        "except OSError:\n    print('held')\n"
    )
    out = subprocess.run(["python3", "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "held"
