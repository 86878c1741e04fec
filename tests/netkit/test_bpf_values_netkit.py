"""Program globals on netkit, in the VM rig: two pods on L3 netkit pairs, joined only by
redirect_to at each pair's peer hook (pod egress), its target a global that references the other
pair's primary ({ifindex: DEVICE}; bpf_redirect into it hands the packet to that pod). The kernel
does not forward between them otherwise. A replaced device (a new ifindex) is followed in the same
apply: the other program's link stays, its .rodata (per bpftool) and traffic say the new target.
In-process (one pytest process: Python is slow here)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nkplan.api import Loaded, load_text
from nkplan.kernel.linux import LinuxKernel
from nkplan.run.workflow import apply_and_verify, empty_spec, plan_for
from tests import bpfobserve as obs

pytestmark = pytest.mark.netkit


@pytest.fixture(scope="module")
def kernel() -> LinuxKernel:
    return LinuxKernel()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("values")
    shutil.copy(obs.obj("redirect"), tmp / "redirect.o")
    return tmp


def spec(token: str, work: Path, peer_b: str = "eth0") -> Loaded:
    def prog(target: str) -> str:
        return f"{{object: redirect.o, program: redirect_to, globals: {{target_ifindex: {{ifindex: {target}}}}}}}"

    text = (
        f"stack: bv{token}\nnamespaces: [{{name: va{token}}}, {{name: vb{token}}}]\nlinks:\n"
        f"  - name: nka{token}\n    kind: netkit\n    programs: {{peer: [{prog(f'nkb{token}')}]}}\n"
        f"    peer: {{name: eth0, namespace: va{token}, addresses: [10.241.1.2/32]}}\n"
        f"  - name: nkb{token}\n    kind: netkit\n    programs: {{peer: [{prog(f'nka{token}')}]}}\n"
        f"    peer: {{name: {peer_b}, namespace: vb{token}, addresses: [10.241.2.2/32]}}\n"
        f"routes:\n  - {{namespace: va{token}, to: default, dev: eth0}}\n"
        f"  - {{namespace: vb{token}, to: default, dev: {peer_b}}}\n"
    )
    path = work / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


@pytest.fixture(scope="module", autouse=True)
def cleanup(kernel: LinuxKernel, token: str) -> Iterator[None]:
    yield
    loaded = empty_spec(f"bv{token}")
    try:
        apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
    finally:
        for ns in (f"va{token}", f"vb{token}"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _ifindex(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/ifindex").read_text())


def rodata(prog_id: int) -> dict[str, Any]:
    for map_id in obs.bpftool("prog", "show", "id", str(prog_id))["map_ids"]:
        if obs.bpftool("map", "show", "id", str(map_id))["name"].endswith(".rodata"):
            (entry,) = obs.bpftool("map", "dump", "id", str(map_id))
            return {k: v for var in entry["formatted"]["value"][".rodata"] for k, v in var.items()}
    raise AssertionError(f"program {prog_id} has no .rodata map")


def test_redirect_target_follows_a_replaced_device(kernel: LinuxKernel, work: Path, token: str) -> None:
    apply_and_verify(kernel, spec(token, work), plan_for(kernel, spec(token, work)).plan)
    ((name, prog_a, link_a),) = obs.hook_progs("netkit/peer", dev=f"nka{token}")
    assert name == "redirect_to" and rodata(prog_a)["target_ifindex"] == _ifindex(f"nkb{token}")
    assert obs.ping("10.241.2.2", ns=f"va{token}", count=3) == (3, 3)  # only through the two redirects

    old = _ifindex(f"nkb{token}")
    loaded = spec(token, work, peer_b="eth1")  # nkb's peer renamed: nkb is replaced
    plan = plan_for(kernel, loaded).plan
    reasons = {c.address: c.reason for c in plan.changes if c.action != "no-op"}
    assert reasons[f"hook[nka{token} peer]"] == f"ifindex of nkb{token} changes: device replaced"
    apply_and_verify(kernel, loaded, plan)
    assert _ifindex(f"nkb{token}") != old
    ((_n, prog_now, link_now),) = obs.hook_progs("netkit/peer", dev=f"nka{token}")
    assert link_now == link_a and rodata(prog_now)["target_ifindex"] == _ifindex(f"nkb{token}")
    assert obs.ping("10.241.2.2", ns=f"va{token}", count=3) == (3, 3)
    assert not plan_for(kernel, loaded).plan.has_changes
