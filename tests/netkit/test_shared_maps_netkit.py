"""A shared map (`maps:`) on netkit, in the VM rig: count_pass at the primary hook (host → pod)
and at the peer hook (pod → host) counts into the one pinned map. bpftool (Debian trixie's, which
lists netkit hooks) shows both programs holding the pinned map's id, and its dump the sum of
both paths. In-process (one pytest process: Python is slow here)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nkplan.api import Loaded, load_text
from nkplan.kernel.linux import LinuxKernel
from nkplan.run.workflow import apply_and_verify, empty_spec, plan_for
from tests import bpfobserve as obs

pytestmark = pytest.mark.netkit
COUNT = "{object: count.o, program: count_pass}"
PINGS = 5


@pytest.fixture(scope="module")
def kernel() -> LinuxKernel:
    return LinuxKernel()


@pytest.fixture(scope="module", autouse=True)
def cleanup(kernel: LinuxKernel, token: str) -> Iterator[None]:
    yield
    loaded = empty_spec(f"shm{token}")
    try:
        apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
    finally:
        subprocess.run(["ip", "netns", "del", f"sm{token}"], capture_output=True)


def spec(token: str, work: Path) -> Loaded:
    text = (
        f"stack: shm{token}\nmaps:\n  counters: {{like: 'count.o:counters'}}\nnamespaces: [{{name: sm{token}}}]\n"
        f"links:\n  - name: nks{token}\n    kind: netkit\n    addresses: [10.241.0.1/32]\n"
        f"    programs: {{primary: [{COUNT}], peer: [{COUNT}]}}\n"
        f"    peer: {{name: eth0, namespace: sm{token}, addresses: [10.241.1.2/32]}}\n"
        f"routes:\n  - {{namespace: sm{token}, to: default, dev: eth0}}\n  - {{to: 10.241.1.2/32, dev: nks{token}}}\n"
    )
    path = work / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


def packets(path: str) -> int:
    (entry,) = obs.bpftool("map", "dump", "pinned", path)  # raw bytes: shared maps have no BTF
    return obs.counters(bytes(int(b, 16) for b in entry["value"]))[0]


def test_both_netkit_hooks_count_into_one_shared_map(kernel: LinuxKernel, token: str, tmp_path: Path) -> None:
    shutil.copy(obs.obj("count"), tmp_path / "count.o")
    loaded = spec(token, tmp_path)
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
    pin = f"/sys/fs/bpf/nkplan/shm{token}/:maps/counters"
    shared = obs.pinned_map_id(pin)
    for hook in ("netkit/primary", "netkit/peer"):
        ((name, prog_id, _link),) = obs.hook_progs(hook, dev=f"nks{token}")
        assert name == "count_pass"
        assert shared in obs.bpftool("prog", "show", "id", str(prog_id))["map_ids"], hook
    before = packets(pin)
    assert obs.ping("10.241.1.2", count=PINGS, interval="0.2") == (PINGS, PINGS)
    assert packets(pin) >= before + 2 * PINGS  # requests at the primary hook, replies at the peer's
    assert not plan_for(kernel, loaded).plan.has_changes
