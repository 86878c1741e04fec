"""A hook's programs' globals as the planner sees them: device references resolved against the
live devices, the devices they name (for ordering and the cascade), records from plain data, and
what an update in place changes, in words. Pure."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from typing import Any

from nkplan.core.records import (
    EntryRec,
    GlobalRec,
    HookRec,
    LiveState,
    MapDef,
    MapEntriesRec,
    ProgramRec,
    SectionRec,
    ValueRef,
)
from nkplan.spec.bpfvalues import decode, fill_refs
from nkplan.spec.globals import NumberOf, instance_digest


def _refs(p: ProgramRec) -> Iterable[ValueRef]:
    for g in p.globals:
        yield from g.refs
    for m in p.map_entries:
        for e in m.entries:
            yield from e.key_refs
            yield from e.value_refs


def with_live_devices(hook: HookRec, live: LiveState) -> HookRec:
    """The hook with its programs' instance digests and map entries computed from the numbers
    the named devices and namespaces have now (one not there yet: the digest says "not known", an
    entry holds 0): unchanged values of unchanged devices then plan nothing."""
    if not any(p.map_entries or any(True for _ in _refs(p)) for p in hook.programs):
        return hook

    progs = []
    for p in hook.programs:
        p = fill_program(p, live.number)
        if p.map_entries:
            p = dataclasses.replace(p, entries_key=entries_key(p.map_entries))
        progs.append(p)
    return dataclasses.replace(hook, programs=tuple(progs))


def entries_key(maps: tuple[MapEntriesRec, ...]) -> str:
    """What ProgramRec compares of map entries: a digest of each declared map's name, whether it
    is exclusive, and its entries' bytes; "" for none."""
    if not maps:
        return ""
    h = hashlib.sha256()
    for m in sorted(maps, key=lambda m: m.name):
        h.update(f"{m.name}:{int(m.exclusive)}:".encode())
        for e in sorted(m.entries, key=lambda e: e.key):
            h.update(f"{e.key}={e.value};".encode())
    return h.hexdigest()[:16]


def fill_program(p: ProgramRec, number: NumberOf) -> ProgramRec:
    """A program's digest and map entries with the numbers `number` knows."""
    if not any(True for _ in _refs(p)):
        return p
    if p.object_digest and any(g.refs for g in p.globals):
        p = dataclasses.replace(p, digest=instance_digest(p.object_digest, p.globals, number))

    def known(ref: ValueRef) -> int:
        return number(ref) or 0

    def fill(hexdata: str, refs: tuple[ValueRef, ...]) -> str:
        return fill_refs(bytes.fromhex(hexdata), refs, known).hex() if refs else hexdata

    maps = tuple(
        dataclasses.replace(
            m,
            entries=tuple(
                sorted(
                    (dataclasses.replace(e, key=fill(e.key, e.key_refs), value=fill(e.value, e.value_refs))
                     for e in m.entries),
                    key=lambda e: e.key,
                )
            ),
        )
        for m in p.map_entries
    )  # fmt: skip
    return dataclasses.replace(p, map_entries=maps)


def references(hook: HookRec) -> list[ValueRef]:
    """What the hook's programs' values name, one reference per device or namespace, sorted."""
    seen = {
        (r.kind, r.namespace, r.device): dataclasses.replace(r, offset=0, size=0)
        for p in hook.programs
        for r in _refs(p)
    }
    return [seen[k] for k in sorted(seen)]


def view(want: HookRec, have: HookRec) -> HookRec:
    """The live hook as far as the declaration manages its maps: per declared program, only
    the maps it declares entries for, and of a map that is not exclusive only the declared keys."""
    wanted = {p.program: p for p in want.programs}
    progs = []
    for p in have.programs:
        w = wanted.get(p.program)
        declared = {m.name: m for m in w.map_entries} if w is not None else {}
        maps = []
        for m in p.map_entries:
            d = declared.get(m.name)
            if d is None:
                continue
            keys = {e.key for e in d.entries}
            entries = m.entries if d.exclusive else tuple(e for e in m.entries if e.key in keys)
            absent = () if d.exclusive else tuple(sorted(keys - {e.key for e in m.entries}))
            maps.append(dataclasses.replace(m, entries=entries, exclusive=d.exclusive, absent=absent))
        if tuple(maps) != p.map_entries or p.entries_key != entries_key(tuple(maps)):
            p = dataclasses.replace(p, map_entries=tuple(maps), entries_key=entries_key(tuple(maps)))
        if w is not None and w.digest == p.digest:
            drifted = tuple(g.name for g in w.globals if _drifted(p, g))
            if drifted:
                p = dataclasses.replace(p, drifted=drifted)
        progs.append(p)
    return dataclasses.replace(have, programs=tuple(progs))


