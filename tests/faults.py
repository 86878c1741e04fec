"""Fault injection for the real-kernel tests (issue 14): a Kernel that wraps the real one and
fails (or kills its own process at) the k-th operation, and an independent view of what the
kernel holds to compare before and after.

Two levels are counted. A *step* is one write call the applier sends through the Kernel
protocol (create / update / delete / delete_many); an *operation* is one low-level change the
kernel layer makes while carrying out a step (a netlink request, a bpf() attach/pin/update/detach,
a bpffs removal or rename, a namespace mount), seen through nkplan/kernel/faultpoint.py. A
failure is injected at operation k as the kernel would refuse it: OSError(EIO), which the
kernel layer turns into the KernelError a real refusal gives. Operations after the injected one
are the rollback's, so `fail_rollback=j` fails the j-th of those too.

The view (`snapshot`) is read with iproute2 (`ip -d -j`: devices with their attributes,
addresses, routes, rules, in the host and in every namespace of the test) and Debian trixie's
bpftool (`net show`: what runs at each tcx/netkit hook, by program id), plus the listing of the
stack's bpffs pin tree. Never through nkplan's own reader."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nkplan import api, cli
from nkplan.kernel import faultpoint
from nkplan.kernel.seam import ApplySession, Kernel
from nkplan.run.applier import ApplyFailed
from tests import bpfobserve as obs
from tests.host import observe

BPFFS_ROOT = Path("/sys/fs/bpf/nkplan")
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Faults:
    """What to inject (0: nothing). Numbers count from 1."""

    fail_op: int = 0  # the k-th low-level operation fails
    fail_rollback: int = 0  # ... and the j-th operation after it (the rollback's) fails too
    kill_step: int = 0  # SIGKILL this process just before the k-th step
    kill_op: int = 0  # SIGKILL this process just before the k-th low-level operation
    steps: list[str] = field(default_factory=list)  # what was reached, in order
    ops: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FaultKernel:
    """The Kernel protocol around another kernel: every write step is counted (and the low-level
    operations inside it, through faultpoint); reads and everything else pass through."""

    def __init__(self, inner: Kernel, faults: Faults | None = None) -> None:
        self.inner = inner
        self.faults = faults if faults is not None else Faults()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _op(self, what: str) -> None:
        f = self.faults
        f.ops.append(what)
        n = len(f.ops)
        if n == f.kill_op:
            _kill()
        if n == f.fail_op or (f.fail_op and f.fail_rollback and n == f.fail_op + f.fail_rollback):
            f.injected.append(f"{n}: {what}")
            raise OSError(errno.EIO, f"injected fault at operation {n} ({what})")

    def _step(self, what: str, run: Callable[[], None]) -> None:
        self.faults.steps.append(what)
        if len(self.faults.steps) == self.faults.kill_step:
            _kill()
        previous = faultpoint.install(self._op)
        try:
            run()
        finally:
            faultpoint.install(previous)

    def create(self, rec: object, session: ApplySession | None = None) -> None:
        self._step(f"create {rec!r:.80}", lambda: self.inner.create(rec, session))

    def update(self, before: object, after: object, session: ApplySession | None = None) -> None:
        self._step(f"update {after!r:.80}", lambda: self.inner.update(before, after, session))

    def delete(self, rec: object, session: ApplySession | None = None) -> None:
        self._step(f"delete {rec!r:.80}", lambda: self.inner.delete(rec, session))

    def delete_many(self, recs: Sequence[object], session: ApplySession | None = None) -> None:
        self._step(f"delete {len(recs)}", lambda: self.inner.delete_many(recs, session))


# the independent view ----------------------------------------------------------------------------
_VOLATILE = {
    "stats64",
    "stats",
    "valid_life_time",
    "preferred_life_time",
    "operstate",  # follows carrier on its own schedule
    "ifindex",  # a device made again (a rollback of its delete) gets a new index
    "link_index",
    "link_id",  # a program put back on its hook is attached by a new link
    "link_netnsid",
    "tentative",  # IPv6 duplicate address detection still running
}


# what a device made again gets anew where the spec does not say: its MAC (compared only
# between snapshots taken with ids=False)
_MADE_AGAIN = frozenset({"prog_id", "id", "map_ids", "address", "permaddr"})


def _link_local(entry: dict[str, Any]) -> bool:
    if "dst" in entry:  # a route; those of the local table follow from the addresses (compared)
        return str(entry["dst"]).startswith(("fe80:", "ff00:")) or entry.get("table") == "local"
    return entry.get("scope") == "link" and entry.get("family") == "inet6"


def _clean(obj: Any, drop: frozenset[str] = frozenset()) -> Any:
    if isinstance(obj, dict):
        out = {k: _clean(v, drop) for k, v in obj.items() if k not in _VOLATILE and k not in drop}
        if isinstance(out.get("flags"), list):  # carrier comes and goes on its own schedule (as operstate)
            out["flags"] = [f for f in out["flags"] if f not in ("NO-CARRIER", "LOWER_UP")]
        return out
    if isinstance(obj, list):
        # IPv6 link-local addresses and their routes come with every device (their local route only
        # once duplicate address detection is over): the devices themselves are compared
        obj = [v for v in obj if not (isinstance(v, dict) and _link_local(v))]
        return [_clean(v, drop) for v in obj]
    return obj


def _netns(prefix: str) -> list[str]:
    # what `ip netns list` reads, without a process
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    return sorted(n for n in names if n.startswith(prefix))


def _hooks(ns: str | None, keep: Callable[[str], bool]) -> list[Any]:
    shown = obs.bpftool("net", "show", ns=ns, trixie=True)
    return [r for r in shown[0]["tc"] if keep(str(r.get("devname", "")))]


def _pins(stack: str) -> list[str]:
    top = BPFFS_ROOT / stack
    return sorted(str(p.relative_to(top)) for p in top.rglob("*")) if top.exists() else []


def snapshot(prefix: str, stack: str, *, ids: bool = True) -> dict[str, Any]:
    """What the kernel holds of the test's objects: namespaces named PREFIX*, host devices named
    PREFIX* (with their addresses and routes), everything inside those namespaces, the programs at
    their hooks, the stack's pin tree. ids=False also leaves out program and map ids (a re-apply
    loads new instances). Few observer processes per view (it is taken after every fault, and a
    process costs ~0.3 s in the VM): `ip -d addr show` gives each device's details with its
    addresses, `route show table all` both families."""
    drop = frozenset() if ids else _MADE_AGAIN

    def ours(name: str) -> bool:
        return name.startswith(prefix)

    view: dict[str, Any] = {"netns": _netns(prefix), "pins": _pins(stack)}
    view["host"] = {
        "links": [d for d in observe.ip_json("-d", "addr", "show") if ours(d.get("ifname", ""))],
        "routes": [r for r in observe.ip_json("route", "show", "table", "all") if ours(str(r.get("dev", "")))],
        "hooks": _hooks(None, ours),
    }
    for ns in view["netns"]:
        view[ns] = {
            "links": observe.ip_json("-d", "addr", "show", ns=ns),
            "routes": observe.ip_json("route", "show", "table", "all", ns=ns),
            "rules": observe.ip_json("rule", "show", ns=ns),
            "hooks": _hooks(ns, lambda _n: True),
        }
    return _clean(view, drop)  # type: ignore[no-any-return]


def _row_name(row: dict[str, Any]) -> str:
    return str(row.get("ifname") or row.get("dst") or f"{row.get('devname')} {row.get('kind')} {row.get('name')}")


def difference(a: Any, b: Any, where: str = "", out: list[str] | None = None) -> str:
    """Where two snapshots differ, one line per differing leaf (for assertion messages)."""
    lines: list[str] = [] if out is None else out
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            difference(a.get(key), b.get(key), f"{where}.{key}", lines)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            name = _row_name(x) if isinstance(x, dict) else i
            difference(x, y, f"{where}[{name}]", lines)
    elif isinstance(a, list) and isinstance(b, list):
        lines.append(f"{where}: only before: {[x for x in a if x not in b]!r:.500}")
        lines.append(f"{where}: only after: {[x for x in b if x not in a]!r:.500}")
    elif a != b:
        lines.append(f"{where}: {a!r:.400} != {b!r:.400}")
    return "\n".join(lines[:20])


def leftover_temp_pins(stack: str) -> list[str]:
    return [p for p in _pins(stack) if p.endswith("-new")]


# the sweeps (host and VM tests) --------------------------------------------------------------
def write_specs(work: Path, texts: dict[str, str]) -> dict[str, str]:
    """Each spec text as work/NAME.yaml: spec name → file (Rig's `paths`)."""
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


class Rig:
    """One test's stack: converge to a spec (or destroy), run a plan with faults, look at the kernel.
    `paths`: spec name → file; `prefix`: what the names of the test's namespaces and host devices
    start with; `work`: a folder of the test's own (the lock directory is work/locks)."""

    def __init__(self, stack: str, prefix: str, work: Path, paths: dict[str, str]) -> None:
        from nkplan.kernel.linux import LinuxKernel

        self.stack, self.prefix, self.work, self.paths = stack, prefix, work, paths
        self.kernel = LinuxKernel()

    def converge(self, spec: str | None) -> None:
        if spec is None:
            api.destroy(self.stack, on=self.kernel)
        else:
            api.apply(api.load_file(self.paths[spec]), on=self.kernel)

    def run(self, goal: str | None, faults: Faults) -> None:
        kernel = FaultKernel(self.kernel, faults)
        if goal is None:
            api.destroy(self.stack, on=kernel)  # type: ignore[arg-type]
        else:
            api.apply(api.load_file(self.paths[goal]), on=kernel)  # type: ignore[arg-type]

    def pending(self, goal: str | None) -> list[str]:
        from nkplan.run.workflow import empty_spec

        loaded = api.load_file(self.paths[goal]) if goal else empty_spec(self.stack)
        plan = api.plan(loaded, on=self.kernel).plan
        return [f"{c.address} ({c.action})" for c in plan.changes if c.action != "no-op"]

    def view(self, ids: bool = True) -> dict[str, Any]:
        return snapshot(self.prefix, self.stack, ids=ids)

    def nothing_left(self, said: str) -> None:
        view = self.view()
        assert view["netns"] == [] and view["pins"] == [], f"{said}\n{view}"
        assert view["host"] == {"links": [], "routes": [], "hooks": []}, f"{said}\n{view}"


def fault_at_every_operation(rig: Rig, case: Case, *, with_rollback_faults: bool = True, replan: bool = True) -> None:
    """Issue 14 item 2 for one plan (see tests/host/test_faults.py)."""
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
        if replan:
            assert rig.pending(case.start) == [], said

    # a rollback operation fails too: the error says what was left; applying again repairs it
    rollback_faults = absorbed = 0
    for k in sorted({max(1, ops // 2), ops}) if with_rollback_faults else ():
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
    print(
        f"\n{case.name}: {steps} steps, {ops} operations: {ops} faults injected, "
        f"{rollback_faults} with a failing rollback operation too ({absorbed} of them left nothing); {took:.1f} s"
    )
    assert rollback_faults >= 1 or not with_rollback_faults, f"{case.name}: no rollback had an operation to fail"


def driver(rig: Rig, goal: str | None, **kill: int) -> subprocess.CompletedProcess[str]:
    target = f"destroy:{rig.stack}" if goal is None else rig.paths[goal]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in kill.items()]
    return subprocess.run(
        [sys.executable, "-m", "tests.faultdriver", target, *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lock_is_free(rig: Rig) -> bool:
    path = rig.work / "locks" / f"{rig.stack}.lock"
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


def kill_at_every_step(rig: Rig, case: Case) -> None:
    """Issue 14 item 3 for one plan (see tests/host/test_faults.py)."""
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
        assert leftover_temp_pins(rig.stack) == [], said  # a step boundary is never between pin and rename
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


def kill_between_pin_and_rename(rig: Rig, start: str | None, goal: str, at_least: int = 1) -> None:
    """The window the temporary pin exists for: a new link attached and pinned at `…-new`, not yet
    renamed into place. `plan` names the pin; destroy removes it (and the link it holds); so does
    apply."""
    rig.converge(start)
    counted = Faults()
    rig.run(goal, counted)
    renames = [i + 1 for i, what in enumerate(counted.ops) if what.startswith("rename(") and what.endswith("-new)")]
    assert len(renames) >= at_least, counted.ops
    kills = 0
    for k, then in zip(renames, ["destroy", *["apply"] * (len(renames) - 1)], strict=True):
        rig.converge(start)
        proc = driver(rig, goal, kill_op=k)
        said = f"kill -9 before operation {k} ({counted.ops[k - 1]})\n{proc.stdout}{proc.stderr}"
        assert proc.returncode == -9, said
        kills += 1
        left = leftover_temp_pins(rig.stack)
        assert len(left) == 1, f"{said}\n{left}"
        name = Path(left[0]).name
        # the CLI's own rendering, in this process (a process of its own costs ~10 s in the VM)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["plan", rig.paths[goal]])
        shown = out.getvalue()
        assert code == cli.EXIT_OK and "interrupted apply left: " in shown and name in shown, (
            f"{said}\n{shown}{err.getvalue()}"
        )
        # the destroy plan deletes the hook the pin is under (in the first case it holds nothing else)
        assert any(p.startswith("hook[") and "(delete)" in p for p in rig.pending(None)), said
        if then == "destroy":
            rig.converge(None)
            rig.nothing_left(said)
        else:
            rig.converge(goal)
            assert leftover_temp_pins(rig.stack) == [] and rig.pending(goal) == [], said
            rig.converge(None)
            rig.nothing_left(said)
    print(f"\n{start} -> {goal}: {kills} kills between pin and rename")


def kill_at_every_operation(rig: Rig, case: Case) -> dict[str, int]:
    """kill -9 just before each low-level operation k = 1..N of a plan, so inside its steps (a
    child process, tests/faultdriver.py). Then applying again converges, or (a pair killed after
    its creation, before its ownership mark: unowned, so refused as made by hand) the refusal
    says `--adopt` and applying with it converges; destroy then leaves nothing. Returns how many
    kills ended each way."""
    t0 = time.monotonic()
    rig.converge(case.start)
    counted = Faults()
    rig.run(case.goal, counted)
    goal_view = rig.view(ids=False)
    ops = len(counted.ops)
    ends = {"converged": 0, "adopted": 0}
    adopted_at: list[str] = []
    for k in range(1, ops + 1):
        rig.converge(case.start)
        proc = driver(rig, case.goal, kill_op=k)
        said = f"{case.name}: kill -9 before operation {k} of {ops} ({counted.ops[k - 1]})\n{proc.stdout}{proc.stderr}"
        assert proc.returncode == -9, said
        assert lock_is_free(rig), said
        if case.goal is None:
            rig.converge(None)
            ends["converged"] += 1
        else:
            try:
                rig.converge(case.goal)
                ends["converged"] += 1
            except Exception as exc:  # noqa: BLE001 - the refusal is checked by its words
                assert "use --adopt to take it over" in str(exc), f"{said}\n{exc}"
                api.apply(api.load_file(rig.paths[case.goal]), adopt=True, on=rig.kernel)
                ends["adopted"] += 1
                adopted_at.append(f"{k}: {counted.ops[k - 1]} ({str(exc).split('already exists')[0][-60:]})")
            assert rig.pending(case.goal) == [], said
            assert rig.view(ids=False) == goal_view, f"{said}\n{difference(goal_view, rig.view(ids=False))}"
            rig.converge(None)
        rig.nothing_left(said)
    took = time.monotonic() - t0
    print(f"\n{case.name}: {ops} kills (one before each operation): {ends}; {took:.1f} s")
    print("  needed --adopt after the kill before: " + "; ".join(adopted_at))
    return ends
