"""A program instance's globals at apply time: the devices its values name are looked up now
(a device the same apply created or replaced has its ifindex only now), the instance's digest is
computed from what will really be loaded (spec.globals.instance_digest, so its pin names it and
the next plan agrees), and the data sections' patches are handed to libbpf before load."""

from __future__ import annotations

import dataclasses

from nkplan.core.records import ProgramRec
from nkplan.errors import KernelError
from nkplan.kernel.bpf import hooks
from nkplan.spec.globals import filled, instance_digest


def _ifindex(namespace: str, device: str) -> int:
    try:
        return hooks.ifindex(namespace, device)
    except KernelError as exc:
        where = f" in namespace {namespace}" if namespace else ""
        why = f"a program's value names device {device}{where}, which cannot be found: {exc}"
        raise KernelError(why, exc.errno) from None


def settle(rec: ProgramRec) -> ProgramRec:
    """The record with its digest computed from the devices' ifindexes as they are now (only
    records with device references change)."""
    if not rec.object_digest or not any(g.refs for g in rec.globals):
        return rec
    digest = instance_digest(rec.object_digest, rec.globals, _ifindex)
    return dataclasses.replace(rec, digest=digest)


def patches(rec: ProgramRec) -> dict[str, list[tuple[int, bytes]]]:
    """{data section: [(offset, bytes)]} of the instance's globals, references filled in."""
    out: dict[str, list[tuple[int, bytes]]] = {}
    for g in rec.globals:
        data = filled(g, _ifindex)
        assert data is not None  # _ifindex answers or raises
        out.setdefault(g.section, []).append((g.offset, data))
    return out
