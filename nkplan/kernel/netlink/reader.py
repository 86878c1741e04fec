"""Read the host namespace and every named namespace into one LiveState.

One worker thread walks the namespaces: setns() into each, open a plain netlink socket there, dump
links, addresses and routes. Device pairs are then matched across namespaces through IFLA_LINK
(the other end's ifindex) and IFLA_LINK_NETNSID (where it lives, as an id local to the namespace
that reports it); ids are resolved with RTM_GETNSID, which only looks up and never assigns. Each
namespace is asked for its own id of the host, not the host for its id of each namespace: the
kernel answers by scanning the asker's id table, which in the host holds an id per pod (a read of
N pods asking the host would cost O(N^2)), in a pod one or two."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, Self

from nkplan.core.records import (
    HOST,
    RTPROT_NKPLAN,
    DeviceInfo,
    EndRec,
    LinkRec,
    LiveState,
    NamespaceRec,
    NexthopRec,
    Role,
    RouteRec,
    SysctlsRec,
    parse_applied_digest,
    parse_owner_alias,
)
from nkplan.core.sysctls import DEVICE_KEYS, NO_SYSCTLS, Sysctls, Value, dump_value, net_proc_path, reference_key
from nkplan.errors import CapabilityError, KernelError
from nkplan.kernel import procsys
from nkplan.kernel.netlink import consts as C
from nkplan.kernel.netlink import decode, netns, rules
from nkplan.kernel.netlink.decode import RawLink, RawRoute
from nkplan.kernel.netlink.kinds import KERNEL_KINDS
from nkplan.kernel.netlink.nlsock import IFADDRMSG, RTMSG, NetlinkRefusal, RtnlSocket, attr_u32, ifinfomsg, query_nsid
from nkplan.kernel.netlink.refusals import root_needed

PAIR_KINDS = tuple(KERNEL_KINDS)
_LINK_DUMP = ifinfomsg() + attr_u32(C.IFLA_EXT_MASK, C.RTEXT_FILTER_SKIP_STATS)
_ADDR_DUMP = IFADDRMSG.pack(C.AF_UNSPEC, 0, 0, 0, 0)
# With strict checking the kernel filters a route dump by rtm_protocol (IPv4, IPv6 and the
# others alike); rtm_table stays 0 because MPLS rejects a table in a strict dump request.
_ROUTE_DUMP = RTMSG.pack(C.AF_UNSPEC, 0, 0, 0, 0, RTPROT_NKPLAN, 0, 0, 0)

End = tuple[str, RawLink]  # (namespace, device)


@dataclass
class NsScan:
    name: str
    links: dict[int, RawLink] = field(default_factory=dict)
    routes: list[RawRoute] = field(default_factory=list)
    sysctls: dict[str, Value] | None = None  # asked-for net.* keys (None: none asked here)
    rules: list[rules.RawRule] = field(default_factory=list)  # all but the kernel's own
    cookie: int | None = None  # the namespace's netns cookie (None: the kernel does not tell)


def links(sock: RtnlSocket, with_af: bool = False) -> dict[int, RawLink]:
    """The devices of the socket's namespace by ifindex, without their addresses."""
    out: dict[int, RawLink] = {}
    for mtype, data, start, end in sock.dump(C.RTM_GETLINK, _LINK_DUMP):
        if mtype == C.RTM_NEWLINK:
            dev = decode.link(data, start, end, with_af)
            out[dev.ifindex] = dev
    return out


def scan(sock: RtnlSocket, name: str, with_af: bool = False) -> NsScan:
    """Links, the addresses of pair ends and nkplan routes of the socket's namespace (with_af: and
    each link's IFLA_AF_SPEC, for sysctls)."""
    out = NsScan(name, links(sock, with_af), cookie=sock.netns_cookie())
    for mtype, data, start, end in sock.dump(C.RTM_GETADDR, _ADDR_DUMP):
        if mtype == C.RTM_NEWADDR:
            # only a pair end's addresses make part of a record (_end): lo's and the like are not decoded
            dev = out.links.get(IFADDRMSG.unpack_from(data, start)[4])
            if dev is not None and dev.kind in PAIR_KINDS:
                got = decode.address(data, start, end)
                if got is not None:
                    dev.addresses.append(got[1])
    for mtype, data, start, end in sock.dump(C.RTM_GETROUTE, _ROUTE_DUMP):
        if mtype == C.RTM_NEWROUTE:
            rt = decode.route(data, start, end)
            if rt is not None:
                out.routes.append(rt)
    for mtype, data, start, end in sock.dump(rules.RTM_GETRULE, rules.DUMP):
        if mtype == rules.RTM_NEWRULE:
            rule = rules.decode(data, start, end)
            if rule is not None:
                out.rules.append(rule)
    return out


