"""Deletes the kernel carries out by itself: a route on a device that the same plan deletes dies
with the device. Asking the kernel to delete it first costs a request (and a namespace switch)
each; in a destroy that is most of the requests. Pure: computed from the operations alone, so a
saved plan's steps are treated the same way.

Rollback stays exact: the applier journals such a delete as update(rec, rec) (the type promises
that puts it back whether or not the kernel still holds it, see ResourceType), undone after
the device it lives on is back."""

from __future__ import annotations

from collections.abc import Sequence

from nkplan.core.plan import Operation
from nkplan.core.resources import BY_NAME
from nkplan.core.resources.base import Token


def implied_deletes(ops: Sequence[Operation]) -> frozenset[int]:
    """Positions of the delete operations whose record the kernel removes with what it lives on,
    because the same operations delete all of that."""
    gone: set[Token] = set()
    for op in ops:
        if op.kind == "delete" and op.before is not None:
            gone.update(BY_NAME[op.type].provides(op.before))
    out = set()
    for i, op in enumerate(ops):
        if op.kind == "delete" and op.before is not None:
            homes = BY_NAME[op.type].homes(op.before)
            if homes and all(token in gone for token in homes):
                out.add(i)
    return frozenset(out)
