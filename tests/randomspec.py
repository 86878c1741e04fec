"""Random specs for the property-based transition tests (tests/unit/test_random_transitions.py on
the fake kernel, tests/host/test_random_transitions.py on the host kernel).

A strategy draws an abstract spec: plain data with short names (namespaces `n0`.., device ends
`a0`/`b0`.., BPF objects `count`/`policy`), the shape a saved regression case keeps. `render()`
turns it into the YAML a user would write, with the names prefixed (the host tests put the run's
token in every name) and the objects pointing at bpf/build, and the normal loader reads it.

Names, addresses and destinations come from small fixed pools, so that consecutive specs share
most of their objects and transitions are updates, replaces, moves and deletes, not only creates.
Every drawn spec is valid for the kernel it targets: what the kernel refuses on its own (an IPv4
route through a device that is down, an IPv6 address on a device with IPv6 disabled) is not drawn."""

from __future__ import annotations

import hashlib
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = {"count": ("count.o", "count_pass"), "policy": ("pod_policy.o", "pod_egress")}
NAMESPACES = ("n0", "n1", "n2", "n3")
NS_SYSCTLS = {"net.ipv4.ip_forward": (0, 1), "net.ipv4.conf.all.rp_filter": (0, 1, 2)}
DEV_SYSCTLS = {"ipv4.rp_filter": (0, 1, 2), "ipv4.forwarding": (0, 1), "ipv6.disable_ipv6": (0, 1)}
MTUS = (1280, 1400, 1500, 9000)  # >= 1280: below it the kernel drops a device's IPv6


@dataclass(frozen=True)
class Target:
    """What the kernel under test can hold."""

    netkit: bool  # netkit pairs (the fake; the host kernel has no netkit)
    pairs: int = 4  # link slots: ends a0/b0 .. a3/b3
    host_sysctls: bool = False  # the host namespace's net.* keys (never on a real host: not reset)


FAKE = Target(netkit=True, host_sysctls=True)
HOST = Target(netkit=False)


def _addresses(pair: int, side: int) -> list[str]:
    """The address pool of one end: its own, so no two ends of a spec clash."""
    return [
        f"198.18.{pair}.{1 + side}/24",
        f"198.18.{10 + pair}.{1 + side}/32",
        f"fd00:18:{pair}::{1 + side}/64",
    ]


@st.composite
def _programs(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(sorted(OBJECTS)), unique=True, max_size=2))
    return [{"object": n, "pin_maps": draw(st.booleans())} for n in names]


@st.composite
def _tcx(draw: st.DrawFn) -> dict[str, Any] | None:
    if not draw(st.integers(0, 3)) == 0:  # programs on one end in four
        return None
    return {"ingress": draw(_programs()), "egress": draw(_programs())}


@st.composite
def _end(draw: st.DrawFn, pair: int, side: int, namespaces: list[str | None], netkit: bool) -> dict[str, Any]:
    end: dict[str, Any] = {
        "name": ("a" if side == 0 else "b") + str(pair),
        "namespace": draw(st.sampled_from(namespaces)),
        "up": draw(st.sampled_from([True, True, True, False])),  # mostly up; shrinks to up
    }
    if draw(st.booleans()):
        end["mtu"] = draw(st.sampled_from(MTUS))
    sysctls = draw(st.dictionaries(st.sampled_from(sorted(DEV_SYSCTLS)), st.integers(0, 2), max_size=2))
    sysctls = {k: v % len(DEV_SYSCTLS[k]) for k, v in sysctls.items()}
    if sysctls:
        end["sysctls"] = sysctls
    pool = _addresses(pair, side)
    if sysctls.get("ipv6.disable_ipv6") == 1:
        pool = [a for a in pool if ":" not in a]
    end["addresses"] = draw(st.lists(st.sampled_from(pool), unique=True, max_size=2))
    if any(":" in a for a in end["addresses"]):
        # a key no longer declared keeps its value (README: only what is declared is managed), so
        # an end that needs IPv6 says so, or an earlier step's disable_ipv6: 1 would still hold
        end.setdefault("sysctls", {})["ipv6.disable_ipv6"] = 0
    if netkit:
        end["policy"] = draw(st.sampled_from([None, "forward", "blackhole"]))
    elif draw(st.integers(0, 3)) == 0:
        end["mac"] = f"02:18:00:00:{pair:02x}:{side + draw(st.integers(0, 1)) * 2:02x}"
    end["tcx"] = draw(_tcx())
    return end


