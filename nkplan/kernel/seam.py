"""The I/O seam: one small protocol, implemented by the real kernel (linux.py) and by the
in-memory fake (fake.py). Every method either does all of its job or raises an NkplanError
(KernelError with a readable message for refusals); it never leaves raw NetlinkError/OSError.

The applier only calls the generic half: read(), and create / update / delete / delete_many of
a record, which `Writers` hands to the kernel half of the record's resource type (each kernel
registers one `Writer` per type of core/resources.REGISTRY; a missing one is a bug found at
construction). The typed methods below are those kernel halves, as each kernel implements them;
the contract suite (tests/contract) holds both kernels to the same behaviour through the generic
half. Pure: this module imports no kernel code."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, TypeVar

from nkplan.core.reach import Outcome, Probe
from nkplan.core.records import (
    BpfReads,
    HookRec,
    LinkRec,
    LiveState,
    OrphanPin,
    RouteRec,
    RuleRec,
    SharedMapRec,
    SysctlsRec,
)
from nkplan.core.resources import TYPE_NAMES, type_of
from nkplan.errors import InternalError

T = TypeVar("T")


class ApplySession:
    """What one apply keeps between its steps and its rollback, owned by the applier: opened
    before the first step, closed after the last step or the rollback. A kernel half keeps its
    part under a name of its own (the BPF writer: the programs it took off hooks, so a rollback
    can put the very same ones back). Without a session a change runs in one of its own."""

    def __init__(self) -> None:
        self._parts: dict[str, Any] = {}

    def part(self, name: str, make: Callable[[], T]) -> T:
        if name not in self._parts:
            self._parts[name] = make()
        return self._parts[name]  # type: ignore[no-any-return]

    def close(self) -> None:
        parts, self._parts = self._parts, {}
        for part in parts.values():
            close = getattr(part, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> ApplySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Writer:
    """How a kernel carries out the operations of one resource type."""

    create: Callable[[Any, ApplySession | None], None]
    update: Callable[[Any, Any, ApplySession | None], None]
    delete: Callable[[Any, ApplySession | None], None]
    # several deletes as one kernel operation (all or nothing); None: one by one
    delete_many: Callable[[Sequence[Any], ApplySession | None], None] | None = None


class Writers:
    """The generic half of a kernel: every record goes to its type's Writer."""

    def writers(self) -> Mapping[str, Writer]:
        raise NotImplementedError

    @cached_property
    def _writer_table(self) -> dict[str, Writer]:
        table = dict(self.writers())
        missing = [n for n in TYPE_NAMES if n not in table]
        if missing:
            raise InternalError(f"{type(self).__name__} has no kernel half for resource type(s) {missing}")
        return table

    def _writer(self, rec: object) -> Writer:
        return self._writer_table[type_of(rec).name]

    def create(self, rec: object, session: ApplySession | None = None) -> None:
        self._writer(rec).create(rec, session)

    def update(self, before: object, after: object, session: ApplySession | None = None) -> None:
        self._writer(after).update(before, after, session)

    def delete(self, rec: object, session: ApplySession | None = None) -> None:
        self._writer(rec).delete(rec, session)

    def delete_many(self, recs: Sequence[object], session: ApplySession | None = None) -> None:
        if not recs:
            return
        writer = self._writer(recs[0])
        if writer.delete_many is None or len(recs) == 1:
            for rec in recs:
                writer.delete(rec, session)
        else:
            writer.delete_many(recs, session)


