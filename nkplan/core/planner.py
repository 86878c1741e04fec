"""Pure planner: (Desired, LiveState) → Plan. No I/O. One `choose_action()` decides per resource;
ordering comes from an explicit dependency graph; ties break by source order so plans are
deterministic."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from graphlib import TopologicalSorter
from typing import Any

from nkplan.core.desired import Desired
from nkplan.core.diff import changed_paths
from nkplan.core.plan import Action, Change, Operation, Plan, Record, address_of, attrs, to_dict, type_of
from nkplan.core.records import HookRec, LinkRec, LiveState, NamespaceRec, ProgramRec, RouteRec, ns_label
from nkplan.errors import PlanError

Locate = Callable[[tuple[str | int, ...]], str]

# Attributes the kernel refuses to change on an existing device (NETKIT-FACTS.md): changing one
# means delete and recreate. Values are the reason shown to the reviewer.
IMMUTABLE_LINK = {
    "kind": "kind cannot change in place",
    "mode": "mode cannot change in place",
    "headroom": "headroom cannot change in place",
    "tailroom": "tailroom cannot change in place",
    "primary.scrub": "scrub cannot change in place",
    "peer.scrub": "peer scrub cannot change in place",
    "peer.name": "the peer's name cannot change in place",
    "peer.namespace": "the peer cannot move to another namespace in place",
    "primary.mac": "an L3 netkit device has no settable MAC",
    "peer.mac": "an L3 netkit device has no settable MAC",
}


def _fill_unspecified(want: Record, have: Record) -> Record:
    """Desired None means "whatever the kernel chose" for mac, head/tailroom and route dev."""
    if isinstance(want, LinkRec) and isinstance(have, LinkRec):
        ends = {}
        for side in ("primary", "peer"):
            w, h = getattr(want, side), getattr(have, side)
            ends[side] = dataclasses.replace(w, mac=h.mac) if w.mac is None else w
        return dataclasses.replace(
            want,
            headroom=have.headroom if want.headroom is None else want.headroom,
            tailroom=have.tailroom if want.tailroom is None else want.tailroom,
            **ends,
        )
    if isinstance(want, RouteRec) and isinstance(have, RouteRec) and want.dev is None:
        return dataclasses.replace(want, dev=have.dev)
    return want


def choose_action(
    want: Record | None, have: Record | None
) -> tuple[Action, tuple[str, ...], tuple[str, ...], str | None]:
    """(action, changed paths, paths forcing replacement, reason)."""
    if want is None:
        return "delete", (), (), "not declared in the spec"
    if have is None:
        return "create", (), (), None
    want = _fill_unspecified(want, have)
    if want == have:
        return "no-op", (), (), None
    paths = changed_paths(attrs(have), attrs(want))
    if isinstance(want, HookRec) and isinstance(have, HookRec):
        return "update", paths, (), describe_programs(have, want)
    if isinstance(want, LinkRec):
        forced = tuple(p for p in paths if p in IMMUTABLE_LINK)
        if forced:
            return "replace", paths, forced, "; ".join(IMMUTABLE_LINK[p] for p in forced)
    return "update", paths, (), None


def _what_maps_do(old: ProgramRec, new: ProgramRec) -> str:
    """Which of the new object's maps the new instance takes over from the running one (same
    name and definition: the applier's rule, libbpf's for pinned maps) and which start empty.
    Said only when both sides' maps are known (read from a kernel, not from a snapshot)."""
    if not old.maps or not new.maps:
        return "object changed"
    names = [m.name for m in old.maps]
    running = {m.name: m for m in old.maps if names.count(m.name) == 1}
    kept = [m.name for m in new.maps if running.get(m.name) == m]
    fresh = [m.name for m in new.maps if running.get(m.name) != m]
    words = ["object changed"]
    if kept:
        words.append("maps kept: " + ", ".join(kept))
    if fresh:
        words.append("maps starting empty: " + ", ".join(fresh))
    return "; ".join(words)


def describe_programs(have: HookRec, want: HookRec) -> str:
    """What an update of a hook does, in words: attach, detach, update in place, reorder."""
    old = {p.program: p for p in have.programs}
    new = {p.program: p for p in want.programs}
    words = [f"attach {n}" for n in new if n not in old]
    words += [f"detach {n}" for n in old if n not in new]
    words += [
        f"update {n} in place ({_what_maps_do(old[n], new[n])})"
        for n in new
        if n in old and new[n].digest != old[n].digest
    ]
    words += [f"pin maps of {n}" for n in new if n in old and new[n].pin_maps != old[n].pin_maps]
    kept_old = [n for n in old if n in new]
    kept_new = [n for n in new if n in old]
    if kept_old != kept_new:
        words.append("reorder: " + ", ".join(kept_new))
    return "; ".join(words) or "re-attach"


@dataclasses.dataclass
class _Item:
    want: Record | None
    have: Record | None
    order: tuple[int, str]

    @property
    def any(self) -> Record:
        rec = self.want if self.want is not None else self.have
        assert rec is not None
        return rec


