"""nkplan.kernel.bpf on the host kernel (tcx, no netkit): real programs from bpf/build on a veth
pair whose peer lives in a namespace the test creates. Every effect is shown by traffic (ping)
and by an independent observer (bpftool; trixie's 7.5 for hook and order, where the rig's
observer root exists), not only by nkplan's own queries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nkplan.core.records import HOST
from nkplan.errors import KernelError
from nkplan.kernel.bpf import bpffs, hooks, info, libbpf, pins
from nkplan.kernel.bpf.errors import StaleHookError
from nkplan.kernel.bpf.hooks import HookRef
from nkplan.kernel.bpf.libbpf import BpfObject
from nkplan.kernel.bpf.mprog import Anchor
from nkplan.spec import objfile
from tests import bpfobserve as obs
from tests.host.conftest import Names

pytestmark = pytest.mark.host
KEY0 = b"\0\0\0\0"


@dataclass
class Pair(obs.Attachments):
    """Host end `host` (198.18.N.1, fd00:bf:N::1) ↔ `dev` (…2) inside namespace `pod`."""

    names: Names
    pod: str
    host: str
    dev: str
    host_ip: str
    pod_ip: str
    host_ip6: str
    pod_ip6: str

    def attach(self, hook: str, o: BpfObject, program: str, **kw: object) -> int:
        return self.attach_at(self.ref(hook), o, program, **kw)

    def ref(self, hook: str) -> HookRef:
        return HookRef(self.pod, self.dev, hook)  # type: ignore[arg-type]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def pair(ns: Names) -> Iterator[Pair]:
    n = int(ns.prefix[-2:], 16)
    p = Pair(ns, ns("p"), ns("h"), ns("q"), f"198.18.{n}.1", f"198.18.{n}.2", f"fd00:bf:{n:x}::1", f"fd00:bf:{n:x}::2")
    sh("ip", "netns", "add", p.pod)
    sh("ip", "link", "add", p.host, "type", "veth", "peer", "name", p.dev, "netns", p.pod)
    sh("ip", "addr", "add", f"{p.host_ip}/30", "dev", p.host)
    sh("ip", "addr", "add", f"{p.host_ip6}/64", "dev", p.host, "nodad")
    sh("ip", "-n", p.pod, "addr", "add", f"{p.pod_ip}/30", "dev", p.dev)
    sh("ip", "-n", p.pod, "addr", "add", f"{p.pod_ip6}/64", "dev", p.dev, "nodad")
    sh("ip", "link", "set", p.host, "up")
    sh("ip", "-n", p.pod, "link", "set", p.dev, "up")
    sh("ip", "-n", p.pod, "link", "set", "lo", "up")
    assert obs.ping(p.pod_ip, count=1, interval="0.2", wait=2) == (1, 1), "the bare pair must pass a ping"
    try:
        yield p
    finally:
        for fd in p.fds:
            os.close(fd)
        for o in p.objects:
            o.close()
        bpffs.remove_tree(pins.stack_dir(ns.stack))


def test_counter_counts_a_ping(pair: Pair) -> None:
    count = pair.load("count", "count_pass")
    pair.attach("ingress", count, "count_pass")
    map_fd = count.map_fds()["counters"]
    # not necessarily zero: the kernel's own IPv6 traffic (MLD reports after link up, at random
    # delays of up to a second) may already have crossed the hook
    packets0, nbytes0 = obs.counters(info.map_lookup(map_fd, KEY0)[0])  # type: ignore[index]

    assert obs.ping(pair.pod_ip, count=3) == (3, 3)

    packets, nbytes = obs.counters(info.map_lookup(map_fd, KEY0)[0])  # type: ignore[index]
    # 3 echo requests (14 + 20 + 8 + 56 bytes each), maybe ARP too
    assert packets - packets0 >= 3 and nbytes - nbytes0 >= 3 * 98
    map_id = info.map_info(map_fd).id
    # bpftool reads the same map: its reading lies between ours and a later one of ours (more
    # IPv6 traffic may cross the hook meanwhile)
    seen = obs.map_value(map_id)
    later, later_bytes = obs.counters(info.map_lookup(map_fd, KEY0)[0])  # type: ignore[index]
    assert packets <= seen["packets"] <= later and nbytes <= seen["bytes"] <= later_bytes
    if obs.have_trixie_bpftool():
        assert [name for name, *_ in obs.hook_progs("tcx/ingress", pair.pod, pair.dev)] == ["count_pass"]


def test_policy_drops_echo_requests_until_detached(pair: Pair) -> None:
    policy = pair.load("pod_policy", "pod_egress")
    link = pair.attach("egress", policy, "pod_egress")

    assert obs.ping(pair.host_ip, ns=pair.pod, count=2, wait=1) == (2, 0)  # IPv4 echo requests dropped
    assert obs.ping(pair.host_ip6, ns=pair.pod, count=2, wait=1) == (2, 0)  # IPv6 too
    assert obs.ping(pair.pod_ip, count=2) == (2, 2)  # replies are not requests: host → pod still works
    drops = int.from_bytes(info.map_lookup(policy.map_fds()["drops"], KEY0)[0], "little")  # type: ignore[index]
    # ≥: a drop at egress fails the send with ENOBUFS, and ping retries such sends
    assert drops >= 4
    assert obs.map_value(info.map_info(policy.map_fds()["drops"]).id) == drops

    hooks.detach(link, what="pod_egress")
    assert hooks.query(pair.ref("egress")).entries == ()
    assert obs.ping(pair.host_ip, ns=pair.pod, count=2) == (2, 2)
    assert obs.ping(pair.host_ip6, ns=pair.pod, count=2) == (2, 2)


def _egress_big_bytes(pair: Pair, count_obj: BpfObject) -> int:
    """Bytes count_pass saw while 3 large echo requests (1442 bytes each) left the pod."""
    fd = count_obj.map_fds()["counters"]
    before = obs.counters(info.map_lookup(fd, KEY0)[0])[1]  # type: ignore[index]
    subprocess.run(["ip", "netns", "exec", pair.pod, "ping", "-q", "-c3", "-i0.2", "-W1", "-s1400", pair.host_ip],
                   capture_output=True)  # fmt: skip
    return obs.counters(info.map_lookup(fd, KEY0)[0])[1] - before  # type: ignore[index]


def test_two_programs_in_declared_order(pair: Pair) -> None:
    count, policy = pair.load("count", "count_pass"), pair.load("pod_policy", "pod_egress")
    ref = pair.ref("egress")
    first = pair.attach("egress", count, "count_pass")
    count_link = info.link_info(first)
    pol = pair.attach("egress", policy, "pod_egress", anchor=Anchor("after", link_id=count_link.id))
    pol_prog = info.link_info(pol).prog_id

    state = hooks.query(ref)
    assert state.prog_ids == (count_link.prog_id, pol_prog)
    assert state.link_ids == (count_link.id, info.link_info(pol).id)
    if obs.have_trixie_bpftool():
        assert [n for n, *_ in obs.hook_progs("tcx/egress", pair.pod, pair.dev)] == ["count_pass", "pod_egress"]
    # traffic agrees: the counter runs before the drop, so it sees the echo requests
    assert _egress_big_bytes(pair, count) >= 3 * 1442

    # reorder: the policy before the counter (anchored on the program id this time)
    hooks.detach(pol, what="pod_egress")
    pair.attach("egress", policy, "pod_egress", anchor=Anchor("before", prog_id=count_link.prog_id))
    assert hooks.query(ref).prog_ids == (pol_prog, count_link.prog_id)
    if obs.have_trixie_bpftool():
        assert [n for n, *_ in obs.hook_progs("tcx/egress", pair.pod, pair.dev)] == ["pod_egress", "count_pass"]
    assert _egress_big_bytes(pair, count) < 1442  # dropped before the counter: not one large packet seen


def test_concurrent_change_is_stale_and_duplicates_are_refused(pair: Pair) -> None:
    ref = pair.ref("ingress")
    seen = hooks.query(ref)
    foreign = pair.load("count", "count_pass")  # "someone else" attaches meanwhile
    pair.attach("ingress", foreign, "count_pass")
    ours = pair.load("pod_policy", "pod_egress")

    with pytest.raises(StaleHookError) as stale:
        pair.attach("ingress", ours, "pod_egress", anchor=Anchor.last(), expected_revision=seen.revision)
    now = hooks.query(ref)
    assert stale.value.expected_revision == seen.revision and stale.value.current_revision == now.revision
    assert "changed concurrently" in str(stale.value) and f"tcx ingress of {pair.dev}" in str(stale.value)
    assert now.prog_ids == (info.prog_info(foreign.program_fd("count_pass")).id,)  # nothing of ours landed

    with pytest.raises(KernelError, match="already attached at this hook") as dup:
        pair.attach("ingress", foreign, "count_pass")
    assert dup.value.errno == 17

    with pytest.raises(KernelError, match=r"the anchor \(before link id 4000000000\) is not attached"):
        pair.attach("ingress", ours, "pod_egress", anchor=Anchor("before", link_id=4_000_000_000))
    with pytest.raises(KernelError, match="lack netkit"):  # the host kernel has no netkit
        hooks.attach(HookRef(HOST, pair.host, "primary"), ours.program_fd("pod_egress"))
    with pytest.raises(KernelError, match="does not exist"):
        hooks.query(HookRef(pair.names("nope"), "eth0", "ingress"))
    assert hooks.query(ref).revision == now.revision  # refusals changed nothing


_ATTACH_AND_EXIT = """
import json, sys
from nkplan.kernel.bpf import bpffs, hooks, info, libbpf, pins
from nkplan.spec import objfile
obj_path, stack, ns, dev = sys.argv[1:5]
with libbpf.load_program(obj_path, "count_pass") as obj:
    fd = hooks.attach(hooks.HookRef(ns, dev, "ingress"), obj.program_fd("count_pass"))
    pin = pins.link_pin(stack, ns, dev, "ingress", "count_pass", objfile.digest(obj_path))
    bpffs.pin(fd, pin.path)
    maps = bpffs.pin_maps(pin, obj.map_fds())
    print(json.dumps({"path": pin.path, "link_id": info.link_info(fd).id, "maps": maps}))
