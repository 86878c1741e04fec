"""Checks of the BPF object files a spec names: the file exists, is an ELF BPF object, and holds
the program. Needs no root and no kernel, but it reads files, so it runs after the pure checks.
Also computes each object's content digest (its identity).

Which programs and maps an object holds takes libbpf (ctypes), which the spec layer must not
load: the caller hands in an `Inspect` (nkplan.api wires libbpf's, nkplan.kernel.bpf.libbpf.inspect_names)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nkplan.core.records import MapDef
from nkplan.spec import btf, objfile
from nkplan.spec.bpfvalues import Resolver, ValueProblem
from nkplan.spec.checks import Problem, declared_hooks
from nkplan.spec.globals import program_globals
from nkplan.spec.globals import resolver as spec_resolver
from nkplan.spec.mapentries import program_map_entries
from nkplan.spec.models import MapSpec, StackSpec

# an object file's program names and own maps; raises InspectError when it cannot open the file
Inspect = Callable[[str], tuple[list[str], tuple[MapDef, ...]]]


class InspectError(Exception):
    """An Inspect could not open an object file; the message says why (libbpf's words)."""


def resolve(spec_file: str, obj: str) -> str:
    """An object path as written in the spec: relative to the spec file's folder."""
    base = os.path.dirname(os.path.abspath(spec_file)) if spec_file not in ("-", "<stdin>") else os.getcwd()
    return os.path.normpath(os.path.join(base, obj))


@dataclass
class ObjectFacts:
    """What the checks learnt of the object files, by resolved path."""

    digests: dict[str, str] = field(default_factory=dict)  # content digest (16 hex)
    maps: dict[str, tuple[MapDef, ...]] = field(default_factory=dict)  # the object's own maps


ALLOW_ENV = "NKPLAN_ALLOW_PATHS"  # more directories object files may come from, os.pathsep-separated


def allowed_roots(spec_file: str) -> list[str]:
    """Where a spec's BPF object files may lie: the spec's own directory tree, the working
    directory's (a CI job runs in its checkout: a spec there may name ../bpf/build/x.o), and
    the directories NKPLAN_ALLOW_PATHS names. Resolved, symbolic links included."""
    base = os.path.dirname(os.path.abspath(spec_file)) if spec_file not in ("-", "<stdin>") else os.getcwd()
    extra = [p for p in os.environ.get(ALLOW_ENV, "").split(os.pathsep) if p]
    return [os.path.realpath(p) for p in (base, os.getcwd(), *extra)]


def confinement_problem(full: str, spec_file: str) -> str | None:
    """None when `full` may be read; else why not. A pull request must not make a CI job that
    plans it read files elsewhere on the runner (/etc/…, a symlink out of the checkout)."""
    real = os.path.realpath(full)
    for root in allowed_roots(spec_file):
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return None
    return (
        f"leads outside the spec's directory and the working directory ({real}); refused "
        f"(name more directories in {ALLOW_ENV} to allow them)"
    )


def object_problems(spec: StackSpec, spec_file: str, inspect: Inspect) -> tuple[list[Problem], ObjectFacts]:
    """(problems, what was learnt of the objects)."""
    problems: list[Problem] = []
    facts = ObjectFacts()
    resolver: Resolver | None = None
    contents: dict[str, list[str] | str] = {}
    for path, _end, _hook, progs in declared_hooks(spec):
        for j, prog in enumerate(progs):
            where = (*path, j, "object")
            full = resolve(spec_file, prog.object)
            if full not in contents:
                bad = confinement_problem(full, spec_file) or objfile.problem(full)
                if bad is None:
                    try:
                        contents[full], facts.maps[full] = inspect(full)
                        facts.digests[full] = objfile.digest(full)[: objfile.DIGEST_CHARS]
                    except InspectError as exc:  # libbpf refusing to open it: say so, with its words
                        contents[full] = f"libbpf cannot open it: {exc}"
                else:
                    contents[full] = bad
            found = contents[full]
            if isinstance(found, str):
                problems.append((where, f"object {prog.object!r} ({full}): {found}"))
            elif prog.program not in found:
                have = ", ".join(sorted(found)) or "none"
                problems.append(
                    ((*path, j, "program"), f"object {prog.object!r} has no program {prog.program!r} (it has: {have})")
                )
            else:
                if prog.globals:
                    resolver = resolver or spec_resolver(spec)
                    problems += globals_problems(prog.globals, prog.object, full, (*path, j, "globals"), resolver)
                if prog.maps:
                    resolver = resolver or spec_resolver(spec)
                    where = (*path, j, "maps")
                    problems += entries_problems(prog.maps, prog.object, full, facts.maps[full], where, resolver)
    return problems, facts


def _each_checked(
    items: dict[str, Any],
    written: str,
    full: str,
    where: tuple[str | int, ...],
    check: Callable[[Any, str, Any], object],
) -> list[Problem]:
    """Every item of a program entry's `globals:` or `maps:` checked against its object's BTF
    types (check(types, name, item) raises ValueProblem), every bad one reported at once."""
    try:
        tp = btf.read_object(full)
    except (btf.BtfError, OSError) as exc:
        return [(where, f"object {written!r}: cannot read its BTF types: {exc}")]
    out: list[Problem] = []
    for name, item in items.items():
        try:
            check(tp, name, item)
        except ValueProblem as exc:
            out.append(((*where, *exc.where), exc.message))
    return out


def entries_problems(
    maps: dict[str, MapSpec],
    written: str,
    full: str,
    defs: tuple[MapDef, ...],
    where: tuple[str | int, ...],
    resolver: Resolver,
) -> list[Problem]:
    """A program entry's `maps:` against its object's maps and their BTF key/value types."""
    return _each_checked(
        maps, written, full, where, lambda tp, name, spec: program_map_entries(tp, {name: spec}, defs, resolver)
    )


def globals_problems(
    values: dict[str, Any], written: str, full: str, where: tuple[str | int, ...], resolver: Resolver
) -> list[Problem]:
    """A program entry's `globals:` against its object's BTF: each value named, typed, in range."""
    return _each_checked(
        values, written, full, where, lambda tp, name, value: program_globals(tp, {name: value}, resolver)
    )