def _deps(rec: Record, links: dict[str, LinkRec]) -> set[str]:
    """Addresses a record needs to exist first."""
    if isinstance(rec, NamespaceRec):
        return set()
    if isinstance(rec, LinkRec):
        return {f"namespace[{end.namespace}]" for end in (rec.primary, rec.peer) if end.namespace}
    out = {f"namespace[{rec.namespace}]"} if rec.namespace else set()
    if isinstance(rec, HookRec):  # programs sit on a device of a pair
        for addr, link in links.items():
            if any((e.namespace, e.name) == (rec.namespace, rec.device) for e in (link.primary, link.peer)):
                out.add(addr)
        return out
    for addr, link in links.items():
        for end in (link.primary, link.peer):
            if end.namespace == rec.namespace and (rec.dev is None or end.name == rec.dev):
                out.add(addr)
    return out


def _ordered(items: dict[str, _Item], recs: dict[str, Record]) -> list[str]:
    """Creation order of `recs` by dependency; ties by source order. Unknown deps are ignored."""
    links = {a: r for a, r in recs.items() if isinstance(r, LinkRec)}
    graph = TopologicalSorter({a: _deps(r, links) & recs.keys() for a, r in recs.items()})
    graph.prepare()
    out: list[str] = []
    while graph.is_active():
        ready = sorted(graph.get_ready(), key=lambda a: items[a].order)
        out.extend(ready)
        graph.done(*ready)
    return out


