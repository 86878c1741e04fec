"""The address validators' quick answer for the text ipaddress itself writes (spec/types.py) is
the answer ipaddress gives, for every text: accepted or refused, the same value back, the same
message."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkplan.spec.types import canonical_address, canonical_cidr, check_interface_cidr, check_ip, check_route_to


def _by_ipaddress_cidr(value: str) -> str:
    """check_interface_cidr as it was before the quick answer: ipaddress for every text."""
    if "/" not in value:
        raise ValueError(f"address {value!r} needs a prefix length, e.g. {value}/32 or {value}/128")
    try:
        return ipaddress.ip_interface(value).with_prefixlen
    except ValueError:
        raise ValueError(f"invalid address {value!r} (expected CIDR like 10.0.0.1/24 or fd00::1/64)") from None


def _by_ipaddress_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"invalid IP address {value!r}") from None


def _by_ipaddress_route(value: str) -> str:
    if value == "default":
        return value
    if "/" not in value:
        raise ValueError(f"route destination {value!r} needs a prefix length, e.g. {value}/32")
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"invalid route destination {value!r} (expected CIDR or 'default')") from None
    loose = iface.network
    if loose.with_prefixlen != iface.with_prefixlen:
        raise ValueError(f"route destination {value!r} has host bits set; did you mean {loose.with_prefixlen}?")
    return loose.with_prefixlen


def _outcome(check: Callable[[str], str], value: str) -> tuple[str, str]:
    try:
        return "ok", check(value)
    except ValueError as exc:
        return "error", str(exc)


PAIRS = [
    (check_interface_cidr, _by_ipaddress_cidr),
    (check_ip, _by_ipaddress_ip),
    (check_route_to, _by_ipaddress_route),
]

TRICKY = [
    "10.0.0.1/32", "10.0.0.0/8", "10.0.0.1/8", "0.0.0.0/0", "255.255.255.255/32", "10.0.0.1/33", "10.0.0.1/032",
    "10.0.0.1/-1", "10.0.0.1/", "10.0.0.1/²", "010.0.0.1/32", "10.0.0.256/32", "10.0.0/24", "1.2.3.4.5/32",
    "10.0.0.1/255.0.0.0", "10.0.0.1/0.0.0.255", " 10.0.0.1/32", "10.0.0.1/32 ", "10.0.0.1\x00/32", "١٠.0.0.1/32",
    "fd00::1/64", "fd00::/64", "FD00::1/64", "fd00:0::1/64", "fd00:0:0:0:0:0:0:1/128", "::/0", "::1/128", "::/128",
    "1::/16", "0:0:1::/48", "1:0:0:1::/64", "1::1:0:0:1/128", "::ffff:1.2.3.4/128", "::ffff:102:304/128",
    "::1.2.3.4/128", "fe80::1%eth0/64", "fd00::1/129", "fd00::1/0128", "fd00:::1/64", "fd00::g/64",
    "1:2:3:4:5:6:7:8/128", "1:2:3:4:5:6:7::/128", "1:0:3:4:5:6:7:8/128", "1::3:4:5:6:7:8/128", "00fd::1/64",
    "fd00::1", "10.0.0.1", "default", "", "/", "1.2.3.4/1.2.3.4", "1:2:3:4:5:6:7:8:9/128", "::ffff:0:0/96",
    "fe80::1%1/64",
]  # fmt: skip


@pytest.mark.parametrize("text", TRICKY + [t.partition("/")[0] for t in TRICKY])
def test_tricky_texts_answer_as_ipaddress(text: str) -> None:
    for check, reference in PAIRS:
        assert _outcome(check, text) == _outcome(reference, text), (check.__name__, text)


def _v6_texts() -> st.SearchStrategy[str]:
    hextet = st.sampled_from([0, 0, 0, 1, 0xFFFF]) | st.integers(0, 0xFFFF)
    value = st.lists(hextet, min_size=8, max_size=8).map(lambda hs: sum(h << (16 * (7 - i)) for i, h in enumerate(hs)))
    return value.map(lambda v: str(ipaddress.IPv6Address(v))) | value.map(lambda v: ipaddress.IPv6Address(v).exploded)


def _v4_texts() -> st.SearchStrategy[str]:
    octet = st.sampled_from(["0", "1", "00", "01", "255", "256", "099"]) | st.integers(0, 300).map(str)
    return st.lists(octet, min_size=3, max_size=5).map(".".join)


@settings(max_examples=3000, deadline=None)
@given(
    addr=_v4_texts() | _v6_texts(),
    length=st.sampled_from(["", "/0", "/8", "/24", "/31", "/32", "/33", "/64", "/127", "/128", "/129", "/08", "/x"])
    | st.integers(0, 140).map(lambda n: f"/{n}"),
)
def test_generated_texts_answer_as_ipaddress(addr: str, length: str) -> None:
    text = addr + length
    for check, reference in PAIRS:
        assert _outcome(check, text) == _outcome(reference, text), (check.__name__, text)


@settings(max_examples=1000, deadline=None)
@given(text=st.text(alphabet="0123456789abcdefABCDEF:./%x ", max_size=45))
def test_any_text_answers_as_ipaddress(text: str) -> None:
    for check, reference in PAIRS:
        assert _outcome(check, text) == _outcome(reference, text), (check.__name__, text)


def test_quick_answers_cover_the_usual_forms() -> None:
    """The usual texts do take the quick path (else it would be correct but slow)."""
    assert canonical_cidr("10.50.3.1/32") == (4, 0x0A320301, 32)
    assert canonical_cidr("fd00:3:4::2/128") == (6, 0xFD000003000400000000000000000002, 128)
    assert canonical_address("fd00::1") == (6, 0xFD000000000000000000000000000001)
    assert canonical_cidr("10.0.0.1/032") is None and canonical_address("FD00::1") is None


@settings(max_examples=500, deadline=None)
@given(texts=st.lists(st.sampled_from([t for t in TRICKY if _outcome(_by_ipaddress_cidr, t)[0] == "ok"]), max_size=8))
def test_sort_cidrs_as_by_ipaddress(texts: list[str]) -> None:
    from nkplan.core.desired import sort_cidrs

    ifaces = sorted(map(ipaddress.ip_interface, texts), key=lambda i: (i.version, int(i.ip), i.network.prefixlen))
    assert sort_cidrs(texts) == tuple(i.with_prefixlen for i in ifaces)
