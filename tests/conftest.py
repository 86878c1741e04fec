"""Guards shared by every real-kernel test run (host and VM): a decoy namespace and veth pair made
by hand, and the host's own devices, must come out of the whole run byte-for-byte unchanged."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests import testrun
from tests.realkernel import TOKEN, _volatile, host_snapshot, ip_json

# Documentation and shared-address blocks: the decoy takes the first one that nothing on the
# machine uses (a CI machine may itself sit in TEST-NET-1 with its gateway at 192.0.2.1)
DECOY_CANDIDATES = ("192.0.2.1/30", "198.51.100.1/30", "203.0.113.1/30", "100.127.253.1/30")


def free_decoy_subnet() -> str:
    """The first DECOY_CANDIDATES network that overlaps no address and no route of the host."""
    used = []
    for entry in ip_json("addr", "show"):
        for a in entry.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for r in ip_json("route", "show", "table", "all"):
        for key in ("dst", "gateway", "prefsrc"):
            value = r.get(key)
            if value and value != "default" and ":" not in value:
                used.append(ipaddress.ip_network(value if "/" in value else f"{value}/32", strict=False))
    for cand in DECOY_CANDIDATES:
        net = ipaddress.ip_network(cand, strict=False)
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return cand
    raise AssertionError(f"every decoy candidate overlaps this machine's networks: {DECOY_CANDIDATES}")


@pytest.fixture(scope="session")
def token() -> str:
    return TOKEN


@pytest.fixture(scope="session", autouse=True)
def decoy_untouched(request: pytest.FixtureRequest) -> Iterator[None]:
    """A hand-made namespace + veth pair (no nkplan marks) and the host's devices: compared
    before and after the whole session. Only armed for real-kernel runs (root)."""
    if os.geteuid() != 0 or not any(
        item.get_closest_marker("host") or item.get_closest_marker("netkit") for item in request.session.items
    ):
        yield
        return
    testrun.begin()  # one real-kernel run per kernel; what killed runs left is removed first
    decoy_ns, decoy_host, decoy_peer = f"decoy-{TOKEN}x", f"dcy{TOKEN}h", f"dcy{TOKEN}p"
    # the decoy's names carry the token, so compare it separately and fully
    decoy_addr = free_decoy_subnet()
    subprocess.run(["ip", "netns", "add", decoy_ns], check=True)
    subprocess.run(
        ["ip", "link", "add", decoy_host, "type", "veth", "peer", "name", decoy_peer, "netns", decoy_ns], check=True
    )
    subprocess.run(["ip", "addr", "add", decoy_addr, "dev", decoy_host], check=True)
    subprocess.run(["ip", "link", "set", decoy_host, "up"], check=True)

    def decoy() -> Any:
        return (
            _volatile(ip_json("-d", "link", "show", "dev", decoy_host)),
            _volatile(ip_json("addr", "show", "dev", decoy_host)),
            _volatile(ip_json("-d", "link", "show", ns=decoy_ns)),
        )

    before_host, before_decoy = host_snapshot(), decoy()
    try:
        yield
        after_host, after_decoy = host_snapshot(), decoy()
        assert after_decoy == before_decoy, "the hand-made decoy namespace/veth pair was changed"
        assert after_host == before_host, "host devices, addresses, routes or namespaces were changed"
    finally:
        subprocess.run(["ip", "link", "del", decoy_host], capture_output=True)
        subprocess.run(["ip", "netns", "del", decoy_ns], capture_output=True)
        testrun.end()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The test command sets NKPLAN_FORBID_SKIPS=1: there a skipped test (no root, no netkit, a
    missing dependency) fails the run loudly instead of passing quietly."""
    if os.environ.get("NKPLAN_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            print(f"\nFAIL: skipped, which this run forbids: {report.nodeid}: {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