@dataclass
class Snapshot:
    scans: dict[str, NsScan]  # host ("") first, then named namespaces in sorted order
    namespaces: dict[str, NamespaceRec]  # named namespaces only
    pairs: list[tuple[End, End]]
    host_net_keys: frozenset[str] = frozenset()  # of all asked net.* keys, those the host has


def _read_net_keys(sc: NsScan, keys: frozenset[str] | None) -> None:
    """Inside the scanned namespace (the worker thread is there): the asked net.* keys."""
    if keys:
        sc.sysctls = procsys.read((k, net_proc_path(k)) for k in sorted(keys))


def _ns_mark(sc: NsScan) -> tuple[str | None, str | None]:
    """(owning stack, digest of its sysctls as applied) from the namespace's lo."""
    lo = next((d for d in sc.links.values() if d.name == "lo"), None)
    alias = lo.alias if lo else None
    parsed = parse_owner_alias(alias)
    if not parsed or parsed[1] != "ns":
        return None, None
    return parsed[0], parse_applied_digest(alias)


class Visitor(Protocol):
    """What read_state calls inside each namespace right after its dump (for per-namespace queries
    that take the scan's ifindexes, e.g. the BPF hooks of owned devices). With many namespaces a
    second process reads part of them (SPLIT_MIN): it visits with an empty visitor of the same
    kind (split) and hands it back pickled, and the reader merges it after the namespaces read
    here."""

    def __call__(self, namespace: str, scan: NsScan, /) -> None: ...

    def split(self) -> Self: ...

    def merge(self, other: Self, /) -> None: ...


# From this many named namespaces on, a second process reads the later ones while this one reads
# the host and the rest: a namespace costs ~0.3 ms (netlink dumps and decoding), forking ~5 ms, and
# passing a share's scans back a few us per namespace. A fixed pair of processes, never one per
# namespace. The child's share (percent of the named namespaces) leaves this process the host,
# which with a pod per host end costs about what a tenth of the pods do.
SPLIT_MIN = 200
CHILD_SHARE = 55


@dataclass
class _Part:
    """What one process read of its share of the named namespaces."""

    scans: dict[str, NsScan] = field(default_factory=dict)
    namespaces: dict[str, NamespaceRec] = field(default_factory=dict)
    home_ids: dict[str, int] = field(default_factory=dict)  # namespace name -> its id for the host namespace
    visitor: Visitor | None = None


def _targets(home: os.stat_result) -> list[tuple[str, bool]]:
    """The named namespaces in order, each with whether to read it (False: a second name of a
    namespace listed before it, or of the host: listing it is enough; its lo alias belongs to the
    first name, so it must not look owned twice). Removed while we were listing: left out."""
    seen = {(home.st_dev, home.st_ino)}
    out: list[tuple[str, bool]] = []
    for name in netns.named_namespaces():
        try:
            st = os.stat(netns.ns_path(name))
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            raise CapabilityError(f"{root_needed()} (reading namespace {name})") from exc
        key = (st.st_dev, st.st_ino)
        out.append((name, key not in seen))
        seen.add(key)
    return out


def _read_part(
    targets: list[tuple[str, bool]],
    home_fd: int,
    visit: Visitor | None,
    with_af: bool,
    net_keys: Mapping[str, frozenset[str]],
) -> _Part:
    """Read the named namespaces of `targets` (see _targets), moving the calling thread into each."""
    part = _Part(visitor=visit)
    for name, read in targets:
        if not read:
            part.namespaces[name] = NamespaceRec(name, None)
            continue
        try:
            fd = netns.open_ns(name)
        except FileNotFoundError:
            continue  # removed while we were reading
        except PermissionError as exc:
            raise CapabilityError(f"{root_needed()} (reading namespace {name})") from exc
        try:
            try:
                netns.setns(fd)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                part.namespaces[name] = NamespaceRec(name, None)  # a stale file, not a namespace
                continue
            with RtnlSocket(strict=True) as sock:
                sc = scan(sock, name, with_af)
                if any(d.link_nsid is not None and _is_pair_end(d) for d in sc.links.values()):
                    # an end whose other end lives elsewhere: is that the host? (pair_ends)
                    nsid = query_nsid(sock, home_fd)
                    if nsid >= 0:
                        part.home_ids[name] = nsid
            _read_net_keys(sc, net_keys.get(name))
            part.scans[name] = sc
            if visit is not None:
                visit(name, sc)
            part.namespaces[name] = NamespaceRec(name, _ns_mark(sc)[0])
        finally:
            os.close(fd)
    return part


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else f"wait status {status}"


