"""Terraform-like text: `+` create, `~` update, `-/+` replace, `-` delete, with per-attribute
before → after and "# forces replacement" on the attributes that forced it; drift (changes made
outside nkplan) in a section of its own. Colour only when asked (the CLI decides: a terminal,
no NO_COLOR, no --no-color)."""

from __future__ import annotations

from nkplan.core.actions import ACTIONS
from nkplan.core.plan import Change, Plan
from nkplan.documents.values import flatten, fmt, get

SYMBOL = {name: info.symbol for name, info in ACTIONS.items()}
_COLOUR = {"create": "32", "update": "33", "replace": "35", "delete": "31", "no-op": "0", "bold": "1", "dim": "2"}


class _Paint:
    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, text: str, what: str) -> str:
        return f"\033[{_COLOUR[what]}m{text}\033[0m" if self.on else text


def render_change(change: Change, paint: _Paint | None = None) -> list[str]:
    paint = paint or _Paint(False)
    head = f"  {paint(SYMBOL[change.action], change.action)} {paint(change.address, 'bold')}"
    if change.reason and change.action != "create":
        head += f"  ({change.reason})"
    lines = [head]
    if change.action == "create":
        flat = flatten(change.after_attrs)
        width = max(map(len, flat), default=0)
        lines += [f"        {k.ljust(width)} = {fmt(v, k)}" for k, v in flat.items()]
    elif change.action in ("update", "replace"):
        for path in change.changed_paths:
            before, after = fmt(get(change.before_attrs, path), path), fmt(get(change.after_attrs, path), path)
            line = f"        {path}: {before} → {after}"
            if path in change.replace_paths:
                line += paint("  # forces replacement", "replace")
            lines.append(line)
    return lines


def summary_line(plan: Plan) -> str:
    s = plan.summary()
    return f"Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy."


def render_plan(plan: Plan, *, colour: bool = False) -> str:
    paint = _Paint(colour)
    out: list[str] = []
    if plan.meta.get("source") == "snapshot":
        host = plan.meta.get("host", {})
        out += [f"Note: planned against a snapshot of {host.get('hostname', '?')} (--state), not the live kernel.", ""]
    if plan.drift:
        out += [paint("Objects changed outside nkplan since the last apply (drift):", "bold"), ""]
        for change in plan.drift:
            out.append(f"  {paint('~', 'update')} {paint(change.address, 'bold')}")
            # made outside nkplan (an orphan pin), or what the attributes do not show (map entries)
            if change.reason and (not change.changed_paths or change.reason != "changed outside nkplan"):
                out.append(f"        {change.reason}")
            for path in change.changed_paths:
                before, after = fmt(get(change.before_attrs, path), path), fmt(get(change.after_attrs, path), path)
                if before != after:
                    out.append(f"        {path}: {before} (applied) → {after} (now)")
        out += ["", "The plan below puts them back as declared.", ""]
    if not plan.has_changes:
        out += [paint(f"Warning: {warning}", "update") for warning in plan.warnings]
        out.append(f"No changes. The kernel matches the spec of stack {plan.stack!r}.")
        return "\n".join(out) + "\n"
    out += [f"nkplan will perform these actions on stack {plan.stack!r}:", ""]
    for change in plan.changes:
        if change.action != "no-op":
            out += render_change(change, paint)
    out += [""]
    for warning in plan.warnings:
        out.append(paint(f"Warning: {warning}", "update"))
    out.append(paint(summary_line(plan), "bold"))
    return "\n".join(out) + "\n"
