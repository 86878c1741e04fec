"""Spec values (YAML scalars, lists, mappings) encoded to the bytes of a BTF type: a global
variable of a BPF object or a map's key or value. Pure.

What a value may be, by the type (typedefs and const/volatile looked through):
- integer types: a YAML integer within the type's range; `bool` (_Bool): true/false;
  `__be16`/`__be32`/`__be64` (network order): an integer, and `__be32` also an IPv4 literal;
- enums: an enumerator's name or an integer within range;
- arrays of 1-byte integers: `__u8[6]` a MAC (`02:00:00:00:00:01`), `__u8[4]` an IPv4 and
  `__u8[16]` an IPv6 literal; `char[N]` a string of at most N-1 bytes (room for the NUL);
  any array: a list of at most N elements, the rest zero (as a C initializer);
- structs: a mapping by field name; a field left out is zero (as a C designated initializer),
  an unknown one is an error naming the fields there are; a union: exactly one of its members;
- references to what the spec declares:
  - `{ifindex: DEVICE}` where an integer of 4 or more bytes fits (with `namespace: NS` when the
    name is declared in more than one namespace), and `{netns_cookie: NS}` where a 64-bit integer
    fits (`host` or a declared namespace): their numbers are not known before apply (a device or
    namespace about to be made has none yet): encoding leaves zeros there and records a
    `ValueRef` (offset, size, what), which the applier fills in (kernel/bpf/values.py);
  - `{address: DEVICE}` (and `namespace:`) where an IPv4 (`__u8[4]`, `__be32`) or IPv6
    (`__u8[16]`) address fits: the one address of that family the device declares, known from the
    spec alone, so it is encoded at once.
Bitfields, pointers and floats cannot be set; the error says so."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nkplan.core.records import IFINDEX, NETNS_COOKIE, ValueRef
from nkplan.spec import btf as B

Where = tuple[str | int, ...]


class ValueProblem(Exception):
    """A value does not fit its type: `where` is the path inside the value, `message` says why."""

    def __init__(self, where: Where, message: str) -> None:
        super().__init__(message)
        self.where, self.message = where, message


@dataclass(frozen=True)
class DeviceRef:
    """A device a value names; `namespace` is the record namespace ("" = host) as
    `resolve_device` decided it; `addresses` the CIDRs the spec declares on it."""

    namespace: str
    device: str
    addresses: tuple[str, ...] = ()


# (device name, namespace as written or None) → the device, or a ValueProblem message
ResolveDevice = Callable[[str, str | None], DeviceRef | str]
# a namespace name as written ("host" the host) → its record namespace ("" the host), or a message
ResolveNamespace = Callable[[str], tuple[str, None] | tuple[None, str]]


@dataclass(frozen=True)
class Resolver:
    """How references find what the spec declares."""

    device: ResolveDevice
    namespace: ResolveNamespace


REFERENCES = (IFINDEX, NETNS_COOKIE, "address")  # the keys that make a mapping a reference


@dataclass(frozen=True)
class Encoded:
    data: bytes
    refs: tuple[ValueRef, ...] = ()


def be_width(tp: B.ObjectBtf, type_id: int) -> int:
    """Bytes of a network-order typedef (__be16/__be32/__be64) on the way to the type, else 0."""
    for n in tp.names_through(type_id):
        if n in ("__be16", "__be32", "__be64"):
            return int(n[4:]) // 8
    return 0


class _Words:
    """A type's words (ObjectBtf.describe), made when a message formats them."""

    __slots__ = ("tp", "type_id")

    def __init__(self, tp: B.ObjectBtf, type_id: int) -> None:
        self.tp, self.type_id = tp, type_id

    def __str__(self) -> str:
        return self.tp.describe(self.type_id)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class _Encoder:
    def __init__(self, tp: B.ObjectBtf, resolve: Resolver) -> None:
        self.tp, self.resolve = tp, resolve
        self.refs: list[ValueRef] = []

    def encode(self, type_id: int, value: Any, where: Where, base: int) -> bytes:
        tp = self.tp
        t = tp.strip(type_id)
        words = _Words(tp, type_id)  # said only in errors: describing every type is costly
        # a mapping is a struct's fields, unless where a number or an address goes
        if isinstance(value, Mapping) and (t.kind in (B.INT, B.ENUM, B.ARRAY) or _address_struct(t, value)):
            return self.reference(type_id, t, value, where, base, words)
        if t.kind == B.INT:
            return self.integer(type_id, t, value, where, words)
        if t.kind in (B.ENUM, B.ENUM64):
            return self.enum(t, value, where, words)
        if t.kind == B.ARRAY:
            return self.array(type_id, t, value, where, base, words)
        if t.kind in (B.STRUCT, B.UNION):
            return self.compound(t, value, where, base, words)
        what = {B.PTR: "a pointer", B.FLOAT: "a floating-point number"}.get(t.kind, f"BTF kind {t.kind}")
        raise ValueProblem(where, f"{words} is {what}: it cannot be set from the spec")

    def reference(
        self, type_id: int, t: B.Type, value: Mapping[str, Any], where: Where, base: int, words: _Words
    ) -> bytes:
        kinds = [k for k in REFERENCES if k in value]
        if len(kinds) != 1:
            raise ValueProblem(
                where, f"{show(value)}: a reference is {{ifindex: DEVICE}}, {{netns_cookie: NAMESPACE}} or "
                f"{{address: DEVICE}} ({words} takes no mapping otherwise)"
            )  # fmt: skip
        kind = kinds[0]
        allowed = {kind} if kind == NETNS_COOKIE else {kind, "namespace"}
        extra = sorted(map(str, set(value) - allowed))
        if extra:
            raise ValueProblem(
                where, f"a {kind} reference takes {' and '.join(sorted(allowed))}, not {', '.join(extra)}"
            )
        name, ns = value[kind], value.get("namespace")
        if not isinstance(name, str) or (ns is not None and not isinstance(ns, str)):
            raise ValueProblem(where, f"{show(value)}: the names in a reference are strings")
        if kind == "address":
            return self.address(type_id, t, name, ns, where, words)
        if t.kind != B.INT and t.kind not in (B.ENUM, B.ENUM64):
            raise ValueProblem(where, f"{words} is not an integer: {{{kind}: …}} goes where an integer does")
        if be_width(self.tp, type_id):
            raise ValueProblem(where, f"{words} is in network order; an {kind} is a number in host order")
        if kind == NETNS_COOKIE:
            if t.size != 8:
                raise ValueProblem(where, f"a netns cookie is 64 bits; {words} has {8 * t.size}")
            home, problem = self.resolve.namespace(name)
            if home is None:
                raise ValueProblem((*where, kind), str(problem))
            self.refs.append(ValueRef(base, t.size, home, "", NETNS_COOKIE))
            return bytes(t.size)
        if t.size < 4:
            raise ValueProblem(where, f"an ifindex needs 4 bytes; {words} has {t.size}")
        dev = self.resolve.device(name, ns)
        if isinstance(dev, str):
            raise ValueProblem((*where, kind), dev)
        self.refs.append(ValueRef(base, t.size, dev.namespace, dev.device))
        return bytes(t.size)

    def address(self, type_id: int, t: B.Type, name: str, ns: str | None, where: Where, words: _Words) -> bytes:
        """The one address of the family the type holds that the device declares."""
        version = _address_version(self.tp, type_id, t)
        if version is None:
            raise ValueProblem(
                where, f"{words} holds no IP address (__u8[4], __be32, struct in_addr, __u8[16], __be32[4] "
                "and struct in6_addr do)"
            )  # fmt: skip
        dev = self.resolve.device(name, ns)
        if isinstance(dev, str):
            raise ValueProblem((*where, "address"), dev)
        found = [a for a in dev.addresses if ipaddress.ip_interface(a).version == version]
        if len(found) != 1:
            has = f"declares {len(found)} IPv{version} addresses ({', '.join(found)})" if found else (
                f"declares no IPv{version} address"
            )  # fmt: skip
            raise ValueProblem((*where, "address"), f"{name} {has}: {words} takes exactly one; write it out")
        return ipaddress.ip_interface(found[0]).ip.packed

    def integer(self, type_id: int, t: B.Type, value: Any, where: Where, words: _Words) -> bytes:
        if t.is_bool:
            if not isinstance(value, bool):
                raise ValueProblem(where, f"{_show(value)} is not a boolean ({words} takes true or false)")
            return bytes([int(value)]) + bytes(t.size - 1)
        be = be_width(self.tp, type_id)
        if be == 4 and isinstance(value, str):
            try:
                return ipaddress.IPv4Address(value).packed
            except ValueError:
                raise ValueProblem(where, f"{value!r} is not an IPv4 address ({words})") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueProblem(where, f"{_show(value)} is not an integer ({words})")
        lo, hi = (-(1 << (8 * t.size - 1)), (1 << (8 * t.size - 1)) - 1) if t.signed else (0, (1 << (8 * t.size)) - 1)
        if not lo <= value <= hi:
            raise ValueProblem(where, f"{value} does not fit {words} ({lo}..{hi})")
        return value.to_bytes(t.size, "big" if be else "little", signed=t.signed)

    def enum(self, t: B.Type, value: Any, where: Where, words: _Words) -> bytes:
        names = dict(t.values)
        if isinstance(value, str):
            if value not in names:
                raise ValueProblem(where, f"{value!r} is not an enumerator of {words} (it has: {', '.join(names)})")
            value = names[value]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueProblem(where, f"{_show(value)} is not an enumerator name or integer ({words})")
        lo, hi = (-(1 << (8 * t.size - 1)), (1 << (8 * t.size - 1)) - 1) if t.signed else (0, (1 << (8 * t.size)) - 1)
        if not lo <= value <= hi:
            raise ValueProblem(where, f"{value} does not fit {words} ({lo}..{hi})")
        return int(value).to_bytes(t.size, "little", signed=t.signed)

    def array(self, type_id: int, t: B.Type, value: Any, where: Where, base: int, words: _Words) -> bytes:
        elem = self.tp.strip(t.ref)
        esize = self.tp.size_of(t.ref)
        if isinstance(value, str) and elem.kind == B.INT and esize == 1:
            return self.byte_string(elem, t.nelems, value, where, words)
        if not isinstance(value, list):
            raise ValueProblem(where, f"{_show(value)} is not a list ({words})")
        if len(value) > t.nelems:
            raise ValueProblem(where, f"{len(value)} elements do not fit {words}")
        out = b"".join(self.encode(t.ref, v, (*where, i), base + i * esize) for i, v in enumerate(value))
        return out + bytes(esize * t.nelems - len(out))

    def byte_string(self, elem: B.Type, n: int, value: str, where: Where, words: _Words) -> bytes:
        if n == 6 and ":" in value and not elem.is_char and elem.name != "char":
            try:
                return bytes(int(x, 16) for x in _mac_parts(value))
            except ValueError:
                raise ValueProblem(where, f"{value!r} is not a MAC address ({words})") from None
        if n in (4, 16) and not elem.is_char and elem.name != "char":
            try:
                addr = ipaddress.ip_address(value)
            except ValueError:
                raise ValueProblem(where, f"{value!r} is not an IP address ({words})") from None
            if len(addr.packed) != n:
                holds = 4 if n == 4 else 6
                raise ValueProblem(where, f"{value!r} is an IPv{addr.version} address; {words} holds IPv{holds}")
            return addr.packed
        if elem.is_char or elem.name == "char":
            raw = value.encode()
            if len(raw) >= n:
                raise ValueProblem(where, f"{value!r} is {len(raw)} bytes; {words} holds at most {n - 1} and the NUL")
            return raw + bytes(n - len(raw))
        raise ValueProblem(where, f"{value!r}: {words} takes a list of integers")

    def compound(self, t: B.Type, value: Any, where: Where, base: int, words: _Words) -> bytes:
        version = _address_version(self.tp, t.id, t)
        if isinstance(value, str) and version is not None:  # struct in_addr / in6_addr: a literal
            try:
                addr = ipaddress.ip_address(value)
            except ValueError:
                raise ValueProblem(where, f"{value!r} is not an IP address ({words})") from None
            if addr.version != version:
                raise ValueProblem(where, f"{value!r} is an IPv{addr.version} address; {words} holds IPv{version}")
            return addr.packed
        if not isinstance(value, Mapping):
            raise ValueProblem(where, f"{_show(value)} is not a mapping of field names ({words})")
        fields = {m.name: m for m in t.members if m.name}
        unknown = [k for k in value if k not in fields]
        if unknown:
            have = ", ".join(fields) or "none"
            raise ValueProblem((*where, str(unknown[0])), f"{words} has no field {unknown[0]!r} (it has: {have})")
        if t.kind == B.UNION and len(value) != 1:
            raise ValueProblem(where, f"{words} is a union: set exactly one of its members ({', '.join(fields)})")
        out = bytearray(t.size)
        for k, v in value.items():
            m = fields[k]
            if m.bitfield_size or m.bit_offset % 8:
                raise ValueProblem((*where, k), f"field {k!r} of {words} is a bitfield: it cannot be set from the spec")
            off = m.bit_offset // 8
            data = self.encode(m.type, v, (*where, k), base + off)
            out[off : off + len(data)] = data
        return bytes(out)


