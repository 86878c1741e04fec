"""What a resource type is. Every kind of object nkplan manages is one subclass of ResourceType in
a module of its own (namespace.py, link.py, route.py, hook.py), listed once in REGISTRY
(__init__.py). The planner, the applier, the renderers, snapshots and saved plans iterate over
the registry; none of them names a type.

A type declares: its record (core/records.py) and how the record is addressed and identified;
which fields change in place and which force a replace, with the reason in words; what it
depends on, for ordering (as tokens another type provides: see `Need`); and how declared and
live records are paired (`claim`: ownership, collisions, adoption). How the kernel reads and
writes it lives under nkplan/kernel and is registered there (kernel/linux.py, kernel/fake.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from nkplan.core.records import plain

if TYPE_CHECKING:
    from nkplan.core.desired import Desired
    from nkplan.core.records import LiveState

R = TypeVar("R")
Path = tuple[str | int, ...]
Locate = Callable[[Path], str]
Token = tuple[Hashable, ...]  # something one record provides and another needs, e.g. ("device", ns, name)


@dataclass(frozen=True)
class Need:
    """A dependency: the records providing `token` must exist first (and go last). `lives_on`:
    the record sits on what provides it (a route on its device), so when that is replaced,
    this record is replaced with it."""

    token: Token
    lives_on: bool = False
    # the record's values name what provides it (a program's global holds a device's ifindex):
    # when that is replaced, this record is updated with it (core/planner.py's cascade), and
    # this says why ("ifindex of nk-a changes: device replaced")
    refers: str = ""


@dataclass
class Claims:
    """The planner's side of `ResourceType.claim`: what a type reports while pairing declared
    with live records."""

    stack: str
    want: Desired
    live: LiveState
    adopt: bool
    locate: Locate
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pairs: list[tuple[Any, Any, tuple[Any, ...]]] = field(default_factory=list)  # (want, have, order)
    tier: int = 0

    def ours(self, owner: str | None) -> bool:
        return owner == self.stack

    def foreign(self, what: str, owner: str | None, path: Path) -> bool:
        """Report a declared object that exists but is not ours; True if it blocks the plan."""
        if self.adopt:
            return False
        who = f"owned by stack {owner!r}" if owner else "not managed by nkplan (made by hand?)"
        self.problems.append(
            f"{self.locate(path)}: {what} already exists and is {who}; "
            f"nkplan will not touch it (use --adopt to take it over)"
        )
        return True

    def declared(self, want: Any, have: Any, index: int) -> None:
        """A declared record (with its live counterpart, or None), in source order."""
        self.pairs.append((want, have, (0, self.tier, index, "")))

    def undeclared(self, have: Any, sort_key: str) -> None:
        """An owned live record the spec no longer declares (to delete), after all declared ones."""
        self.pairs.append((None, have, (1, 0, 0, sort_key)))


class ResourceType(Generic[R]):
    """Defaults fit a simple resource; a type overrides what it needs."""

    name: ClassVar[str]  # the JSON plan's `type`
    record: ClassVar[type]
    # record fields a reviewer does not see (bookkeeping, kernel ids); nested: "programs.prog_id"
    hidden: ClassVar[tuple[str, ...]] = ()
    # what deleting one also does, for reviewers (the Markdown plan's disruption banner)
    delete_note: ClassVar[str | None] = None
    # the operations (create, update, delete) whose kernel half converges from whatever it finds,
    # so that the inverse also takes back the operation half-done: the applier undoes a failed
    # one of these too (a hook's step is several attaches, pins and renames; a pair's update
    # several netlink requests). Elsewhere a step is all or nothing by itself.
    undo_failed: ClassVar[frozenset[str]] = frozenset()

    # identity and names -------------------------------------------------------------------------
    def address(self, rec: R) -> str:
        raise NotImplementedError

    def label(self, rec: R) -> tuple[str, str | None]:
        """(name, namespace or None for the host) for the JSON plan's `name` and `namespace`."""
        raise NotImplementedError

    def undeclared_key(self, rec: R) -> str:
        """Where an undeclared (to be deleted) record sorts among the others."""
        return self.address(rec)

    # deciding ---------------------------------------------------------------------------------
    def claim(self, claims: Claims) -> None:
        """Pair declared records with live ones (claims.declared / .undeclared), reporting
        collisions with objects the stack does not own."""
        raise NotImplementedError

    def view(self, want: R, have: R) -> R:
        """The live record as far as the declaration manages it (fields it leaves to others
        taken out), before anything compares the two."""
        return have

    def fill_unspecified(self, want: R, have: R) -> R:
        """Desired values that mean "whatever the kernel chose", taken from the live record."""
        return want

    def replace_reasons(self, have: R, want: R, paths: tuple[str, ...]) -> Mapping[str, str]:
        """Of the changed paths, those that cannot change in place → the reason in words."""
        return {}

    def describe_update(self, have: R, want: R) -> str | None:
        """An update in words, when its attribute list does not say enough."""
        return None

    def drift(self, want: R, have: R, ours: bool) -> R | None:
        """The record as last applied, when the spec did not change since but the kernel did
        (a change made outside nkplan); None when that cannot be told or there is none. `want`
        comes with its unspecified values filled in from `have` (fill_unspecified)."""
        return None

    def drift_now(self, have: R) -> R:
        """The live record as the drift section shows it (as `drift` compares it)."""
        return have

    def describe_drift(self, applied: R, now: R) -> str | None:
        """A drift in words, when its attribute list does not say enough (None: it does)."""
        return None

    def orphan(self, have: R) -> str | None:
        """Why an owned live record nothing declares was made or left outside nkplan (shown in
        the drift section, deleted by apply); None for an ordinary undeclared one."""
        return None

    # ordering ---------------------------------------------------------------------------------
    def provides(self, rec: R) -> Iterable[Token]:
        return ()

    def needs(self, rec: R) -> Iterable[Need]:
        return ()

    def homes(self, rec: R) -> tuple[Token, ...]:
        """What the kernel removes it with: once every one of these tokens' providers is deleted,
        so is it, and update(rec, rec) puts it back whether or not it is still there; a plan
        that deletes them all need not delete it (core/implied.py). () where that cannot be
        told, or the type does not promise it."""
        return ()

    def batch_key(self, rec: R) -> Hashable | None:
        """Consecutive deletes with the same key go to the kernel as one call (None: never)."""
        return None

    # data ---------------------------------------------------------------------------------------
    def from_plain(self, data: dict[str, Any]) -> R:
        """The record from its JSON-shaped form (plain()), as snapshots and saved plans hold it."""
        return self.record(**data)  # type: ignore[no-any-return]

    def attrs(self, rec: R) -> dict[str, Any]:
        """The record as a reviewer sees it: plain data without the hidden fields."""
        data: dict[str, Any] = plain(rec)
        for path in self.hidden:
            _drop(data, path.split("."))
        return data


def _drop(data: Any, parts: list[str]) -> None:
    if isinstance(data, list):
        for item in data:
            _drop(item, parts)
    elif isinstance(data, dict):
        if len(parts) == 1:
            data.pop(parts[0], None)
        elif parts[0] in data:
            _drop(data[parts[0]], parts[1:])


def changed_paths(before: Any, after: Any, prefix: str = "") -> tuple[str, ...]:
    """Field paths ("peer.policy") whose values differ between two records of one type, read
    from the dataclass fields that take part in equality; a nested record is walked, anything
    else (a list of addresses, a hook's programs) is reported as one attribute, as a reviewer
    reads it."""
    out: list[str] = []
    for f in dataclasses.fields(before):
        if not f.compare:
            continue
        a, b = getattr(before, f.name), getattr(after, f.name)
        if a == b:
            continue
        if dataclasses.is_dataclass(a) and type(a) is type(b):
            out.extend(changed_paths(a, b, f"{prefix}{f.name}."))
        else:
            out.append(f"{prefix}{f.name}")
    return tuple(sorted(out)) if not prefix else tuple(out)
