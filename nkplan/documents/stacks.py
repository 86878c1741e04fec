"""`nkplan stacks`: the stacks present on a host, found through their ownership marks in one read
of the kernel (there is no state file), each with the counts of what it owns. Pure: a LiveState
in, rows out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from nkplan.core.records import LiveState

COLUMNS = ("namespaces", "pairs", "routes", "rules", "hooks", "programs", "sysctls")


@dataclass
class StackCounts:
    stack: str
    namespaces: int = 0  # named namespaces whose lo carries the stack's mark
    pairs: int = 0  # device pairs whose primary end carries it
    routes: int = 0  # protocol-237 routes on its devices (or in its namespaces)
    rules: int = 0  # protocol-237 rules in its namespaces, and host rules with its marker
    hooks: int = 0  # hooks where it runs programs
    programs: int = 0  # programs it runs, over all hooks
    sysctls: int = 0  # namespaces whose applied sysctls its mark records (device sysctls: in pairs)
    stale_rule_markers: int = 0  # host rule markers whose rule is gone (its next apply removes them)


def stacks_of(live: LiveState) -> list[StackCounts]:
    """Every stack that owns something, by name."""
    found: dict[str, StackCounts] = {}

    def of(owner: str | None) -> StackCounts | None:
        if not owner:
            return None
        return found.setdefault(owner, StackCounts(owner))

    for ns in live.namespaces.values():
        if (c := of(ns.owner)) is not None:
            c.namespaces += 1
    for link in live.links.values():
        if (c := of(link.owner)) is not None:
            c.pairs += 1
    for route in live.routes:
        if (c := of(route.owner)) is not None:
            c.routes += 1
    for rule in live.rules:
        if (c := of(rule.owner)) is not None:
            if rule.stale:
                c.stale_rule_markers += 1
            else:
                c.rules += 1
    for hook in live.hooks.values():
        if (c := of(hook.owner)) is not None and hook.programs:
            c.hooks += 1
            c.programs += len(hook.programs)
    for name in live.ns_sysctl_marks:
        named = live.namespaces.get(name)
        if named is not None and (c := of(named.owner)) is not None:
            c.sysctls += 1
    return [found[name] for name in sorted(found)]


def render_json(rows: list[StackCounts]) -> str:
    doc: dict[str, Any] = {"stacks": [asdict(r) for r in rows]}
    return json.dumps(doc, indent=2) + "\n"


def render_text(rows: list[StackCounts]) -> str:
    if not rows:
        return "No stacks: nothing on this host carries an nkplan ownership mark.\n"
    head = ("STACK", *(c.upper() for c in COLUMNS))
    table = [head, *((r.stack, *(str(getattr(r, c)) for c in COLUMNS)) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = []
    for row in table:
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(cells)))
    for r in rows:
        if r.stale_rule_markers:
            lines.append(f"note: stack {r.stack} has {r.stale_rule_markers} host rule marker(s) whose rule is gone")
    return "\n".join(line.rstrip() for line in lines) + "\n"
