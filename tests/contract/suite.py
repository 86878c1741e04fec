"""The kernel contract: what the applier and the planner rely on the seam for, as one set of test
functions run against every implementation of kernel/seam.Kernel: the in-memory FakeKernel
(unit stage, tests/unit/test_contract_fake.py), the host kernel with veth pairs (host stage,
tests/host/test_contract_host.py) and the netkit kernels in the VM rig (tests/netkit/
test_contract_netkit.py). Where the fake and a real kernel disagree, the fake is wrong.

Only the generic half of the seam is used (create / update / delete / delete_many of records,
read), as the applier uses it. What a kernel holds is checked through its own read(): this suite
is about the seam's behaviour; the real-kernel suites check the same objects independently
with iproute2 and bpftool. A stage module imports these functions and supplies `world`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from nkplan.core.desired import link_record, route_record
from nkplan.core.reach import Probe
from nkplan.core.records import HOST, KernelInfo, LinkRec, LiveState, NamespaceRec, RouteRec, RuleRec
from nkplan.core.resources.link import LinkType
from nkplan.errors import NkplanError
from nkplan.kernel.seam import Kernel
from nkplan.spec.models import LinkSpec, RouteSpec

LINKS = LinkType()


@dataclass
class World:
    """A kernel to hold to the contract, and unique names for what a test makes there."""

    kernel: Kernel
    name: Callable[[str], str]  # suffix → a unique device or namespace name (at most 15 bytes)
    stack: str
    kind: str  # the pair kind this kernel is tested with: "veth" (host) or "netkit" (VM)
    info: KernelInfo  # what the kernel honours (netkit scrub, head/tailroom)
    net: int  # a second octet for this test's IPv4 addresses (10.NET.x.y), unique per test


def pair(
    w: World, host: str, peer_name: str, ns: str, peer: dict[str, object] | None = None, **more: object
) -> LinkRec:
    """A declared pair, as the planner would ask for it (defaults of the kind filled in)."""
    peer_fields = {**(peer or {}), "name": peer_name, "namespace": ns or None}
    spec = LinkSpec.model_validate({"name": host, "kind": w.kind, "peer": peer_fields, **more})
    return link_record(spec, w.stack, w.info)


def live_pair(w: World, rec: LinkRec) -> LinkRec | None:
    return read(w).links.get((rec.primary.namespace, rec.primary.name))


def read(w: World) -> LiveState:
    return w.kernel.read(probe_netkit=w.kind == "netkit")


def assert_holds(w: World, want: LinkRec) -> LinkRec:
    """The kernel holds the pair exactly as declared (what it chose itself, a MAC, filled in)."""
    have = live_pair(w, want)
    assert have is not None, f"{want.primary.name} is missing"
    assert LINKS.fill_unspecified(want, have) == have
    return have


@contextmanager
def namespace(w: World, suffix: str) -> Iterator[str]:
    name = w.name(suffix)
    w.kernel.create(NamespaceRec(name, w.stack))
    try:
        yield name
    finally:
        if name in read(w).namespaces:
            w.kernel.delete(NamespaceRec(name, w.stack))


def test_namespace_create_mark_unmark_delete(world: World) -> None:
    w = world
    with namespace(w, "n") as ns:
        assert read(w).namespaces[ns] == NamespaceRec(ns, w.stack)
        w.kernel.update(NamespaceRec(ns, w.stack), NamespaceRec(ns, None))
        assert read(w).namespaces[ns] == NamespaceRec(ns, None)
        w.kernel.update(NamespaceRec(ns, None), NamespaceRec(ns, w.stack))
        w.kernel.delete(NamespaceRec(ns, w.stack))
        assert ns not in read(w).namespaces
        with pytest.raises(NkplanError):
            w.kernel.delete(NamespaceRec(ns, w.stack))  # gone: a refusal in words, not an OSError


def test_pair_is_created_updated_in_place_and_deleted(world: World) -> None:
    w = world
    with namespace(w, "n") as ns:
        want = pair(w, w.name("h"), "eth0", ns, mtu=1400, addresses=[f"10.{w.net}.0.1/30"],
                    peer={"addresses": [f"10.{w.net}.0.2/30", "fd00:77::2/64"]})  # fmt: skip
        w.kernel.create(want)
        have = assert_holds(w, want)
        assert have.primary.mtu == have.peer.mtu == 1400
        after = dataclasses.replace(
            have,
            primary=dataclasses.replace(have.primary, mtu=1500, addresses=(f"10.{w.net}.0.5/30",)),
            peer=dataclasses.replace(have.peer, up=False, addresses=(f"10.{w.net}.0.6/30", "fd00:77::2/64")),
        )
        w.kernel.update(have, after)
        assert_holds(w, after)
        w.kernel.delete(after)
        now = read(w)
        assert (HOST, want.primary.name) not in now.links and (HOST, want.primary.name) not in now.devices
        assert (ns, "eth0") not in now.devices  # deleting one end deletes both


def test_a_change_that_cannot_happen_in_place_is_refused_and_changes_nothing(world: World) -> None:
    """update() is only ever asked for what may change in place; asked for more (a fixed field of
    the kind, a renamed end), it refuses with an nkplan error and leaves the pair as it was."""
    w = world
    with namespace(w, "n") as ns:
        want = pair(w, w.name("h"), "eth0", ns)
        w.kernel.create(want)
        have = assert_holds(w, want)
        changes = [dataclasses.replace(have, peer=dataclasses.replace(have.peer, name="eth9"))]
        if w.kind == "netkit":
            changes.append(dataclasses.replace(have, mode="l2"))
        for bad in changes:
            with pytest.raises(NkplanError):
                w.kernel.update(have, bad)
            assert live_pair(w, want) == have


def test_a_taken_name_is_refused(world: World) -> None:
    w = world
    with namespace(w, "n") as ns:
        first = pair(w, w.name("h"), "eth0", ns)
        w.kernel.create(first)
        with pytest.raises(NkplanError):
            w.kernel.create(pair(w, w.name("h"), "eth1", ns))  # the primary's name is taken
        with pytest.raises(NkplanError):
            w.kernel.create(pair(w, w.name("k"), "eth0", ns))  # the peer's name is taken
        assert (HOST, w.name("k")) not in read(w).devices  # nothing half-made stays behind
        assert_holds(w, first)


def test_routes_are_added_replaced_and_die_with_their_device(world: World) -> None:
    w = world
    with namespace(w, "n") as ns:
        link = pair(w, w.name("h"), "eth0", ns, addresses=[f"10.{w.net}.0.1/24"],
                    peer={"addresses": [f"10.{w.net}.0.2/24"]})  # fmt: skip
        w.kernel.create(link)
        spec = RouteSpec(namespace=ns, to=f"10.{w.net}.9.0/24", via=f"10.{w.net}.0.1", dev="eth0")
        route = route_record(spec, w.stack)
        w.kernel.create(route)
        assert _routes(w, ns) == [route]
        moved = dataclasses.replace(route, via=f"10.{w.net}.0.3")
        w.kernel.update(route, moved)
        assert _routes(w, ns) == [moved]
        w.kernel.delete(link)
        assert _routes(w, ns) == []


def test_routes_of_every_kind_in_any_table(world: World) -> None:
    """Tables, types, multipath: created, read back as declared, changed in place (type, weight,
    nexthops), keyed by table; a multipath route dies with a nexthop's device."""
    w = world
    with namespace(w, "n") as ns:
        first = pair(w, w.name("h"), "eth0", ns, addresses=[f"10.{w.net}.0.1/24"],
                     peer={"addresses": [f"10.{w.net}.0.2/24"]})  # fmt: skip
        second = pair(w, w.name("i"), "eth1", ns, addresses=[f"10.{w.net}.1.1/24"],
                      peer={"addresses": [f"10.{w.net}.1.2/24"]})  # fmt: skip
        w.kernel.create(first)
        w.kernel.create(second)
        hops = [{"via": f"10.{w.net}.0.1", "dev": "eth0", "weight": 2}, {"via": f"10.{w.net}.1.1", "dev": "eth1"}]
        specs = [
            RouteSpec(namespace=ns, to=f"10.{w.net}.8.0/24", table=100, type="blackhole"),
            RouteSpec.model_validate({"namespace": ns, "to": f"10.{w.net}.9.0/24", "nexthops": hops}),
            RouteSpec(namespace=ns, to=f"10.{w.net}.7.0/24", dev="eth0", table=70000, mtu=1400, metric=3),
        ]
        made = [route_record(spec, w.stack) for spec in specs]
        for rec in made:
            w.kernel.create(rec)
        assert sorted(_routes(w, ns), key=lambda r: r.to) == sorted(made, key=lambda r: r.to)
        unreachable = dataclasses.replace(made[0], type="unreachable")
        w.kernel.update(made[0], unreachable)
        reweighted = dataclasses.replace(made[1], nexthops=made[1].nexthops[::-1])
        w.kernel.update(made[1], reweighted)
        now = sorted([unreachable, reweighted, made[2]], key=lambda r: r.to)
        assert sorted(_routes(w, ns), key=lambda r: r.to) == now
        w.kernel.delete(second)
        assert sorted(r.to for r in _routes(w, ns)) == [f"10.{w.net}.7.0/24", f"10.{w.net}.8.0/24"]
        w.kernel.delete(unreachable)
        assert [r.to for r in _routes(w, ns)] == [f"10.{w.net}.7.0/24"]


