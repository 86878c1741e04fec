"""Program globals on the host kernel (tcx on veth), through the real `nkplan` command: a
redirect whose target is a global, declared as a reference to a device. Shown by traffic (the
only path between the two pods is the redirect: the host does not forward) and by bpftool (the
program's .rodata as bpftool decodes it with BTF, link and program ids), not by nkplan's reader.

Topology: pods pa and pb, each behind a veth pair (va, vb on the host). Each pod's gateway is
10.234.0.1 (an address of va; the host answers ARP for it on both ends). Each host end's MAC is
the *other* pod's MAC, so a packet a pod sends to its gateway is addressed to the other pod:
the program at the host end's tcx ingress hands it with bpf_redirect_peer straight into the
other pod (and the other pod accepts it as its own). Without the redirect the host drops it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import bpfobserve as obs
from tests.host.test_cli_veth import Names, link, names, run, write

__all__ = ["names"]
pytestmark = pytest.mark.host
MAC_A, MAC_B = "02:00:00:00:0a:02", "02:00:00:00:0b:02"


def spec(n: Names, target_a: str, peer_b: str = "eth0", extra_a: str = "") -> str:
    prog = "{{object: redirect.o, program: redirect_to, globals: {{target_ifindex: {}, use_peer: true{}}}}}"
    return (
        f"stack: {n.stack}\nnamespaces: [{{name: {n.pa}}}, {{name: {n.pb}}}]\nlinks:\n"
        f"  - name: {n.va}\n    kind: veth\n    mac: '{MAC_B}'\n    addresses: [10.234.0.1/32]\n"
        f"    tcx: {{ingress: [{prog.format(target_a, extra_a)}]}}\n"
        f"    peer: {{name: eth0, namespace: {n.pa}, mac: '{MAC_A}', addresses: [10.234.1.2/32]}}\n"
        f"  - name: {n.vb}\n    kind: veth\n    mac: '{MAC_A}'\n"
        f"    tcx: {{ingress: [{prog.format('{ifindex: ' + n.va + '}', '')}]}}\n"
        f"    peer: {{name: {peer_b}, namespace: {n.pb}, mac: '{MAC_B}', addresses: [10.234.2.2/32]}}\n"
        "routes:\n"
        f"  - {{namespace: {n.pa}, to: default, via: 10.234.0.1, dev: eth0, onlink: true}}\n"
        f"  - {{namespace: {n.pb}, to: default, via: 10.234.0.1, dev: {peer_b}, onlink: true}}\n"
    )


@pytest.fixture
def objs(tmp_path: Path) -> Path:
    shutil.copy(obs.obj("redirect"), tmp_path / "redirect.o")
    return tmp_path


def at_ingress(dev: str) -> tuple[int, int]:
    """(link id, program id) of the one program at the host end's tcx ingress, per bpftool
    (the link pinned by nkplan, read with `bpftool link show pinned`)."""
    hook_dir = Path("/sys/fs/bpf/nkplan")
    (pin,) = [p for p in hook_dir.glob(f"*/*/{dev}/ingress/redirect_to@*") if not p.name.endswith("-maps")]
    shown = obs.bpftool("link", "show", "pinned", str(pin))
    return int(shown["id"]), int(shown["prog_id"])


def rodata(prog_id: int) -> dict[str, Any]:
    """The program's .rodata, as bpftool decodes it with the map's BTF."""
    for map_id in obs.bpftool("prog", "show", "id", str(prog_id))["map_ids"]:
        m = obs.bpftool("map", "show", "id", str(map_id))
        if m["name"].endswith(".rodata"):
            (entry,) = obs.bpftool("map", "dump", "id", str(map_id))
            return {k: v for var in entry["formatted"]["value"][".rodata"] for k, v in var.items()}
    raise AssertionError(f"program {prog_id} has no .rodata map")


def ingress_program(dev: str, program: str) -> tuple[Path, int]:
    """(link pin, program id per bpftool) of PROGRAM, which nkplan pinned at DEV's tcx ingress."""
    found = Path("/sys/fs/bpf/nkplan").glob(f"*/*/{dev}/ingress/{program}@*")
    (pin,) = [p for p in found if not p.name.endswith("-maps")]
    return pin, int(obs.bpftool("link", "show", "pinned", str(pin))["prog_id"])