@st.composite
def _link(draw: st.DrawFn, pair: int, namespaces: list[str | None], target: Target) -> dict[str, Any]:
    kind = draw(st.sampled_from(["veth", "netkit"])) if target.netkit else "veth"
    link = draw(_end(pair, 0, namespaces, kind == "netkit"))
    link["kind"] = kind
    link["peer"] = draw(_end(pair, 1, namespaces, kind == "netkit"))
    if kind == "netkit":
        link["mode"] = draw(st.sampled_from(["l3", "l2"]))
        link["scrub"] = draw(st.sampled_from([None, "default", "none"]))
        if draw(st.integers(0, 3)) == 0:
            link["programs"] = {"primary": draw(_programs()), "peer": draw(_programs())}
    return link


def _ends(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for link in spec["links"] for e in (link, link["peer"])]


@st.composite
def _route(draw: st.DrawFn, spec: dict[str, Any], index: int) -> dict[str, Any] | None:
    kinds = ["dev", "onlink"]
    named = [n["name"] for n in spec["namespaces"]]
    if named:
        kinds.append("nowhere")
    how = draw(st.sampled_from(kinds))
    route: dict[str, Any] = {
        "metric": draw(st.sampled_from([None, 0, 5])),
        "table": draw(st.sampled_from([None, 100, 200])),
    }
    if how == "nowhere":  # blackhole and the like: only in a named namespace
        route["namespace"] = draw(st.sampled_from(named))
        route["to"] = f"198.19.{index}.0/24"
        route["type"] = draw(st.sampled_from(["blackhole", "unreachable", "prohibit", "throw"]))
        return route
    # the kernel refuses an IPv4 route through a device that is down, and IPv6 ones through a
    # device whose IPv6 is disabled
    six = draw(st.booleans()) and how == "dev"
    ends = [
        e
        for e in _ends(spec)
        if e["up"] and not (six and e.get("sysctls", {}).get("ipv6.disable_ipv6") == 1)
    ]
    if not ends:
        return None
    end = draw(st.sampled_from(ends))
    route["namespace"] = end["namespace"]
    route["to"] = f"fd00:19:{index}::/64" if six else f"198.19.{index}.0/24"
    others = [e for e in ends if e["namespace"] == end["namespace"] and e is not end]
    if how == "dev" and not six and others and draw(st.integers(0, 3)) == 0:  # multipath over two devices
        other = draw(st.sampled_from(others))
        route["nexthops"] = [{"dev": end["name"]}, {"dev": other["name"], "weight": draw(st.sampled_from([1, 3]))}]
        return route
    route["dev"] = end["name"]
    if six:  # as for its IPv6 addresses (see _end)
        end.setdefault("sysctls", {})["ipv6.disable_ipv6"] = 0
    if how == "onlink":
        route["via"] = f"198.20.{index}.1"
        route["onlink"] = True
    elif not six:
        own = [a.split("/")[0] for a in end["addresses"] if ":" not in a]
        if own and draw(st.booleans()):
            route["src"] = draw(st.sampled_from(own))
    if draw(st.integers(0, 3)) == 0:
        route["mtu"] = draw(st.sampled_from([1300, 1400]))
    return route


@st.composite
def _rule(draw: st.DrawFn, spec: dict[str, Any], index: int) -> dict[str, Any] | None:
    named = [n["name"] for n in spec["namespaces"]]
    if not named:
        return None
    rule: dict[str, Any] = {
        "namespace": draw(st.sampled_from(named)),
        "priority": draw(st.sampled_from([100, 200, 300])),
        "from": draw(st.sampled_from(["198.21.0.0/24", "198.21.1.0/24", "fd00:21::/64"])),
    }
    action = draw(st.sampled_from(["lookup", "lookup", "blackhole", "unreachable"]))
    if action == "lookup":
        rule["table"] = draw(st.sampled_from([100, 200, "main"]))
    else:
        rule["action"] = action
    return rule


