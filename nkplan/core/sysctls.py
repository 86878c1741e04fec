"""Sysctls. Per device (`net.ipv4.conf.DEV.KEY`, `net.ipv6.conf.DEV.KEY`), as a spec writes them
without the device part: `ipv4.rp_filter`, `ipv6.disable_ipv6`. Per namespace (and for the host):
any `net.*` key by its full name, `net.ipv4.ip_forward`, read and written as a /proc/sys file.

The kernel reports every one of a device's values in the link dump nkplan already reads
(IFLA_AF_SPEC: AF_INET → IFLA_INET_CONF, an array of u32 indexed by IPV4_DEVCONF_* - 1; AF_INET6 →
IFLA_INET6_CONF, s32 indexed by DEVCONF_*), so reading them costs no file per key. The tables
below map the sysctl names (what `sysctl` and /proc/sys show) to those indexes, in the order of
include/uapi/linux/ip.h and ipv6.h; a host test checks every entry against /proc/sys on a real
device. Left out: keys the dump reports in other units than the sysctl file (IPv6 router
solicitation/probe intervals: milliseconds there, seconds here) and non-integer keys
(stable_secret)."""

from __future__ import annotations

import re
from typing import Literal

Family = Literal["ipv4", "ipv6"]

_IPV4 = (  # IPV4_DEVCONF_* from 1
    "forwarding mc_forwarding proxy_arp accept_redirects secure_redirects send_redirects shared_media "
    "rp_filter accept_source_route bootp_relay log_martians tag arp_filter medium_id disable_xfrm "
    "disable_policy force_igmp_version arp_announce arp_ignore promote_secondaries arp_accept arp_notify "
    "accept_local src_valid_mark proxy_arp_pvlan route_localnet igmpv2_unsolicited_report_interval "
    "igmpv3_unsolicited_report_interval ignore_routes_with_linkdown drop_unicast_in_l2_multicast "
    "drop_gratuitous_arp bc_forwarding arp_evict_nocarrier"
).split()
_IPV6 = (  # DEVCONF_* from 0; "-" = left out (see above)
    "forwarding hop_limit mtu accept_ra accept_redirects autoconf dad_transmits router_solicitations - - use_tempaddr "
    "temp_valid_lft temp_prefered_lft regen_max_retry max_desync_factor max_addresses force_mld_version "
    "accept_ra_defrtr accept_ra_pinfo accept_ra_rtr_pref - accept_ra_rt_info_max_plen proxy_ndp "
    "optimistic_dad accept_source_route mc_forwarding disable_ipv6 accept_dad force_tllao ndisc_notify "
    "mldv1_unsolicited_report_interval mldv2_unsolicited_report_interval suppress_frag_ndisc "
    "accept_ra_from_local use_optimistic accept_ra_mtu - use_oif_addrs_only accept_ra_min_hop_limit "
    "ignore_routes_with_linkdown drop_unicast_in_l2_multicast drop_unsolicited_na keep_addr_on_down - "
    "seg6_enabled seg6_require_hmac enhanced_dad addr_gen_mode disable_policy accept_ra_rt_info_min_plen "
    "ndisc_tclass rpl_seg_enabled ra_defrtr_metric ioam6_enabled ioam6_id ioam6_id_wide "
    "ndisc_evict_nocarrier accept_untracked_na accept_ra_min_lft force_forwarding"
).split()

# "ipv4.rp_filter" → (family, position in the dump's array)
DEVICE_KEYS: dict[str, tuple[Family, int]] = {
    **{f"ipv4.{name}": ("ipv4", i) for i, name in enumerate(_IPV4)},
    **{f"ipv6.{name}": ("ipv6", i) for i, name in enumerate(_IPV6) if name != "-"},
}
# u32 in the kernel (the dump's array is s32; /proc/sys prints these unsigned)
UNSIGNED = frozenset({"ipv6.ioam6_id_wide", "ipv6.ra_defrtr_metric"})
# the kernel lets nobody write these (0444 in /proc/sys)
READ_ONLY = frozenset({"ipv4.mc_forwarding", "ipv6.mc_forwarding"})

Value = int | str  # an integer sysctl, or the text of another (whitespace-normalised)


class Sysctls(tuple[tuple[str, Value], ...]):
    """Sorted (key, value) pairs, as records hold them (hashable, compared with ==); documents
    show them as a mapping {key: value}."""

    __slots__ = ()

    def __plain__(self) -> dict[str, Value]:
        return dict(self)


NO_SYSCTLS = Sysctls()


def dump_value(key: str, raw: int) -> int:
    """A value of the dump's conf array as /proc/sys shows it."""
    return raw & 0xFFFFFFFF if key in UNSIGNED else raw


def proc_path(key: str, device: str) -> str:
    """Where the key lives for a device, in the namespace of the device: the sysctl(8) path."""
    family, _, name = key.partition(".")
    return f"/proc/sys/net/{family}/conf/{device}/{name}"


def key_problem(key: str) -> str | None:
    """Why a spec's per-device key cannot be declared, or None."""
    if key in READ_ONLY:
        return f"{key} is read-only in the kernel"
    if key in DEVICE_KEYS:
        return None
    family, dot, name = key.partition(".")
    if not dot or family not in ("ipv4", "ipv6"):
        return (
            f"unknown per-device sysctl {key!r}: write ipv4.KEY or ipv6.KEY "
            "(net.ipv4.conf.DEV.KEY without the device)"
        )
    return f"unknown per-device sysctl {key!r} (net.{family}.conf.DEV.{name} is not a key nkplan knows)"


def value(text: Value) -> Value:
    """The canonical form of a value, as declared or as /proc/sys prints it: an int when it is
    one, else the words joined by single spaces ("32768\t60999" → "32768 60999")."""
    if isinstance(text, int):
        return text
    words = " ".join(text.split())
    try:
        return int(words)
    except ValueError:
        return words


def canonical(declared: dict[str, Value] | dict[str, int] | None) -> Sysctls:
    return Sysctls(sorted((k, value(v)) for k, v in declared.items())) if declared else NO_SYSCTLS


NET_KEY = re.compile(r"net(\.[A-Za-z0-9_-]+)+")


def net_key_problem(key: str) -> str | None:
    """Why a namespace sysctl key cannot be declared, or None (existence is the kernel's word)."""
    if not NET_KEY.fullmatch(key):
        return f"sysctl {key!r} is not a net.* key (a namespace holds only net.*; e.g. net.ipv4.ip_forward)"
    return None


def net_proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def net_key_device(key: str) -> str | None:
    """The device a namespace key is about (net.ipv4.conf.eth0.rp_filter → eth0), if any."""
    parts = key.split(".")
    if len(parts) == 5 and parts[2] in ("conf", "neigh") and parts[3] not in ("all", "default"):
        return parts[3]
    return None


def reference_key(key: str) -> str:
    """The key whose existence tells whether `key` can exist: a device's key exists for a device
    the spec is still to create exactly when the namespace's `default` one does."""
    dev = net_key_device(key)
    if dev is None:
        return key
    parts = key.split(".")
    return ".".join((*parts[:3], "default", parts[4]))


def restrict(have: Sysctls, keys: Sysctls) -> Sysctls:
    """Live values of the keys a declaration manages (undeclared keys are left alone)."""
    wanted = {k for k, _ in keys}
    return Sysctls(kv for kv in have if kv[0] in wanted)
