"""Pure planner: (Desired, LiveState) → Plan. No I/O. Every resource type (core/resources) pairs
its declared and live records; one `choose_action()` decides per resource; ordering comes from
an explicit dependency graph (tokens a record needs → the records providing them); ties break by
source order, so plans are deterministic. Nothing here names a resource type."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from graphlib import TopologicalSorter
from typing import Any

from nkplan.core.desired import Desired
from nkplan.core.plan import Change, Decision, Operation, Plan
from nkplan.core.records import LiveState
from nkplan.core.resources import REGISTRY, Claims, ResourceType, type_of
from nkplan.core.resources.base import Token, changed_paths
from nkplan.errors import PlanError

Locate = Callable[[tuple[str | int, ...]], str]


# the decisions without details, made for most resources of a plan: shared (Decision is frozen)
_CREATE = Decision("create")
_NO_OP = Decision("no-op")
_DELETE = Decision("delete", reason="not declared in the spec", action_reason="delete_because_no_resource_config")


def choose_action(want: Any | None, have: Any | None) -> Decision:
    """Terraform's rule: absent → create; undeclared → delete; equal → no-op; a field that cannot
    change in place changed → replace; otherwise update."""
    if want is None or have is None:
        return _DELETE if want is None else _CREATE
    rtype = type_of(want)
    return _compare(rtype, rtype.fill_unspecified(want, have), have)


def _compare(rtype: ResourceType[Any], want: Any, have: Any) -> Decision:
    """choose_action of a declared record (unspecified values filled in) and its live one."""
    if want == have:
        return _NO_OP
    paths = changed_paths(have, want)
    forced = rtype.replace_reasons(have, want, paths)
    if forced:
        fixed = tuple(p for p in paths if p in forced)
        return Decision(
            "replace", paths, fixed, "; ".join(forced[p] for p in fixed), action_reason="replace_because_cannot_update"
        )
    return Decision("update", paths, (), rtype.describe_update(have, want))


@dataclass
class _Item:
    rtype: ResourceType[Any]
    want: Any | None
    have: Any | None
    order: tuple[Any, ...]
    # `want` with what it leaves to the kernel taken from `have` (fill_unspecified), when both
    # are there: what is compared, updated to and checked for drift, made once
    filled: Any | None = None

    def decide(self) -> Decision:
        if self.want is None or self.have is None:
            return _DELETE if self.want is None else _CREATE
        return _compare(self.rtype, self.filled, self.have)


class _Graph:
    """Which of a set of records provide which tokens (linear in the records): the records a
    record depends on are the providers of the tokens it needs."""

    def __init__(self, items: dict[str, _Item], recs: dict[str, Any]) -> None:
        self.items = items
        self.providers: dict[Token, list[str]] = defaultdict(list)
        for addr, rec in recs.items():
            for token in items[addr].rtype.provides(rec):
                self.providers[token].append(addr)

    def referred(self, addr: str, rec: Any) -> list[str]:
        """Why the record must change with the providers it refers to (Need.refers)."""
        return [
            need.refers
            for need in self.items[addr].rtype.needs(rec)
            if need.refers and set(self.providers.get(need.token, ())) - {addr}
        ]

    def deps(self, addr: str, rec: Any, lives_on_only: bool = False) -> set[str]:
        out: set[str] = set()
        for need in self.items[addr].rtype.needs(rec):
            if need.lives_on or not lives_on_only:
                out.update(self.providers.get(need.token, ()))
        out.discard(addr)
        return out


def _ordered(items: dict[str, _Item], recs: dict[str, Any]) -> list[str]:
    """Creation order of `recs` by dependency, in rounds: first every record that depends on
    none of the others, then every one whose dependencies were all in earlier rounds, and so
    on; within a round by source order. Unknown deps are ignored. (graphlib's TopologicalSorter
    handing out get_ready() rounds, without its cost: linear in the records and their deps.)"""
    graph = _Graph(items, recs)
    deps = {a: graph.deps(a, r) for a, r in recs.items()}
    waiting = {a: len(d) for a, d in deps.items()}
    users: dict[str, list[str]] = defaultdict(list)
    for addr, needed in deps.items():
        for dep in needed:
            users[dep].append(addr)
    out: list[str] = []
    ready = [a for a, n in waiting.items() if not n]
    while ready:
        ready.sort(key=lambda a: items[a].order)
        out.extend(ready)
        after = []
        for addr in ready:
            for user in users.get(addr, ()):
                waiting[user] -= 1
                if not waiting[user]:
                    after.append(user)
        ready = after
    if len(out) < len(deps):  # a cycle: graphlib's CycleError names it
        TopologicalSorter(deps).prepare()
    return out


class _Planner:
    def __init__(self, want: Desired, live: LiveState, adopt: bool, locate: Locate) -> None:
        self.stack = want.stack
        self.claims = Claims(want.stack, want, live, adopt, locate)
        self.items: dict[str, _Item] = {}

    def build(self) -> Plan:
        for tier, rtype in enumerate(REGISTRY):
            self.claims.tier = tier
            self.claims.pairs = []
            rtype.claim(self.claims)
            for want, have, order in self.claims.pairs:
                if want is not None and have is not None:
                    have = rtype.view(want, have)
                rec = want if want is not None else have
                filled = rtype.fill_unspecified(want, have) if want is not None and have is not None else None
                self.items[rtype.address(rec)] = _Item(rtype, want, have, order, filled)
        if self.claims.problems:
            raise PlanError(self.claims.problems)
        return self.assemble()

    def assemble(self) -> Plan:
        decided = {addr: item.decide() for addr, item in self.items.items()}
        self._cascade(decided)
        deleted = {a: self.items[a].have for a, d in decided.items() if d.action in ("delete", "replace")}
        created = {a: self.items[a].want for a, d in decided.items() if d.action in ("create", "replace", "update")}
        ops: list[Operation] = []
        for addr in reversed(_ordered(self.items, {a: r for a, r in deleted.items() if r is not None})):
            ops.append(self._op("delete", addr))
        for addr in _ordered(self.items, {a: r for a, r in created.items() if r is not None}):
            ops.append(self._op("update" if decided[addr].action == "update" else "create", addr))
        first: dict[str, int] = {}
        for idx, op in enumerate(ops):
            first.setdefault(op.address, idx)
        changes = [
            Change(addr, self.items[addr].rtype.name, decided[addr], self.items[addr].have, self.items[addr].want)
            for addr in sorted(self.items, key=lambda a: (first.get(a, len(ops)), self.items[a].order))
        ]
        claims = self.claims
        return Plan(self.stack, tuple(changes), tuple(ops), tuple(claims.warnings), drift=self._drift())

    def _drift(self) -> tuple[Change, ...]:
        """Owned objects whose declaration is unchanged since the last apply but whose live
        attributes differ: someone changed them outside nkplan."""
        out = []
        for addr, item in sorted(self.items.items(), key=lambda kv: kv[1].order):
            if item.want is None and item.have is not None:
                why = item.rtype.orphan(item.have)
                if why is not None:  # as last applied: absent; now: there
                    decision = Decision("create", (), (), why, "changed_outside_nkplan")
                    out.append(Change(addr, item.rtype.name, decision, None, item.have))
                continue
            if item.want is None or item.have is None:
                continue
            applied = item.rtype.drift(item.filled, item.have, self.claims.ours(getattr(item.have, "owner", None)))
            if applied is None:
                continue
            now = item.rtype.drift_now(item.have)
            paths = changed_paths(applied, now)
            words = item.rtype.describe_drift(applied, now)
            why = f"changed outside nkplan: {words}" if words else "changed outside nkplan"
            decision = Decision("update", paths, (), why, "changed_outside_nkplan")
            out.append(Change(addr, item.rtype.name, decision, applied, now))
        return tuple(out)

    def _cascade(self, decided: dict[str, Decision]) -> None:
        """What lives on a device (routes, programs) is replaced when the device is, and also
        when the record holding the device is deleted while another one makes the device again
        (a pair whose primary moves to another namespace has another address: delete + create,
        and its peer, still at the same place, loses what lived on it); what refers to it (a
        program value holding its ifindex) is updated with it."""
        replaced = {a: self.items[a].want for a, d in decided.items() if d.action == "replace"}
        gone = {a: self.items[a].have for a, d in decided.items() if d.action in ("replace", "delete")}
        if not replaced and not gone:
            return
        # a deleted record counts only where another record makes what it provided again (a
        # device made again elsewhere): a token that is simply gone (a shared map removed from
        # the spec) leaves what lived on it to be updated, not replaced
        made = {a: self.items[a].want for a, d in decided.items() if d.action in ("create", "replace")}
        again = set(_Graph(self.items, made).providers)
        gone_graph = _Graph(self.items, gone)
        gone_graph.providers = defaultdict(list, {t: a for t, a in gone_graph.providers.items() if t in again})
        graphs = (_Graph(self.items, replaced), gone_graph)
        for addr, item in self.items.items():
            if item.want is None or item.have is None or decided[addr].action not in ("no-op", "update"):
                continue
            hit = set().union(*(g.deps(addr, item.want, lives_on_only=True) for g in graphs))
            if hit:
                first = sorted(hit)[0]
                how = "replaced" if decided[first].action == "replace" else "deleted (and made again elsewhere)"
                decided[addr] = Decision(
                    "replace",
                    decided[addr].changed_paths,
                    (),
                    f"its device {first} is {how}",
                    action_reason="replace_because_dependency_replaced",
                )
                continue
            why = graphs[0].referred(addr, item.want)  # a device replaced: its new ifindex
            if why:
                was = decided[addr]
                decided[addr] = Decision(
                    "update",
                    was.changed_paths,
                    (),
                    "; ".join([*why, *([was.reason] if was.reason else [])]),
                    action_reason=was.action_reason,
                )

    def _op(self, kind: str, addr: str) -> Operation:
        item = self.items[addr]
        name = item.rtype.name
        if kind == "delete":
            return Operation("delete", addr, name, item.have, None)
        if kind == "create":
            return Operation("create", addr, name, None, item.want)
        assert item.filled is not None and item.have is not None
        return Operation("update", addr, name, item.have, item.filled)


def make_plan(want: Desired, live: LiveState, *, adopt: bool = False, locate: Locate | None = None) -> Plan:
    return _Planner(want, live, adopt, locate or (lambda p: ".".join(map(str, p)))).build()

