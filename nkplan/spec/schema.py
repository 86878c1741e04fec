"""JSON Schema of the spec, for editors (yaml-language-server) and CI linters. Generated from the
pydantic models, so it cannot disagree with validation; cross-field rules (checks.py) are beyond
what JSON Schema expresses and are only enforced by `nkplan validate`.

`repeat:` templates hold the same items as the top level, checked by the same definitions (copies
suffixed `Template` in which any field may also be a whole `{expression}`); `defaults:` sections are
copies suffixed `Default` with no field required. A link requires only its `name` here, since
`defaults:` may supply `kind` and `peer` (`nkplan validate` names one missing)."""

from __future__ import annotations

import copy
from typing import Any

from nkplan.spec.defaults import MODELS
from nkplan.spec.expand import SECTIONS
from nkplan.spec.models import StackSpec
from nkplan.spec.template import ALLOWED

EXPRESSION = {"type": "string", "pattern": r"^\{[^{}]+\}$", "description": f"a template expression: {ALLOWED}"}


def _variant(defs: dict[str, Any], suffix: str, expressions: bool) -> dict[str, Any]:
    """Every definition again, named NAME+suffix, references rewritten; for templates every
    non-string field also takes a whole expression; for defaults nothing is required."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                out["$ref"] = ref + suffix
            if not expressions:
                out.pop("required", None)
            if expressions and isinstance(out.get("properties"), dict):
                props = out["properties"].items()
                out["properties"] = {
                    k: v if v.get("type") == "string" else {"anyOf": [v, EXPRESSION]} for k, v in props
                }
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    # shared maps are a stack-level section, made by no template and no defaults
    return {name + suffix: walk(copy.deepcopy(d)) for name, d in defs.items() if name != "SharedMapSpec"}


def spec_schema() -> dict[str, Any]:
    schema = StackSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nkplan spec (v1)"
    schema["patternProperties"] = {"^x-": {"description": "extension keys, ignored by nkplan"}}
    defs = schema["$defs"]
    # kind and peer may come from defaults: (validate names one missing, and a peer on a single
    # netkit device: only validate knows what defaults supply)
    defs["LinkSpec"]["required"] = ["name"]
    templates = _variant(defs, "Template", expressions=True)
    partial = _variant(defs, "Default", expressions=False)
    item = {"namespaces": "NamespaceSpec", "links": "LinkSpec", "routes": "RouteSpec", "rules": "RuleSpec"}
    template: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "description": "one template, made once per instance (README: Templates)",
        "properties": {
            "count": {"type": "integer", "minimum": 0, "description": "instances i = 0 .. count-1"},
            "range": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": 2,
                "maxItems": 2,
                "description": "[START, STOP]: instances i = START .. STOP-1",
            },
            "for_each": {
                "description": "a list of keys ({key}), or a mapping key → fields ({key}, {item.FIELD})",
                "anyOf": [
                    {"type": "array", "items": {"type": ["string", "integer"]}},
                    {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
                ],
            },
            "skip": {"type": "array", "items": {"type": ["string", "integer"]}, "description": "instances left out"},
            **{sec: {"type": "array", "items": {"$ref": f"#/$defs/{item[sec]}Template"}} for sec in SECTIONS},
            "host": {"$ref": "#/$defs/HostSpecTemplate"},
        },
    }
    defs.update(templates)
    defs.update(partial)
    defs["Template"] = template
    props = schema["properties"]
    props["pools"] = {
        "type": "object",
        "description": "address pools for templates: NAME → network CIDR",
        "additionalProperties": {"type": "string"},
    }
    props["repeat"] = {
        "type": "object",
        "description": "templates by name; instance i of template T is T[i] in messages",
        "additionalProperties": {"$ref": "#/$defs/Template"},
    }
    props["include"] = {
        "type": "array",
        "items": {"type": "string"},
        "description": "fragment files (namespaces, links, routes, rules) merged into this stack; "
        "relative to this file, inside the spec's directory",
    }
    props["defaults"] = {
        "type": "object",
        "additionalProperties": False,
        "description": "values for every item that does not set them (item > SECTION_KIND > SECTION)",
        "properties": {sec: {"$ref": f"#/$defs/{model.__name__}Default"} for sec, model in MODELS.items()},
    }
    return schema
