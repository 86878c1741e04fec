"""The fleet plan's report (`nkplan plan SPEC --state SNAPDIR`, run/fleet.py): hosts grouped by
identical plans (the same text plan, the per-host snapshot note aside), largest group first.

- text: per group a header ("412 hosts: Plan: 2 to add, …"), its hosts, the plan once; then the
  hosts that could not be planned, with their problems; then one summary line;
- json: a `FleetPlan` document with every host's plan document and the groups;
- markdown: one pull-request comment: a marker, the summary, a table of the groups, each group's
  plan collapsed, the hosts that failed; kept under the comment size limit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from nkplan.documents.json_plan import DOCUMENT_VERSION, PlanDocument, _Doc
from nkplan.documents.markdown import _cell, _code

FLEET_MARKER = "<!-- nkplan-fleet-plan spec={spec} -->"
HOSTS_SHOWN = 40  # host names listed per group in Markdown before "and N more"


@dataclass(frozen=True)
class HostResult:
    host: str
    spec: str | None
    snapshot: str
    summary: str  # the plan's summary line ("Plan: 2 to add, …" / "No changes."), or "" on errors
    text: str  # the plan as text, without the per-host snapshot note: equal texts = the same plan
    document: dict[str, Any] | None  # the JSON plan document
    problems: tuple[str, ...] = ()
    code: int = 0
    has_changes: bool = False


@dataclass(frozen=True)
class Group:
    hosts: tuple[str, ...]
    summary: str
    text: str
    has_changes: bool


def groups(results: Sequence[HostResult]) -> list[Group]:
    """Hosts with the same plan, largest group first (then by first host name)."""
    by_text: dict[str, list[HostResult]] = {}
    for r in results:
        if not r.problems:
            by_text.setdefault(r.text, []).append(r)
    found = [Group(tuple(r.host for r in rs), rs[0].summary, text, rs[0].has_changes) for text, rs in by_text.items()]
    return sorted(found, key=lambda g: (-len(g.hosts), g.hosts[0]))


def _hosts(n: int) -> str:
    return f"{n} host{'s' if n != 1 else ''}"


def fleet_summary(results: Sequence[HostResult]) -> str:
    gs = groups(results)
    changed = sum(len(g.hosts) for g in gs if g.has_changes)
    same = sum(len(g.hosts) for g in gs if not g.has_changes)
    failed = sum(1 for r in results if r.problems)
    return (
        f"{_hosts(len(results))}: {changed} with changes, {same} without, {failed} not planned (errors); "
        f"{len(gs)} distinct plan{'s' if len(gs) != 1 else ''}."
    )


def render_fleet_text(spec: str, state_dir: str, results: Sequence[HostResult]) -> str:
    out = [f"Fleet plan of {spec} against {_hosts(len(results))} in {state_dir} (snapshots, not live kernels).", ""]
    for g in groups(results):
        out.append(f"=== {_hosts(len(g.hosts))}: {g.summary} ===")
        out.append(f"hosts: {', '.join(g.hosts)}")
        out.append("")
        out.append(g.text.rstrip("\n"))
        out.append("")
    failed = [r for r in results if r.problems]
    if failed:
        out.append(f"=== {_hosts(len(failed))} not planned ===")
        for r in failed:
            out += [f"{r.host}: error: {p}" for p in r.problems]
        out.append("")
    out.append(fleet_summary(results))
    return "\n".join(out) + "\n"


class HostEntry(_Doc):
    host: str = Field(description="the host, named by its snapshot file")
    snapshot: str = Field(description="the snapshot file")
    spec: str | None = Field(description="the spec file planned for it (null: no fleet-map pattern matched)")
    exit_code: int = Field(description="what `nkplan plan SPEC --state SNAPSHOT` would exit with")
    group: int | None = Field(description="index into groups (null when not planned)")
    plan: PlanDocument | None = Field(
        description="the plan document, its resource_changes without the no-op entries (null when not planned)"
    )
    errors: list[str] = Field(description="the problems that stopped the plan")


class GroupEntry(_Doc):
    hosts: list[str] = Field(description="the hosts with this same plan")
    summary: str = Field(description="the plan's summary line")
    has_changes: bool


class FleetPlan(_Doc):
    """`nkplan plan SPEC --state SNAPDIR --format json`: one spec against many host snapshots."""

    format_version: str = Field(description="version of this document's format (as the plan document's)")
    kind: Literal["fleet-plan"] = Field(description="tells a fleet plan from a plan or a plan set")
    spec: str
    state_dir: str
    exit_code: int = Field(description="the worst of the hosts' exit codes")
    has_changes: bool
    has_errors: bool
    groups: list[GroupEntry] = Field(description="hosts grouped by identical plans, largest group first")
    hosts: list[HostEntry] = Field(description="every host, by name")


def fleet_document(spec: str, state_dir: str, results: Sequence[HostResult], code: int) -> dict[str, Any]:
    gs = groups(results)
    index = {h: i for i, g in enumerate(gs) for h in g.hosts}
    doc = {
        "format_version": DOCUMENT_VERSION,
        "kind": "fleet-plan",
        "spec": spec,
        "state_dir": state_dir,
        "exit_code": code,
        "has_changes": any(g.has_changes for g in gs),
        "has_errors": any(r.problems for r in results),
        "groups": [{"hosts": list(g.hosts), "summary": g.summary, "has_changes": g.has_changes} for g in gs],
        "hosts": [
            {
                "host": r.host,
                "snapshot": r.snapshot,
                "spec": r.spec,
                "exit_code": r.code,
                "group": index.get(r.host),
                "plan": r.document,
                "errors": list(r.problems),
            }
            for r in results
        ],
    }
    FleetPlan.model_validate(doc)  # the published schema and the output cannot drift apart
    return doc


def render_fleet_json(spec: str, state_dir: str, results: Sequence[HostResult], code: int) -> str:
    return json.dumps(fleet_document(spec, state_dir, results, code), indent=2) + "\n"


def _host_list(hosts: Sequence[str]) -> str:
    shown = ", ".join(_cell(h) for h in hosts[:HOSTS_SHOWN])
    more = len(hosts) - HOSTS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def render_fleet_markdown(spec: str, results: Sequence[HostResult], *, limit: int = 60000) -> str:
    """One comment: marker, summary, a table of the groups, each group's plan collapsed (an equal
    share of what is left of `limit` each, cut with a note), the hosts that failed."""
    gs = groups(results)
    head = [
        FLEET_MARKER.format(spec=spec.replace("--", "- -")),
        f"## nkplan fleet plan: {_code(spec)} on {_hosts(len(results))}",
        "",
        fleet_summary(results),
        "",
        "| # | Hosts | Plan |",
        "| --- | --- | --- |",
    ]
    for i, g in enumerate(gs, 1):
        head.append(f"| {i} | {len(g.hosts)} | {_cell(g.summary)} |")
    failed = [r for r in results if r.problems]
    if failed:
        head.append(f"| — | {len(failed)} | **not planned (errors)** |")
    tail: list[str] = []
    if failed:
        tail += ["", f"### {_hosts(len(failed))} not planned", "", "~~~~"]
        for r in failed[:HOSTS_SHOWN]:
            tail += [f"{r.host}: {p}" for p in r.problems]
        if len(failed) > HOSTS_SHOWN:
            tail.append(f"… and {len(failed) - HOSTS_SHOWN} more hosts (see the JSON report)")
        tail.append("~~~~")
    fixed = len("\n".join(head + tail)) + 200
    share = max(1500, (limit - fixed) // max(1, len(gs)))
    sections: list[str] = []
    for i, g in enumerate(gs, 1):
        text = g.text.rstrip("\n")
        if len(text) > share - 400:
            cut = text[: max(0, share - 500)].rsplit("\n", 1)[0]
            text = cut + f"\n… (cut here: {len(g.text) - len(cut)} more characters; see the JSON report)"
        sections += [
            "",
            f"<details><summary>Group {i}: {_hosts(len(g.hosts))} — {_cell(g.summary)}</summary>",
            "",
            f"Hosts: {_host_list(g.hosts)}",
            "",
            "~~~~diff" if g.has_changes else "~~~~",
            text,
            "~~~~",
            "</details>",
        ]
    body = "\n".join(head + sections + tail) + "\n"
    while len(body) > limit and sections:  # very many groups: the last sections go, the table stays
        del sections[-10:]
        note = ["", "_Some groups' plans are left out (comment size limit); the table above lists every group._"]
        body = "\n".join(head + sections + note + tail) + "\n"
    return body