class _Planner:
    def __init__(self, want: Desired, live: LiveState, adopt: bool, locate: Locate) -> None:
        self.want, self.live, self.adopt, self.locate = want, live, adopt, locate
        self.stack = want.stack
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.items: dict[str, _Item] = {}

    def ours(self, owner: str | None) -> bool:
        return owner == self.stack

    def foreign(self, what: str, owner: str | None, path: tuple[str | int, ...]) -> bool:
        """Report a declared object that exists but is not ours; True if it blocks the plan."""
        if self.adopt:
            return False
        who = f"owned by stack {owner!r}" if owner else "not managed by nkplan (made by hand?)"
        self.problems.append(
            f"{self.locate(path)}: {what} already exists and is {who}; "
            f"nkplan will not touch it (use --adopt to take it over)"
        )
        return True

    def add(self, want: Record | None, have: Record | None, order: tuple[int, str]) -> None:
        rec = want if want is not None else have
        assert rec is not None
        self.items[address_of(rec)] = _Item(want, have, order)

    def namespaces(self) -> None:
        for i, (name, (rec, path)) in enumerate(self.want.namespaces.items()):
            have = self.live.namespaces.get(name)
            if have is not None and not self.ours(have.owner):
                if self.foreign(f"namespace {name!r}", have.owner, (*path, "name")):
                    continue
            self.add(rec, have, (i, ""))
        for name, have in self.live.namespaces.items():
            if self.ours(have.owner) and name not in self.want.namespaces:
                self.add(None, have, (1 << 30, name))

    def links(self) -> None:
        base = len(self.want.namespaces)
        for i, (key, (rec, path)) in enumerate(self.want.links.items()):
            have = self.live.links.get(key)
            blocked = False
            for end, epath in ((rec.primary, path), (rec.peer, (*path, "peer"))):
                dev = self.live.devices.get((end.namespace, end.name))
                if dev is None or self.ours(dev.owner):
                    continue
                what = f"device {end.name!r} in {ns_label(end.namespace)}"
                if self.foreign(what, dev.owner, (*epath, "name")):
                    blocked = True
                elif have is None or (have.peer.namespace, have.peer.name) != (rec.peer.namespace, rec.peer.name):
                    self.problems.append(
                        f"{self.locate((*epath, 'name'))}: {what} exists but is not the "
                        f"{rec.kind} pair declared here ({dev.kind or 'device'}); cannot adopt it"
                    )
                    blocked = True
            if blocked:
                continue
            if have is not None and not self.ours(have.owner) and not self.adopt:
                have = None  # half-owned pair: handled by the device checks above
            self.add(rec, have, (base + i, ""))
        for key, have in self.live.links.items():
            if self.ours(have.owner) and key not in self.want.links:
                self.add(None, have, (1 << 30, address_of(have)))

    def routes(self) -> None:
        base = len(self.want.namespaces) + len(self.want.links)
        owned_ns = {n for n, r in self.live.namespaces.items() if self.ours(r.owner)}
        live_routes = {
            (r.namespace, r.to, r.metric): r
            for r in self.live.routes
            if self.ours(r.owner) or (r.namespace and r.namespace in owned_ns)
        }
        for i, (key, (rec, _path)) in enumerate(self.want.routes.items()):
            self.add(rec, live_routes.get(key), (base + i, ""))
        for key, have in live_routes.items():
            if key not in self.want.routes:
                self.add(None, have, (1 << 30, address_of(have)))

    def hooks(self) -> None:
        base = len(self.want.namespaces) + len(self.want.links) + len(self.want.routes)
        for i, (key, (rec, _path)) in enumerate(self.want.hooks.items()):
            have = self.live.hooks.get(key)
            self.add(rec, have if have is not None and self.ours(have.owner) else None, (base + i, ""))
        for key, have in self.live.hooks.items():
            if self.ours(have.owner) and key not in self.want.hooks and have.programs:
                self.add(None, have, (1 << 30, address_of(have)))
        owned = {(d.namespace, d.name) for d in self.live.devices.values() if self.ours(d.owner)}
        for f in self.live.foreign_programs:
            if (f.namespace, f.device) in owned:
                where = address_of(HookRec(f.namespace, f.device, f.hook))
                self.warnings.append(
                    f"{where}: program {f.name!r} (id {f.prog_id}) was attached by someone else; nkplan leaves it alone"
                )

    def build(self) -> Plan:
        self.namespaces()
        self.links()
        self.routes()
        self.hooks()
        if self.problems:
            raise PlanError(self.problems)
        return self.assemble()

    def assemble(self) -> Plan:
        decided: dict[str, tuple[Action, tuple[str, ...], tuple[str, ...], str | None]] = {}
        for addr, item in self.items.items():
            decided[addr] = choose_action(item.want, item.have)
        self._cascade(decided)
        deleted = {a: self.items[a].have for a, d in decided.items() if d[0] in ("delete", "replace")}
        created = {a: self.items[a].want for a, d in decided.items() if d[0] in ("create", "replace", "update")}
        ops: list[Operation] = []
        for addr in reversed(_ordered(self.items, {a: r for a, r in deleted.items() if r is not None})):
            ops.append(self._op("delete", addr))
        for addr in _ordered(self.items, {a: r for a, r in created.items() if r is not None}):
            ops.append(self._op("update" if decided[addr][0] == "update" else "create", addr))
        first: dict[str, int] = {}
        for idx, op in enumerate(ops):
            first.setdefault(op.address, idx)
        changes = []
        for addr in sorted(self.items, key=lambda a: (first.get(a, len(ops)), self.items[a].order)):
            item = self.items[addr]
            action, paths, forced, reason = decided[addr]
            changes.append(
                Change(
                    address=addr,
                    type=type_of(item.any),
                    action=action,
                    before=attrs(item.have) if item.have is not None else None,
                    after=attrs(item.want) if item.want is not None else None,
                    changed_paths=paths,
                    replace_paths=forced,
                    reason=reason,
                )
            )
        return Plan(self.stack, tuple(changes), tuple(ops), tuple(self.warnings), drift=self._drift())

    def _drift(self) -> tuple[Change, ...]:
        """Owned pairs whose spec is unchanged since the last apply (same digest in the ownership
        mark) but whose live attributes differ: someone changed them outside nkplan."""
        out = []
        for addr, item in sorted(self.items.items(), key=lambda kv: kv[1].order):
            want, have = item.want, item.have
            if not isinstance(want, LinkRec) or not isinstance(have, LinkRec) or not self.ours(have.owner):
                continue
            if have.applied is None or have.applied != want.applied:
                continue
            applied = _fill_unspecified(want, have)
            if applied == have:
                continue
            paths = changed_paths(attrs(applied), attrs(have))
            out.append(Change(addr, "link", "update", attrs(applied), attrs(have), paths, (), "changed outside nkplan"))
        return tuple(out)

    def _cascade(self, decided: dict[str, tuple[Action, tuple[str, ...], tuple[str, ...], str | None]]) -> None:
        """Routes and programs live on their device: when the device is replaced, they are too."""
        replaced = {a: self.items[a].want for a, d in decided.items() if d[0] == "replace"}
        links = {a: r for a, r in replaced.items() if isinstance(r, LinkRec)}
        for addr, item in self.items.items():
            if not isinstance(item.want, RouteRec | HookRec) or item.have is None:
                continue
            if decided[addr][0] in ("no-op", "update"):
                hit = _deps(item.want, links) & links.keys()
                if hit:
                    decided[addr] = ("replace", decided[addr][1], (), f"its device {sorted(hit)[0]} is replaced")

    def _op(self, kind: str, addr: str) -> Operation:
        item = self.items[addr]
        before = to_dict(item.have) if item.have is not None else None
        after: dict[str, Any] | None = to_dict(item.want) if item.want is not None else None
        if kind == "delete":
            return Operation("delete", addr, type_of(item.any), before, None)
        if kind == "create":
            return Operation("create", addr, type_of(item.any), None, after)
        want = item.want
        assert want is not None and item.have is not None
        return Operation("update", addr, type_of(item.any), before, to_dict(_fill_unspecified(want, item.have)))


def make_plan(want: Desired, live: LiveState, *, adopt: bool = False, locate: Locate | None = None) -> Plan:
    return _Planner(want, live, adopt, locate or (lambda p: ".".join(map(str, p)))).build()