"""


def test_pinned_link_outlives_its_process(pair: Pair) -> None:
    obj_path = obs.obj("count")
    out = subprocess.run(
        [sys.executable, "-c", _ATTACH_AND_EXIT, obj_path, pair.names.stack, pair.pod, pair.dev],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    pin = pins.link_pin(pair.names.stack, pair.pod, pair.dev, "ingress", "count_pass", objfile.digest(obj_path))
    assert done["path"] == pin.path
    assert done["path"].startswith(f"/sys/fs/bpf/nkplan/{pair.names.stack}/{pair.pod}/{pair.dev}/ingress/count_pass@")

    # the process is gone; the pin holds the link, and the link the program
    state = hooks.query(pair.ref("ingress"))
    assert state.link_ids == (done["link_id"],)
    assert bpffs.link_pins(pair.names.stack) == [pin]
    fd = bpffs.open_pin(pin.path)
    assert fd is not None
    pair.fds.append(fd)
    held = info.link_info(fd)
    assert (held.id, held.hook, held.ifindex) == (done["link_id"], "ingress", hooks.ifindex(pair.pod, pair.dev))
    if obs.have_trixie_bpftool():
        assert obs.hook_progs("tcx/ingress", pair.pod, pair.dev)[0][2] == done["link_id"]
        assert obs.link_show(done["link_id"], trixie=True)["attach_type"] == "tcx_ingress"
    else:
        assert obs.link_show(done["link_id"])["prog_id"] == held.prog_id

    assert obs.ping(pair.pod_ip, count=2) == (2, 2)
    map_fd = bpffs.open_pin(done["maps"]["counters"])
    assert map_fd is not None
    pair.fds.append(map_fd)
    assert obs.counters(info.map_lookup(map_fd, KEY0)[0])[0] >= 2  # type: ignore[index]
    assert obs.pinned_value(done["maps"]["counters"])["packets"] >= 2

    # unpinning releases it: with no fd left (close ours first) the program comes off the hook
    pair.fds.remove(fd)
    os.close(fd)
    assert bpffs.unpin(pin.path) is True
    assert bpffs.link_pins(pair.names.stack) == []
    deadline = time.monotonic() + 5
    while hooks.query(pair.ref("ingress")).entries and time.monotonic() < deadline:
        time.sleep(0.05)  # the kernel frees an unpinned link in deferred work, a moment later
    assert hooks.query(pair.ref("ingress")).entries == ()


def test_link_update_swaps_the_program_in_place(pair: Pair) -> None:
    old, new = pair.load("count", "count_pass"), pair.load("pod_policy", "pod_egress")
    link = pair.attach("ingress", old, "count_pass")
    before, rev = info.link_info(link), hooks.query(pair.ref("ingress")).revision
    assert obs.ping(pair.pod_ip, count=1) == (1, 1)

    wrong = pair.load("count", "count_pass")
    with pytest.raises(KernelError, match="replaced concurrently"):
        hooks.update(link, new.program_fd("pod_egress"), old_prog_fd=wrong.program_fd("count_pass"))
    hooks.update(link, new.program_fd("pod_egress"), old_prog_fd=old.program_fd("count_pass"), what="count_pass")

    after = info.link_info(link)
    assert after.id == before.id and after.prog_id != before.prog_id
    assert after.prog_id == info.prog_info(new.program_fd("pod_egress")).id
    state = hooks.query(pair.ref("ingress"))
    assert state.entries[0].link_id == before.id and state.prog_ids == (after.prog_id,) and state.revision > rev
    shown = obs.link_show(before.id, trixie=obs.have_trixie_bpftool())
    assert shown["prog_id"] == after.prog_id
    assert obs.ping(pair.pod_ip, count=2, wait=1) == (2, 0)  # the policy now drops host → pod requests

    # removing a pinned link takes the program off the hook at once, though our fd is still open
    pin = pins.link_pin(pair.names.stack, pair.pod, pair.dev, "ingress", "pod_egress", "ab" * 8)
    bpffs.pin(link, pin.path)
    assert hooks.remove_pinned_link(pin.path) is True
    assert hooks.query(pair.ref("ingress")).entries == () and bpffs.link_pins(pair.names.stack) == []
    assert not os.path.exists(pins.stack_dir(pair.names.stack))  # empty directories pruned
    assert obs.ping(pair.pod_ip, count=1) == (1, 1)


def test_probe_finds_nothing_missing_as_root() -> None:
    from nkplan.kernel.bpf import probe

    assert probe.problems() == []
    code = "from nkplan.kernel.bpf import probe; print(probe.problems())"
    unprivileged = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--reuid=65534", sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "needs root (CAP_BPF and CAP_NET_ADMIN" in unprivileged


_ODD_PROGRAMS = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("tc") int reads_unchecked(struct __sk_buff *skb) { return *(int *)(long)skb->data; }
SEC("xdp") int not_tc(struct xdp_md *ctx) { return 2; }
SEC("netkit/primary") int newer_section(struct __sk_buff *skb) { return -1; }
char LICENSE[] SEC("license") = "GPL";
"""


