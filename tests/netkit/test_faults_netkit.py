"""A fault at every kernel operation of a netkit plan, in the VM rig (issue 14 item 2; the host
kernel has no netkit: tests/host/test_faults.py runs the same sweeps on veth and tcx, with more
plans, rollback faults and kill -9). Three plans, kept small (Python is ~35x slower here): one
netkit pair with programs on its primary and peer hooks, where at the primary hook a program is
attached, another reordered and updated in place; and a netkit pair with netkit attributes (L3,
policy blackhole), its namespace, an address on each end and a route, created from nothing and
destroyed. After each injected fault the kernel, as Debian trixie's iproute2 and bpftool show it,
is what it was before. Kill -9 between pinning a new link and renaming its pin runs at the
primary and the peer hook (the last test)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import bpfobserve as obs
from tests.faults import Case, Rig, fault_at_every_operation, kill_between_pin_and_rename, write_specs
from tests.host import observe

pytestmark = pytest.mark.netkit
TRIXIE_IP = str(Path(__file__).resolve().parents[1] / "vm" / "trixie-ip")
COUNT = "{object: count.o, program: count_pass, pin_maps: true}"
COUNT2 = "{object: count2.o, program: count_pass, pin_maps: true}"  # another digest: update in place
POLICY = "{object: pod_policy.o, program: pod_egress}"


def specs(prefix: str, stack: str, work: Path) -> dict[str, str]:
    ns, dev = f"{prefix}p", f"{prefix}n"

    def text(primary: str, peer: str) -> str:
        return (
            f"stack: {stack}\nnamespaces: [{{name: {ns}}}]\nlinks:\n"
            f"  - name: {dev}\n    kind: netkit\n    addresses: [10.242.0.1/32]\n"
            f"    programs: {{primary: [{primary}], peer: [{peer}]}}\n"
            f"    peer: {{name: eth0, namespace: {ns}, addresses: [10.242.1.2/32]}}\n"
            f"routes:\n  - {{namespace: {ns}, to: default, dev: eth0}}\n  - {{to: 10.242.1.2/32, dev: {dev}}}\n"
        )

    # the create and destroy plans: no programs (those are the plans above), a netkit attribute
    # instead (mode, and a policy that only holds without programs), an address on each end, a route
    pair = (
        f"stack: {stack}\nnamespaces: [{{name: {ns}}}]\nlinks:\n"
        f"  - name: {dev}\n    kind: netkit\n    mode: l3\n    policy: blackhole\n    addresses: [10.242.0.1/32]\n"
        f"    peer: {{name: eth0, namespace: {ns}, addresses: [10.242.1.2/32]}}\n"
        f"routes:\n  - {{to: 10.242.1.2/32, dev: {dev}}}\n"
    )
    texts = {"base": text(COUNT, POLICY), "programs": text(f"{POLICY}, {COUNT2}", POLICY), "pair": pair}
    return write_specs(work, texts)


@pytest.fixture
def rig(token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    for name in ("count", "pod_policy"):
        shutil.copy(obs.obj(name), tmp_path / f"{name}.o")
    (tmp_path / "count2.o").write_bytes(Path(obs.obj("count")).read_bytes() + b"\0")
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr(observe, "IP", TRIXIE_IP)  # netkit attributes in full
    prefix, stack = f"f{token}", f"flt{token}"
    made = Rig(stack, prefix, tmp_path, specs(prefix, stack, tmp_path))
    try:
        yield made
    finally:
        try:
            made.converge(None)
        finally:
            subprocess.run(["ip", "netns", "del", f"{prefix}p"], capture_output=True)
            shutil.rmtree(f"/sys/fs/bpf/nkplan/{stack}", ignore_errors=True)


def test_a_fault_at_every_operation_leaves_the_netkit_hooks_as_they_were(rig: Rig) -> None:
    """A program attached, another reordered and updated in place at the netkit primary hook,
    failed at each operation. (Rollback faults, re-plans and the other plans run on the host only: time.)"""
    fault_at_every_operation(rig, Case("programs", "base", "programs"), with_rollback_faults=False, replan=False)


@pytest.mark.parametrize("case", [Case("create", None, "pair"), Case("destroy", "pair", None)], ids=lambda c: c.name)
def test_a_fault_at_every_operation_of_a_netkit_pair_create_and_destroy_leaves_the_kernel_as_it_was(
    rig: Rig, case: Case
) -> None:
    """A netkit pair (L3, policy blackhole) with its namespace, an address on each end and a route,
    created from nothing and destroyed, failed at each operation: afterwards iproute2 shows no
    namespace or device of the test (create), or the pair with its attributes, addresses and
    route as before (destroy: the rollback makes the pair again)."""
    fault_at_every_operation(rig, case, with_rollback_faults=False, replan=False)


def test_kill_9_between_pin_and_rename_at_each_netkit_hook_then_apply_and_destroy_converge(rig: Rig) -> None:
    """From nothing to programs at the primary and peer hooks, killed before each rename of a
    `-new` pin: the first is destroyed (the pin and its link go), the second applied again (the
    hook the leftover is removed from is empty then, with a revision past 1)."""
    kill_between_pin_and_rename(rig, None, "base", at_least=2)
