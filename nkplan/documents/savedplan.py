"""Saved plans (`plan --out PLAN.json`, `apply PLAN.json`): the JSON plan document plus the spec
text and the operations, sealed with a checksum. A saved plan is the approval: apply carries out
exactly its steps, but only on the host it was made on and only if a fresh plan from the embedded
spec sees the same live state (same fingerprint); otherwise it is refused as stale. Optionally
signed (documents/signing.py): the signature covers the same body as the checksum."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nkplan.core.actions import from_document
from nkplan.core.plan import Change, Decision, Operation, Plan
from nkplan.core.records import plain
from nkplan.core.resources import from_plain
from nkplan.documents import signing
from nkplan.documents.json_plan import DOCUMENT_VERSION, PlanDocument, document_dict
from nkplan.errors import PlanFileError, StalePlanError
from nkplan.spec.loader import Loaded, load_text
from nkplan.spec.objects import Inspect

SEALS = ("checksum", "signature")  # what seals the body, so not part of it


def _body(doc: dict[str, Any]) -> bytes:
    """The canonical body the checksum and the signature cover: everything but the seals."""
    body = {k: v for k, v in doc.items() if k not in SEALS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(doc: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(_body(doc)).hexdigest()


def saved_document(plan: Plan, loaded: Loaded, key: signing.PlanKey | None = None) -> dict[str, Any]:
    doc = document_dict(plan)
    doc["spec"]["text"] = loaded.text
    if os.path.isfile(loaded.source.filename):  # relative BPF object paths resolve against it
        doc["spec"]["file"] = os.path.abspath(loaded.source.filename)
    doc["operations"] = [_operation(op) for op in plan.operations]
    doc["checksum"] = _digest(doc)
    if key is not None:
        doc["signature"] = signing.signature(_body(doc), key)
    return doc


def write_saved(plan: Plan, loaded: Loaded, path: str, key: signing.PlanKey | None = None) -> None:
    if loaded.fragments:
        raise PlanFileError(
            f"cannot save the plan of {loaded.source.filename}: it uses include:, and a saved plan embeds "
            "one spec document; plan and apply the spec file itself (or flatten it with `nkplan validate --expanded`)"
        )
    text = json.dumps(saved_document(plan, loaded, key), indent=2) + "\n"
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PlanFileError(f"cannot write the plan to {path}: {exc.strerror}") from None


def is_saved_plan(path: str) -> bool:
    """A saved plan is a JSON document that starts with its format_version and nkplan_version (a
    spec never has those keys); judged from the head, so a truncated plan is still recognised
    (and then refused as truncated, not parsed as a spec)."""
    if path == "-":
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(512)
    except OSError:
        return False
    return head.lstrip().startswith("{") and '"format_version"' in head and '"nkplan_version"' in head


def _operation(op: Operation) -> dict[str, Any]:
    """A step with its full records (kernel ids and the applied digest included: the applier needs them)."""
    before = plain(op.before) if op.before is not None else None
    after = plain(op.after) if op.after is not None else None
    return {"kind": op.kind, "address": op.address, "type": op.type, "before": before, "after": after}


def _record(rtype: str, data: dict[str, Any] | None) -> Any:
    return from_plain(rtype, data) if data is not None else None


def _changes(items: list[dict[str, Any]]) -> tuple[Change, ...]:
    out = []
    for rc in items:
        ch = rc["change"]
        decision = Decision(
            action=from_document(ch["actions"]),
            changed_paths=tuple(ch["changed_paths"]),
            replace_paths=tuple(".".join(p) for p in ch["replace_paths"]),
            reason=rc["reason"],
            action_reason=rc["action_reason"],
        )
        rtype = rc["type"]
        out.append(Change(rc["address"], rtype, decision, _record(rtype, ch["before"]), _record(rtype, ch["after"])))
    return tuple(out)


def _operations(items: list[dict[str, Any]]) -> tuple[Operation, ...]:
    return tuple(
        Operation(o["kind"], o["address"], o["type"], _record(o["type"], o["before"]), _record(o["type"], o["after"]))
        for o in items
    )


def read_saved(
    path: str, inspect: Inspect | None = None, verify_key: signing.PlanKey | None = None
) -> tuple[Plan, Loaded]:
    """Load and check a saved plan; returns the plan and its embedded spec (`inspect`: see
    spec.loader.load_text). With `verify_key`, a plan not signed with it is refused before its
    embedded spec is even parsed; plan.meta["signature"] is the signing.Verdict either way."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanFileError(f"cannot read the plan {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise PlanFileError(f"{path} is not a saved plan: not UTF-8 at byte {exc.start}") from None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PlanFileError(
            f"{path} is not a complete JSON plan (truncated?): {exc.msg} at line {exc.lineno}"
        ) from None
    except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep
        raise PlanFileError(f"{path} is not a saved plan: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(doc, dict) or "checksum" not in doc:
        raise PlanFileError(f"{path} is not a saved nkplan plan (no checksum; write one with `nkplan plan --out`)")
    if doc.get("format_version") != DOCUMENT_VERSION:
        raise PlanFileError(
            f"{path} has plan format {doc.get('format_version')!r}; this nkplan reads {DOCUMENT_VERSION}"
        )
    if doc["checksum"] != _digest(doc):
        raise PlanFileError(f"{path} was modified after it was written (checksum mismatch); make a new plan")
    verdict = signing.check(path, doc.get("signature"), _body(doc), verify_key)
    try:
        PlanDocument.model_validate(doc)
    except ValidationError as exc:
        raise PlanFileError(f"{path} does not have the shape of a plan: {exc.errors()[0]['msg']}") from None
    spec = doc["spec"]
    loaded = load_text(spec["text"], spec["file"], inspect)
    if loaded.fragments:  # `plan --out` refuses include: a saved plan must not read files unreviewed
        raise PlanFileError(f"{path}: its embedded spec includes other files, which a saved plan never reads")
    host = doc["planned_against"]["host"]
    plan = Plan(
        stack=doc["stack"],
        changes=_changes(doc["resource_changes"]),
        operations=_operations(doc["operations"]),
        warnings=tuple(d["summary"] for d in doc["diagnostics"] if d["severity"] == "warning"),
        meta={
            "nkplan_version": doc["nkplan_version"],
            "spec_file": spec["file"],
            "spec_digest": spec["digest"],
            "source": doc["planned_against"]["source"],
            "host": host,
            "adopt": doc.get("adopt", False),
            "fingerprint": doc["planned_against"]["state_fingerprint"],
            "signature": verdict,
        },
        drift=_changes(doc["resource_drift"]),
    )
    return plan, loaded


def check_fresh(saved: Plan, fresh: Plan, here: dict[str, str]) -> None:
    """Refuse (StalePlanError) unless `fresh` — planned now from the same spec — saw the same state
    on the same host; the message names what changed."""
    host = saved.meta.get("host", {})
    # a plan made offline against a snapshot (`plan --state`, the fleet review) applies on the host
    # the snapshot was taken on, as long as that host still holds exactly what the snapshot held
    against = "the snapshot the plan was made against" if saved.meta.get("source") == "snapshot" else None
    # hosts cloned from one image share a machine-id: a plan made offline for a fleet (one per
    # host, copied by name) must also name this host
    if against and host.get("hostname") != here.get("hostname"):
        raise StalePlanError(
            f"this plan was made against a snapshot of host {host.get('hostname')!r}; this is {here.get('hostname')!r}"
        )
    if host.get("machine_id") != here.get("machine_id"):
        raise StalePlanError(
            f"this plan was made on host {host.get('hostname')!r} (machine-id {host.get('machine_id')}); "
            f"this is {here.get('hostname')!r} (machine-id {here.get('machine_id')})"
        )
    if host.get("kernel") != here.get("kernel"):
        raise StalePlanError(
            f"the kernel changed since the plan was made ({host.get('kernel')} → {here.get('kernel')})"
        )
    if saved.meta.get("fingerprint") == fresh.fingerprint:
        return
    was = {c.address: c.before_attrs for c in saved.changes}
    now = {c.address: c.before_attrs for c in fresh.changes}
    what = []
    for addr in sorted(was.keys() | now.keys()):
        before, after = was.get(addr), now.get(addr)
        if before == after:
            continue
        if before is None:
            what.append(f"{addr} now exists")
        elif after is None:
            what.append(f"{addr} is gone")
        else:
            what.append(f"{addr} changed")
    raise StalePlanError(
        (f"the live state differs from {against}: " if against else "the live state changed since the plan was made: ")
        + ("; ".join(what) or "unknown difference")
        + ". Make a new plan."
    )
