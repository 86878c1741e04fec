"""Checks of a spec's shared maps (`maps:`): names, the definition written out or taken from an
object file (`like: OBJECT:MAP`), and that every declared program whose object has a map of a
shared name defines it the same way (libbpf reuses a pinned map only then: a program with
another definition would silently get a map of its own). Reads object files (through the
caller's Inspect, as objects.py), no kernel."""

from __future__ import annotations

import re
from collections.abc import Callable

from nkplan.core.records import MAP_TYPE_NAMES, MAP_TYPES, MapDef
from nkplan.spec import objfile
from nkplan.spec.checks import Problem, declared_hooks
from nkplan.spec.models import MapSpec, SharedMapSpec, StackSpec
from nkplan.spec.objects import Inspect, InspectError, ObjectFacts, confinement_problem, resolve

Where = Callable[[tuple[str | int, ...]], str]  # a spec path's file:line:col

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,14}")  # a C identifier the kernel keeps whole (15 characters)
_FIELDS = ("type", "key_size", "value_size", "max_entries")


def describe(d: MapDef) -> str:
    kind = MAP_TYPE_NAMES.get(d.type, f"type {d.type}")
    return f"{kind}, key_size {d.key_size}, value_size {d.value_size}, max_entries {d.max_entries}, map_flags {d.flags}"


def _object_maps(full: str, spec_file: str, inspect: Inspect, facts: ObjectFacts) -> tuple[MapDef, ...] | str:
    if full in facts.maps:
        return facts.maps[full]
    bad = confinement_problem(full, spec_file) or objfile.problem(full)
    if bad is not None:
        return bad
    try:
        _progs, maps = inspect(full)
    except InspectError as exc:
        return f"libbpf cannot open it: {exc}"
    facts.maps[full] = maps
    return maps


def definitions(
    spec: StackSpec, spec_file: str, inspect: Inspect | None, facts: ObjectFacts
) -> tuple[list[Problem], dict[str, MapDef]]:
    """(problems, the definition of each well-declared shared map). `like` objects' maps are
    added to facts.maps, where the desired records take them from."""
    problems: list[Problem] = []
    out: dict[str, MapDef] = {}
    for name, m in spec.maps.items():
        where = ("maps", name)
        if not _NAME.fullmatch(name):
            problems.append((where, f"shared map name {name!r}: a C identifier of at most 15 characters"))
            continue
        written = [f for f in _FIELDS if getattr(m, f) is not None]
        if m.like is not None:
            if written or m.map_flags:
                problems.append(
                    (where, f"shared map {name!r}: 'like' or the definition ({', '.join(_FIELDS)}), not both")
                )
                continue
            got = _like(name, m, spec_file, inspect, facts)
            if isinstance(got, str):
                problems.append(((*where, "like"), got))
            else:
                out[name] = got
            continue
        missing = [f for f in _FIELDS if f not in written]
        if missing:
            problems.append((where, f"shared map {name!r}: missing {', '.join(missing)} (or write like: OBJECT:MAP)"))
            continue
        assert m.type is not None and m.key_size is not None and m.value_size is not None and m.max_entries is not None
        out[name] = MapDef(name, MAP_TYPES[m.type], m.key_size, m.value_size, m.max_entries, m.map_flags)
    return problems, out


def _like(name: str, m: SharedMapSpec, spec_file: str, inspect: Inspect | None, facts: ObjectFacts) -> MapDef | str:
    assert m.like is not None
    obj, sep, map_name = m.like.rpartition(":")
    if not sep or not obj or not map_name:
        return f"like {m.like!r}: write OBJECT:MAP (an object file and the name of one of its maps)"
    if inspect is None:
        return f"like {m.like!r}: object files cannot be read here"
    full = resolve(spec_file, obj)
    maps = _object_maps(full, spec_file, inspect, facts)
    if isinstance(maps, str):
        return f"like {m.like!r}: object {obj!r} ({full}): {maps}"
    found = {d.name: d for d in maps}
    if map_name not in found:
        have = ", ".join(sorted(found)) or "none"
        return f"like {m.like!r}: unknown map {map_name!r}: object {obj!r} has no such map (it has: {have})"
    d = found[map_name]
    if d.type not in MAP_TYPE_NAMES:
        return f"like {m.like!r}: map {map_name!r} is of kernel map type {d.type}, which a shared map cannot be"
    return MapDef(name, d.type, d.key_size, d.value_size, d.max_entries, d.flags)


def usage_problems(
    spec: StackSpec, spec_file: str, defs: dict[str, MapDef], facts: ObjectFacts, where: Where
) -> list[Problem]:
    """Every declared program whose object has a map of a shared name must define it the same way."""
    problems: list[Problem] = []
    for path, _end, _hook, progs in declared_hooks(spec):
        for j, prog in enumerate(progs):
            for d in facts.maps.get(resolve(spec_file, prog.object), ()):
                shared = defs.get(d.name)
                if shared is None or d == shared:
                    continue
                problems.append(
                    (
                        (*path, j, "object"),
                        f"object {prog.object!r} defines map {d.name!r} as {describe(d)}, but the shared map "
                        f"{d.name!r} declared at {where(('maps', d.name))} is {describe(shared)}: a program using "
                        "a shared map must define it the same way (or rename its map)",
                    )
                )
    return problems


def entries_problems(spec: StackSpec, where: Where) -> list[Problem]:
    """Entries of a shared map declared by more than one program entry must be the same
    declaration: every program writes its declaration into the one map at each apply, so two
    different ones (or one exclusive) would undo each other forever and never converge."""
    problems: list[Problem] = []
    first: dict[str, tuple[tuple[str | int, ...], MapSpec]] = {}
    for path, _end, _hook, progs in declared_hooks(spec):
        for j, prog in enumerate(progs):
            for name, declared in (prog.maps or {}).items():
                if name not in spec.maps:
                    continue
                here = (*path, j, "maps", name)
                seen = first.setdefault(name, (here, declared))
                if seen[1] != declared:
                    problems.append(
                        (
                            here,
                            f"entries of the shared map {name!r} are also declared at {where(seen[0])}, "
                            "differently: both programs write into the one map and would undo each other; "
                            "declare its entries once (or the same in both)",
                        )
                    )
    return problems


def shared_map_problems(
    spec: StackSpec, spec_file: str, inspect: Inspect | None, facts: ObjectFacts, where: Where
) -> list[Problem]:
    problems, defs = definitions(spec, spec_file, inspect, facts)
    return problems + usage_problems(spec, spec_file, defs, facts, where) + entries_problems(spec, where)


def shared_definitions(
    spec: StackSpec, spec_file: str, object_maps: dict[str, tuple[MapDef, ...]]
) -> dict[str, MapDef]:
    """The definitions of a valid spec's shared maps (`like` resolved through object_maps, which
    the loader filled): for the desired records."""
    out = {}
    for name, m in spec.maps.items():
        if m.like is not None:
            obj, _, map_name = m.like.rpartition(":")
            d = next(d for d in object_maps[resolve(spec_file, obj)] if d.name == map_name)
            out[name] = MapDef(name, d.type, d.key_size, d.value_size, d.max_entries, d.flags)
        else:
            assert m.type is not None and m.key_size is not None and m.value_size is not None
            assert m.max_entries is not None
            out[name] = MapDef(name, MAP_TYPES[m.type], m.key_size, m.value_size, m.max_entries, m.map_flags)
    return out