def _routes(w: World, ns: str) -> list[RouteRec]:
    return [r for r in read(w).routes if r.namespace == ns]


def test_delete_many_takes_pairs_of_one_namespace_together(world: World) -> None:
    w = world
    with namespace(w, "n") as ns:
        links = [pair(w, w.name(f"h{i}"), f"eth{i}", ns) for i in range(3)]
        for link in links:
            w.kernel.create(link)
        w.kernel.delete_many(links[:2])
        now = read(w)
        assert [(HOST, link.primary.name) in now.links for link in links] == [False, False, True]
        assert (ns, "eth0") not in now.devices and (ns, "eth2") in now.devices


def test_deleting_a_namespace_deletes_the_pairs_it_held(world: World) -> None:
    w = world
    with namespace(w, "n") as ns:
        link = pair(w, w.name("h"), "eth0", ns)
        w.kernel.create(link)
        w.kernel.delete(NamespaceRec(ns, w.stack))
        now = read(w)
        assert ns not in now.namespaces
        assert (HOST, link.primary.name) not in now.links and (HOST, link.primary.name) not in now.devices


def _rules(w: World, ns: str) -> list[RuleRec]:
    return sorted((r for r in read(w).rules if r.namespace == ns), key=lambda r: (r.family, r.priority))


def test_rules_are_made_read_back_deleted_and_die_with_their_namespace(world: World) -> None:
    """Rules carry protocol 237 and read back exactly as made (owner: the namespace's); an identical
    rule is refused, a missing one cannot be deleted; the kernel has no in-place change (the
    planner replaces), and a namespace's rules go with it."""
    w = world
    with namespace(w, "n") as ns:
        made = [
            RuleRec(ns, "inet", 100, src=f"10.{w.net}.0.3/32", table=100, owner=w.stack),
            RuleRec(ns, "inet", 110, iif="eth0", fwmark=0x10, fwmask=0xFF, action="blackhole", owner=w.stack),
            RuleRec(ns, "inet6", 100, dst="fd00:77::/64", oif="eth0", table=5000, owner=w.stack),
        ]
        for rec in made:
            w.kernel.create(rec)
        assert _rules(w, ns) == made
        with pytest.raises(NkplanError):
            w.kernel.create(made[0])
        w.kernel.delete(made[1])
        assert _rules(w, ns) == [made[0], made[2]]
        with pytest.raises(NkplanError):
            w.kernel.delete(made[1])
        w.kernel.delete(NamespaceRec(ns, w.stack))
        assert _rules(w, ns) == []


