"""Building blocks for changing the kernel: a socket bound to a namespace, device lookup, and the
request bodies for links, addresses and routes (encoded by encode.py; RTA_MULTIPATH here). Every refusal
is turned into a KernelError that names the operation (refusals.explain)."""

from __future__ import annotations

import errno
import ipaddress
import os
import resource
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from nkplan.core.records import HOST, RTPROT_NKPLAN, RouteRec
from nkplan.errors import KernelError
from nkplan.kernel.netlink import consts as C
from nkplan.kernel.netlink import decode, encode, netns
from nkplan.kernel.netlink.decode import RawLink
from nkplan.kernel.netlink.nlsock import NetlinkRefusal, RtnlSocket, attr, attr_str, attr_u32, ifinfomsg
from nkplan.kernel.netlink.refusals import Op, explain, no_namespace

RT_SCOPE_NOWHERE = 255  # on delete: match a route of any scope, as iproute2 does


class SocketCache:
    """Sockets opened inside named namespaces, kept for the rest of one apply (its session): a
    socket stays in the namespace it was opened in, so later steps there (the pair's peer end,
    the pod's routes) need no thread hopping in to open another — that hop was a fifth of
    applying 1000 pods. A socket is reused only while the name still leads to the namespace it
    was opened in (same nsfs inode), is closed before its namespace is deleted (a socket holds
    its namespace alive), and all are closed with the session. A plan creates every namespace
    before any pair and route, so the cache must hold them all to help: up to a quarter of the
    open-files limit, at most MAX (least recently used closed first)."""

    MAX = 4096
    active: SocketCache | None = None

    def __init__(self) -> None:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.limit = self.MAX if soft == resource.RLIM_INFINITY else max(8, min(self.MAX, soft // 4))
        self._socks: dict[str, tuple[tuple[int, int], RtnlSocket]] = {}
        if threading.current_thread() is threading.main_thread():  # the applier's thread only
            SocketCache.active = self

    def get(self, ns: str, key: tuple[int, int]) -> RtnlSocket | None:
        hit = self._socks.get(ns)
        if hit is None:
            return None
        if hit[0] != key:
            self.forget(ns)
            return None
        self._socks[ns] = self._socks.pop(ns)  # most recently used last
        return hit[1]

    def keep(self, ns: str, key: tuple[int, int], sock: RtnlSocket) -> None:
        self.forget(ns)
        if len(self._socks) >= self.limit:
            self.forget(next(iter(self._socks)))
        self._socks[ns] = (key, sock)

    def forget(self, ns: str) -> None:
        hit = self._socks.pop(ns, None)
        if hit is not None:
            hit[1].close()

    def close(self) -> None:
        if SocketCache.active is self:
            SocketCache.active = None
        for ns in list(self._socks):
            self.forget(ns)


def forget_socket(ns: str) -> None:
    """Close the kept socket of namespace ns (before deleting the namespace)."""
    if SocketCache.active is not None:
        SocketCache.active.forget(ns)


@contextmanager
def ns_socket(ns: str, doing: str) -> Iterator[RtnlSocket]:
    """A netlink socket bound to namespace ns ("" = the host, i.e. the caller's own); inside an
    apply, one kept from an earlier step there (SocketCache)."""
    cache = SocketCache.active if threading.current_thread() is threading.main_thread() else None
    if ns == HOST:
        sock = RtnlSocket()
    else:
        with ns_fd(ns, doing) as fd:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            kept = cache.get(ns, key) if cache is not None else None
            if kept is not None:
                yield kept
                return
            try:
                sock = netns.in_namespace(fd, RtnlSocket)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    raise KernelError(f"{doing}: {netns.ns_path(ns)} is not a network namespace", exc.errno) from None
                raise explain(Op("lookup", ns, ns), exc) from None
        if cache is not None:
            cache.keep(ns, key, sock)
            yield sock
            return
    try:
        yield sock
    finally:
        sock.close()


@contextmanager
def ns_fd(ns: str, doing: str) -> Iterator[int]:
    """An fd for namespace ns, to hand to the kernel (IFLA_NET_NS_FD)."""
    if ns == HOST:
        fd = netns.thread_ns_fd()  # the caller's thread lives in the host namespace
    else:
        try:
            fd = netns.open_ns(ns)
        except FileNotFoundError:
            raise no_namespace(ns, doing) from None
    try:
        yield fd
    finally:
        os.close(fd)


def call(sock: RtnlSocket, op: Op, mtype: int, flags: int, body: bytes) -> None:
    try:
        sock.request(mtype, flags, body)
    except NetlinkRefusal as exc:
        raise explain(op, exc) from None


def getlink_body(name: str) -> bytes:
    """The RTM_GETLINK request for the device called name (get_link)."""
    return ifinfomsg() + attr_str(C.IFLA_IFNAME, name) + attr_u32(C.IFLA_EXT_MASK, C.RTEXT_FILTER_SKIP_STATS)


def found_link(name: str, replies: list[tuple[int, bytes, int, int]], refusal: NetlinkRefusal | None) -> RawLink | None:
    """What get_link makes of the answer to getlink_body(name)."""
    if refusal is not None:
        if refusal.errno == errno.ENODEV:
            return None
        raise explain(Op("lookup", name), refusal) from None
    for mtype, data, start, end in replies:
        if mtype == C.RTM_NEWLINK:
            return decode.link(data, start, end)
    return None


def get_link(sock: RtnlSocket, name: str) -> RawLink | None:
    """The device called name in the socket's namespace, or None. A lookup, not a change: packed
    by hand like the reader's dumps, because the netkit probe (part of read()) uses it too."""
    try:
        return found_link(name, sock.request(C.RTM_GETLINK, 0, getlink_body(name)), None)
    except NetlinkRefusal as exc:
        return found_link(name, [], exc)


def get_link_by_index(sock: RtnlSocket, index: int) -> RawLink | None:
    """The device with this ifindex in the socket's namespace, or None."""
    body = ifinfomsg(index) + attr_u32(C.IFLA_EXT_MASK, C.RTEXT_FILTER_SKIP_STATS)
    try:
        replies = sock.request(C.RTM_GETLINK, 0, body)
    except NetlinkRefusal as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise explain(Op("lookup", f"ifindex {index}"), exc) from None
    for mtype, data, start, end in replies:
        if mtype == C.RTM_NEWLINK:
            return decode.link(data, start, end)
    return None


def need_link(sock: RtnlSocket, name: str, ns: str) -> RawLink:
    dev = get_link(sock, name)
    if dev is None:
        raise explain(Op("lookup", name, ns), NetlinkRefusal(errno.ENODEV, None))
    return dev


# links ------------------------------------------------------------------------------------------
def setlink(index: int, *attrs: tuple[str, Any], flags: int = 0, change: int = 0) -> bytes:
    """RTM_SETLINK / RTM_NEWLINK (change) / RTM_DELLINK body for the device with ifindex index."""
    return encode.link(*attrs, index=index, flags=flags, change=change)


def mac_text(mac: str) -> str:
    """aa:bb:cc:dd:ee:ff, as pyroute2's IFLA_ADDRESS wants it, from any form the spec allows."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    return ":".join(f"{b:02x}" for b in raw)


def set_up(sock: RtnlSocket, index: int, name: str, ns: str, up: bool) -> None:
    op = Op("set_up", name, ns, "up" if up else "down")
    call(sock, op, C.RTM_SETLINK, 0, setlink(index, flags=C.IFF_UP if up else 0, change=C.IFF_UP))


def mark_namespace_lo(sock: RtnlSocket, index: int, ns: str, alias: str) -> None:
    """A namespace's lo marked as owned (its alias) and up, in one message: a process killed
    between two messages would leave an unowned namespace whose lo is down, and adopting it
    (which only marks) would keep lo down."""
    op = Op("set_alias", "lo", ns, alias)
    call(sock, op, C.RTM_SETLINK, 0, setlink(index, ("IFLA_IFALIAS", alias), flags=C.IFF_UP, change=C.IFF_UP))


def set_alias(sock: RtnlSocket, index: int, name: str, ns: str, alias: str) -> None:
    # an empty alias clears it (the kernel reports an empty alias as none)
    call(sock, Op("set_alias", name, ns, alias), C.RTM_SETLINK, 0, setlink(index, ("IFLA_IFALIAS", alias)))


# addresses --------------------------------------------------------------------------------------
def addr_body(cidr: str, index: int) -> bytes:
    iface = ipaddress.ip_interface(cidr)
    family = C.AF_INET if iface.version == 4 else C.AF_INET6
    ip = str(iface.ip)
    return encode.address(
        ("IFA_LOCAL", ip), ("IFA_ADDRESS", ip), family=family, prefixlen=iface.network.prefixlen, index=index
    )


def add_address(sock: RtnlSocket, index: int, name: str, ns: str, cidr: str, *, tolerate_present: bool) -> None:
    try:
        sock.request(C.RTM_NEWADDR, C.NLM_F_CREATE | C.NLM_F_EXCL, addr_body(cidr, index))
    except NetlinkRefusal as exc:
        if not (tolerate_present and exc.errno == errno.EEXIST):
            raise explain(Op("add_address", name, ns, cidr), exc) from None


def del_address(sock: RtnlSocket, index: int, name: str, ns: str, cidr: str, *, tolerate_absent: bool) -> None:
    try:
        sock.request(C.RTM_DELADDR, 0, addr_body(cidr, index))
    except NetlinkRefusal as exc:
        if not (tolerate_absent and exc.errno == errno.EADDRNOTAVAIL):
            raise explain(Op("del_address", name, ns, cidr), exc) from None


# routes -----------------------------------------------------------------------------------------
def route_body(route: RouteRec, oif: int | None, *, delete: bool = False, hop_oifs: Sequence[int | None] = ()) -> bytes:
    """RTM_NEWROUTE / RTM_DELROUTE body. oif: the ifindex of route.dev; hop_oifs: of each
    nexthop's dev (None where the kernel resolves it from the nexthop's gateway). A delete
    matches by table, destination and metric (and the single path's gateway/device, which the
    live record carries); a multipath route goes with all its nexthops."""
    attrs, header = route_request(route, oif, delete=delete)
    body = encode.route(*attrs, **header)
    if route.nexthops and not delete:
        body += _multipath(route, ipaddress.ip_network(route.to).version, hop_oifs)
    return body


def route_request(
    route: RouteRec, oif: int | None, *, delete: bool = False
) -> tuple[list[encode.Attr], dict[str, int]]:
    """The flat attributes and the struct rtmsg fields of a route request (RTA_MULTIPATH aside)."""
    net = ipaddress.ip_network(route.to, strict=False)
    family = C.AF_INET if net.version == 4 else C.AF_INET6
    if delete:
        scope, rtype = RT_SCOPE_NOWHERE, 0
    else:
        scope, rtype = C.SCOPES[route.scope or "global"] if family == C.AF_INET else 0, C.ROUTE_TYPES[route.type]
    attrs: list[tuple[str, Any]] = [("RTA_TABLE", route.table)]
    if net.prefixlen:
        attrs.append(("RTA_DST", str(net.network_address)))
    # always explicit: without it IPv6 stores 1024 and the read-back would differ from the record
    attrs.append(("RTA_PRIORITY", route.metric))
    if route.via is not None:
        attrs.append(_gateway_attr(route.via, net.version))
    if oif is not None:
        attrs.append(("RTA_OIF", oif))
    if not delete:
        if route.src is not None:
            attrs.append(("RTA_PREFSRC", route.src))
        if route.mtu is not None:
            attrs.append(("RTA_METRICS", {"attrs": [("RTAX_MTU", route.mtu)]}))
    header = {
        "family": family,
        "dst_len": net.prefixlen,
        "table": route.table if route.table < 256 else C.RT_TABLE_UNSPEC,  # RTA_TABLE says it in full
        "proto": RTPROT_NKPLAN,
        "scope": scope,
        "rtype": rtype,
        "flags": C.RTNH_F_ONLINK if route.onlink and not delete else 0,
    }
    return attrs, header


def _gateway_attr(via: str, version: int) -> tuple[str, Any]:
    ip = ipaddress.ip_address(via)
    if ip.version == version:
        return ("RTA_GATEWAY", str(ip))
    # an IPv4 route via an IPv6 next hop: struct rtvia
    return ("RTA_VIA", {"family": C.AF_INET6 if ip.version == 6 else C.AF_INET, "addr": str(ip)})


def _multipath(route: RouteRec, version: int, hop_oifs: Sequence[int | None]) -> bytes:
    """RTA_MULTIPATH, packed here: an array of struct rtnexthop, each followed by its gateway
    attribute. (pyroute2 encodes a nexthop's gateway in the family of the message it is built
    in, and its array values are beyond encode()'s check that every attribute was encoded.)"""
    hops = b""
    for nh, hop_oif in zip(route.nexthops, hop_oifs, strict=True):
        inner = b""
        if nh.via is not None:
            ip = ipaddress.ip_address(nh.via)
            if ip.version == version:
                inner = attr(C.RTA_GATEWAY, ip.packed)
            else:
                fam = C.AF_INET6 if ip.version == 6 else C.AF_INET
                inner = attr(C.RTA_VIA, struct.pack("=H", fam) + ip.packed)
        flags = C.RTNH_F_ONLINK if nh.onlink else 0
        hops += C.RTNEXTHOP.pack(C.RTNEXTHOP.size + len(inner), flags, nh.weight - 1, hop_oif or 0) + inner
    return attr(C.RTA_MULTIPATH, hops)
