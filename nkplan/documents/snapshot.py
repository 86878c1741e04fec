"""A LiveState as JSON, for offline plans: `show --format json` embeds it (under the spec's
`x-nkplan-snapshot` key) and `plan --state FILE` plans against it without root or kernel access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nkplan.core.records import (
    DeviceInfo,
    ForeignProgram,
    HookRec,
    KernelInfo,
    LinkRec,
    LiveState,
    NamespaceRec,
    RouteRec,
    RuleRec,
    SharedMapRec,
    SysctlsRec,
    plain,
)
from nkplan.core.resources import from_plain
from nkplan.errors import PlanFileError

SNAPSHOT_KEY = "x-nkplan-snapshot"
SNAPSHOT_FORMAT = 1


def to_json(live: LiveState, host: dict[str, str]) -> dict[str, Any]:
    # plain(): records as the documents write them (sysctls as a mapping, as in saved plans)
    doc: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "host": host,
        "kernel": plain(live.kernel),
        "namespaces": [plain(n) for _, n in sorted(live.namespaces.items())],
        "links": [plain(link) for _, link in sorted(live.links.items())],
        "devices": [plain(d) for _, d in sorted(live.devices.items())],
        "routes": [plain(r) for r in sorted(live.routes, key=lambda r: r.key)],
        "hooks": [plain(h) for _, h in sorted(live.hooks.items())],  # programs nkplan runs, per hook
        "foreign_programs": [plain(f) for f in live.foreign_programs],
        # namespace sysctls: the keys the spec given to `show` declares (device ones are in links)
        "sysctls": [plain(s) for _, s in sorted(live.sysctls.items())],
        "rules": [plain(r) for r in sorted(live.rules, key=lambda r: (r.namespace, r.family, r.priority))],
    }
    if live.shared_maps:  # snapshots of stacks without shared maps read as before
        doc["shared_maps"] = [plain(m) for _, m in sorted(live.shared_maps.items())]
    return doc


def from_json(data: dict[str, Any]) -> tuple[LiveState, dict[str, str]]:
    if data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"snapshot format {data.get('format')!r} is not {SNAPSHOT_FORMAT}")
    live = LiveState(kernel=KernelInfo(**data["kernel"]))
    for n in data["namespaces"]:
        live.namespaces[n["name"]] = NamespaceRec(**n)
    for raw in data["links"]:
        link = from_plain("link", raw)
        assert isinstance(link, LinkRec)
        live.links[(link.primary.namespace, link.primary.name)] = link
    for d in data["devices"]:
        live.devices[(d["namespace"], d["name"])] = DeviceInfo(**d)
    for r in data["routes"]:
        route = from_plain("route", r)
        assert isinstance(route, RouteRec)
        live.routes.append(route)
    for h in data.get("hooks", ()):
        hook = from_plain("hook", h)
        assert isinstance(hook, HookRec)
        live.hooks[(hook.namespace, hook.device, hook.hook)] = hook
    live.foreign_programs.extend(ForeignProgram(**f) for f in data.get("foreign_programs", ()))
    for s in data.get("sysctls", ()):
        held = from_plain("sysctls", s)
        assert isinstance(held, SysctlsRec)
        live.sysctls[held.namespace] = held
    for raw in data.get("rules", ()):  # snapshots written before rules existed have none
        rule = from_plain("rule", raw)
        assert isinstance(rule, RuleRec)
        live.rules.append(rule)
    for raw in data.get("shared_maps", ()):
        shared = from_plain("map", raw)
        assert isinstance(shared, SharedMapRec)
        live.shared_maps[(shared.owner or "", shared.name)] = shared
    return live, dict(data["host"])


def load(path: str) -> tuple[LiveState, dict[str, str]]:
    """Read a snapshot written by `nkplan show --format json` (or a bare snapshot object)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanFileError(f"cannot read the snapshot {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{path} is not valid JSON (truncated?): {exc.msg} at line {exc.lineno}") from None
    except UnicodeDecodeError as exc:
        raise PlanFileError(f"{path} is not an nkplan snapshot: not UTF-8 at byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep
        raise PlanFileError(f"{path} is not an nkplan snapshot: {type(exc).__name__}: {str(exc)[:200]}") from None
    data = doc.get(SNAPSHOT_KEY, doc) if isinstance(doc, dict) else None
    try:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(
            f"{path} is not an nkplan snapshot ({exc}); write one with `nkplan show --format json`"
        ) from None