def pod_to_pod(n: Names) -> int:
    """Echo replies pa gets from pb (3 requests)."""
    return obs.ping("10.234.2.2", ns=n.pa, count=3, interval="0.1", wait=1)[1]


def test_a_global_sets_the_redirect_target_and_follows_a_replaced_device(names: Names, objs: Path) -> None:
    n = names
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0", "the host must not forward"
    run("apply", write(objs, spec(n, "0")), "--yes")  # target 0: the program hands packets on
    link_a, prog_a = at_ingress(n.va)
    assert rodata(prog_a) == {"target_ifindex": 0, "use_peer": True}
    assert pod_to_pod(n) == 0  # no redirect, no path

    path = write(objs, spec(n, "{ifindex: " + n.vb + "}"))
    plan = run("plan", path).stdout
    assert "update redirect_to in place (globals changed: target_ifindex: 0 → {ifindex: " + n.vb + "})" in plan, plan
    run("apply", path, "--yes")
    link_now, prog_now = at_ingress(n.va)
    assert link_now == link_a and prog_now != prog_a  # swapped in place: BPF_LINK_UPDATE
    assert rodata(prog_now)["target_ifindex"] == link(n.vb)["ifindex"]
    assert pod_to_pod(n) == 3
    assert "No changes" in run("plan", path).stdout

    # vb is replaced (its peer renamed): va's program must learn vb's new ifindex in the same apply
    old_vb = link(n.vb)["ifindex"]
    path = write(objs, spec(n, "{ifindex: " + n.vb + "}", peer_b="eth1"))
    plan = run("plan", path).stdout
    assert f"ifindex of {n.vb} changes: device replaced" in plan, plan
    run("apply", path, "--yes")
    new_vb = link(n.vb)["ifindex"]
    assert new_vb != old_vb
    link_now, prog_now = at_ingress(n.va)
    assert link_now == link_a and rodata(prog_now)["target_ifindex"] == new_vb
    assert pod_to_pod(n) == 3
    assert "No changes" in run("plan", path).stdout


def test_bad_globals_change_nothing(names: Names, objs: Path) -> None:
    n = names
    path = write(objs, spec(n, "0"))
    run("apply", path, "--yes")
    before = at_ingress(n.va)
    bad = write(objs, spec(n, "{ifindex: nowhere}", extra_a=", hops: 3"), "bad.yaml")
    proc = run("apply", bad, "--yes", check=1)
    assert "bad.yaml:" in proc.stderr and "'nowhere' is not a device this spec declares" in proc.stderr
    assert "no global variable 'hops' (it has: target_ifindex, use_peer)" in proc.stderr
    assert at_ingress(n.va) == before


def test_a_data_global_changed_by_hand_is_drift_put_back_in_place(names: Names, tmp_path: Path) -> None:
    """tests/unit/data/values.c: `counter` lives in .data, which the kernel leaves writable."""
    n = names
    obj = obs.build(tmp_path, "values", (Path(__file__).parents[1] / "unit" / "data" / "values.c").read_text())
    text = (
        f"stack: {n.stack}\nnamespaces: [{{name: {n.pa}}}]\nlinks:\n"
        f"  - name: {n.va}\n    kind: veth\n"
        f"    tcx: {{ingress: [{{object: {Path(obj).name}, program: values, globals: {{counter: 9}}}}]}}\n"
        f"    peer: {{name: eth0, namespace: {n.pa}}}\n"
    )
    path = write(tmp_path, text)
    run("apply", path, "--yes")
    pin, prog_id = ingress_program(n.va, "values")
    (data_map,) = [
        m for m in obs.bpftool("prog", "show", "id", str(prog_id))["map_ids"]
        if obs.bpftool("map", "show", "id", str(m))["name"].endswith(".data")
    ]  # fmt: skip

    def counter() -> int:
        (entry,) = obs.bpftool("map", "dump", "id", str(data_map))
        return int(entry["formatted"]["value"][".data"][0]["counter"])

    assert counter() == 9
    value = [str(b) for b in (7).to_bytes(8, "little")]
    subprocess.run(["bpftool", "map", "update", "id", str(data_map), "key", "0", "0", "0", "0", "value", *value],
                   check=True)  # fmt: skip
    assert counter() == 7
    plan = run("plan", path).stdout
    assert "set globals of values changed outside nkplan (counter: 7 → 9)" in plan, plan
    drift = plan.split("The plan below")[0]  # the drift section, above the actions
    assert "changed outside nkplan: globals of values: counter: 7 → 9 (now → as applied)" in drift, plan
    run("apply", path, "--yes")
    assert counter() == 9
    assert int(obs.bpftool("link", "show", "pinned", str(pin))["prog_id"]) == prog_id  # written in place
    assert "No changes" in run("plan", path).stdout


