"""The types of a BPF object's globals and maps, read from its ELF file's .BTF section. Pure
(file reads and struct unpacking; no ctypes, no root), so validation and planning may use it.

Why not libbpf: the spec layer must not load ctypes, and what is needed is small: the types
(integers, enums, arrays, structs, unions, through typedefs and qualifiers), the variables of the
data sections (.rodata, .data, .bss and their .NAME variants), and the key/value types of the
BTF-defined maps (SEC(".maps")). A variable's offset and a section's size come from the ELF
symbol and section tables, not from the BTF DATASEC: clang leaves those to libbpf's fix-up at
load time, the ELF tables always have them. A section's initial bytes (all zero for .bss) are the
image nkplan patches with the declared values and hands to libbpf before load.

Layout reference: the kernel's Documentation/bpf/btf.rst (struct btf_header, struct btf_type and
the per-kind trailers)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache

BTF_MAGIC = 0xEB9F
# kinds (include/uapi/linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_QUALIFIERS = (VOLATILE, CONST, RESTRICT, TYPE_TAG)
_SECTION_PREFIXES = (".rodata", ".data", ".bss")
_SHT_SYMTAB, _SHT_NOBITS = 2, 8


class BtfError(Exception):
    """The object's BTF (or ELF tables) cannot be read; the message says why."""


@dataclass(frozen=True)
class Member:
    name: str
    type: int
    bit_offset: int
    bitfield_size: int  # 0: not a bitfield


@dataclass(frozen=True)
class Type:
    """One BTF type. `size` in bytes where the kind has one (int, enum, struct, union, float);
    `ref` the type a ptr/array/typedef/qualifier/var refers to."""

    id: int
    kind: int
    name: str
    size: int = 0
    ref: int = 0
    # INT
    signed: bool = False
    is_bool: bool = False
    is_char: bool = False
    bits: int = 0
    # ARRAY
    nelems: int = 0
    # STRUCT / UNION
    members: tuple[Member, ...] = ()
    # ENUM / ENUM64
    values: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Var:
    """A global variable of a data section: its BTF type, its offset and size in the section."""

    name: str
    type: int
    offset: int
    size: int


@dataclass(frozen=True)
class Section:
    """A data section as libbpf turns it into an internal map: `.rodata` (const volatile,
    frozen after load), `.data`, `.bss`, or a `.rodata.NAME`/`.data.NAME` variant."""

    name: str
    size: int
    image: bytes  # initial content (zeros for .bss)
    vars: dict[str, Var] = field(default_factory=dict)

    @property
    def frozen(self) -> bool:
        return self.name.startswith(".rodata")


@dataclass(frozen=True)
class MapTypes:
    """A BTF-defined map's key and value types (0: not declared with __type)."""

    name: str
    key: int
    value: int


@dataclass(frozen=True)
class ObjectBtf:
    types: dict[int, Type]
    sections: dict[str, Section]
    maps: dict[str, MapTypes]

    def strip(self, type_id: int) -> Type:
        """The type behind typedefs and qualifiers."""
        t = self.types[type_id]
        seen = 0
        while t.kind in (TYPEDEF, *_QUALIFIERS) and seen < 64:
            t = self.types[t.ref]
            seen += 1
        return t

    def names_through(self, type_id: int) -> list[str]:
        """The typedef names on the way to the real type (`__be32` → `__u32` → unsigned int)."""
        out: list[str] = []
        t = self.types.get(type_id)
        while t is not None and t.kind in (TYPEDEF, *_QUALIFIERS) and len(out) < 64:
            if t.kind == TYPEDEF:
                out.append(t.name)
            t = self.types.get(t.ref)
        return out

    def size_of(self, type_id: int) -> int:
        t = self.strip(type_id)
        if t.kind == ARRAY:
            return t.nelems * self.size_of(t.ref)
        if t.kind == PTR:
            return 8
        return t.size

    def describe(self, type_id: int) -> str:
        """C-like words for a type, for messages: `__u32`, `struct allow_key`, `__u8[6]`."""
        t = self.types.get(type_id)
        if t is None or type_id == 0:
            return "void"
        if t.kind == TYPEDEF:
            return t.name
        if t.kind in _QUALIFIERS:
            return self.describe(t.ref)
        if t.kind == ARRAY:
            return f"{self.describe(t.ref)}[{t.nelems}]"
        if t.kind in (STRUCT, UNION):
            return f"{'struct' if t.kind == STRUCT else 'union'} {t.name or '(anonymous)'}"
        if t.kind in (ENUM, ENUM64):
            return f"enum {t.name or '(anonymous)'}"
        if t.kind == PTR:
            return f"{self.describe(t.ref)} *"
        return t.name or f"(BTF kind {t.kind})"