def _drifted(running: ProgramRec, g: GlobalRec) -> bool:
    """A declared global of a writable section (.data, .bss) that holds another value in the
    running instance. (.rodata is frozen; a global holding a reference is left out: its value
    is known only with the devices' ifindexes, and a replaced device updates it anyway.)"""
    if g.section.startswith(".rodata") or g.refs:
        return False
    live = live_bytes(running, g)
    return live is not None and live.hex() != g.data


def globals_drift(old: ProgramRec, new: ProgramRec) -> str:
    """Globals changed outside nkplan, in words: `NAME: RUNNING → DECLARED`."""
    by_name = {g.name: g for g in new.globals}
    parts = []
    for name in old.drifted:
        g = by_name.get(name)
        live = live_bytes(old, g) if g is not None else None
        if g is not None and live is not None:
            parts.append(f"{name}: {decode(g.hint, live)} → {g.text}")
    return ", ".join(parts)


def entries_changed(old: ProgramRec, new: ProgramRec) -> list[str]:
    """What writing the declared entries does, per map: `allow: + KEY → VALUE, ~ KEY: BEFORE →
    AFTER, - KEY (VALUE)`."""
    running = {m.name: {e.key: e for e in m.entries} for m in old.map_entries}
    words = []
    for m in new.map_entries:
        have = running.get(m.name, {})
        parts = []
        for e in m.entries:
            was = have.get(e.key)
            if was is None:
                parts.append(f"+ {e.key_text} → {e.value_text}")
            elif was.value != e.value:
                parts.append(f"~ {e.key_text}: {decode(e.hint, bytes.fromhex(was.value))} → {e.value_text}")
        if m.exclusive:
            keys = {e.key for e in m.entries}
            parts += [f"- 0x{k} (0x{e.value})" for k, e in have.items() if k not in keys]
        if parts:
            words.append(f"map {m.name}: " + ", ".join(parts))
    return words


def program_from_plain(p: dict[str, Any]) -> ProgramRec:
    return ProgramRec(
        **{
            **p,
            "maps": tuple(MapDef(**m) for m in p.get("maps", ())),
            "globals": tuple(
                GlobalRec(**{**g, "refs": tuple(ValueRef(**r) for r in g.get("refs", ()))})
                for g in p.get("globals", ())
            ),
            "sections": tuple(SectionRec(**s) for s in p.get("sections", ())),
            "drifted": tuple(p.get("drifted", ())),
            "shared": tuple(p.get("shared", ())),
            "map_entries": tuple(
                MapEntriesRec(
                    **{
                        **m,
                        "entries": tuple(
                            EntryRec(
                                **{
                                    **e,
                                    "key_refs": tuple(ValueRef(**r) for r in e.get("key_refs", ())),
                                    "value_refs": tuple(ValueRef(**r) for r in e.get("value_refs", ())),
                                }
                            )
                            for e in m.get("entries", ())
                        ),
                        "absent": tuple(m.get("absent", ())),
                    }
                )
                for m in p.get("map_entries", ())
            ),
        }
    )


def live_bytes(old: ProgramRec, g: GlobalRec) -> bytes | None:
    """The bytes of a global in the running instance (None: not known, e.g. from a snapshot)."""
    size = len(g.data) // 2
    for s in old.sections:
        if s.name == g.section:
            data = bytes.fromhex(s.data)
            return data[g.offset : g.offset + size] if g.offset + size <= len(data) else None
    return None


def what_changed(old: ProgramRec, new: ProgramRec, object_words: str) -> str:
    """An update in place in words: the globals that change (name: running → declared), and
    whether the object changed too (told when every declared global's running bytes are known:
    the instance digest of the object with the running values is then the running digest)."""
    if not new.globals:
        return object_words
    changed, running = [], []
    for g in new.globals:
        live = live_bytes(old, g)
        if live is None:
            changed.append(f"{g.name}: ? → {g.text}")
            continue
        running.append(dataclasses.replace(g, data=live.hex(), refs=()))
        if g.refs or live.hex() != g.data:
            before = decode(g.hint, live)
            if before != g.text:
                changed.append(f"{g.name}: {before} → {g.text}")
    words = []
    if changed:
        words.append("globals changed: " + ", ".join(changed))
    same_object = (
        len(running) == len(new.globals)
        and instance_digest(new.object_digest, tuple(running), lambda _ref: None) == old.digest
    )
    if not same_object or not changed:
        words.append(object_words)
    return "; ".join(words)
