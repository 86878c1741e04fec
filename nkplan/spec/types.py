"""Scalar types of the spec, each with a validator whose message names the offending value."""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import struct
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


# The validators below answer first for the text ipaddress itself writes (str() of an address,
# with_prefixlen of an interface), which is how nearly every spec writes them: the C parser
# (inet_pton) reads it, and writing the value back the way ipaddress does must give the text
# again. Such a text is one ipaddress takes, to the same value, and writes back unchanged, so
# the answer is the one ip_interface gives, at a twentieth of its cost (for 3000 addresses of
# 1000 pods, 55 ms of a load). Every other text — an error, a netmask, leading zeros, a scope, an
# IPv4-mapped IPv6 address (whose writing changed in Python 3.13) — goes to ipaddress as before.
_WORDS = struct.Struct("!8H")  # an IPv6 address's eight hextets
_V4_MAPPED = (0, 0, 0, 0, 0, 0xFFFF)  # the first six of ::ffff:a.b.c.d
_HEX = "{:x}".format


def _v6_text(words: tuple[int, ...]) -> str:
    """ipaddress's text of an IPv6 address (_BaseV6._string_from_ip_int, without a scope): hex
    hextets, the first longest run of two or more zero hextets written as '::'."""
    best_start, best_len, start = -1, 0, -1
    for i, word in enumerate(words):
        if word:
            start = -1
            continue
        if start == -1:
            start = i
        if i - start + 1 > best_len:
            best_start, best_len = start, i - start + 1
    hexes = list(map(_HEX, words))
    if best_len < 2:
        return ":".join(hexes)
    return ":".join(hexes[:best_start]) + "::" + ":".join(hexes[best_start + best_len :])


def canonical_address(text: str) -> tuple[int, int] | None:
    """(version, value) of an address written exactly as ipaddress writes it; None for any other
    text, which only ipaddress can judge."""
    try:
        if ":" in text:
            packed = socket.inet_pton(socket.AF_INET6, text)
            words = _WORDS.unpack(packed)
            if words[:6] == _V4_MAPPED or _v6_text(words) != text:  # IPv4-mapped: see above
                return None
            return 6, int.from_bytes(packed, "big")
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # not an address to the C parser (ValueError: a NUL in it)
        return None
    return (4, int.from_bytes(packed, "big")) if ".".join(map(str, packed)) == text else None


def canonical_cidr(text: str) -> tuple[int, int, int] | None:
    """(version, address value, prefix length) of an interface address written exactly as
    ipaddress's with_prefixlen writes it; None for any other text."""
    addr, _, length = text.partition("/")
    if not (0 < len(length) <= 3 and length.isascii() and length.isdigit()) or (length[0] == "0" and length != "0"):
        return None
    found = canonical_address(addr)
    if found is None or int(length) > (32 if found[0] == 4 else 128):
        return None
    return found[0], found[1], int(length)


def cidr_order(text: str) -> tuple[tuple[int, int, int], str]:
    """An interface address's place in the canonical order (version, address, prefix length) and
    its text as ipaddress writes it; ValueError as ip_interface."""
    found = canonical_cidr(text)
    if found is not None:
        return found, text
    iface = interface(text)
    return (iface.version, int(iface.ip), iface.network.prefixlen), iface.with_prefixlen


def check_interface_cidr(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"address {value!r} needs a prefix length, e.g. {value}/32 or {value}/128")
    if canonical_cidr(value) is not None:
        return value
    try:
        iface = interface(value)
    except ValueError:
        raise ValueError(f"invalid address {value!r} (expected CIDR like 10.0.0.1/24 or fd00::1/64)") from None
    return iface.with_prefixlen


def check_ip(value: str) -> str:
    if canonical_address(value) is not None:
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"invalid IP address {value!r}") from None


def check_route_to(value: str) -> str:
    if value == "default":
        return value
    if "/" not in value:
        raise ValueError(f"route destination {value!r} needs a prefix length, e.g. {value}/32")
    found = canonical_cidr(value)
    if found is not None:
        version, addr, length = found
        if addr & ((1 << ((32 if version == 4 else 128) - length)) - 1) == 0:  # no host bits set
            return value
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
