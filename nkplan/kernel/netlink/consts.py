"""Kernel ABI numbers nkplan uses (include/uapi/linux/{netlink,rtnetlink,if_link,net_namespace}.h).

Kept as plain ints in one place so the fast reader and the writer need neither pyroute2 nor
kernel headers (bookworm's headers predate netkit)."""

from __future__ import annotations

import struct

# netlink ------------------------------------------------------------------------------------
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # errors echo only the request's header, not its whole payload
NETLINK_EXT_ACK = 11  # errors carry the kernel's extended-ack text (what iproute2 prints)
NETLINK_GET_STRICT_CHK = 12  # dump requests are validated strictly, and may filter

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR

NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

# rtnetlink message types --------------------------------------------------------------------
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTM_NEWNSID = 88
RTM_GETNSID = 90

AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 10

# links ----------------------------------------------------------------------------------------
IFF_UP = 0x1
IFF_NOARP = 0x80

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_NET_NS_FD = 28
IFLA_GROUP = 27
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_AF_SPEC = 26
IFLA_INET_CONF = 1  # inside IFLA_AF_SPEC / AF_INET: u32 per IPV4_DEVCONF_* (from 1)
IFLA_INET6_CONF = 2  # inside IFLA_AF_SPEC / AF_INET6: s32 per DEVCONF_* (from 0)

IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2

VETH_INFO_PEER = 1

RTEXT_FILTER_SKIP_STATS = 1 << 3  # keeps dumps small: stats are ~40% of a link message

# netkit (drivers/net/netkit.c; see NETKIT-FACTS.md for kernel versions)
IFLA_NETKIT_PEER_INFO = 1
IFLA_NETKIT_PRIMARY = 2
IFLA_NETKIT_POLICY = 3
IFLA_NETKIT_PEER_POLICY = 4
IFLA_NETKIT_MODE = 5
IFLA_NETKIT_SCRUB = 6
IFLA_NETKIT_PEER_SCRUB = 7
IFLA_NETKIT_HEADROOM = 8
IFLA_NETKIT_TAILROOM = 9
IFLA_NETKIT_PAIRING = 10

NETKIT_PASS = 0
NETKIT_DROP = 2
NETKIT_L2 = 0
NETKIT_L3 = 1
NETKIT_SCRUB_NONE = 0
NETKIT_SCRUB_DEFAULT = 1
NETKIT_DEVICE_PAIR = 0
NETKIT_DEVICE_SINGLE = 1

POLICY_TO_KERNEL = {"forward": NETKIT_PASS, "blackhole": NETKIT_DROP}
POLICY_FROM_KERNEL = {v: k for k, v in POLICY_TO_KERNEL.items()}
MODE_TO_KERNEL = {"l2": NETKIT_L2, "l3": NETKIT_L3}
MODE_FROM_KERNEL = {v: k for k, v in MODE_TO_KERNEL.items()}
SCRUB_TO_KERNEL = {"none": NETKIT_SCRUB_NONE, "default": NETKIT_SCRUB_DEFAULT}
SCRUB_FROM_KERNEL = {v: k for k, v in SCRUB_TO_KERNEL.items()}
PAIRING_TO_KERNEL = {"pair": NETKIT_DEVICE_PAIR, "single": NETKIT_DEVICE_SINGLE}

# addresses ------------------------------------------------------------------------------------
IFA_ADDRESS = 1
IFA_LOCAL = 2

# routes ---------------------------------------------------------------------------------------
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_METRICS = 8
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTA_VIA = 18
RTAX_MTU = 2  # inside RTA_METRICS
RTNH_F_ONLINK = 4  # rtm_flags of a single-path route, rtnh_flags of a nexthop
RTNEXTHOP = struct.Struct("=HBBi")  # struct rtnexthop: len, flags, hops (weight - 1), ifindex

RT_TABLE_UNSPEC = 0
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
# route types and scopes: the kernel's numbers ↔ iproute2's words (RouteRec.type / .scope)
ROUTE_TYPES = {"unicast": 1, "local": 2, "blackhole": 6, "unreachable": 7, "prohibit": 8, "throw": 9}
ROUTE_TYPE_NAMES = {n: w for w, n in ROUTE_TYPES.items()}
SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254}
SCOPE_NAMES = {n: w for w, n in SCOPES.items()}

# network namespace ids ------------------------------------------------------------------------
NETNSA_NSID = 1
NETNSA_FD = 3

# namespaces (sched.h, mount.h) ----------------------------------------------------------------
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 0x2
