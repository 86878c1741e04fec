"""Create, change and delete veth/netkit pairs.

The pair is made with one RTM_NEWLINK from a socket in the primary's namespace, the peer created
directly in its own namespace (IFLA_NET_NS_FD inside the peer info). Each end is then configured
from a socket in its own namespace: the kernel ignores the peer's IFF_UP at creation, and an
address or up state can only be set where the device lives.

Request bodies are encoded by encode.py (the nested ones by pyroute2), netkit's IFLA_INFO_DATA by
nkplan's link-kind plugin (netkit_plugin.py), whose attribute types (u32, u16 head/tailroom, nested peer info) are the
kernel's. Which settings go into IFLA_INFO_DATA, and which can change later, is the kind table
(kinds.py, core/linkkinds.py)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from contextlib import ExitStack

from nkplan.core.linkkinds import noun, path_label, value_at
from nkplan.core.records import HOST, EndRec, LinkRec, Role, owner_alias
from nkplan.core.sysctls import Value, proc_path
from nkplan.errors import InternalError, KernelError
from nkplan.kernel import procsys
from nkplan.kernel.netlink import consts as C
from nkplan.kernel.netlink import netns, rtnl
from nkplan.kernel.netlink.kinds import KERNEL_KINDS, Attr, KernelKind
from nkplan.kernel.netlink.nlsock import NetlinkRefusal, RtnlSocket
from nkplan.kernel.netlink.refusals import Op, explain, name_taken, where
from nkplan.kernel.netlink.rtnl import call, need_link, ns_socket, setlink


def _peer_info(name: str, peer_fd: int | None) -> dict[str, list[Attr]]:
    """VETH_INFO_PEER / IFLA_NETKIT_PEER_INFO: a struct ifinfomsg (all zero) + IFLA_* attributes."""
    attrs: list[Attr] = [("IFLA_IFNAME", name)]
    if peer_fd is not None:
        attrs.append(("IFLA_NET_NS_FD", peer_fd))
    return {"attrs": attrs}


def _linkinfo(kind: str, *data: Attr) -> Attr:
    return ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind), ("IFLA_INFO_DATA", {"attrs": list(data)})]})


def newlink_body(link: LinkRec, peer_fd: int | None) -> bytes:
    kind = KERNEL_KINDS[link.kind]
    data = kind.create_data(link)
    if link.peer is not None:  # a single netkit device: no peer info (the kernel refuses one)
        data.insert(0, (kind.peer_info, _peer_info(link.peer.name, peer_fd)))
    return setlink(0, ("IFLA_IFNAME", link.primary.name), _linkinfo(link.kind, *data))


def info_body(index: int, kind: str, *data: Attr) -> bytes:
    """RTM_NEWLINK changing kind settings (IFLA_INFO_DATA) of an existing pair, sent to its primary."""
    return setlink(index, _linkinfo(kind, *data))


def mtu_body(index: int, mtu: int) -> bytes:
    return setlink(index, ("IFLA_MTU", mtu))


def mac_body(index: int, mac: str) -> bytes:
    return setlink(index, ("IFLA_ADDRESS", rtnl.mac_text(mac)))


def write_sysctls(ns: str, device: str, values: Iterable[tuple[str, Value]]) -> None:
    """Per-device sysctls through /proc/sys, as sysctl(8) writes them (so the kernel's handlers
    run: route cache flushes, netconf notifications), from a thread inside the device's
    namespace: /proc/sys/net shows the namespace of the thread that opens it."""
    entries = [(proc_path(k, device), f"net.{k.replace('.', '.conf.' + device + '.', 1)}", v) for k, v in values]
    if entries:
        write_in(ns, entries, f"setting sysctls of {device} in {where(ns)}")


def write_in(ns: str, entries: list[procsys.Entry], doing: str) -> None:
    """procsys.write from inside namespace ns."""
    if ns == HOST:
        procsys.write(entries, where(ns))
    else:
        with rtnl.ns_fd(ns, doing) as fd:
            netns.in_namespace(fd, lambda: procsys.write(entries, where(ns)))


def _configure(sock: RtnlSocket, end: EndRec, role: Role, owner: str | None, applied: str | None) -> None:
    """Bring a freshly made end to the record: alias, mac, mtu, addresses, then up."""
    ns = end.namespace
    dev = need_link(sock, end.name, ns)
    if owner is not None:
        rtnl.set_alias(sock, dev.ifindex, end.name, ns, owner_alias(owner, role, applied))
    if end.mac is not None and end.mac != dev.mac:
        _set_mac(sock, dev.ifindex, end, dev.flags & C.IFF_UP != 0)
    if end.mtu != dev.mtu:
        call(sock, Op("set_mtu", end.name, ns, end.mtu), C.RTM_SETLINK, 0, mtu_body(dev.ifindex, end.mtu))
    write_sysctls(ns, end.name, end.sysctls)  # before addresses: e.g. ipv6.disable_ipv6 decides what is kept
    for cidr in end.addresses:
        rtnl.add_address(sock, dev.ifindex, end.name, ns, cidr, tolerate_present=False)
    if end.up:
        rtnl.set_up(sock, dev.ifindex, end.name, ns, True)


def _set_mac(sock: RtnlSocket, index: int, end: EndRec, is_up: bool) -> None:
    assert end.mac is not None
    op = Op("set_mac", end.name, end.namespace, end.mac)
    body = mac_body(index, end.mac)
    try:
        sock.request(C.RTM_SETLINK, 0, body)
    except NetlinkRefusal as exc:
        if exc.errno != errno.EBUSY or not is_up:
            raise explain(op, exc) from None
        # a device without live MAC change: down, change, up again
        rtnl.set_up(sock, index, end.name, end.namespace, False)
        call(sock, op, C.RTM_SETLINK, 0, body)
        rtnl.set_up(sock, index, end.name, end.namespace, True)


def _delete_by_name(sock: RtnlSocket, name: str) -> NetlinkRefusal | None:
    """Best effort: the refusal, if the kernel refused."""
    try:
        sock.request(C.RTM_DELLINK, 0, setlink(0, ("IFLA_IFNAME", name)))
    except NetlinkRefusal as exc:
        return exc
    return None


def _check_single(sock: RtnlSocket, link: LinkRec, op: Op) -> None:
    """A kernel older than single mode ignores IFLA_NETKIT_PAIRING and makes a pair (its peer
    named by the kernel): the plan refuses that beforehand (capabilities.py); this read-back
    catches what slipped through (a kernel swapped under a saved plan), before anything else."""
    dev = need_link(sock, link.primary.name, link.primary.namespace)
    if dev.info.get(C.IFLA_NETKIT_PAIRING) != C.NETKIT_DEVICE_SINGLE:
        _delete_by_name(sock, link.primary.name)  # deleting the primary takes its stray peer too
        raise KernelError(
            f"{op.phrase()}: this kernel ({os.uname().release}) has no single-device mode (Linux 7.1) "
            "and made a netkit pair instead; removed it"
        )


def create_link(link: LinkRec) -> None:
    p, q = link.primary, link.peer
    op = Op(f"create_{link.kind}" + ("_single" if link.pairing == "single" else ""), p.name, p.namespace)
    doing = op.phrase()
    with ExitStack() as stack:
        ps = stack.enter_context(ns_socket(p.namespace, doing))
        qs = ps if q is None or q.namespace == p.namespace else stack.enter_context(ns_socket(q.namespace, doing))
        if q is None or q.namespace == p.namespace:
            body = newlink_body(link, None)
        else:
            body = newlink_body(link, stack.enter_context(rtnl.ns_fd(q.namespace, doing)))
        try:
            ps.request(C.RTM_NEWLINK, C.NLM_F_CREATE | C.NLM_F_EXCL, body)
        except NetlinkRefusal as exc:
            if exc.errno == errno.EEXIST:
                if rtnl.get_link(ps, p.name) is not None:
                    raise name_taken(p.name, p.namespace) from None
                if q is not None and rtnl.get_link(qs, q.name) is not None:
                    raise name_taken(q.name, q.namespace) from None
            raise explain(op, exc) from None
        if link.pairing == "single":
            _check_single(ps, link, op)
        try:
            _configure(ps, p, "primary", link.owner, link.applied)
            if q is not None:
                _configure(qs, q, "peer", link.owner, None)
        except KernelError as exc:
            # the original error is the one reported; a pair whose removal is refused too stays
            # behind half-configured, and the error says so (no journal holds it: the applier
            # records a step once it is done)
            refused = _delete_by_name(ps, p.name)
            if refused is None:
                raise
            left = f"{p.name} in {where(p.namespace)}"
            raise KernelError(
                f"{exc}\nremoving the half-made {left} was refused too ({refused}): it stays behind; "
                "run `nkplan plan` to see it",
                exc.errno,
            ) from None
        except BaseException:
            _delete_by_name(ps, p.name)
            raise


def delete_link(link: LinkRec) -> None:
    p = link.primary
    op = Op("delete_link", p.name, p.namespace, noun(link))
    with ns_socket(p.namespace, op.phrase()) as sock:
        dev = rtnl.get_link(sock, p.name)
        if dev is None:
            raise explain(op, NetlinkRefusal(errno.ENODEV, None))
        if dev.kind != link.kind:  # never delete something that is not the pair we mean
            raise KernelError(
                f"{op.phrase()}: refusing, {p.name} in {where(p.namespace)} is a {dev.kind or 'physical'} device"
            )
        call(sock, op, C.RTM_DELLINK, 0, setlink(dev.ifindex))


# update ------------------------------------------------------------------------------------------
def _try_created_only(sock: RtnlSocket, kind: KernelKind, before: LinkRec, after: LinkRec, index: int) -> None:
    """A change the kernel does not allow in place is still put to the kernel, so the refusal is
    the kernel's own; a kernel that silently ignores the attribute is caught by reading back."""
    name, ns = after.primary.name, after.primary.namespace
    for path in kind.table.created_only:
        setting, peer = kind.at(path)
        want = value_at(after, path)
        if not setting.writable or want is None or want == value_at(before, path):
            continue
        op = Op("change_fixed", name, ns, path_label(path))
        attr = (setting.peer_attr if peer else setting.attr) or ""
        call(sock, op, C.RTM_NEWLINK, 0, info_body(index, kind.name, (attr, setting.to_kernel(want))))
        if need_link(sock, name, ns).info.get(setting.number(peer)) != setting.to_kernel(want):
            raise KernelError(f"{op.phrase()}: this kernel ({os.uname().release}) accepted but ignored it", None)


