"""BTF from an object file (spec/btf.py) and spec values encoded by BTF type (spec/bpfvalues.py):
every kind of value a global or a map entry takes, the literals, device references, and the
refusals, each naming the value. tests/unit/data/values.c declares one global of each kind."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from nkplan.core.records import NETNS_COOKIE, ValueRef
from nkplan.spec import btf
from nkplan.spec.bpfdecode import Undecodable, value_of
from nkplan.spec.bpfvalues import DeviceRef, Resolver, ValueProblem, decode, encode, hint
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


NOTHING = Resolver(
    lambda name, ns: f"{name!r} is not a device this spec declares",
    lambda name: (None, f"{name!r} is not a namespace this spec declares"),
)


def declaring(**addresses: tuple[str, ...]) -> Resolver:
    """Devices named by the keys (in namespace "pod" when asked so, else the host) declaring
    those addresses; namespaces pod and the host."""

    def device(name: str, ns: str | None) -> DeviceRef | str:
        if name not in addresses:
            return f"{name!r} is not a device this spec declares"
        return DeviceRef(ns or "", name, addresses[name])

    def namespace(name: str) -> tuple[str, None] | tuple[None, str]:
        return ("", None) if name == "host" else (name, None) if name == "pod" else (None, f"no namespace {name!r}")

    return Resolver(device, namespace)


def var_type(tp: btf.ObjectBtf, name: str) -> int:
    return next(s.vars[name].type for s in tp.sections.values() if name in s.vars)


def enc(tp: btf.ObjectBtf, name: str, value: Any) -> bytes:
    return encode(tp, var_type(tp, name), value, NOTHING).data


def refused(tp: btf.ObjectBtf, name: str, value: Any) -> ValueProblem:
    with pytest.raises(ValueProblem) as info:
        encode(tp, var_type(tp, name), value, NOTHING, (name,))
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
    got = encode(
        tp, var_type(tp, "pair"), {"delta": {"ifindex": "nk-a", "namespace": "pod"}}, declaring(**{"nk-a": ()})
    )
    assert got.data == bytes(12)
    assert got.refs == (ValueRef(8, 4, "pod", "nk-a"),)


def test_a_netns_cookie_reference_goes_where_64_bits_do(tp: btf.ObjectBtf) -> None:
    got = encode(tp, var_type(tp, "counter"), {"netns_cookie": "pod"}, declaring())
    assert got.data == bytes(8) and got.refs == (ValueRef(0, 8, "pod", "", NETNS_COOKIE),)
    host = encode(tp, var_type(tp, "counter"), {"netns_cookie": "host"}, declaring())
    assert host.refs == (ValueRef(0, 8, "", "", NETNS_COOKIE),)
    assert host.refs[0].words == "the netns cookie of the host namespace"
    with pytest.raises(ValueProblem, match="a netns cookie is 64 bits; __u32 has 32") as info:
        encode(tp, var_type(tp, "count"), {"netns_cookie": "pod"}, declaring(), ("count",))
    assert info.value.where == ("count",)
    with pytest.raises(ValueProblem, match="no namespace 'elsewhere'") as info:
        encode(tp, var_type(tp, "counter"), {"netns_cookie": "elsewhere"}, declaring(), ("counter",))
    assert info.value.where == ("counter", "netns_cookie")
    with pytest.raises(ValueProblem, match="takes netns_cookie, not namespace"):
        encode(tp, var_type(tp, "counter"), {"netns_cookie": "pod", "namespace": "pod"}, declaring())


def test_an_address_reference_is_the_one_address_of_the_family_the_type_holds(tp: btf.ObjectBtf) -> None:
    devs = declaring(**{"nk-a": ("10.1.0.2/24", "fd00::2/64"), "two": ("10.0.0.1/24", "10.0.0.2/24")})
    assert enc_with(tp, "ip4", {"address": "nk-a"}, devs) == bytes([10, 1, 0, 2])
    assert enc_with(tp, "addr", {"address": "nk-a"}, devs) == bytes([10, 1, 0, 2])  # __be32: network order
    assert enc_with(tp, "ip6", {"address": "nk-a", "namespace": "pod"}, devs) == bytes.fromhex(
        "fd00" + "00" * 13 + "02"
    )
    for name, value, words in [
        (
            "ip4",
            {"address": "two"},
            "two declares 2 IPv4 addresses \\(10.0.0.1/24, 10.0.0.2/24\\): __u8\\[4\\] takes exactly one",
        ),
        ("ip6", {"address": "two"}, "two declares no IPv6 address"),
        ("count", {"address": "nk-a"}, "__u32 holds no IP address"),
        ("label", {"address": "nk-a"}, "holds no IP address"),  # a char[N] is text
        ("addr", {"ifindex": "nk-a"}, "__be32 is in network order; an ifindex is a number in host order"),
        ("mac", {"address": "nk-a"}, "holds no IP address"),
        ("ip4", {"address": "nowhere"}, "'nowhere' is not a device this spec declares"),
        ("count", {"ifindex": "nk-a", "address": "nk-a"}, "a reference is \\{ifindex: DEVICE\\}"),
        ("pair", {"delta": {"port": 1}}, "a reference is"),
    ]:
        with pytest.raises(ValueProblem, match=words):
            encode(tp, var_type(tp, name), value, devs, (name,))


def enc_with(tp: btf.ObjectBtf, name: str, value: Any, resolve: Resolver) -> bytes:
    got = encode(tp, var_type(tp, name), value, resolve)
    assert got.refs == ()  # an address is known from the spec: nothing left for apply
    return got.data


def test_globals_and_the_instance_digest(tp: btf.ObjectBtf) -> None:
    devices = declaring(**{"nk-a": ()})
    gl = program_globals(tp, {"count": 3, "pair": {"delta": {"ifindex": "nk-a"}}}, devices)
    assert [(g.name, g.section, g.offset, g.text) for g in gl] == [
        ("count", ".rodata", 0, "3"),
        ("pair", ".rodata", 52, "{delta: {ifindex: nk-a}}"),
    ]
    with pytest.raises(ValueProblem, match="no global variable 'cuont' \\(it has: addr, bits, color"):
        program_globals(tp, {"cuont": 3}, devices)
    assert instance_digest("ab" * 8, (), lambda ref: None) == "ab" * 8  # no globals: the object's
    at5 = instance_digest("ab" * 8, gl, lambda ref: 5)
    assert at5 != instance_digest("ab" * 8, gl, lambda ref: 6) != instance_digest("ab" * 8, gl, lambda ref: None)
    assert at5 == instance_digest("ab" * 8, gl, lambda ref: 5)
    other = program_globals(tp, {"count": 4, "pair": {"delta": {"ifindex": "nk-a"}}}, devices)
    assert instance_digest("ab" * 8, other, lambda ref: 5) != at5


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


@pytest.mark.parametrize(
    ("name", "value", "back"),
    [
        ("count", 3, 3),
        ("small", -4, -4),
        ("on", True, True),
        ("addr", "10.0.0.1", "10.0.0.1"),  # a __be32 comes back as an IPv4 literal
        ("addr", 0x0A000002, "10.0.0.2"),
        ("v6addr", "fd00::1", "fd00::1"),
        ("v4addr", "10.0.0.3", "10.0.0.3"),
        ("v4addr", {"s_addr": "10.0.0.4"}, "10.0.0.4"),
        ("nport", 8080, 8080),
        ("mac", "02:00:00:00:00:01", "02:00:00:00:00:01"),
        ("ip4", "10.1.2.3", "10.1.2.3"),
        ("ip6", "fd00::1", "fd00::1"),
        ("label", "eth0", "eth0"),
        ("color", "BLUE", "BLUE"),
        ("color", 7, 7),  # no enumerator has it
        ("pair", {"port": 80, "delta": -1}, {"port": 80, "delta": -1}),
        ("pair", {}, {}),
        ("list", [1, 2, 0], [1, 2]),
        ("either", {"a": 5}, {"b": 5}),  # a union comes back as its widest member
        ("counter", 9, 9),
    ],
)
def test_bytes_come_back_as_the_spec_value_that_encodes_to_them(
    tp: btf.ObjectBtf, name: str, value: Any, back: Any
) -> None:
    data = enc(tp, name, value)
    got = value_of(tp, var_type(tp, name), data)
    assert got == back
    assert enc(tp, name, got) == data


def test_bytes_a_spec_cannot_write_are_refused(tp: btf.ObjectBtf) -> None:
    with pytest.raises(Undecodable, match="bitfield"):
        value_of(tp, var_type(tp, "bits"), (0x12).to_bytes(4, "little"))
    assert value_of(tp, var_type(tp, "bits"), bytes(4)) == {}
    with pytest.raises(Undecodable, match="cannot be written in a spec"):
        value_of(tp, var_type(tp, "pointer"), bytes(8))
    raw = b"\xff\xfe" + bytes(6)  # not text: the (signed) chars
    assert value_of(tp, var_type(tp, "label"), raw) == [-1, -2] and enc(tp, "label", [-1, -2]) == raw
