"""Reachability probes on the running kernel, without a process per check or per namespace.

A socket stays bound to the network namespace it was created in. So the sockets of the checks of
one namespace are opened by a thread that has entered it (a small pool of such threads, one
namespace per task: netlink/netns.py's thread trick), and then the caller's thread drives every
socket at once with one selector: ICMP echo over a raw ICMP socket (root may open one in any
namespace; a ping socket would need net.ipv4.ping_group_range set in each namespace), a TCP
connect over a non-blocking stream socket. 200 checks that pass take milliseconds, not 200
round trips; a check that waits for its timeout waits alongside the others.

Each raw socket is connect()ed to its destination, so it receives only that address's packets
and only the ICMP errors about packets sent to it (the kernel matches both on the connected
address); IP_RECVERR makes those errors (host unreachable, ...) and local drops (ENOBUFS from a
qdisc or BPF program that dropped the echo request) visible to the check that caused them."""

from __future__ import annotations

import errno
import os
import selectors
import socket
import struct
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from nkplan.core.reach import Outcome, Probe
from nkplan.core.records import HOST
from nkplan.kernel.netlink import netns

BATCH = 256  # sockets open at once (file descriptors); more checks run batch by batch
OPENERS = 8  # threads opening sockets inside namespaces
RESEND = 0.25  # seconds between echo requests of one ICMP check (a first one may meet a tentative address)
ICMP_FILTER, SOL_RAW = 1, 255  # linux/icmp.h
ICMP6_FILTER = 1  # linux/icmpv6.h
IP_RECVERR, IPV6_RECVERR = 11, 25
ROUTE_ERRORS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL, errno.EACCES, errno.EPERM}


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(v6: bool, ident: int, seq: int) -> bytes:
    """An ICMP (type 8) or ICMPv6 (type 128) echo request; the kernel sums ICMPv6 itself."""
    payload = b"nkplan-check"
    kind = 128 if v6 else 8
    head = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:
        return head + payload
    return struct.pack("!BBHHH", kind, 0, _checksum(head + payload), ident, seq) + payload


def is_echo_reply(data: bytes, v6: bool, ident: int) -> bool:
    """Whether a packet read from a raw ICMP socket is the reply to one of our requests (an IPv4
    raw socket hands over the IP header too)."""
    if not v6:
        if len(data) < 20:
            return False
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < 8:
        return False
    kind: int = data[0]
    got: int = int.from_bytes(data[4:6], "big")
    return kind == (129 if v6 else 0) and got == ident


@dataclass
class _Live:
    """One probe in flight."""

    index: int
    probe: Probe
    sock: socket.socket
    started: float = 0.0
    ident: int = 0
    seq: int = 0
    next_send: float = 0.0
    last_error: str = ""
    deadline: float = field(default=0.0)


def _open(probe: Probe) -> socket.socket:
    v6 = ":" in probe.to
    family = socket.AF_INET6 if v6 else socket.AF_INET
    if probe.port is not None:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        return sock
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
    try:
        if v6:
            blocked = [0xFFFFFFFF] * 8
            for kind in (1, 3, 129):  # destination unreachable, time exceeded, echo reply
                blocked[kind >> 5] &= ~(1 << (kind & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *blocked))
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            passed = (1 << 0) | (1 << 3) | (1 << 11)  # echo reply, destination unreachable, time exceeded
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", ~passed & 0xFFFFFFFF))
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    except OSError:
        sock.close()
        raise
    return sock


def _open_group(fd: int, probes: list[tuple[int, Probe]]) -> list[tuple[int, socket.socket | Outcome]]:
    """Runs in a pool thread: enter the namespace, open each probe's socket there."""
    try:
        netns.setns(fd)
    except OSError as exc:  # not a network namespace, or no right to enter it: the probes fail
        return [(i, Outcome(None, f"cannot enter the namespace: {os.strerror(exc.errno or 0)}")) for i, _p in probes]
    out: list[tuple[int, socket.socket | Outcome]] = []
    for i, probe in probes:
        try:
            out.append((i, _open(probe)))
        except OSError as exc:
            out.append((i, Outcome(None, f"cannot open a socket: {os.strerror(exc.errno or 0)}")))
    return out


def _open_all(probes: Sequence[tuple[int, Probe]], outcomes: list[Outcome | None]) -> dict[int, socket.socket]:
    groups: dict[str, list[tuple[int, Probe]]] = {}
    for i, p in probes:
        groups.setdefault(p.namespace, []).append((i, p))
    fds: dict[str, int] = {}
    try:
        for ns in groups:
            try:
                fds[ns] = netns.thread_ns_fd() if ns == HOST else netns.open_ns(ns)
            except OSError as exc:
                why = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be opened ({exc.strerror})"
                for i, _p in groups[ns]:
                    outcomes[i] = Outcome(None, f"namespace {ns!r} {why}")
        opened: dict[int, socket.socket] = {}
        with ThreadPoolExecutor(max_workers=min(OPENERS, max(1, len(fds))), thread_name_prefix="nkplan-check") as pool:
            futures = [pool.submit(_open_group, fds[ns], groups[ns]) for ns in fds]
            for fut in futures:
                for i, got in fut.result():
                    if isinstance(got, Outcome):
                        outcomes[i] = got
                    else:
                        opened[i] = got
        return opened
    finally:
        for fd in fds.values():
            os.close(fd)


