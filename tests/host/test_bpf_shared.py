"""Shared maps (`maps:`) and hook drift on the host kernel (tcx on veth), through the real `nkplan`
command. What the kernel holds is read with bpftool (map ids, pinned maps, map dumps) and
traffic, not with nkplan's reader."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import bpfobserve as obs
from tests.host.test_cli_veth import Names, names, netns, run, write

__all__ = ["names"]
pytestmark = pytest.mark.host
COUNT = "{object: count.o, program: count_pass}"
POLICY = "{object: pod_policy.o, program: pod_egress}"
COUNTERS = "maps:\n  counters: {type: array, key_size: 4, value_size: 16, max_entries: 1}\n"
PINGS = 10


def spec(n: Names, maps: str = COUNTERS, host: str = COUNT, pod: str = COUNT) -> str:
    """count_pass at both ends' tcx ingress: a ping's request crosses the pod end's, its reply the host end's."""
    return (
        f"stack: {n.stack}\n{maps}namespaces: [{{name: {n.pa}}}]\nlinks:\n"
        f"  - name: {n.va}\n    kind: veth\n    addresses: [10.233.0.1/32]\n    tcx: {{ingress: [{host}]}}\n"
        f"    peer: {{name: eth0, namespace: {n.pa}, addresses: [10.233.1.2/32], tcx: {{ingress: [{pod}]}}}}\n"
        f"routes:\n  - {{namespace: {n.pa}, to: default, dev: eth0}}\n  - {{to: 10.233.1.2/32, dev: {n.va}}}\n"
    )


@pytest.fixture
def objs(tmp_path: Path) -> Path:
    for name in ("count", "pod_policy"):
        shutil.copy(obs.obj(name), tmp_path / f"{name}.o")
    return tmp_path


def pin(n: Names) -> str:
    return f"/sys/fs/bpf/nkplan/{n.stack}/:maps/counters"


def packets(n: Names) -> int:
    """Key 0's packet count in the pinned shared map, from `bpftool map dump` (raw bytes: nkplan
    makes shared maps without BTF)."""
    (entry,) = obs.bpftool("map", "dump", "pinned", pin(n))
    return obs.counters(bytes(int(b, 16) for b in entry["value"]))[0]


def prog_maps(kind: str, ns: str | None, dev: str) -> list[int]:
    """The map ids of the one program at a hook, as bpftool shows them."""
    ((_name, prog_id, _link),) = obs.hook_progs(kind, ns=ns, dev=dev)
    return list(obs.bpftool("prog", "show", "id", str(prog_id)).get("map_ids", []))


def test_two_programs_count_into_one_shared_map(names: Names, objs: Path) -> None:
    n = names
    path = write(objs, spec(n))
    plan = run("plan", path).stdout
    assert "+ map[counters]" in plan
    run("apply", path, "--yes")
    shared = obs.pinned_map_id(pin(n))
    host_maps, pod_maps = prog_maps("tcx/ingress", None, n.va), prog_maps("tcx/ingress", n.pa, "eth0")
    assert shared in host_maps and shared in pod_maps, (shared, host_maps, pod_maps)
    before = packets(n)
    assert obs.ping("10.233.1.2", count=PINGS, interval="0.05") == (PINGS, PINGS)
    # each echo request crosses the pod end's ingress and each reply the host end's: one map sees both
    assert packets(n) >= before + 2 * PINGS
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout

    # the last user going keeps the map, and what it counted
    path = write(objs, spec(n, host=POLICY, pod=POLICY))
    assert "map[counters]" not in run("plan", path).stdout
    run("apply", path, "--yes")
    assert obs.pinned_map_id(pin(n)) == shared
    assert packets(n) >= before + 2 * PINGS

    # a program coming back uses it again, counts and all
    path = write(objs, spec(n, pod=POLICY))
    run("apply", path, "--yes")
    assert shared in prog_maps("tcx/ingress", None, n.va)

    # no longer declared: the pin goes
    path = write(objs, spec(n, maps="", pod=POLICY))
    assert "- map[counters]" in run("plan", path).stdout
    run("apply", path, "--yes")
    assert not os.path.exists(pin(n))
    assert shared not in prog_maps("tcx/ingress", None, n.va)  # the program runs with a map of its own again
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout


def test_bad_shared_maps_change_nothing(names: Names, objs: Path) -> None:
    n = names
    mismatch = "maps:\n  counters: {type: hash, key_size: 4, value_size: 16, max_entries: 64}\n"
    unknown = "maps:\n  counters: {like: 'count.o:nosuch'}\n"
    for maps, words in (
        (mismatch, ["defines map 'counters' as array", "but the shared map 'counters' declared at", ":3:3 is hash"]),
        (unknown, ["unknown map 'nosuch'", "it has: counters"]),
    ):
        path = write(objs, spec(n, maps=maps))
        for cmd in (["plan", path], ["apply", path, "--yes"]):
            proc = run(*cmd, check=1)
            assert f"{path}:" in proc.stderr and all(w in proc.stderr for w in words), proc.stderr
    assert not os.path.exists(f"/sys/fs/bpf/nkplan/{n.stack}")
    assert n.pa not in netns()
    assert run("plan", write(objs, spec(n)), "--detailed-exitcode", check=2).returncode == 2  # nothing was made


def test_hook_drift_is_shown_and_repaired(names: Names, objs: Path) -> None:
    """Each change made outside nkplan with bpftool or the test's own libbpf: in the drift section
    of `plan` (text and JSON), repaired by apply, and the next plan is empty."""
    import json

    from nkplan.kernel.bpf import hooks, libbpf
    from nkplan.kernel.bpf.hooks import HookRef
    from nkplan.kernel.bpf.mprog import Anchor

    n = names
    path = write(objs, spec(n, maps="", pod=f"{COUNT}, {POLICY}"))
    run("apply", path, "--yes")
    hook = f"hook[{n.va} ingress]"

    def drift() -> list[tuple[str, list[str]]]:
        doc = json.loads(run("plan", path, "--format", "json").stdout)
        return [(c["address"], c["change"].get("changed_paths", [])) for c in doc["resource_drift"]]

    # 1. a managed program detached outside nkplan
    ((_name, _prog, link_id),) = obs.hook_progs("tcx/ingress", dev=n.va)
    obs.bpftool("link", "detach", "id", str(link_id))
    assert obs.hook_progs("tcx/ingress", dev=n.va) == []
    text = run("plan", path).stdout
    assert "Objects changed outside nkplan since the last apply (drift):" in text and f"~ {hook}" in text, text
    assert [a for a, _ in drift()] == [hook]
    run("apply", path, "--yes")
    assert [p[0] for p in obs.hook_progs("tcx/ingress", dev=n.va)] == ["count_pass"]
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout

    # 2. an orphan pin in the stack's bpffs tree
    stray = f"/sys/fs/bpf/nkplan/{n.stack}/stray"
    obs.bpftool("map", "create", stray, "type", "array", "key", "4", "value", "4", "entries", "1", "name", "stray")
    text = run("plan", path).stdout
    assert "~ pin[stray]" in text and "pinned outside nkplan; no declared program, map or rule owns it" in text, text
    assert [a for a, _ in drift()] == ["pin[stray]"]
    run("apply", path, "--yes")
    assert not os.path.exists(stray)
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout

    # 3. a program someone else attaches at a managed hook: drift, acknowledged, never detached
    ref = HookRef(n.pa, "eth0", "ingress")
    with libbpf.load_program(obs.obj("count"), "count_pass") as theirs:
        link_fd = hooks.attach(ref, theirs.program_fd("count_pass"), anchor=Anchor.first())
        try:
            pod_hook = f"hook[{n.pa}/eth0 ingress]"
            assert drift() == [(pod_hook, ["foreign"])]
            text = run("plan", path).stdout
            assert "acknowledge count_pass (id" in text and "attached outside nkplan (left attached)" in text, text
            run("apply", path, "--yes")
            progs = [p[0] for p in obs.hook_progs("tcx/ingress", ns=n.pa, dev="eth0")]
            assert progs == ["count_pass", "count_pass", "pod_egress"], progs  # theirs first, ours in order
            assert "No changes" in run("plan", path, "--detailed-exitcode").stdout
        finally:
            hooks.detach(link_fd)
