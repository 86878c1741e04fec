"""The I/O seam: one small protocol, implemented by the real kernel (linux.py) and by the
in-memory fake (fake.py). Every method either does all of its job or raises an NkplanError
(KernelError with a readable message for refusals); it never leaves raw NetlinkError/OSError."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from nkplan.core.records import HookRec, LinkRec, LiveState, RouteRec


class Kernel(Protocol):
    def read(self, *, probe_netkit: bool = False) -> LiveState:
        """Snapshot of the host namespace and every named namespace (as `ip netns` sees them).
        With probe_netkit, also fill KernelInfo.netkit* by probing in a throwaway namespace."""
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
        """Add a main-table route with protocol RTPROT_NKPLAN."""
        ...

    def delete_route(self, route: RouteRec) -> None: ...

    def replace_route(self, before: RouteRec, after: RouteRec) -> None:
        """Same key (namespace, to, metric), new via/dev."""
        ...

    # BPF programs -----------------------------------------------------------------------------
    def set_programs(self, before: HookRec | None, after: HookRec | None) -> None:
        """Make the hook run exactly after.programs (nkplan's own, in that order; programs others
        attached stay where they are): attach new ones at their position (anchored to a
        neighbour, with expected_revision from a fresh query, so a concurrent change is detected),
        swap a program whose digest changed with BPF_LINK_UPDATE (atomic), re-attach to reorder
        (new link first, then the old one detached), detach the ones gone. Links are pinned under
        the stack's bpffs directory (owner) so they outlive the process; after None detaches all
        and removes the pins."""
        ...

    def bpf_problems(self) -> list[str]:
        """Why BPF programs cannot be managed here (no bpffs, no CAP_BPF, no libbpf, no tcx), or []."""
        ...

