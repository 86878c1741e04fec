"""The JSON plan document (`plan --format json`, and the saved plan of `plan --out`): versioned,
close to Terraform's plan JSON so policy habits carry over. The pydantic models below are the
published schema (`nkplan schema --plan`); the document is built through them, so output and
schema cannot drift apart."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nkplan.core.actions import ACTIONS, ActionReason, DocAction
from nkplan.core.plan import Change, Plan
from nkplan.core.resources import BY_NAME, TYPE_NAMES

DOCUMENT_VERSION = "1.0"
TypeName = Literal[TYPE_NAMES]  # type: ignore[valid-type]  # every registered resource type


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChangeBody(_Doc):
    actions: list[DocAction] = Field(
        description='["create"], ["update"], ["delete"], ["delete","create"] (replace) or ["no-op"]'
    )
    before: dict[str, Any] | None = Field(description="the resource as the kernel holds it; null if absent")
    after: dict[str, Any] | None = Field(description="the resource as declared; null if it will be deleted")
    changed_paths: list[str] = Field(description='dotted attribute paths that differ, e.g. "primary.policy"')
    replace_paths: list[list[str]] = Field(description="attribute paths that force the replacement")


class ResourceChange(_Doc):
    address: str = Field(description='e.g. "link[nk-a]", "namespace[pod-a]", "route[pod-a default]", "hook[nk-a peer]"')
    type: TypeName
    name: str = Field(description="the namespace name, the primary end's name, or the route destination")
    namespace: str | None = Field(description="namespace of the link's primary or the route; null = host")
    change: ChangeBody
    action_reason: ActionReason | None = Field(
        description="why, as a code: replace_because_cannot_update (a field that cannot change in place changed), "
        "replace_because_dependency_replaced (it lives on a device that is replaced), "
        "delete_because_no_resource_config (no longer declared), changed_outside_nkplan (drift)"
    )
    reason: str | None = Field(description='in words, e.g. "mode cannot change in place"')


class Summary(_Doc):
    add: int
    change: int
    destroy: int
    replace: int
    unchanged: int


class Diagnostic(_Doc):
    severity: Literal["error", "warning"]
    summary: str


class HostRef(_Doc):
    hostname: str
    machine_id: str
    kernel: str


class PlannedAgainst(_Doc):
    source: Literal["kernel", "snapshot"] = Field(description="read from the kernel, or from `--state` snapshot")
    host: HostRef
    state_fingerprint: str = Field(description="digest of the live state the plan was computed against")


class SpecRef(_Doc):
    file: str
    digest: str = Field(description="sha256 of the spec document as read")
    text: str | None = Field(default=None, description="saved plans only: the spec document itself")


class PlanSignature(_Doc):
    algorithm: Literal["hmac-sha256"]
    key_id: str = Field(description="names the key (a digest of it, not the key)")
    value: str = Field(description="hex HMAC-SHA256 of the canonical body: the document without checksum and signature")


class PlanDocument(_Doc):
    format_version: str = Field(description="version of this document's format")
    nkplan_version: str
    stack: str
    spec: SpecRef
    planned_against: PlannedAgainst
    has_changes: bool
    summary: Summary
    resource_changes: list[ResourceChange] = Field(description="every covered resource, in execution order")
    resource_drift: list[ResourceChange] = Field(
        description="changes made outside nkplan to owned objects since the last apply (before: as applied)"
    )
    diagnostics: list[Diagnostic]
    adopt: bool = Field(default=False, description="planned with --adopt")
    operations: list[dict[str, Any]] | None = Field(default=None, description="saved plans only: the steps")
    checksum: str | None = Field(default=None, description="saved plans only: sha256 of the rest of the file")
    signature: PlanSignature | None = Field(
        default=None, description="signed saved plans only (`plan --out --sign-key`): covers what the checksum covers"
    )


def _resource(change: Change) -> ResourceChange:
    rec = change.after if change.after is not None else change.before
    name, ns = BY_NAME[change.type].label(rec)
    return ResourceChange(
        address=change.address,
        type=change.type,
        name=name,
        namespace=ns,
        change=ChangeBody(
            actions=list(ACTIONS[change.action].document),
            before=change.before_attrs,
            after=change.after_attrs,
            changed_paths=list(change.changed_paths),
            replace_paths=[p.split(".") for p in change.replace_paths],
        ),
        action_reason=change.decision.action_reason,
        reason=change.reason,
    )


def document(plan: Plan) -> PlanDocument:
    meta = plan.meta
    host = meta.get("host", {})
    return PlanDocument(
        format_version=DOCUMENT_VERSION,
        nkplan_version=str(meta.get("nkplan_version", "")),
        stack=plan.stack,
        spec=SpecRef(file=str(meta.get("spec_file", "")), digest=str(meta.get("spec_digest", ""))),
        planned_against=PlannedAgainst(
            source=meta.get("source", "kernel"),
            host=HostRef(
                hostname=str(host.get("hostname", "")),
                machine_id=str(host.get("machine_id", "")),
                kernel=str(host.get("kernel", "")),
            ),
            state_fingerprint=plan.fingerprint,
        ),
        has_changes=plan.has_changes,
        summary=Summary(**plan.summary()),
        resource_changes=[_resource(c) for c in plan.changes],
        resource_drift=[_resource(c) for c in plan.drift],
        diagnostics=[Diagnostic(severity="warning", summary=w) for w in plan.warnings],
        adopt=bool(meta.get("adopt", False)),
    )


def document_dict(plan: Plan) -> dict[str, Any]:
    data = document(plan).model_dump(mode="json")
    for key in ("operations", "checksum", "signature"):  # saved plans only
        if data[key] is None:
            del data[key]
    if data["spec"]["text"] is None:
        del data["spec"]["text"]
    return data


def render_json(plan: Plan) -> str:
    return json.dumps(document_dict(plan), indent=2) + "\n"


def plan_schema() -> dict[str, Any]:
    """One plan document (`plan FILE`) or a plan set (`plan DIR`, documents/many.py)."""
    from pydantic import TypeAdapter

    from nkplan.documents.many import PlanSet

    schema = TypeAdapter(PlanDocument | PlanSet).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nkplan plan document"
    return schema