class Kernel(Protocol):
    # the generic half (what the applier uses) ------------------------------------------------
    def create(self, rec: object, session: ApplySession | None = None) -> None:
        """Make the record exist exactly as it is."""
        ...

    def update(self, before: object, after: object, session: ApplySession | None = None) -> None:
        """Change in place what may change in place (the planner guarantees the rest is equal)."""
        ...

    def delete(self, rec: object, session: ApplySession | None = None) -> None: ...

    def delete_many(self, recs: Sequence[object], session: ApplySession | None = None) -> None:
        """Delete records of one type with one batch key (ResourceType.batch_key) together,
        in one kernel operation where the type has one. Nothing is deleted if it fails."""
        ...

    # reading --------------------------------------------------------------------------------
    def read(
        self,
        *,
        probe_netkit: bool = False,
        sysctls: frozenset[str] = frozenset(),
        net_keys: Mapping[str, frozenset[str]] | None = None,
        bpf_reads: BpfReads | None = None,
    ) -> LiveState:
        """Snapshot of the host namespace and every named namespace (as `ip netns` sees them).
        With probe_netkit, also fill KernelInfo.netkit* by probing in a throwaway namespace.
        sysctls: the per-device keys to read on every pair end (and KernelInfo.sysctl_keys);
        net_keys: the net.* keys to read per namespace, HOST for the host (LiveState.sysctls, and
        KernelInfo.host_net_keys); bpf_reads: what of the declared programs' maps to read
        (records.BpfReads: only the values a declaration manages, no contents of other maps)."""
        ...

    def probe(self, probes: Sequence[Probe]) -> list[Outcome]:
        """Run reachability probes (ICMP echo, or a TCP connect) from their namespaces, together;
        what each saw, in order. Never raises for a probe that fails: its Outcome says why."""
        ...

    def check_privileges(self) -> None:
        """Raise CapabilityError unless this process can change network state (CAP_NET_ADMIN, CAP_SYS_ADMIN)."""
        ...

    # namespaces -------------------------------------------------------------------------------
    def create_namespace(self, name: str, owner: str) -> None:
        """Create a named namespace (/run/netns/NAME, like `ip netns add`), lo up, marked owned."""
        ...

    def delete_namespace(self, name: str) -> None:
        """Remove a named namespace (like `ip netns del`); what it held goes with it."""
        ...

    def set_namespace_owner(self, name: str, owner: str | None) -> None:
        """Mark (adopt) or unmark a namespace."""
        ...

    # device pairs -----------------------------------------------------------------------------
    def create_link(self, link: LinkRec) -> None:
        """Create the pair with the peer directly in its namespace, then set per-end mac, mtu,
        addresses, ownership alias (link.owner) and up state exactly as in the record."""
        ...

    def delete_link(self, link: LinkRec) -> None:
        """Delete the pair (through its primary; deleting one end deletes both)."""
        ...

    def delete_links(self, links: Sequence[LinkRec]) -> None:
        """Delete several pairs whose primaries share a namespace, all in one kernel operation
        (one RCU grace period instead of one per pair). Nothing is deleted if it fails."""
        ...

    def update_link(self, before: LinkRec, after: LinkRec) -> None:
        """Change in place what may change in place: netkit policies (through the primary), mtu,
        up, mac, addresses (add missing, remove extra), ownership alias. Caller guarantees the
        rest (kind, mode, scrub, head/tailroom, names, namespaces) is equal."""
        ...

    # routes -----------------------------------------------------------------------------------
    def add_route(self, route: RouteRec) -> None:
        """Add a route (any table) with protocol RTPROT_NKPLAN."""
        ...

    def delete_route(self, route: RouteRec) -> None: ...

    def replace_route(self, before: RouteRec, after: RouteRec) -> None:
        """Same key (RouteRec.key), anything else new (RTM_NEWROUTE with NLM_F_REPLACE); another key:
        the new one added, then the old one deleted."""
        ...

    # rules ------------------------------------------------------------------------------------
    def add_rule(self, rule: RuleRec) -> None:
        """Add the rule with protocol RTPROT_NKPLAN; in the host namespace also mark it as
        rule.owner's (a host rule has no attribute for a stack's name)."""
        ...

    def delete_rule(self, rule: RuleRec) -> None:
        """Delete exactly this rule (its attributes and protocol must match) and its host marker;
        a `stale` record (a marker whose rule is gone) only loses its marker."""
        ...

    def set_rule_owner(self, before: RuleRec, after: RuleRec) -> None:
        """The one change a rule takes in place: who owns it (adoption; the host marker)."""
        ...

    # sysctls ----------------------------------------------------------------------------------
    def set_sysctls(self, before: SysctlsRec | None, after: SysctlsRec) -> None:
        """Write after's net.* values (those not already as in before) in its namespace, and
        record their digest where the namespace can hold it."""
        ...

    # shared BPF maps --------------------------------------------------------------------------
    def create_shared_map(self, rec: SharedMapRec) -> None:
        """Make the map from its definition and pin it in rec.owner's bpffs tree."""
        ...

    def delete_shared_map(self, rec: SharedMapRec) -> None:
        """Unpin it (programs still using it keep it until they go)."""
        ...

    def remove_orphan_pin(self, rec: OrphanPin) -> None:
        """Remove a pin (or directory) from rec.owner's bpffs tree that nothing nkplan manages holds."""
        ...

    # BPF programs -----------------------------------------------------------------------------
    def set_programs(self, before: HookRec | None, after: HookRec | None, session: ApplySession | None = None) -> None:
        """Make the hook run exactly after.programs (nkplan's own, in that order; programs others
        attached stay where they are): attach new ones at their position (anchored to a
        neighbour, with expected_revision from a fresh query, so a concurrent change is detected),
        swap a program whose digest changed with BPF_LINK_UPDATE (atomic), re-attach to reorder
        (new link first, then the old one detached), detach the ones gone. Links are pinned under
        the stack's bpffs directory (owner) so they outlive the process; after None detaches all
        and removes the pins."""
        ...

    def delete_programs(self, befores: Sequence[HookRec], session: ApplySession | None = None) -> None:
        """set_programs(before, None) for several hooks as one operation: nkplan's programs taken off
        all of them, their pins removed. All or nothing: if it fails, every hook is as it was."""
        ...

    def bpf_problems(self) -> list[str]:
        """Why BPF programs cannot be managed here (no bpffs, no CAP_BPF, no libbpf, no tcx), or []."""
        ...


