"""Kernel refusals in words: (operation, errno) → a sentence naming the operation, the object and
the reason. Nothing raw (a bare errno, a NetlinkError) leaves the kernel layer.

Each operation has a phrase ("creating netkit pair nk-a"); a refusal becomes
"<phrase>: <reason>", where the reason is specific when the errno means one known thing for that
operation, and otherwise "the kernel refuses (ENAME, '<the kernel's extended-ack text>')"."""

from __future__ import annotations

import errno as E
import os
from dataclasses import dataclass

from nkplan.core.records import HOST
from nkplan.errors import KernelError
from nkplan.kernel.netlink.nlsock import NetlinkRefusal


def where(ns: str) -> str:
    return "host namespace" if ns == HOST else f"namespace {ns}"


def errname(num: int) -> str:
    return E.errorcode.get(num, f"errno {num}")


def kernel_says(exc: NetlinkRefusal | OSError) -> str:
    num = exc.errno or 0
    text = exc.message if isinstance(exc, NetlinkRefusal) else None
    return (
        f"the kernel refuses ({errname(num)}, {text!r})"
        if text
        else f"the kernel refuses ({errname(num)}: {os.strerror(num)})"
    )


# operation → phrase; {obj} the device/namespace/route, {value} the value being set, {ns} where
PHRASES: dict[str, str] = {
    "create_netkit": "creating netkit pair {obj}",
    "create_veth": "creating veth pair {obj}",
    "create_netkit_single": "creating single netkit device {obj}",
    "delete_link": "deleting {value} {obj} in {ns}",
    "set_mtu": "setting MTU {value} on {obj} in {ns}",
    "set_mac": "setting MAC address {value} on {obj} in {ns}",
    "set_alias": "writing the ownership mark {value!r} on {obj} in {ns}",
    "set_up": "bringing {obj} in {ns} {value}",
    "add_address": "adding address {value} to {obj} in {ns}",
    "del_address": "removing address {value} from {obj} in {ns}",
    "set_policy": "changing the netkit policies of {obj} to {value}",
    "change_fixed": "cannot change netkit {value} of {obj} in place",
    "lookup": "looking up device {obj} in {ns}",
    "create_namespace": "creating namespace {obj}",
    "delete_namespace": "deleting namespace {obj}",
    "set_namespace_owner": "marking namespace {obj} as owned",
    "add_route": "adding route to {obj} in {ns}",
    "delete_route": "deleting route to {obj} in {ns}",
    "replace_route": "replacing route to {obj} in {ns}",
    "add_rule": "adding rule {obj} in {ns}",
    "delete_rule": "deleting rule {obj} in {ns}",
}

_ROOT = "nkplan needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to read/change network namespaces"

# (operation or "*", errno) → reason. Looked up with the operation first, then "*".
REASONS: dict[tuple[str, int], str] = {
    ("create_netkit", E.EOPNOTSUPP): "this kernel has no netkit support (CONFIG_NETKIT)",
    ("create_netkit", E.EEXIST): "a device with that name already exists",
    ("create_veth", E.EEXIST): "a device with that name already exists",
    ("create_veth", E.EOPNOTSUPP): "this kernel has no veth support (CONFIG_VETH)",
    ("set_mac", E.EOPNOTSUPP): "the device has no settable MAC address (an L3 netkit has none)",
    ("set_mac", E.EADDRNOTAVAIL): "{value} is not a valid unicast MAC address",
    ("set_mtu", E.EINVAL): "the MTU is outside what the device accepts",
    ("add_address", E.EEXIST): "the device already has that address",
    ("del_address", E.EADDRNOTAVAIL): "the device does not have that address",
    ("set_policy", E.EACCES): "netkit settings can only be changed through the primary device",
    # checked on 7.3: every policy change of a single device, even to forward, is refused
    ("set_policy", E.EOPNOTSUPP): "the kernel changes no policy of a single netkit device (it always forwards)",
    # a plan has probed for netkit first, so then it is what a single device refuses
    ("create_netkit_single", E.EOPNOTSUPP): (
        "the kernel refuses it (a single netkit device takes no peer, no scrub and no policy but forward; "
        "or this kernel has no netkit, CONFIG_NETKIT)"
    ),
    ("create_netkit_single", E.EEXIST): "a device with that name already exists",
    ("change_fixed", E.EACCES): "",  # filled by kernel_says: the kernel's own words say it best
    ("add_route", E.EEXIST): "a route to {obj} with that metric already exists",
    ("add_route", E.ENETUNREACH): "the gateway is not reachable on that device",
    ("add_route", E.ENODEV): "its device does not exist",
    ("add_route", E.EINVAL): "the kernel rejects the route as invalid",
    ("add_route", E.EHOSTUNREACH): "the gateway is not reachable on that device",
    ("replace_route", E.ENETUNREACH): "the gateway is not reachable on that device",
    ("replace_route", E.EHOSTUNREACH): "the gateway is not reachable on that device",
    ("delete_route", E.ESRCH): "no such route",
    ("lookup", E.ENODEV): "no such device",
    ("add_rule", E.EEXIST): "an identical rule already exists",
    ("delete_rule", E.ENOENT): "no such rule",
    ("create_namespace", E.EEXIST): "a namespace with that name already exists",
    ("delete_namespace", E.ENOENT): "no such namespace",
    ("*", E.ENODEV): "no such device",
    ("*", E.EPERM): _ROOT,
    ("*", E.ENOENT): "it does not exist",
    ("*", E.EBUSY): "the device is busy",
}


# reasons the kernel's own text would only repeat ("Unknown device type")
_SELF_EXPLAINED = {("create_netkit", E.EOPNOTSUPP), ("create_veth", E.EOPNOTSUPP)}


@dataclass(frozen=True)
class Op:
    """One kernel operation, for wording its refusal."""

    name: str  # a key of PHRASES
    obj: str
    ns: str = HOST
    value: object = None

    def phrase(self) -> str:
        return PHRASES[self.name].format(obj=self.obj, ns=where(self.ns), value=self.value)


def explain(op: Op, exc: NetlinkRefusal | OSError) -> KernelError:
    """The KernelError for a refusal of op."""
    num = exc.errno or 0
    reason = REASONS.get((op.name, num))
    if reason is None:
        reason = REASONS.get(("*", num))
    if reason:
        text = exc.message if isinstance(exc, NetlinkRefusal) else None
        reason = reason.format(obj=op.obj, ns=where(op.ns), value=op.value)
        if text and text.lower() not in reason.lower() and (op.name, num) not in _SELF_EXPLAINED:
            reason = f"{reason} (kernel: {text!r})"
    else:
        reason = kernel_says(exc)
    return KernelError(f"{op.phrase()}: {reason}", num)


def name_taken(name: str, ns: str) -> KernelError:
    return KernelError(f"device name {name} already exists in {where(ns)}", E.EEXIST)


def no_namespace(ns: str, doing: str) -> KernelError:
    return KernelError(f"{doing}: namespace {ns} does not exist", E.ENOENT)


def root_needed() -> str:
    return _ROOT
