"""BTF from an object file (spec/btf.py) and spec values encoded by BTF type (spec/bpfvalues.py):
every kind of value a global or a map entry takes, the literals, device references, and the
refusals, each naming the value. tests/unit/data/values.c declares one global of each kind."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from nkplan.core.records import ValueRef
from nkplan.spec import btf
from nkplan.spec.bpfvalues import DeviceRef, ValueProblem, decode, encode, hint
from nkplan.spec.globals import instance_digest, program_globals

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def tp(tmp_path_factory: pytest.TempPathFactory) -> btf.ObjectBtf:
    out = tmp_path_factory.mktemp("btf") / "values.o"
    subprocess.run(
        ["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", str(DATA / "values.c"),
         "-o", str(out)],
        check=True,
    )  # fmt: skip
    return btf.read_object(str(out))


def no_devices(name: str, ns: str | None) -> DeviceRef | str:
    return f"{name!r} is not a device this spec declares"


def var_type(tp: btf.ObjectBtf, name: str) -> int:
    return next(s.vars[name].type for s in tp.sections.values() if name in s.vars)


def enc(tp: btf.ObjectBtf, name: str, value: Any) -> bytes:
    return encode(tp, var_type(tp, name), value, no_devices).data


def refused(tp: btf.ObjectBtf, name: str, value: Any) -> ValueProblem:
    with pytest.raises(ValueProblem) as info:
        encode(tp, var_type(tp, name), value, no_devices, (name,))
    return info.value


def test_sections_variables_and_maps_come_from_the_elf_tables(tp: btf.ObjectBtf) -> None:
    ro = tp.sections[".rodata"]
    assert ro.frozen and not tp.sections[".data"].frozen
    assert ro.vars["count"].offset == 0 and ro.image[:4] == (7).to_bytes(4, "little")
    assert (ro.vars["pair"].size, tp.describe(ro.vars["pair"].type)) == (12, "struct pair")
    assert tp.sections[".data"].image == (5).to_bytes(8, "little")
    assert tp.sections[".bss"].image == bytes(tp.sections[".bss"].size)
    assert {n: (tp.describe(m.key), tp.describe(m.value)) for n, m in tp.maps.items()} == {
        "pairs": ("struct pair", "__u64")
    }


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("count", 4294967295, b"\xff\xff\xff\xff"),
        ("small", -128, b"\x80"),
        ("on", True, b"\x01"),
        ("addr", "10.1.2.3", bytes([10, 1, 2, 3])),
        ("addr", 0x0A000001, bytes([10, 0, 0, 1])),  # network order
        ("nport", 8080, (8080).to_bytes(2, "big")),
        ("mac", "02:00:0a:0B:0c:ff", bytes([2, 0, 10, 11, 12, 255])),
        ("ip4", "192.0.2.1", bytes([192, 0, 2, 1])),
        ("ip6", "2001:db8::1", bytes.fromhex("20010db8000000000000000000000001")),
        ("label", "eth0", b"eth0\0\0\0\0"),
        ("color", "BLUE", (300).to_bytes(4, "little")),
        ("color", 2, (2).to_bytes(4, "little")),
        ("pair", {"delta": -1}, bytes(8) + b"\xff\xff\xff\xff"),
        ("pair", {"port": 80, "mac": "00:00:00:00:00:01"}, (80).to_bytes(2, "little") + bytes(5) + b"\x01" + bytes(4)),
        ("list", [1, 2], (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + bytes(4)),
        ("either", {"b": 1}, (1).to_bytes(8, "little")),
        ("counter", 2**64 - 1, b"\xff" * 8),
    ],
)
def test_values_encode_by_their_btf_type(tp: btf.ObjectBtf, name: str, value: Any, expected: bytes) -> None:
    assert enc(tp, name, value) == expected


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("count", 4294967296, "4294967296 does not fit __u32 (0..4294967295)"),
        ("count", -1, "-1 does not fit __u32"),
        ("count", "7", "'7' is not an integer (__u32)"),
        ("count", True, "true is not an integer (__u32)"),
        ("small", 128, "128 does not fit __s8 (-128..127)"),
        ("on", 1, "1 is not a boolean (_Bool takes true or false)"),
        ("addr", "10.0.0.256", "'10.0.0.256' is not an IPv4 address (__be32)"),
        ("mac", "02:00:00:00:00", "is not a MAC address (__u8[6])"),
        ("ip4", "2001:db8::1", "is an IPv6 address; __u8[4] holds IPv4"),
        ("label", "12345678", "'12345678' is 8 bytes; char[8] holds at most 7 and the NUL"),
        ("color", "PINK", "'PINK' is not an enumerator of enum color (it has: RED, GREEN, BLUE)"),
        ("pair", {"prot": 1}, "struct pair has no field 'prot' (it has: port, mac, delta)"),
        ("pair", 3, "3 is not a mapping of field names (struct pair)"),
        ("list", [1, 2, 3, 4], "4 elements do not fit __u32[3]"),
        ("either", {"a": 1, "b": 2}, "union either is a union: set exactly one of its members (a, b)"),
        ("bits", {"low": 1}, "field 'low' of struct bits is a bitfield"),
        ("pointer", 0, "__u64 * is a pointer: it cannot be set from the spec"),
        ("count", {"ifindex": "nowhere"}, "'nowhere' is not a device this spec declares"),
        ("small", {"ifindex": "x"}, "an ifindex needs 4 bytes; __s8 has 1"),
    ],
)
def test_values_that_do_not_fit_are_refused_in_words(tp: btf.ObjectBtf, name: str, value: Any, words: str) -> None:
    assert words in refused(tp, name, value).message


def test_a_problem_says_where_inside_the_value(tp: btf.ObjectBtf) -> None:
    assert refused(tp, "pair", {"port": 70000}).where == ("pair", "port")
    assert refused(tp, "list", [1, "x"]).where == ("list", 1)
    assert refused(tp, "count", {"ifindex": "nowhere"}).where == ("count", "ifindex")


def test_a_device_reference_leaves_zeros_and_says_where_the_ifindex_goes(tp: btf.ObjectBtf) -> None:
    def devices(name: str, ns: str | None) -> DeviceRef | str:
        return DeviceRef(ns or "", name)

    got = encode(tp, var_type(tp, "pair"), {"delta": {"ifindex": "nk-a", "namespace": "pod"}}, devices)
    assert got.data == bytes(12)
    assert got.refs == (ValueRef(8, 4, "pod", "nk-a"),)


def test_globals_and_the_instance_digest(tp: btf.ObjectBtf) -> None:
    def devices(name: str, ns: str | None) -> DeviceRef | str:
        return DeviceRef("", name)

    gl = program_globals(tp, {"count": 3, "pair": {"delta": {"ifindex": "nk-a"}}}, devices)
    assert [(g.name, g.section, g.offset, g.text) for g in gl] == [
        ("count", ".rodata", 0, "3"),
        ("pair", ".rodata", 52, "{delta: {ifindex: nk-a}}"),
    ]
    with pytest.raises(ValueProblem, match="no global variable 'cuont' \\(it has: addr, bits, color"):
        program_globals(tp, {"cuont": 3}, devices)
    assert instance_digest("ab" * 8, (), lambda ns, d: None) == "ab" * 8  # no globals: the object's
    at5 = instance_digest("ab" * 8, gl, lambda ns, d: 5)
    assert at5 != instance_digest("ab" * 8, gl, lambda ns, d: 6) != instance_digest("ab" * 8, gl, lambda ns, d: None)
    assert at5 == instance_digest("ab" * 8, gl, lambda ns, d: 5)
    other = program_globals(tp, {"count": 4, "pair": {"delta": {"ifindex": "nk-a"}}}, devices)
    assert instance_digest("ab" * 8, other, lambda ns, d: 5) != at5


def test_bytes_read_back_are_shown_as_the_type_reads(tp: btf.ObjectBtf) -> None:
    shown = {
        n: decode(hint(tp, var_type(tp, n)), enc(tp, n, v))
        for n, v in [("count", 9), ("small", -3), ("on", True), ("addr", "10.0.0.1"), ("mac", "02:00:00:00:00:01"),
                     ("ip6", "2001:db8::1"), ("label", "eth0"), ("pair", {"port": 1})]
    }  # fmt: skip
    assert shown == {
        "count": "9",
        "small": "-3",
        "on": "true",
        "addr": str(0x0A000001),
        "mac": "02:00:00:00:00:01",
        "ip6": "2001:db8::1",
        "label": "'eth0'",
        "pair": "0x" + "0100" + "00" * 10,
    }


def test_an_object_without_btf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(btf.BtfError, match="64-bit little-endian ELF"):
        btf.parse_object(b"\x7fELF" + bytes(60))
