"""Terraform-like text: `+` create, `~` update, `-/+` replace, `-` delete, with per-attribute
before → after and "# forces replacement" on the attributes that forced it."""

from __future__ import annotations

import json
from typing import Any

from nkplan.plan import Change, Plan

SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "no-op": " "}


def _flatten(data: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{path}."))
        elif value is not None and value != [] and key != "owner" and not (key == "namespace" and value == ""):
            out[path] = value
    return out


def _fmt(value: Any, path: str = "") -> str:
    if value is None:
        return "(none)"
    if value == "" and path.endswith("namespace"):
        return "(host)"
    return json.dumps(value)


def _get(data: dict[str, Any] | None, path: str) -> Any:
    cur: Any = data
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def render_change(change: Change) -> list[str]:
    head = f"  {SYMBOL[change.action]} {change.address}"
    if change.reason and change.action in ("replace", "delete"):
        head += f"  ({change.reason})"
    lines = [head]
    if change.action == "create":
        flat = _flatten(change.after)
        width = max((len(k) for k in flat), default=0)
        lines += [f"        {k.ljust(width)} = {_fmt(v, k)}" for k, v in flat.items()]
    elif change.action in ("update", "replace"):
        for path in change.changed_paths:
            before, after = _fmt(_get(change.before, path), path), _fmt(_get(change.after, path), path)
            line = f"        {path}: {before} → {after}"
            if path in change.replace_paths:
                line += "  # forces replacement"
            lines.append(line)
    return lines


def summary_line(plan: Plan) -> str:
    s = plan.summary()
    return f"Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy."


def render_plan(plan: Plan) -> str:
    if not plan.has_changes:
        return f"No changes. The kernel matches the spec of stack {plan.stack!r}.\n"
    out = [f"nkplan will perform these actions on stack {plan.stack!r}:", ""]
    for change in plan.changes:
        if change.action != "no-op":
            out += render_change(change)
    out += [""]
    for warning in plan.warnings:
        out.append(f"Warning: {warning}")
    out.append(summary_line(plan))
    return "\n".join(out) + "\n"