# what another program run in the pod's namespace learns of it: its cookie (SO_NETNS_COOKIE) and
# a packet sent with a source address it does not have (a raw socket writes the whole IP header)
COOKIE = "import socket, struct; print(struct.unpack('=Q', socket.socket().getsockopt(1, 71, 8))[0])"
SPOOF = (
    "import socket, struct, sys\n"
    "src, dst = (socket.inet_aton(a) for a in sys.argv[1:3])\n"
    "icmp = struct.pack('!BBHHH', 8, 0, 0xf7ff, 0, 0)\n"
    "hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, src, dst)\n"
    "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).sendto(hdr + icmp, (sys.argv[2], 0))\n"
)


def in_ns(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True).stdout


def test_source_guard_knows_its_pod_by_declared_address_and_namespace_cookie(names: Names, tmp_path: Path) -> None:
    """bpf/source_guard.c: `pod_addr: {address: eth0, namespace: POD}` is the address the spec
    gives the pod's end, `pod_netns_cookie: {netns_cookie: POD}` the pod namespace's cookie,
    known only once it exists. Observed with bpftool (.rodata with BTF, the maps) and traffic."""
    n = names
    shutil.copy(obs.obj("source_guard"), tmp_path / "source_guard.o")
    refs = f"{{pod_addr: {{address: eth0, namespace: {n.pa}}}, pod_netns_cookie: {{netns_cookie: {n.pa}}}}}"
    text = (
        f"stack: {n.stack}\nnamespaces: [{{name: {n.pa}}}]\nlinks:\n"
        f"  - name: {n.va}\n    kind: veth\n    addresses: [10.235.0.1/32]\n"
        f"    tcx: {{ingress: [{{object: source_guard.o, program: source_guard, globals: {refs}}}]}}\n"
        f"    peer: {{name: eth0, namespace: {n.pa}, addresses: [10.235.1.2/32]}}\n"
        f"routes:\n  - {{namespace: {n.pa}, to: default, dev: eth0}}\n  - {{to: 10.235.1.2/32, dev: {n.va}}}\n"
    )
    path = write(tmp_path, text)
    run("apply", path, "--yes")
    _pin, prog_id = ingress_program(n.va, "source_guard")
    cookie = int(in_ns(n.pa, "python3", "-c", COOKIE))
    maps = {}
    for map_id in obs.bpftool("prog", "show", "id", str(prog_id))["map_ids"]:
        name = obs.bpftool("map", "show", "id", str(map_id))["name"]
        maps[name.split(".")[-1] if "." in name else name] = map_id
    (entry,) = obs.bpftool("map", "dump", "id", str(maps["rodata"]))
    held = {k: v for var in entry["formatted"]["value"][".rodata"] for k, v in var.items()}
    assert held["pod_netns_cookie"] == cookie
    assert held["pod_addr"] == int.from_bytes(bytes([10, 235, 1, 2]), "little")  # network order in memory

    assert obs.ping("10.235.0.1", ns=n.pa)[1] == 3  # the pod's own address passes
    in_ns(n.pa, "python3", "-c", SPOOF, "10.235.9.9", "10.235.0.1")
    assert obs.map_value(maps["spoofed"]) == 1
    last = obs.map_value(maps["last_spoof"])
    assert last["netns_cookie"] == cookie and last["saddr"] == int.from_bytes(bytes([10, 235, 9, 9]), "little")
    assert obs.ping("10.235.0.1", ns=n.pa)[1] == 3 and obs.map_value(maps["spoofed"]) == 1
    assert "No changes" in run("plan", path).stdout  # the cookie read back is the one it holds
