"""Bytes of a BTF type back to a spec value: the inverse of spec.bpfvalues.encode, for `show`
(a running program's globals and map entries exported as a spec). Pure.

`encode(value_of(t, data)) == data` for every type encode takes: integers as YAML integers
(`__be*` read in network order; `__be32` as an IPv4 literal), `_Bool` as true/false, enums by
enumerator name when one has the value, `__u8[6]` as a MAC, `__u8[4]`/`__u8[16]` and struct
in_addr/in6_addr as IPv4/IPv6 literals, `char[N]` as a string when its bytes are text up to the
NUL, other arrays as lists (trailing zero elements left out, as a C initializer does), structs as
a mapping of their non-zero fields, a union as its widest member that can say its bytes. What
cannot be written in a spec (bitfields or padding holding bits, pointers, floats) raises
Undecodable."""

from __future__ import annotations

import ipaddress
from typing import Any

from nkplan.spec import btf as B
from nkplan.spec.bpfvalues import be_width


class Undecodable(Exception):
    """The bytes cannot be written as a spec value (the message says why)."""


def value_of(tp: B.ObjectBtf, type_id: int, data: bytes) -> Any:
    """The spec value that encodes to `data` (len(data) == the type's size)."""
    t = tp.strip(type_id)
    if t.kind == B.INT:
        if t.is_bool:
            if data[1:].strip(b"\0") or data[0] > 1:
                raise Undecodable(f"a _Bool holding {data.hex()}")
            return bool(data[0])
        width = be_width(tp, type_id)
        if width == 4:  # __be32: an IPv4 address, as a literal (encode takes both)
            return str(ipaddress.IPv4Address(data[:4]))
        if width:
            return int.from_bytes(data[: t.size], "big")
        return int.from_bytes(data[: t.size], "little", signed=t.signed)
    if t.kind in (B.ENUM, B.ENUM64):
        number = int.from_bytes(data[: t.size], "little", signed=t.signed)
        return next((name for name, v in t.values if v == number), number)
    if t.kind == B.ARRAY:
        return _array(tp, t, data)
    if t.kind in (B.STRUCT, B.UNION) and t.name in ("in_addr", "in6_addr"):  # as encode takes them
        return str(ipaddress.IPv4Address(data[:4]) if t.name == "in_addr" else ipaddress.IPv6Address(data[:16]))
    if t.kind == B.STRUCT:
        return _struct(tp, t, data)
    if t.kind == B.UNION:  # the widest member that can say it (a pointer or bitfields cannot)
        for m in sorted((m for m in t.members if m.name), key=lambda m: -tp.size_of(m.type)):
            size = tp.size_of(m.type)
            if data[size:].strip(b"\0") or m.bitfield_size:
                continue
            try:
                return {m.name: value_of(tp, m.type, data[:size])}
            except Undecodable:
                continue
        raise Undecodable(f"no member of {tp.describe(type_id)} can say {data.hex()}")
    raise Undecodable(f"{tp.describe(type_id)} cannot be written in a spec")


def _array(tp: B.ObjectBtf, t: B.Type, data: bytes) -> Any:
    elem = tp.strip(t.ref)
    esize = tp.size_of(t.ref)
    if elem.kind == B.INT and esize == 1:
        if elem.is_char or elem.name == "char":
            text, _, rest = data.partition(b"\0")
            if not rest.strip(b"\0") and len(text) < t.nelems:
                try:
                    return text.decode()
                except UnicodeDecodeError:
                    pass
        elif t.nelems == 6:
            return ":".join(f"{b:02x}" for b in data[:6])
        elif t.nelems == 4:
            return str(ipaddress.IPv4Address(data[:4]))
        elif t.nelems == 16:
            return str(ipaddress.IPv6Address(data[:16]))
    items = [value_of(tp, t.ref, data[i * esize : (i + 1) * esize]) for i in range(t.nelems)]
    while items and not data[(len(items) - 1) * esize : len(items) * esize].strip(b"\0"):
        items.pop()
    return items


def _struct(tp: B.ObjectBtf, t: B.Type, data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    covered = bytearray(len(data))
    for m in t.members:
        if not m.name:
            continue
        if m.bitfield_size or m.bit_offset % 8:
            continue  # checked below: such a field must hold nothing
        off, size = m.bit_offset // 8, tp.size_of(m.type)
        part = data[off : off + size]
        covered[off : off + size] = b"\1" * size
        if part.strip(b"\0"):
            out[m.name] = value_of(tp, m.type, part)
    stray = bytes(b for b, c in zip(data, covered, strict=True) if not c)
    if stray.strip(b"\0"):
        raise Undecodable(f"{tp.describe(t.id)} holds bits in a bitfield or in padding")
    return out
