"""Carries out a Plan's operations through the Kernel protocol, keeping an undo journal. On a
failure (or Ctrl-C) the completed operations are undone in reverse and the original error is
re-raised; a rollback step that fails is reported, never allowed to hide the original error."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from nkplan.core.actions import INVERSE
from nkplan.core.implied import implied_deletes
from nkplan.core.plan import Operation, Plan
from nkplan.core.resources import BY_NAME
from nkplan.errors import InternalError, NkplanError, Unconfirmed
from nkplan.kernel.seam import ApplySession, Kernel

Progress = Callable[[str, Operation], None]


def execute(kernel: Kernel, op: Operation, session: ApplySession | None = None) -> None:
    """One operation through the seam, which hands it to the kernel half of its resource type."""
    if op.kind == "create" and op.after is not None:
        kernel.create(op.after, session)
    elif op.kind == "delete" and op.before is not None:
        kernel.delete(op.before, session)
    elif op.kind == "update" and op.before is not None and op.after is not None:
        kernel.update(op.before, op.after, session)
    else:
        raise InternalError(f"{op.kind} of {op.address} without the records it needs")


def inverse(op: Operation) -> Operation:
    return Operation(INVERSE[op.kind], op.address, op.type, op.after, op.before)


@dataclass
class ApplyFailed(NkplanError):
    """An operation failed; completed ones were rolled back (see rollback_errors)."""

    original: NkplanError | KeyboardInterrupt
    failed: Operation
    done: int
    rolled_back: int
    rollback_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        what = "interrupted" if isinstance(self.original, KeyboardInterrupt) else str(self.original)
        msg = f"{self.failed.address}: {what}"
        if self.done:
            msg += f"\nrolled back {self.rolled_back} of {self.done} completed step(s)"
        for err in self.rollback_errors:
            msg += f"\nrollback step failed: {err}"
        if self.rollback_errors:
            msg += "\nthe kernel may now hold a partial change: run `nkplan plan` to see it"
        super().__init__(msg)

    @property
    def fault(self) -> str:  # type: ignore[override]
        return getattr(self.original, "fault", "user")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a pipeline runner cancelling the job) is handled like Ctrl-C: stop and roll back."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _batches(ops: tuple[Operation, ...]) -> list[list[Operation]]:
    """Consecutive deletes that the resource type batches (same batch key, e.g. pairs in one
    namespace: see kernel/netlink/batch.py, a pair delete costs the kernel an RCU grace period
    each) run as one kernel call; everything else runs alone."""
    out: list[list[Operation]] = []
    prev_key: object = None
    for op in ops:
        key = None
        if op.kind == "delete" and op.before is not None:
            batch = BY_NAME[op.type].batch_key(op.before)
            key = (op.type, batch) if batch is not None else None
        if key is not None and key == prev_key:
            out[-1].append(op)
        else:
            out.append([op])
        prev_key = key
    return out


def _run(kernel: Kernel, batch: list[Operation], session: ApplySession) -> None:
    if len(batch) == 1:
        execute(kernel, batch[0], session)
        return
    kernel.delete_many([op.before for op in batch if op.before is not None], session)


def _put_back(op: Operation) -> Operation:
    """The journal entry of a delete left to the kernel: undone as update(rec, rec), which puts
    the record back whether the kernel removed it by then or not (core/implied.py)."""
    return Operation("update", op.address, op.type, op.before, op.before)


def apply_plan(
    kernel: Kernel, plan: Plan, progress: Progress | None = None, confirm: Callable[[], None] | None = None
) -> None:
    """Carry out the plan's operations; on a failure undo the completed ones in reverse. The
    session holds what the kernel halves need for that undo (programs taken off hooks) and is
    closed once the apply, or its rollback, is over. Deletes the kernel does by itself (a route
    whose device the plan deletes) are not asked of it.

    `confirm` runs after the last step, while the journal and session are still there: if it
    raises Unconfirmed (failed reachability checks) or is interrupted, the completed steps are
    rolled back like those of a failed step; any other error it raises passes through as it is
    (verify keeps its old contract: no rollback of an apply the kernel took but shows otherwise)."""
    journal: list[Operation] = []
    implied = {id(plan.operations[i]) for i in implied_deletes(plan.operations)}
    with _sigterm_as_interrupt(), ApplySession() as session:
        for batch in _batches(plan.operations):
            left_to_kernel = len(batch) == 1 and id(batch[0]) in implied
            try:
                if not left_to_kernel:
                    _run(kernel, batch, session)
            except (NkplanError, KeyboardInterrupt) as exc:
                rolled, errors = _rollback(kernel, journal, progress, session)
                raise ApplyFailed(exc, batch[0], len(journal), rolled, errors) from None
            journal.extend(_put_back(op) if left_to_kernel else op for op in batch)
            if progress:
                for op in batch:
                    progress("done", op)
        if confirm is None:
            return
        try:
            confirm()
        except Unconfirmed as exc:
            rolled, errors = _rollback(kernel, journal, progress, session)
            raise exc.after_rollback(len(journal), rolled, errors) from None
        except KeyboardInterrupt as exc:
            rolled, errors = _rollback(kernel, journal, progress, session)
            raise ApplyFailed(exc, plan.operations[-1], len(journal), rolled, errors) from None


def _rollback(
    kernel: Kernel, journal: list[Operation], progress: Progress | None, session: ApplySession
) -> tuple[int, list[str]]:
    rolled, errors = 0, []
    for op in reversed(journal):
        undo = inverse(op)
        try:
            execute(kernel, undo, session)
            rolled += 1
            if progress:
                progress("undone", op)
        except NkplanError as exc:
            errors.append(f"{op.address}: {exc}")
    return rolled, errors
