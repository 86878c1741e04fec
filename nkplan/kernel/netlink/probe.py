"""What the running kernel can do with netkit, found out in a throwaway namespace.

The probe thread unshares a fresh network namespace (the host namespace is never touched), creates
one netkit pair asking for scrub "none" and a headroom, and reads it back: old kernels silently
ignore attributes they do not know, so only the read-back tells whether they are honoured. The
same read-back tells single-device mode: the kernels that have it (7.1+) report every netkit
device's IFLA_NETKIT_PAIRING, added to the dump with it; older ones report none, and would turn a
request for a single device into a pair, so none is ever asked for here. The namespace and the
pair vanish when the thread ends.

The probe runs inside read() (a `plan` of a netkit spec), which must not import pyroute2, so its
one creation request is packed here by hand; a unit test checks it byte for byte against the
production encoder (links.newlink_body, through pyroute2)."""

from __future__ import annotations

import errno
import os

from nkplan.core.records import EndRec, KernelInfo, LinkRec
from nkplan.errors import CapabilityError, KernelError
from nkplan.kernel.netlink import consts as C
from nkplan.kernel.netlink import netns
from nkplan.kernel.netlink.nlsock import NetlinkRefusal, RtnlSocket, attr_str, attr_u16, attr_u32, ifinfomsg, nest
from nkplan.kernel.netlink.refusals import kernel_says, root_needed
from nkplan.kernel.netlink.rtnl import get_link

PROBE_HEADROOM = 64
_FLAGS = C.NLM_F_CREATE | C.NLM_F_EXCL


def probe_link(extras: bool) -> LinkRec:
    scrub = "none" if extras else None
    return LinkRec(
        kind="netkit",
        primary=EndRec("", "nkprobe0", scrub=scrub),  # type: ignore[arg-type]
        peer=EndRec("", "nkprobe1", scrub=scrub),  # type: ignore[arg-type]
        mode="l3",
        headroom=PROBE_HEADROOM if extras else None,
    )


def probe_body(extras: bool) -> bytes:
    """RTM_NEWLINK for probe_link(extras), attributes in the kind table's order (kinds.NETKIT)."""
    data = [
        nest(C.IFLA_NETKIT_PEER_INFO, ifinfomsg() + attr_str(C.IFLA_IFNAME, "nkprobe1")),
        attr_u32(C.IFLA_NETKIT_MODE, C.NETKIT_L3),
    ]
    if extras:
        data += [
            attr_u32(C.IFLA_NETKIT_SCRUB, C.NETKIT_SCRUB_NONE),
            attr_u32(C.IFLA_NETKIT_PEER_SCRUB, C.NETKIT_SCRUB_NONE),
            attr_u16(C.IFLA_NETKIT_HEADROOM, PROBE_HEADROOM),
        ]
    info = nest(C.IFLA_LINKINFO, attr_str(C.IFLA_INFO_KIND, "netkit"), nest(C.IFLA_INFO_DATA, *data))
    return ifinfomsg() + attr_str(C.IFLA_IFNAME, "nkprobe0") + info


Found = tuple[bool, bool, bool, bool]  # netkit, scrub, headroom, single
_NONE: Found = (False, False, False, False)


def _in_throwaway_ns() -> Found:
    netns.unshare_net()
    with RtnlSocket() as sock:
        try:
            sock.request(C.RTM_NEWLINK, _FLAGS, probe_body(True))
        except NetlinkRefusal as exc:
            if exc.errno == errno.EOPNOTSUPP:
                return _NONE
            # something about the extra attributes upset this kernel: is plain netkit there at all?
            try:
                sock.request(C.RTM_NEWLINK, _FLAGS, probe_body(False))
            except NetlinkRefusal as exc2:
                if exc2.errno == errno.EOPNOTSUPP:
                    return _NONE
                raise
            dev = get_link(sock, "nkprobe0")
            return True, False, False, dev is not None and C.IFLA_NETKIT_PAIRING in dev.info
        dev = get_link(sock, "nkprobe0")
        if dev is None:
            return _NONE
        scrub = dev.info.get(C.IFLA_NETKIT_SCRUB) == C.NETKIT_SCRUB_NONE
        headroom = dev.info.get(C.IFLA_NETKIT_HEADROOM) == PROBE_HEADROOM
        return True, scrub, headroom, C.IFLA_NETKIT_PAIRING in dev.info


def probe(release: str | None = None) -> KernelInfo:
    try:
        netkit, scrub, headroom, single = netns.run_in_thread(_in_throwaway_ns)
    except NetlinkRefusal as exc:
        raise KernelError(f"probing netkit support in a scratch namespace: {kernel_says(exc)}", exc.errno) from exc
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise CapabilityError(root_needed()) from exc
        raise KernelError(f"probing netkit support in a scratch namespace: {exc}", exc.errno) from exc
    return KernelInfo(release or os.uname().release, netkit, scrub and netkit, headroom and netkit, single and netkit)
