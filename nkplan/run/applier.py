"""Carries out a Plan's operations through the Kernel protocol, keeping an undo journal. On a
failure (or Ctrl-C) the completed operations are undone in reverse and the original error is
re-raised; a rollback step that fails is reported, never allowed to hide the original error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nkplan.core.actions import INVERSE
from nkplan.core.implied import implied_deletes
from nkplan.core.plan import Operation, Plan
from nkplan.core.resources import BY_NAME
from nkplan.errors import InternalError, NkplanError, Unconfirmed
from nkplan.kernel.seam import ApplySession, Kernel
from nkplan.run.signals import EXIT_INTERRUPTED, Deferred

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
    signal: str = ""  # the signal that interrupted the apply ("" for Ctrl-C seen as KeyboardInterrupt)
    verifying: bool = False  # interrupted after the last step, while verifying

    def __post_init__(self) -> None:
        if isinstance(self.original, KeyboardInterrupt):
            by = f" by {self.signal}" if self.signal else ""
            when = "after the last step, while verifying" if self.verifying else f"before {self.failed.address}"
            msg = f"interrupted{by} {when}"
        else:
            msg = f"{self.failed.address}: {self.original}"
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

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return EXIT_INTERRUPTED if isinstance(self.original, KeyboardInterrupt) else 1


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
    # SIGINT, SIGTERM, SIGHUP are acted on between steps, never inside one: a step the kernel
    # is halfway through (a pair made, its addresses not yet) would be in no journal to undo
    with Deferred() as signals, ApplySession() as session:
        current = plan.operations[0] if plan.operations else None
        last = False
        try:
            for batch in _batches(plan.operations):
                current = batch[0]
                signals.check()
                left_to_kernel = len(batch) == 1 and id(batch[0]) in implied
                try:
                    if not left_to_kernel:
                        _run(kernel, batch, session)
                except NkplanError as exc:
                    errors = _undo_failed(kernel, batch, session)
                    rolled, more = _rollback(kernel, journal, progress, session)
                    raise ApplyFailed(exc, batch[0], len(journal), rolled, errors + more) from None
                journal.extend(_put_back(op) if left_to_kernel else op for op in batch)
                if progress:
                    for op in batch:
                        progress("done", op)
            last = True  # every step done: an interrupt now is one before verification
            signals.check()
        except KeyboardInterrupt as exc:
            assert current is not None
            rolled, errors = _rollback(kernel, journal, progress, session)
            raise ApplyFailed(exc, current, len(journal), rolled, errors, signals.name, last) from None
        if confirm is None:
            return
        try:
            with signals.immediate():  # verify and checks change nothing: stop them at once
                confirm()
        except Unconfirmed as exc:
            rolled, errors = _rollback(kernel, journal, progress, session)
            raise exc.after_rollback(len(journal), rolled, errors) from None
        except KeyboardInterrupt as exc:
            rolled, errors = _rollback(kernel, journal, progress, session)
            raise ApplyFailed(exc, plan.operations[-1], len(journal), rolled, errors, signals.name, True) from None


def _undo_failed(kernel: Kernel, batch: list[Operation], session: ApplySession) -> list[str]:
    """A failed step may have done part of its job (a hook: one program attached and pinned,
    the next refused). Where the kernel half converges from what it finds (ResourceType.undo_failed),
    the step's inverse takes that part back; elsewhere a step is all or nothing by itself."""
    op = batch[0]
    if len(batch) != 1 or op.kind not in BY_NAME[op.type].undo_failed:
        return []
    try:
        execute(kernel, inverse(op), session)
    except NkplanError as exc:
        return [f"{op.address} (undoing the failed step): {exc}"]
    return []


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
