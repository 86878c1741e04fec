"""LiveState of one stack → a spec document that plans to no changes (`nkplan show`)."""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML

from nkplan.core.linkkinds import kind_of
from nkplan.core.records import (
    HOST,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    EndRec,
    HookRec,
    LinkRec,
    LiveState,
    RouteRec,
    RuleRec,
    SharedMapRec,
    default_scope,
    plain,
)
from nkplan.core.resources import address_of
from nkplan.documents.programexport import Namer
from nkplan.spec.checks import NETKIT_HOOKS, TCX_HOOKS, effective_metric
from nkplan.spec.rttables import table_name


def _end(end: EndRec, kind: str, mode: str | None, inherited_mtu: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": end.name}
    if end.namespace:
        out["namespace"] = end.namespace
    if end.mtu != (inherited_mtu or 1500):
        out["mtu"] = end.mtu
    if not end.up:
        out["up"] = False
    if end.mac and not (kind == "netkit" and mode == "l3"):
        out["mac"] = end.mac
    if end.addresses:
        out["addresses"] = list(end.addresses)
    table = kind_of(kind)
    for fld in table.end_fields:  # netkit: policy, scrub; written when not the default
        value = getattr(end, fld)
        if value and value != table.defaults[fld]:
            out[fld] = value
    if end.sysctls:  # only what the read was asked for: the keys a spec declares
        out["sysctls"] = plain(end.sysctls)
    return out


def _link(link: LinkRec) -> dict[str, Any]:
    head = _end(link.primary, link.kind, link.mode, None)
    out: dict[str, Any] = {"name": head.pop("name")}
    if "namespace" in head:
        out["namespace"] = head.pop("namespace")
    out["kind"] = link.kind
    table = kind_of(link.kind)
    if "mode" in table.pair_fields:
        out["mode"] = link.mode or table.defaults["mode"]
    for fld in ("headroom", "tailroom"):
        if fld in table.pair_fields and getattr(link, fld):
            out[fld] = getattr(link, fld)
    if link.pairing not in (None, table.defaults.get("pairing")):
        out["pairing"] = link.pairing
    if link.primary.mtu != 1500:
        out["mtu"] = head.pop("mtu", link.primary.mtu)
    out.update(head)
    if link.peer is not None:  # a single netkit device has none
        out["peer"] = _end(link.peer, link.kind, link.mode, link.primary.mtu)
    return out


UNKNOWN_OBJECT = "<unknown object"  # what show writes for a program no spec names an object of


def _programs(hook: HookRec, namer: Namer | None) -> list[dict[str, Any]]:
    out = []
    for p in hook.programs:
        item = namer(hook, p) if namer is not None else None
        if item is None:
            item = {"object": f"{UNKNOWN_OBJECT}, digest {p.digest}>", "program": p.program}
            if p.pin_maps:
                item["pin_maps"] = True
        out.append(item)
    return out


def _attach_hooks(doc_link: dict[str, Any], link: LinkRec, live: LiveState, namer: Namer | None) -> None:
    """Put the programs the live hooks run into the exported link."""
    for side in link.ends:
        target = doc_link if side is link.primary else doc_link["peer"]
        for hook in TCX_HOOKS:
            rec = live.hooks.get((side.namespace, side.name, hook))
            if rec is not None and rec.programs:
                target.setdefault("tcx", {})[hook] = _programs(rec, namer)
    if link.kind == "netkit":
        for hook in NETKIT_HOOKS:
            rec = live.hooks.get((link.primary.namespace, link.primary.name, hook))
            if rec is not None and rec.programs:
                doc_link.setdefault("programs", {})[hook] = _programs(rec, namer)


def programs_listing(live: LiveState, stack: str) -> list[dict[str, Any]]:
    """What runs at each of the stack's hooks, as the kernel names it (id, tag, link) — shown by
    `show` under the extension key x-nkplan-programs, which the spec loader ignores."""
    out: list[dict[str, Any]] = []
    for _key, hook in sorted(live.hooks.items()):
        if hook.owner != stack or not hook.programs:
            continue
        progs = [
            {"name": p.program, "id": p.prog_id, "tag": p.tag, "digest": p.digest, "link_id": p.link_id}
            for p in hook.programs
        ]
        out.append({"hook": address_of(hook), "programs": progs})
    for f in live.foreign_programs:
        owner = live.devices.get((f.namespace, f.device))
        if owner is not None and owner.owner == stack:
            where = address_of(HookRec(f.namespace, f.device, f.hook))
            out.append({"hook": where, "foreign": {"name": f.name, "id": f.prog_id, "link_id": f.link_id}})
    return out


def _route(r: RouteRec) -> dict[str, Any]:
    """A live route as the spec writes it: what differs from the defaults."""
    item: dict[str, Any] = {}
    if r.namespace:
        item["namespace"] = r.namespace
    item["to"] = "default" if r.to == "0.0.0.0/0" else r.to
    if r.type != "unicast":
        item["type"] = r.type
    if r.table != (RT_TABLE_LOCAL if r.type == "local" else RT_TABLE_MAIN):
        item["table"] = r.table
    for fld in ("via", "dev", "src"):
        if getattr(r, fld):
            item[fld] = getattr(r, fld)
    if r.nexthops:
        item["nexthops"] = [
            {k: v for k, v in plain(nh).items() if v not in (None, False) and not (k == "weight" and v == 1)}
            for nh in r.nexthops
        ]
    if r.scope != default_scope(r.family, r.type, r.via is not None or bool(r.nexthops)):
        item["scope"] = r.scope
    if r.onlink:
        item["onlink"] = True
    if r.mtu is not None:
        item["mtu"] = r.mtu
    if r.metric != effective_metric(None, r.family == 6):
        item["metric"] = r.metric
    return item


def _namespace(name: str, live: LiveState) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    held = live.sysctls.get(name)
    if held is not None and held.values:
        out["sysctls"] = plain(held.values)
    return out


def stack_document(
    live: LiveState, stack: str, *, unowned: bool = False, programs: Namer | None = None
) -> dict[str, Any]:
    """The stack's objects as a spec; with `unowned`, also every namespace and device pair no
    stack owns (for importing a hand-made setup with `plan --adopt`)."""
    wanted = {stack, None} if unowned else {stack}
    doc: dict[str, Any] = {"stack": stack}
    doc["namespaces"] = [_namespace(n, live) for n, r in sorted(live.namespaces.items()) if r.owner in wanted]
    host = live.sysctls.get(HOST)
    if host is not None and host.values:
        doc["host"] = {"sysctls": plain(host.values)}
    known = {n["name"] for n in doc["namespaces"]} | {HOST}
    doc["links"] = []
    for _, link in sorted(live.links.items()):
        if link.owner in wanted and {end.namespace for end in link.ends} <= known:
            exported = _link(link)
            _attach_hooks(exported, link, live, programs)
            doc["links"].append(exported)
    owned_ns = {n["name"] for n in doc["namespaces"]}
    routes = []
    for r in sorted(live.routes, key=lambda r: (r.namespace, r.table, r.to, r.metric)):
        if r.owner != stack and r.namespace not in owned_ns:
            continue
        routes.append(_route(r))
    doc["routes"] = routes
    doc["rules"] = [
        _rule(r)
        for r in sorted(live.rules, key=lambda r: (r.namespace, r.family, r.priority))
        if r.owner in wanted and not r.stale and not r.extra and r.namespace in known
    ]
    shared = {name: m for (st, name), m in sorted(live.shared_maps.items()) if st == stack}
    if shared:  # documents of stacks without shared maps read as before
        doc["maps"] = {name: _shared_map(m) for name, m in shared.items()}
    return doc


def _shared_map(m: SharedMapRec) -> dict[str, Any]:
    out: dict[str, Any] = {"type": m.type, "key_size": m.key_size, "value_size": m.value_size}
    out["max_entries"] = m.max_entries
    if m.flags:
        out["map_flags"] = m.flags
    return out


def _rule(r: RuleRec) -> dict[str, Any]:
    """A rule as a spec writes it (`extra` ones, holding what a spec cannot say, are left out)."""
    item: dict[str, Any] = {}
    if r.namespace:
        item["namespace"] = r.namespace
    item["priority"] = r.priority
    if r.family == "inet6" and not (r.src or r.dst):
        item["family"] = "inet6"
    for key, value in (("from", r.src), ("to", r.dst), ("iif", r.iif), ("oif", r.oif)):
        if value is not None:
            item[key] = value
    if r.fwmark is not None:
        mask = 0xFFFFFFFF if r.fwmask is None else r.fwmask
        item["fwmark"] = r.fwmark if mask == 0xFFFFFFFF else f"{r.fwmark:#x}/{mask:#x}"
    if r.action == "lookup":
        name = table_name(r.table or 0)
        item["table"] = int(name) if name.isdigit() else name
    else:
        item["action"] = r.action
    return item


def to_yaml(doc: dict[str, Any]) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()
