"""nkplan.kernel.bpf on netkit (inside the VM rig, each Debian kernel): programs on the primary
and peer hooks, both addressed through the primary's ifindex; trixie's bpftool (independent)
lists them on the right hooks; a counter counts a ping, the policy program drops pod → host
echo requests on the peer hook; LINK_UPDATE during a continuous ping loses no packet.

Python runs ~35x slower in the guest: one netkit pair for the module, made with trixie's `ip`
(no pyroute2 import), few Python round trips."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nkplan.core.records import HOST
from nkplan.errors import KernelError
from nkplan.kernel.bpf import bpffs, hooks, info, pins
from nkplan.kernel.bpf.hooks import HookRef
from nkplan.kernel.bpf.libbpf import BpfObject
from nkplan.kernel.bpf.mprog import Anchor
from nkplan.spec import objfile
from tests import bpfobserve as obs
from tests.host.conftest import Names, sweep_prefix

pytestmark = pytest.mark.netkit
TRIXIE_IP = str(Path(__file__).resolve().parents[1] / "vm" / "trixie-ip")
KEY0 = b"\0\0\0\0"
HOST_IP, POD_IP = "10.251.0.1", "10.251.0.2"


@dataclass
class Netkit(obs.Attachments):
    names: Names
    pod: str
    primary: str
    peer: str

    def attach(self, hook: str, o: BpfObject, program: str, **kw: object) -> int:
        return self.attach_at(HookRef(HOST, self.primary, hook), o, program, **kw)  # type: ignore[arg-type]


def tip(*args: str) -> None:
    proc = subprocess.run([TRIXIE_IP, *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"ip {' '.join(args)}: {proc.stderr}"


@pytest.fixture(scope="module")
def nk() -> Iterator[Netkit]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    names = Names()
    sweep_prefix(names.prefix)
    n = Netkit(names, names("p"), names("a"), names("b"))
    try:
        tip("netns", "add", n.pod)
        tip("link", "add", n.primary, "type", "netkit", "mode", "l3", "peer", "name", n.peer, "netns", n.pod)
        tip("addr", "add", f"{HOST_IP}/30", "dev", n.primary)
        tip("-n", n.pod, "addr", "add", f"{POD_IP}/30", "dev", n.peer)
        tip("link", "set", n.primary, "up")
        tip("-n", n.pod, "link", "set", n.peer, "up")
        assert obs.ping(POD_IP, count=1, wait=3) == (1, 1), "a bare netkit pair must pass a ping"
        yield n
    finally:
        for fd in n.fds:
            os.close(fd)
        for o in n.objects:
            o.close()
        bpffs.remove_tree(pins.stack_dir(names.stack))
        sweep_prefix(names.prefix)


def packets(o: BpfObject) -> int:
    return obs.counters(info.map_lookup(o.map_fds()["counters"], KEY0)[0])[0]  # type: ignore[index]


def test_programs_on_the_primary_and_peer_hooks(nk: Netkit) -> None:
    down, up = nk.load("count", "count_pass"), nk.load("count", "count_pass")
    p_link, q_link = nk.attach("primary", down, "count_pass"), nk.attach("peer", up, "count_pass")
    p_info, q_info = info.link_info(p_link), info.link_info(q_link)
    assert (p_info.hook, q_info.hook) == ("primary", "peer")
    assert p_info.ifindex == hooks.ifindex(HOST, nk.primary)
    assert q_info.ifindex == hooks.ifindex(nk.pod, nk.peer)  # a peer link reports the peer's ifindex
    assert hooks.query(HookRef(HOST, nk.primary, "primary")).link_ids == (p_info.id,)
    assert hooks.query(HookRef(HOST, nk.primary, "peer")).link_ids == (q_info.id,)

    # trixie's bpftool: listed under the primary's name, on the right hooks
    assert obs.hook_progs("netkit/primary", dev=nk.primary) == [("count_pass", p_info.prog_id, p_info.id)]
    assert obs.hook_progs("netkit/peer", dev=nk.primary) == [("count_pass", q_info.prog_id, q_info.id)]
    shown = obs.link_show(q_info.id, trixie=True)
    assert (shown["type"], shown["attach_type"], shown["prog_id"]) == ("netkit", "netkit_peer", q_info.prog_id)

    assert obs.ping(POD_IP, count=3) == (3, 3)
    assert packets(down) >= 3 and packets(up) >= 3  # requests host → pod; replies pod → host
    # bpftool reads the same map (bracketed: stray traffic may cross between two reads)
    map_id = info.map_info(down.map_fds()["counters"]).id
    low, seen, high = packets(down), obs.map_value(map_id)["packets"], packets(down)
    assert low <= seen <= high

    # pinned, the link is found again by its path
    pin = pins.link_pin(nk.names.stack, HOST, nk.primary, "primary", "count_pass", objfile.digest(obs.obj("count")))
    bpffs.pin(p_link, pin.path)
    assert bpffs.link_pins(nk.names.stack) == [pin]
    fd = bpffs.open_pin(pin.path)
    assert fd is not None
    nk.fds.append(fd)
    assert info.link_info(fd).id == p_info.id

    with pytest.raises(KernelError, match="only through the primary"):  # EACCES
        hooks.attach(HookRef(nk.pod, nk.peer, "peer"), down.program_fd("count_pass"))


def test_policy_on_the_peer_hook_drops_pod_echo_requests(nk: Netkit) -> None:
    policy = nk.load("pod_policy", "pod_egress")
    link = nk.attach("peer", policy, "pod_egress", anchor=Anchor.last())
    assert [name for name, *_ in obs.hook_progs("netkit/peer", dev=nk.primary)][-1] == "pod_egress"

    assert obs.ping(HOST_IP, ns=nk.pod, count=2, wait=1) == (2, 0)  # pod → host: dropped on the peer hook
    assert obs.ping(POD_IP, count=2) == (2, 2)  # host → pod: its replies are no requests
    hooks.detach(link, what="pod_egress")
    assert obs.ping(HOST_IP, ns=nk.pod, count=2) == (2, 2)


def test_link_update_during_a_continuous_ping_loses_nothing(nk: Netkit) -> None:
    a, b = nk.load("count", "count_pass"), nk.load("count", "count_pass")
    link = nk.attach("primary", a, "count_pass", anchor=Anchor.first())
    link_id = info.link_info(link).id
    fds = [a.program_fd("count_pass"), b.program_fd("count_pass")]

    ping = subprocess.Popen(
        ["ping", "-n", "-q", "-c", "60", "-i", "0.05", "-W", "3", POD_IP], stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.5)
    for i in range(6):  # swap back and forth while packets flow
        hooks.update(link, fds[(i + 1) % 2], old_prog_fd=fds[i % 2], what="count_pass")
        time.sleep(0.2)
    out, _ = ping.communicate(timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m and m.group(1) == m.group(2) == "60", out

    now = info.link_info(link)
    assert now.id == link_id and now.prog_id == info.prog_info(fds[0]).id  # six swaps: back on a
    assert obs.hook_progs("netkit/primary", dev=nk.primary)[0][1:] == (now.prog_id, link_id)
    assert packets(a) + packets(b) >= 60  # every request crossed one of the two
