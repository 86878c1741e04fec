"""NetlinkKernel: the real kernel behind base.Kernel.

Reading is reader.py (one worker thread, plain netlink sockets, no subprocess); pair changes are
links.py; namespaces and routes are small enough to live here. Operations in a named namespace
use a socket opened inside it (netns.py's thread trick), never a helper process."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from nkplan.errors import CapabilityError, KernelError
from nkplan.kernel import batch, links, netns, probe, reader, rtnl
from nkplan.kernel import consts as C
from nkplan.kernel.nlsock import NetlinkRefusal, RtnlSocket
from nkplan.kernel.refusals import Op, explain, no_namespace, root_needed
from nkplan.kernel.rtnl import call, need_link, ns_socket
from nkplan.state import KernelInfo, LinkRec, LiveState, RouteRec, owner_alias


def _cap_eff() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


class NetlinkKernel:
    """base.Kernel on the running Linux kernel. Stateless: every call reads or changes the kernel
    directly, so several instances (or processes) see the same truth."""

    # reading ----------------------------------------------------------------------------------
    def read(self, *, probe_netkit: bool = False) -> LiveState:
        live = reader.read_state()
        live.kernel = probe.probe() if probe_netkit else KernelInfo(os.uname().release)
        return live

    def check_privileges(self) -> None:
        caps = _cap_eff()
        needed = (1 << C.CAP_NET_ADMIN) | (1 << C.CAP_SYS_ADMIN)
        if os.geteuid() != 0 or caps & needed != needed:
            raise CapabilityError(root_needed())

    # namespaces -------------------------------------------------------------------------------
    def create_namespace(self, name: str, owner: str) -> None:
        op = Op("create_namespace", name, name)
        if not netns.valid_name(name):
            raise KernelError(f"{op.phrase()}: not a valid namespace name", errno.EINVAL)

        def inside() -> None:  # runs in the new namespace
            with RtnlSocket() as sock:
                lo = need_link(sock, "lo", name)
                rtnl.set_alias(sock, lo.ifindex, "lo", name, owner_alias(owner, "ns"))
                rtnl.set_up(sock, lo.ifindex, "lo", name, True)

        try:
            netns.create_named(name, inside)
        except FileExistsError:
            raise explain(op, OSError(errno.EEXIST, "exists")) from None
        except OSError as exc:
            raise explain(op, exc) from None

    def delete_namespace(self, name: str) -> None:
        op = Op("delete_namespace", name, name)
        try:
            fd = netns.open_ns(name)
        except FileNotFoundError:
            raise explain(op, OSError(errno.ENOENT, "missing")) from None
        try:
            # Delete the pairs inside first: the kernel would do it anyway once the namespace
            # dies, but asynchronously (their other ends linger in the host for a while).
            # Doing it here makes the result visible as soon as this call returns.
            netns.in_namespace(fd, _delete_pairs_here)
        except NetlinkRefusal as exc:
            raise explain(op, exc) from None
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a stale file, nothing inside to delete
                raise explain(op, exc) from None
        finally:
            os.close(fd)
        try:
            netns.delete_named(name)
        except OSError as exc:
            raise explain(op, exc) from None

    def set_namespace_owner(self, name: str, owner: str | None) -> None:
        op = Op("set_namespace_owner", name, name)
        if not os.path.lexists(netns.ns_path(name)):
            raise no_namespace(name, op.phrase())
        with ns_socket(name, op.phrase()) as sock:
            lo = need_link(sock, "lo", name)
            rtnl.set_alias(sock, lo.ifindex, "lo", name, owner_alias(owner, "ns") if owner else "")

    # device pairs -----------------------------------------------------------------------------
    def create_link(self, link: LinkRec) -> None:
        links.create_link(link)

    def delete_link(self, link: LinkRec) -> None:
        links.delete_link(link)

    def delete_links(self, links_: Sequence[LinkRec]) -> None:
        batch.delete_links(links_)

    def update_link(self, before: LinkRec, after: LinkRec) -> None:
        links.update_link(before, after)

    # routes -----------------------------------------------------------------------------------
    def _oif(self, sock: RtnlSocket, route: RouteRec) -> int | None:
        return None if route.dev is None else need_link(sock, route.dev, route.namespace).ifindex

    def add_route(self, route: RouteRec) -> None:
        op = Op("add_route", route.to, route.namespace)
        with ns_socket(route.namespace, op.phrase()) as sock:
            body = rtnl.route_body(route, self._oif(sock, route))
            call(sock, op, C.RTM_NEWROUTE, C.NLM_F_CREATE | C.NLM_F_EXCL, body)

    def delete_route(self, route: RouteRec) -> None:
        op = Op("delete_route", route.to, route.namespace)
        with ns_socket(route.namespace, op.phrase()) as sock:
            # a route dies with its device: no device, match by destination and metric alone
            dev = rtnl.get_link(sock, route.dev) if route.dev else None
            call(sock, op, C.RTM_DELROUTE, 0, rtnl.route_body(route, dev.ifindex if dev else None, delete=True))

    def replace_route(self, before: RouteRec, after: RouteRec) -> None:
        if (before.namespace, before.to, before.metric) != (after.namespace, after.to, after.metric):
            self.add_route(after)
            self.delete_route(before)
            return
        op = Op("replace_route", after.to, after.namespace)
        with ns_socket(after.namespace, op.phrase()) as sock:
            body = rtnl.route_body(after, self._oif(sock, after))
            call(sock, op, C.RTM_NEWROUTE, C.NLM_F_CREATE | C.NLM_F_REPLACE, body)


def _delete_pairs_here() -> None:
    """Delete every veth/netkit device of the calling thread's namespace (deleting one end
    deletes both, wherever the other lives)."""
    with RtnlSocket() as sock:
        for dev in reader.scan(sock, "").links.values():
            if dev.kind in reader.PAIR_KINDS:
                try:
                    sock.request(C.RTM_DELLINK, 0, rtnl.setlink(dev.ifindex))
                except NetlinkRefusal as exc:
                    if exc.errno != errno.ENODEV:  # ENODEV: went with its other end just now
                        raise
