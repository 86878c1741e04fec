"""A minimal rtnetlink socket and attribute codec (standard library only).

Why not pyroute2 here: importing pyroute2 costs ~0.13 s and decoding with its message classes
~0.7 ms per namespace; the reader's budget for 1000 namespaces is well under a second. A plain
netlink socket also stays bound to the namespace of the thread that opened it, which is how
nkplan reaches named namespaces without pyroute2's NetNS helper processes.

The socket asks for extended acks, so a refusal carries the kernel's own explanation (the text
iproute2 prints), which pyroute2 drops. Requests that change the kernel are encoded by pyroute2
(encode.py) and sent through this socket; the packers below serve only the read side: dump and
lookup requests, and the netkit probe (probe.py)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence

from nkplan.kernel import faultpoint
from nkplan.kernel.netlink import consts as C

_HDR = struct.Struct("=IHHII")  # struct nlmsghdr
_NLA = struct.Struct("=HH")  # struct nlattr
_ERR = struct.Struct("=i")
_RECV_SIZE = 65536
_DUMP_RETRIES = 5


class NetlinkRefusal(Exception):
    """The kernel answered a request with an error. Internal: callers turn it into KernelError
    (see refusals.py) because only they know which operation on which object failed."""

    def __init__(self, errno: int, message: str | None) -> None:
        self.errno = errno
        self.message = message  # the extended-ack text, if the kernel gave one
        super().__init__(errno, message)


class Pickles:
    """Base of the reader's slots dataclasses: pickled as their constructor call with the fields
    in order, which loads ~4x faster than the generic path for slots (a forked reader hands back
    ~1000 such objects per 500 pods: reader._Child)."""

    __slots__: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return (type(self), tuple([getattr(self, name) for name in self.__slots__]))


# attribute encoding ---------------------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    n = _NLA.size + len(payload)
    return _NLA.pack(n, kind) + payload + b"\0" * (-n & 3)


def nest(kind: int, *parts: bytes) -> bytes:
    # No NLA_F_NESTED, like iproute2: rtnetlink parses these attributes leniently either way,
    # and IFLA_NETKIT_PEER_INFO is not even an NLA_NESTED in the kernel's policy.
    return attr(kind, b"".join(parts))


def attr_u16(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("=H", v))


def attr_u32(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("=I", v))


def attr_str(kind: int, v: str) -> bytes:
    return attr(kind, v.encode() + b"\0")


# attribute decoding ---------------------------------------------------------------------------
def parse_attrs(buf: bytes, off: int, end: int, wanted: frozenset[int] | None = None) -> dict[int, bytes]:
    """Attributes in buf[off:end] by type (flags masked off); last one wins. With wanted, only
    those types are copied out (a link message carries ~40 attributes; the reader needs 7)."""
    out: dict[int, bytes] = {}
    unpack = _NLA.unpack_from
    while off + 4 <= end:
        n, kind = unpack(buf, off)
        if n < 4:
            break
        kind &= C.NLA_TYPE_MASK
        if wanted is None or kind in wanted:
            out[kind] = buf[off + 4 : off + n]
        off += (n + 3) & ~3
    return out


def u32(b: bytes) -> int:
    return int.from_bytes(b[:4], "little")


def s32(b: bytes) -> int:
    return int.from_bytes(b[:4], "little", signed=True)


def asciiz(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def _iter_messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, payload offset, message end) for every message in one datagram."""
    off = 0
    size = len(data)
    while off + _HDR.size <= size:
        length, mtype, flags, seq, _pid = _HDR.unpack_from(data, off)
        if length < _HDR.size:
            break
        yield mtype, flags, seq, off + _HDR.size, min(off + length, size)
        off += (length + 3) & ~3


