"""The plans of a directory of stacks (`nkplan plan DIR`) in one report: text (each stack's plan
under a header line), JSON (a wrapper document, `PlanSet`, with one plan document per stack) and
Markdown (one pull-request comment, a section per stack, the whole kept under the size limit).
A stack that could not be planned is in the report with its problems."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from nkplan.core.plan import Plan
from nkplan.documents.json_plan import DOCUMENT_VERSION, PlanDocument, _Doc, document_dict
from nkplan.documents.markdown import _cell, _code, render_markdown
from nkplan.documents.markdown import summary_line as md_summary
from nkplan.documents.text import render_plan

SET_MARKER = "<!-- nkplan-plan-set dir={directory} -->"


@dataclass(frozen=True)
class StackResult:
    """One stack file of a directory: its plan, or the problems that stopped it."""

    file: str
    stack: str | None  # None when the file could not be read far enough to tell
    plan: Plan | None
    problems: tuple[str, ...] = ()
    code: int = 0  # this stack's exit code (the same as `nkplan plan FILE` would give)


class StackEntry(_Doc):
    file: str = Field(description="the stack file")
    stack: str | None = Field(description="its stack name (null when the file could not be read)")
    exit_code: int = Field(description="what `nkplan plan FILE` would exit with for this file alone")
    plan: PlanDocument | None = Field(description="the plan document (null when the stack could not be planned)")
    errors: list[str] = Field(description="the problems that stopped the plan, each with file:line:col")


class PlanSet(_Doc):
    """`nkplan plan DIR --format json`: every stack file of the directory, in the order applied."""

    format_version: str = Field(description="version of this document's format (as the plan document's)")
    kind: Literal["plan-set"] = Field(description="tells a plan set from a single plan document")
    directory: str
    exit_code: int = Field(description="the worst of the stacks' exit codes (README: many files)")
    has_changes: bool
    has_errors: bool
    stacks: list[StackEntry]


def set_document(directory: str, results: Sequence[StackResult], code: int) -> dict[str, Any]:
    entries = [
        {
            "file": r.file,
            "stack": r.stack,
            "exit_code": r.code,
            "plan": document_dict(r.plan) if r.plan is not None else None,
            "errors": list(r.problems),
        }
        for r in results
    ]
    doc = {
        "format_version": DOCUMENT_VERSION,
        "kind": "plan-set",
        "directory": directory,
        "exit_code": code,
        "has_changes": any(r.plan is not None and r.plan.has_changes for r in results),
        "has_errors": any(r.problems for r in results),
        "stacks": entries,
    }
    PlanSet.model_validate(doc)  # the published schema and the output cannot drift apart
    return doc


def render_set_json(directory: str, results: Sequence[StackResult], code: int) -> str:
    return json.dumps(set_document(directory, results, code), indent=2) + "\n"


def _name(r: StackResult) -> str:
    return f"stack {r.stack!r} ({r.file})" if r.stack else r.file


def set_summary(results: Sequence[StackResult]) -> str:
    changed = sum(1 for r in results if r.plan is not None and r.plan.has_changes)
    same = sum(1 for r in results if r.plan is not None and not r.plan.has_changes)
    failed = sum(1 for r in results if r.plan is None)
    n = len(results)
    return f"{n} stack{'s' if n != 1 else ''}: {changed} with changes, {same} without, {failed} not planned (errors)."


def render_set_text(results: Sequence[StackResult], *, colour: bool = False) -> str:
    out: list[str] = []
    for r in results:
        out.append(f"=== {_name(r)} ===")
        if r.plan is not None:
            out.append(render_plan(r.plan, colour=colour).rstrip("\n"))
        else:
            n = len(r.problems)
            out.append(f"Not planned: {n} problem{'s' if n != 1 else ''} (listed on stderr).")
        out.append("")
    out.append(set_summary(results))
    return "\n".join(out) + "\n"


def _result_cell(r: StackResult) -> str:
    if r.plan is None:
        return f"**error** ({len(r.problems)})"
    return md_summary(r.plan).replace("**", "")


def render_set_markdown(directory: str, results: Sequence[StackResult], *, limit: int = 60000) -> str:
    """One comment: a marker, a table of the stacks, then each stack's own section (its plan's
    Markdown, each given an equal share of what the head leaves of `limit`), errors in full."""
    head = [
        SET_MARKER.format(directory=directory.replace("--", "- -")),
        f"## nkplan plan for {len(results)} stacks in {_code(directory)}",
        "",
        set_summary(results),
        "",
        "| Stack | File | Result |",
        "| --- | --- | --- |",
    ]
    for r in results:
        head.append(f"| {_code(r.stack, table=True) if r.stack else '—'} | {_cell(r.file)} | {_result_cell(r)} |")
    sections: list[str] = []
    errors: list[str] = []
    for r in results:
        if r.plan is None:
            fence = "~~~~"
            errors += [f"### {_cell(r.file)}: not planned", "", fence, *r.problems, fence, ""]
    fixed = "\n".join(head) + "\n\n" + "\n".join(errors)
    planned = [r for r in results if r.plan is not None]
    share = max(2000, (limit - len(fixed)) // max(1, len(planned)) - 10)
    for r in planned:
        assert r.plan is not None
        sections.append(render_markdown(r.plan, limit=share))
    body = "\n".join(head) + "\n\n" + ("\n".join(errors) + "\n" if errors else "")
    # each section fits its share, but a very long list of stacks may still not fit: the last
    # sections go, and the comment says so (the table above still names every stack)
    while sections and len(body) + sum(len(x) + 1 for x in sections) > limit:
        sections.pop()
        left = len(planned) - len(sections)
        note = f"_{left} stack section{'s' if left != 1 else ''} left out (comment size limit); see the table above._\n"
        if len(body) + sum(len(x) + 1 for x in sections) + len(note) <= limit or not sections:
            return body + "\n".join(sections) + ("\n" if sections else "") + note
    return body + "\n".join(sections)
