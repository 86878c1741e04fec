"""Carries out a Plan's operations through the Kernel protocol, keeping an undo journal. On a
failure (or Ctrl-C) the completed operations are undone in reverse and the original error is
re-raised; a rollback step that fails is reported, never allowed to hide the original error."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from nkplan.core.plan import Operation, Plan
from nkplan.core.records import HookRec, LinkRec, NamespaceRec, RouteRec
from nkplan.errors import InternalError, NkplanError
from nkplan.kernel.seam import Kernel

Progress = Callable[[str, Operation], None]


def execute(kernel: Kernel, op: Operation) -> None:
    before, after = op.records()
    if op.type == "hook":  # one kernel call makes a hook's programs what they should be
        assert isinstance(before, HookRec | None) and isinstance(after, HookRec | None)
        kernel.set_programs(before, after)
        return
    if op.kind == "create":
        if isinstance(after, NamespaceRec):
            kernel.create_namespace(after.name, after.owner or "")
        elif isinstance(after, LinkRec):
            kernel.create_link(after)
        elif isinstance(after, RouteRec):
            kernel.add_route(after)
        else:
            raise InternalError(f"create without a target record: {op.address}")
    elif op.kind == "delete":
        if isinstance(before, NamespaceRec):
            kernel.delete_namespace(before.name)
        elif isinstance(before, LinkRec):
            kernel.delete_link(before)
        elif isinstance(before, RouteRec):
            kernel.delete_route(before)
        else:
            raise InternalError(f"delete without a current record: {op.address}")
    elif isinstance(before, NamespaceRec) and isinstance(after, NamespaceRec):
        kernel.set_namespace_owner(after.name, after.owner)
    elif isinstance(before, LinkRec) and isinstance(after, LinkRec):
        kernel.update_link(before, after)
    elif isinstance(before, RouteRec) and isinstance(after, RouteRec):
        kernel.replace_route(before, after)
    else:
        raise InternalError(f"update with mismatched records: {op.address}")


def inverse(op: Operation) -> Operation:
    kind = {"create": "delete", "delete": "create", "update": "update"}[op.kind]
    return Operation(kind, op.address, op.type, op.after, op.before)  # type: ignore[arg-type]


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
    """Consecutive pair deletes in one namespace run as one kernel call (see kernel/netlink/batch.py:
    a pair delete costs the kernel an RCU grace period each); everything else runs alone."""
    out: list[list[Operation]] = []
    for op in ops:
        prev = out[-1][-1] if out else None
        if (
            prev is not None
            and _is_link_delete(op)
            and _is_link_delete(prev)
            and op.before is not None
            and prev.before is not None
            and op.before["primary"]["namespace"] == prev.before["primary"]["namespace"]
        ):
            out[-1].append(op)
        else:
            out.append([op])
    return out


def _is_link_delete(op: Operation) -> bool:
    return op.kind == "delete" and op.type == "link"


def _run(kernel: Kernel, batch: list[Operation]) -> None:
    if len(batch) == 1:
        execute(kernel, batch[0])
        return
    links = [op.records()[0] for op in batch]
    kernel.delete_links([rec for rec in links if isinstance(rec, LinkRec)])


def apply_plan(kernel: Kernel, plan: Plan, progress: Progress | None = None) -> None:
    journal: list[Operation] = []
    with _sigterm_as_interrupt():
        for batch in _batches(plan.operations):
            try:
                _run(kernel, batch)
            except (NkplanError, KeyboardInterrupt) as exc:
                rolled, errors = _rollback(kernel, journal, progress)
                raise ApplyFailed(exc, batch[0], len(journal), rolled, errors) from None
            journal.extend(batch)
            if progress:
                for op in batch:
                    progress("done", op)


def _rollback(kernel: Kernel, journal: list[Operation], progress: Progress | None) -> tuple[int, list[str]]:
    rolled, errors = 0, []
    for op in reversed(journal):
        undo = inverse(op)
        try:
            execute(kernel, undo)
            rolled += 1
            if progress:
                progress("undone", op)
        except NkplanError as exc:
            errors.append(f"{op.address}: {exc}")
    return rolled, errors