def test_load_refusals_in_words(tmp_path: Path) -> None:
    from nkplan.errors import NkplanError
    from nkplan.kernel.bpf.errors import BpfObjectError, ProgramLoadError

    out = obs.build(tmp_path, "odd", _ODD_PROGRAMS)

    with pytest.raises(ProgramLoadError, match=r"loading reads_unchecked from .*odd.o: the verifier refused it:") as e:
        libbpf.load_program(out, "reads_unchecked")
    assert "invalid access to packet" in str(e.value) and "R1 offset is outside of the packet" in e.value.log
    with pytest.raises(BpfObjectError, match='program not_tc in .* is in section "xdp"'):
        libbpf.load_program(out, "not_tc")
    with pytest.raises(BpfObjectError, match=r"has no program nope \(it has: reads_unchecked, not_tc, newer_section\)"):
        libbpf.load_program(out, "nope")
    # a section libbpf 1.1 does not know loads as a tc (SCHED_CLS) program
    with libbpf.load_program(out, "newer_section") as obj:
        assert info.prog_info(obj.program_fd("newer_section")).type == 3
    for bad, why in ((tmp_path / "none.o", "no such file"), (Path(sys.executable), "not BPF")):
        with pytest.raises(NkplanError, match=why):
            libbpf.programs(str(bad))
