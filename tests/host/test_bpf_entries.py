"""Declared map entries on the host kernel (tcx on veth), through the real `nkplan` command: the
allow list of bpf/allow.c at a pod's egress. Each change of the list changes traffic as declared
(ping, TCP connect) with no program reload (the same program id, per bpftool), and the map holds
what bpftool dumps with BTF; an entry added by hand shows in the plan and goes on apply."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import bpfobserve as obs
from tests.host.test_cli_veth import NKPLAN, Names, names, run, write

__all__ = ["names"]
pytestmark = pytest.mark.host
HOST_IP = "10.235.0.1"


def spec(n: Names, entries: str, globals_: str = "") -> str:
    maps = f"maps: {{allow: {{exclusive: true, entries: [{entries}]}}}}"
    prog = f"{{object: allow.o, program: allow_egress, {maps}{', globals: ' + globals_ if globals_ else ''}}}"
    return (
        f"stack: {n.stack}\nnamespaces: [{{name: {n.pa}}}]\nlinks:\n"
        f"  - name: {n.va}\n    kind: veth\n    addresses: [{HOST_IP}/32]\n"
        f"    peer: {{name: eth0, namespace: {n.pa}, addresses: [10.235.1.2/32], tcx: {{egress: [{prog}]}}}}\n"
        f"routes:\n  - {{namespace: {n.pa}, to: default, dev: eth0}}\n  - {{to: 10.235.1.2/32, dev: {n.va}}}\n"
    )


def entry(addr: str, prefixlen: int = 32, port: int = 0) -> str:
    return f"{{key: {{prefixlen: {prefixlen}, addr: {addr}}}, value: {{port: {port}}}}}"


@pytest.fixture
def objs(tmp_path: Path) -> Path:
    shutil.copy(obs.obj("allow"), tmp_path / "allow.o")
    return tmp_path


@pytest.fixture
def listener() -> Iterator[None]:
    """TCP port 8080 listening on every host address (the test's own socket; nothing else changes)."""
    with socket.create_server(("0.0.0.0", 8080), backlog=16, reuse_port=True) as s:
        s.setblocking(False)
        yield


def link_pin(n: Names) -> Path:
    found = Path("/sys/fs/bpf/nkplan").glob(f"*/{n.pa}/eth0/egress/allow_egress@*")
    (pin,) = [p for p in found if "-maps" not in p.name]
    return pin


def link_and_program(n: Names) -> tuple[int, int]:
    """(link id, program id) of the link nkplan pinned at the pod's tcx egress, per bpftool."""
    shown = obs.bpftool("link", "show", "pinned", str(link_pin(n)))
    return int(shown["id"]), int(shown["prog_id"])


def program(n: Names) -> tuple[int, int]:
    """(program id, id of its `allow` map) of the program at the pod's tcx egress, per bpftool."""
    prog_id = link_and_program(n)[1]
    for map_id in obs.bpftool("prog", "show", "id", str(prog_id))["map_ids"]:
        if obs.bpftool("map", "show", "id", str(map_id))["name"] == "allow":
            return prog_id, int(map_id)
    raise AssertionError("the program has no map allow")


def pings(n: Names) -> int:
    return obs.ping(HOST_IP, ns=n.pa, count=2, interval="0.1", wait=1)[1]


def connects(n: Names, port: int) -> bool:
    code = f"import socket; socket.create_connection(('{HOST_IP}', {port}), timeout=1.5)"
    proc = subprocess.run(["ip", "netns", "exec", n.pa, sys.executable, "-c", code], capture_output=True)
    return proc.returncode == 0


def test_the_allow_list_changes_traffic_without_a_reload(names: Names, objs: Path, listener: None) -> None:
    n = names
    path = write(objs, spec(n, entry(HOST_IP)))
    run("apply", path, "--yes")
    prog_id, map_id = program(n)
    assert obs.allow_entries(map_id) == [(32, [10, 235, 0, 1], 0)]
    assert pings(n) == 2 and connects(n, 8080)

    path = write(objs, spec(n, entry("10.235.9.0", 24)))  # the host's address is no longer allowed
    assert (
        "map allow: + {prefixlen: 24, addr: 10.235.9.0} → {port: 0}, - 0x200000000aeb0001 (0x0000)"
        in run("plan", path).stdout
    )
    run("apply", path, "--yes")
    assert program(n) == (prog_id, map_id)  # the same program: only the map changed
    assert obs.allow_entries(map_id) == [(24, [10, 235, 9, 0], 0)]
    assert pings(n) == 0 and not connects(n, 8080)

    path = write(objs, spec(n, entry("10.235.0.0", 16, port=8080)))  # TCP to port 8080 only
    run("apply", path, "--yes")
    assert program(n) == (prog_id, map_id)
    assert obs.allow_entries(map_id) == [(16, [10, 235, 0, 0], 8080)]
    assert connects(n, 8080) and pings(n) == 0
    assert "No changes" in run("plan", path).stdout

    # an entry written by hand: the plan shows it, the apply removes it (exclusive)
    key = ["32", "0", "0", "0", "10", "235", "0", "1"]
    subprocess.run(["bpftool", "map", "update", "id", str(map_id), "key", *key, "value", "0", "0"], check=True)
    plan = run("plan", path).stdout
    drift = plan.split("The plan below")[0]  # the drift section, above the actions
    assert "changed outside nkplan: map allow: - 0x200000000aeb0001 (0x0000) (now → as applied)" in drift, plan
    run("apply", path, "--yes")
    assert obs.allow_entries(map_id) == [(16, [10, 235, 0, 0], 8080)] and pings(n) == 0


BIG_C = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u32);
} big SEC(".maps");
SEC("tc")
int big_next(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u32 *v = bpf_map_lookup_elem(&big, &key);
	return v && *v == 1 ? -1 : -1; /* TCX_NEXT either way: only the map matters here */
}
char LICENSE[] SEC("license") = "GPL";
"""


def big_spec(n: Names, maps: str) -> str:
    prog = f"{{object: big.o, program: big_next{maps}}}"
    return (
        f"stack: {n.stack}\nnamespaces: [{{name: {n.pa}}}]\nlinks:\n"
        f"  - name: {n.va}\n    kind: veth\n    peer: {{name: eth0, namespace: {n.pa}, tcx: {{egress: [{prog}]}}}}\n"
    )


READS = ("BPF_MAP_GET_NEXT_KEY", "BPF_MAP_LOOKUP_ELEM")


def map_syscalls(path: str, *how: str, cmds: tuple[str, ...] = READS) -> dict[str, int]:
    """BPF map commands a `nkplan plan` (or `nkplan HOW…`) makes, counted by strace (the
    kernel's view, not nkplan's)."""
    out = Path(path).parent / "strace.txt"
    argv = [*NKPLAN, *(how or ("plan",)), path]
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=bpf", "-o", str(out), *argv], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    text = out.read_text()
    return {cmd: text.count(f"bpf({cmd},") for cmd in cmds}


def test_declared_keys_of_a_big_busy_map_settle_and_a_plain_plan_reads_no_map(names: Names, tmp_path: Path) -> None:
    """A non-exclusive map with more entries than any reader should walk (8,000, as a datapath
    fills it): the declared key is looked up alone, the plan settles; a spec that declares no
    entries reads no map contents at all."""
    n = names
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", "-x", "c", "-",
                    "-o", str(tmp_path / "big.o")], input=BIG_C, text=True, check=True)  # fmt: skip
    declared = write(tmp_path, big_spec(n, ", maps: {big: {entries: [{key: 1, value: 7}]}}"))
    run("apply", declared, "--yes")
    (pin,) = [p for p in Path("/sys/fs/bpf/nkplan").glob(f"*/{n.pa}/eth0/egress/big_next@*") if "-maps" not in p.name]
    prog_id = obs.bpftool("link", "show", "pinned", str(pin))["prog_id"]
    (map_id,) = [m for m in obs.bpftool("prog", "show", "id", str(prog_id))["map_ids"]
                 if obs.bpftool("map", "show", "id", str(m))["name"] == "big"]  # fmt: skip
    batch = tmp_path / "fill.txt"
    batch.write_text("".join(
        f"map update id {map_id} key {' '.join(str(b) for b in k.to_bytes(4, 'little'))} value 0 0 0 0\n"
        for k in range(2, 8002)
    ))  # fmt: skip
    subprocess.run(["bpftool", "batch", "file", str(batch)], check=True, capture_output=True)
    assert len(obs.bpftool("map", "dump", "id", str(map_id))) == 8001
    assert "No changes" in run("plan", declared).stdout
    assert map_syscalls(declared) == {"BPF_MAP_GET_NEXT_KEY": 0, "BPF_MAP_LOOKUP_ELEM": 1}
    # the declared entry changed by hand: drift, found with that one lookup, put back
    subprocess.run(["bpftool", "map", "update", "id", str(map_id), "key", "1", "0", "0", "0", "value", "9", "0", "0",
                    "0"], check=True)  # fmt: skip
    assert "map big: ~ 1: 9 → 7" in run("plan", declared).stdout
    run("apply", declared, "--yes")
    assert "No changes" in run("plan", declared).stdout
    plain = write(tmp_path, big_spec(n, ""), "plain.yaml")
    assert "No changes" in run("plan", plain).stdout
    assert map_syscalls(plain) == {"BPF_MAP_GET_NEXT_KEY": 0, "BPF_MAP_LOOKUP_ELEM": 0}
    assert len(obs.bpftool("map", "dump", "id", str(map_id))) == 8001  # nothing of it deleted


def test_a_changed_global_swaps_the_program_under_a_ping_flood_without_loss(names: Names, objs: Path) -> None:
    """allow.c's `enforce` flips between true and false (both let the allowed host through) while
    the pod floods the host with pings every 2 ms: each apply loads a new program and swaps it in
    with BPF_LINK_UPDATE on the same link, and ping counts every request answered."""
    n = names
    path = write(objs, spec(n, entry(HOST_IP), "{enforce: true}"))
    run("apply", path, "--yes")
    link_id, prog_id = link_and_program(n)
    out = objs / "ping.out"
    cmd = ["ip", "netns", "exec", n.pa, "ping", "-n", "-i", "0.002", "-c", "4000", "-W", "2", HOST_IP]
    with out.open("w") as sink, subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT) as flood:
        try:
            while "bytes from" not in out.read_text():  # the flood is under way (ARP resolved)
                assert flood.poll() is None, out.read_text()
                time.sleep(0.05)
            seen = {prog_id}
            for enforce in ("false", "true"):
                path = write(objs, spec(n, entry(HOST_IP), "{enforce: " + enforce + "}"))
                assert (
                    f"globals changed: enforce: {'true' if enforce == 'false' else 'false'} → {enforce}"
                    in run("plan", path).stdout
                )
                run("apply", path, "--yes")
                assert flood.poll() is None, "the flood must outlast the swap (raise -c)"
                link_now, prog_now = link_and_program(n)
                assert link_now == link_id and prog_now not in seen  # a new program on the same link
                seen.add(prog_now)
            assert flood.wait(timeout=120) == 0
        finally:
            if flood.poll() is None:
                flood.kill()
    summary = re.search(r"(\d+) packets transmitted, (\d+) received, (\S+)% packet loss", out.read_text())
    assert summary, out.read_text()[-500:]
    assert summary.group(1) == summary.group(2) == "4000" and summary.group(3) == "0", summary.group(0)
    assert "No changes" in run("plan", path).stdout


def test_show_exports_values_and_a_revert_puts_them_back(names: Names, objs: Path, monkeypatch: Any) -> None:
    """`show FILE` names a program with globals and writes its values and declared entries as FILE
    does (its output plans to nothing); confirm-or-revert keeps such a stack, and an unconfirmed
    change of a global and the allow list goes back to the values and entries before, which the
    revert wrote from the running program's bytes (FILE then declares others)."""
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(objs / "run"))  # the watcher's files: this test's own
    n = names
    before = f"{entry(HOST_IP)}, {entry('10.235.9.0', 24, 8080)}"
    s1 = write(objs, spec(n, before, "{enforce: false}"), "s1.yaml")
    run("apply", s1, "--yes")
    prog1, map1 = program(n)
    want = obs.allow_entries(map1)
    shown = run("show", s1).stdout
    assert "<unknown object" not in shown and "enforce: false" in shown and "exclusive: true" in shown, shown
    assert "addr: 10.235.9.0" in shown and "port: 8080" in shown, shown
    assert "No changes" in run("plan", write(objs, shown, "shown.yaml")).stdout

    s2 = write(objs, spec(n, entry(HOST_IP, port=22), "{enforce: true}"), "s2.yaml")
    proc = run("apply", s2, "--yes", "--confirm-within", "3", check=1)
    assert "not confirmed within 3 s: reverted" in proc.stderr, proc.stderr
    prog_now, map_now = program(n)
    assert prog_now != prog1 and obs.allow_entries(map_now) == want  # another instance, the entries as before
    (ro,) = [
        m for m in obs.bpftool("prog", "show", "id", str(prog_now))["map_ids"]
        if obs.bpftool("map", "show", "id", str(m))["name"].endswith(".rodata")
    ]  # fmt: skip
    (held,) = obs.bpftool("map", "dump", "id", str(ro))
    assert held["formatted"]["value"][".rodata"] == [{"enforce": False}]
    run("plan", s1, "--detailed-exitcode")  # nkplan agrees: nothing to do


