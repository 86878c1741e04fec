"""Spec validation: every bad input names file:line:col and the offending value."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nkplan.api import load_file, load_text
from nkplan.errors import SpecError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_text(textwrap.dedent(text), "t.yaml")
    return info.value.problems


def test_example_validates() -> None:
    loaded = load_file(str(EXAMPLE))
    assert loaded.spec.stack == "demo"
    assert [link.name for link in loaded.spec.links] == ["nk-a", "nk-b", "ve-c"]
    assert loaded.spec.links[0].peer.addresses == ["10.10.1.2/32", "fd00:10::2/128"]


# a spec with a pair into namespace p, and a route list to complete
R = "stack: s\nnamespaces: [{name: p}]\nlinks:\n  - {name: a, kind: veth, peer: {name: b, namespace: p}}\nroutes:\n  - "
CASES = [
    (
        "unknown field",
        "stack: s\nlinks:\n  - {name: a, kind: veth, colour: red, peer: {name: b}}\n",
        "t.yaml:3:27: links[0].colour: unknown field 'colour'",
    ),
    (
        "long name",
        "stack: s\nlinks:\n  - {name: abcdefghijklmnop, kind: veth, peer: {name: b}}\n",
        "t.yaml:3:12: links[0].name: device name 'abcdefghijklmnop' is 16 bytes long; at most 15 allowed",
    ),
    ("slash", "stack: s\nlinks:\n  - {name: a/b, kind: veth, peer: {name: b}}\n", "'a/b' must not contain '/'"),
    ("colon", "stack: s\nlinks:\n  - {name: 'a:b', kind: veth, peer: {name: b}}\n", "'a:b' must not contain ':'"),
    (
        "space",
        "stack: s\nlinks:\n  - {name: 'a b', kind: veth, peer: {name: b}}\n",
        "'a b' must not contain whitespace",
    ),
    (
        "duplicate device",
        "stack: s\nlinks:\n  - {name: a, kind: veth, peer: {name: b}}\n  - {name: b, kind: veth, peer: {name: c}}\n",
        "t.yaml:4:12: links[1].name: device 'b' in the host namespace is declared twice",
    ),
    (
        "undeclared ns",
        "stack: s\nlinks:\n  - {name: a, kind: veth, peer: {name: b, namespace: nope}}\n",
        "t.yaml:3:54: links[0].peer.namespace: namespace 'nope' is not declared",
    ),
    (
        "route ns",
        "stack: s\nroutes:\n  - {namespace: nope, to: default, via: 10.0.0.1}\n",
        "t.yaml:3:17: routes[0].namespace: namespace 'nope' is not declared",
    ),
    (
        "mac on l3",
        "stack: s\nlinks:\n  - {name: a, kind: netkit, mac: '02:00:00:00:00:01', peer: {name: b}}\n",
        "t.yaml:3:34: links[0].mac: mac '02:00:00:00:00:01' cannot be set on an L3 netkit device",
    ),
    (
        "bad cidr",
        "stack: s\nlinks:\n  - {name: a, kind: veth, addresses: [10.0.0.300/24], peer: {name: b}}\n",
        "t.yaml:3:39: links[0].addresses[0]: invalid address '10.0.0.300/24'",
    ),
    (
        "no prefix",
        "stack: s\nlinks:\n  - {name: a, kind: veth, addresses: [10.0.0.3], peer: {name: b}}\n",
        "address '10.0.0.3' needs a prefix length",
    ),
    (
        "bad mac",
        "stack: s\nlinks:\n  - {name: a, kind: veth, mac: '02:00', peer: {name: b}}\n",
        "t.yaml:3:32: links[0].mac: invalid MAC address '02:00'",
    ),
    (
        "multicast mac",
        "stack: s\nlinks:\n  - {name: a, kind: veth, mac: '01:00:00:00:00:01', peer: {name: b}}\n",
        "is a multicast address",
    ),
    (
        "policy on veth",
        "stack: s\nlinks:\n  - {name: a, kind: veth, policy: blackhole, peer: {name: b}}\n",
        "t.yaml:3:35: links[0].policy: 'policy' is a netkit setting; 'a' is a veth pair",
    ),
    (
        "mode on veth",
        "stack: s\nlinks:\n  - {name: a, kind: veth, mode: l2, peer: {name: b}}\n",
        "links[0].mode: 'mode' is a netkit setting",
    ),
    (
        "scrub on veth peer",
        "stack: s\nlinks:\n  - {name: a, kind: veth, peer: {name: b, scrub: none}}\n",
        "links[0].peer.scrub: 'scrub' is a netkit setting",
    ),
    (
        "route dev undeclared",
        "stack: s\nroutes:\n  - {to: 10.0.0.0/8, dev: eth0}\n",
        "t.yaml:3:27: routes[0].dev: device 'eth0' is not declared in the host namespace",
    ),
    (
        "route host bits",
        "stack: s\nroutes:\n  - {to: 10.0.0.1/8, dev: eth0}\n",
        "has host bits set; did you mean 10.0.0.0/8?",
    ),
    (
        "bad mode",
        "stack: s\nlinks:\n  - {name: a, kind: netkit, mode: l4, peer: {name: b}}\n",
        "t.yaml:3:35: links[0].mode: Input should be 'l3' or 'l2' (got 'l4')",
    ),
    ("bad kind", "stack: s\nlinks:\n  - {name: a, kind: bridge, peer: {name: b}}\n", "(got 'bridge')"),
    (
        "missing peer",
        "stack: s\nlinks:\n  - {name: a, kind: veth}\n",
        "t.yaml:3:5: links[0].peer: required field 'peer' is missing",
    ),
    ("mtu range", "stack: s\nlinks:\n  - {name: a, kind: veth, mtu: 20, peer: {name: b}}\n", "(got 20)"),
    ("malformed", "stack: s\nlinks: [\n", "t.yaml:3:1: malformed YAML"),
    ("duplicate key", "stack: s\nstack: t\n", "t.yaml:2:1: malformed YAML"),
    ("stack name", "stack: 'a b'\n", "t.yaml:1:8: stack: stack name 'a b' must be"),
    (
        "mixed family",
        "stack: s\nlinks:\n  - {name: a, kind: veth, peer: {name: b}}\n"
        "routes:\n  - {to: 10.0.0.0/8, via: 'fd00::1', dev: a}\n",
        "routes[0].via: gateway 'fd00::1' is not of the same IP family as '10.0.0.0/8'",
    ),
    ("empty", "", "t.yaml:1:1: the file is empty"),
    (
        "unknown sysctl",
        "stack: s\nlinks:\n  - {name: a, kind: veth, sysctls: {ipv4.rp_filtr: 0}, peer: {name: b}}\n",
        "t.yaml:3:52: links[0].sysctls.ipv4.rp_filtr: unknown per-device sysctl 'ipv4.rp_filtr'",
    ),
    (
        "sysctl without family",
        "stack: s\nlinks:\n  - {name: a, kind: veth, peer: {name: b, sysctls: {rp_filter: 0}}}\n",
        "links[0].peer.sysctls.rp_filter: unknown per-device sysctl 'rp_filter': write ipv4.KEY or ipv6.KEY",
    ),
    (
        "read-only sysctl",
        "stack: s\nlinks:\n  - {name: a, kind: veth, sysctls: {ipv6.mc_forwarding: 1}, peer: {name: b}}\n",
        "links[0].sysctls.ipv6.mc_forwarding: ipv6.mc_forwarding is read-only in the kernel",
    ),
    (
        "namespace sysctl outside net",
        "stack: s\nnamespaces: [{name: a, sysctls: {kernel.pid_max: 4096}}]\n",
        "namespaces[0].sysctls.kernel.pid_max: sysctl 'kernel.pid_max' is not a net.* key",
    ),
    (
        "host sysctl value a bool",
        "stack: s\nhost: {sysctls: {net.ipv4.ip_forward: true}}\n",
        "t.yaml:2:39: host.sysctls.net.ipv4.ip_forward: a sysctl value is an integer or a string, not True",
    ),
    (
        "sysctl value not an int",
        "stack: s\nlinks:\n  - {name: a, kind: veth, sysctls: {ipv4.forwarding: yes}, peer: {name: b}}\n",
        "links[0].sysctls.ipv4.forwarding: Input should be a valid integer (got 'yes')",
    ),
    (
        "namespace forwarding overrides a device's",  # found by the random transitions (host kernel)
        "stack: s\nnamespaces: [{name: n, sysctls: {net.ipv4.ip_forward: 1}}]\n"
        "links:\n  - {name: a, kind: veth, namespace: n, sysctls: {ipv4.forwarding: 0}, peer: {name: b}}\n",
        "t.yaml:2:55: namespaces[0].sysctls.net.ipv4.ip_forward: net.ipv4.ip_forward: 1 sets ipv4.forwarding of "
        "every device in namespace 'n' to 1 each time it is written, overriding the ipv4.forwarding declared on "
        "'a' (links[0]) as 0: declare one or the other",
    ),
    (
        "host all.disable_ipv6 overrides a device's",
        "stack: s\nhost: {sysctls: {net.ipv6.conf.all.disable_ipv6: 0, net.ipv6.conf.b.disable_ipv6: 1}}\n",
        "host.sysctls.net.ipv6.conf.all.disable_ipv6: net.ipv6.conf.all.disable_ipv6: 0 sets ipv6.disable_ipv6 of "
        "every device in the host namespace to 0 each time it is written, overriding the ipv6.disable_ipv6 "
        "declared on 'b' (host.sysctls.net.ipv6.conf.b.disable_ipv6) as 1",
    ),
    (
        "blackhole with a device",
        R + "{namespace: p, to: 10.0.0.0/8, type: blackhole, dev: b}\n",
        "routes[0].dev: a blackhole route sends nowhere: 'dev' does not apply to it",
    ),
    (
        "blackhole in the host",
        R + "{to: 10.0.0.0/8, type: blackhole}\n",
        "blackhole route to '10.0.0.0/8' in the host namespace: nkplan marks host routes",
    ),
    (
        "table out of range",
        R + "{namespace: p, to: 10.0.0.0/8, dev: b, table: 0}\n",
        "t.yaml:6:51: routes[0].table: routing table 0 is out of range",
    ),
    (
        "table name unknown",
        R + "{namespace: p, to: 10.0.0.0/8, dev: b, table: pods}\n",
        "routes[0].table: routing table 'pods' is not a number and not a name",
    ),
    (
        "nexthop of another family",
        R + "{namespace: p, to: 10.0.0.0/8, nexthops: [{via: 'fd00::1', dev: b}]}\n",
        "routes[0].nexthops[0].via: gateway 'fd00::1' is not of the same IP family as '10.0.0.0/8'",
    ),
    (
        "ipv6 multipath without via",
        R + "{namespace: p, to: 'fd00::/64', nexthops: [{dev: b}, {via: 'fd00::1'}]}\n",
        "routes[0].nexthops[0]: an IPv6 multipath nexthop needs 'via'",
    ),
    (
        "nexthops and dev",
        R + "{namespace: p, to: 10.0.0.0/8, dev: b, nexthops: [{dev: b}]}\n",
        "routes[0].nexthops: a multipath route sets via/dev/onlink per nexthop",
    ),
    (
        "nexthop device undeclared",
        R + "{namespace: p, to: 10.0.0.0/8, nexthops: [{dev: b}, {dev: zz}]}\n",
        "routes[0].nexthops[1].dev: device 'zz' is not declared in namespace 'p'",
    ),
    (
        "weight out of range",
        R + "{namespace: p, to: 10.0.0.0/8, nexthops: [{dev: b, weight: 0}]}\n",
        "routes[0].nexthops[0].weight: Input should be greater than or equal to 1",
    ),
    (
        "onlink without gateway",
        R + "{namespace: p, to: 10.0.0.0/8, dev: b, onlink: true}\n",
        "routes[0].onlink: 'onlink' needs 'via'",
    ),
    (
        "one nexthop",
        R + "{namespace: p, to: 10.0.0.0/8, nexthops: [{dev: b}]}\n",
        "routes[0].nexthops: 'nexthops' needs two or more nexthops",
    ),
    (
        "ipv6 scope on a blackhole",
        R + "{namespace: p, to: 'fd00::/64', type: blackhole, scope: link}\n",
        "routes[0].scope: IPv6 routes have no scope",
    ),
    (
        "ipv6 multipath mtu too small",
        R + "{namespace: p, to: 'fd00::/64', mtu: 1000, nexthops: [{via: 'fd00::1'}, {via: 'fd00::2'}]}\n",
        "routes[0].mtu: mtu 1000 is below IPv6's minimum of 1280",
    ),
    (
        "ipv6 scope",
        R + "{namespace: p, to: 'fd00::/64', dev: b, scope: link}\n",
        "routes[0].scope: IPv6 routes have no scope",
    ),
    (
        "unknown type",
        R + "{namespace: p, to: 10.0.0.0/8, dev: b, type: nat}\n",
        "routes[0].type: Input should be 'unicast', 'local', 'blackhole'",
    ),
    (
        "source of another family",
        R + "{namespace: p, to: 10.0.0.0/8, dev: b, src: 'fd00::1'}\n",
        "routes[0].src: source 'fd00::1' is not of the same IP family",
    ),
    (
        "same key twice",
        R + "{namespace: p, to: 10.0.0.0/8, dev: b, table: 7}\n"
        "  - {namespace: p, to: 10.0.0.0/8, type: blackhole, table: 7}\n",
        "routes[1]: route to '10.0.0.0/8' in namespace 'p' (table 7) is declared twice",
    ),
]


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_located(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_all_problems_reported_at_once() -> None:
    found = problems(
        """\
        stack: s
        namespaces: [{name: p}, {name: p}]
        links:
          - {name: a, kind: veth, policy: forward, peer: {name: b, namespace: q}}
        routes:
          - {to: 10.0.0.0/8, dev: zz}
        """
    )
    assert len(found) == 4, found


def test_missing_file() -> None:
    with pytest.raises(SpecError) as info:
        load_file("/nonexistent/x.yaml")
    assert "no such file" in str(info.value)


def test_structural_and_cross_field_problems_reported_together() -> None:
    found = problems(
        """\
        stack: s
        namespaces: [{name: p}]
        links:
          - {name: this-is-far-too-long, kind: veth, peer: {name: b}}
          - {name: c, kind: veth, mode: l2, peer: {name: d, namespace: q}}
        """
    )
    assert any("links[0].name" in p and "20 bytes" in p for p in found), found
    assert any("t.yaml:5:33: links[1].mode: 'mode' is a netkit setting" in p for p in found), found
    assert any("links[1].peer.namespace: namespace 'q' is not declared" in p for p in found), found


@pytest.mark.parametrize("text", [EXAMPLE.read_text(), "stack: s\nnamespaces: [{name: on}, {name: 'yes'}]\n"])
def test_fast_and_round_trip_parsers_agree(text: str) -> None:
    from nkplan.spec.loader import SourceMap, _fast_plain, _slow_plain

    fast, slow = SourceMap("f"), SourceMap("f")
    assert _fast_plain(text, fast) == _slow_plain(text, slow)
    assert fast.values == slow.values and fast.keys == slow.keys


def test_positions_recorded_late_are_those_recorded_at_once() -> None:
    """The common parse records no position until one is asked for; then they are the same."""
    import pickle

    from nkplan.spec.loader import SourceMap, _event_plain, _parse

    text = EXAMPLE.read_text()
    late, at_once = SourceMap("f"), SourceMap("f")
    assert _parse(text, late) == _event_plain(text, at_once)
    assert late._pending is not None  # not recorded yet
    assert late.values == at_once.values and late.keys == at_once.keys and at_once.values
    assert late._pending is None
    loaded = pickle.loads(pickle.dumps(load_file(str(EXAMPLE))))  # a fleet's workers pass it on
    line, col = at_once.values[("links", 1, "kind")]
    assert loaded.source.position(("links", 1, "kind")) == f"{EXAMPLE}:{line}:{col}"


def test_garbage_collection_resumes_as_it_was_after_a_load() -> None:
    """Loading pauses the cyclic collector; after it (also after a refused spec) it is as before."""
    import gc

    assert gc.isenabled()
    load_file(str(EXAMPLE))
    assert gc.isenabled()
    with pytest.raises(SpecError):
        load_text("stack: s\nnamespaces: [{name: p, x: 1}]\n", "t.yaml")
    assert gc.isenabled()
    gc.disable()
    try:
        load_file(str(EXAMPLE))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_validate_reads_stdin_and_names_it() -> None:
    """`-` is standard input (DESIGN.md: every command takes a file or -); messages say <stdin>."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "nkplan.cli", "validate", "-"]
    ok = subprocess.run(cmd, input="stack: s\nnamespaces: [{name: p1}]\n", capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("<stdin>: valid (stack 's': 1 namespaces"), ok
    bad = subprocess.run(cmd, input="stack: s\nnamespaces: [{name: p1, x: 1}]\n", capture_output=True, text=True)
    assert bad.returncode == 1 and "<stdin>:2:25: namespaces[0].x: unknown field 'x'" in bad.stderr, bad
