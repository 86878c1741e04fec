"""End to end on the host kernel, through the real `nkplan` command: plan, apply, re-plan,
in-place updates, replaces, deletes, adoption, bad input. Every check reads the kernel with
iproute2 (`ip -j`), independently of nkplan's own reader."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.realkernel import host_snapshot, ip_json
from tests.unit.test_loader import CASES as LOADER_CASES

pytestmark = pytest.mark.host
NKPLAN = [sys.executable, "-m", "nkplan.cli"]


def run(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*NKPLAN, *args], capture_output=True, text=True, timeout=120)
    if check is not None:
        assert proc.returncode == check, f"nkplan {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


class Names:
    def __init__(self, token: str) -> None:
        self.stack = f"e2e-{token}"
        self.pa, self.pb = f"pa-{token}", f"pb-{token}"
        self.va, self.vb, self.vc = f"va-{token}", f"vb-{token}", f"vc-{token}"


def spec_text(n: Names, **over: str) -> str:
    parts = {
        "namespaces": f"  - name: {n.pa}\n  - name: {n.pb}\n",
        "va": textwrap.dedent(f"""\
          - name: {n.va}
            kind: veth
            mtu: 1400
            addresses: [10.231.0.1/32]
            peer: {{name: eth0, namespace: {n.pa}, addresses: [10.231.1.2/32, "fd00:231::2/128"]}}
        """),
        "vb": textwrap.dedent(f"""\
          - name: {n.vb}
            kind: veth
            mac: "02:00:00:00:0b:01"
            peer: {{name: eth0, namespace: {n.pb}, mac: "02:00:00:00:0b:02", addresses: [10.231.2.2/24]}}
        """),
        "vc": f"  - {{name: {n.vc}, kind: veth, peer: {{name: eth1, namespace: {n.pb}}}}}\n",
        "routes": f"  - {{namespace: {n.pa}, to: default, dev: eth0}}\n  - {{to: 10.231.1.2/32, dev: {n.va}}}\n",
    }
    for key in ("va", "vb"):
        parts[key] = textwrap.indent(parts[key], "  ")
    parts.update(over)
    links = "".join(parts[k] for k in ("va", "vb", "vc"))
    return (
        f"stack: {n.stack}\nnamespaces:\n{parts['namespaces'] or '  []'}\nlinks:\n{links or '  []'}\n"
        f"routes:\n{parts['routes'] or '  []'}\n"
    ).replace(":\n  []", ": []")


@pytest.fixture
def names(token: str, tmp_path: Path) -> Iterator[Names]:
    n = Names(token)
    yield n
    # Always clean up, also when the test failed: first through nkplan, then by hand.
    subprocess.run([*NKPLAN, "destroy", "--stack", n.stack, "--yes", "-q"], capture_output=True, timeout=120)
    for ns in (n.pa, n.pb):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for dev in (n.va, n.vb, n.vc):
        subprocess.run(["ip", "link", "del", dev], capture_output=True)


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def link(dev: str, ns: str | None = None) -> dict[str, Any]:
    found = ip_json("-d", "link", "show", "dev", dev, ns=ns)
    assert len(found) == 1
    return found[0]  # type: ignore[no-any-return]


def addrs(dev: str, ns: str | None = None) -> list[str]:
    out = []
    for entry in ip_json("addr", "show", "dev", dev, ns=ns):
        for a in entry.get("addr_info", []):
            if not a["local"].startswith("fe80:"):
                out.append(f"{a['local']}/{a['prefixlen']}")
    return sorted(out)


def exists(dev: str, ns: str | None = None) -> bool:
    cmd = ["ip", *(["-n", ns] if ns else []), "link", "show", "dev", dev]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def netns() -> set[str]:
    return {n["name"] for n in ip_json("netns", "list")}


def test_full_lifecycle(names: Names, tmp_path: Path) -> None:
    n = names
    path = write(tmp_path, spec_text(n))
    run("validate", path)
    plan = run("plan", path, "--detailed-exitcode", check=2)
    assert "Plan: 7 to add, 0 to change, 0 to destroy." in plan.stdout
    applied = run("apply", path, "--yes")
    assert "Apply complete!" in applied.stdout

    # the kernel, read by iproute2
    assert {n.pa, n.pb} <= netns()
    va, peer = link(n.va), link("eth0", n.pa)
    assert va["linkinfo"]["info_kind"] == "veth" and peer["linkinfo"]["info_kind"] == "veth"
    assert va["mtu"] == 1400 and peer["mtu"] == 1400  # the peer inherits the link's mtu
    assert "UP" in va["flags"] and "UP" in peer["flags"]
    assert addrs(n.va) == ["10.231.0.1/32"]
    assert addrs("eth0", n.pa) == ["10.231.1.2/32", "fd00:231::2/128"]
    assert link(n.vb)["address"] == "02:00:00:00:0b:01"
    assert link("eth0", n.pb)["address"] == "02:00:00:00:0b:02"
    assert exists("eth1", n.pb)
    routes = ip_json("route", "show", "dev", n.va)
    assert any(r["dst"] == "10.231.1.2" and str(r.get("protocol")) == "237" for r in routes), routes
    assert any(r["dst"] == "default" for r in ip_json("route", "show", ns=n.pa))

    # a packet crosses the pair
    ping = subprocess.run(["ping", "-c", "1", "-W", "3", "10.231.1.2"], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    # idempotent
    again = run("plan", path, "--detailed-exitcode", check=0)
    assert "No changes" in again.stdout
    assert "No changes" in run("apply", path, "--yes").stdout

    # show round-trips to no changes
    shown = run("show", "--stack", n.stack).stdout
    assert "No changes" in run("plan", write(tmp_path, shown)).stdout

    # mtu and addresses change in place
    path = write(
        tmp_path,
        spec_text(n).replace("mtu: 1400", "mtu: 1300").replace("[10.231.0.1/32]", "[10.231.0.1/32, 10.231.0.9/32]"),
    )
    plan = run("plan", path).stdout
    assert f"~ link[{n.va}]" in plan and "primary.mtu: 1400 → 1300" in plan
    va_index = link(n.va)["ifindex"]
    run("apply", path, "--yes")
    assert link(n.va)["mtu"] == 1300 and link("eth0", n.pa)["mtu"] == 1300
    assert addrs(n.va) == ["10.231.0.1/32", "10.231.0.9/32"]
    assert link(n.va)["ifindex"] == va_index, "an in-place update must not recreate the device"

    # a veth's MAC changes in place too (both ends), the device kept
    path = write(
        tmp_path,
        spec_text(n)
        .replace("mtu: 1400", "mtu: 1300")
        .replace("[10.231.0.1/32]", "[10.231.0.1/32, 10.231.0.9/32]")
        .replace("02:00:00:00:0b:01", "02:00:00:00:0c:01")
        .replace("02:00:00:00:0b:02", "02:00:00:00:0c:02"),
    )
    plan = run("plan", path).stdout
    assert f"~ link[{n.vb}]" in plan and "-/+" not in plan and "forces replacement" not in plan, plan
    assert 'primary.mac: "02:00:00:00:0b:01" → "02:00:00:00:0c:01"' in plan
    vb_index = link(n.vb)["ifindex"]
    run("apply", path, "--yes")
    assert link(n.vb)["address"] == "02:00:00:00:0c:01" and link("eth0", n.pb)["address"] == "02:00:00:00:0c:02"
    assert link(n.vb)["ifindex"] == vb_index, "a MAC change must not recreate the device"
    assert "No changes" in run("plan", path).stdout

    # moving a peer to another namespace is a replace, with its reason
    moved = spec_text(n, vc=f"  - {{name: {n.vc}, kind: veth, peer: {{name: eth1, namespace: {n.pa}}}}}\n")
    moved = moved.replace("0b:01", "0c:01").replace("0b:02", "0c:02")
    path = write(
        tmp_path, moved.replace("mtu: 1400", "mtu: 1300").replace("[10.231.0.1/32]", "[10.231.0.1/32, 10.231.0.9/32]")
    )
    plan = run("plan", path).stdout
    assert f"-/+ link[{n.vc}]  (the peer cannot move to another namespace in place)" in plan
    assert "# forces replacement" in plan
    run("apply", path, "--yes")
    assert exists("eth1", n.pa) and not exists("eth1", n.pb)

    # removing a link deletes both ends; removing a namespace deletes it and what it held
    path = write(tmp_path, spec_text(n, namespaces=f"  - name: {n.pa}\n", vb="", vc=""))
    plan = run("plan", path).stdout
    assert f"- link[{n.vb}]" in plan and f"- namespace[{n.pb}]" in plan
    run("apply", path, "--yes")
    assert not exists(n.vb) and not exists(n.vc) and n.pb not in netns()
    assert exists(n.va) and n.pa in netns()

    run("destroy", path, "--yes")
    assert not exists(n.va) and n.pa not in netns()


def test_hand_made_objects_are_refused_then_adopted(names: Names, tmp_path: Path) -> None:
    n = names
    subprocess.run(["ip", "netns", "add", n.pa], check=True)
    path = write(tmp_path, spec_text(n, vb="", vc="", namespaces=f"  - name: {n.pa}\n"))
    before = host_snapshot()
    proc = run("plan", path, check=1)
    assert f"namespace '{n.pa}' already exists and is not managed by nkplan" in proc.stderr
    assert ":3:" in proc.stderr  # file:line:col of the declaration
    run("apply", path, "--yes", check=1)
    assert host_snapshot() == before
    plan = run("plan", path, "--adopt").stdout
    assert f"~ namespace[{n.pa}]" in plan
    run("apply", path, "--yes", "--adopt")
    assert "No changes" in run("plan", path).stdout


@pytest.mark.parametrize("bad,expected", [(t, e) for _, t, e in LOADER_CASES], ids=[c[0] for c in LOADER_CASES])
def test_bad_input_changes_nothing(bad: str, expected: str, tmp_path: Path, names: Names) -> None:
    """Every bad input of the loader's table, through `nkplan apply --yes`: located error, exit 1,
    no traceback, and the kernel exactly as it was."""
    path = write(tmp_path, bad)
    before = host_snapshot(), netns()
    proc = run("apply", path, "--yes", check=1)
    assert expected.replace("t.yaml", path) in proc.stderr or expected in proc.stderr, proc.stderr
    assert f"{path}:" in proc.stderr and "Traceback" not in proc.stderr
    assert (host_snapshot(), netns()) == before


def host_has_netkit() -> bool:
    probe = subprocess.run(["unshare", "-n", "ip", "link", "add", "nkprobe", "type", "netkit"], capture_output=True)
    return probe.returncode == 0


def test_netkit_spec_on_this_host(names: Names, tmp_path: Path) -> None:
    """Without CONFIG_NETKIT, a netkit spec fails at plan time with the capability message and
    changes nothing; a veth-only spec still plans. (On a host with netkit, it plans.)"""
    n = names
    text = f"stack: {n.stack}\nlinks:\n  - {{name: {n.va}, kind: netkit, peer: {{name: {n.vb}}}}}\n"
    path = write(tmp_path, text)
    before = host_snapshot()
    if host_has_netkit():
        assert "Plan: 1 to add" in run("plan", path).stdout
        return
    proc = run("plan", path, check=1)
    assert f"{path}:3:27:" in proc.stderr and "has no netkit support (CONFIG_NETKIT)" in proc.stderr, proc.stderr
    run("apply", path, "--yes", check=1)
    assert host_snapshot() == before
    veth = path.replace("spec.yaml", "veth.yaml")
    Path(veth).write_text(text.replace("kind: netkit", "kind: veth"))
    assert "Plan: 1 to add" in run("plan", veth).stdout


def test_lock_held_is_a_clear_error(names: Names, tmp_path: Path) -> None:
    path = write(tmp_path, spec_text(names, vb="", vc=""))
    lockdir = Path(os.environ.get("NKPLAN_LOCK_DIR", "/run/nkplan"))
    lockdir.mkdir(parents=True, exist_ok=True)
    with open(lockdir / f"{names.stack}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        proc = run("apply", path, "--yes", check=4)
    assert "is locked by another nkplan process" in proc.stderr
    assert names.pa not in netns()


def test_without_capabilities_is_a_clear_error(tmp_path: Path, names: Names) -> None:
    """Root without CAP_NET_ADMIN/CAP_SYS_ADMIN (bounding set cleared): plan refuses in words;
    validate needs no privileges at all."""
    path = write(tmp_path, spec_text(names, vb="", vc=""))
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]
    proc = subprocess.run([*drop, *NKPLAN, "plan", path], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "nkplan needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([*drop, *NKPLAN, "validate", path], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
