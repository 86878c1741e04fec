"""Declared map entries on netkit, in the VM rig: bpf/allow.c's allow list at the peer hook (pod
egress) of an L3 netkit pair. Each change of the list changes traffic as declared (ping from the
pod to the host's address passes while the list allows it, fails once the entry is removed) with
no program reload: the same program and link ids per Debian trixie's bpftool (which lists netkit
hooks), and the map holds what bpftool dumps with BTF. In-process (one pytest process: Python is
slow here)."""

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
HOST_IP = "10.243.0.1"


@pytest.fixture(scope="module")
def kernel() -> LinuxKernel:
    return LinuxKernel()


@pytest.fixture(scope="module", autouse=True)
def cleanup(kernel: LinuxKernel, token: str) -> Iterator[None]:
    yield
    loaded = empty_spec(f"ae{token}")
    try:
        apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
    finally:
        subprocess.run(["ip", "netns", "del", f"ae{token}"], capture_output=True)


def spec(token: str, work: Path, addr: str, prefixlen: int = 32) -> Loaded:
    entry = f"{{key: {{prefixlen: {prefixlen}, addr: {addr}}}, value: {{port: 0}}}}"
    prog = f"{{object: allow.o, program: allow_egress, maps: {{allow: {{exclusive: true, entries: [{entry}]}}}}}}"
    text = (
        f"stack: ae{token}\nnamespaces: [{{name: ae{token}}}]\nlinks:\n"
        f"  - name: nke{token}\n    kind: netkit\n    addresses: [{HOST_IP}/32]\n"
        f"    programs: {{peer: [{prog}]}}\n"
        f"    peer: {{name: eth0, namespace: ae{token}, addresses: [10.243.1.2/32]}}\n"
        f"routes:\n  - {{namespace: ae{token}, to: default, dev: eth0}}\n  - {{to: 10.243.1.2/32, dev: nke{token}}}\n"
    )
    path = work / "spec.yaml"
    path.write_text(text)
    return load_text(text, str(path))


def allow_map(prog_id: int) -> int:
    for map_id in obs.bpftool("prog", "show", "id", str(prog_id))["map_ids"]:
        if obs.bpftool("map", "show", "id", str(map_id))["name"] == "allow":
            return int(map_id)
    raise AssertionError(f"program {prog_id} has no map allow")


def test_the_allow_list_changes_traffic_on_netkit_without_a_reload(
    kernel: LinuxKernel, token: str, tmp_path: Path
) -> None:
    shutil.copy(obs.obj("allow"), tmp_path / "allow.o")
    loaded = spec(token, tmp_path, HOST_IP)
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
    ((name, prog_id, link_id),) = obs.hook_progs("netkit/peer", dev=f"nke{token}")
    assert name == "allow_egress"
    map_id = allow_map(prog_id)
    assert obs.allow_entries(map_id) == [(32, [10, 243, 0, 1], 0)]
    assert obs.ping(HOST_IP, ns=f"ae{token}", count=2, interval="0.2") == (2, 2)

    loaded = spec(token, tmp_path, "10.243.9.0", 24)  # the host's address is no longer allowed
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
    assert obs.hook_progs("netkit/peer", dev=f"nke{token}") == [(name, prog_id, link_id)]  # no reload
    assert obs.allow_entries(map_id) == [(24, [10, 243, 9, 0], 0)]
    assert obs.ping(HOST_IP, ns=f"ae{token}", count=2, interval="0.2") == (2, 0)

    assert not plan_for(kernel, loaded).plan.has_changes
