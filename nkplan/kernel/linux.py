"""LinuxKernel: the real kernel behind seam.Kernel.

Reading is netlink/reader.py (one worker thread, plain netlink sockets, no subprocess) plus, in
the same walk, the BPF hooks of owned devices (bpf/scan.py); pair changes are netlink/links.py;
BPF programs are bpf/hookwriter.py; namespaces and routes are small enough to live here.
Operations in a named namespace use a socket opened inside it (netlink/netns.py's thread trick),
never a helper process."""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack

from nkplan.core.reach import Outcome, Probe
from nkplan.core.records import (
    HOST,
    BpfReads,
    HookRec,
    KernelInfo,
    LinkRec,
    LiveState,
    OrphanPin,
    RouteRec,
    RuleRec,
    SharedMapRec,
    SysctlsRec,
    owner_alias,
)
from nkplan.core.sysctls import net_proc_path
from nkplan.errors import CapabilityError, KernelError
from nkplan.kernel import caps
from nkplan.kernel.bpf import bpffs, orphans, rulemarks, scan, sharedmaps
from nkplan.kernel.bpf import probe as bpf_probe
from nkplan.kernel.netlink import batch, links, netns, probe, reader, rtnl, rules
from nkplan.kernel.netlink import consts as C
from nkplan.kernel.netlink.nlsock import NetlinkRefusal, RtnlSocket, query_nsid
from nkplan.kernel.netlink.refusals import Op, explain, no_namespace, root_needed, where
from nkplan.kernel.netlink.rtnl import call, need_link, ns_socket
from nkplan.kernel.seam import ApplySession, Writer, Writers, typed_writers


def _keep_sockets(session: ApplySession | None) -> None:
    if session is not None:
        session.part("netlink sockets", rtnl.SocketCache)


