"""StackSpec → the records the kernel should hold, in the same canonical form the reader produces
(sorted addresses, defaults filled in). Defaults that depend on the running kernel (scrub,
head/tailroom are only reported by kernels that know them) come from KernelInfo, so a kernel that
cannot report an attribute never yields a diff that can't go away."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nkplan.core.hostns import record_ns
from nkplan.core.linkkinds import kind_of
from nkplan.core.records import (
    HOST,
    MAP_TYPE_NAMES,
    BpfReads,
    EndRec,
    HookRec,
    KernelInfo,
    LinkRec,
    MapDef,
    NamespaceRec,
    NexthopRec,
    ProgramRec,
    RouteRec,
    RuleRec,
    SharedMapRec,
    SysctlsRec,
    digest,
    plain,
)
from nkplan.core.resources.hook import programs_digest
from nkplan.core.resources.rule import rule_record
from nkplan.core.sysctls import canonical
from nkplan.spec.bpfvalues import Resolver
from nkplan.spec.btf import read_object
from nkplan.spec.checks import (
    declared_hooks,
    effective_metric,
    namespace_sysctls,
    route_is_v6,
    route_table,
    route_to_cidr,
)
from nkplan.spec.globals import program_globals, resolver, with_globals
from nkplan.spec.mapentries import program_map_entries
from nkplan.spec.models import EndFields, LinkSpec, RouteSpec, StackSpec
from nkplan.spec.objects import resolve
from nkplan.spec.sharedmaps import shared_definitions
from nkplan.spec.types import cidr_order

DEFAULT_MTU = 1500


def sort_cidrs(cidrs: Iterable[str]) -> tuple[str, ...]:
    """Canonical order of interface addresses: IPv4 before IPv6, then numerically."""
    return tuple(text for _place, text in sorted(map(cidr_order, cidrs)))


def _declared_order(cidrs: Sequence[str]) -> tuple[str, ...]:
    """sort_cidrs of a spec's addresses, which loading made canonical already
    (spec.types.check_interface_cidr): only their order is left to make, and most ends have
    one address, which needs no parse for it."""
    return tuple(cidrs) if len(cidrs) < 2 else sort_cidrs(cidrs)


@dataclass(frozen=True)
class Desired:
    """Desired records keyed like LiveState, each with its spec path (for messages) and source order."""

    stack: str
    namespaces: dict[str, tuple[NamespaceRec, tuple[str | int, ...]]]
    links: dict[tuple[str, str], tuple[LinkRec, tuple[str | int, ...]]]
    routes: dict[tuple[str, int, str, int], tuple[RouteRec, tuple[str | int, ...]]]
    hooks: dict[tuple[str, str, str], tuple[HookRec, tuple[str | int, ...]]] = dataclasses.field(default_factory=dict)
    sysctls: dict[str, tuple[SysctlsRec, tuple[str | int, ...]]] = dataclasses.field(default_factory=dict)
    rules: dict[tuple[str, str, int], tuple[RuleRec, tuple[str | int, ...]]] = dataclasses.field(default_factory=dict)
    shared_maps: dict[str, tuple[SharedMapRec, tuple[str | int, ...]]] = dataclasses.field(default_factory=dict)


def hook_records(
    spec: StackSpec, spec_file: str, objects: dict[str, str], object_maps: dict[str, tuple[MapDef, ...]] | None = None
) -> dict[tuple[str, str, str], tuple[HookRec, tuple[str | int, ...]]]:
    """Declared programs per hook. Netkit hooks are addressed through the primary; tcx hooks
    through the end they are declared on. `objects` maps resolved object paths to digests,
    `object_maps` to the objects' own maps."""
    maps = object_maps or {}
    out: dict[tuple[str, str, str], tuple[HookRec, tuple[str | int, ...]]] = {}
    devices: list[Resolver] = []  # made once, when a program first declares values
    for path, end, hook, progs in declared_hooks(spec):
        if not progs:
            continue
        ns = record_ns(end.namespace)
        recs = []
        for p in progs:
            full = resolve(spec_file, p.object)
            obj_digest = objects.get(full, "")
            rec = ProgramRec(p.program, obj_digest, p.pin_maps, full, maps=maps.get(full, ()))
            if (p.globals or p.maps) and not devices:
                devices.append(resolver(spec))
            if p.globals:
                rec = with_globals(rec, program_globals(read_object(full), p.globals, devices[0]))
            if p.maps:
                entries = program_map_entries(read_object(full), p.maps, maps.get(full, ()), devices[0])
                rec = dataclasses.replace(rec, map_entries=entries)
            recs.append(rec)
        out[(ns, end.name, hook)] = (HookRec(ns, end.name, hook, tuple(recs), spec.stack), path)
    return out


