"""A running program as a spec's program entry, for `show FILE` and confirm-or-revert: which of
FILE's objects it was loaded from, and the values it was loaded with (`globals:`) and holds in its
declared maps (`maps:`). Pure.

A program without globals runs under its object's digest, so the object is found by digest. A
program with globals runs under its instance's digest (spec.globals.instance_digest: the object's
digest and the values): FILE's declaration at the same hook names the globals, their bytes are
read back from the running program's data sections, and the object is the one whose instance
digest with those bytes is the running one. The values are exported as FILE writes them where
they are what the program holds (a reference stays a reference: its ifindex or cookie is the
one the device or namespace has now), else as the bytes decoded by BTF (spec.bpfdecode).
Map entries likewise: each entry read (the declared keys; every entry of an exclusive map) as
FILE writes it when FILE declares that key with that value, else decoded."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from nkplan.core.desired import hook_records
from nkplan.core.hostns import record_ns
from nkplan.core.records import GlobalRec, HookRec, LiveState, MapDef, ProgramRec, ValueRef
from nkplan.core.resources.programvalues import live_bytes
from nkplan.spec import btf as B
from nkplan.spec.bpfdecode import Undecodable, value_of
from nkplan.spec.bpfvalues import DeviceRef, Resolver, ValueProblem, encode, fill_refs
from nkplan.spec.checks import declared_hooks
from nkplan.spec.globals import instance_digest
from nkplan.spec.models import ProgramSpec, StackSpec

# a running program at a hook → its program entry ({object, program, globals, maps}), or None
Namer = Callable[[HookRec, ProgramRec], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Declared:
    """A program entry of FILE at a hook: as written, and its record (spec → core.desired)."""

    written: ProgramSpec
    rec: ProgramRec
    path: str  # the object file, absolute


class SpecPrograms:
    """Names running programs after FILE's declarations (see the module docstring)."""

    def __init__(
        self,
        declared: dict[tuple[str, str, str], list[Declared]],
        live: LiveState,
        resolver: Resolver,
        btf_of: Callable[[str], B.ObjectBtf],
    ) -> None:
        self.declared, self.live, self.resolver, self.btf_of = declared, live, resolver, btf_of
        self.by_object = {
            (d.rec.program, d.rec.object_digest or d.rec.digest): d for ds in declared.values() for d in ds
        }

    def __call__(self, hook: HookRec, p: ProgramRec) -> dict[str, Any] | None:
        here = [
            d for d in self.declared.get((hook.namespace, hook.device, hook.hook), []) if d.rec.program == p.program
        ]
        for d in here:
            running = self._running_globals(d, p)
            if running is not None:
                return self._entry(d, p, running)
        for d in here:  # FILE gives globals to a program that runs without: it runs the object's defaults
            if d.rec.object_digest == p.digest:
                return self._entry(d, p, ())
        other = self.by_object.get((p.program, p.digest))  # no globals: its object's digest
        if other is not None and not other.rec.globals:
            return self._entry(other, p, ())
        return None

    def _running_globals(self, d: Declared, p: ProgramRec) -> tuple[GlobalRec, ...] | None:
        """d's globals with the bytes p holds, if p is an instance of d's object with them."""
        if not d.rec.globals:
            return () if (d.rec.object_digest or d.rec.digest) == p.digest else None
        held = []
        for g in d.rec.globals:
            data = live_bytes(p, g)
            if data is None:
                return None
            held.append(replace(g, data=data.hex(), refs=()))
        if instance_digest(d.rec.object_digest, tuple(held), lambda _ref: None) == p.digest:
            return tuple(held)
        # a .data/.bss global changed since load (by the program or by hand): the instance is
        # still the one FILE declares if it was loaded with FILE's values
        declared = tuple(
            replace(g, data=self._declared_bytes(g).hex(), refs=()) if not g.section.startswith(".rodata") else h
            for g, h in zip(d.rec.globals, held, strict=True)
        )
        if instance_digest(d.rec.object_digest, declared, lambda _ref: None) == p.digest:
            return declared
        return None

    def _filled(self, data: bytes, refs: tuple[ValueRef, ...]) -> bytes:
        """Declared bytes with their references filled as the kernel has them now."""
        return fill_refs(data, refs, lambda r: self.live.number(r) or 0)

    def _declared_bytes(self, g: GlobalRec) -> bytes:
        return self._filled(bytes.fromhex(g.data), g.refs)

    def _entry(self, d: Declared, p: ProgramRec, running: tuple[GlobalRec, ...]) -> dict[str, Any] | None:
        item: dict[str, Any] = {"object": d.path, "program": p.program}
        if p.pin_maps:
            item["pin_maps"] = True
        try:
            tp = self.btf_of(d.path) if (running or d.written.maps) else None
            if running and tp is not None:
                pairs = zip(running, d.rec.globals, strict=True)
                item["globals"] = {g.name: self._global(tp, d, g, want) for g, want in pairs}
            if d.written.maps and tp is not None:
                maps = self._maps(tp, d, p)
                if maps:
                    item["maps"] = maps
        except (Undecodable, ValueProblem, B.BtfError, OSError):
            return None  # not writable as a spec: the program stays unnamed (show says so)
        return item

    def _global(self, tp: B.ObjectBtf, d: Declared, held: GlobalRec, want: GlobalRec) -> Any:
        assert d.written.globals is not None
        written = d.written.globals[want.name]
        if self._declared_bytes(want).hex() == held.data and not _names_address(written):
            return self._qualified(_plain(written))  # what it holds is what FILE declares
        var = tp.sections[want.section].vars[want.name]
        return value_of(tp, var.type, bytes.fromhex(held.data))

    def _qualified(self, value: Any) -> Any:
        """FILE's value with `namespace:` added to each device reference that lacks it: in the
        exported document (the stack as it runs) the name may not be unique as it is in FILE."""
        if isinstance(value, list):
            return [self._qualified(v) for v in value]
        if not isinstance(value, dict):
            return value
        if isinstance(value.get("ifindex"), str) and "namespace" not in value:
            dev = self.resolver.device(value["ifindex"], None)
            if isinstance(dev, DeviceRef) and dev.namespace:
                return {**value, "namespace": dev.namespace}
            return value
        return {k: self._qualified(v) for k, v in value.items()}

    def _maps(self, tp: B.ObjectBtf, d: Declared, p: ProgramRec) -> dict[str, Any]:
        assert d.written.maps is not None
        running = {m.name: m for m in p.map_entries}
        out: dict[str, Any] = {}
        for name, spec in d.written.maps.items():
            types, m = tp.maps.get(name), running.get(name[:15])
            if types is None or m is None:
                continue
            written = {}
            for e in spec.entries:  # FILE's entries by their bytes as they would be written now
                if _names_address(e.key) or _names_address(e.value):
                    continue  # exported as read (decoded below)
                key = encode(tp, types.key, e.key, self.resolver)
                value = encode(tp, types.value, e.value, self.resolver)
                k, v = self._filled(key.data, key.refs), self._filled(value.data, value.refs)
                written[(k.hex(), v.hex())] = {
                    "key": self._qualified(_plain(e.key)),
                    "value": self._qualified(_plain(e.value)),
                }
            entries = [
                written.get((e.key, e.value))
                or {
                    "key": value_of(tp, types.key, bytes.fromhex(e.key)),
                    "value": value_of(tp, types.value, bytes.fromhex(e.value)),
                }
                for e in m.entries
            ]
            out[name] = {"entries": entries, **({"exclusive": True} if spec.exclusive else {})}
        return out


def declared_programs(
    spec: StackSpec, spec_file: str, objects: dict[str, str], object_maps: dict[str, tuple[MapDef, ...]]
) -> dict[tuple[str, str, str], list[Declared]]:
    """FILE's program entries per hook, each with its record."""
    recs = hook_records(spec, spec_file, objects, object_maps)
    out: dict[tuple[str, str, str], list[Declared]] = {}
    for _path, end, hook, progs in declared_hooks(spec):
        key = (record_ns(end.namespace), end.name, hook)
        if progs and key in recs:
            pairs = zip(progs, recs[key][0].programs, strict=True)
            out[key] = [Declared(w, r, os.path.abspath(r.object)) for w, r in pairs]
    return out


def _names_address(value: Any) -> bool:
    """Whether a value holds an `{address: DEVICE}` reference: exported as the address itself
    (FILE's devices and their addresses may not be the running stack's)."""
    if isinstance(value, dict):
        return "address" in value and isinstance(value["address"], str) or any(map(_names_address, value.values()))
    return isinstance(value, list) and any(map(_names_address, value))


def _plain(value: Any) -> Any:
    """A value as the spec's YAML gave it, as plain data (ruamel's mappings and lists)."""
    return json.loads(json.dumps(value))