def typed_writers(kernel: Kernel) -> dict[str, Writer]:
    """The kernel half of each resource type, from a kernel's typed methods: one line per type
    of core/resources.REGISTRY."""
    return {
        "namespace": Writer(
            create=lambda r, s: kernel.create_namespace(r.name, r.owner or ""),
            update=lambda b, a, s: kernel.set_namespace_owner(a.name, a.owner),
            delete=lambda r, s: kernel.delete_namespace(r.name),
        ),
        "link": Writer(
            create=lambda r, s: kernel.create_link(r),
            update=lambda b, a, s: kernel.update_link(b, a),
            delete=lambda r, s: kernel.delete_link(r),
            delete_many=lambda rs, s: kernel.delete_links(rs),
        ),
        "route": Writer(
            create=lambda r, s: kernel.add_route(r),
            update=lambda b, a, s: kernel.replace_route(b, a),
            delete=lambda r, s: kernel.delete_route(r),
        ),
        # nothing to delete: the kernel keeps no value from before (core/resources/sysctl.py)
        "sysctls": Writer(
            create=lambda r, s: kernel.set_sysctls(None, r),
            update=lambda b, a, s: kernel.set_sysctls(b, a),
            delete=lambda r, s: None,
        ),
        # a rule cannot change in place: the planner replaces it; an update is its ownership only
        "rule": Writer(
            create=lambda r, s: kernel.add_rule(r),
            update=lambda b, a, s: kernel.set_rule_owner(b, a),
            delete=lambda r, s: kernel.delete_rule(r),
        ),
        # a definition cannot change in place: the planner replaces a map
        "map": Writer(
            create=lambda r, s: kernel.create_shared_map(r),
            update=lambda b, a, s: kernel.create_shared_map(a),
            delete=lambda r, s: kernel.delete_shared_map(r),
        ),
        # never declared, so never made: apply only removes them (core/resources/orphan.py)
        # (a rollback cannot put a removed one back: its create does nothing)
        "pin": Writer(
            create=lambda r, s: None,
            update=lambda b, a, s: None,
            delete=lambda r, s: kernel.remove_orphan_pin(r),
        ),
        "hook": Writer(
            create=lambda r, s: kernel.set_programs(None, r, s),
            update=kernel.set_programs,
            delete=lambda r, s: kernel.set_programs(r, None, s),
            delete_many=kernel.delete_programs,
        ),
    }
