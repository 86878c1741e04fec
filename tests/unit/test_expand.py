"""`repeat:` templates, `pools:` address arithmetic and `defaults:`: what they expand to, and every
problem named at the template's file:line:col with the instance."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nkplan import api
from nkplan.errors import SpecError
from nkplan.kernel.fake import FakeKernel


def load(text: str) -> api.Loaded:
    return api.load_text(textwrap.dedent(text), "t.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(text)
    return info.value.problems


def pods(count: str = "count: 3", pools: str = "pod4: 10.20.0.0/24", extra: str = "") -> str:
    return f"""\
stack: s
pools: {{{pools}}}
{extra}
repeat:
  pods:
    {count}
    namespaces:
      - name: "pod-{{i}}"
    links:
      - name: "h-{{i}}"
        kind: veth
        peer: {{name: eth0, namespace: "pod-{{i}}", addresses: ["{{pod4.host(i)}}/32"]}}
    routes:
      - {{namespace: "pod-{{i}}", to: default, dev: eth0}}
      - {{to: "{{pod4.host(i)}}/32", dev: "h-{{i}}"}}
"""


# (case, template spec, function of the loaded spec → observed, expected)
EXPANSIONS: list[tuple[str, str, Any, Any]] = [
    ("count", pods(), lambda s: [n.name for n in s.namespaces], ["pod-0", "pod-1", "pod-2"]),
    ("range", pods("range: [5, 8]"), lambda s: [n.name for n in s.namespaces], ["pod-5", "pod-6", "pod-7"]),
    ("skip", pods("count: 4\n    skip: [1]"), lambda s: [n.name for n in s.namespaces], ["pod-0", "pod-2", "pod-3"]),
    ("empty range", pods("count: 0"), lambda s: (s.namespaces, s.links, s.routes), ([], [], [])),
    (
        "host(i) of an IPv4 pool",
        pods("range: [1, 3]"),
        lambda s: [link.peer.addresses for link in s.links],
        [["10.20.0.1/32"], ["10.20.0.2/32"]],
    ),
    (
        "routes follow",
        pods("range: [1, 2]"),
        lambda s: [(r.namespace, r.to, r.dev) for r in s.routes],
        [("pod-1", "default", "eth0"), (None, "10.20.0.1/32", "h-1")],
    ),
    (
        "IPv6 pool",
        pods("range: [16, 18]", "pod4: 'fd00:20::/64'").replace("/32", "/128"),
        lambda s: [link.peer.addresses[0] for link in s.links],
        ["fd00:20::10/128", "fd00:20::11/128"],
    ),
    (
        "/31 pairs: both ends of the i-th /31",
        """\
        stack: s
        pools: {p2p: 10.30.0.0/24}
        repeat:
          pairs:
            count: 3
            links:
              - name: "h-{i}"
                kind: veth
                addresses: ["{p2p.host(i, 31, 0)}/31"]
                peer: {name: "p-{i}", addresses: ["{p2p.host(i, 31, 1)}/31"]}
        """,
        lambda s: [(link.addresses[0], link.peer.addresses[0]) for link in s.links],
        [("10.30.0.0/31", "10.30.0.1/31"), ("10.30.0.2/31", "10.30.0.3/31"), ("10.30.0.4/31", "10.30.0.5/31")],
    ),
    (
        "/127 pairs and net()",
        """\
        stack: s
        pools: {p6: 'fd00:30::/64', gw: 'fd00:31::/64'}
        namespaces: [{name: p}]
        links: [{name: h, kind: veth, peer: {name: eth0, namespace: p}}]
        repeat:
          nets:
            count: 2
            routes: [{namespace: p, to: "{p6.net(i, 120)}", dev: eth0, via: "{gw.host(i, 127, 1)}"}]
        """,
        lambda s: [(r.to, r.via) for r in s.routes],
        [("fd00:30::/120", "fd00:31::1"), ("fd00:30::100/120", "fd00:31::3")],
    ),
    (
        "for_each list: key and position",
        """\
        stack: s
        repeat:
          apps:
            for_each: [web, db]
            namespaces: [{name: "app-{key}-{i}"}]
        """,
        lambda s: [n.name for n in s.namespaces],
        ["app-web-0", "app-db-1"],
    ),
    (
        "for_each mapping: item fields, typed whole values, stable pool offsets",
        """\
        stack: s
        pools: {a: 10.1.0.0/16}
        repeat:
          apps:
            for_each:
              web: {n: 7, mtu: 9000}
              db: {n: 3, mtu: 1500}
            namespaces: [{name: "{key}"}]
            links:
              - {name: "h-{key}", kind: veth, mtu: "{item.mtu}",
                 peer: {name: eth0, namespace: "{key}", addresses: ["{a.host(item.n)}/32"]}}
        """,
        lambda s: [(link.name, link.mtu, link.peer.addresses) for link in s.links],
        [("h-web", 9000, ["10.1.0.7/32"]), ("h-db", 1500, ["10.1.0.3/32"])],
    ),
    (
        "literal braces",
        """\
        stack: s
        repeat:
          x:
            count: 1
            namespaces: [{name: "n{{{i}}}"}]
        """,
        lambda s: [n.name for n in s.namespaces],
        ["n{0}"],
    ),
    (
        "template keys: host sysctls per instance",
        """\
        stack: s
        repeat:
          pods:
            count: 2
            links: [{name: "h-{i}", kind: veth, peer: {name: "p-{i}"}}]
            host: {sysctls: {"net.ipv4.conf.h-{i}.rp_filter": 0}}
        """,
        lambda s: s.host.sysctls,
        {"net.ipv4.conf.h-0.rp_filter": 0, "net.ipv4.conf.h-1.rp_filter": 0},
    ),
    (
        "explicit items first, then instances in order",
        pods("count: 2", extra="namespaces: [{name: first}]"),
        lambda s: [n.name for n in s.namespaces],
        ["first", "pod-0", "pod-1"],
    ),
    (
        "defaults: item > kind > defaults, peers, nested mappings merged",
        """\
        stack: s
        defaults:
          links: {kind: netkit, mtu: 1400, sysctls: {ipv4.forwarding: 1}}
          links_netkit: {mtu: 9000, scrub: none}
          links_veth: {mtu: 1300}
          peers: {up: false, sysctls: {ipv4.arp_ignore: 1}}
          peers_netkit: {policy: blackhole}
          routes: {metric: 7}
        namespaces: [{name: p}]
        links:
          - {name: a, peer: {name: a1, namespace: p, sysctls: {ipv4.rp_filter: 0}}}
          - {name: b, kind: veth, mtu: 1200, peer: {name: b1, up: true}}
          - {name: c, kind: veth, sysctls: {ipv4.rp_filter: 2}, peer: {name: c1}}
        routes: [{to: 10.0.0.0/8, dev: a}, {to: 10.1.0.0/16, dev: a, metric: 1}]
        """,
        lambda s: (
            [
                (link.kind, link.mtu, link.scrub, link.sysctls, link.peer.up, link.peer.policy, link.peer.sysctls)
                for link in s.links
            ]
            + [r.metric for r in s.routes]
        ),
        [
            (
                "netkit",
                9000,
                "none",
                {"ipv4.forwarding": 1},
                False,
                "blackhole",
                {"ipv4.arp_ignore": 1, "ipv4.rp_filter": 0},
            ),
            ("veth", 1200, None, {"ipv4.forwarding": 1}, True, None, {"ipv4.arp_ignore": 1}),
            ("veth", 1300, None, {"ipv4.forwarding": 1, "ipv4.rp_filter": 2}, False, None, {"ipv4.arp_ignore": 1}),
            7,
            1,
        ],
    ),
    (
        "defaults fill template instances too",
        pods("count: 2", extra="defaults: {links: {mtu: 9000}, namespaces: {sysctls: {net.ipv4.ip_forward: 1}}}"),
        lambda s: [(link.mtu, ns.sysctls) for link, ns in zip(s.links, s.namespaces, strict=True)],
        [(9000, {"net.ipv4.ip_forward": 1})] * 2,
    ),
]


@pytest.mark.parametrize(("case", "text", "observe", "expected"), EXPANSIONS, ids=[c[0] for c in EXPANSIONS])
def test_expansion(case: str, text: str, observe: Any, expected: Any) -> None:
    assert observe(load(text).spec) == expected


# (case, spec, every expected fragment of the first problem reported; a bad item also makes the
# cross-field checks of the items that need it complain, as for any spec)
ERRORS: list[tuple[str, str, list[str]]] = [
    (
        "pool exhausted",
        pods("count: 300"),
        [
            "t.yaml:12:62: pods[256].links[0].peer.addresses[0]:",
            "pool pod4 (10.20.0.0/24) is exhausted",
            "asked for number 256",
            "(and 43 more instances)",
        ],
    ),
    (
        "collision between instances of two templates",
        pods("count: 2").replace(
            "repeat:\n",
            "repeat:\n  more:\n    count: 1\n    links:\n"
            '      - {name: x, kind: veth, peer: {name: y, addresses: ["{pod4.host(i)}/32"]}}\n',
        ),
        ["pods[0].links[0].peer.addresses[0]: 10.20.0.0 collides with more[0].links[0].peer.addresses[0]", "t.yaml:8:"],
    ),
    (
        "collision with an explicit item, both places",
        pods("count: 20", extra="links: [{name: e, kind: veth, peer: {name: f, addresses: [10.20.0.17/32]}}]"),
        [
            "t.yaml:12:62: pods[17].links[0].peer.addresses[0]: 10.20.0.17 collides with links[0].peer.addresses[0]",
            "(10.20.0.17/32, t.yaml:3:",
        ],
    ),
    (
        "a /31 overlapping a host address of another pool use",
        """\
        stack: s
        pools: {p: 10.0.0.0/24}
        repeat:
          a: {count: 2, links: [{name: "a{i}", kind: veth, addresses: ["{p.host(i, 31, 0)}/31"], peer: {name: "b{i}"}}]}
          b: {range: [3, 4], links: [{name: "c{i}", kind: veth, addresses: ["{p.host(i)}/32"], peer: {name: "d{i}"}}]}
        """,
        ["b[3].links[0].addresses[0]: 10.0.0.3 collides with a[1].links[0].addresses[0] (10.0.0.2 (in 10.0.0.2/31)"],
    ),
    (
        "duplicate device names across instances name both",
        pods("count: 2").replace('"h-{i}"', "h"),
        [
            "t.yaml:10:15: pods[1].links[0].name: device 'h' in the host namespace is declared twice "
            "(pods[0].links[0] and pods[1].links[0])"
        ],
    ),
    (
        "a template's bad value names the instance",
        pods("range: [99998, 99999]", "pod4: 10.0.0.0/8").replace('"h-{i}"', '"host-end-{i}-x"', 1),
        ["t.yaml:10:15: pods[99998].links[0].name: device name 'host-end-99998-x' is 16 bytes long"],
    ),
    (
        "unknown expression",
        pods().replace('"pod-{i}"', '"pod-{__import__}"', 1),
        ["t.yaml:8:15: repeat.pods.namespaces[0].name: unknown expression {__import__}; the language has {i}"],
    ),
    ("unknown pool", pods().replace("pod4.host", "pod5.host", 1), ["no pool 'pod5' (pools: pod4)"]),
    ("key without for_each", pods().replace("{i}", "{key}", 1), ["{key} needs for_each"]),
    ("wrong arity", pods().replace("host(i)", "host(i, 24)", 1), ["host takes host(n) or host(n, LEN, k)"]),
    ("arguments are closed", pods().replace("host(i)", "host(i*2)", 1), ["argument 'i*2' is not i, key, item.FIELD"]),
    ("unbalanced brace", pods().replace('"pod-{i}"', '"pod-{i"', 1), ["unbalanced '{' in 'pod-{i'"]),
    ("prefix too short", pods().replace("host(i)", "host(i, 16, 0)", 1), ["prefix length 16 does not fit pool pod4"]),
    (
        "offset past the subnet",
        pods().replace("host(i)", "host(i, 31, 2)", 1),
        ["a /31 holds addresses 0..1, asked for 2"],
    ),
    (
        "bad pool",
        pods(pools="pod4: 10.20.0.1/24"),
        ["t.yaml:2:15: pools.pod4: pool 'pod4': '10.20.0.1/24' is not a network"],
    ),
    ("two selectors", pods("count: 2\n    range: [0, 2]"), ["exactly one of 'count', 'range' or 'for_each'"]),
    ("bad range", pods("range: [3, 1]"), ["'range' is [START, STOP] with START <= STOP"]),
    ("skip outside", pods("count: 2\n    skip: [5]"), ["skip 5 is not an instance of this template"]),
    ("unknown template field", pods("count: 2\n    pods: 1"), ["repeat.pods.pods: unknown field 'pods' in a template"]),
    (
        "missing item field",
        """\
        stack: s
        repeat:
          a: {for_each: {x: {}, y: {m: 1}}, namespaces: [{name: "n{item.m}"}]}
        """,
        ["a[x].namespaces[0].name: instance 'x' has no field 'm'"],
    ),
    ("defaults: no identity", pods(extra="defaults: {routes: {to: 10.0.0.0/8}}"), ["defaults cannot set it"]),
    ("defaults: unknown section", pods(extra="defaults: {pods: {}}"), ["unknown defaults section 'pods'"]),
    (
        "defaults: unknown field",
        pods(extra="defaults: {links: {colour: red}}"),
        ["t.yaml:3:20: defaults.links.colour:"],
    ),
    (
        "defaults: a bad value is reported once, at its line",
        pods(extra="defaults: {links: {mtu: 1}}"),
        ["t.yaml:3:25: defaults.links.mtu: Input should be greater than or equal to 68"],
    ),
]


CASCADE = ("a template's bad value names the instance", "defaults: a bad value is reported once, at its line")


@pytest.mark.parametrize(("case", "text", "fragments"), ERRORS, ids=[c[0] for c in ERRORS])
def test_problem(case: str, text: str, fragments: list[str]) -> None:
    found = problems(text)
    assert len(found) == 1 or case in CASCADE, found
    assert len([p for p in found if fragments[0] in p]) == 1, found  # once, not once per instance
    for fragment in fragments:
        assert fragment in found[0], found


def test_the_expanded_spec_is_a_spec_that_means_the_same(tmp_path: Path) -> None:
    from nkplan.cli import main

    src = tmp_path / "pods.yaml"
    src.write_text(pods("count: 4", extra="defaults: {links: {mtu: 9000}}"))
    out = tmp_path / "out.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["validate", "--expanded", "--format", "json", str(src)]) == 0
    out.write_text(buf.getvalue())
    doc = json.loads(buf.getvalue())
    assert not {"repeat", "pools", "defaults"} & set(doc)
    assert api.load_file(str(out)).spec == api.load_file(str(src)).spec


def test_plans_name_expanded_objects_and_show_plans_to_no_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))
    kernel = FakeKernel()
    spec = load(pods("count: 20", extra="defaults: {links: {mtu: 9000}, peers: {sysctls: {ipv4.arp_ignore: 1}}}"))
    plan = api.plan(spec, on=kernel).plan
    addresses = {c.address for c in plan.changes}
    assert "namespace[pod-17]" in addresses
    api.apply(spec, on=kernel)
    assert not api.plan(spec, on=kernel).plan.has_changes
    shown = api.show("s", spec=spec, on=kernel)
    again = api.load_text(json.dumps(shown.document), "shown.json")
    assert not api.plan(again, on=kernel).plan.has_changes
    # one instance left out: the plan deletes exactly that pod
    fewer = load(
        pods("count: 20\n    skip: [7]", extra="defaults: {links: {mtu: 9000}, peers: {sysctls: {ipv4.arp_ignore: 1}}}")
    )
    gone = api.plan(fewer, on=kernel).plan
    changed = [(c.address, c.action) for c in gone.changes if c.action != "no-op"]
    assert changed and {a for _, a in changed} == {"delete"}, changed
    assert all("7" in address for address, _ in changed), changed


def test_expansion_is_linear_enough() -> None:
    """10,000 instances expand and validate (the timing itself is tests/bench/expand.py's)."""
    loaded = load(pods("count: 10000", pools="pod4: 10.20.0.0/16"))
    assert len(loaded.spec.links) == 10000 and loaded.spec.links[-1].peer.addresses == ["10.20.39.15/32"]


def test_the_json_schema_takes_templates_pools_and_defaults_as_editors_see_them() -> None:
    import jsonschema
    from ruamel.yaml import YAML

    from nkplan.spec.schema import spec_schema

    schema = spec_schema()
    text = pods("count: 3", extra="defaults: {links: {mtu: 9000}, links_netkit: {scrub: none}}")
    doc = YAML(typ="safe").load(text.replace("kind: veth", "kind: veth\n        mtu: '{i}'"))
    jsonschema.validate(doc, schema)  # a whole {expression} where a number goes
    for bad in (
        lambda d: d["repeat"]["pods"]["links"][0].update(colour="red"),
        lambda d: d["repeat"]["pods"].update(cuont=3),
        lambda d: d["defaults"]["links"].update(colour="red"),
        lambda d: d["repeat"]["pods"]["links"][0].update(mtu="x{i}"),
    ):
        broken = json.loads(json.dumps(doc))
        bad(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
