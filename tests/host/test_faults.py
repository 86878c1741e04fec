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
Each test prints its counts (pytest -s shows them) and puts them in its assertion messages."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nkplan import api
from nkplan.kernel.linux import LinuxKernel
from nkplan.run.applier import ApplyFailed
from tests import bpfobserve as obs
from tests.faults import FaultKernel, Faults, difference, leftover_temp_pins, snapshot
from tests.host.conftest import Names

pytestmark = pytest.mark.host
REPO = Path(__file__).resolve().parents[2]
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
            a_extra="10.241.0.1/32", b_peer="eth1", c_pair=True, ingress=f"{COUNT}, {POLICY}", egress="",
            routes=base_routes, mtu=1400,
        ),
        "mixed": text(
            a_extra="10.241.0.5/32", b_peer="eth3", c_pair=False, ingress=f"{COUNT}, {POLICY}", egress="",
            routes=(
                f"  - {{namespace: {p}, to: default, dev: eth0}}\n"
                f"  - {{namespace: {p}, to: 10.241.9.0/24, dev: eth0}}\n"
                f"  - {{to: 10.241.1.2/32, dev: {a}, metric: 7}}\n"
            ),
            mtu=1300,
        ),
        "programs": text(
            a_extra="10.241.0.1/32", b_peer="eth1", c_pair=True, ingress=f"{POLICY}, {COUNT2}",
            egress=f", egress: [{COUNT}]", routes=base_routes, mtu=1400,
        ),
    }
    out = {}
    for name, body in texts.items():
        path = work / f"{name}.yaml"
        path.write_text(body)
        out[name] = str(path)
    return out


@dataclass(frozen=True)
class Case:
    name: str
    start: str | None  # spec name, None: nothing
    goal: str | None  # spec name, None: destroy


CASES = [
    Case("create", None, "base"),
    Case("mixed", "base", "mixed"),
    Case("programs", "base", "programs"),
    Case("destroy", "base", None),
]


class Rig:
    """One test's stack: converge to a spec (or destroy), run a plan with faults, look at the kernel."""

    def __init__(self, n: Names, work: Path) -> None:
        self.n, self.work = n, work
        self.paths = specs(n, work)
        self.kernel = LinuxKernel()

    def converge(self, spec: str | None) -> None:
        if spec is None:
            api.destroy(self.n.stack, on=self.kernel)
        else:
            api.apply(api.load_file(self.paths[spec]), on=self.kernel)

    def run(self, goal: str | None, faults: Faults) -> None:
        kernel = FaultKernel(self.kernel, faults)
        if goal is None:
            api.destroy(self.n.stack, on=kernel)  # type: ignore[arg-type]
        else:
            api.apply(api.load_file(self.paths[goal]), on=kernel)  # type: ignore[arg-type]

    def pending(self, goal: str | None) -> list[str]:
        loaded = api.load_file(self.paths[goal]) if goal else None
        if loaded is None:
            from nkplan.run.workflow import empty_spec

            loaded = empty_spec(self.n.stack)
        plan = api.plan(loaded, on=self.kernel).plan
        return [f"{c.address} ({c.action})" for c in plan.changes if c.action != "no-op"]

    def view(self, ids: bool = True) -> dict[str, object]:
        return snapshot(self.n.prefix, self.n.stack, ids=ids)

    def nothing_left(self, said: str) -> None:
        view = self.view()
        assert view["netns"] == [] and view["pins"] == [], f"{said}\n{view}"
        assert view["host"] == {"links": [], "addrs": [], "routes": [], "hooks": []}, f"{said}\n{view}"