class LinuxKernel(Writers):
    """seam.Kernel on the running Linux kernel. Every call reads or changes the kernel directly,
    so several instances (or processes) see the same truth; what a rollback needs of BPF
    programs taken off a hook is kept per apply session (see ApplySession), and so are the
    netlink sockets opened inside namespaces (rtnl.SocketCache). One thing is only a hint for
    speed: the pair devices per namespace the last read saw, which lets an apply delete an
    emptied namespace without entering it."""

    # the veth/netkit devices of each named namespace as the last read saw them, less the pairs
    # deleted since: a namespace known to hold none is deleted without first hopping into it
    _pair_devices: dict[str, set[str]] | None = None
    _in_apply = False  # a delete of an apply (with its session): trusts _pair_devices

    def writers(self) -> dict[str, Writer]:
        return typed_writers(self)

    # the generic half: within an apply session, netlink sockets opened in namespaces are kept
    def create(self, rec: object, session: ApplySession | None = None) -> None:
        _keep_sockets(session)
        super().create(rec, session)

    def update(self, before: object, after: object, session: ApplySession | None = None) -> None:
        _keep_sockets(session)
        super().update(before, after, session)

    def delete(self, rec: object, session: ApplySession | None = None) -> None:
        _keep_sockets(session)
        self._in_apply = session is not None
        try:
            super().delete(rec, session)
        finally:
            self._in_apply = False

    # reading ----------------------------------------------------------------------------------
    def read(
        self,
        *,
        probe_netkit: bool = False,
        sysctls: frozenset[str] = frozenset(),
        net_keys: Mapping[str, frozenset[str]] | None = None,
        bpf_reads: BpfReads | None = None,
    ) -> LiveState:
        scanner = scan.HookScanner()
        got = reader.read_state(visit=scanner, sysctls=sysctls, net_keys=net_keys)
        live = got.live
        sharedmaps.fill(live)  # before the hooks: which programs use them
        listing = bpffs.Listing()  # the pin tree's directories, each listed once for both
        scan.fill_state(live, scanner.found, bpf_reads, listing)
        orphans.fill(live, listing)
        rulemarks.fill_owners(live)
        info = probe.probe() if probe_netkit else KernelInfo(os.uname().release)
        if sysctls:
            info = dataclasses.replace(info, sysctl_keys=tuple(sorted(got.device_keys)))
        if net_keys:
            info = dataclasses.replace(info, host_net_keys=tuple(sorted(got.host_net_keys)))
        live.kernel = info
        pairs: dict[str, set[str]] = {ns: set() for ns in live.namespaces}
        for (ns, name), dev in live.devices.items():
            if ns in pairs and dev.kind in reader.PAIR_KINDS:
                pairs[ns].add(name)
        self._pair_devices = pairs
        return live

    def _deleted(self, ends: list[tuple[str, str]]) -> None:
        if self._pair_devices is not None:
            for ns, name in ends:
                self._pair_devices.get(ns, set()).discard(name)

    def set_sysctls(self, before: SysctlsRec | None, after: SysctlsRec) -> None:
        """Write the declared net.* values that differ from before, then (a named namespace) mark
        its lo with their digest, so a later plan can tell a change by hand."""
        had = set(before.values) if before is not None else set()
        entries = [(net_proc_path(k), k, v) for k, v in after.values if (k, v) not in had]
        ns = after.namespace
        links.write_in(ns, entries, f"setting sysctls in {where(ns)}")
        # the mark is written back also without a digest (a rollback to no sysctls declared), so
        # it never claims values as applied that are not
        if ns != HOST and after.owner:
            with ns_socket(ns, f"marking namespace {ns}") as sock:
                lo = need_link(sock, "lo", ns)
                rtnl.set_alias(sock, lo.ifindex, "lo", ns, owner_alias(after.owner, "ns", after.applied))

    def check_privileges(self) -> None:
        if os.geteuid() != 0 or not caps.has(caps.effective(), caps.CAP_NET_ADMIN, caps.CAP_SYS_ADMIN):
            raise CapabilityError(root_needed())

    def probe(self, probes: Sequence[Probe]) -> list[Outcome]:
        from nkplan.kernel import reach

        return reach.probe_all(probes)

    def bpf_problems(self) -> list[str]:
        """What this machine lacks for BPF programs on tcx/netkit hooks (sentences; empty: none)."""
        return bpf_probe.problems()

    # namespaces -------------------------------------------------------------------------------
    def create_namespace(self, name: str, owner: str) -> None:
        op = Op("create_namespace", name, name)
        if not netns.valid_name(name):
            raise KernelError(f"{op.phrase()}: not a valid namespace name", errno.EINVAL)

        cache = rtnl.SocketCache.active

        def inside() -> None:  # runs in the new namespace
            sock = RtnlSocket()
            try:
                lo = need_link(sock, "lo", name)
                rtnl.mark_namespace_lo(sock, lo.ifindex, name, owner_alias(owner, "ns"))
            except BaseException:
                sock.close()
                raise
            if cache is None:
                sock.close()
                return
            st = os.stat("/proc/thread-self/ns/net")  # what ns_socket compares: the name's nsfs inode
            cache.keep(name, (st.st_dev, st.st_ino), sock)  # the pair and routes made next use it

        try:
            netns.create_named(name, inside)
        except FileExistsError:
            raise explain(op, OSError(errno.EEXIST, "exists")) from None
        except OSError as exc:
            raise explain(op, exc) from None
        if self._pair_devices is not None:
            self._pair_devices[name] = set()  # made here: it holds what this process puts in

    def delete_namespace(self, name: str) -> None:
        op = Op("delete_namespace", name, name)
        rtnl.forget_socket(name)  # a kept socket would hold the namespace alive
        try:
            fd = netns.open_ns(name)
        except FileNotFoundError:
            raise explain(op, OSError(errno.ENOENT, "missing")) from None
        if self._in_apply and self._pair_devices is not None and self._pair_devices.get(name) == set():
            # An apply's delete of a namespace that held no pair when the plan read it, and got
            # none from this process since: nothing to delete in there first (a destroy has
            # deleted the pairs by now; hopping in to look was a fifth of destroying 1000 pods).
            # Should one have appeared meanwhile, the kernel deletes it with the namespace, only
            # later (the apply's verify waits for that).
            os.close(fd)
            try:
                netns.delete_named(name)
            except OSError as exc:
                raise explain(op, exc) from None
            self._pair_devices.pop(name)
            if scan.have_pins():
                scan.remove_namespace_pins(name)
            return
        # the host ends of the pairs inside are looked up only if some stack has pins to remove
        home = (netns.thread_ns_fd(), RtnlSocket()) if scan.have_pins() else None
        host_ends: list[str] = []
        try:
            # Delete the pairs inside first: the kernel would do it anyway once the namespace
            # dies, but asynchronously (their other ends linger in the host for a while).
            # Doing it here makes the result visible as soon as this call returns.
            host_ends = netns.in_namespace(fd, lambda: _delete_pairs_here(home))
        except NetlinkRefusal as exc:
            raise explain(op, exc) from None
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a stale file, nothing inside to delete
                raise explain(op, exc) from None
        finally:
            os.close(fd)
            if home is not None:
                os.close(home[0])
                home[1].close()
        try:
            netns.delete_named(name)
        except OSError as exc:
            raise explain(op, exc) from None
        if home is not None:
            scan.remove_namespace_pins(name)
            scan.remove_device_pins((HOST, end) for end in host_ends)

    def set_namespace_owner(self, name: str, owner: str | None) -> None:
        op = Op("set_namespace_owner", name, name)
        if not os.path.lexists(netns.ns_path(name)):
            raise no_namespace(name, op.phrase())
        with ns_socket(name, op.phrase()) as sock:
            lo = need_link(sock, "lo", name)
            if owner:  # as created: lo up too (an adopted namespace may have been left half-made)
                rtnl.mark_namespace_lo(sock, lo.ifindex, name, owner_alias(owner, "ns"))
            else:
                rtnl.set_alias(sock, lo.ifindex, "lo", name, "")

    # device pairs -----------------------------------------------------------------------------
    def create_link(self, link: LinkRec) -> None:
        # counted before the kernel is asked: a creation that fails halfway may have left the pair
        # there, and its namespace must then not be deleted as one known to hold none (the kernel
        # would delete the pair only later, and an apply right after would find its name taken)
        if self._pair_devices is not None:
            for ns, name in _ends([link]):
                self._pair_devices.setdefault(ns, set()).add(name)
        links.create_link(link)

    def delete_link(self, link: LinkRec) -> None:
        links.delete_link(link)
        scan.remove_device_pins(_ends([link]))
        self._deleted(_ends([link]))

    def delete_links(self, links_: Sequence[LinkRec]) -> None:
        batch.delete_links(links_)
        scan.remove_device_pins(_ends(links_))
        self._deleted(_ends(links_))

    def update_link(self, before: LinkRec, after: LinkRec) -> None:
        links.update_link(before, after)

    # routes -----------------------------------------------------------------------------------
    def _body(self, sock: RtnlSocket, route: RouteRec) -> bytes:
        def oif(dev: str | None) -> int | None:
            return None if dev is None else need_link(sock, dev, route.namespace).ifindex

        hops = [oif(nh.dev) for nh in route.nexthops]
        return rtnl.route_body(route, oif(route.dev), hop_oifs=hops)

    def add_route(self, route: RouteRec) -> None:
        op = Op("add_route", route.to, route.namespace)
        with ns_socket(route.namespace, op.phrase()) as sock:
            call(sock, op, C.RTM_NEWROUTE, C.NLM_F_CREATE | C.NLM_F_EXCL, self._body(sock, route))

    def delete_route(self, route: RouteRec) -> None:
        op = Op("delete_route", route.to, route.namespace)
        with ns_socket(route.namespace, op.phrase()) as sock:
            # a route dies with its device: no device, match by destination and metric alone
            dev = rtnl.get_link(sock, route.dev) if route.dev else None
            call(sock, op, C.RTM_DELROUTE, 0, rtnl.route_body(route, dev.ifindex if dev else None, delete=True))

    def replace_route(self, before: RouteRec, after: RouteRec) -> None:
        if before.key != after.key:
            self.add_route(after)
            self.delete_route(before)
            return
        op = Op("replace_route", after.to, after.namespace)
        with ns_socket(after.namespace, op.phrase()) as sock:
            call(sock, op, C.RTM_NEWROUTE, C.NLM_F_CREATE | C.NLM_F_REPLACE, self._body(sock, after))

    # rules ------------------------------------------------------------------------------------
    def add_rule(self, rule: RuleRec) -> None:
        """Make the rule (protocol 237); a host rule also gets its stack's marker (bpffs). A stale
        record (a rollback of its delete) only gets its marker back."""
        if rule.stale:
            if rule.owner:
                rulemarks.write(rule.owner, rule.family, rule.priority, rule.applied or "")
            return
        rules.add(rule)
        if rule.namespace == HOST and rule.owner:
            try:
                rulemarks.write(rule.owner, rule.family, rule.priority, rule.applied or "")
            except Exception:
                rules.delete(rule)  # nothing half-made stays behind
                raise

    def delete_rule(self, rule: RuleRec) -> None:
        """Delete the rule (a stale record: only its marker) and a host rule's marker."""
        if not rule.stale:
            rules.delete(rule)
        if rule.namespace == HOST and rule.owner:
            rulemarks.remove(rule.owner, rule.family, rule.priority)

    def set_rule_owner(self, before: RuleRec, after: RuleRec) -> None:
        """Take over (or give up) a host rule: its marker; in a named namespace the namespace's
        owner owns its rules, so there is nothing to write."""
        if after.namespace != HOST:
            return
        if before.owner and before.owner != after.owner:
            rulemarks.remove(before.owner, before.family, before.priority)
        if after.owner:
            rulemarks.write(after.owner, after.family, after.priority, after.applied or "")

    # shared BPF maps --------------------------------------------------------------------------
    def create_shared_map(self, rec: SharedMapRec) -> None:
        sharedmaps.create(rec)

    def delete_shared_map(self, rec: SharedMapRec) -> None:
        sharedmaps.delete(rec)

    def remove_orphan_pin(self, rec: OrphanPin) -> None:
        orphans.remove(rec)

    # BPF programs -----------------------------------------------------------------------------
    def set_programs(self, before: HookRec | None, after: HookRec | None, session: ApplySession | None = None) -> None:
        from nkplan.kernel.bpf import hookwriter  # libbpf and the writer: not needed to plan

        with ExitStack() as own:
            if session is None:  # a change of its own: nothing to roll back to afterwards
                session = own.enter_context(ApplySession())
            hookwriter.set_programs(before, after, session.part("bpf.retired", hookwriter.Retired))

    def delete_programs(self, befores: Sequence[HookRec], session: ApplySession | None = None) -> None:
        from nkplan.kernel.bpf import hookwriter

        with ExitStack() as own:
            if session is None:
                session = own.enter_context(ApplySession())
            hookwriter.remove_programs(befores, session.part("bpf.retired", hookwriter.Retired))