def _change_settings(sock: RtnlSocket, kind: KernelKind, before: LinkRec, after: LinkRec, index: int) -> None:
    """The settings that change in place (netkit: the two policies), one request per setting,
    both ends' values through the primary."""
    p, q = after.primary, after.peer
    for s in kind.changeable():
        if s.per_end:
            paths = s.paths  # primary's, peer's (None on a single device: it has no peer)
            values = [(s.attr, value_at(after, paths[0])), (s.peer_attr, value_at(after, paths[1]))]
            if [v for _, v in values] == [value_at(before, path) for path in paths]:
                continue
            detail = f"{values[0][1]}/{values[1][1]} (primary/peer)" if q is not None else str(values[0][1])
        else:
            values = [(s.attr, getattr(after, s.field))]
            if values[0][1] == getattr(before, s.field):
                continue
            detail = str(values[0][1])
        data = [(a or "", s.to_kernel(v)) for a, v in values if v is not None]
        op = Op(f"set_{s.field}", p.name, p.namespace, detail)
        call(sock, op, C.RTM_NEWLINK, 0, info_body(index, kind.name, *data))


def _update_end(
    sock: RtnlSocket,
    before: EndRec,
    after: EndRec,
    role: Role,
    owner_changed: bool,
    owner: str | None,
    applied: str | None = None,
) -> None:
    ns, name = after.namespace, after.name
    dev = need_link(sock, name, ns)
    if owner_changed:
        rtnl.set_alias(sock, dev.ifindex, name, ns, owner_alias(owner, role, applied) if owner else "")
    if after.mac is not None and after.mac != dev.mac:
        _set_mac(sock, dev.ifindex, after, dev.flags & C.IFF_UP != 0)
    was_up = bool(dev.flags & C.IFF_UP)
    flushed = False  # the kernel drops IPv6 addresses on admin down (keep_addr_on_down=0) and below MTU 1280
    if after.mtu != dev.mtu:
        call(sock, Op("set_mtu", name, ns, after.mtu), C.RTM_SETLINK, 0, mtu_body(dev.ifindex, after.mtu))
        flushed = after.mtu < 1280 <= dev.mtu
    write_sysctls(ns, name, (kv for kv in after.sysctls if kv not in before.sysctls))
    if was_up and not after.up:  # down before addresses: what is added while down stays
        rtnl.set_up(sock, dev.ifindex, name, ns, False)
        flushed = True
    # New addresses first: a device left without IPv4 addresses, even for a moment, loses every
    # route through it (fib_disable_ip). Deleting an old address can take the new ones of its
    # subnet with it (secondaries go with their primary unless promote_secondaries): put back.
    gone = [cidr for cidr in before.addresses if cidr not in after.addresses]
    for cidr in after.addresses:
        if flushed or cidr not in before.addresses:
            rtnl.add_address(sock, dev.ifindex, name, ns, cidr, tolerate_present=True)
    for cidr in gone:
        rtnl.del_address(sock, dev.ifindex, name, ns, cidr, tolerate_absent=True)
    for cidr in after.addresses if gone else ():
        if cidr not in before.addresses:
            rtnl.add_address(sock, dev.ifindex, name, ns, cidr, tolerate_present=True)
    if after.up and not was_up:
        rtnl.set_up(sock, dev.ifindex, name, ns, True)


def update_link(before: LinkRec, after: LinkRec) -> None:
    where_before = [(e.namespace, e.name) for e in before.ends]
    where_after = [(e.namespace, e.name) for e in after.ends]
    if before.kind != after.kind or where_before != where_after:
        raise InternalError(
            f"update of {after.primary.name} asks to change its kind, names or namespaces: that needs a replacement"
        )
    p, q = after.primary, after.peer
    doing = f"updating {noun(after)} {p.name} in {where(p.namespace)}"
    with ExitStack() as stack:
        ps = stack.enter_context(ns_socket(p.namespace, doing))
        qs = ps if q is None or q.namespace == p.namespace else stack.enter_context(ns_socket(q.namespace, doing))
        kind = KERNEL_KINDS[after.kind]
        if kind.settings:
            index = need_link(ps, p.name, p.namespace).ifindex
            _try_created_only(ps, kind, before, after, index)  # first: a refusal here leaves nothing half-changed
            _change_settings(ps, kind, before, after, index)
        changed = before.owner != after.owner
        _update_end(ps, before.primary, p, "primary", changed or after.owner is not None, after.owner, after.applied)
        if before.peer is not None and q is not None:
            _update_end(qs, before.peer, q, "peer", changed or after.owner is not None, after.owner)
