"""LinuxKernel.set_programs / read() on netkit hooks (inside the VM rig, each Debian kernel):
programs on the primary and peer hooks (both addressed through the primary), read back in order
and listed on the right hooks by trixie's bpftool (independent); traffic shows they run; an
object change is swapped in place (same link, new program) while a continuous ping loses
nothing; removing them leaves no pins.

Lean on purpose (Python is ~35x slower in the guest): one pair for the module, made with
trixie's `ip` and marked owned by hand, few round trips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nkplan.core.records import HOST, HookRec, ProgramRec, owner_alias
from nkplan.kernel.bpf import bpffs, hooks, info, pins
from nkplan.kernel.bpf.hooks import HookRef
from nkplan.kernel.linux import LinuxKernel
from nkplan.spec import objfile
from tests import bpfobserve as obs
from tests.host.conftest import Names, sweep_prefix

pytestmark = pytest.mark.netkit
TRIXIE_IP = str(Path(__file__).resolve().parents[1] / "vm" / "trixie-ip")
HOST_IP, POD_IP = "10.252.0.1", "10.252.0.2"
KEY0 = b"\0\0\0\0"


def tip(*args: str) -> None:
    proc = subprocess.run([TRIXIE_IP, *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"ip {' '.join(args)}: {proc.stderr}"


def prog(program: str, path: str, pin_maps: bool = False) -> ProgramRec:
    return ProgramRec(program, objfile.digest(path)[:16], pin_maps=pin_maps, object=path)


@dataclass
class Pair:
    names: Names
    pod: str
    primary: str
    peer: str
    kernel: LinuxKernel

    def hook(self, hook: str, *progs: ProgramRec) -> HookRec:
        return HookRec(HOST, self.primary, hook, progs, self.names.stack)  # type: ignore[arg-type]

    def link_of(self, hook: str, p: ProgramRec) -> info.LinkInfo:
        pin = pins.link_pin(self.names.stack, HOST, self.primary, hook, p.program, p.digest)  # type: ignore[arg-type]
        fd = bpffs.open_pin(pin.path)
        assert fd is not None, pin.path
        try:
            return info.link_info(fd)
        finally:
            os.close(fd)


@pytest.fixture(scope="module")
def nk() -> Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    names = Names()
    sweep_prefix(names.prefix)
    p = Pair(names, names("p"), names("a"), names("b"), LinuxKernel())
    try:
        tip("netns", "add", p.pod)
        tip("link", "add", p.primary, "type", "netkit", "mode", "l3", "peer", "name", p.peer, "netns", p.pod)
        tip("link", "set", p.primary, "alias", owner_alias(names.stack, "primary"))
        tip("-n", p.pod, "link", "set", p.peer, "alias", owner_alias(names.stack, "peer"))
        tip("addr", "add", f"{HOST_IP}/30", "dev", p.primary)
        tip("-n", p.pod, "addr", "add", f"{POD_IP}/30", "dev", p.peer)
        tip("link", "set", p.primary, "up")
        tip("-n", p.pod, "link", "set", p.peer, "up")
        yield p
    finally:
        bpffs.remove_tree(pins.stack_dir(names.stack))
        sweep_prefix(names.prefix)


def test_set_programs_on_primary_and_peer_hooks(nk: Pair) -> None:
    count, policy = prog("count_pass", obs.obj("count"), pin_maps=True), prog("pod_egress", obs.obj("pod_policy"))
    primary, peer = nk.hook("primary", count), nk.hook("peer", count, policy)
    nk.kernel.set_programs(None, primary)
    nk.kernel.set_programs(None, peer)

    live = nk.kernel.read()
    assert live.hooks[(HOST, nk.primary, "primary")] == primary
    assert live.hooks[(HOST, nk.primary, "peer")] == peer
    assert [n for n, *_ in obs.hook_progs("netkit/primary", dev=nk.primary)] == ["count_pass"]
    shown = obs.hook_progs("netkit/peer", dev=nk.primary)
    assert [n for n, *_ in shown] == ["count_pass", "pod_egress"]
    assert [lid for *_, lid in shown] == [nk.link_of("peer", count).id, nk.link_of("peer", policy).id]

    assert obs.ping(POD_IP, count=3, wait=3) == (3, 3)  # replies are no echo requests
    assert obs.ping(HOST_IP, ns=nk.pod, count=2, wait=1) == (2, 0)  # the pod's requests: dropped
    maps = pins.link_pin(nk.names.stack, HOST, nk.primary, "primary", "count_pass", count.digest).maps_dir
    assert obs.pinned_value(f"{maps}/counters")["packets"] >= 3


def test_update_in_place_during_a_continuous_ping(nk: Pair, tmp_path: Path) -> None:
    count = prog("count_pass", obs.obj("count"), pin_maps=True)
    rebuilt = str(tmp_path / "count.o")
    shutil.copyfile(obs.obj("count"), rebuilt)
    with open(rebuilt, "ab") as fh:
        fh.write(b"\0")
    new = prog("count_pass", rebuilt, pin_maps=True)
    before, after = nk.hook("primary", count), nk.hook("primary", new)
    was = nk.link_of("primary", count)

    ping = subprocess.Popen(["ping", "-n", "-q", "-c", "60", "-i", "0.05", "-W", "3", POD_IP],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(0.5)
    nk.kernel.set_programs(before, after)
    out, _ = ping.communicate(timeout=120)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m and m.group(1) == m.group(2) == "60", out

    now = nk.link_of("primary", new)
    assert now.id == was.id and now.prog_id != was.prog_id
    assert obs.hook_progs("netkit/primary", dev=nk.primary) == [("count_pass", now.prog_id, now.id)]
    assert nk.kernel.read().hooks[(HOST, nk.primary, "primary")] == after


def test_removing_leaves_no_pins(nk: Pair) -> None:
    live = nk.kernel.read()
    for hook in ("primary", "peer"):
        nk.kernel.set_programs(live.hooks[(HOST, nk.primary, hook)], None)
        assert hooks.query(HookRef(HOST, nk.primary, hook)).entries == ()
    assert not os.path.exists(pins.stack_dir(nk.names.stack))
    assert obs.ping(HOST_IP, ns=nk.pod, count=1, wait=2) == (1, 1)
