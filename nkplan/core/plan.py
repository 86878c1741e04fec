"""The Plan, typed: frozen dataclasses holding records. `changes` is what a reviewer reads (one
per resource, no-ops included); `operations` is what the applier executes, in order (a replace
is a delete in the first phase and a create in the second). JSON exists only at the document
boundary (documents/: the JSON plan, saved plans, snapshots)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from nkplan.core.actions import Action, ActionReason, OpKind, summary
from nkplan.core.records import HookRec, LinkRec, NamespaceRec, RouteRec
from nkplan.core.resources import attrs

Record = NamespaceRec | LinkRec | RouteRec | HookRec


@dataclass(frozen=True)
class Decision:
    """What the planner decided for one resource, and why."""

    action: Action
    changed_paths: tuple[str, ...] = ()
    replace_paths: tuple[str, ...] = ()  # the changed paths that force the replacement
    reason: str | None = None  # in words, for reviewers
    action_reason: ActionReason | None = None  # the JSON plan's code for it


@dataclass(frozen=True)
class Change:
    address: str
    type: str  # a resource type's name (core/resources)
    decision: Decision
    before: Record | None  # as the kernel holds it; None: absent
    after: Record | None  # as declared; None: to be deleted

    @property
    def action(self) -> Action:
        return self.decision.action

    @property
    def reason(self) -> str | None:
        return self.decision.reason

    @property
    def changed_paths(self) -> tuple[str, ...]:
        return self.decision.changed_paths

    @property
    def replace_paths(self) -> tuple[str, ...]:
        return self.decision.replace_paths

    @cached_property
    def before_attrs(self) -> dict[str, Any] | None:
        """`before` as a reviewer sees it (plain data, no bookkeeping fields)."""
        return attrs(self.before) if self.before is not None else None

    @cached_property
    def after_attrs(self) -> dict[str, Any] | None:
        return attrs(self.after) if self.after is not None else None


@dataclass(frozen=True)
class Operation:
    kind: OpKind
    address: str
    type: str
    before: Record | None
    after: Record | None


@dataclass(frozen=True)
class Plan:
    stack: str
    changes: tuple[Change, ...]
    operations: tuple[Operation, ...]
    warnings: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    # Changes made outside nkplan to owned objects since the last apply: before = as applied,
    # after = live. The matching restoring change is in `changes` as usual.
    drift: tuple[Change, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Digest of the live state the plan was computed against: every covered resource as it
        was (absent included). Also defined for an empty state."""
        view = {c.address: c.before_attrs for c in self.changes}
        blob = json.dumps(view, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()

    @property
    def has_changes(self) -> bool:
        return bool(self.operations)

    def summary(self) -> dict[str, int]:
        """Terraform's counting: a replace is one add and one destroy (and listed as such)."""
        return summary(c.action for c in self.changes)
