"""nkplan's public Python API (in the spirit of nmstate's libnmstate): load a spec, plan it
against the kernel or a snapshot, apply it (or a saved plan), show or destroy a stack. Typed
results, and the errors the CLI reports (nkplan.errors: every one an NkplanError that says whose
fault it is). The CLI is its first user. Everything else in the package is internal.

    from nkplan import api
    spec = api.load_file("pods.yaml")
    planned = api.plan(spec)                 # Planned: .plan (typed Plan), .live (LiveState)
    if planned.plan.has_changes:
        api.apply(spec)                      # plans again under the stack's lock, applies, verifies

This module is the composition root: it wires the pure layers (spec, core, documents) to the
real kernel (kernel.linux, kernel.bpf), which the pure layers never import themselves."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nkplan.core.records import LiveState, MapDef
from nkplan.errors import NkplanError, PlanError, StalePlanError
from nkplan.spec.loader import Loaded
from nkplan.spec.loader import load_file as _load_file
from nkplan.spec.loader import load_text as _load_text

__all__ = [
    "Loaded",
    "Plan",
    "Planned",
    "Shown",
    "apply",
    "check",
    "destroy",
    "inspect_object",
    "kernel",
    "load_dict",
    "load_file",
    "load_text",
    "plan",
    "read_plan",
    "revert_document",
    "show",
    "stacks",
]


def inspect_object(path: str) -> tuple[list[str], tuple[MapDef, ...]]:
    """The program names and own maps of a BPF object file, through libbpf (no privileges);
    libbpf (ctypes) is loaded only when a spec declares programs."""
    from nkplan.kernel.bpf import libbpf

    return libbpf.inspect_names(path)


def load_file(path: str, root: str | None = None) -> Loaded:
    """A spec from a file (or stdin for "-"); SpecError with file:line:col for every problem.
    `include:` fragments must lie inside `root` (default: the file's folder)."""
    return _load_file(path, inspect_object, root)


def load_text(text: str, filename: str = "<text>") -> Loaded:
    """A spec from YAML text; `filename` names it in messages (and BPF object paths resolve
    against its folder)."""
    return _load_text(text, filename, inspect_object)


# the revert document's name: in "/", so the object files it names may lie anywhere (it is
# nkplan's own document of the running stack, with the absolute paths the applied spec allowed)
REVERT_NAME = "/<revert>"


def load_revert(doc: dict[str, Any]) -> Loaded:
    """confirm-or-revert's document of the state before (revert_document), loaded as the watcher
    loads it to revert."""
    return load_dict(doc, filename=REVERT_NAME)


def load_dict(data: dict[str, Any], filename: str = "<dict>") -> Loaded:
    """A spec from data already parsed (for example an Ansible module's inline config). The
    positions in messages are those of its JSON rendering (JSON is YAML), one key per line."""
    return _load_text(json.dumps(data, indent=1, default=str) + "\n", filename, inspect_object)


# planning and applying ------------------------------------------------------------------------------
# (imported when used: `validate` needs none of it, and every command starts a new interpreter)
if TYPE_CHECKING:
    from nkplan.core.plan import Plan
    from nkplan.documents.programexport import Namer
    from nkplan.documents.signing import PlanKey
    from nkplan.kernel.seam import Kernel
    from nkplan.run.applier import Progress
    from nkplan.run.workflow import Planned

Review = Callable[["Plan"], None]  # sees the plan before anything changes; raises to cancel
BeforeChange = Callable[["Plan", "LiveState"], None]  # after the review, before the first change


def kernel() -> Kernel:
    """The running kernel, after checking this process may change network state (CapabilityError)."""
    from nkplan.kernel.linux import LinuxKernel

    found = LinuxKernel()
    found.check_privileges()
    return found


def plan(spec: Loaded, *, adopt: bool = False, snapshot: str | None = None, on: Kernel | None = None) -> Planned:
    """The plan of a spec against the kernel (read now), or against a `show --format json`
    snapshot file (no root needed; such a plan cannot be applied)."""
    from nkplan.run.workflow import plan_for

    if snapshot is not None:
        from nkplan.documents import snapshot as snapshots

        live, host = snapshots.load(snapshot)
        return plan_for(None, spec, adopt=adopt, live=live, source="snapshot", host=host)
    return plan_for(on or kernel(), spec, adopt=adopt)


def apply(
    spec: Loaded,
    *,
    adopt: bool = False,
    saved: Plan | None = None,
    review: Review | None = None,
    progress: Progress | None = None,
    on: Kernel | None = None,
    keep_on_check_failure: bool = False,
    before_change: BeforeChange | None = None,
    lock_timeout: float = 0.0,
) -> Plan:
    """Make the kernel hold what the spec declares, under the stack's lock: plan (or, with
    `saved`, check that the live state is still the one the saved plan was made against:
    StalePlanError otherwise), let `review` see the plan, apply, verify, run the spec's
    reachability checks. Returns the plan that was carried out; on a failure the completed
    steps are rolled back and ApplyFailed raised; when a check fails they are rolled back too
    (unless keep_on_check_failure) and ChecksFailed raised. With no changes to make, the
    checks still run (and a failure has nothing to roll back). `before_change` sees the plan and
    the live state it was made against after the review, when there are changes, before the first
    one (confirm-or-revert saves its revert there). A stack waiting for the confirmation of an
    earlier apply is not changed (LockError). `lock_timeout`: seconds to wait for the stack's
    lock held by another process (LockError after that; at once by default)."""
    from nkplan.run.lock import stack_lock
    from nkplan.run.workflow import interrupted_after

    target = on or kernel()
    completed: list[bool] = []  # set by _apply_locked the moment a verified apply is over
    try:
        with stack_lock(spec.spec.stack, lock_timeout):
            chosen = _apply_locked(
                target, spec, adopt, saved, review, progress, keep_on_check_failure, before_change, completed
            )
    except KeyboardInterrupt as exc:
        if completed:  # between the verified apply and here: the change is there, and stays
            raise interrupted_after(exc, "after the apply") from None
        raise
    return chosen


def _apply_locked(
    target: Kernel,
    spec: Loaded,
    adopt: bool,
    saved: Plan | None,
    review: Review | None,
    progress: Progress | None,
    keep_on_check_failure: bool,
    before_change: BeforeChange | None,
    completed: list[bool],
) -> Plan:
    from nkplan.documents.savedplan import check_fresh
    from nkplan.run.confirm import refuse_if_pending
    from nkplan.run.identity import host_identity
    from nkplan.run.workflow import apply_and_verify, plan_for, require_checks

    refuse_if_pending(spec.spec.stack)
    if saved is not None:
        try:
            planned = plan_for(target, spec, adopt=bool(saved.meta.get("adopt")))
        except PlanError as exc:  # e.g. an object made by hand since: the plan no longer holds
            raise StalePlanError(f"the live state changed since the plan was made: {exc}") from None
        check_fresh(saved, planned.plan, host_identity())
        chosen = saved
    else:
        planned = plan_for(target, spec, adopt=adopt)
        chosen = planned.plan
    if review is not None:
        review(chosen)
    if chosen.has_changes and before_change is not None:
        before_change(chosen, planned.live)
    if chosen.has_changes:
        apply_and_verify(target, spec, chosen, progress=progress, keep_on_check_failure=keep_on_check_failure)
        completed.append(True)
    else:
        require_checks(target, spec.spec, note="nothing was changed (the plan had no changes)")
    return chosen


def check(spec: Loaded, *, on: Kernel | None = None) -> list[CheckResult]:
    """Run the spec's reachability checks (`checks:`) against the kernel as it is, together;
    results in spec order (CheckResult.passed). Changes nothing, takes no lock."""
    from nkplan.run.workflow import run_checks

    return run_checks(on or kernel(), spec.spec)


def read_plan(path: str, verify_key: PlanKey | None = None) -> tuple[Plan, Loaded]:
    """A saved plan (`plan --out`) and the spec embedded in it; PlanFileError if it is damaged, or
    (with `verify_key`, see documents/signing.py) not signed with that key."""
    from nkplan.documents.savedplan import read_saved

    return read_saved(path, inspect_object, verify_key)


def destroy(
    stack: str,
    *,
    review: Review | None = None,
    progress: Progress | None = None,
    on: Kernel | None = None,
    lock_timeout: float = 0.0,
) -> Plan:
    """Remove everything the stack owns (the plan of an empty spec)."""
    from nkplan.run.workflow import empty_spec

    return apply(empty_spec(stack), review=review, progress=progress, on=on, lock_timeout=lock_timeout)


@dataclass(frozen=True)
class Shown:
    document: dict[str, Any]  # a spec (plus x-nkplan-programs: what runs at each hook)
    live: LiveState  # everything read, for a snapshot (documents.snapshot.to_json)


def show(stack: str, *, spec: Loaded | None = None, unowned: bool = False, on: Kernel | None = None) -> Shown:
    """The stack's live state as a spec document that plans to no changes (with `spec`, BPF
    programs are named by the object files it declares); `unowned` adds what no stack owns."""
    from nkplan.core.capabilities import declared_net_keys, declared_sysctls
    from nkplan.core.desired import bpf_reads
    from nkplan.documents.show import programs_listing, stack_document

    # the sysctls a spec declares are read too (nothing else tells which keys a stack manages)
    sysctls, net_keys = (declared_sysctls(spec.spec), declared_net_keys(spec.spec)) if spec else (frozenset(), {})
    # ... and the values its programs declare (globals, map entries: nothing else is read of maps)
    reads = bpf_reads(spec.spec, spec.source.filename, spec.objects, spec.object_maps) if spec else {}
    live = (on or kernel()).read(probe_netkit=True, sysctls=sysctls, net_keys=net_keys, bpf_reads=reads)
    doc = stack_document(live, stack, unowned=unowned, programs=_program_namer(spec, live))
    listing = programs_listing(live, stack)
    if listing:
        doc["x-nkplan-programs"] = listing
    return Shown(doc, live)


def _program_namer(spec: Loaded | None, live: LiveState) -> Namer | None:
    """Running programs named after the program entries of `spec` (documents.programexport)."""
    if spec is None:
        return None
    from nkplan.documents.programexport import SpecPrograms, declared_programs
    from nkplan.spec.btf import read_object
    from nkplan.spec.globals import resolver

    declared = declared_programs(spec.spec, spec.source.filename, spec.objects, spec.object_maps)
    return SpecPrograms(declared, live, resolver(spec.spec), read_object)


def revert_document(live: LiveState, spec: Loaded) -> dict[str, Any]:
    """The stack as `live` holds it, as a spec that applies it back (confirm-or-revert): `show`'s
    document, with the program objects and sysctl keys of `spec`. NkplanError when a program in
    `live` comes from an object `spec` does not name, or runs values its declaration cannot name
    (nothing could load it again), and when the document does not load as a spec."""
    from nkplan.documents.show import UNKNOWN_OBJECT, stack_document
    from nkplan.errors import SpecError

    doc = stack_document(live, spec.spec.stack, programs=_program_namer(spec, live))
    unknown = sorted({m for m in _strings(doc) if m.startswith(UNKNOWN_OBJECT)})
    if unknown:
        raise NkplanError(
            "cannot keep a revert ready: the stack runs BPF programs that this spec's program entries do not "
            f"name ({', '.join(unknown)}: another object file, or globals it does not declare); apply without "
            "--confirm-within, or name those objects and globals first"
        )
    try:  # the watcher loads it when it reverts: a document it could not load is refused now
        load_revert(doc)
    except SpecError as exc:
        raise NkplanError(f"cannot keep a revert ready: the state before does not load as a spec: {exc}") from None
    return doc


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def stacks(*, on: Kernel | None = None) -> list[StackCounts]:
    """The stacks present on this host (found through their ownership marks, in one read of the
    kernel), each with the counts of what it owns."""
    from nkplan.documents.stacks import stacks_of

    return stacks_of((on or kernel()).read())


if TYPE_CHECKING:
    from nkplan.core.reach import CheckResult
    from nkplan.documents.stacks import StackCounts