def _parse_btf(raw: bytes) -> tuple[dict[int, Type], list[tuple[str, list[tuple[int, int, int]]]], dict[int, Type]]:
    """(types by id, datasecs as (name, [(var type id, offset, size)]), vars by id)."""
    if len(raw) < 24:
        raise BtfError("the .BTF section is truncated")
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", raw, 0)
    if magic != BTF_MAGIC:
        raise BtfError("the .BTF section has a bad magic number (big-endian objects are not supported)")
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", raw, 8)
    types_at, strings_at = hdr_len + type_off, hdr_len + str_off
    strings = raw[strings_at : strings_at + str_len]

    def name(off: int) -> str:
        end = strings.find(b"\0", off)
        return strings[off : end if end >= 0 else None].decode(errors="replace")

    types: dict[int, Type] = {}
    secs: list[tuple[str, list[tuple[int, int, int]]]] = []
    pos, end, tid = types_at, types_at + type_len, 1
    try:
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from("<III", raw, pos)
            pos += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            nm = name(name_off)
            if kind == INT:
                (enc,) = struct.unpack_from("<I", raw, pos)
                pos += 4
                e = (enc >> 24) & 0xF
                types[tid] = Type(tid, kind, nm, size=size_or_type, signed=bool(e & 1), is_char=bool(e & 2),
                                  is_bool=bool(e & 4), bits=enc & 0xFF)  # fmt: skip
            elif kind == ARRAY:
                elem, _index, nelems = struct.unpack_from("<III", raw, pos)
                pos += 12
                types[tid] = Type(tid, kind, nm, ref=elem, nelems=nelems)
            elif kind in (STRUCT, UNION):
                members = []
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", raw, pos)
                    pos += 12
                    bits, off = ((m_off >> 24), m_off & 0xFFFFFF) if kflag else (0, m_off)
                    members.append(Member(name(m_name), m_type, off, bits))
                types[tid] = Type(tid, kind, nm, size=size_or_type, members=tuple(members))
            elif kind == ENUM:
                vals = []
                for _ in range(vlen):
                    v_name, v = struct.unpack_from("<Ii" if kflag else "<II", raw, pos)
                    pos += 8
                    vals.append((name(v_name), v))
                types[tid] = Type(tid, kind, nm, size=size_or_type, signed=bool(kflag), values=tuple(vals))
            elif kind == ENUM64:
                vals = []
                for _ in range(vlen):
                    v_name, lo, hi = struct.unpack_from("<III", raw, pos)
                    pos += 12
                    v = (hi << 32) | lo
                    if kflag and v >= 1 << 63:
                        v -= 1 << 64
                    vals.append((name(v_name), v))
                types[tid] = Type(tid, kind, nm, size=size_or_type, signed=bool(kflag), values=tuple(vals))
            elif kind == FUNC_PROTO:
                pos += 8 * vlen
                types[tid] = Type(tid, kind, nm, ref=size_or_type)
            elif kind == VAR:
                pos += 4
                types[tid] = Type(tid, kind, nm, ref=size_or_type)
            elif kind == DATASEC:
                entries = []
                for _ in range(vlen):
                    entries.append(struct.unpack_from("<III", raw, pos))
                    pos += 12
                secs.append((nm, entries))
                types[tid] = Type(tid, kind, nm, size=size_or_type)
            elif kind == DECL_TAG:
                pos += 4
                types[tid] = Type(tid, kind, nm, ref=size_or_type)
            elif kind in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, TYPE_TAG):
                types[tid] = Type(tid, kind, nm, ref=size_or_type)
            elif kind == FLOAT:
                types[tid] = Type(tid, kind, nm, size=size_or_type)
            else:
                raise BtfError(f"unknown BTF kind {kind} (type {tid})")
            tid += 1
    except struct.error:
        raise BtfError("the .BTF section is truncated") from None
    return types, secs, {i: t for i, t in types.items() if t.kind == VAR}