def _forkable() -> bool:
    """No thread but nkplan's own (named nkplan-…, idle while a read runs) and the one waiting for
    this read: a lock another thread of an embedding program held at the fork would stay held in
    the child forever (its read could hang)."""
    me = threading.current_thread()
    return sum(1 for t in threading.enumerate() if t is not me and not t.name.startswith("nkplan-")) <= 1


class _Child:
    """read() running in a forked process (of the calling thread alone, which it starts in the
    namespace of); result() waits for what it returns (or raises what it raised), handed over
    pickled through a pipe (a process's share of 1000 pods: ~0.2 MB)."""

    def __init__(self, read: Callable[[], _Part]) -> None:
        """OSError when the fork is refused (a pids limit, memory): the caller reads it all itself."""
        rfd, wfd = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns of any fork in a threaded process; _forkable() made sure the
                # other threads are nkplan's own, idle, holding nothing the child takes
                warnings.simplefilter("ignore", DeprecationWarning)
                self.pid = os.fork()
        except OSError:
            os.close(rfd)
            os.close(wfd)
            raise
        if self.pid == 0:  # pragma: no cover - the child; the host tests check what it reads
            try:
                # a signal meant for the command (Ctrl-C reaches the process group) is the parent's
                # to act on: the child finishes its share (or dies of SIGPIPE's EPIPE) instead of
                # writing a cut-off result
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)
                os.close(rfd)
                try:
                    out: tuple[bool, object] = (True, read())
                except BaseException as exc:  # noqa: BLE001 - handed to the parent
                    out = (False, exc)
                try:
                    data = pickle.dumps(out, pickle.HIGHEST_PROTOCOL)
                except Exception as exc:  # noqa: BLE001 - an exception that does not pickle: its words
                    data = pickle.dumps((False, KernelError(f"reading network state: {out[1]!r} ({exc})")))
                with os.fdopen(wfd, "wb") as pipe:
                    pipe.write(data)
            finally:
                os._exit(0)
        os.close(wfd)
        self.rfd = rfd

    def result(self) -> _Part:
        try:
            with os.fdopen(self.rfd, "rb") as pipe:
                data = pipe.read()
        finally:
            _pid, status = os.waitpid(self.pid, 0)
        # killed (the OOM killer, a signal to it alone) or cut off: a readable error, not a traceback
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0 or not data:
            why = _ended(status)
            raise KernelError(f"reading network state: the second reader process ended without a result ({why})")
        try:
            ok, got = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - a result cut short
            why = f"the second reader process's result is unreadable ({exc})"
            raise KernelError(f"reading network state: {why}") from None
        if not ok:
            raise got
        assert isinstance(got, _Part)
        return got

    def abandon(self) -> None:
        """This process failed: close the pipe (the child's write fails, and it ends) and reap it."""
        os.close(self.rfd)
        os.waitpid(self.pid, 0)


