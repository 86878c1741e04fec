"""Cross-field rules of a spec that pydantic's per-field validation cannot see. Each problem is
(path, message) so the loader can point at file:line:col. No kernel access: `validate` runs anywhere."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import NamedTuple

from nkplan.core.hostns import record_ns
from nkplan.core.linkkinds import (
    KIND_ONLY_END,
    KIND_ONLY_PAIR,
    KINDS,
    SINGLE_POLICY,
    SINGLE_REFUSES,
    kind_of,
    mac_settable,
)
from nkplan.core.records import HOST, RT_TABLE_LOCAL, RT_TABLE_MAIN, Hook
from nkplan.core.sysctls import key_problem, net_key_device, net_key_problem
from nkplan.spec.models import EndFields, LinkSpec, ProgramSpec, RouteSpec, StackSpec
from nkplan.spec.rules import rule_problems
from nkplan.spec.source import dotted

Problem = tuple[tuple[str | int, ...], str]
MAX_ROUTE_METRIC = 2**32 - 1
NETKIT_HOOKS: tuple[Hook, ...] = ("primary", "peer")  # a netkit pair's own hooks (spec key `programs`)
TCX_HOOKS: tuple[Hook, ...] = ("ingress", "egress")  # the hooks of every end (spec key `tcx`)


def _label(ns: str) -> str:
    return f"namespace {ns!r}" if ns else "the host namespace"


def link_ends(link: LinkSpec, base: tuple[str | int, ...]) -> tuple[tuple[EndFields, tuple[str | int, ...]], ...]:
    """The declared ends of a link with their paths: the link itself (its primary) and its
    peer, if it has one (a single netkit device has none)."""
    if link.peer is None:
        return ((link, base),)
    return ((link, base), (link.peer, (*base, "peer")))


Name = Callable[[tuple[str | int, ...]], str]


def semantic_problems(spec: StackSpec, name: Name = dotted) -> list[Problem]:
    """`name` names an item in messages that cite another (`links[3]`, or the template instance
    that made it: `pods[17].links[0]`)."""
    problems = list(_namespaces(spec, name)) + list(_links(spec, name)) + list(_routes(spec, name))
    problems += list(_overriding_sysctls(spec, name))
    problems += list(_hooks(spec)) + list(_checks(spec))
    return problems + list(rule_problems(spec.rules, {ns.name for ns in spec.namespaces}, name))


def _checks(spec: StackSpec) -> Iterator[Problem]:
    """A check runs in a namespace the spec declares (or the host): one it does not own may be
    gone or changed by the time it runs, and rolling back an apply over it would be guesswork."""
    declared = {ns.name for ns in spec.namespaces}
    for i, check in enumerate(spec.checks):
        if check.from_ is not None and check.from_ not in declared:
            yield ("checks", i, "from"), (
                f"check {i + 1} runs in namespace {check.from_!r}, which the spec does not declare"
                " (omit 'from' to run it in the host namespace)"
            )
        dest = ipaddress.ip_address(check.to)
        if dest.version == 6 and dest.is_link_local:
            yield ("checks", i, "to"), (
                f"check {i + 1}: {check.to} is an IPv6 link-local address, which needs a device to go out of;"
                " checks have none: use a global (or ULA) address"
            )
        elif dest.is_unspecified or dest.is_multicast:
            yield ("checks", i, "to"), f"check {i + 1}: {check.to} is not a single host's address"


MAX_PROGRAMS_PER_HOOK = 63  # bpf_mprog's limit


class DeclaredHook(NamedTuple):
    """One program list of a spec: where it is (path), the end whose device it is attached
    through (netkit hooks: the pair's primary; tcx hooks: the end it is declared on), the hook
    and the programs in run order."""

    path: tuple[str | int, ...]
    end: EndFields
    hook: Hook
    programs: list[ProgramSpec]


def declared_hooks(spec: StackSpec) -> Iterator[DeclaredHook]:
    """Every program list the spec declares (an empty one too), in spec order: the one
    enumeration of hooks for the checks, the object checks and the desired records."""
    for i, link in enumerate(spec.links):
        base: tuple[str | int, ...] = ("links", i)
        if link.programs is not None:
            for hook in NETKIT_HOOKS:
                yield DeclaredHook((*base, "programs", hook), link, hook, getattr(link.programs, hook))
        for end, path in link_ends(link, base):
            if end.tcx is not None:
                for hook in TCX_HOOKS:
                    yield DeclaredHook((*path, "tcx", hook), end, hook, getattr(end.tcx, hook))


def _hooks(spec: StackSpec) -> Iterator[Problem]:
    for i, link in enumerate(spec.links):
        if link.programs is not None and link.kind != "netkit":
            yield ("links", i, "programs"), (
                f"'programs' attaches to netkit hooks; {link.name!r} is a veth pair "
                "(use 'tcx: {ingress: [...], egress: [...]}' on an end)"
            )
    for path, _end, hook, progs in declared_hooks(spec):
        if len(progs) > MAX_PROGRAMS_PER_HOOK:
            yield path, f"{len(progs)} programs on hook {hook!r}; the kernel runs at most {MAX_PROGRAMS_PER_HOOK}"
        seen: set[str] = set()
        for j, prog in enumerate(progs):
            if prog.program in seen:
                yield (*path, j, "program"), f"program {prog.program!r} is listed twice on hook {hook!r}"
            seen.add(prog.program)


def _namespaces(spec: StackSpec, name: Name) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for i, ns in enumerate(spec.namespaces):
        if ns.name in seen:
            first = name(("namespaces", seen[ns.name]))
            both = f"{first} and {name(('namespaces', i))}"
            yield ("namespaces", i, "name"), f"namespace {ns.name!r} is declared twice ({both})"
        else:
            seen[ns.name] = i
    for path, _ns, declared in namespace_sysctls(spec):
        for key in declared:
            problem = net_key_problem(key)
            if problem is not None:
                yield (*path, key), problem


# Namespace keys whose every write the kernel copies to every device of the namespace (and its
# `default`): net/ipv4/devinet.c inet_forward_change, net/ipv6/addrconf.c addrconf_forward_change
# and addrconf_disable_change. Declared with another value for the per-device key of a device
# in the same namespace, the two fight: a namespace key written after the device is made (or
# changed later) silently overrides the device's value, so the apply could not verify.
OVERRIDING_SYSCTLS = {
    "net.ipv4.ip_forward": "ipv4.forwarding",
    "net.ipv4.conf.all.forwarding": "ipv4.forwarding",
    "net.ipv6.conf.all.forwarding": "ipv6.forwarding",
    "net.ipv6.conf.all.disable_ipv6": "ipv6.disable_ipv6",
}


def _overriding_sysctls(spec: StackSpec, name: Name) -> Iterator[Problem]:
    # (namespace, device key) → (where declared, value)
    per_device: dict[tuple[str, str], list[tuple[str, int | str]]] = {}
    for i, link in enumerate(spec.links):
        for end, path in link_ends(link, ("links", i)):
            for key, dev_value in (end.sysctls or {}).items():
                where = f"{end.name!r} ({name(path)})"
                per_device.setdefault((record_ns(end.namespace), key), []).append((where, dev_value))
    for path, ns, declared in namespace_sysctls(spec):  # net.ipv4.conf.DEV.KEY there too
        for key, value in declared.items():
            dev = net_key_device(key)
            parts = key.split(".")
            if dev is not None and parts[2] == "conf":
                where = f"{dev!r} ({name((*path, key))})"
                per_device.setdefault((ns, f"{parts[1]}.{parts[4]}"), []).append((where, value))
    for path, ns, declared in namespace_sysctls(spec):
        for key, value in declared.items():
            dev_key = OVERRIDING_SYSCTLS.get(key, "")
            clashing = [f"{where} as {other}" for where, other in per_device.get((ns, dev_key), []) if other != value]
            if clashing:  # the same value everywhere agrees with the kernel's copying
                yield (*path, key), (
                    f"{key}: {value} sets {dev_key} of every device in {_label(ns)} to {value} each time it is "
                    f"written, overriding the {dev_key} declared on {', '.join(clashing)}: declare one or the other"
                )


def namespace_sysctls(spec: StackSpec) -> Iterator[tuple[tuple[str | int, ...], str, dict[str, int | str]]]:
    """Every namespace-level sysctls mapping of a spec: its path, the namespace (HOST for the
    host's, last) and the mapping."""
    for i, ns in enumerate(spec.namespaces):
        if ns.sysctls:
            yield ("namespaces", i, "sysctls"), ns.name, ns.sysctls
    if spec.host is not None and spec.host.sysctls:
        yield ("host", "sysctls"), HOST, spec.host.sysctls


def _end_problems(end: EndFields, base: tuple[str | int, ...], link: LinkSpec, declared: set[str]) -> Iterator[Problem]:
    if end.namespace and end.namespace not in declared:
        yield (*base, "namespace"), f"namespace {end.namespace!r} is not declared under 'namespaces:'"
    for fld in KIND_ONLY_END:
        if fld not in kind_of(link.kind).end_fields and getattr(end, fld) is not None:
            yield (*base, fld), _not_of_kind(fld, link)
    if not mac_settable(link.kind, link.mode) and end.mac is not None:
        yield (*base, "mac"), f"mac {end.mac!r} cannot be set on an L3 netkit device (use mode: l2)"
    for key in end.sysctls or {}:
        problem = key_problem(key)
        if problem is not None:
            yield (*base, "sysctls", key), problem
    seen: set[str] = set()
    for j, addr in enumerate(end.addresses):
        ip = addr.partition("/")[0]  # validated: as ipaddress writes it, so this is str(interface(addr).ip)
        if ip in seen:
            yield (*base, "addresses", j), f"address {addr!r} is listed twice on {end.name!r}"
        seen.add(ip)


def _not_of_kind(fld: str, link: LinkSpec) -> str:
    owners = " or ".join(k.name for k in KINDS.values() if fld in k.pair_fields + k.end_fields)
    return f"{fld!r} is a {owners} setting; {link.name!r} is a {link.kind} pair"


def _links(spec: StackSpec, name: Name) -> Iterator[Problem]:
    declared = {ns.name for ns in spec.namespaces}
    devices: dict[tuple[str, str], tuple[str | int, ...]] = {}  # (namespace, name) → the first end's path
    for i, link in enumerate(spec.links):
        base: tuple[str | int, ...] = ("links", i)
        for fld in KIND_ONLY_PAIR:
            if fld not in kind_of(link.kind).pair_fields and getattr(link, fld) is not None:
                yield (*base, fld), _not_of_kind(fld, link)
        yield from _pairing_problems(link, base)
        for end, path in link_ends(link, base):
            yield from _end_problems(end, path, link, declared)
        for end, path in link_ends(link, base):
            key = (record_ns(end.namespace), end.name)
            if key in devices:
                both = f"{name(devices[key])} and {name(path)}"
                yield (*path, "name"), f"device {end.name!r} in {_label(key[0])} is declared twice ({both})"
            else:
                devices[key] = path


def _pairing_problems(link: LinkSpec, base: tuple[str | int, ...]) -> Iterator[Problem]:
    """A peer where there is none (single) or none where there must be one (a pair), and what
    the kernel refuses on a single netkit device (linkkinds.SINGLE_REFUSES)."""
    single = link.kind == "netkit" and link.pairing == "single"
    if single and link.peer is not None:
        yield (*base, "peer"), (
            f"{link.name!r} is a single netkit device (pairing: single), which has no peer; "
            "remove 'peer:' or write 'pairing: pair'"
        )
    elif not single and link.peer is None:
        yield (*base, "peer"), (
            "required field 'peer' is missing: "
            + (
                "a netkit pair has two ends (for a netkit device without a peer, write 'pairing: single')"
                if link.kind == "netkit"
                else f"a {link.kind} device is one end of a pair"
            )
        )
    if not single:
        return
    for fld, why in SINGLE_REFUSES.items():
        if getattr(link, fld) is not None:
            yield (*base, fld), f"{why} ({link.name!r} has pairing: single)"
    if link.policy not in (None, SINGLE_POLICY):
        yield (*base, "policy"), (
            f"a single netkit device always forwards when no program runs; the kernel refuses "
            f"policy: {link.policy} for {link.name!r} (pairing: single)"
        )


def _routes(spec: StackSpec, name: Name) -> Iterator[Problem]:
    declared = {ns.name for ns in spec.namespaces}
    devs: set[tuple[str, str]] = set()
    for link in spec.links:
        for end, _path in link_ends(link, ()):
            devs.add((record_ns(end.namespace), end.name))
    keys: dict[tuple[str, int, str, int], int] = {}
    for i, route in enumerate(spec.routes):
        base: tuple[str | int, ...] = ("routes", i)
        ns = record_ns(route.namespace)
        if ns and ns not in declared:
            yield (*base, "namespace"), f"namespace {ns!r} is not declared under 'namespaces:'"
        yield from _route_shape(route, base, ns)
        v6 = route_is_v6(route)
        for path, dev in _route_devices(route, base):
            if (ns, dev) not in devs:
                yield (*path, "dev"), f"device {dev!r} is not declared in {_label(ns)}"
        for path, ip in _route_ips(route, base):
            if route.to != "default" and (":" in ip) != v6:
                what = "source" if path[-1] == "src" else "gateway"
                yield path, f"{what} {ip!r} is not of the same IP family as {route.to!r}"
        key = (ns, route_table(route), route_to_cidr(route.to, v6), effective_metric(route.metric, v6))
        if key in keys:
            both = f"{name(('routes', keys[key]))} and {name(base)}"
            yield base, f"route to {route.to!r} in {_label(ns)} (table {key[1]}) is declared twice ({both})"
        else:
            keys[key] = i


SENDING_TYPES = ("unicast", "local")  # the route types that send through a device


def _route_shape(route: RouteSpec, base: tuple[str | int, ...], ns: str) -> Iterator[Problem]:
    """Which fields a route of its type may have, as the kernel takes them."""
    to, v6 = route.to, route_is_v6(route)
    if route.scope is not None and v6:
        yield (*base, "scope"), "IPv6 routes have no scope (the kernel reports every one as global)"
    if route.mtu is not None and v6 and route.mtu < 1280:
        yield (*base, "mtu"), f"mtu {route.mtu} is below IPv6's minimum of 1280"
    if route.type not in SENDING_TYPES:
        for fld in ("via", "dev", "nexthops", "src", "onlink"):
            if getattr(route, fld) not in (None, False):
                yield (*base, fld), f"a {route.type} route sends nowhere: {fld!r} does not apply to it"
        if ns == HOST:
            yield base, (
                f"{route.type} route to {to!r} in the host namespace: nkplan marks host routes as its own "
                "through its device, and a route of this type has none (declare it in a namespace of the stack)"
            )
        return
    if route.nexthops is not None:
        if route.via is not None or route.dev is not None or route.onlink:
            yield (*base, "nexthops"), "a multipath route sets via/dev/onlink per nexthop, not on the route"
        if route.type != "unicast":
            yield (*base, "nexthops"), f"a {route.type} route cannot have nexthops"
        if len(route.nexthops) < 2:
            # the kernel keeps a one-path route as a plain one (via/dev): it would never read back
            yield (*base, "nexthops"), "'nexthops' needs two or more nexthops (for one, write via/dev on the route)"
        for j, nh in enumerate(route.nexthops):
            where = (*base, "nexthops", j)
            if nh.dev is None and nh.via is None:
                yield where, "a nexthop needs 'dev', 'via' or both"
            if nh.dev is None and ns == HOST:
                yield where, "a nexthop in the host namespace needs 'dev' (one of this stack's devices)"
            if nh.onlink and nh.via is None:
                yield (*where, "onlink"), "'onlink' needs 'via' (the kernel refuses it on a device-only nexthop)"
            if v6 and nh.via is None:
                yield where, "an IPv6 multipath nexthop needs 'via' (the kernel refuses device-only IPv6 multipath)"
        return
    if route.dev is None and route.via is None:
        yield base, f"route to {to!r} needs 'dev', 'via', both, or 'nexthops'"
    if route.dev is None and ns == HOST:
        yield base, f"route to {to!r} in the host namespace needs 'dev' (one of this stack's devices)"
    if route.onlink and route.via is None and not v6:
        yield (*base, "onlink"), "'onlink' needs 'via' (the kernel refuses it on an IPv4 route without a gateway)"


def _route_devices(route: RouteSpec, base: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if route.dev is not None:
        yield base, route.dev
    for j, nh in enumerate(route.nexthops or ()):
        if nh.dev is not None:
            yield (*base, "nexthops", j), nh.dev


def _route_ips(route: RouteSpec, base: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    for fld in ("via", "src"):
        if getattr(route, fld) is not None:
            yield (*base, fld), getattr(route, fld)
    for j, nh in enumerate(route.nexthops or ()):
        if nh.via is not None:
            yield (*base, "nexthops", j, "via"), nh.via


def route_is_v6(route: RouteSpec) -> bool:
    """Is a declared route IPv6? Its destination says so; "default" has no family of its own, so
    a gateway (its own, a nexthop's) or its source decides, and a default route without any is IPv4."""
    if route.to != "default":
        return ":" in route.to
    ips = [ip for _path, ip in _route_ips(route, ())]
    return bool(ips) and ":" in ips[0]


def route_table(route: RouteSpec) -> int:
    """The declared table, else iproute2's default: local for a local route, main otherwise."""
    if route.table is not None:
        return route.table
    return RT_TABLE_LOCAL if route.type == "local" else RT_TABLE_MAIN


def route_to_cidr(to: str, v6: bool) -> str:
    if to == "default":
        return "::/0" if v6 else "0.0.0.0/0"
    return to


def effective_metric(metric: int | None, v6: bool) -> int:
    """The metric the kernel will report: IPv6 turns 0 (or none) into 1024 (IP6_RT_PRIO_USER)."""
    if v6 and not metric:
        return 1024
    return metric or 0
