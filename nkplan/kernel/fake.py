"""An in-memory kernel implementing the same protocol as the real one: for fast planner and
applier tests only. It models what the planner depends on (a pair dies with either end's
namespace, routes die with their device, names are unique per namespace, netkit may be missing),
and lets tests inject a refusal at any operation."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence

from nkplan.core.linkkinds import kind_of, path_label, value_at
from nkplan.core.reach import Outcome, Probe
from nkplan.core.records import (
    HOST,
    RTPROT_NKPLAN,
    BpfReads,
    DeviceInfo,
    HookRec,
    KernelInfo,
    LinkRec,
    LiveState,
    NamespaceRec,
    OrphanPin,
    RouteRec,
    RuleRec,
    SharedMapRec,
    SysctlsRec,
    ns_label,
)
from nkplan.core.resources.programvalues import with_live_devices
from nkplan.core.sysctls import DEVICE_KEYS, Sysctls, Value, proc_path, reference_key
from nkplan.errors import InternalError, KernelError
from nkplan.kernel.seam import ApplySession, Writer, Writers, typed_writers

FailHook = Callable[[str, object], "KernelError | None"]


class FakeKernel(Writers):
    def __init__(
        self,
        state: LiveState | None = None,
        *,
        netkit: bool = True,
        single: bool | None = None,
        fail: FailHook | None = None,
    ) -> None:
        """single: whether netkit's single-device mode exists (Linux 7.1); default: as netkit."""
        single = netkit if single is None else single
        self.state = state or LiveState(kernel=KernelInfo("fake", netkit, netkit, netkit, single))
        self.fail = fail
        self.missing_sysctls: set[str] = set()  # per-device keys this fake kernel lacks
        self.calls: list[str] = []
        self.unreachable: set[tuple[str, str, int | None]] = set()  # (namespace, to, port) that probe() misses
        self._next_ifindex = 100
        self.state.netns_cookies.setdefault(HOST, 1)  # cookies count from 1 at boot, the host's first
        self._next_cookie = max(self.state.netns_cookies.values())
        for ns in self.state.namespaces:  # a state given without cookies: each namespace gets one
            if ns not in self.state.netns_cookies:
                self._next_cookie += 1
                self.state.netns_cookies[ns] = self._next_cookie

    def writers(self) -> dict[str, Writer]:
        return typed_writers(self)

    # helpers ----------------------------------------------------------------------------------
    def _enter(self, op: str, obj: object) -> None:
        self.calls.append(op)
        if self.fail is not None:
            err = self.fail(op, obj)
            if err is not None:
                raise err

    def _ifindex(self) -> int:
        self._next_ifindex += 1
        return self._next_ifindex

    def _devices_of(self, link: LinkRec) -> list[tuple[str, str]]:
        return [(end.namespace, end.name) for end in link.ends]

    def _drop_link(self, key: tuple[str, str]) -> None:
        link = self.state.links.pop(key)
        for dkey in self._devices_of(link):
            self.state.devices.pop(dkey, None)
            self.state.hooks = {k: v for k, v in self.state.hooks.items() if (k[0], k[1]) != dkey}
            # a route dies with any device it sends through (IPv4 multipath: with any nexthop's)
            self.state.routes = [r for r in self.state.routes if dkey not in {(r.namespace, d) for d in r.devices()}]

    # protocol ---------------------------------------------------------------------------------
    def read(
        self,
        *,
        probe_netkit: bool = False,
        sysctls: frozenset[str] = frozenset(),
        net_keys: Mapping[str, frozenset[str]] | None = None,
        bpf_reads: BpfReads | None = None,
    ) -> LiveState:
        self.calls.append("read")
        snap = copy.deepcopy(self.state)
        if not probe_netkit:
            snap.kernel = dataclasses.replace(
                snap.kernel, netkit=None, netkit_scrub=None, netkit_headroom=None, netkit_single=None
            )
        # as the reader: only the keys asked for, and only those this (fake) kernel has
        for key, link in snap.links.items():
            ends = {
                side: dataclasses.replace(end, sysctls=Sysctls(kv for kv in end.sysctls if kv[0] in sysctls))
                for side in ("primary", "peer")
                if (end := getattr(link, side)) is not None
            }
            snap.links[key] = dataclasses.replace(link, **ends)
        known = tuple(sorted(set(DEVICE_KEYS) - self.missing_sysctls))
        snap.kernel = dataclasses.replace(snap.kernel, sysctl_keys=known if sysctls else None)
        # net.* keys: the asked ones of the namespaces that exist, as the kernel holds them
        # (a key never written reads as the fake's default 0)
        snap.ns_sysctl_marks = {
            ns: rec.applied for ns, rec in self.state.sysctls.items() if ns != HOST and rec.owner and rec.applied
        }
        snap.sysctls = {}
        for ns, keys in (net_keys or {}).items():
            if ns != HOST and ns not in self.state.namespaces:
                continue
            held = self.state.sysctls.get(ns, SysctlsRec(ns))
            values: dict[str, Value] = {k: 0 for k in keys if k not in self.missing_sysctls}
            values.update((k, v) for k, v in held.values if k in keys)
            owner = self.state.namespaces[ns].owner if ns != HOST else None
            snap.sysctls[ns] = SysctlsRec(ns, Sysctls(sorted(values.items())), owner, held.applied)
        snap.hooks = {k: dataclasses.replace(h, foreign_now=self._foreign_at(k)) for k, h in snap.hooks.items()}
        # as the reader: a named namespace's owner owns the rules with nkplan's protocol there
        snap.rules = [
            dataclasses.replace(r, owner=self.state.namespaces[r.namespace].owner)
            if r.namespace != HOST and r.protocol == RTPROT_NKPLAN
            else r
            for r in snap.rules
        ]
        if net_keys:
            every = {reference_key(k) for keys in net_keys.values() for k in keys}
            snap.kernel = dataclasses.replace(snap.kernel, host_net_keys=tuple(sorted(every - self.missing_sysctls)))
        return snap

    def set_sysctls(self, before: SysctlsRec | None, after: SysctlsRec) -> None:
        self._enter("set_sysctls", after)
        ns = after.namespace
        if ns != HOST and ns not in self.state.namespaces:
            raise KernelError(f"setting sysctls in namespace {ns!r}: it does not exist")
        for key, _ in after.values:
            if key in self.missing_sysctls:
                raise KernelError(f"setting {key} in {ns_label(ns)}: this kernel has no such sysctl")
        held = self.state.sysctls.get(ns, SysctlsRec(ns))
        values = Sysctls(sorted({**dict(held.values), **dict(after.values)}.items()))
        self.state.sysctls[ns] = SysctlsRec(ns, values, after.owner, after.applied)

    def check_privileges(self) -> None:
        return None

    def probe(self, probes: Sequence[Probe]) -> list[Outcome]:
        """Every probe reaches its address, unless `unreachable` holds its (namespace, to, port);
        a probe from a namespace the fake kernel lacks cannot run."""
        self.calls.append("probe")
        out = []
        for p in probes:
            if p.namespace != HOST and p.namespace not in self.state.namespaces:
                out.append(Outcome(None, f"namespace {p.namespace!r} does not exist"))
            elif (p.namespace, p.to, p.port) in self.unreachable:
                out.append(Outcome(False, f"no answer within {p.timeout:g} s"))
            else:
                out.append(Outcome(True, "connected in 1 ms" if p.port is not None else "echo reply in 1 ms"))
        return out

    def create_namespace(self, name: str, owner: str) -> None:
        self._enter("create_namespace", name)
        if name in self.state.namespaces:
            raise KernelError(f"creating namespace {name!r}: it already exists")
        self.state.namespaces[name] = NamespaceRec(name, owner)
        self.state.devices[(name, "lo")] = DeviceInfo(name, "lo", "", 1, owner, "ns")
        self._next_cookie = max(self._next_cookie, *self.state.netns_cookies.values()) + 1  # never reused
        self.state.netns_cookies[name] = self._next_cookie

    def delete_namespace(self, name: str) -> None:
        self._enter("delete_namespace", name)
        if name not in self.state.namespaces:
            raise KernelError(f"deleting namespace {name!r}: no such namespace")
        del self.state.namespaces[name]
        self.state.netns_cookies.pop(name, None)
        for key, link in list(self.state.links.items()):
            if name in {end.namespace for end in link.ends}:
                self._drop_link(key)
        self.state.devices = {k: v for k, v in self.state.devices.items() if k[0] != name}
        self.state.routes = [r for r in self.state.routes if r.namespace != name]
        self.state.sysctls.pop(name, None)  # a namespace's sysctls go with it
        self.state.rules = [r for r in self.state.rules if r.namespace != name]

    def set_namespace_owner(self, name: str, owner: str | None) -> None:
        self._enter("set_namespace_owner", name)
        self.state.namespaces[name] = NamespaceRec(name, owner)

    def create_link(self, link: LinkRec) -> None:
        self._enter("create_link", link)
        if link.kind == "netkit" and not self.state.kernel.netkit:
            raise KernelError(
                f"creating netkit pair {link.primary.name!r}: this kernel has no netkit support (CONFIG_NETKIT)"
            )
        for ns, name in self._devices_of(link):
            if ns != HOST and ns not in self.state.namespaces:
                raise KernelError(f"creating {link.primary.name!r}: namespace {ns!r} does not exist")
            if (ns, name) in self.state.devices:
                raise KernelError(f"creating {link.primary.name!r}: device {name!r} already exists in {ns_label(ns)}")
        if link.pairing == "single":
            self._check_single(link)
        self._check_sysctls(link)
        live = link
        for side in ("primary", "peer"):
            end = getattr(live, side)
            if end is None:
                continue
            if end.mac is None and not (link.kind == "netkit" and link.mode == "l3"):
                live = dataclasses.replace(
                    live, **{side: dataclasses.replace(end, mac=f"02:fa:ce:00:00:{self._ifindex() % 256:02x}")}
                )
        self.state.links[(link.primary.namespace, link.primary.name)] = live
        # strict=False: a single netkit device has a primary only
        for role, (ns, name) in zip(("primary", "peer"), self._devices_of(link), strict=False):
            self.state.devices[(ns, name)] = DeviceInfo(ns, name, link.kind, self._ifindex(), link.owner, role)  # type: ignore[arg-type]

    def _check_single(self, link: LinkRec) -> None:
        """As the real kernel and nkplan's read-back (kernel/netlink/links.py): a kernel without
        single mode makes a pair, which is found out and removed; one with it refuses what
        belongs to a peer or to the pair's policy (EOPNOTSUPP)."""
        name = link.primary.name
        if not self.state.kernel.netkit_single:
            raise KernelError(
                f"creating netkit device {name!r} (pairing single): this kernel (fake) made a pair "
                "instead (it has no single-device mode, Linux 7.1); removed it"
            )
        if link.peer is not None or link.primary.policy != "forward" or link.primary.scrub is not None:
            raise KernelError(
                f"creating netkit device {name!r} (pairing single): the kernel refused it "
                "(a single netkit device takes no peer, no scrub and no policy but forward)"
            )

    def delete_link(self, link: LinkRec) -> None:
        self._enter("delete_link", link)
        key = (link.primary.namespace, link.primary.name)
        if key not in self.state.links:
            raise KernelError(f"deleting {link.primary.name!r}: no such device in {ns_label(key[0])}")
        self._drop_link(key)

    def delete_links(self, links: Sequence[LinkRec]) -> None:
        self._enter("delete_links", links)
        keys = [(link.primary.namespace, link.primary.name) for link in links]
        missing = [k for k in keys if k not in self.state.links]
        if missing:
            raise KernelError(f"deleting {missing[0][1]!r}: no such device in {ns_label(missing[0][0])}")
        for key in keys:
            self._drop_link(key)

    def update_link(self, before: LinkRec, after: LinkRec) -> None:
        self._enter("update_link", after)
        key = (after.primary.namespace, after.primary.name)
        if key not in self.state.links:
            raise KernelError(f"updating {after.primary.name!r}: no such device")
        live = self.state.links[key]
        if live.kind != after.kind or self._devices_of(live) != self._devices_of(after):
            # as kernel/netlink/links.update_link: that needs a replacement, never an update
            raise InternalError(
                f"update of {after.primary.name} asks to change its kind, names or namespaces: that needs a replacement"
            )
        if after.pairing == "single" and after.primary.policy != live.primary.policy:
            raise KernelError(  # the kernel refuses every policy change of a single device
                f"changing policy of netkit device {after.primary.name}: the kernel refused it (not supported)"
            )
        for path in kind_of(after.kind).created_only:
            want, had = value_at(after, path), value_at(live, path)
            if want is not None and want != had:  # the kernel's own refusal (EACCES)
                what = path_label(path)
                raise KernelError(
                    f"changing {what} of netkit pair {after.primary.name}: netkit {what} cannot be changed "
                    "after device creation (permission denied)"
                )
        self._check_sysctls(after)
        # undeclared keys keep their values, as in the kernel
        merged = {}
        for side in ("primary", "peer"):
            had_end, end = getattr(live, side), getattr(after, side)
            if end is None or had_end is None:
                continue
            values = {**dict(had_end.sysctls), **dict(end.sysctls)}
            merged[side] = dataclasses.replace(end, sysctls=Sysctls(sorted(values.items())))
        self.state.links[key] = dataclasses.replace(after, **merged)
        for role, dkey in zip(("primary", "peer"), self._devices_of(after), strict=False):
            dev = self.state.devices[dkey]
            self.state.devices[dkey] = dataclasses.replace(dev, owner=after.owner, role=role)  # type: ignore[arg-type]

    def _check_sysctls(self, link: LinkRec) -> None:
        for end in link.ends:
            for key, _ in end.sysctls:
                if key in self.missing_sysctls:  # as the kernel: no such file in /proc/sys
                    raise KernelError(f"setting {proc_path(key, end.name)}: this kernel has no such sysctl")

    def _route_dev_exists(self, route: RouteRec) -> None:
        for dev in route.devices():
            if (route.namespace, dev) not in self.state.devices:
                raise KernelError(
                    f"adding route to {route.to}: device {dev!r} not found in {ns_label(route.namespace)}"
                )

    def add_route(self, route: RouteRec) -> None:
        self._enter("add_route", route)
        self._route_dev_exists(route)
        if any(r.key == route.key for r in self.state.routes):
            raise KernelError(f"adding route to {route.to}: it already exists")
        self.state.routes.append(route)

    def delete_route(self, route: RouteRec) -> None:
        self._enter("delete_route", route)
        kept = [r for r in self.state.routes if r.key != route.key]
        if len(kept) == len(self.state.routes):
            raise KernelError(f"deleting route to {route.to}: no such route")
        self.state.routes = kept

    def replace_route(self, before: RouteRec, after: RouteRec) -> None:
        self._enter("replace_route", after)
        self._route_dev_exists(after)
        self.state.routes = [r for r in self.state.routes if r.key != before.key] + [after]

    @staticmethod
    def _same_rule(a: RuleRec, b: RuleRec) -> bool:
        """As the kernel matches a rule to delete: every attribute (protocol too), not who owns it."""
        return dataclasses.replace(a, owner=None) == dataclasses.replace(b, owner=None)

    def add_rule(self, rule: RuleRec) -> None:
        self._enter("add_rule", rule)
        if rule.namespace != HOST and rule.namespace not in self.state.namespaces:
            raise KernelError(f"adding rule {rule.priority} in namespace {rule.namespace!r}: it does not exist")
        if rule.stale:  # a rollback of a stale marker's removal: the marker only
            self.state.rules.append(rule)
            return
        if any(not r.stale and self._same_rule(r, rule) for r in self.state.rules):
            where = ns_label(rule.namespace)
            raise KernelError(f"adding rule {rule.priority} in {where}: an identical rule already exists")
        self.state.rules.append(rule if rule.namespace == HOST else dataclasses.replace(rule, applied=None))

    def delete_rule(self, rule: RuleRec) -> None:
        self._enter("delete_rule", rule)
        for i, r in enumerate(self.state.rules):
            if r.stale == rule.stale and self._same_rule(r, rule):
                del self.state.rules[i]
                return
        raise KernelError(f"deleting rule {rule.priority} in {ns_label(rule.namespace)}: no such rule")

    def set_rule_owner(self, before: RuleRec, after: RuleRec) -> None:
        self._enter("set_rule_owner", after)
        if after.namespace != HOST:
            return
        for i, r in enumerate(self.state.rules):
            if not r.stale and self._same_rule(r, before):
                self.state.rules[i] = dataclasses.replace(r, owner=after.owner, applied=after.applied)
                return
        raise KernelError(f"marking rule {after.priority} in the host namespace: no such rule")

    def set_programs(self, before: HookRec | None, after: HookRec | None, session: ApplySession | None = None) -> None:
        self._enter("set_programs", after or before)
        rec = after or before
        assert rec is not None
        if (rec.namespace, rec.device) not in self.state.devices:
            raise KernelError(f"attaching programs at {rec.hook} of {rec.device!r}: no such device")
        key = (rec.namespace, rec.device, rec.hook)
        if after is None or not after.programs:
            self.state.hooks.pop(key, None)
        else:  # as the hook's marker: the programs others attached are acknowledged
            # and, as the real writer, instance digests from the named devices' ifindexes of now
            placed = with_live_devices(after, self.state)
            self.state.hooks[key] = dataclasses.replace(placed, foreign=self._foreign_at(key))

    def delete_programs(self, befores: Sequence[HookRec], session: ApplySession | None = None) -> None:
        for rec in befores:  # all or nothing: every refusal before any change
            self._enter("set_programs", rec)
            if (rec.namespace, rec.device) not in self.state.devices:
                raise KernelError(f"detaching programs at {rec.hook} of {rec.device!r}: no such device")
        for rec in befores:
            self.state.hooks.pop((rec.namespace, rec.device, rec.hook), None)

    def _foreign_at(self, key: tuple[str, str, str]) -> tuple[str, ...]:
        found = [(f.prog_id, f.name) for f in self.state.foreign_programs if (f.namespace, f.device, f.hook) == key]
        return tuple(f"{name} (id {pid})" for pid, name in sorted(found))

    def create_shared_map(self, rec: SharedMapRec) -> None:
        self._enter("create_shared_map", rec)
        assert rec.owner
        self.state.shared_maps[(rec.owner, rec.name)] = rec

    def delete_shared_map(self, rec: SharedMapRec) -> None:
        self._enter("delete_shared_map", rec)
        assert rec.owner
        self.state.shared_maps.pop((rec.owner, rec.name), None)

    def remove_orphan_pin(self, rec: OrphanPin) -> None:
        self._enter("remove_orphan_pin", rec)
        self.state.orphan_pins = [p for p in self.state.orphan_pins if p != rec]

    def bpf_problems(self) -> list[str]:
        return []