def _address_version(tp: B.ObjectBtf, type_id: int, t: B.Type) -> int | None:
    """4 or 6 for the types that hold one IP address in network order: byte arrays of 4/16
    (not char), __be32, 4 x 32-bit integers, struct in_addr / in6_addr; else None."""
    if t.kind == B.ARRAY:
        elem, esize = tp.strip(t.ref), tp.size_of(t.ref)
        if elem.kind == B.INT and esize == 1 and not (elem.is_char or elem.name == "char") and t.nelems in (4, 16):
            return 4 if t.nelems == 4 else 6
        if elem.kind == B.INT and esize == 4 and t.nelems == 4:
            return 6
        return None
    if t.kind == B.INT:
        return 4 if be_width(tp, type_id) == 4 else None
    if t.kind in (B.STRUCT, B.UNION) and t.name in ("in_addr", "in6_addr"):
        return 4 if t.name == "in_addr" else 6
    return None


def _address_struct(t: B.Type, value: Mapping[str, Any]) -> bool:
    """`{address: DEVICE}` where a struct in_addr / in6_addr goes (which have no field so named)."""
    return t.kind in (B.STRUCT, B.UNION) and t.name in ("in_addr", "in6_addr") and "address" in value


def _mac_parts(value: str) -> list[str]:
    parts = value.split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(value)
    return parts


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else show(value)


