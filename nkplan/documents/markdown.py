"""Markdown for a pull-request comment: a hidden marker (to find the comment again and update it),
a Terraform-like summary line, a disruption banner when anything is deleted or replaced, a drift
note, a table of changes and the full diff in a collapsed block. The whole comment is kept within
`limit` characters (GitHub refuses comments over 65,536): the diff is cut at a line boundary first,
then the table, each saying how much was left out; marker, summary and banners always stay.
Deterministic: the same plan gives the same bytes (no timestamps, no host names)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from nkplan.core.actions import ACTIONS
from nkplan.core.plan import Change, Plan
from nkplan.core.resources import BY_NAME
from nkplan.documents.graph import from_plan, mermaid_legend, only_changed_namespaces, render_mermaid
from nkplan.documents.text import summary_line as text_summary
from nkplan.documents.values import flatten, fmt, get

MARKER = "<!-- nkplan-plan stack={stack} -->"
SYMBOL: dict[str, str] = {name: info.symbol for name, info in ACTIONS.items() if name != "no-op"}
# First character of each diff line: GitHub colours `+` green, `-` red and `!` orange.
HEAD = {"create": "+", "update": "!", "replace": "-/+", "delete": "-"}
BODY = {"create": "+", "update": "!", "replace": "!", "delete": "-"}
LIST_MAX = 20  # addresses named in a banner or note; the table has them all
ARTIFACT = "see the saved plan artifact"


# formatting helpers ---------------------------------------------------------------------------
def _code(text: str, *, table: bool = False) -> str:
    """An inline code span that survives backticks in `text` (and pipes, inside a table)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if table else span


def _cell(text: str) -> str:
    """Plain text for a table cell: nothing in it can end the cell, open code or inject HTML."""
    for char in ("\\", "`", "|", "*", "_"):
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace("\n", " ")


def _text(text: str) -> str:
    """Plain text outside a table (banner and note lines)."""
    for char in ("\\", "`", "*", "_"):
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace("\n", " ")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _capped(items: Sequence[str], more: str) -> list[str]:
    lines = [f"> - {item}" for item in items[:LIST_MAX]]
    if len(items) > LIST_MAX:
        lines.append(f"> - … and {len(items) - LIST_MAX} more ({more})")
    return lines


# sections -------------------------------------------------------------------------------------
def summary_line(plan: Plan) -> str:
    if not plan.has_changes:
        return f"**No changes.** The kernel matches the spec of stack {_code(plan.stack)}."
    return text_summary(plan).replace("Plan:", "**Plan:**", 1)


def _banner(changes: Sequence[Change]) -> list[str]:
    gone = [c for c in changes if c.action in ("delete", "replace")]
    if not gone:
        return []
    deletes = sum(c.action == "delete" for c in gone)
    replaces = len(gone) - deletes
    parts = [f"deletes {_plural(deletes, 'resource')}"] if deletes else []
    parts += [f"replaces {_plural(replaces, 'resource')}"] if replaces else []
    what = " and ".join(parts)
    lines = [
        "> [!CAUTION]" if deletes else "> [!WARNING]",
        f"> **Traffic is disrupted.** This plan {what}. Replacing or deleting a link, namespace or route"
        " interrupts traffic through it (a replace deletes the object, then creates it again).",
    ]
    notes = (BY_NAME[c.type].delete_note for c in gone if c.action == "delete")
    lines += [f"> {note}" for note in dict.fromkeys(n for n in notes if n)]
    items = []
    for c in gone:
        item = f"{c.action} {_code(c.address)}"
        if c.action == "replace" and c.reason:
            item += f" ({_text(c.reason)})"
        items.append(item)
    return [*lines, ">", *_capped(items, "see the table below")]


def _drift_note(stack: str, drift: Sequence[Change]) -> list[str]:
    if not drift:
        return []
    n = len(drift)
    lines = [
        "> [!NOTE]",
        f"> **Drift:** {_plural(n, 'object')} owned by stack {_code(stack)} {'was' if n == 1 else 'were'}"
        " changed outside nkplan since the last apply (before = as last applied, after = live)."
        " Applying this plan makes the kernel match the spec again.",
        ">",
    ]
    items = []
    for c in drift:
        shown = [(p, fmt(get(c.before_attrs, p), p), fmt(get(c.after_attrs, p), p)) for p in c.changed_paths]
        attrs = "; ".join(f"{_code(p)} {_code(b)} → {_code(a)}" for p, b, a in shown if b != a)
        item = f"{_code(c.address)}: {attrs}" if attrs else f"{_code(c.address)} ({c.reason or c.action})"
        if attrs and c.reason and c.reason != "changed outside nkplan":  # map entries, written globals
            item += f" ({_text(c.reason)})"
        items.append(item)
    return lines + _capped(items, "see the full plan below")


def _snapshot_note(plan: Plan) -> list[str]:
    if plan.meta.get("source") != "snapshot":
        return []
    host = str(plan.meta.get("host", {}).get("hostname", "")) or "the host"
    return [
        "> [!NOTE]",
        f"> Planned against a snapshot of {_code(host) if host != 'the host' else host}'s live state"
        " (`plan --state`), not against the kernel itself.",
    ]


def _warnings(plan: Plan) -> list[str]:
    if not plan.warnings:
        return []
    return ["> [!WARNING]", *_capped([_text(w) for w in plan.warnings], "see the text plan")]


