"""eBPF programs end to end on the host kernel (tcx on veth; the host has no netkit), through the
real `nkplan` command. Effects are shown by traffic (ping), by the counter map read with bpftool,
and by Debian trixie's bpftool listing the hook (independent of nkplan's reader)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from nkplan.kernel.bpf import hooks, libbpf
from nkplan.kernel.bpf.hooks import HookRef
from nkplan.kernel.bpf.mprog import Anchor
from tests import bpfobserve as obs
from tests.host.test_cli_veth import NKPLAN, Names, names, netns, run, write
from tests.realkernel import host_snapshot

__all__ = ["names"]
pytestmark = pytest.mark.host
COUNT = "{object: count.o, program: count_pass, pin_maps: true}"
POLICY = "{object: pod_policy.o, program: pod_egress}"
PINGS = 10  # echo requests per step: far more than the background traffic the counter also sees


def spec(n: Names, ingress: str) -> str:
    return (
        f"stack: {n.stack}\nnamespaces: [{{name: {n.pa}}}]\nlinks:\n"
        f"  - name: {n.va}\n    kind: veth\n    addresses: [10.232.0.1/32]\n"
        f"    peer: {{name: eth0, namespace: {n.pa}, addresses: [10.232.1.2/32], tcx: {{ingress: [{ingress}]}}}}\n"
        f"routes:\n  - {{namespace: {n.pa}, to: default, dev: eth0}}\n  - {{to: 10.232.1.2/32, dev: {n.va}}}\n"
    )


@pytest.fixture
def objs(tmp_path: Path) -> Path:
    for name in ("count", "pod_policy"):
        shutil.copy(obs.obj(name), tmp_path / f"{name}.o")
    return tmp_path


def at_ingress(n: Names) -> list[str]:
    return [name for name, _pid, _lid in obs.hook_progs("tcx/ingress", ns=n.pa, dev="eth0")]


def packets(n: Names) -> int:
    pin = Path(f"/sys/fs/bpf/nkplan/{n.stack}/{n.pa}/eth0/ingress")
    (maps,) = [p for p in pin.iterdir() if p.name.startswith("count_pass@") and p.name.endswith("-maps")]
    return int(obs.pinned_value(str(maps / "counters"))["packets"])


def test_counter_policy_order_and_removal(names: Names, objs: Path) -> None:
    n = names
    path = write(objs, spec(n, COUNT))
    run("apply", path, "--yes")
    assert at_ingress(n) == ["count_pass"]
    before = packets(n)
    assert obs.ping("10.232.1.2", count=3) == (3, 3)
    assert packets(n) >= before + 3  # the counter saw the pings cross the pair

    path = write(objs, spec(n, f"{COUNT}, {POLICY}"))
    plan = run("plan", path).stdout
    assert f"~ hook[{n.pa}/eth0 ingress]" in plan
    run("apply", path, "--yes")
    assert at_ingress(n) == ["count_pass", "pod_egress"]
    seen = packets(n)
    assert obs.ping("10.232.1.2", count=PINGS, interval="0.05")[1] == 0  # the policy drops echo requests
    assert packets(n) >= seen + PINGS  # ... after the counter counted them

    path = write(objs, spec(n, f"{POLICY}, {COUNT}"))
    assert "reorder: pod_egress, count_pass" in run("plan", path).stdout
    run("apply", path, "--yes")
    assert at_ingress(n) == ["pod_egress", "count_pass"]
    seen = packets(n)
    assert obs.ping("10.232.1.2", count=PINGS, interval="0.05")[1] == 0
    # Dropped before the counter now. Not `== seen`: the host end's own traffic (ARP probes, IPv6
    # neighbour discovery and MLD) still crosses the hook and is counted, a packet or two at a time.
    assert packets(n) < seen + PINGS

    path = write(objs, spec(n, COUNT))
    run("apply", path, "--yes")
    assert at_ingress(n) == ["count_pass"]
    assert obs.ping("10.232.1.2", count=2) == (2, 2)  # removal lets it pass again
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout


def test_foreign_program_is_left_alone_and_order_kept(names: Names, objs: Path) -> None:
    n = names
    path = write(objs, spec(n, f"{COUNT}, {POLICY}"))
    run("apply", path, "--yes")
    ref = HookRef(n.pa, "eth0", "ingress")
    with libbpf.load_program(obs.obj("count"), "count_pass") as theirs:  # someone else attaches a program
        link_fd = hooks.attach(ref, theirs.program_fd("count_pass"), anchor=Anchor.first())
        try:
            plan = run("plan", path).stdout
            assert "was attached by someone else; nkplan leaves it alone" in plan
            assert "(drift)" in plan and "attached outside nkplan (left attached)" in plan  # attached since the apply
            path = write(objs, spec(n, f"{POLICY}, {COUNT}"))
            run("apply", path, "--yes")
            progs = at_ingress(n)
            assert len(progs) == 3 and progs[1:] == ["pod_egress", "count_pass"], progs
        finally:
            hooks.detach(link_fd)
    assert at_ingress(n) == ["pod_egress", "count_pass"]


def test_programs_outlive_nkplan_and_out_of_band_detach_is_repaired(names: Names, objs: Path) -> None:
    n = names
    path = write(objs, spec(n, COUNT))
    proc = subprocess.Popen([*NKPLAN, "apply", path, "--yes"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Apply complete!"):
            proc.send_signal(signal.SIGKILL)  # killed right after apply
            break
    proc.wait()
    assert at_ingress(n) == ["count_pass"]  # the pins hold the links
    assert "No changes" in run("plan", path).stdout
    (_name, _pid, link_id) = obs.hook_progs("tcx/ingress", ns=n.pa, dev="eth0")[0]
    subprocess.run(["ip", "netns", "exec", n.pa, obs.TRIXIE_BPFTOOL, "link", "detach", "id", str(link_id)],
                   check=True)  # fmt: skip
    assert at_ingress(n) == []
    assert f"~ hook[{n.pa}/eth0 ingress]" in run("plan", path).stdout  # re-attach planned
    run("apply", path, "--yes")
    assert at_ingress(n) == ["count_pass"]


@pytest.mark.parametrize(
    "ingress,expected",
    [
        ("{object: missing.o, program: x}", "no such file"),
        ("{object: count.o, program: nope}", "has no program 'nope' (it has: count_pass)"),
        ("{object: spec.yaml, program: x}", "not an ELF object file"),
    ],
)
def test_bad_programs_change_nothing(names: Names, objs: Path, ingress: str, expected: str) -> None:
    path = write(objs, spec(names, ingress))
    before = host_snapshot(), netns()
    for cmd in ("validate", "plan", "apply"):
        proc = run(cmd, path, *(["--yes"] if cmd == "apply" else []), check=1)
        assert expected in proc.stderr and f"{path}:" in proc.stderr, proc.stderr
    assert (host_snapshot(), netns()) == before


def test_netkit_hook_on_veth_is_refused(names: Names, objs: Path) -> None:
    text = spec(names, COUNT).replace("    kind: veth\n", f"    kind: veth\n    programs: {{primary: [{COUNT}]}}\n")
    proc = run("validate", write(objs, text), check=1)
    assert "'programs' attaches to netkit hooks" in proc.stderr


def test_show_lists_programs_and_round_trips(names: Names, objs: Path) -> None:
    n = names
    path = write(objs, spec(n, f"{COUNT}, {POLICY}"))
    run("apply", path, "--yes")
    shown = run("show", path).stdout
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(shown)
    (listing,) = doc["x-nkplan-programs"]
    assert listing["hook"] == f"hook[{n.pa}/eth0 ingress]"
    kernel_view = {p[0]: p[1] for p in obs.hook_progs("tcx/ingress", ns=n.pa, dev="eth0")}
    for prog in listing["programs"]:
        assert prog["id"] == kernel_view[prog["name"]] and len(prog["tag"]) == 16 and len(prog["digest"]) == 16
    assert [p["name"] for p in listing["programs"]] == ["count_pass", "pod_egress"]
    assert "No changes" in run("plan", write(objs, shown)).stdout  # show round-trips with programs

    # a snapshot carries the programs as read from the kernel: an offline plan sees them too
    snap = objs / "snapshot.json"
    snap.write_text(run("show", "--stack", n.stack, "--format", "json").stdout)
    hooks = json.loads(snap.read_text())["x-nkplan-snapshot"]["hooks"]
    assert [[p["program"] for p in h["programs"]] for h in hooks] == [["count_pass", "pod_egress"]]
    assert [h["programs"][0]["maps"][0]["name"] for h in hooks] == ["counters"]  # count_pass's own map
    assert "No changes" in run("plan", path, "--state", str(snap)).stdout
    reordered = write(objs, spec(n, f"{POLICY}, {COUNT}"))
    offline = json.loads(run("plan", reordered, "--state", str(snap), "--format", "json").stdout)
    on_host = json.loads(run("plan", reordered, "--format", "json").stdout)
    assert offline["resource_changes"] == on_host["resource_changes"] and offline["summary"]["change"] == 1
