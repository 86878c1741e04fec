"""`defaults:` → values written into every item that does not set them, on the plain data after
`repeat:` is expanded and before pydantic sees it.

Precedence (the first that sets a field wins): the item itself > `links_KIND` (`links_netkit`,
`links_veth`) > `links`; for a link's peer: the peer as written (in the item, or in a `peer:` of
`links` defaults) > `peers_KIND` > `peers`. Mappings (`sysctls`, `tcx`, `programs`, `peer`) are
merged key by key at every depth; lists and scalars are replaced whole. A field filled from
defaults points at its line under `defaults:` in messages."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from nkplan.spec.models import LinkSpec, NamespaceSpec, PeerSpec, RouteSpec
from nkplan.spec.rules import RuleSpec
from nkplan.spec.source import Path_, SourceMap, dotted

KINDS = ("netkit", "veth")
MODELS: dict[str, type[BaseModel]] = {
    "namespaces": NamespaceSpec,
    "links": LinkSpec,
    "peers": PeerSpec,
    "routes": RouteSpec,
    "rules": RuleSpec,
    **{f"links_{k}": LinkSpec for k in KINDS},
    **{f"peers_{k}": PeerSpec for k in KINDS},
}

# the fields that tell one item from another: defaults cannot set them
IDENTITY = {"namespaces": "name", "links": "name", "peers": "name", "routes": "to", "rules": "priority"}


def _merge(
    default: dict[str, Any], item: dict[str, Any], dpath: Path_, ipath: Path_, smap: SourceMap
) -> dict[str, Any]:
    out = dict(item)
    for k, v in default.items():
        if k not in out:
            out[k] = v
            smap.redirects[(*ipath, k)] = ((*dpath, k), dotted((*dpath, k)))
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = _merge(v, out[k], (*dpath, k), (*ipath, k), smap)
    return out


def _layers(found: dict[str, dict[str, Any]], section: str, kind: Any) -> list[tuple[dict[str, Any], Path_]]:
    """The defaults that apply, strongest first."""
    out: list[tuple[dict[str, Any], Path_]] = []
    if isinstance(kind, str) and f"{section}_{kind}" in found:
        out.append((found[f"{section}_{kind}"], ("defaults", f"{section}_{kind}")))
    if section in found:
        out.append((found[section], ("defaults", section)))
    return out


def apply_defaults(data: dict[str, Any], smap: SourceMap) -> list[str]:
    """Fill every item from `defaults:` (removed from `data`); returns the problems of `defaults:` itself."""
    raw = data.pop("defaults", None)
    if raw is None:
        return []
    problems: list[str] = []

    def error(path: Path_, msg: str, key: bool = False) -> None:
        problems.append(f"{smap.position(path, key)}: {dotted(path)}: {msg}")

    if not isinstance(raw, dict):
        error(("defaults",), f"'defaults' is a mapping such as {{links: {{kind: netkit}}}}; got {raw!r}")
        return problems
    found: dict[str, dict[str, Any]] = {}
    for section, values in raw.items():
        path: Path_ = ("defaults", section)
        model = MODELS.get(section)
        if model is None:
            error(path, f"unknown defaults section {section!r} (sections: {', '.join(MODELS)})", key=True)
            continue
        if not isinstance(values, dict):
            error(path, f"defaults for {section} are a mapping of fields; got {values!r}")
            continue
        # as the YAML spells them (a rule's `from`, not the model's `from_`)
        fields = [f.alias or name for name, f in model.model_fields.items()]
        ident = IDENTITY[section.split("_")[0]]
        for fld in values:
            if fld not in fields:
                error((*path, fld), f"unknown field {fld!r} ({section} have: {', '.join(fields)})", key=True)
            elif fld == ident:
                error((*path, fld), f"{fld!r} tells one item from another: defaults cannot set it", key=True)
        found[section] = {k: v for k, v in values.items() if k in fields and k != ident}
    for section in ("namespaces", "routes", "rules", "links"):
        items = data.get(section)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            ipath: Path_ = (section, i)
            kind = item.get("kind", found.get("links", {}).get("kind")) if section == "links" else None
            for layer, dpath in _layers(found, section, kind):
                item = _merge(layer, item, dpath, ipath, smap)
            if section == "links" and isinstance(item.get("peer"), dict):
                peer = item["peer"]
                for layer, dpath in _layers(found, "peers", item.get("kind")):
                    peer = _merge(layer, peer, dpath, (*ipath, "peer"), smap)
                item = {**item, "peer": peer}
            items[i] = item
    return problems
