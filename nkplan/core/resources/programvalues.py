"""A hook's programs' globals as the planner sees them: device references resolved against the
live devices, the devices they name (for ordering and the cascade), records from plain data, and
what an update in place changes, in words. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from nkplan.core.records import GlobalRec, HookRec, LiveState, MapDef, ProgramRec, SectionRec, ValueRef
from nkplan.spec.bpfvalues import decode
from nkplan.spec.globals import instance_digest


def with_live_devices(hook: HookRec, live: LiveState) -> HookRec:
    """The hook with its programs' instance digests computed from the ifindexes the named
    devices have now (a device not there yet keeps the digest "not known"): unchanged values of
    unchanged devices then plan nothing."""
    if not any(g.refs for p in hook.programs for g in p.globals):
        return hook

    def ifindex(ns: str, device: str) -> int | None:
        d = live.devices.get((ns, device))
        return d.ifindex if d is not None else None

    progs = tuple(
        dataclasses.replace(p, digest=instance_digest(p.object_digest, p.globals, ifindex))
        if p.object_digest and any(g.refs for g in p.globals)
        else p
        for p in hook.programs
    )
    return dataclasses.replace(hook, programs=progs)


def referenced_devices(hook: HookRec) -> Iterable[tuple[str, str]]:
    """The devices (namespace, name) the hook's programs' values name, sorted."""
    return sorted({(r.namespace, r.device) for p in hook.programs for g in p.globals for r in g.refs})


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
        }
    )


def _live_bytes(old: ProgramRec, g: GlobalRec) -> bytes | None:
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
        live = _live_bytes(old, g)
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
    same_object = len(running) == len(new.globals) and instance_digest(
        new.object_digest, tuple(running), lambda _ns, _dev: None
    ) == old.digest
    if not same_object or not changed:
        words.append(object_words)
    return "; ".join(words)