def test_a_host_rule_is_marked_for_its_stack(world: World) -> None:
    """In the host a rule has no place for a stack's name: the stack's marker says whose it is
    (and as what it was applied); the marker goes with the rule, and a marker alone is stale."""
    w = world
    rec = RuleRec(HOST, "inet", 20000 + w.net, iif=w.name("nodev"), table=100, owner=w.stack, applied="0123456789ab")
    w.kernel.create(rec)
    try:
        (have,) = [r for r in _rules(w, HOST) if r.priority == rec.priority]
        assert have == rec and have.applied == rec.applied and not have.stale
        other = dataclasses.replace(rec, owner=w.stack + "x", applied="ba9876543210")
        w.kernel.update(have, other)  # taken over by another stack: only its marker changes
        (have,) = [r for r in _rules(w, HOST) if r.priority == rec.priority]
        assert (have.owner, have.applied) == (other.owner, other.applied)
        w.kernel.update(have, rec)
    finally:
        w.kernel.delete(rec)
    assert not [r for r in _rules(w, HOST) if r.priority == rec.priority]


def single(w: World, name: str, ns: str, **more: object) -> LinkRec:
    """A declared netkit device in single mode (no peer), as the planner would ask for it."""
    fields = {"name": name, "namespace": ns or None, "kind": "netkit", "pairing": "single", **more}
    return link_record(LinkSpec.model_validate(fields), w.stack, w.info)