def probe_all(probes: Sequence[Probe]) -> list[Outcome]:
    """What each probe saw, in order."""
    outcomes: list[Outcome | None] = [None] * len(probes)
    indexed = list(enumerate(probes))
    for start in range(0, len(indexed), BATCH):
        _run_batch(indexed[start : start + BATCH], outcomes)
    return [o if o is not None else Outcome(None, "not run") for o in outcomes]


def _finish(live: _Live, sel: selectors.BaseSelector, outcomes: list[Outcome | None], outcome: Outcome) -> None:
    outcomes[live.index] = outcome
    try:
        sel.unregister(live.sock)
    except (KeyError, ValueError):
        pass
    live.sock.close()


def _start(live: _Live, sel: selectors.BaseSelector, outcomes: list[Outcome | None], now: float) -> None:
    p = live.probe
    live.started, live.deadline = now, now + p.timeout
    try:
        if p.port is not None:
            rc = live.sock.connect_ex((p.to, p.port))
            if rc == 0:
                _finish(live, sel, outcomes, Outcome(True, f"connected in {_ms(time.monotonic() - now)}"))
            elif rc == errno.EINPROGRESS:
                sel.register(live.sock, selectors.EVENT_WRITE, live)
            else:
                _finish(live, sel, outcomes, Outcome(False, f"connect failed: {os.strerror(rc)}"))
            return
        live.sock.connect((p.to, 0))  # a route lookup: no route, blackhole, prohibit end here
    except OSError as exc:
        _finish(live, sel, outcomes, Outcome(False, f"no route: {os.strerror(exc.errno or 0)}"))
        return
    sel.register(live.sock, selectors.EVENT_READ, live)
    _send_echo(live, now)


def _send_echo(live: _Live, now: float) -> None:
    live.seq += 1
    live.next_send = now + RESEND
    try:
        live.sock.send(echo_request(":" in live.probe.to, live.ident, live.seq))
    except OSError as exc:
        live.last_error = _send_error(exc.errno or 0)


def _send_error(err: int) -> str:
    if err == errno.ENOBUFS:
        return "the echo request was dropped on the way out (ENOBUFS: a qdisc or BPF program dropped it)"
    return f"could not send the echo request: {os.strerror(err)}"


def _readable(live: _Live, sel: selectors.BaseSelector, outcomes: list[Outcome | None], now: float) -> None:
    v6 = ":" in live.probe.to
    while True:
        try:
            data = live.sock.recv(2048)
        except BlockingIOError:
            return
        except OSError as exc:  # an ICMP error about our request (IP_RECVERR), e.g. host unreachable
            took = _ms(now - live.started)
            _finish(live, sel, outcomes, Outcome(False, f"ICMP error: {os.strerror(exc.errno or 0)} in {took}"))
            return
        if is_echo_reply(data, v6, live.ident):
            _finish(live, sel, outcomes, Outcome(True, f"echo reply in {_ms(now - live.started)}"))
            return


def _writable(live: _Live, sel: selectors.BaseSelector, outcomes: list[Outcome | None], now: float) -> None:
    err = live.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    took = _ms(now - live.started)
    if err == 0:
        _finish(live, sel, outcomes, Outcome(True, f"connected in {took}"))
    elif err == errno.ECONNREFUSED:
        _finish(live, sel, outcomes, Outcome(False, f"connection refused in {took}"))
    else:
        _finish(live, sel, outcomes, Outcome(False, f"connect failed: {os.strerror(err)} in {took}"))


def _timed_out(live: _Live) -> Outcome:
    wait = f"{live.probe.timeout:g} s"
    if live.probe.port is not None:
        return Outcome(False, f"no answer within {wait}")
    if live.last_error:
        return Outcome(False, f"{live.last_error}; no echo reply within {wait}")
    return Outcome(False, f"no echo reply within {wait}")


def _run_batch(batch: list[tuple[int, Probe]], outcomes: list[Outcome | None]) -> None:
    socks = _open_all(batch, outcomes)
    base = (os.getpid() * 7919) & 0xFFFF
    running: dict[int, _Live] = {}
    with selectors.DefaultSelector() as sel:
        try:
            now = time.monotonic()
            for n, (i, p) in enumerate(batch):
                if i in socks:
                    live = _Live(i, p, socks.pop(i), ident=(base + n) & 0xFFFF)
                    running[i] = live
                    _start(live, sel, outcomes, now)
            while True:
                pending = [lv for lv in running.values() if outcomes[lv.index] is None]
                if not pending:
                    return
                now = time.monotonic()
                for lv in pending:
                    if now >= lv.deadline:
                        _finish(lv, sel, outcomes, _timed_out(lv))
                    elif lv.probe.port is None and now >= lv.next_send:
                        _send_echo(lv, now)
                pending = [lv for lv in pending if outcomes[lv.index] is None]
                if not pending:
                    return
                wake = min(min(lv.deadline, lv.next_send if lv.probe.port is None else lv.deadline) for lv in pending)
                for key, _events in sel.select(max(0.0, wake - time.monotonic())):
                    lv = key.data
                    if outcomes[lv.index] is not None:
                        continue
                    if lv.probe.port is None:
                        _readable(lv, sel, outcomes, time.monotonic())
                    else:
                        _writable(lv, sel, outcomes, time.monotonic())
        finally:
            for lv in running.values():
                lv.sock.close()
            for s in socks.values():
                s.close()
