"""JSON Schema of the spec, for editors (yaml-language-server) and CI linters. Generated from the
pydantic models, so it cannot disagree with validation; cross-field rules (checks.py) are beyond
what JSON Schema expresses and are only enforced by `nkplan validate`."""

from __future__ import annotations

from typing import Any

from nkplan.spec.models import StackSpec


def spec_schema() -> dict[str, Any]:
    schema = StackSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nkplan spec (v1)"
    schema["patternProperties"] = {"^x-": {"description": "extension keys, ignored by nkplan"}}
    return schema
