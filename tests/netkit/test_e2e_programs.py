"""eBPF programs on netkit hooks end to end, in the VM rig: the spec's programs land on the
primary and peer hooks (Debian trixie's bpftool says so), the counter counts, the policy drops
echo requests leaving the pod, and an object change is an in-place update that a continuous ping
across the pair survives without loss, counted on in the same map. In-process (one pytest
process: Python is slow here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nkplan.api import Loaded, load_text
from nkplan.kernel.bpf import hooks, libbpf
from nkplan.kernel.bpf.hooks import HookRef
from nkplan.kernel.bpf.mprog import Anchor
from nkplan.kernel.linux import LinuxKernel
from nkplan.run.workflow import apply_and_verify, empty_spec, plan_for
from tests import bpfobserve as obs

pytestmark = pytest.mark.netkit


@pytest.fixture(scope="module")
def kernel() -> LinuxKernel:
    return LinuxKernel()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("progs")
    for name in ("count", "pod_policy"):
        shutil.copy(obs.obj(name), tmp / f"{name}.o")
    return tmp


def spec(token: str, work: Path, primary: str, peer: str) -> Loaded:
    text = (
        f"stack: bpf{token}\nnamespaces: [{{name: bp{token}}}]\nlinks:\n"
        f"  - name: nkp{token}\n    kind: netkit\n    addresses: [10.240.0.1/32]\n"
        f"    programs: {{primary: [{primary}], peer: [{peer}]}}\n"
        f"    peer: {{name: eth0, namespace: bp{token}, addresses: [10.240.1.2/32]}}\n"
        f"routes:\n  - {{namespace: bp{token}, to: default, dev: eth0}}\n  - {{to: 10.240.1.2/32, dev: nkp{token}}}\n"
    )
    path = work / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


@pytest.fixture(scope="module", autouse=True)
def cleanup(kernel: LinuxKernel, token: str) -> Iterator[None]:
    yield
    loaded = empty_spec(f"bpf{token}")
    try:
        apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
    finally:
        subprocess.run(["ip", "netns", "del", f"bp{token}"], capture_output=True)


COUNT = "{object: count.o, program: count_pass, pin_maps: true}"
POLICY = "{object: pod_policy.o, program: pod_egress}"


def converge(kernel: LinuxKernel, loaded: Loaded) -> None:
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)


def test_programs_on_netkit_hooks(kernel: LinuxKernel, work: Path, token: str) -> None:
    converge(kernel, spec(token, work, COUNT, POLICY))
    dev = f"nkp{token}"
    assert [p[0] for p in obs.hook_progs("netkit/primary", dev=dev)] == ["count_pass"]
    assert [p[0] for p in obs.hook_progs("netkit/peer", dev=dev)] == ["pod_egress"]
    _map_id, counted = counters_map(token)
    assert obs.ping("10.240.1.2", count=3) == (3, 3)  # requests cross the primary hook, replies the peer's
    assert counters_map(token)[1] >= counted + 3
    assert obs.ping("10.240.0.1", ns=f"bp{token}", count=2)[1] == 0  # echo requests from the pod: dropped
    assert not plan_for(kernel, spec(token, work, COUNT, POLICY)).plan.has_changes


def counters_map(token: str) -> tuple[int, int]:
    """(map id, packets) of the primary's pinned counters map, as bpftool sees them."""
    (pin,) = Path(f"/sys/fs/bpf/nkplan/bpf{token}/:host/nkp{token}/primary").glob("count_pass@*-maps")
    path = str(pin / "counters")
    return obs.pinned_map_id(path), int(obs.pinned_value(path)["packets"])


def test_object_change_is_an_atomic_in_place_update(kernel: LinuxKernel, work: Path, token: str) -> None:
    dev = f"nkp{token}"
    (_n, old_prog, old_link) = obs.hook_progs("netkit/primary", dev=dev)[0]
    map_id, counted = counters_map(token)
    with open(work / "count.o", "ab") as fh:
        fh.write(b"\0")  # a rebuilt object: same program, new content
    loaded = spec(token, work, COUNT, POLICY)
    plan = plan_for(kernel, loaded).plan
    (change,) = [c for c in plan.changes if c.action != "no-op"]
    assert change.action == "update"
    assert change.reason == "update count_pass in place (object changed; maps kept: counters)"  # read from the kernel
    ping = subprocess.Popen(["ping", "-n", "-i", "0.02", "-c", "300", "10.240.1.2"], stdout=subprocess.PIPE, text=True)
    apply_and_verify(kernel, loaded, plan)
    out, _ = ping.communicate(timeout=120)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m and m.group(1) == m.group(2), out  # no packet lost during the swap
    (_n, new_prog, new_link) = obs.hook_progs("netkit/primary", dev=dev)[0]
    assert new_link == old_link and new_prog != old_prog  # same link, new program: BPF_LINK_UPDATE
    # the new program took over the old one's map: one count across the swap, none lost
    now_id, now_counted = counters_map(token)
    assert now_id == map_id and now_counted >= counted + 300


def test_order_as_declared_after_reorder_and_foreign_attach(kernel: LinuxKernel, work: Path, token: str) -> None:
    dev = f"nkp{token}"

    def at_primary() -> list[str]:
        return [p[0] for p in obs.hook_progs("netkit/primary", dev=dev)]

    converge(kernel, spec(token, work, f"{COUNT}, {POLICY}", POLICY))
    assert at_primary() == ["count_pass", "pod_egress"]
    converge(kernel, spec(token, work, f"{POLICY}, {COUNT}", POLICY))
    assert at_primary() == ["pod_egress", "count_pass"]
    with libbpf.load_program(obs.obj("count"), "count_pass") as theirs:  # someone else attaches a program
        link_fd = hooks.attach(HookRef("", dev, "primary"), theirs.program_fd("count_pass"), anchor=Anchor.first())
        try:
            loaded = spec(token, work, f"{COUNT}, {POLICY}", POLICY)
            plan = plan_for(kernel, loaded).plan
            assert any("was attached by someone else" in w for w in plan.warnings), plan.warnings
            apply_and_verify(kernel, loaded, plan)
            progs = at_primary()
            assert len(progs) == 3 and progs[1:] == ["count_pass", "pod_egress"], progs  # theirs stays first
        finally:
            hooks.detach(link_fd)
    assert at_primary() == ["count_pass", "pod_egress"]


def test_removing_programs_detaches_them(kernel: LinuxKernel, work: Path, token: str) -> None:
    loaded = spec(token, work, "", "")
    converge(kernel, loaded)
    dev = f"nkp{token}"
    assert obs.hook_progs("netkit/primary", dev=dev) == [] and obs.hook_progs("netkit/peer", dev=dev) == []
    assert obs.ping("10.240.0.1", ns=f"bp{token}", count=2) == (2, 2)
