"""The Plan: plain, frozen, JSON-serialisable data. `changes` is what a reviewer reads (one per
resource, no-ops included); `operations` is what the applier executes, in order (a replace is a
delete in the first phase and a create in the second)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from nkplan.core.records import HOST, EndRec, HookRec, LinkRec, MapDef, NamespaceRec, ProgramRec, RouteRec, plain
from nkplan.spec.checks import effective_metric

FORMAT_VERSION = 1
Action = Literal["create", "update", "delete", "replace", "no-op"]
OpKind = Literal["create", "update", "delete"]
ResourceType = Literal["namespace", "link", "route", "hook"]
Record = NamespaceRec | LinkRec | RouteRec | HookRec


def address_of(rec: Record) -> str:
    if isinstance(rec, NamespaceRec):
        return f"namespace[{rec.name}]"
    if isinstance(rec, HookRec):
        dev = f"{rec.namespace}/{rec.device}" if rec.namespace != HOST else rec.device
        return f"hook[{dev} {rec.hook}]"
    if isinstance(rec, LinkRec):
        ns = rec.primary.namespace
        return f"link[{ns}/{rec.primary.name}]" if ns != HOST else f"link[{rec.primary.name}]"
    to = {"0.0.0.0/0": "default"}.get(rec.to, rec.to)
    default_metric = effective_metric(None, rec.family == 6)
    metric = f" metric {rec.metric}" if rec.metric != default_metric else ""
    ns = f"{rec.namespace} " if rec.namespace != HOST else ""
    return f"route[{ns}{to}{metric}]"


def type_of(rec: Record) -> ResourceType:
    if isinstance(rec, NamespaceRec):
        return "namespace"
    if isinstance(rec, HookRec):
        return "hook"
    return "link" if isinstance(rec, LinkRec) else "route"


def attrs(rec: Record) -> dict[str, Any]:
    """The record's attributes as a reviewer sees them (no bookkeeping fields)."""
    data = to_dict(rec)
    data.pop("applied", None)
    for prog in data.get("programs", []):  # kernel ids are for `show`, not for comparing
        for key in ("prog_id", "tag", "link_id", "maps"):
            prog.pop(key, None)
    return data


def to_dict(rec: Record) -> dict[str, Any]:
    data: dict[str, Any] = plain(rec)  # tuples → lists, as JSON gives back
    return data


def from_dict(rtype: str, data: dict[str, Any]) -> Record:
    if rtype == "namespace":
        return NamespaceRec(**data)
    if rtype == "route":
        return RouteRec(**data)
    if rtype == "hook":
        progs = tuple(
            ProgramRec(**{**p, "maps": tuple(MapDef(**m) for m in p.get("maps", ()))}) for p in data["programs"]
        )
        return HookRec(**{**data, "programs": progs})
    if rtype == "link":
        ends = {k: EndRec(**{**data[k], "addresses": tuple(data[k]["addresses"])}) for k in ("primary", "peer")}
        return LinkRec(**{**data, **ends})
    raise ValueError(f"unknown resource type {rtype!r}")


@dataclass(frozen=True)
class Change:
    address: str
    type: ResourceType
    action: Action
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    changed_paths: tuple[str, ...] = ()
    replace_paths: tuple[str, ...] = ()
    reason: str | None = None  # explains only; nothing branches on it


@dataclass(frozen=True)
class Operation:
    kind: OpKind
    address: str
    type: ResourceType
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def records(self) -> tuple[Record | None, Record | None]:
        before = from_dict(self.type, self.before) if self.before is not None else None
        after = from_dict(self.type, self.after) if self.after is not None else None
        return before, after


@dataclass(frozen=True)
class Plan:
    stack: str
    changes: tuple[Change, ...]
    operations: tuple[Operation, ...]
    warnings: tuple[str, ...] = ()
    format_version: int = FORMAT_VERSION
    meta: dict[str, Any] = field(default_factory=dict)
    # Changes made outside nkplan to owned objects since the last apply: before = as applied,
    # after = live. The matching restoring change is in `changes` as usual.
    drift: tuple[Change, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Digest of the live state the plan was computed against: every covered resource as it
        was (absent included). Also defined for an empty state."""
        view = {c.address: c.before for c in self.changes}
        blob = json.dumps(view, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()

    @property
    def has_changes(self) -> bool:
        return bool(self.operations)

    def summary(self) -> dict[str, int]:
        """Terraform's counting: a replace is one add and one destroy (and listed as such)."""
        count = {"add": 0, "change": 0, "destroy": 0, "replace": 0, "unchanged": 0}
        for c in self.changes:
            if c.action in ("create", "replace"):
                count["add"] += 1
            if c.action in ("delete", "replace"):
                count["destroy"] += 1
            if c.action == "update":
                count["change"] += 1
            if c.action == "replace":
                count["replace"] += 1
            if c.action == "no-op":
                count["unchanged"] += 1
        return count

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "stack": self.stack,
            "changes": [asdict(c) for c in self.changes],
            "operations": [asdict(o) for o in self.operations],
            "warnings": list(self.warnings),
            "meta": self.meta,
            "drift": [asdict(c) for c in self.drift],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported plan format_version {data.get('format_version')!r}")
        changes = tuple(_change(c) for c in data["changes"])
        ops = tuple(Operation(**o) for o in data["operations"])
        drift = tuple(_change(c) for c in data.get("drift", []))
        return cls(data["stack"], changes, ops, tuple(data["warnings"]), data["format_version"], data["meta"], drift)


def _change(c: dict[str, Any]) -> Change:
    return Change(**{**c, "changed_paths": tuple(c["changed_paths"]), "replace_paths": tuple(c["replace_paths"])})