def _ends(links_: Sequence[LinkRec]) -> list[tuple[str, str]]:
    return [(e.namespace, e.name) for link in links_ for e in link.ends]


def _delete_pairs_here(home: tuple[int, RtnlSocket] | None = None) -> list[str]:
    """Delete every veth/netkit device of the calling thread's namespace (deleting one end
    deletes both, wherever the other lives). With home (an fd of the host namespace and a socket
    opened there), return the names of the other ends that lived in the host."""
    host_ends: list[str] = []
    with RtnlSocket() as sock:
        # the devices only: a namespace of a destroyed stack is deleted after its pairs, so this
        # usually finds none, and a full scan (addresses, routes, rules) was a fifth of destroying 1000 pods
        devs = [d for d in reader.links(sock).values() if d.kind in reader.PAIR_KINDS]
        if home is not None and any(d.link_nsid is not None for d in devs):
            host_id = query_nsid(sock, home[0])
            for d in devs:
                if d.link_nsid is not None and d.link_nsid == host_id and d.link:
                    other = rtnl.get_link_by_index(home[1], d.link)
                    if other is not None:
                        host_ends.append(other.name)
        for dev in devs:
            try:
                sock.request(C.RTM_DELLINK, 0, rtnl.setlink(dev.ifindex))
            except NetlinkRefusal as exc:
                if exc.errno != errno.ENODEV:  # ENODEV: went with its other end just now
                    raise
    return host_ends
