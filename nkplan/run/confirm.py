"""Confirm-or-revert (`nkplan apply FILE --confirm-within SECONDS`, `nkplan confirm STACK`).

Before the first change, apply writes the stack's live state as a spec (the revert: what `nkplan
show` would print, with the program objects and sysctl keys of the spec being applied) and starts
a **watcher**: this module run as its own process in its own session (`start_new_session`), so
neither a closed terminal (SIGHUP to the session), a closed stdin, nor the apply process being
killed reaches it. The watcher reverts — applies the saved pre-apply spec — when

* the deadline passes without a confirmation (`nkplan confirm STACK`, or Enter on apply's terminal),
* the apply process dies before it finished (killed mid-apply: its own rollback never ran).

It does nothing when apply fails on its own (apply rolled back already) or there was nothing to
change. Files, under /run/nkplan/confirm/ (lock_dir()):

    STACK.pending   flock held by the watcher for its whole life: "a confirmation is pending"
                    (the kernel releases it however the watcher dies); holds the watcher's pid
    STACK.json      the state: revert spec, apply pid, phase, deadline, outcome
    STACK.confirm   made by `nkplan confirm` (or Enter), taken by the watcher
    STACK.log       the watcher's log

A systemd unit that runs apply with KillMode=control-group kills the watcher with it: run
confirm-or-revert from a shell (or wrap it in `systemd-run --scope`)."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nkplan.errors import LockError, NkplanError
from nkplan.run.lock import lock_dir

if TYPE_CHECKING:
    from nkplan.core.plan import Plan

POLL = 0.1  # s between looks at the state (confirmation, deadline, the apply's pid)
LOCK_WAIT = 60.0  # s the revert waits for the stack's lock
START_LIMIT = 30.0  # s for a watcher to come up (an interpreter start on a loaded machine)

APPLYING, WAITING, ABORTED, CONFIRMED, REVERTING, REVERTED, REVERT_FAILED = (
    "applying",
    "waiting",
    "aborted",
    "confirmed",
    "reverting",
    "reverted",
    "revert-failed",
)
FINAL = (ABORTED, CONFIRMED, REVERTED, REVERT_FAILED)


def clock() -> float:
    """Seconds since boot, counting suspend: the same in every process, and not moved by NTP
    stepping the wall clock (common right after boot), which would revert early or hours late."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def confirm_dir() -> Path:
    return lock_dir() / "confirm"


@dataclass(frozen=True)
class Files:
    stack: str

    def _p(self, ext: str) -> Path:
        return confirm_dir() / f"{self.stack}.{ext}"

    @property
    def pending(self) -> Path:
        return self._p("pending")

    @property
    def state(self) -> Path:
        return self._p("json")

    @property
    def confirm(self) -> Path:
        return self._p("confirm")

    @property
    def log(self) -> Path:
        return self._p("log")