def test_a_single_netkit_device_lives_alone_or_is_refused(world: World) -> None:
    """Where the kernel has netkit's single-device mode (Linux 7.1+), a device without a peer is
    made, read back as one record with no peer, changed in place (MTU, addresses, up) but never
    in its policy, and deleted. Anywhere else (no netkit; a netkit kernel before 7.1, which would
    silently make a pair instead) creating one is refused and leaves nothing behind."""
    w = world
    can = w.kernel.read(probe_netkit=True).kernel.netkit_single
    with namespace(w, "n") as ns:
        before = set(read(w).devices)
        want = single(w, w.name("s"), ns, mtu=1400, addresses=[f"10.{w.net}.0.1/24"])
        if not can:
            with pytest.raises(NkplanError):
                w.kernel.create(want)
            assert set(read(w).devices) == before  # no pair, no stray peer
            return
        w.kernel.create(want)
        have = assert_holds(w, want)
        assert have.peer is None and have.pairing == "single" and have.primary.policy == "forward"
        assert read(w).devices[(ns, want.primary.name)].role == "primary"
        after = dataclasses.replace(
            have, primary=dataclasses.replace(have.primary, mtu=1500, up=False, addresses=(f"10.{w.net}.0.5/24",))
        )
        w.kernel.update(have, after)
        assert_holds(w, after)
        blackhole = dataclasses.replace(after, primary=dataclasses.replace(after.primary, policy="blackhole"))
        with pytest.raises(NkplanError):
            w.kernel.update(after, blackhole)
        assert live_pair(w, want) == after
        w.kernel.delete(after)
        assert set(read(w).devices) == before


def test_probes_answer_in_order_and_one_from_a_missing_namespace_cannot_run(world: World) -> None:
    """probe(): one Outcome per probe, in order; a pair's ends reach each other by ICMP echo; a
    probe from a namespace that does not exist did not run (reached None), with the name in words."""
    w = world
    with namespace(w, "n") as ns:
        want = pair(w, w.name("h"), "eth0", ns, addresses=[f"10.{w.net}.0.1/30"],
                    peer={"addresses": [f"10.{w.net}.0.2/30"]})  # fmt: skip
        w.kernel.create(want)
        missing = w.name("x")
        got = w.kernel.probe(
            [
                Probe(ns, f"10.{w.net}.0.1", None, 2.0),
                Probe(missing, f"10.{w.net}.0.1", None, 1.0),
                Probe(HOST, f"10.{w.net}.0.2", None, 2.0),
            ]
        )
        assert [o.reached for o in got] == [True, None, True], got
        assert got[1].saw == f"namespace {missing!r} does not exist"
        w.kernel.delete(want)
