"""`globals:` of a program entry: the declared values checked against the object's BTF and
encoded (spec.bpfvalues), as GlobalRec records; and a program instance's identity, which covers
the object and its values. Pure.

Identity: a program with globals is a different instance when any value differs, so its digest
(the one in its pin name, kernel/bpf/pins.py) is the SHA-256 of the object's digest and the
encoded values, references filled with the devices' ifindexes and the namespaces' cookies. The
plan computes it with the numbers the kernel has given them (or none yet: then it differs from any
running instance); the applier computes it again with the numbers of when it loads the program,
so the pin names what runs, and the next plan agrees."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from nkplan.core.hostns import record_ns
from nkplan.core.records import HOST, GlobalRec, ProgramRec, ValueRef
from nkplan.spec import btf as B
from nkplan.spec.bpfvalues import DeviceRef, Resolver, ValueProblem, encode, fill_refs, hint, show
from nkplan.spec.checks import link_ends
from nkplan.spec.models import StackSpec
from nkplan.spec.objfile import DIGEST_CHARS


def resolver(spec: StackSpec) -> Resolver:
    """References resolve to what the spec declares: devices to the ends it declares (a pair's
    primary and peer, a single device), by name, in the namespace given or the only one that has
    that name; namespaces to its namespaces, and `host` to the host's (unless it declares a
    namespace named host)."""
    where: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for i, link in enumerate(spec.links):
        for end, _path in link_ends(link, ("links", i)):
            where.setdefault(end.name, []).append((record_ns(end.namespace), tuple(end.addresses)))
    namespaces = {ns.name for ns in spec.namespaces}

    def device(name: str, namespace: str | None) -> DeviceRef | str:
        found = where.get(name)
        if not found:
            return f"{name!r} is not a device this spec declares (a link's name or its peer's)"
        if namespace is not None:
            ns = record_ns(namespace)
            hit = [addrs for home, addrs in found if home == ns]
            if not hit:
                return f"the spec declares no device {name!r} in namespace {namespace!r}"
            return DeviceRef(ns, name, hit[0])
        if len(found) > 1:
            return f"{name!r} is declared in more than one namespace: add namespace: NS to the reference"
        return DeviceRef(found[0][0], name, found[0][1])

    def namespace(name: str) -> tuple[str, None] | tuple[None, str]:
        if name in namespaces:
            return name, None
        if name == "host":
            return HOST, None
        return None, f"{name!r} is not a namespace this spec declares (or host)"

    return Resolver(device, namespace)


def _variables(tp: B.ObjectBtf) -> dict[str, tuple[B.Section, B.Var]]:
    return {v.name: (s, v) for s in tp.sections.values() for v in s.vars.values()}


def program_globals(tp: B.ObjectBtf, values: Mapping[str, Any], resolve: Resolver) -> tuple[GlobalRec, ...]:
    """The declared globals, encoded, sorted by name. ValueProblem: `where` starts with the
    global's name (a key: the name is unknown)."""
    known = _variables(tp)
    out = []
    for name, value in values.items():
        hit = known.get(str(name))
        if hit is None:
            have = ", ".join(sorted(known)) or "none"
            raise ValueProblem((name,), f"the object has no global variable {name!r} (it has: {have})")
        sec, var = hit
        enc = encode(tp, var.type, value, resolve, (name,))
        if len(enc.data) != var.size:
            raise ValueProblem((name,), f"{name!r}: its BTF type is {len(enc.data)} bytes, the variable {var.size}")
        text, how = show(value), hint(tp, var.type)
        out.append(GlobalRec(str(name), sec.name, var.offset, enc.data.hex(), text, how, enc.refs))
    return tuple(sorted(out, key=lambda g: g.name))


NumberOf = Callable[[ValueRef], "int | None"]  # a reference → its number (ifindex, cookie), None: not known yet


def filled(g: GlobalRec, number: NumberOf) -> bytes | None:
    """A global's bytes with its references filled in (None: a number is not known yet)."""
    data = bytes.fromhex(g.data)
    if not g.refs:
        return data
    known = {r: number(r) for r in g.refs}
    if any(v is None for v in known.values()):
        return None
    return fill_refs(data, g.refs, lambda r: int(known[r] or 0))


def instance_digest(object_digest: str, globals_: tuple[GlobalRec, ...], number: NumberOf) -> str:
    """The digest of a program instance (see the module docstring): the object's own digest when
    it declares no globals, so instances without globals keep their pins."""
    if not globals_:
        return object_digest
    h = hashlib.sha256(object_digest.encode())
    for g in globals_:
        data = filled(g, number)
        h.update(f"\n{g.name}@{g.section}+{g.offset}=".encode())
        h.update(data.hex().encode() if data is not None else b"?pending")
    return h.hexdigest()[:DIGEST_CHARS]


def with_globals(rec: ProgramRec, globals_: tuple[GlobalRec, ...], number: NumberOf | None = None) -> ProgramRec:
    """A declared program with its globals: `digest` becomes the instance's (computed with the
    numbers `number` knows; without it, references count as not known yet) and `object_digest`
    keeps the object's."""
    obj = rec.object_digest or rec.digest
    digest = instance_digest(obj, globals_, number or (lambda _ref: None))
    return dataclasses.replace(rec, digest=digest, object_digest=obj, globals=globals_)