def _walk(
    visit: Visitor | None = None, with_af: bool = False, net_keys: Mapping[str, frozenset[str]] | None = None
) -> Snapshot:
    """Runs in a disposable worker thread: it moves between namespaces and never returns home.
    visit: see Visitor."""
    try:
        home_fd = netns.thread_ns_fd()
    except PermissionError as exc:
        raise CapabilityError(root_needed()) from exc
    try:
        host_sock = RtnlSocket(strict=True)
    except OSError as exc:
        os.close(home_fd)
        if isinstance(exc, PermissionError):
            raise CapabilityError(root_needed()) from exc
        raise
    scans: dict[str, NsScan] = {}
    with host_sock, os.fdopen(home_fd, "rb", buffering=0):  # closes home_fd
        net_keys = net_keys or {}
        asked = dict(net_keys)
        targets = _targets(os.fstat(home_fd))
        child = None
        if len(targets) >= SPLIT_MIN and len(os.sched_getaffinity(0)) > 1 and _forkable():
            # forked first, so the host's scan here overlaps it too: it takes the larger share
            cut = len(targets) * (100 - CHILD_SHARE) // 100
            other = visit.split() if visit is not None else None
            theirs = targets[cut:]
            try:
                child = _Child(lambda: _read_part(theirs, home_fd, other, with_af, asked))
                targets = targets[:cut]
            except OSError:
                child = None  # no second process (a pids limit, memory): this one reads them all
        try:
            scans[HOST] = scan(host_sock, HOST, with_af)
            _read_net_keys(scans[HOST], net_keys.get(HOST))
            every = {reference_key(k) for keys in net_keys.values() for k in keys}
            # readable (a write-only key such as net.ipv4.route.flush exists but could never be compared)
            host_has = frozenset(k for k in every if os.access(net_proc_path(k), os.R_OK))
            if visit is not None:
                visit(HOST, scans[HOST])
            parts = [_read_part(targets, home_fd, visit, with_af, asked)]
        except BaseException:
            if child is not None:
                child.abandon()
            raise
        if child is not None:
            parts.append(child.result())
    namespaces: dict[str, NamespaceRec] = {}
    home_ids: dict[str, int] = {}
    for part in parts:  # in namespace order: this process's share comes first
        scans.update(part.scans)
        namespaces.update(part.namespaces)
        home_ids.update(part.home_ids)
        if visit is not None and part.visitor is not None and part.visitor is not visit:
            visit.merge(part.visitor)
    return Snapshot(scans, namespaces, pair_ends(scans, home_ids, _verify_between), host_has)


def _verify_between(a: str, b: str) -> int:
    """The id namespace a uses for namespace b (worker thread only: it enters a)."""
    fa = netns.open_ns(a)
    fb = netns.open_ns(b)
    try:
        netns.setns(fa)
        with RtnlSocket() as sock:
            return query_nsid(sock, fb)
    finally:
        os.close(fa)
        os.close(fb)


def is_single(d: RawLink) -> bool:
    """A netkit device in single mode (Linux 7.1+): no other end (its dump says IFLA_LINK 0)."""
    return d.kind == "netkit" and d.info.get(C.IFLA_NETKIT_PAIRING) == C.NETKIT_DEVICE_SINGLE


def _is_pair_end(d: RawLink) -> bool:
    return d.kind in PAIR_KINDS and d.link is not None and not is_single(d)


def pair_ends(
    scans: dict[str, NsScan], home_ids: dict[str, int], between: Callable[[str, str], int]
) -> list[tuple[End, End]]:
    """Match the two ends of every veth/netkit pair whose both ends were read.

    Same namespace: IFLA_LINK is the other's ifindex, no netnsid. Otherwise the candidates whose
    (ifindex, IFLA_LINK) mirror ours, confirmed by ids: between the host and a named namespace,
    the named end's netnsid must be its namespace's id of the host (home_ids, asked with
    RTM_GETNSID from inside it while it was read; the host's ifindexes are unique, so that end's
    other end is the host end it mirrors); between two named namespaces, one RTM_GETNSID from
    inside ours (between)."""
    cache: dict[tuple[str, str], int] = {}
    mirrors: dict[tuple[int, int], list[End]] = defaultdict(list)
    for ns, sc in scans.items():
        for d in sc.links.values():
            if _is_pair_end(d) and d.link_nsid is not None:
                mirrors[(d.ifindex, d.link or 0)].append((ns, d))

    def mirrors_me(me: RawLink, other: RawLink | None, foreign: bool) -> bool:
        return (
            other is not None
            and other.kind == me.kind
            and other.link == me.ifindex
            and (other.link_nsid is not None) == foreign
        )

    done: set[tuple[str, int]] = set()
    pairs: list[tuple[End, End]] = []
    for ns, sc in scans.items():
        for me in sc.links.values():
            if not _is_pair_end(me) or (ns, me.ifindex) in done:
                continue
            found: End | None = None
            if me.link_nsid is None:
                other = sc.links.get(me.link or 0)
                if other is not None and other is not me and mirrors_me(me, other, False):
                    found = (ns, other)
            elif ns == HOST:
                for cns, cand in mirrors.get((me.link or 0, me.ifindex), ()):
                    if cns == HOST or cand.kind != me.kind or (cns, cand.ifindex) in done:
                        continue
                    if cand.link_nsid == home_ids.get(cns):
                        found = (cns, cand)
                        break
            else:
                for cns, cand in mirrors.get((me.link or 0, me.ifindex), ()):
                    if cns == ns or cand.kind != me.kind or (cns, cand.ifindex) in done:
                        continue
                    if cns == HOST:
                        ok = me.link_nsid == home_ids.get(ns)
                    else:
                        if (ns, cns) not in cache:
                            cache[(ns, cns)] = between(ns, cns)
                        ok = cache[(ns, cns)] == me.link_nsid
                    if ok:
                        found = (cns, cand)
                        break
            if found is not None:
                done.add((ns, me.ifindex))
                done.add((found[0], found[1].ifindex))
                pairs.append(((ns, me), found))
    return pairs