def _table_rows(changes: Sequence[Change]) -> list[str]:
    rows = []
    for c in changes:
        attrs = ", ".join(
            _code(p, table=True) + (" (forces replacement)" if p in c.replace_paths else "") for p in c.changed_paths
        )
        action = f"{_code(SYMBOL[c.action], table=True)} {c.action}"
        reason = _cell(c.reason) if c.reason else ""
        rows.append(f"| {action} | {_code(c.address, table=True)} | {c.type} | {attrs} | {reason} |")
    return rows


TABLE_HEAD = ["| Action | Address | Type | Changed attributes | Reason |", "|---|---|---|---|---|"]


def _diff_change(c: Change, head: str, body: str) -> list[str]:
    line = f"{head} {c.address}"
    if c.reason and c.action in ("replace", "delete"):
        line += f"  ({c.reason})"
    lines = [line]
    if c.action in ("create", "delete"):
        flat = flatten(c.after_attrs if c.action == "create" else c.before_attrs)
        width = max((len(k) for k in flat), default=0)
        lines += [f"{body}     {k.ljust(width)} = {fmt(v, k)}" for k, v in flat.items()]
    else:
        for path in c.changed_paths:
            text = f"{body}     {path}: {fmt(get(c.before_attrs, path), path)} → {fmt(get(c.after_attrs, path), path)}"
            if path in c.replace_paths:
                text += "  # forces replacement"
            lines.append(text)
    return lines


def _diff_lines(changes: Sequence[Change], drift: Sequence[Change]) -> list[str]:
    """Drift first (as Terraform shows objects changed outside it before its actions)."""
    out: list[str] = []
    if drift:
        out.append("# Changed outside nkplan since the last apply (before = as last applied, after = live):")
        for c in drift:
            out += ["", *_diff_change(c, "~", "~")]
        if changes:
            out += ["", "# Planned changes:"]
    for c in changes:
        if out:
            out.append("")
        out += _diff_change(c, HEAD[c.action], BODY[c.action])
    return out


DIAGRAM_LEFT_OUT = f"**… diagram truncated: left out to keep the comment short; {ARTIFACT}.**"
DIAGRAM_MAX = 25  # changes drawn in the Mermaid diagram; the rest are counted beside it


def _diagram(plan: Plan) -> list[str]:
    """A Mermaid picture of the changed part (namespaces, pairs, hooks; GitHub renders it)."""
    pic = from_plan(plan, changed_only=True, limit=DIAGRAM_MAX)
    if not pic.pairs and not any(pic.namespaces.values()):
        return []  # nothing drawable changed (routes, rules, sysctls only)
    only_changed_namespaces(pic)
    body = render_mermaid(pic).rstrip("\n").split("\n")
    return [
        "<details open><summary>Diagram of the changes</summary>",
        "",
        "```mermaid",
        *body,
        "```",
        "",
        _text(mermaid_legend(pic)),
        "",
        "</details>",
    ]


def _fence(lines: Sequence[str]) -> str:
    longest = max((len(run) for line in lines for run in re.findall(r"`{3,}", line)), default=0)
    return "`" * max(3, longest + 1)


# assembly -------------------------------------------------------------------------------------
def _truncated(n: int, what: str, label: str = "truncated") -> str:
    return f"**… {label}: {n} more {what}; {ARTIFACT}.**"


def _details(lines: Sequence[str], kept: int) -> list[str]:
    out = ["<details><summary>Full plan</summary>"]
    if kept:
        fence = _fence(lines)
        out += ["", f"{fence}diff", *lines[:kept], fence]
    if kept < len(lines):
        out += ["", _truncated(len(lines) - kept, "line" if len(lines) - kept == 1 else "lines")]
    return [*out, "", "</details>"]


def _largest(n: int, fits: Callable[[int], bool]) -> int:
    """Largest k in [0, n) with fits(k), fits being monotone (true up to some k); 0 if none."""
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def render_markdown(plan: Plan, *, limit: int = 60000) -> str:
    """The plan as a pull-request comment of at most `limit` characters (when the marker, summary
    and banners alone fit: they are never cut)."""
    drift: Sequence[Change] = plan.drift
    changes = [c for c in plan.changes if c.action != "no-op"]
    head = [
        MARKER.format(stack=plan.stack),
        f"### nkplan plan for stack {_code(plan.stack)}",
        "",
        summary_line(plan),
    ]
    for block in (_banner(changes), _drift_note(plan.stack, drift), _warnings(plan), _snapshot_note(plan)):
        if block:
            head += ["", *block]
    rows = _table_rows(changes)
    diff = _diff_lines(changes, drift)
    diagram = _diagram(plan)

    def build(nrows: int, ndiff: int, with_diagram: bool = False) -> str:
        out = list(head)
        if rows:
            out += ["", *TABLE_HEAD, *rows[:nrows]]
            if nrows < len(rows):
                n = len(rows) - nrows
                out += ["", _truncated(n, "row" if n == 1 else "rows", "table truncated")]
        if diagram:
            out += ["", *diagram] if with_diagram else ["", DIAGRAM_LEFT_OUT]
        if diff:
            out += ["", *_details(diff, ndiff)]
        return "\n".join(out) + "\n"

    full = build(len(rows), len(diff), with_diagram=True)
    if len(full) <= limit:
        return full
    full = build(len(rows), len(diff))  # the diagram goes first
    if len(full) <= limit:
        return full
    if len(build(len(rows), 0)) <= limit:
        kept = _largest(len(diff), lambda k: len(build(len(rows), k)) <= limit)
        return build(len(rows), kept)
    kept = _largest(len(rows), lambda k: len(build(k, 0)) <= limit)
    return build(kept, 0)
