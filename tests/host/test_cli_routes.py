"""Routes of every kind on the host kernel, through the real `nkplan` command: tables, types,
scope, source, onlink, mtu and multipath. What the kernel holds is read with iproute2
(`ip -j route show table all`), not with nkplan's reader; a multipath route is shown to carry
traffic over both of its nexthops."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.host.test_cli_veth import Names, exists, names, netns, run, write
from tests.realkernel import ip_json

__all__ = ["names"]
pytestmark = pytest.mark.host
DESTS = [f"10.77.9.{i}" for i in range(1, 17)]  # spread over the nexthops by the kernel's hash


def spec(n: Names, table_type: str = "blackhole", weight: int = 1) -> str:
    dests = ", ".join(f"{d}/32" for d in DESTS)
    return textwrap.dedent(f"""\
        stack: {n.stack}
        namespaces: [{{name: {n.pa}}}, {{name: {n.pb}}}]
        links:
          - name: a1
            namespace: {n.pa}
            kind: veth
            addresses: [10.77.1.1/24]
            sysctls: {{ipv6.disable_ipv6: 1}}
            peer: {{name: b1, namespace: {n.pb}, addresses: [10.77.1.2/24, {dests}]}}
          - name: a2
            namespace: {n.pa}
            kind: veth
            addresses: [10.77.2.1/24]
            sysctls: {{ipv6.disable_ipv6: 1}}
            peer: {{name: b2, namespace: {n.pb}, addresses: [10.77.2.2/24]}}
          - {{name: {n.va}, kind: veth, addresses: ["fd00:77::1/64"], peer: {{name: eth0, namespace: {n.pa}}}}}
        routes:
          - {{namespace: {n.pa}, to: 10.77.9.0/24, nexthops: [{{via: 10.77.1.2, dev: a1, weight: {weight}}},
                                                           {{via: 10.77.2.2, dev: a2}}]}}
          - {{namespace: {n.pa}, to: 10.66.0.0/16, table: 100, type: {table_type}}}
          - {{namespace: {n.pa}, to: 10.55.0.0/24, via: 10.99.0.1, dev: a1, onlink: true, src: 10.77.1.1,
              mtu: 1400, table: 70000, metric: 5}}
          - {{namespace: {n.pa}, to: 10.44.0.0/24, dev: a2, scope: host}}
          - {{namespace: {n.pa}, to: 10.33.3.3/32, dev: a2, type: local}}
          - {{to: "fd00:78::/64", via: "fd00:77::2", dev: {n.va}, mtu: 1300}}
        """)


def routes(ns: str | None = None) -> dict[str, dict[str, Any]]:
    """Every nkplan route of a namespace (both families, all tables), keyed "table dst"."""
    out = {}
    for family in ("-4", "-6"):
        for r in ip_json(family, "-d", "route", "show", "table", "all", "proto", "237", ns=ns):
            out[f"{r.get('table', 'main')} {r['dst']}"] = r
    return out


def tx_packets(dev: str, ns: str) -> int:
    (link,) = ip_json("-s", "link", "show", "dev", dev, ns=ns)
    return int(link["stats64"]["tx"]["packets"])


def test_routes_of_every_kind_lifecycle_and_multipath_traffic(names: Names, tmp_path: Path) -> None:
    n = names
    path = write(tmp_path, spec(n))
    run("apply", path, "--yes")
    got = routes(n.pa)
    assert [(h["gateway"], h["dev"], h["weight"]) for h in got["main 10.77.9.0/24"]["nexthops"]] == [
        ("10.77.1.2", "a1", 1),
        ("10.77.2.2", "a2", 1),
    ]
    assert got["100 10.66.0.0/16"]["type"] == "blackhole"
    far = got["70000 10.55.0.0/24"]
    assert (far["gateway"], far["dev"], far["prefsrc"], far["metric"], far["flags"]) == (
        "10.99.0.1", "a1", "10.77.1.1", 5, ["onlink"]
    )  # fmt: skip
    assert far["metrics"] == [{"mtu": 1400}]
    assert got["main 10.44.0.0/24"]["scope"] == "host"
    assert (got["local 10.33.3.3"]["type"], got["local 10.33.3.3"]["scope"]) == ("local", "host")
    host6 = routes()["main fd00:78::/64"]
    assert (host6["gateway"], host6["dev"], host6["metrics"]) == ("fd00:77::2", n.va, [{"mtu": 1300}])
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout
    shown = run("show", "--stack", n.stack).stdout  # every kind of route exported, to no changes
    assert "table: 70000" in shown and "weight" not in shown and "type: local" in shown, shown
    assert "No changes" in run("plan", write(tmp_path, shown, "shown.yaml"), "--detailed-exitcode").stdout

    # traffic to 16 addresses behind the multipath route leaves through both nexthops
    before = [tx_packets(d, n.pa) for d in ("a1", "a2")]
    for dest in DESTS:
        subprocess.run(
            ["ip", "netns", "exec", n.pa, "ping", "-c", "3", "-i", "0.05", "-W", "1", dest],
            check=True,
            capture_output=True,
        )
    after = [tx_packets(d, n.pa) for d in ("a1", "a2")]
    assert all(b - a >= 3 for a, b in zip(before, after, strict=True)), (before, after)

    # changed by hand: a different type in table 100 is put back as an update in place
    subprocess.run(
        ["ip", "-n", n.pa, "route", "replace", "unreachable", "10.66.0.0/16", "table", "100", "proto", "237"],
        check=True,
    )
    doc = json.loads(run("plan", path, "--format", "json").stdout)
    changed = {
        c["address"]: c["change"]["actions"] for c in doc["resource_changes"] if c["change"]["actions"] != ["no-op"]
    }
    assert changed == {f"route[{n.pa} 10.66.0.0/16 table 100]": ["update"]}, changed
    run("apply", path, "--yes")
    assert routes(n.pa)["100 10.66.0.0/16"]["type"] == "blackhole"

    # the spec changes a weight and a type: both in place
    run("apply", write(tmp_path, spec(n, table_type="prohibit", weight=3)), "--yes")
    got = routes(n.pa)
    assert got["100 10.66.0.0/16"]["type"] == "prohibit"
    assert [h["weight"] for h in got["main 10.77.9.0/24"]["nexthops"]] == [3, 1]

    run("destroy", "--stack", n.stack, "--yes")
    assert n.pa not in netns() and not exists(n.va)
    assert "main fd00:78::/64" not in routes()


def test_replacing_a_devices_only_address_keeps_the_routes_through_it(names: Names, tmp_path: Path) -> None:
    """The kernel drops every route through a device that is left without an IPv4 address: an
    address swap adds the new one before it deletes the old one, so the route stays."""
    n = names

    def spec_(address: str) -> str:
        return textwrap.dedent(f"""\
            stack: {n.stack}
            namespaces: [{{name: {n.pa}}}]
            links:
              - {{name: {n.va}, kind: veth, peer: {{name: eth0, namespace: {n.pa}, addresses: [{address}]}}}}
            routes:
              - {{namespace: {n.pa}, to: 10.76.0.0/16, dev: eth0}}
            """)

    run("apply", write(tmp_path, spec_("10.75.0.2/24")), "--yes")
    run("apply", write(tmp_path, spec_("10.74.0.2/24")), "--yes")  # verify fails if the route went
    assert "main 10.76.0.0/16" in routes(n.pa)
    (eth0,) = ip_json("addr", "show", "dev", "eth0", ns=n.pa)
    assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == ["10.74.0.2"]


def test_a_route_goes_and_comes_back_with_the_device_holding_its_source(names: Names, tmp_path: Path) -> None:
    """The kernel drops a route whose `src` address disappears, even from another device: when
    that device is replaced (here: its peer moves to another namespace), the plan replaces the
    route with it, and the kernel holds it again afterwards."""
    n = names

    def spec_(peer_ns: str) -> str:
        return textwrap.dedent(f"""\
            stack: {n.stack}
            namespaces: [{{name: {n.pa}}}, {{name: {n.pb}}}]
            links:
              - {{name: {n.va}, kind: veth, addresses: [10.73.0.1/32], peer: {{name: eth0, namespace: {n.pa}}}}}
              - {{name: {n.vb}, kind: veth, addresses: [10.72.0.1/32], peer: {{name: eth1, namespace: {peer_ns}}}}}
            routes:
              - {{to: 10.71.0.0/24, dev: {n.va}, src: 10.72.0.1}}
            """)

    run("apply", write(tmp_path, spec_(n.pb)), "--yes")
    assert routes()["main 10.71.0.0/24"]["prefsrc"] == "10.72.0.1"
    out = run("apply", write(tmp_path, spec_(n.pa)), "--yes").stdout  # vb's peer moves: vb is replaced
    assert "-/+ route[10.71.0.0/24]" in out, out
    assert routes()["main 10.71.0.0/24"]["prefsrc"] == "10.72.0.1"
