"""What an action is, in one place (in the spirit of Terraform's plans.Action): its symbol in a
text plan, its `change.actions` in the JSON document, how a summary counts it, and the kernel
operations that carry it out and undo them. Renderers, saved plans, the planner and the applier
all read this table; none of them spells an action's meaning on its own.

Action reasons (`action_reason` in the JSON plan) are set by the planner when it decides, and
only explain: nothing branches on them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Action = Literal["create", "update", "delete", "replace", "no-op"]
OpKind = Literal["create", "update", "delete"]  # what the applier asks the kernel to do
DocAction = Literal["create", "update", "delete", "no-op"]
ActionReason = Literal[
    "replace_because_cannot_update",  # a field that cannot change in place changed
    "replace_because_dependency_replaced",  # lives on a device that is replaced (route, hook)
    "delete_because_no_resource_config",  # owned, but no longer declared
    "changed_outside_nkplan",  # drift: before = as applied, after = live
]
ACTION_REASONS: tuple[ActionReason, ...] = ActionReason.__args__  # type: ignore[attr-defined]
SUMMARY_KEYS = ("add", "change", "destroy", "replace", "unchanged")


@dataclass(frozen=True)
class ActionInfo:
    name: Action
    symbol: str  # text plans: + ~ - -/+
    document: tuple[DocAction, ...]  # the JSON plan's change.actions
    counts: tuple[str, ...]  # summary keys it adds one to (Terraform: a replace is an add and a destroy)
    creates: bool  # needs the declared record to exist afterwards
    deletes: bool  # takes the live record away first


ACTIONS: dict[Action, ActionInfo] = {
    a.name: a
    for a in (
        ActionInfo("create", "+", ("create",), ("add",), creates=True, deletes=False),
        ActionInfo("update", "~", ("update",), ("change",), creates=True, deletes=False),
        ActionInfo("delete", "-", ("delete",), ("destroy",), creates=False, deletes=True),
        # devices are deleted first: their names must stay unique
        ActionInfo("replace", "-/+", ("delete", "create"), ("add", "destroy", "replace"), creates=True, deletes=True),
        ActionInfo("no-op", " ", ("no-op",), ("unchanged",), creates=False, deletes=False),
    )
}
_BY_DOCUMENT = {info.document: name for name, info in ACTIONS.items()}


def from_document(actions: Iterable[str]) -> Action:
    """The action of a JSON plan's change.actions (a saved plan read back)."""
    key = tuple(actions)
    if key not in _BY_DOCUMENT:
        raise ValueError(f"unknown change.actions {list(key)!r}")
    return _BY_DOCUMENT[key]  # type: ignore[index]


def summary(actions: Iterable[Action]) -> dict[str, int]:
    count = dict.fromkeys(SUMMARY_KEYS, 0)
    for action in actions:
        for key in ACTIONS[action].counts:
            count[key] += 1
    return count


INVERSE: dict[OpKind, OpKind] = {"create": "delete", "delete": "create", "update": "update"}
DONE: dict[OpKind, str] = {"create": "created", "delete": "deleted", "update": "updated"}  # progress lines
