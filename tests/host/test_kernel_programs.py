"""LinuxKernel's BPF programs on the host kernel (tcx on a veth pair whose peer lives in a
namespace the test creates, both ends marked owned by hand with iproute2): set_programs and
read() against PROG_QUERY, trixie's bpftool where the rig's observer root exists, map counters
and traffic. Order as declared after create, reorder and a foreign attach; update in place
(same link, new program); out-of-band detach re-attached; concurrent changes refused with
nothing of ours left behind; pins removed with their device."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nkplan.core.plan import Operation, Plan
from nkplan.core.records import HOST, ForeignProgram, HookRec, MapDef, ProgramRec, RouteRec, owner_alias
from nkplan.core.resources.hook import describe_programs
from nkplan.errors import KernelError
from nkplan.kernel.bpf import bpffs, hooks, info, libbpf, pins
from nkplan.kernel.bpf.errors import StaleHookError
from nkplan.kernel.bpf.hooks import HookRef
from nkplan.kernel.bpf.libbpf import BpfObject
from nkplan.kernel.bpf.mprog import Anchor, HookState
from nkplan.kernel.linux import LinuxKernel
from nkplan.kernel.seam import ApplySession
from nkplan.run.applier import ApplyFailed, apply_plan
from nkplan.spec import objfile
from tests import bpfobserve as obs
from tests.host.conftest import Names

pytestmark = pytest.mark.host
REPO = Path(__file__).resolve().parents[2]
KEY0 = b"\0\0\0\0"
BPF_MAP_TYPE_ARRAY = 2  # count.c's counters: an array of one struct {u64 packets, bytes}

_OTHER = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("tc") int other_next(struct __sk_buff *skb) { return -1; }
char LICENSE[] SEC("license") = "GPL";
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def prog(name: str, program: str, *, pin_maps: bool = False, path: str | None = None) -> ProgramRec:
    obj = path or obs.obj(name)
    return ProgramRec(program, objfile.digest(obj)[:16], pin_maps=pin_maps, object=obj)


@dataclass
class Pod:
    """Owned veth pair: `host` (198.18.N.1) in the host ↔ `dev` (…2) in namespace `pod`."""

    names: Names
    pod: str
    host: str
    dev: str
    host_ip: str
    pod_ip: str
    kernel: LinuxKernel

    @property
    def stack(self) -> str:
        return self.names.stack

    def hook(self, hook: str, *progs: ProgramRec, host_end: bool = False) -> HookRec:
        ns, dev = (HOST, self.host) if host_end else (self.pod, self.dev)
        return HookRec(ns, dev, hook, tuple(progs), self.stack)  # type: ignore[arg-type]

    def ref(self, hook: str, host_end: bool = False) -> HookRef:
        return HookRef(HOST, self.host, hook) if host_end else HookRef(self.pod, self.dev, hook)  # type: ignore[arg-type]

    def live(self, hook: str, host_end: bool = False) -> HookRec | None:
        key = (HOST, self.host, hook) if host_end else (self.pod, self.dev, hook)
        return self.kernel.read().hooks.get(key)

    def names_on(self, hook: str, host_end: bool = False) -> list[str]:
        """Program names at the hook in run order, from PROG_QUERY + prog info (and bpftool agrees)."""
        got = []
        for prog_id in hooks.query(self.ref(hook, host_end)).prog_ids:
            fd = info.open_prog(prog_id)
            try:
                got.append(info.prog_info(fd).name)
            finally:
                os.close(fd)
        if obs.have_trixie_bpftool():
            ns, dev = (None, self.host) if host_end else (self.pod, self.dev)
            assert [n for n, *_ in obs.hook_progs(f"tcx/{hook}", ns, dev)] == got
        return got

    def pin_of(self, hook: str, p: ProgramRec, host_end: bool = False) -> pins.LinkPin:
        ns, dev = (HOST, self.host) if host_end else (self.pod, self.dev)
        return pins.link_pin(self.stack, ns, dev, hook, p.program, p.digest)  # type: ignore[arg-type]

    def link_of(self, hook: str, p: ProgramRec) -> info.LinkInfo:
        fd = bpffs.open_pin(self.pin_of(hook, p).path)
        assert fd is not None, f"no pin for {p.program}"
        try:
            return info.link_info(fd)
        finally:
            os.close(fd)


@pytest.fixture
def pod(ns: Names) -> Iterator[Pod]:
    n = int(ns.prefix[-2:], 16)
    p = Pod(ns, ns("p"), ns("h"), ns("q"), f"198.18.{n}.1", f"198.18.{n}.2", LinuxKernel())
    sh("ip", "netns", "add", p.pod)
    sh("ip", "link", "add", p.host, "type", "veth", "peer", "name", p.dev, "netns", p.pod)
    sh("ip", "link", "set", p.host, "alias", owner_alias(ns.stack, "primary"))
    sh("ip", "-n", p.pod, "link", "set", p.dev, "alias", owner_alias(ns.stack, "peer"))
    sh("ip", "addr", "add", f"{p.host_ip}/30", "dev", p.host)
    sh("ip", "-n", p.pod, "addr", "add", f"{p.pod_ip}/30", "dev", p.dev)
    sh("ip", "link", "set", p.host, "up")
    sh("ip", "-n", p.pod, "link", "set", p.dev, "up")
    try:
        yield p
    finally:
        bpffs.remove_tree(pins.stack_dir(ns.stack))


@pytest.fixture
def other_obj(tmp_path: Path) -> str:
    return obs.build(tmp_path, "other", _OTHER)


def counted(pin: pins.LinkPin) -> int:
    """Packets count_pass counted, read through its pinned map (nkplan's reading) and bpftool's.

    The pod's own traffic (IPv6 neighbour discovery) may be counted between two reads, so bpftool's
    reading is checked to lie between two of nkplan's, taken before and after it."""
    path = pin.map_path("counters")
    fd = bpffs.open_pin(path)
    assert fd is not None
    try:
        before = obs.counters(info.map_lookup(fd, KEY0)[0])[0]  # type: ignore[index]
        packets = int(obs.pinned_value(path)["packets"])
        after = obs.counters(info.map_lookup(fd, KEY0)[0])[0]  # type: ignore[index]
    finally:
        os.close(fd)
    assert before <= packets <= after
    return packets


def test_create_then_read_back_in_order(pod: Pod) -> None:
    count, policy = prog("count", "count_pass", pin_maps=True), prog("pod_policy", "pod_egress")
    after = pod.hook("egress", count, policy)
    pod.kernel.set_programs(None, after)

    got = pod.live("egress")
    assert got == after
    assert pod.names_on("egress") == ["count_pass", "pod_egress"]
    state = hooks.query(pod.ref("egress"))
    # what the kernel calls them, for show; bpftool agrees on the tags
    assert [(p.prog_id, p.link_id) for p in got.programs] == list(zip(state.prog_ids, state.link_ids, strict=True))
    assert [p.tag for p in got.programs] == [obs.bpftool("prog", "show", "id", str(i))["tag"] for i in state.prog_ids]
    assert state.link_ids == (pod.link_of("egress", count).id, pod.link_of("egress", policy).id)
    assert os.path.isdir(pod.pin_of("egress", count).maps_dir)
    assert not os.path.exists(pod.pin_of("egress", policy).maps_dir)
    # traffic: the pod's echo requests are counted, then dropped
    assert obs.ping(pod.host_ip, ns=pod.pod, count=2, wait=1) == (2, 0)
    assert counted(pod.pin_of("egress", count)) >= 2
    # the same declaration again changes nothing (not even the revision)
    pod.kernel.set_programs(after, after)
    assert hooks.query(pod.ref("egress")) == state

    # removed: nothing on the hook, no directory left
    pod.kernel.set_programs(after, None)
    assert hooks.query(pod.ref("egress")).entries == ()
    assert pod.live("egress") is None
    assert not os.path.exists(pins.stack_dir(pod.stack))
    assert obs.ping(pod.host_ip, ns=pod.pod, count=1) == (1, 1)


_SET_AND_EXIT = """
import sys
from nkplan.kernel.linux import LinuxKernel
from nkplan.spec import objfile
from nkplan.core.records import HookRec, ProgramRec
obj, stack, ns, dev = sys.argv[1:5]
rec = ProgramRec("count_pass", objfile.digest(obj)[:16], object=obj)
LinuxKernel().set_programs(None, HookRec(ns, dev, "ingress", (rec,), stack))
"""


def test_programs_outlive_the_process_that_set_them(pod: Pod) -> None:
    obj = obs.obj("count")
    subprocess.run([sys.executable, "-c", _SET_AND_EXIT, obj, pod.stack, pod.pod, pod.dev], check=True, cwd=REPO)
    assert pod.live("ingress") == pod.hook("ingress", prog("count", "count_pass"))
    assert pod.names_on("ingress") == ["count_pass"]


def test_reorder_keeps_one_link_and_reattaches_the_other(pod: Pod, other_obj: str) -> None:
    count, policy = prog("count", "count_pass"), prog("pod_policy", "pod_egress")
    first = pod.hook("ingress", count, policy)
    pod.kernel.set_programs(None, first)
    links = {p.program: pod.link_of("ingress", p).id for p in (count, policy)}

    swapped = pod.hook("ingress", policy, count)
    pod.kernel.set_programs(first, swapped)
    assert pod.live("ingress") == swapped
    assert pod.names_on("ingress") == ["pod_egress", "count_pass"]
    now = {p.program: pod.link_of("ingress", p).id for p in (count, policy)}
    assert len(set(now.values()) & set(links.values())) == 1  # one stayed put, one was re-attached
    assert hooks.query(pod.ref("ingress")).link_ids == (now["pod_egress"], now["count_pass"])
    assert sorted(os.listdir(pod.pin_of("ingress", count).hook_dir)) == sorted(
        [pins.pin_name("count_pass", count.digest), pins.pin_name("pod_egress", policy.digest)]
    )  # no temporary pin left

    # three programs; moving the last to the front re-attaches only that one
    other = prog("", "other_next", path=other_obj)
    three = pod.hook("ingress", policy, count, other)
    pod.kernel.set_programs(swapped, three)
    kept = {p.program: pod.link_of("ingress", p).id for p in (count, policy)}
    assert kept == now
    moved = pod.hook("ingress", other, policy, count)
    pod.kernel.set_programs(three, moved)
    assert pod.names_on("ingress") == ["other_next", "pod_egress", "count_pass"]
    assert {p.program: pod.link_of("ingress", p).id for p in (count, policy)} == now
    assert pod.live("ingress") == moved


def test_update_in_place_when_the_object_changes(pod: Pod, tmp_path: Path) -> None:
    original = obs.obj("count")
    rebuilt = str(tmp_path / "count.o")
    shutil.copyfile(original, rebuilt)
    with open(rebuilt, "ab") as fh:
        fh.write(b"\0")  # other bytes, other digest; libbpf still loads it
    with libbpf.load_program(rebuilt, "count_pass"):
        pass
    old, new = prog("count", "count_pass", pin_maps=True), prog("count", "count_pass", pin_maps=True, path=rebuilt)
    policy = prog("pod_policy", "pod_egress")
    assert old.digest != new.digest
    before = pod.hook("egress", old, policy)
    pod.kernel.set_programs(None, before)
    was = pod.link_of("egress", old)
    rev = hooks.query(pod.ref("egress")).revision

    after = pod.hook("egress", new, policy)
    pod.kernel.set_programs(before, after)
    now = pod.link_of("egress", new)
    assert now.id == was.id and now.prog_id != was.prog_id  # same link, new program
    state = hooks.query(pod.ref("egress"))
    assert state.prog_ids[0] == now.prog_id and state.revision == rev + 1  # one swap, nothing else
    assert obs.link_show(now.id, trixie=obs.have_trixie_bpftool())["prog_id"] == now.prog_id
    assert pod.live("egress") == after
    assert not os.path.exists(pod.pin_of("egress", old).path)
    assert not os.path.exists(pod.pin_of("egress", old).maps_dir)
    assert obs.ping(pod.pod_ip, count=2) == (2, 2)  # the replies leave the pod through both
    assert counted(pod.pin_of("egress", new)) >= 2  # the new program's maps, pinned

    # pin_maps off: the maps go, the link stays
    bare = pod.hook("egress", prog("count", "count_pass", path=rebuilt), policy)
    pod.kernel.set_programs(after, bare)
    assert pod.link_of("egress", new).id == was.id
    assert not os.path.exists(pod.pin_of("egress", new).maps_dir)
    assert pod.live("egress") == bare


def counters_id(pin: pins.LinkPin) -> int:
    """The id of the counters map pinned next to a link, as bpftool sees it."""
    return obs.pinned_map_id(pin.map_path("counters"))


def count_variant(tmp_path: Path, name: str, edit: tuple[str, str] | None = None) -> str:
    """count.c built again (another digest), optionally with one source line changed."""
    src = (REPO / "bpf/count.c").read_text()
    if edit is not None:
        assert edit[0] in src
        src = src.replace(*edit)
    return obs.build(tmp_path, name, src + f"\n/* {name} */\n")


def with_maps(hook: HookRec) -> HookRec:
    """The hook's programs with their objects' map definitions, as the loader gives them."""
    progs = tuple(dataclasses.replace(p, maps=libbpf.inspect(p.object)[1]) for p in hook.programs)
    return dataclasses.replace(hook, programs=progs)


def test_new_instances_keep_the_maps_of_the_old_ones(pod: Pod, other_obj: str, tmp_path: Path) -> None:
    """An update in place and a move both load a new instance of the program: it takes over the
    old instance's counters map (same map id, the count goes on), unless the map was redefined."""
    count = prog("count", "count_pass", pin_maps=True)
    policy, other = prog("pod_policy", "pod_egress"), prog("", "other_next", path=other_obj)
    first = pod.hook("egress", count, policy, other)
    pod.kernel.set_programs(None, first)
    assert obs.ping(pod.pod_ip, count=3) == (3, 3)
    map_id, seen = counters_id(pod.pin_of("egress", count)), counted(pod.pin_of("egress", count))
    assert seen >= 3

    # update in place: same link, new program, same map; the plan says so beforehand
    rebuilt = prog("", "count_pass", pin_maps=True, path=count_variant(tmp_path, "rebuilt"))
    link = pod.link_of("egress", count)
    updated = pod.hook("egress", rebuilt, policy, other)
    live = pod.live("egress")
    assert live is not None and live.programs[0].maps == (MapDef("counters", BPF_MAP_TYPE_ARRAY, 4, 16, 1, 0),)
    assert "update count_pass in place (object changed; maps kept: counters)" in describe_programs(
        live, with_maps(updated)
    )
    pod.kernel.set_programs(first, updated)
    now = pod.link_of("egress", rebuilt)
    assert now.id == link.id and now.prog_id != link.prog_id
    assert counters_id(pod.pin_of("egress", rebuilt)) == map_id
    assert counted(pod.pin_of("egress", rebuilt)) >= seen  # not restarted
    assert obs.ping(pod.pod_ip, count=2) == (2, 2)
    seen = counted(pod.pin_of("egress", rebuilt))
    assert seen >= 5  # the new program counts on in the old map

    # moved to the end (the other two keep their place): a new link, the same map
    moved = pod.hook("egress", policy, other, rebuilt)
    pod.kernel.set_programs(updated, moved)
    assert pod.names_on("egress") == ["pod_egress", "other_next", "count_pass"]
    assert pod.link_of("egress", rebuilt).id != link.id
    assert counters_id(pod.pin_of("egress", rebuilt)) == map_id and counted(pod.pin_of("egress", rebuilt)) >= seen

    # the map redefined (two entries instead of one): the new instance gets a map of its own
    wider_obj = count_variant(tmp_path, "wider", ("max_entries, 1", "max_entries, 2"))
    wider = prog("", "count_pass", pin_maps=True, path=wider_obj)
    link = pod.link_of("egress", rebuilt)
    widened = pod.hook("egress", policy, other, wider)
    live = pod.live("egress")
    assert live is not None
    assert "update count_pass in place (object changed; maps starting empty: counters)" in describe_programs(
        live, with_maps(widened)
    )
    pod.kernel.set_programs(moved, widened)
    assert pod.link_of("egress", wider).id == link.id  # still an update in place
    fresh = counters_id(pod.pin_of("egress", wider))
    assert fresh != map_id and counted(pod.pin_of("egress", wider)) < seen
    assert pod.live("egress") == widened


def test_foreign_programs_are_reported_and_left_alone(pod: Pod, other_obj: str) -> None:
    count, policy = prog("count", "count_pass"), prog("pod_policy", "pod_egress")
    first = pod.hook("ingress", count, policy)
    pod.kernel.set_programs(None, first)
    with libbpf.load_program(other_obj, "other_next") as foreign:  # someone else attaches between ours
        fd = hooks.attach(pod.ref("ingress"), foreign.program_fd("other_next"),
                          anchor=Anchor("after", link_id=pod.link_of("ingress", count).id))  # fmt: skip
    held = [fd]
    try:
        foreign_link = info.link_info(fd)
        assert pod.names_on("ingress") == ["count_pass", "other_next", "pod_egress"]
        live = pod.kernel.read()
        assert live.hooks[(pod.pod, pod.dev, "ingress")] == first
        assert ForeignProgram(pod.pod, pod.dev, "ingress", foreign_link.prog_id, "other_next", foreign_link.id) in (
            live.foreign_programs
        )

        # reordered around it: ours end up as declared (count_pass stays, pod_egress is
        # re-attached right before it), the foreign one stays attached
        swapped = pod.hook("ingress", policy, count)
        pod.kernel.set_programs(first, swapped)
        assert pod.names_on("ingress") == ["pod_egress", "count_pass", "other_next"]
        assert pod.live("ingress") == swapped

        # a new first program goes right before the first owned one, not before the foreign
        ours = pod.hook("ingress", prog("count", "count_pass"))
        pod.kernel.set_programs(swapped, ours)
        with libbpf.load_program(obs.obj("pod_policy"), "pod_egress") as front:
            fd2 = hooks.attach(pod.ref("ingress"), front.program_fd("pod_egress"), anchor=Anchor.first())
        held.append(fd2)
        assert pod.names_on("ingress") == ["pod_egress", "count_pass", "other_next"]
        with_new = pod.hook("ingress", prog("pod_policy", "pod_egress"), prog("count", "count_pass"))
        pod.kernel.set_programs(ours, with_new)
        assert pod.names_on("ingress") == ["pod_egress", "pod_egress", "count_pass", "other_next"]
        assert hooks.query(pod.ref("ingress")).link_ids[0] == info.link_info(fd2).id
        assert pod.live("ingress") == with_new

        # everything of ours removed: the foreign programs are still there
        pod.kernel.set_programs(with_new, None)
        assert hooks.query(pod.ref("ingress")).link_ids == (info.link_info(fd2).id, foreign_link.id)
        assert pod.live("ingress") is None
        others = [f.name for f in pod.kernel.read().foreign_programs if f.device == pod.dev]
        assert others == ["pod_egress", "other_next"]
    finally:
        for h in held:
            os.close(h)


def test_first_program_goes_last_when_nkplan_owns_none(pod: Pod, other_obj: str) -> None:
    with libbpf.load_program(other_obj, "other_next") as foreign:
        fd = hooks.attach(pod.ref("egress"), foreign.program_fd("other_next"))
    try:
        pod.kernel.set_programs(None, pod.hook("egress", prog("count", "count_pass"), prog("pod_policy", "pod_egress")))
        assert pod.names_on("egress") == ["other_next", "count_pass", "pod_egress"]
    finally:
        os.close(fd)


def test_out_of_band_detach_is_seen_and_repaired(pod: Pod) -> None:
    count, policy = prog("count", "count_pass"), prog("pod_policy", "pod_egress")
    declared = pod.hook("egress", count, policy, host_end=True)
    pod.kernel.set_programs(None, declared)
    pin = pod.pin_of("egress", policy, host_end=True)
    fd = bpffs.open_pin(pin.path)
    assert fd is not None
    try:
        old_id = info.link_info(fd).id
        hooks.detach(fd)  # someone detaches nkplan's link; the pin stays, holding a defunct link
    finally:
        os.close(fd)
    assert os.path.exists(pin.path)
    seen = pod.live("egress", host_end=True)
    assert seen == pod.hook("egress", count, host_end=True)  # the detached one is not a program on the hook
    assert pod.names_on("egress", host_end=True) == ["count_pass"]

    pod.kernel.set_programs(seen, declared)  # re-attached, after count_pass, stale pin replaced
    assert pod.live("egress", host_end=True) == declared
    assert pod.names_on("egress", host_end=True) == ["count_pass", "pod_egress"]
    fd = bpffs.open_pin(pin.path)
    assert fd is not None
    try:
        assert info.link_info(fd).id != old_id
    finally:
        os.close(fd)

    # all of them detached by someone (bpftool this time): the hook is reported with no programs
    for link_id in hooks.query(pod.ref("egress", host_end=True)).link_ids:
        sh("bpftool", "link", "detach", "id", str(link_id))
    seen = pod.live("egress", host_end=True)
    assert seen == pod.hook("egress", host_end=True)
    pod.kernel.set_programs(seen, declared)
    assert pod.names_on("egress", host_end=True) == ["count_pass", "pod_egress"]
    assert pod.live("egress", host_end=True) == declared


def test_read_without_nkplan_pins_or_bpffs(pod: Pod, monkeypatch: pytest.MonkeyPatch, other_obj: str) -> None:
    with libbpf.load_program(other_obj, "other_next") as foreign:
        fd = hooks.attach(pod.ref("ingress"), foreign.program_fd("other_next"))
    try:
        monkeypatch.setattr(pins, "ROOT", "/nonexistent/nkplan")  # as if bpffs were not mounted
        live = pod.kernel.read()
        assert not [k for k in live.hooks if pod.names.prefix in k[0]]
        assert [(f.device, f.hook, f.name) for f in live.foreign_programs if f.namespace == pod.pod] == [
            (pod.dev, "ingress", "other_next")
        ]
    finally:
        os.close(fd)


def _interfere(pod: Pod, monkeypatch: pytest.MonkeyPatch, other_obj: str, after_attaches: int) -> Callable[[], None]:
    """Make "someone else" attach a program at the hook once nkplan has attached after_attaches
    links in this call (0: right after its fresh query). Returns a cleanup."""
    held: list[int] = []
    objs: list[BpfObject] = []
    real_attach, real_query = hooks.attach, hooks.query
    calls = {"attach": 0}

    def foreign_attach() -> None:
        o = libbpf.load_program(other_obj, "other_next")
        objs.append(o)
        held.append(real_attach(pod.ref("ingress"), o.program_fd("other_next")))

    def query(ref: HookRef) -> HookState:
        state = real_query(ref)
        if after_attaches == 0:
            foreign_attach()
        return state

    def attach(ref: HookRef, prog_fd: int, **kw: object) -> int:
        fd = real_attach(ref, prog_fd, **kw)  # type: ignore[arg-type]
        calls["attach"] += 1
        if calls["attach"] == after_attaches:
            foreign_attach()
        return fd

    monkeypatch.setattr(hooks, "query", query)
    monkeypatch.setattr(hooks, "attach", attach)

    def cleanup() -> None:
        for fd in held:
            os.close(fd)
        for o in objs:
            o.close()

    return cleanup


@pytest.mark.parametrize("after_attaches", [0, 1])
def test_a_concurrent_change_is_refused_and_nothing_of_ours_stays(
    pod: Pod, monkeypatch: pytest.MonkeyPatch, other_obj: str, after_attaches: int
) -> None:
    cleanup = _interfere(pod, monkeypatch, other_obj, after_attaches)
    try:
        declared = pod.hook("ingress", prog("count", "count_pass"), prog("pod_policy", "pod_egress"))
        with pytest.raises(StaleHookError, match="the hook changed concurrently") as err:
            pod.kernel.set_programs(None, declared)
        assert isinstance(err.value, KernelError) and f"tcx ingress of {pod.dev}" in str(err.value)
        monkeypatch.undo()
        assert pod.names_on("ingress") == ["other_next"]  # only the other party's program
        assert pod.live("ingress") is None
        assert not os.path.exists(pins.stack_dir(pod.stack))
    finally:
        cleanup()


def test_delete_link_removes_the_pins_of_both_ends(pod: Pod) -> None:
    pod.kernel.set_programs(None, pod.hook("ingress", prog("count", "count_pass"), host_end=True))
    pod.kernel.set_programs(None, pod.hook("egress", prog("count", "count_pass", pin_maps=True)))
    assert sorted(os.listdir(pins.stack_dir(pod.stack))) == sorted([pins.HOST_DIR, pins.ns_component(pod.pod)])
    link = pod.kernel.read().links[(HOST, pod.host)]
    pod.kernel.delete_link(link)
    assert not os.path.exists(pins.stack_dir(pod.stack))


def test_delete_links_and_delete_namespace_remove_pins(pod: Pod) -> None:
    n = pod.names
    extra_ns, extra_host = n("p2"), n("h2")
    sh("ip", "netns", "add", extra_ns)
    sh("ip", "link", "add", extra_host, "type", "veth", "peer", "name", "eth0", "netns", extra_ns)
    sh("ip", "link", "set", extra_host, "alias", owner_alias(n.stack, "primary"))
    sh("ip", "-n", extra_ns, "link", "set", "eth0", "alias", owner_alias(n.stack, "peer"))
    count = prog("count", "count_pass")
    for ns, dev in ((HOST, pod.host), (pod.pod, pod.dev), (HOST, extra_host), (extra_ns, "eth0")):
        pod.kernel.set_programs(None, HookRec(ns, dev, "ingress", (count,), n.stack))
    live = pod.kernel.read()
    assert len([k for k in live.hooks if n.prefix in k[0] + k[1]]) == 4

    pod.kernel.delete_links([live.links[(HOST, extra_host)]])
    assert sorted(os.listdir(pins.stack_dir(n.stack))) == sorted([pins.HOST_DIR, pins.ns_component(pod.pod)])
    assert os.listdir(os.path.join(pins.stack_dir(n.stack), pins.HOST_DIR)) == [pod.host]

    pod.kernel.delete_namespace(pod.pod)  # takes the pair with it, and the host end's pins
    assert not os.path.exists(pins.stack_dir(n.stack))


def test_rollback_puts_back_the_very_programs_it_took_off(pod: Pod, tmp_path: Path) -> None:
    """The applier undoes set_programs(before, after) with set_programs(after, before), where
    `before` was read from the kernel and names no object file: the programs this process took
    off come back (same program ids, so their maps and counters too)."""
    rebuilt = str(tmp_path / "count.o")
    shutil.copyfile(obs.obj("count"), rebuilt)
    with open(rebuilt, "ab") as fh:
        fh.write(b"\0")
    count, policy = prog("count", "count_pass", pin_maps=True), prog("pod_policy", "pod_egress")
    pod.kernel.set_programs(None, pod.hook("egress", count, policy))
    live = pod.live("egress")
    assert live is not None and all(p.object == "" for p in live.programs)
    original = hooks.query(pod.ref("egress")).entries
    assert obs.ping(pod.pod_ip, count=2) == (2, 2)
    seen = counted(pod.pin_of("egress", count))

    for after in (
        pod.hook("egress", prog("count", "count_pass", pin_maps=True, path=rebuilt), policy),  # update in place
        pod.hook("egress", policy, count),  # reorder
        pod.hook("egress", policy),  # detach one
        None,  # detach all
    ):
        with ApplySession() as session:  # as the applier holds one for an apply and its rollback
            pod.kernel.set_programs(live, after, session)
            assert pod.live("egress") == (after if after is not None and after.programs else None)
            pod.kernel.set_programs(after, live, session)  # the rollback
        assert pod.live("egress") == live
        state = hooks.query(pod.ref("egress"))
        assert state.prog_ids == tuple(e.prog_id for e in original)
    assert counted(pod.pin_of("egress", count)) >= seen  # the same maps, counts kept

    with pytest.raises(KernelError, match="no object file is known for it"):
        pod.kernel.set_programs(None, pod.hook("ingress", ProgramRec("count_pass", "0" * 16)))
    assert hooks.query(pod.ref("ingress")).entries == ()
    # what one session took off is not there for another (no process-wide memory)
    with ApplySession() as session:
        pod.kernel.set_programs(live, None, session)
    with pytest.raises(KernelError, match="no object file is known for it"):
        pod.kernel.set_programs(None, live)
    assert hooks.query(pod.ref("egress")).entries == ()


def test_deleting_a_device_with_programs_rolls_back_to_the_same_programs(pod: Pod) -> None:
    """A plan deletes a device's hooks (the same program, from the same object, on both ends),
    then the device, then fails: the rollback recreates the device and puts back each hook's
    own program instance. Without the failure, the links are gone (bpftool) and so are the pins."""
    count = prog("count", "count_pass", pin_maps=True)
    host_hook, pod_hook = pod.hook("ingress", count, host_end=True), pod.hook("egress", count)
    pod.kernel.set_programs(None, host_hook)
    pod.kernel.set_programs(None, pod_hook)
    live = pod.kernel.read()
    link = live.links[(HOST, pod.host)]
    hooks_live = [live.hooks[(h.namespace, h.device, h.hook)] for h in (host_hook, pod_hook)]
    link_ids = [p.link_id for h in hooks_live for p in h.programs]
    ops = [Operation("delete", f"hook[{h.device} {h.hook}]", "hook", h, None) for h in hooks_live]
    ops.append(Operation("delete", f"link[{pod.host}]", "link", link, None))
    gone = RouteRec(HOST, "198.51.100.0/24", dev=None, metric=4242)  # not there: deleting it fails
    failing = Operation("delete", "route[198.51.100.0/24 metric 4242]", "route", gone, None)

    with pytest.raises(ApplyFailed) as failed:
        apply_plan(pod.kernel, Plan(pod.stack, (), (*ops, failing)))
    assert failed.value.rolled_back == 3 and not failed.value.rollback_errors
    assert pod.names_on("ingress", host_end=True) == ["count_pass"] and pod.names_on("egress") == ["count_pass"]
    again = pod.kernel.read()
    assert [again.hooks[(h.namespace, h.device, h.hook)] for h in (host_hook, pod_hook)] == hooks_live

    fresh = pod.kernel.read()
    hooks_now = [fresh.hooks[(h.namespace, h.device, h.hook)] for h in (host_hook, pod_hook)]
    link_ids = [p.link_id for h in hooks_now for p in h.programs]
    ops = [Operation("delete", f"hook[{h.device} {h.hook}]", "hook", h, None) for h in hooks_now]
    ops.append(Operation("delete", f"link[{pod.host}]", "link", fresh.links[(HOST, pod.host)], None))
    apply_plan(pod.kernel, Plan(pod.stack, (), tuple(ops)))
    listed = {link["id"] for link in obs.bpftool("link", "show")}
    assert not listed & set(link_ids), (listed, link_ids)  # freed with their device
    assert not os.path.exists(pins.stack_dir(pod.stack))