def encode(tp: B.ObjectBtf, type_id: int, value: Any, resolve: Resolver, where: Where = ()) -> Encoded:
    """The bytes of `value` as BTF type `type_id` (ValueProblem if it does not fit)."""
    enc = _Encoder(tp, resolve)
    data = enc.encode(type_id, value, where, 0)
    size = tp.size_of(type_id)
    return Encoded(data + bytes(size - len(data)), tuple(enc.refs))


def show(value: Any) -> str:
    """A value as the spec wrote it, on one line (flow YAML), for plans and messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def hint(tp: B.ObjectBtf, type_id: int) -> str:
    """How to show the bytes of a type read back from the kernel (`decode`): "u", "s", "bool",
    "be", "ipv4", "ipv6", "mac", "str" or "hex"."""
    t = tp.strip(type_id)
    if t.kind == B.INT:
        return "bool" if t.is_bool else "be" if be_width(tp, type_id) else "s" if t.signed else "u"
    if t.kind in (B.ENUM, B.ENUM64):
        return "s" if t.signed else "u"
    if t.kind == B.ARRAY and tp.size_of(t.ref) == 1:
        elem = tp.strip(t.ref)
        if elem.is_char or elem.name == "char":
            return "str"
        return {4: "ipv4", 6: "mac", 16: "ipv6"}.get(t.nelems, "hex")
    return "hex"


def decode(how: str, data: bytes) -> str:
    """Bytes read back from the kernel as text, the way `hint` says (best effort: for plans)."""
    if how in ("u", "s") and data:
        return str(int.from_bytes(data, "little", signed=how == "s"))
    if how == "be" and data:
        return str(int.from_bytes(data, "big"))
    if how == "bool" and data:
        return "true" if any(data) else "false"
    if how == "ipv4" and len(data) == 4:
        return str(ipaddress.IPv4Address(data))
    if how == "ipv6" and len(data) == 16:
        return str(ipaddress.IPv6Address(data))
    if how == "mac" and len(data) == 6:
        return ":".join(f"{b:02x}" for b in data)
    if how == "str":
        return repr(data.split(b"\0", 1)[0].decode(errors="replace"))
    return "0x" + data.hex() if data else "?"


def patch(image: bytes, offset: int, data: bytes) -> bytes:
    """`image` with `data` written at `offset`."""
    return image[:offset] + data + image[offset + len(data) :]


def fill_refs(data: bytes, refs: tuple[ValueRef, ...], number: Callable[[ValueRef], int], base: int = 0) -> bytes:
    """`data` with every reference's bytes set to its number (an ifindex, a netns cookie;
    little-endian, the host's order on the machines nkplan runs on). `base`: where `data` starts
    in the refs' frame."""
    out = bytearray(data)
    for r in refs:
        at = r.offset - base
        out[at : at + r.size] = number(r).to_bytes(r.size, "little")
    return bytes(out)