@st.composite
def specs(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    """One abstract spec (see the module's docstring)."""
    declared = draw(st.lists(st.sampled_from(NAMESPACES), unique=True, max_size=len(NAMESPACES)).map(sorted))
    namespaces = []
    for name in declared:
        ns: dict[str, Any] = {"name": name}
        sysctls = draw(st.dictionaries(st.sampled_from(sorted(NS_SYSCTLS)), st.integers(0, 2), max_size=2))
        if sysctls:
            ns["sysctls"] = {k: v % len(NS_SYSCTLS[k]) for k, v in sysctls.items()}
        namespaces.append(ns)
    places: list[str | None] = [None, *declared]
    pairs = draw(st.lists(st.integers(0, target.pairs - 1), unique=True, max_size=target.pairs))
    spec: dict[str, Any] = {"namespaces": namespaces, "links": [], "routes": [], "rules": []}
    for pair in pairs:
        spec["links"].append(draw(_link(pair, places, target)))
    # ip_forward is copied to every device of its namespace: with a device's own forwarding
    # declared there it is a validation error (spec/checks.py), so not drawn
    forwarding = {e["namespace"] for e in _ends(spec) if "ipv4.forwarding" in e.get("sysctls", {})}
    for ns in namespaces:
        if ns["name"] in forwarding and "sysctls" in ns:
            ns["sysctls"].pop("net.ipv4.ip_forward", None)
            if not ns["sysctls"]:
                del ns["sysctls"]
    seen: set[tuple[Any, ...]] = set()
    for index in range(draw(st.integers(0, 4))):
        route = draw(_route(spec, index))
        if route is not None:  # identity: namespace, table, destination, metric
            key = (route.get("namespace"), route.get("table"), route["to"], route.get("metric"))
            if key not in seen:
                seen.add(key)
                spec["routes"].append(route)
    taken: set[tuple[Any, ...]] = set()
    for index in range(draw(st.integers(0, 3))):
        rule = draw(_rule(spec, index))
        if rule is not None:  # identity: namespace, family, priority
            key = (rule["namespace"], ":" in rule["from"], rule["priority"])
            if key not in taken:
                taken.add(key)
                spec["rules"].append(rule)
    if target.host_sysctls and None not in forwarding and draw(st.booleans()):
        spec["host"] = {"sysctls": {"net.ipv4.ip_forward": draw(st.integers(0, 1))}}
    return spec


# rendering ------------------------------------------------------------------------------------
def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def render(spec: dict[str, Any], stack: str, prefix: str) -> str:
    """The abstract spec as the YAML a user writes: namespaces and devices named PREFIX+name,
    objects by absolute path under bpf/build (BPF objects may lie in the working directory's
    tree: the tests run from the checkout)."""

    def ns(name: str | None) -> str | None:
        return None if name is None else prefix + name

    def progs(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for p in listed:
            obj, program = OBJECTS[p["object"]]
            out.append({"object": str(ROOT / "bpf" / "build" / obj), "program": program, "pin_maps": p["pin_maps"]})
        return out

    def end(e: dict[str, Any]) -> dict[str, Any]:
        out = dict(e, name=prefix + e["name"], namespace=ns(e["namespace"]))
        if e.get("tcx"):
            out["tcx"] = {hook: progs(listed) for hook, listed in e["tcx"].items()}
        return out

    doc: dict[str, Any] = {
        "stack": stack,
        "namespaces": [dict(n, name=prefix + n["name"]) for n in spec["namespaces"]],
        "links": [],
        "routes": [],
        "rules": [dict(r, namespace=ns(r["namespace"])) for r in spec["rules"]],
    }
    for link in spec["links"]:
        out = end(link)
        out["peer"] = end(link["peer"])
        if link.get("programs"):
            out["programs"] = {hook: progs(listed) for hook, listed in link["programs"].items()}
        doc["links"].append(out)
    for r in spec["routes"]:
        route = dict(r, namespace=ns(r.get("namespace")), dev=prefix + r["dev"] if "dev" in r else None)
        if "nexthops" in r:
            route["nexthops"] = [dict(h, dev=prefix + h["dev"]) for h in r["nexthops"]]
        doc["routes"].append(route)
    if "host" in spec:
        doc["host"] = spec["host"]
    # JSON is YAML: one flow document; the loader's positions still name lines and columns
    return json.dumps(_drop_none(doc), indent=1) + "\n"


def describe(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A failing pair as text for the test report."""
    return textwrap.dedent(f"""\
        before: {json.dumps(before, sort_keys=True)}
        after:  {json.dumps(after, sort_keys=True)}""")


# regression cases -----------------------------------------------------------------------------
REGRESSIONS = ROOT / "tests" / "unit" / "regressions"


def save_regression(kernel: str, before: dict[str, Any], after: dict[str, Any], error: str) -> Path:
    """Write a shrunk failing pair as a regression case (replayed by every later run)."""
    text = json.dumps({"kernel": kernel, "before": before, "after": after, "error": error}, indent=1, sort_keys=True)
    path = REGRESSIONS / f"{kernel}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def regressions() -> list[Path]:
    return sorted(REGRESSIONS.glob("*.json")) if REGRESSIONS.is_dir() else []