# records -------------------------------------------------------------------------------------------
def _role(d: RawLink) -> tuple[str | None, Role | None]:
    parsed = parse_owner_alias(d.alias)
    return (parsed[0], parsed[1]) if parsed else (None, None)


def _primary_first(a: End, b: End) -> tuple[End, End]:
    """Which end is the primary: netkit says so itself; for veth the ownership alias does, and an
    unowned pair is ordered deterministically (the host end, else the lower (namespace, name))."""
    if a[1].kind == "netkit":
        pa, pb = a[1].info.get(C.IFLA_NETKIT_PRIMARY), b[1].info.get(C.IFLA_NETKIT_PRIMARY)
        if pa and not pb:
            return a, b
        if pb and not pa:
            return b, a
    ra, rb = _role(a[1])[1], _role(b[1])[1]
    if ra == "primary" and rb != "primary":
        return a, b
    if rb == "primary" and ra != "primary":
        return b, a
    if ra == "peer" and rb != "peer":
        return b, a
    if rb == "peer" and ra != "peer":
        return a, b
    if (a[0] == HOST) != (b[0] == HOST):
        return (a, b) if a[0] == HOST else (b, a)
    return (a, b) if (a[0], a[1].name) <= (b[0], b[1].name) else (b, a)


def _sysctls(d: RawLink, keys: frozenset[str]) -> Sysctls:
    if not keys or d.af_spec is None:
        return NO_SYSCTLS
    conf = decode.device_conf(d.af_spec)
    got = []
    for key in keys:
        family, pos = DEVICE_KEYS[key]
        values = conf.get(family, ())
        if pos < len(values):  # a key this kernel does not have is left out
            got.append((key, dump_value(key, values[pos])))
    return Sysctls(sorted(got))


def known_sysctls(snap: Snapshot) -> frozenset[str]:
    """The per-device keys this kernel has, from the length of the host lo's conf arrays."""
    lo = next((d for d in snap.scans[HOST].links.values() if d.name == "lo" and d.af_spec), None)
    if lo is None or lo.af_spec is None:
        return frozenset()
    conf = decode.device_conf(lo.af_spec)
    return frozenset(k for k, (family, pos) in DEVICE_KEYS.items() if pos < len(conf.get(family, ())))


def _end(e: End, keys: frozenset[str]) -> EndRec:
    ns, d = e
    kind = KERNEL_KINDS.get(d.kind)
    return EndRec(
        namespace=ns,
        name=d.name,
        mtu=d.mtu,
        up=bool(d.flags & C.IFF_UP),
        mac=d.mac,
        addresses=tuple(c for *_k, c in sorted(d.addresses)),
        sysctls=_sysctls(d, keys),
        # each end's own dump reports its own per-end settings (kinds.py), so no reversal here
        **(kind.end_values(d.info) if kind else {}),
    )


def link_record(a: End, b: End | None, keys: frozenset[str] = frozenset()) -> LinkRec:
    """The record of a pair (a, b in either order), or of a single netkit device (b None)."""
    prim, peer = _primary_first(a, b) if b is not None else (a, None)
    d = prim[1]
    kind = KERNEL_KINDS.get(d.kind)
    return LinkRec(
        kind=d.kind,  # type: ignore[arg-type]
        primary=_end(prim, keys),
        peer=_end(peer, keys) if peer is not None else None,
        owner=_role(d)[0],
        applied=parse_applied_digest(d.alias),
        **(kind.pair_values(d.info) if kind else {}),
    )