def bpf_reads(
    spec: StackSpec, spec_file: str, objects: dict[str, str], object_maps: dict[str, tuple[MapDef, ...]]
) -> BpfReads:
    """What the reader must read of the running programs' maps for this spec: the programs that
    declare globals or map entries (records.BpfReads). Empty when none does: a plan then reads
    no map contents at all."""
    if not any(p.globals or p.maps for _path, _end, _hook, progs in declared_hooks(spec) for p in progs):
        return {}
    out: BpfReads = {}
    for key, (hook, _path) in hook_records(spec, spec_file, objects, object_maps).items():
        for p in hook.programs:
            if not (p.globals or p.map_entries):
                continue
            had = out.setdefault(key, {}).get(p.program)
            if had is not None:  # the same program twice on a hook: read what either declares
                p = dataclasses.replace(p, globals=had.globals + p.globals, map_entries=had.map_entries + p.map_entries)
            out[key][p.program] = p
    return out


def _end(end: EndFields, link: LinkSpec, inherit_mtu: int | None, info: KernelInfo) -> EndRec:
    kind = kind_of(link.kind)
    policy = (end.policy or kind.defaults["policy"]) if "policy" in kind.end_fields else None
    has_scrub = "scrub" in kind.end_fields and info.netkit_scrub is not False  # an old kernel reports none
    has_scrub = has_scrub and link.pairing != "single"  # a single device has none (and reports none)
    return EndRec(
        namespace=record_ns(end.namespace),
        name=end.name,
        mtu=end.mtu or inherit_mtu or DEFAULT_MTU,
        up=end.up,
        mac=end.mac,
        addresses=_declared_order(end.addresses),
        policy=policy,
        scrub=(end.scrub or kind.defaults["scrub"]) if has_scrub else None,
        sysctls=canonical(end.sysctls),
    )


def sysctls_records(spec: StackSpec) -> dict[str, tuple[SysctlsRec, tuple[str | int, ...]]]:
    """Declared namespace-level sysctls, per namespace (HOST for `host:`). A named namespace's
    record carries the digest of its values, written into the namespace's ownership mark."""
    out: dict[str, tuple[SysctlsRec, tuple[str | int, ...]]] = {}
    for path, ns, declared in namespace_sysctls(spec):
        values = canonical(declared)
        applied = digest(plain(values)) if ns != HOST else None
        out[ns] = (SysctlsRec(ns, values, spec.stack, applied), path)
    return out


def applied_digest(rec: LinkRec) -> str:
    """Short digest of a declared pair (ownership and bookkeeping left out), written into the
    primary's ownership mark on apply: equal digests later mean "the spec did not change"."""
    data = plain(rec)
    data.pop("owner"), data.pop("applied")
    kind = kind_of(rec.kind)
    for fld in kind.read_only:  # not declared, and stacks applied before it was read keep their digest
        data.pop(fld)
    for fld in kind.late:  # at the default (or unset): the digest of stacks applied before the field existed
        if data[fld] in (None, kind.defaults[fld]):
            data.pop(fld)
    for side in ("primary", "peer"):  # none declared: the digest of stacks applied before sysctls existed
        if data[side] is not None and not data[side]["sysctls"]:
            del data[side]["sysctls"]
    return digest(data)


def link_record(link: LinkSpec, stack: str, info: KernelInfo) -> LinkRec:
    fields = _link_fields(link, stack, info)
    return LinkRec(**fields, applied=applied_digest(LinkRec(**fields)))


