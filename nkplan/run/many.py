"""Many stacks: a directory of spec files, each file one stack (`nkplan plan|apply|destroy DIR`).

Which files: the `*.yaml` and `*.yml` files directly in the directory (not in subfolders, not
hidden ones), sorted by name; that is also the order of the plans and of apply (destroy goes in
the reverse order). Fragments (`include:`) live in subfolders, so they are never taken for stacks.
Two files with the same `stack:` are an error naming both; an object (address) declared by two
stacks is an error naming both stacks, found when planning (before anything is applied).

The CLI does the printing (nkplan/cli_dirs.py); this module loads, plans and compares."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nkplan.core.plan import Plan
from nkplan.core.records import SysctlsRec
from nkplan.documents.many import StackResult
from nkplan.errors import NkplanError, PlanError, SpecError
from nkplan.kernel.seam import Kernel
from nkplan.spec.loader import Loaded

SUFFIXES = (".yaml", ".yml")
# the worst first: an error, then a stale plan, then pending changes, then success; 130
# (interrupted) and 4 (locked) only come from apply/destroy, where they are worse than a stale plan
SEVERITY = (130, 1, 4, 3, 2, 0)


def worst(codes: Sequence[int]) -> int:
    """The exit code of a directory: the worst of its stacks' (SEVERITY; an unknown code counts as 1)."""
    rank = {code: i for i, code in enumerate(SEVERITY)}
    return min(codes, key=lambda c: rank.get(c, rank[1]), default=0)


def stack_files(directory: str) -> list[str]:
    """The stack files of a directory, sorted by name; NkplanError when there are none."""
    base = Path(directory)
    try:
        found = sorted(
            p.name for p in base.iterdir() if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
    except OSError as exc:
        raise NkplanError(f"cannot list the directory {directory}: {exc.strerror or exc}") from None
    if not found:
        raise NkplanError(f"{directory}: no stack files (*.yaml, *.yml) directly in this directory")
    return [str(base / name) for name in found]


@dataclass
class Member:
    file: str
    loaded: Loaded | None
    problems: list[str]


def load_all(directory: str, load: Callable[[str, str], Loaded]) -> list[Member]:
    """Every stack file loaded (`load(file, root)`), each with its own problems; two files of the
    same stack both get a problem naming the other."""
    members: list[Member] = []
    for file in stack_files(directory):
        try:
            members.append(Member(file, load(file, directory), []))
        except SpecError as exc:
            members.append(Member(file, None, list(exc.problems)))
    included = {
        os.path.realpath(name): m.file for m in members if m.loaded is not None for name, _ in m.loaded.fragments
    }
    for m in members:
        user = included.get(os.path.realpath(m.file))
        if user is not None:
            m.problems.append(
                f"{m.file}: is included by {user} as a fragment, but a file directly in the directory is a "
                "stack; put fragments in a subfolder"
            )
            m.loaded = None
    by_stack: dict[str, list[Member]] = {}
    for m in members:
        if m.loaded is not None:
            by_stack.setdefault(m.loaded.spec.stack, []).append(m)
    for stack, group in by_stack.items():
        if len(group) < 2:
            continue
        for m in group:
            assert m.loaded is not None
            others = ", ".join(o.file for o in group if o is not m)
            pos = m.loaded.source.position(("stack",))
            m.problems.append(f"{pos}: stack {stack!r} is also declared by {others}; each stack belongs in one file")
    return members


def stack_of(m: Member) -> str | None:
    return m.loaded.spec.stack if m.loaded is not None else None


def plan_all(members: Sequence[Member], plan: Callable[[Loaded], Plan]) -> list[StackResult]:
    """Each stack planned on its own (a stack's problems stop only that stack's plan), then the
    objects declared by more than one stack marked as problems of each of them."""
    results: list[StackResult] = []
    for m in members:
        if m.problems or m.loaded is None:
            results.append(StackResult(m.file, stack_of(m), None, tuple(m.problems), 1))
            continue
        try:
            results.append(StackResult(m.file, stack_of(m), plan(m.loaded)))
        except (SpecError, PlanError) as exc:
            results.append(StackResult(m.file, stack_of(m), None, tuple(exc.problems), exc.exit_code))
        except NkplanError as exc:
            results.append(StackResult(m.file, stack_of(m), None, tuple(str(exc).splitlines()), exc.exit_code))
    return _collisions(results)


def _collisions(results: list[StackResult]) -> list[StackResult]:
    declared: dict[str, list[StackResult]] = {}
    for r in results:
        if r.plan is not None:
            for c in r.plan.changes:
                if c.after is None:
                    continue
                # sysctls: one record per namespace, but stacks may share one (the host's) and
                # each set keys of its own: only a key two stacks declare collides
                if isinstance(c.after, SysctlsRec):
                    for key, _ in c.after.values:
                        declared.setdefault(f"{c.address} {key}", []).append(r)
                else:
                    declared.setdefault(c.address, []).append(r)
    clash: dict[int, list[str]] = {}
    for address, owners in declared.items():
        if len(owners) < 2:
            continue
        for r in owners:
            others = ", ".join(f"stack {o.stack!r} ({o.file})" for o in owners if o is not r)
            clash.setdefault(id(r), []).append(
                f"{r.file}: {address} is also declared by {others}; an object belongs to one stack"
            )
    return [
        StackResult(r.file, r.stack, None, (*r.problems, *clash[id(r)]), 1) if id(r) in clash else r for r in results
    ]


def same_steps(shown: Plan, fresh: Plan) -> bool:
    """Whether a plan made again under the stack's lock is the one shown before (the same state of
    the stack's objects, the same changes)."""

    def steps(p: Plan) -> list[tuple[str, str, object]]:
        return [(c.address, c.action, c.after_attrs) for c in p.changes if c.action != "no-op"]

    return shown.fingerprint == fresh.fingerprint and steps(shown) == steps(fresh)


def planner(kernel: Kernel | None, *, adopt: bool = False, snapshot: str | None = None) -> Callable[[Loaded], Plan]:
    from nkplan import api

    def plan(loaded: Loaded) -> Plan:
        return api.plan(loaded, adopt=adopt, snapshot=snapshot, on=kernel).plan

    return plan
