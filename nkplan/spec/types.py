"""Scalar types of the spec, each with a validator whose message names the offending value."""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, PlainValidator, Strict, WithJsonSchema

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_STACK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
IFNAMSIZ = 16  # kernel limit incl. NUL: device names are at most 15 bytes


def _name_problem(value: str, limit: int) -> str | None:
    if value and value.isascii() and value.isprintable() and len(value) <= limit and value not in (".", ".."):
        # the usual name, answered at once (the checks below walk it character by character);
        # printable ASCII holds no whitespace but the space
        if "/" in value:
            return "must not contain '/'"
        if ":" in value:
            return "must not contain ':'"
        return "must not contain whitespace" if " " in value else None
    if not value:
        return "must not be empty"
    if len(value.encode()) > limit:
        return f"is {len(value.encode())} bytes long; at most {limit} allowed"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    for bad, what in (("/", "'/'"), (":", "':'")):
        if bad in value:
            return f"must not contain {what}"
    if any(c.isspace() for c in value):
        return "must not contain whitespace"
    odd = next((c for c in value if not (c.isascii() and c.isprintable())), None)
    if odd is not None:  # the kernel takes any byte, but a Cyrillic 'а' that reads as 'a' misleads a review
        return f"must be printable ASCII (it has {odd!r}, U+{ord(odd):04X})"
    return None


def check_ifname(value: str) -> str:
    problem = _name_problem(value, IFNAMSIZ - 1)
    if problem:
        raise ValueError(f"device name {value!r} {problem}")
    return value


def check_nsname(value: str) -> str:
    problem = _name_problem(value, 63)
    if problem:
        raise ValueError(f"namespace name {value!r} {problem}")
    return value


def check_stack(value: str) -> str:
    if not _STACK.match(value):
        raise ValueError(
            f"stack name {value!r} must be 1-32 characters of letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return value


def check_net_sysctl(value: object) -> int | str:
    """A namespace sysctl's value: an integer, or the text of a non-integer key (a string such
    as a congestion control name, or "32768 60999"); a YAML boolean is neither."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"a sysctl value is an integer or a string, not {value!r}")
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        raise ValueError(f"sysctl value {value} is out of range")
    return value


def check_mac(value: str) -> str:
    low = value.lower()
    if not _MAC.match(low):
        raise ValueError(f"invalid MAC address {value!r} (expected six hex pairs like 02:00:00:00:00:01)")
    if int(low[:2], 16) & 1:
        raise ValueError(f"MAC address {value!r} is a multicast address; a device needs a unicast one")
    if low == "00:00:00:00:00:00":
        raise ValueError(f"MAC address {value!r} is all zeros")
    return low


@functools.cache
def interface(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """ipaddress.ip_interface, parsed once per distinct text: a spec's addresses are checked,
    compared and sorted in several places, and the parse is most of what those cost (an address
    of 1000 pods was parsed three times: a tenth of a plan). ValueError as ip_interface."""
    return ipaddress.ip_interface(text)


def check_interface_cidr(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"address {value!r} needs a prefix length, e.g. {value}/32 or {value}/128")
    try:
        iface = interface(value)
    except ValueError:
        raise ValueError(f"invalid address {value!r} (expected CIDR like 10.0.0.1/24 or fd00::1/64)") from None
    return iface.with_prefixlen


def check_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"invalid IP address {value!r}") from None


def check_route_to(value: str) -> str:
    if value == "default":
        return value
    if "/" not in value:
        raise ValueError(f"route destination {value!r} needs a prefix length, e.g. {value}/32")
    try:
        iface = interface(value)
    except ValueError:
        raise ValueError(f"invalid route destination {value!r} (expected CIDR or 'default')") from None
    loose = iface.network  # ip_network(value, strict=False)
    if loose.with_prefixlen != iface.with_prefixlen:
        raise ValueError(f"route destination {value!r} has host bits set; did you mean {loose.with_prefixlen}?")
    return loose.with_prefixlen


IfName = Annotated[str, AfterValidator(check_ifname)]
NsName = Annotated[str, AfterValidator(check_nsname)]
StackName = Annotated[str, AfterValidator(check_stack)]
Mac = Annotated[str, AfterValidator(check_mac)]
InterfaceCidr = Annotated[str, AfterValidator(check_interface_cidr)]
IpAddr = Annotated[str, AfterValidator(check_ip)]
RouteTo = Annotated[str, AfterValidator(check_route_to)]
Mtu = Annotated[int, Field(ge=68, le=65535)]
Room = Annotated[int, Field(ge=0, le=65535)]
NetSysctlValue = Annotated[
    int | str, PlainValidator(check_net_sysctl), WithJsonSchema({"type": ["integer", "string"]})
]
SysctlValue = Annotated[int, Strict(), Field(ge=-(2**31), le=2**32 - 1)]  # an int sysctl (s32/u32); not a bool
Metric = Annotated[int, Field(ge=0, le=2**32 - 1)]
