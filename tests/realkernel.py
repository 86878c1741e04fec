"""Independent observation of the kernel for real-kernel tests: iproute2's JSON output, never
nkplan's own reader. Names of a test run's objects carry TOKEN so snapshots can leave them out."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from typing import Any

TOKEN = os.environ.get("NKPLAN_TEST_TOKEN") or secrets.token_hex(2)


def ip_json(*args: str, ns: str | None = None, check: bool = True, tool: str = "ip") -> Any:
    """`TOOL -j [-n NS] ARGS...` parsed; on failure an AssertionError (check) or None. `tool` is
    an iproute2 `ip`: the host's, or Debian trixie's (tests/vm/trixie-ip) for netkit attributes."""
    cmd = [tool, "-j", *(["-n", ns] if ns else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        if check:
            raise AssertionError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
        return None
    return json.loads(proc.stdout or "[]")


def _volatile(obj: Any) -> Any:
    """Drop counters and timers that change on their own."""
    if isinstance(obj, dict):
        return {
            k: _volatile(v)
            for k, v in obj.items()
            if k not in ("stats64", "stats", "valid_life_time", "preferred_life_time", "operstate")
        }
    if isinstance(obj, list):
        return [_volatile(v) for v in obj]
    return obj


def _route_devices(route: dict[str, Any]) -> list[str]:
    return [d for d in (route.get("dev"), *(h.get("dev") for h in route.get("nexthops", []))) if d]


def host_snapshot(exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the host holds outside the test's own objects (names containing the run's token)."""

    def keep(name: str) -> bool:
        return TOKEN not in name and not any(name.startswith(p) for p in exclude)

    links = [_volatile(d) for d in ip_json("-d", "link", "show") if keep(d.get("ifname", ""))]
    addrs = [_volatile(d) for d in ip_json("addr", "show") if keep(d.get("ifname", ""))]
    # a multipath route names its devices in its nexthops only
    routes = [r for r in ip_json("route", "show", "table", "all") if all(keep(d) for d in _route_devices(r))]
    netns = sorted(n["name"] for n in ip_json("netns", "list") if keep(n["name"]))
    return {"links": links, "addrs": addrs, "routes": routes, "netns": netns}
