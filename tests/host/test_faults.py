"""A fault at every kernel operation, and kill -9 at every step boundary, of four representative
plans on the host kernel (veth pairs with tcx programs; issue 14 items 2 and 3):

- create from empty; a mixed update (a pair replaced, with its program; MTU and addresses changed
  in place; routes added, changed and deleted; a pair deleted); programs attached, reordered and
  updated in place; destroy.
- A fault (the kernel refusing with EIO, tests/faults.py) at operation k = 1..N of each plan: the
  apply fails, and the kernel (devices and their attributes, addresses, routes, rules,
  namespaces, programs at each hook by id, the stack's bpffs pins) is what it was before, as
  iproute2 and bpftool show it. Where a rollback operation fails too, the error lists what was
  left, and applying the spec again repairs it.
- kill -9 before step k = 1..S (a child process, tests/faultdriver.py): applying again converges,
  destroy then leaves nothing (no namespace, device, pin, `…-new` pin; the stack's lock is free).
- kill -9 between pinning a new link and renaming its pin into place: `plan` shows the leftover
  `…-new` pin, and destroy (or apply) removes it.
- kill -9 before each low-level operation of the create plan (inside steps): applying again
  converges, or, for a namespace or pair killed before its ownership mark, is refused by name
  until `--adopt`, which converges; destroy then leaves nothing.
Each test prints its counts (pytest -s shows them) and puts them in its assertion messages."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import bpfobserve as obs
from tests.faults import (
    Case,
    Rig,
    fault_at_every_operation,
    kill_at_every_operation,
    kill_at_every_step,
    kill_between_pin_and_rename,
    write_specs,
)
from tests.host.conftest import Names

pytestmark = pytest.mark.host
COUNT = "{object: count.o, program: count_pass, pin_maps: true}"
COUNT2 = "{object: count2.o, program: count_pass, pin_maps: true}"  # another digest: update in place
POLICY = "{object: pod_policy.o, program: pod_egress}"


def specs(n: Names, work: Path) -> dict[str, str]:
    """The specs the plans go between (file paths)."""
    p, a, b, c = n("p"), n("a"), n("b"), n("c")

    def text(*, a_extra: str, b_peer: str, c_pair: bool, ingress: str, egress: str, routes: str, mtu: int) -> str:
        out = (
            f"stack: {n.stack}\nnamespaces: [{{name: {p}}}]\nlinks:\n"
            f"  - name: {a}\n    kind: veth\n    mtu: {mtu}\n    addresses: [{a_extra}]\n"
            f"    peer: {{name: eth0, namespace: {p}, addresses: [10.241.1.2/32, 'fd00:241::2/128'],"
            f" tcx: {{ingress: [{ingress}]{egress}}}}}\n"
            f"  - name: {b}\n    kind: veth\n    addresses: [10.241.0.2/32]\n"
            f"    peer: {{name: {b_peer}, namespace: {p}, addresses: [10.241.2.2/24], tcx: {{egress: [{COUNT}]}}}}\n"
        )
        if c_pair:
            out += f"  - {{name: {c}, kind: veth, peer: {{name: eth2, namespace: {p}}}}}\n"
        return out + "routes:\n" + routes

    base_routes = (
        f"  - {{namespace: {p}, to: default, dev: eth0}}\n"
        f"  - {{to: 10.241.1.2/32, dev: {a}}}\n  - {{to: 10.241.2.0/24, dev: {b}}}\n"
    )
    texts = {
        "base": text(
            a_extra="10.241.0.1/32",
            b_peer="eth1",
            c_pair=True,
            ingress=f"{COUNT}, {POLICY}",
            egress="",
            routes=base_routes,
            mtu=1400,
        ),
        "mixed": text(
            a_extra="10.241.0.5/32",
            b_peer="eth3",
            c_pair=False,
            ingress=f"{COUNT}, {POLICY}",
            egress="",
            routes=(
                f"  - {{namespace: {p}, to: default, dev: eth0}}\n"
                f"  - {{namespace: {p}, to: 10.241.9.0/24, dev: eth0}}\n"
                f"  - {{to: 10.241.1.2/32, dev: {a}, metric: 7}}\n"
            ),
            mtu=1300,
        ),
        "programs": text(
            a_extra="10.241.0.1/32",
            b_peer="eth1",
            c_pair=True,
            ingress=f"{POLICY}, {COUNT2}",
            egress=f", egress: [{COUNT}]",
            routes=base_routes,
            mtu=1400,
        ),
    }
    return write_specs(work, texts)


@pytest.fixture
def rig(ns: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    if not obs.have_trixie_bpftool():
        pytest.skip("needs Debian trixie's bpftool (python tests/vm/rig.py observer)")
    for name in ("count", "pod_policy"):
        shutil.copy(obs.obj(name), tmp_path / f"{name}.o")
    (tmp_path / "count2.o").write_bytes(Path(obs.obj("count")).read_bytes() + b"\0")  # libbpf still loads it
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))
    made = Rig(ns.stack, ns.prefix, tmp_path, specs(ns, tmp_path))
    try:
        yield made
    finally:
        try:
            made.converge(None)
        finally:
            shutil.rmtree(f"/sys/fs/bpf/nkplan/{ns.stack}", ignore_errors=True)


CASES = [
    Case("create", None, "base"),
    Case("mixed", "base", "mixed"),
    Case("programs", "base", "programs"),
    Case("destroy", "base", None),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_fault_at_every_operation_leaves_the_kernel_as_it_was(rig: Rig, case: Case) -> None:
    fault_at_every_operation(rig, case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_kill_9_at_every_step_boundary_then_apply_converges_and_destroy_leaves_nothing(rig: Rig, case: Case) -> None:
    kill_at_every_step(rig, case)


@pytest.mark.parametrize(("start", "goal", "renames"), [(None, "base", 3), ("base", "programs", 2)])
def test_kill_9_between_pin_and_rename_shows_in_plan_and_is_removed(
    rig: Rig, start: str | None, goal: str, renames: int
) -> None:
    """The window the temporary pin exists for: a new link attached and pinned at `…-new`, not yet
    renamed into place (from empty: the hook holds nothing else). `plan` names the pin; destroy
    removes it (and the link it holds); so does apply."""
    kill_between_pin_and_rename(rig, start, goal, at_least=renames)


def test_kill_9_at_every_operation_then_apply_or_adopt_converges_and_destroy_leaves_nothing(rig: Rig) -> None:
    """From nothing to the base spec, killed inside steps: before each netlink change, bpf()
    change, bpffs removal or rename, namespace mount. The kills that need --adopt are those
    between a pair's creation and its ownership mark (README, reliability notes)."""
    ends = kill_at_every_operation(rig, CASES[0])  # create (the mixed plan too: ~50 s more, run by hand)
    assert ends["converged"] >= 1, ends