def _route(ns: str, sc: NsScan, rt: RawRoute, ns_owner: str | None) -> RouteRec:
    """A route with its devices named; owned by the stack that owns the device it sends
    through (a multipath route: its first nexthop's); one that sends through no device
    (blackhole and the like) by the owner of its namespace."""

    def name(oif: int | None) -> str | None:
        dev = sc.links.get(oif) if oif is not None else None
        return dev.name if dev is not None else None

    hops = tuple(NexthopRec(nh.via, name(nh.oif), nh.weight, nh.onlink) for nh in rt.nexthops)
    first = rt.oif if rt.oif is not None else (rt.nexthops[0].oif if rt.nexthops else None)
    owner_dev = sc.links.get(first) if first is not None else None
    return RouteRec(
        namespace=ns,
        to=rt.to,
        via=rt.via,
        dev=name(rt.oif),
        metric=rt.metric,
        owner=_role(owner_dev)[0] if owner_dev else ns_owner,
        table=rt.table,
        type=rt.type,  # type: ignore[arg-type]
        scope=rt.scope,  # type: ignore[arg-type]
        src=rt.src,
        onlink=rt.onlink,
        mtu=rt.mtu,
        nexthops=hops,
    )


def build(snap: Snapshot, keys: frozenset[str] = frozenset()) -> LiveState:
    live = LiveState(namespaces=snap.namespaces)
    for ns, sc in snap.scans.items():
        if sc.cookie is not None:
            live.netns_cookies[ns] = sc.cookie
        for d in sc.links.values():
            owner, role = _role(d)
            live.devices[(ns, d.name)] = DeviceInfo(ns, d.name, d.kind, d.ifindex, owner, role)
        for rt in sc.routes:
            ns_rec = snap.namespaces.get(ns)
            live.routes.append(_route(ns, sc, rt, ns_rec.owner if ns_rec else None))
    for ns, sc in snap.scans.items():
        # a named namespace's owner owns the rules with nkplan's protocol (host ones: by marker)
        ns_owner = snap.namespaces[ns].owner if ns != HOST else None
        for raw in sc.rules:
            live.rules.append(rules.record(ns, raw, ns_owner if raw.protocol == RTPROT_NKPLAN else None))
    ends: list[tuple[End, End | None]] = [*snap.pairs]
    ends += [((ns, d), None) for ns, sc in snap.scans.items() for d in sc.links.values() if is_single(d)]
    for a, b in ends:
        rec = link_record(a, b, keys)
        live.links[(rec.primary.namespace, rec.primary.name)] = rec
    for ns, sc in snap.scans.items():
        owner, applied = _ns_mark(sc) if ns != HOST else (None, None)
        if owner and applied:
            live.ns_sysctl_marks[ns] = applied
        if sc.sysctls is not None:
            live.sysctls[ns] = SysctlsRec(ns, Sysctls(sorted(sc.sysctls.items())), owner, applied)
    return live


@dataclass(frozen=True)
class Read:
    live: LiveState  # without KernelInfo
    device_keys: frozenset[str]  # the per-device sysctl keys this kernel has (empty unless asked)
    host_net_keys: frozenset[str]  # of the asked net.* keys, those the host namespace has


def read_state(
    visit: Visitor | None = None,
    sysctls: frozenset[str] = frozenset(),
    net_keys: Mapping[str, frozenset[str]] | None = None,
) -> Read:
    """Everything the host namespace and the named namespaces hold; visit: see _walk. sysctls:
    the per-device keys to read on every pair end; net_keys: the net.* keys to read per namespace
    (HOST: the host's)."""
    try:
        snap = netns.run_in_thread(lambda: _walk(visit, bool(sysctls), net_keys))
    except NetlinkRefusal as exc:
        raise KernelError(
            f"reading network state: the kernel refused a dump ({os.strerror(exc.errno)})", exc.errno
        ) from exc
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise CapabilityError(root_needed()) from exc
        raise KernelError(f"reading network state: {exc.strerror or exc}", exc.errno) from exc
    return Read(build(snap, sysctls), known_sysctls(snap) if sysctls else frozenset(), snap.host_net_keys)