def _link_fields(link: LinkSpec, stack: str, info: KernelInfo) -> dict[str, Any]:
    kind = kind_of(link.kind)
    rooms = info.netkit_headroom is not False  # a kernel that knows no head/tailroom reports none

    def room(fld: str, declared: int | None) -> int | None:
        if declared is not None:
            return declared
        return kind.defaults[fld] if fld in kind.pair_fields and rooms else None

    return dict(
        kind=link.kind,
        primary=_end(link, link, None, info),
        peer=_end(link.peer, link, link.mtu, info) if link.peer is not None else None,
        mode=(link.mode or kind.defaults["mode"]) if "mode" in kind.pair_fields else None,
        headroom=room("headroom", link.headroom),
        tailroom=room("tailroom", link.tailroom),
        pairing=(link.pairing or kind.defaults["pairing"]) if "pairing" in kind.pair_fields else None,
        owner=stack,
        **{fld: kind.defaults[fld] for fld in kind.read_only},
    )


def route_record(route: RouteSpec, stack: str) -> RouteRec:
    v6 = route_is_v6(route)
    return RouteRec(
        namespace=record_ns(route.namespace),
        to=route_to_cidr(route.to, v6),
        via=route.via,
        dev=route.dev,
        metric=effective_metric(route.metric, v6),
        owner=stack,
        table=route_table(route),
        type=route.type,
        scope=route.scope,
        src=route.src,
        onlink=route.onlink,
        mtu=route.mtu,
        nexthops=tuple(NexthopRec(nh.via, nh.dev, nh.weight, nh.onlink) for nh in route.nexthops or ()),
    )


def desired(
    spec: StackSpec,
    info: KernelInfo,
    spec_file: str = "",
    objects: dict[str, str] | None = None,
    object_maps: dict[str, tuple[MapDef, ...]] | None = None,
) -> Desired:
    namespaces: dict[str, tuple[NamespaceRec, tuple[str | int, ...]]] = {
        ns.name: (NamespaceRec(ns.name, spec.stack), ("namespaces", i)) for i, ns in enumerate(spec.namespaces)
    }
    links: dict[tuple[str, str], tuple[LinkRec, tuple[str | int, ...]]] = {}
    for i, link in enumerate(spec.links):
        rec = link_record(link, spec.stack, info)
        links[(rec.primary.namespace, rec.primary.name)] = (rec, ("links", i))
    routes: dict[tuple[str, int, str, int], tuple[RouteRec, tuple[str | int, ...]]] = {}
    for i, route in enumerate(spec.routes):
        rrec = route_record(route, spec.stack)
        routes[rrec.key] = (rrec, ("routes", i))
    hooks = hook_records(spec, spec_file, objects or {}, object_maps)
    rules: dict[tuple[str, str, int], tuple[RuleRec, tuple[str | int, ...]]] = {}
    for i, rule in enumerate(spec.rules):
        rule_rec = rule_record(rule, spec.stack)
        rules[rule_rec.key] = (rule_rec, ("rules", i))
    shared = shared_map_records(spec, spec_file, object_maps or {})
    if shared:
        hooks = {key: (_use_shared(rec, shared), path) for key, (rec, path) in hooks.items()}
    # the digest apply writes into each hook's marker, to tell drift later
    hooks = {k: (dataclasses.replace(r, applied=programs_digest(r.programs)), p) for k, (r, p) in hooks.items()}
    return Desired(spec.stack, namespaces, links, routes, hooks, sysctls_records(spec), rules, shared)


def shared_map_records(
    spec: StackSpec, spec_file: str, object_maps: dict[str, tuple[MapDef, ...]]
) -> dict[str, tuple[SharedMapRec, tuple[str | int, ...]]]:
    out: dict[str, tuple[SharedMapRec, tuple[str | int, ...]]] = {}
    for name, d in shared_definitions(spec, spec_file, object_maps).items():
        rec = SharedMapRec(name, MAP_TYPE_NAMES[d.type], d.key_size, d.value_size, d.max_entries, d.flags, spec.stack)
        out[name] = (rec, ("maps", name))
    return out


def _use_shared(hook: HookRec, shared: dict[str, tuple[SharedMapRec, tuple[str | int, ...]]]) -> HookRec:
    """Each program uses the shared maps its object has a map of (the loader checked the
    definitions are the same)."""
    progs = tuple(
        dataclasses.replace(p, shared=tuple(sorted({m.name for m in p.maps} & shared.keys()))) for p in hook.programs
    )
    return dataclasses.replace(hook, programs=progs)