def test_entries_of_a_hash_map_go_in_one_batch(names: Names, tmp_path: Path) -> None:
    """A hash map's declared entries are written with one BPF_MAP_UPDATE_BATCH (strace), and the
    map holds them (bpftool); the next plan is empty."""
    n = names
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", "-x", "c", "-",
                    "-o", str(tmp_path / "big.o")], input=BIG_C, text=True, check=True)  # fmt: skip
    entries = ", ".join(f"{{key: {k}, value: {k * 10}}}" for k in range(1, 6))
    declared = write(tmp_path, big_spec(n, f", maps: {{big: {{entries: [{entries}]}}}}"))
    calls = map_syscalls(declared, "apply", "--yes", cmds=("BPF_MAP_UPDATE_BATCH", "BPF_MAP_UPDATE_ELEM"))
    assert calls["BPF_MAP_UPDATE_BATCH"] == 1, calls
    (pin,) = [p for p in Path("/sys/fs/bpf/nkplan").glob(f"*/{n.pa}/eth0/egress/big_next@*") if "-maps" not in p.name]
    prog_id = obs.bpftool("link", "show", "pinned", str(pin))["prog_id"]
    (map_id,) = [m for m in obs.bpftool("prog", "show", "id", str(prog_id))["map_ids"]
                 if obs.bpftool("map", "show", "id", str(m))["name"] == "big"]  # fmt: skip
    held = {e["formatted"]["key"]: e["formatted"]["value"] for e in obs.bpftool("map", "dump", "id", str(map_id))}
    assert held == {k: k * 10 for k in range(1, 6)}
    assert "No changes" in run("plan", declared).stdout