def _decode_error(data: bytes, start: int, end: int, flags: int) -> NetlinkRefusal | None:
    (err,) = _ERR.unpack_from(data, start)
    if err == 0:
        return None
    off = start + _ERR.size
    if flags & C.NLM_F_CAPPED:
        off += _HDR.size
    else:  # the whole request is echoed back: skip it
        (orig_len,) = struct.unpack_from("=I", data, off)
        off += (orig_len + 3) & ~3
    text = None
    if flags & C.NLM_F_ACK_TLVS:
        tlvs = parse_attrs(data, off, end)
        if C.NLMSGERR_ATTR_MSG in tlvs:
            text = asciiz(tlvs[C.NLMSGERR_ATTR_MSG]) or None
    return NetlinkRefusal(-err, text)


class RtnlSocket:
    """One NETLINK_ROUTE socket. It belongs to the network namespace of the thread that created
    it for its whole life, whichever thread uses it later."""

    def __init__(self, *, strict: bool = False) -> None:
        """strict: ask for strict checking of dump requests, which lets the kernel filter dumps
        by the header's fields (the reader asks for routes of one protocol only)."""
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, C.NETLINK_ROUTE)
        try:
            self._sock.setsockopt(C.SOL_NETLINK, C.NETLINK_EXT_ACK, 1)
            self._sock.setsockopt(C.SOL_NETLINK, C.NETLINK_CAP_ACK, 1)
            if strict:
                self._sock.setsockopt(C.SOL_NETLINK, C.NETLINK_GET_STRICT_CHK, 1)
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def netns_cookie(self) -> int | None:
        """The cookie of the socket's namespace (netns.socket_cookie)."""
        from nkplan.kernel.netlink.netns import socket_cookie

        return socket_cookie(self._sock)

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, mtype: int, flags: int, body: bytes) -> int:
        self._seq += 1
        msg = _HDR.pack(_HDR.size + len(body), mtype, flags | C.NLM_F_REQUEST, self._seq, 0) + body
        self._sock.sendto(msg, (0, 0))
        return self._seq

    def dump(self, mtype: int, body: bytes) -> list[tuple[int, bytes, int, int]]:
        """Every message of a dump as (type, datagram, payload offset, end). A dump the kernel
        flags as interrupted (the table changed meanwhile) is repeated, so the result is one
        consistent snapshot."""
        for _ in range(_DUMP_RETRIES):
            seq = self._send(mtype, C.NLM_F_DUMP, body)
            out: list[tuple[int, bytes, int, int]] = []
            interrupted = False
            done = False
            while not done:
                data = self._sock.recv(_RECV_SIZE)
                for rtype, flags, rseq, start, end in _iter_messages(data):
                    if rseq != seq:
                        continue
                    if flags & C.NLM_F_DUMP_INTR:
                        interrupted = True
                    if rtype == C.NLMSG_DONE:
                        done = True
                        break
                    if rtype == C.NLMSG_ERROR:
                        refusal = _decode_error(data, start, end, flags)
                        if refusal is not None:
                            raise refusal
                        done = True
                        break
                    out.append((rtype, data, start, end))
            if not interrupted:
                return out
        raise NetlinkRefusal(4, "dump kept being interrupted by concurrent changes")  # EINTR

    def requests(
        self, reqs: Sequence[tuple[int, int, bytes]], per_send: int = 16
    ) -> list[tuple[list[tuple[int, bytes, int, int]], NetlinkRefusal | None]]:
        """Many requests (type, flags, body), each answered as request() answers it: (its replies,
        None) or ([], its refusal), in order. They go per_send to a datagram: the kernel takes
        the messages of one datagram one by one, each with its own ack, so N lookups or changes
        cost N/per_send round trips instead of N (per_send bounds what one datagram's answers
        take of the receive buffer). A change refused by a fault hook (faultpoint.py) ends the
        list: it is not sent, nor is any after it. With a hook installed they go one at a time,
        so its k-th change is the k-th one sent, as with request()."""
        out: list[tuple[list[tuple[int, bytes, int, int]], NetlinkRefusal | None]] = []
        step = 1 if faultpoint.installed() else max(1, per_send)
        for first in range(0, len(reqs), step):
            seqs: list[int] = []
            msgs: list[bytes] = []
            stop: NetlinkRefusal | None = None
            for mtype, flags, body in reqs[first : first + step]:
                if mtype & 3 != 2:  # a change (see request)
                    try:
                        faultpoint.reached(f"netlink({mtype})")
                    except OSError as exc:
                        stop = NetlinkRefusal(exc.errno or 0, exc.strerror)
                        break
                self._seq += 1
                seqs.append(self._seq)
                flags |= C.NLM_F_REQUEST | C.NLM_F_ACK
                msgs += [_HDR.pack(_HDR.size + len(body), mtype, flags, self._seq, 0), body]
            if seqs:
                self._sock.sendto(b"".join(msgs), (0, 0))
                out += self._answers(seqs)
            if stop is not None:
                out.append(([], stop))
                break
        return out

    def _answers(self, seqs: list[int]) -> list[tuple[list[tuple[int, bytes, int, int]], NetlinkRefusal | None]]:
        replies: dict[int, list[tuple[int, bytes, int, int]]] = {seq: [] for seq in seqs}
        done: dict[int, NetlinkRefusal | None] = {}
        while len(done) < len(seqs):
            data = self._sock.recv(_RECV_SIZE)
            for rtype, rflags, rseq, start, end in _iter_messages(data):
                if rseq not in replies or rseq in done:
                    continue
                if rtype == C.NLMSG_ERROR:
                    done[rseq] = _decode_error(data, start, end, rflags)
                elif rtype == C.NLMSG_DONE:
                    done[rseq] = None
                else:
                    replies[rseq].append((rtype, data, start, end))
        return [([], done[seq]) if done[seq] is not None else (replies[seq], None) for seq in seqs]

    def request(self, mtype: int, flags: int, body: bytes) -> list[tuple[int, bytes, int, int]]:
        """Send one request, wait for its ack; return any replies that came before the ack
        (for GET requests). Raises NetlinkRefusal on an error ack."""
        if mtype & 3 != 2:  # rtnetlink's GET types are 2 mod 4; every other request changes something
            try:
                faultpoint.reached(f"netlink({mtype})")
            except OSError as exc:
                raise NetlinkRefusal(exc.errno or 0, exc.strerror) from None
        seq = self._send(mtype, flags | C.NLM_F_ACK, body)
        replies: list[tuple[int, bytes, int, int]] = []
        while True:
            data = self._sock.recv(_RECV_SIZE)
            for rtype, rflags, rseq, start, end in _iter_messages(data):
                if rseq != seq:
                    continue
                if rtype == C.NLMSG_ERROR:
                    refusal = _decode_error(data, start, end, rflags)
                    if refusal is not None:
                        raise refusal
                    return replies
                if rtype == C.NLMSG_DONE:
                    return replies
                replies.append((rtype, data, start, end))


# fixed headers ----------------------------------------------------------------------------------
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTGENMSG = struct.Struct("=Bxxx")  # family, padded to NLMSG_ALIGN


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0, family: int = C.AF_UNSPEC) -> bytes:
    return IFINFOMSG.pack(family, 0, index, flags, change)


def query_nsid(sock: RtnlSocket, ns_fd: int) -> int:
    """The id the socket's namespace uses for the namespace behind ns_fd (-1 if none assigned).
    RTM_GETNSID only looks up; it never assigns an id."""
    replies = sock.request(C.RTM_GETNSID, 0, RTGENMSG.pack(C.AF_UNSPEC) + attr_u32(C.NETNSA_FD, ns_fd))
    for rtype, data, start, end in replies:
        if rtype == C.RTM_NEWNSID:
            attrs = parse_attrs(data, start + RTGENMSG.size, end)
            if C.NETNSA_NSID in attrs:
                return s32(attrs[C.NETNSA_NSID])
    return -1