def _elf_sections(data: bytes) -> tuple[list[tuple[str, int, int, int, int]], bytes]:
    """[(name, type, offset, size, link)] of an ELF64 little-endian object, and its bytes."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BtfError("not a 64-bit little-endian ELF object")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    heads = []
    for i in range(shnum):
        sh_name, sh_type, _flags, _addr, off, size, link = struct.unpack_from("<IIQQQQI", data, shoff + i * shentsize)
        heads.append((sh_name, sh_type, off, size, link))
    str_off = heads[shstrndx][2]

    def sname(off: int) -> str:
        start = str_off + off
        return data[start : data.index(b"\0", start)].decode(errors="replace")

    return [(sname(n), t, o, s, lk) for n, t, o, s, lk in heads], data


def _symbols(data: bytes, secs: list[tuple[str, int, int, int, int]]) -> dict[tuple[int, str], tuple[int, int]]:
    """{(section index, symbol name): (value, size)} of the object's symbol table."""
    out: dict[tuple[int, str], tuple[int, int]] = {}
    for _name, stype, off, size, link in secs:
        if stype != _SHT_SYMTAB:
            continue
        str_off = secs[link][2]
        for pos in range(off, off + size, 24):
            st_name, _info, _other, shndx, value, sz = struct.unpack_from("<IBBHQQ", data, pos)
            if st_name:
                start = str_off + st_name
                sym = data[start : data.index(b"\0", start)].decode(errors="replace")
                out[(shndx, sym)] = (value, sz)
    return out


def parse_object(data: bytes) -> ObjectBtf:
    """The BTF of an ELF BPF object's bytes (BtfError when it has none or it is malformed)."""
    try:
        elf, data = _elf_sections(data)
        by_name = {s[0]: (i, s) for i, s in enumerate(elf)}
        if ".BTF" not in by_name:
            raise BtfError("the object has no BTF (compile it with clang -g)")
        _i, (_n, _t, off, size, _l) = by_name[".BTF"]
        types, datasecs, _vars = _parse_btf(data[off : off + size])
        syms = _symbols(data, elf)
    except (struct.error, IndexError, ValueError) as exc:
        raise BtfError(f"malformed ELF object ({exc})") from None
    sections: dict[str, Section] = {}
    maps: dict[str, MapTypes] = {}
    for sec_name, entries in datasecs:
        hit = by_name.get(sec_name)
        if hit is None:
            continue
        index, (_n, stype, off, size, _l) = hit
        if sec_name == ".maps":
            for var_id, _o, _s in entries:
                var = types[var_id]
                maps[var.name] = _map_types(types, var.ref, var.name)
            continue
        if not sec_name.startswith(_SECTION_PREFIXES):
            continue
        image = bytes(size) if stype == _SHT_NOBITS else data[off : off + size]
        variables = {}
        for var_id, v_off, v_size in entries:
            var = types[var_id]
            v_off, v_size = syms.get((index, var.name), (v_off, v_size))
            variables[var.name] = Var(var.name, var.ref, v_off, v_size)
        sections[sec_name] = Section(sec_name, size, image, variables)
    return ObjectBtf(types, sections, maps)


def _map_types(types: dict[int, Type], struct_id: int, name: str) -> MapTypes:
    t = types.get(struct_id)
    while t is not None and t.kind in (TYPEDEF, *_QUALIFIERS):
        t = types.get(t.ref)
    key = value = 0
    for m in t.members if t is not None else ():
        ptr = types.get(m.type)
        if ptr is not None and ptr.kind == PTR:
            if m.name == "key":
                key = ptr.ref
            elif m.name == "value":
                value = ptr.ref
    return MapTypes(name, key, value)


@lru_cache(maxsize=64)
def _read_cached(path: str, mtime_ns: int, size: int) -> ObjectBtf:
    with open(path, "rb") as fh:
        return parse_object(fh.read())


def read_object(path: str) -> ObjectBtf:
    """parse_object of a file, cached by path, modification time and size (a bench spec names
    one object a thousand times)."""
    st = os.stat(path)
    return _read_cached(path, st.st_mtime_ns, st.st_size)
