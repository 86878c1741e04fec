"""How attribute values read in every human-facing plan (text, Markdown): one place, so the two
renderers never disagree on what a value looks like."""

from __future__ import annotations

import json
from typing import Any

from nkplan.core.records import HOST

SKIPPED_KEYS = frozenset({"owner"})  # bookkeeping, not an attribute a reviewer changes


def fmt(value: Any, path: str = "") -> str:
    """A value as shown after `=` or around `→`: JSON, with the host namespace spelled (host)."""
    if value is None:
        return "(none)"
    if value == HOST and path.endswith("namespace"):
        return "(host)"
    if type(value) is list and path.endswith("programs"):  # a hook's programs, in run order
        return "[" + ", ".join(_program(p) for p in value) + "]"
    return _json(value)


def _json(value: Any) -> str:
    """json.dumps(value), without its cost for ints, booleans, plain ASCII strings and lists of
    them: a plan of 1000 pods shows 26,000 values."""
    cls = type(value)
    if cls is int:
        return int.__repr__(value)
    if cls is bool:
        return "true" if value else "false"
    if cls is str and value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # json.dumps escapes nothing in such a string
    if cls is list:
        return "[" + ", ".join(_json(v) for v in value) + "]"
    return json.dumps(value)


def _program(p: dict[str, Any]) -> str:
    """count_pass@5f6d7a22 (count.o, maps pinned): name, digest, and where it comes from."""
    extra = [part for part in (str(p.get("object", "")).rsplit("/", 1)[-1], "maps pinned" if p.get("pin_maps") else "")
             if part]  # fmt: skip
    return f"{p.get('program')}@{str(p.get('digest', ''))[:8]}" + (f" ({', '.join(extra)})" if extra else "")


def get(data: dict[str, Any] | None, path: str) -> Any:
    """The value at a dotted path ("peer.policy"), or None."""
    cur: Any = data
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def flatten(data: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested attributes as dotted paths, leaving out empty values and the host namespace."""
    out: dict[str, Any] = {}
    _flatten(data or {}, prefix, out)
    return out


def _flatten(data: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in data.items():
        if type(value) is dict:
            _flatten(value, f"{prefix}{key}.", out)
        # empty values, bookkeeping and the host namespace (a spec's default) say nothing to a reviewer
        elif not (value is None or value == [] or key in SKIPPED_KEYS or (key == "namespace" and value == HOST)):
            out[f"{prefix}{key}"] = value