def read_state(files: Files) -> dict[str, Any]:
    try:
        data = json.loads(files.state.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(files: Files, state: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file)."""
    tmp = files.state.with_suffix(f".json.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, files.state)


def update_state(files: Files, **changes: Any) -> dict[str, Any]:
    state = {**read_state(files), **changes}
    write_state(files, state)
    return state


def watcher_pid(stack: str) -> int | None:
    """The pid of the live watcher of `stack`, or None when no confirmation is pending."""
    path = Files(stack).pending
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        return None  # nobody holds it: a watcher that ended (or died)
    finally:
        os.close(fd)


def refuse_if_pending(stack: str) -> None:
    """Any change to a stack waiting for confirmation is refused (but the watcher's own revert)."""
    pid = watcher_pid(stack)
    if pid is not None and pid != os.getpid():
        state = read_state(Files(stack))
        left = max(0.0, float(state.get("deadline", 0)) - clock()) if state.get("deadline") else None
        when = f"; it reverts in {left:.0f} s" if left is not None else ""
        raise LockError(
            f"stack {stack!r} waits for confirmation of an earlier apply (watcher pid {pid}{when}): "
            f"run `nkplan confirm {stack}` to keep that change, or wait for the revert"
        )


# the apply side --------------------------------------------------------------------------------------


@dataclass
class Pending:
    """A started watcher, from the apply process's point of view."""

    files: Files
    pid: int
    within: float

    def applied(self) -> float:
        """The apply finished: start the clock. Returns the deadline (epoch seconds)."""
        deadline = clock() + self.within
        self.files.confirm.unlink(missing_ok=True)  # only a confirmation given from now on counts
        update_state(self.files, phase=WAITING, deadline=deadline)
        return deadline

    def aborted(self, why: str) -> None:
        """The apply failed and rolled back on its own (or changed nothing): nothing to revert."""
        update_state(self.files, phase=ABORTED, outcome=why)
        self.wait_end(5.0)

    def wait_end(self, limit: float) -> dict[str, Any]:
        return wait_end(self.files, limit)


def wait_end(files: Files, limit: float) -> dict[str, Any]:
    """The state once the watcher has ended (released the pending lock), or after `limit` s."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if watcher_pid(files.stack) is None:
            break
        time.sleep(POLL)
    return read_state(files)


def start(stack: str, revert: dict[str, Any], within: float, spec_file: str, marks: dict[str, str]) -> Pending:
    """Save the revert and start the watcher; return once it holds the pending lock."""
    files = Files(stack)
    confirm_dir().mkdir(parents=True, exist_ok=True)
    refuse_if_pending(stack)
    files.confirm.unlink(missing_ok=True)
    write_state(
        files,
        {
            "stack": stack,
            "phase": APPLYING,
            "apply_pid": os.getpid(),
            "within": within,
            "spec_file": spec_file,
            "revert": revert,
            "marks": marks,
            "started": time.time(),
        },
    )
    with open(files.log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nkplan.run.confirm", stack],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
            close_fds=True,
        )
    end = time.monotonic() + START_LIMIT
    while watcher_pid(stack) != proc.pid:
        if proc.poll() is not None:
            raise NkplanError(f"the confirm-or-revert watcher did not start (exit {proc.returncode}); see {files.log}")
        if time.monotonic() > end:
            proc.kill()
            raise NkplanError(f"the confirm-or-revert watcher did not start within {START_LIMIT:.0f} s")
        time.sleep(0.02)
    return Pending(files, proc.pid, within)


def confirm(stack: str, wait: float = 10.0) -> dict[str, Any]:
    """`nkplan confirm STACK`: keep the pending change. Returns the final state."""
    files = Files(stack)
    if watcher_pid(stack) is None:
        raise NkplanError(f"no apply of stack {stack!r} waits for confirmation")
    phase = read_state(files).get("phase")
    if phase in (REVERTING, REVERTED, REVERT_FAILED):
        raise NkplanError(f"too late: the revert of stack {stack!r} has already started")
    if phase == APPLYING:  # confirm what you have seen verified, not a change still under way
        raise NkplanError(f"the apply of stack {stack!r} is still running: confirm once it waits for confirmation")
    files.confirm.touch()
    return wait_end(files, wait)


# the watcher ------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    # a zombie (the apply died but its parent has not reaped it) counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _say(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}", flush=True)


def _revert(files: Files, state: dict[str, Any], why: str, apply_doc: ApplyDoc) -> None:
    update_state(files, phase=REVERTING, outcome=why)
    _say(f"reverting stack {files.stack!r}: {why}")
    try:
        apply_doc(state["revert"], state.get("marks") or {})
    except NkplanError as exc:
        _say(f"revert FAILED: {exc}")
        update_state(files, phase=REVERT_FAILED, outcome=f"{why}; the revert failed: {exc}")
        return
    _say("reverted: the stack is as it was before the apply")
    update_state(files, phase=REVERTED, outcome=why)


ApplyDoc = Callable[[dict[str, Any], dict[str, str]], Any]


def marks_of(plan: Plan) -> dict[str, str]:
    """The digests of the ownership marks (`applied`) the plan's objects carry before it runs."""
    out = {}
    for c in plan.changes:
        applied: Any = getattr(c.before, "applied", None)
        if applied:
            out[c.address] = str(applied)
    return out


def _marked(rec: Any, digest: str) -> Any:
    return dataclasses.replace(rec, applied=digest)


def with_marks(plan: Plan, marks: dict[str, str]) -> Plan:
    """The plan, writing the ownership marks' digests as they were before the apply. The revert
    spec is `show`'s rendering of the old state, not the user's old declaration (it names MACs the
    user may have left to the kernel, say), so its own digests differ; the old ones keep drift
    detection as it was, and the marks read back as before."""
    ops = tuple(
        dataclasses.replace(op, after=_marked(op.after, marks[op.address]))
        if op.after is not None and op.address in marks and hasattr(op.after, "applied")
        else op
        for op in plan.operations
    )
    return dataclasses.replace(plan, operations=ops)


def _apply_doc(doc: dict[str, Any], marks: dict[str, str]) -> None:
    """Apply the revert spec as `nkplan apply` would (under the stack's lock, verified), with the
    old marks. The lock may still be held for a moment by an apply on its way out: wait for it."""
    from nkplan import api
    from nkplan.run.lock import stack_lock
    from nkplan.run.workflow import apply_and_verify, plan_for

    loaded = api.load_revert(doc)
    target = api.kernel()
    end = time.monotonic() + LOCK_WAIT
    while True:
        try:
            with stack_lock(loaded.spec.stack):
                plan = with_marks(plan_for(target, loaded).plan, marks)
                if plan.has_changes:
                    apply_and_verify(target, loaded, plan)
                return
        except LockError:
            if time.monotonic() > end:
                raise
            time.sleep(POLL)


def watch(stack: str, apply_doc: ApplyDoc = _apply_doc) -> int:
    files = Files(stack)
    fd = os.open(files.pending, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _say(f"another watcher holds {files.pending}")
        return 1
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _say(f"watching stack {stack!r}")
    try:
        while True:
            state = read_state(files)
            phase = state.get("phase")
            if phase == ABORTED:
                _say(f"the apply ended without a change to keep: {state.get('outcome', '')}")
                return 0
            if phase == APPLYING and not _alive(int(state.get("apply_pid", 0))):
                _revert(files, state, "the apply process died before it finished", apply_doc)
                return 0
            if phase == WAITING:
                if files.confirm.exists():
                    update_state(files, phase=CONFIRMED, outcome="confirmed")
                    _say("confirmed: the change is kept")
                    return 0
                if clock() >= float(state["deadline"]):
                    _revert(files, state, f"not confirmed within {state.get('within', 0):g} s", apply_doc)
                    return 0
            time.sleep(POLL)
    finally:
        files.confirm.unlink(missing_ok=True)
        os.close(fd)  # releases the pending lock: the next apply may start


if __name__ == "__main__":
    sys.exit(watch(sys.argv[1]))