@pytest.fixture
def rig(ns: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    if not obs.have_trixie_bpftool():
        pytest.skip("needs Debian trixie's bpftool (python tests/vm/rig.py observer)")
    for name in ("count", "pod_policy"):
        shutil.copy(obs.obj(name), tmp_path / f"{name}.o")
    (tmp_path / "count2.o").write_bytes(Path(obs.obj("count")).read_bytes() + b"\0")  # libbpf still loads it
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))
    made = Rig(ns, tmp_path)
    try:
        yield made
    finally:
        try:
            made.converge(None)
        finally:
            shutil.rmtree(f"/sys/fs/bpf/nkplan/{ns.stack}", ignore_errors=True)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_fault_at_every_operation_leaves_the_kernel_as_it_was(rig: Rig, case: Case) -> None:
    t0 = time.monotonic()
    rig.converge(case.start)
    counted = Faults()
    rig.run(case.goal, counted)
    goal_view = rig.view(ids=False)
    ops, steps = len(counted.ops), len(counted.steps)
    assert ops >= steps >= 1
    rig.converge(case.start)
    before = rig.view()
    for k in range(1, ops + 1):
        f = Faults(fail_op=k)
        with pytest.raises(ApplyFailed) as failed:
            rig.run(case.goal, f)
        said = f"{case.name}: fault at operation {k} of {ops} ({counted.ops[k - 1]}): {failed.value}"
        assert f.injected and ("EIO" in said or "Input/output error" in said), said  # as the kernel says it
        assert not failed.value.rollback_errors, said
        now = rig.view()
        assert now == before, f"{said}\n{difference(before, now)}"
        assert rig.pending(case.start) == [], said

    # a rollback operation fails too: the error says what was left; applying again repairs it
    rollback_faults = absorbed = 0
    for k in sorted({max(1, ops // 2), ops}):
        for j in (1, 2):
            f = Faults(fail_op=k, fail_rollback=j)
            with pytest.raises(ApplyFailed) as failed:
                rig.run(case.goal, f)
            said = f"{case.name}: fault at operation {k}, then at rollback operation {j}: {failed.value}"
            if len(f.injected) < 2:  # the rollback had fewer than j operations
                assert not failed.value.rollback_errors, said
                continue
            rollback_faults += 1
            message = str(failed.value)
            # a rollback step refused, or a failed step's own cleanup refused: either the error
            # names what was left, or a later undo step repaired it and nothing was left
            if "rollback step failed: " not in message and "it stays behind" not in message:
                now = rig.view()
                assert now == before, f"{said}\n{difference(before, now)}"
                absorbed += 1
                continue
            assert "run `nkplan plan` to see it" in message, said
            rig.converge(case.goal)
            assert rig.pending(case.goal) == [], said
            assert rig.view(ids=False) == goal_view, f"{said}\n{difference(goal_view, rig.view(ids=False))}"
            rig.converge(case.start)
            before = rig.view()
    took = time.monotonic() - t0
    print(f"\n{case.name}: {steps} steps, {ops} operations: {ops} faults injected, "
          f"{rollback_faults} with a failing rollback operation too ({absorbed} of them left nothing); {took:.1f} s")
    assert rollback_faults >= 1, f"{case.name}: no rollback had an operation to fail"


def driver(rig: Rig, goal: str | None, **kill: int) -> subprocess.CompletedProcess[str]:
    target = f"destroy:{rig.n.stack}" if goal is None else rig.paths[goal]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in kill.items()]
    return subprocess.run(
        [sys.executable, "-m", "tests.faultdriver", target, *flags],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def lock_is_free(rig: Rig) -> bool:
    path = rig.work / "locks" / f"{rig.n.stack}.lock"
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_kill_9_at_every_step_boundary_then_apply_converges_and_destroy_leaves_nothing(rig: Rig, case: Case) -> None:
    t0 = time.monotonic()
    rig.converge(case.start)
    counted = Faults()
    rig.run(case.goal, counted)
    goal_view = rig.view(ids=False)
    steps = len(counted.steps)
    kills = 0
    for k in range(1, steps + 1):
        rig.converge(case.start)
        proc = driver(rig, case.goal, kill_step=k)
        said = f"{case.name}: kill -9 before step {k} of {steps} ({counted.steps[k - 1]})\n{proc.stdout}{proc.stderr}"
        assert proc.returncode == -9, said
        kills += 1
        assert lock_is_free(rig), said
        assert leftover_temp_pins(rig.n.stack) == [], said  # a step boundary is never between pin and rename
        rig.converge(case.goal)
        assert rig.pending(case.goal) == [], said
        assert rig.view(ids=False) == goal_view, f"{said}\n{difference(goal_view, rig.view(ids=False))}"
        rig.converge(None)
        rig.nothing_left(said)
    rig.converge(case.start)
    proc = driver(rig, case.goal, kill_step=steps + 1)  # past the last step: it finishes
    assert proc.returncode == 0 and f"steps={steps} " in proc.stdout, proc.stdout + proc.stderr
    took = time.monotonic() - t0
    print(f"\n{case.name}: {kills} kills (one before each of {steps} steps); {took:.1f} s")


def test_kill_9_between_pin_and_rename_shows_in_plan_and_is_removed(rig: Rig) -> None:
    """The window the temporary pin exists for: a new link attached and pinned at `…-new`, not yet
    renamed into place. `plan` names the pin; destroy removes it (and the link it holds); so does
    apply."""
    rig.converge("base")
    counted = Faults()
    rig.run("programs", counted)
    renames = [i + 1 for i, what in enumerate(counted.ops) if what.startswith("rename(") and what.endswith("-new)")]
    assert len(renames) >= 2, counted.ops
    kills = 0
    for k, then in zip(renames, ["destroy", *["apply"] * (len(renames) - 1)], strict=True):
        rig.converge("base")
        proc = driver(rig, "programs", kill_op=k)
        said = f"kill -9 before operation {k} ({counted.ops[k - 1]})\n{proc.stdout}{proc.stderr}"
        assert proc.returncode == -9, said
        kills += 1
        left = leftover_temp_pins(rig.n.stack)
        assert len(left) == 1, f"{said}\n{left}"
        name = Path(left[0]).name
        shown = subprocess.run(
            [sys.executable, "-m", "nkplan.cli", "plan", rig.paths["programs"]], capture_output=True, text=True
        )
        assert shown.returncode == 0 and "interrupted apply left: " in shown.stdout and name in shown.stdout, (
            f"{said}\n{shown.stdout}{shown.stderr}"
        )
        if then == "destroy":
            rig.converge(None)
            rig.nothing_left(said)
        else:
            rig.converge("programs")
            assert leftover_temp_pins(rig.n.stack) == [] and rig.pending("programs") == [], said
            rig.converge(None)
            rig.nothing_left(said)
    print(f"\n{kills} kills between pin and rename")
