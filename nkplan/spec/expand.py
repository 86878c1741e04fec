"""`repeat:` and `pools:` → plain items, on the parsed data before pydantic sees it.

Each template is compiled once (its strings parsed into spec/template.py's Templates) and rendered
per instance, so expansion is linear in the size of its output. Every item made is appended after
the items written in the file, template by template, instance by instance (deterministic), and
the SourceMap learns where it came from: problems found later point at the template's
file:line:col and name the instance (`pods[17].links[0].peer.name`).

Addresses a pool hands out are recorded; one given to two instances, or to an instance and an
explicit item, is a collision reported with both places."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nkplan.spec.source import Path_, SourceMap, dotted
from nkplan.spec.template import (
    Allocation,
    Env,
    Pool,
    RenderError,
    Template,
    TemplateError,
    compile_string,
    make_pool,
    render,
)

SECTIONS = ("namespaces", "links", "routes", "rules")
SELECTORS = ("count", "range", "for_each")
TEMPLATE_KEYS = (*SELECTORS, "skip", *SECTIONS, "host")
MAX_INSTANCES = 1_000_000
MAX_REPORTED = 20  # collisions reported one by one; the rest counted


class _Map:
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[Any, Any]]) -> None:
        self.items = items


class _List:
    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items


class _Str:
    __slots__ = ("path", "tmpl")

    def __init__(self, tmpl: Template, path: Path_) -> None:
        self.tmpl, self.path = tmpl, path


class _Failed(Exception):
    def __init__(self, path: Path_, msg: str) -> None:
        self.path, self.msg = path, msg


@dataclass
class _Owned:
    """An address interval and who holds it, for the collision scan."""

    version: int
    first: int
    last: int
    owner: str  # "pods[17]" or "links[3]"
    place: Path_  # where in the owner (the full name in messages is made only for one)
    path: Path_  # a path in the file (the template string or the explicit address)
    text: Allocation | str  # the address (an Allocation describes itself only when asked)
    pooled: bool

    @property
    def name(self) -> str:
        return f"{self.owner}.{dotted(self.place)}"

    @property
    def described(self) -> str:
        return self.text if isinstance(self.text, str) else self.text.described


class Expander:
    def __init__(self, smap: SourceMap) -> None:
        self.smap = smap
        self.problems: list[str] = []
        self.pools: dict[str, Pool] = {}
        self.owned: list[_Owned] = []

    def error(self, path: Path_, msg: str, key: bool = False) -> None:
        self.problems.append(f"{self.smap.position(path, key)}: {dotted(path)}: {msg}")

    # compiling -------------------------------------------------------------------------------
    def compile(self, node: Any, path: Path_, for_each: bool) -> tuple[Any, bool]:
        """(compiled node, True if it holds no expression: then it is the node itself)."""
        if isinstance(node, str):
            try:
                c = compile_string(node, self.pools, for_each)
            except TemplateError as exc:
                self.error(path, str(exc))
                return node, True
            return (node, True) if isinstance(c, str) else (_Str(c, path), False)
        if isinstance(node, dict):
            items, const = [], True
            for k, v in node.items():
                ck, kconst = self.compile(k, (*path, k), for_each)
                if not kconst:
                    ck.path = path  # a key's problems point at its mapping
                cv, vconst = self.compile(v, (*path, k), for_each)
                items.append((ck, cv))
                const = const and kconst and vconst
            return (node, True) if const else (_Map(items), False)
        if isinstance(node, list):
            got = [self.compile(v, (*path, j), for_each) for j, v in enumerate(node)]
            if all(c for _, c in got):
                return node, True
            return _List([c for c, _ in got]), False
        return node, True

    # rendering -------------------------------------------------------------------------------
    def render(self, c: Any, env: Env, allocs: list[Allocation], paths: list[Path_]) -> Any:
        t = type(c)
        if t is _Map:
            out = {}
            for k, v in c.items:
                key = self.render(k, env, allocs, paths)
                out[key if isinstance(key, str) else str(key)] = self.render(v, env, allocs, paths)
            return out
        if t is _List:
            return [self.render(v, env, allocs, paths) for v in c.items]
        if t is _Str:
            n = len(allocs)
            try:
                value = render(c.tmpl, env, allocs)
            except RenderError as exc:
                raise _Failed(c.path, str(exc)) from None
            paths.extend(c.path for _ in range(len(allocs) - n))
            return value
        return c

    # the whole document ----------------------------------------------------------------------
    def run(self, data: dict[str, Any]) -> dict[str, Any]:
        pools = data.pop("pools", None)
        repeat = data.pop("repeat", None)
        if pools is not None:
            if not isinstance(pools, dict):
                self.error(("pools",), f"'pools' maps a name to a CIDR, e.g. {{pod4: 10.20.0.0/16}}; got {pools!r}")
            else:
                for name, value in pools.items():
                    try:
                        self.pools[name] = make_pool(name, value, ("pools", name))
                    except TemplateError as exc:
                        self.error(("pools", name), str(exc))
        if repeat is None or self.problems:  # no cascade of "no pool" after a bad pool
            return data
        if not isinstance(repeat, dict):
            self.error(("repeat",), "'repeat' maps a template's name to the template, e.g. {pods: {count: 3, ...}}")
            return data
        explicit = {sec: len(data[sec]) if isinstance(data.get(sec), list) else 0 for sec in SECTIONS}
        for sec in SECTIONS:
            if data.get(sec) is None:
                data[sec] = []
        self._explicit_addresses(data, explicit["links"])
        for name, tdef in repeat.items():
            self._template(data, str(name), tdef)
        self._collisions()
        return data

    def _instances(self, tdef: dict[str, Any], base: Path_) -> list[tuple[int, Any, Any]] | None:
        """(i, key, item) of every instance, or None after reporting why not."""
        chosen = [k for k in SELECTORS if k in tdef]
        if len(chosen) != 1:
            self.error(base, "a template needs exactly one of 'count', 'range' or 'for_each'")
            return None
        how = chosen[0]
        value = tdef[how]
        where = (*base, how)
        out: list[tuple[int, Any, Any]] = []
        if how in ("count", "range"):
            if how == "count":
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
                start, stop = (0, value) if ok else (0, 0)
            else:
                ok = (
                    isinstance(value, list)
                    and len(value) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                    and value[0] <= value[1]
                )
                start, stop = (value[0], value[1]) if ok else (0, 0)
            if not ok:
                want = "a whole number >= 0" if how == "count" else "[START, STOP] with START <= STOP (STOP excluded)"
                self.error(where, f"'{how}' is {want}; got {value!r}")
                return None
            if stop - start > MAX_INSTANCES:
                self.error(where, f"{stop - start} instances; at most {MAX_INSTANCES}")
                return None
            out = [(i, i, None) for i in range(start, stop)]
        elif isinstance(value, list):
            seen: set[Any] = set()
            for j, v in enumerate(value):
                if isinstance(v, bool) or not isinstance(v, (str, int)):
                    msg = f"a for_each list holds names or numbers; got {v!r} (use a mapping for fields)"
                    self.error((*where, j), msg)
                    return None
                if v in seen:
                    self.error((*where, j), f"{v!r} is listed twice")
                    return None
                seen.add(v)
                out.append((j, v, None))
        elif isinstance(value, dict):
            for j, (k, v) in enumerate(value.items()):
                if v is None:
                    v = {}
                if not isinstance(v, dict):
                    self.error((*where, k), f"instance {k!r}: expected a mapping of fields, got {v!r}")
                    return None
                out.append((j, k, v))
        else:
            self.error(where, f"'for_each' is a list of keys or a mapping key → fields; got {value!r}")
            return None
        skip = tdef.get("skip")
        if skip is not None:
            if not isinstance(skip, list):
                self.error((*base, "skip"), f"'skip' is a list of instances to leave out; got {skip!r}")
                return None
            keys = {key for _i, key, _item in out}
            for j, s in enumerate(skip):
                if isinstance(s, bool) or not isinstance(s, (int, str)):
                    self.error((*base, "skip", j), f"skip names an instance by its index or key; got {s!r}")
                    return None
                if s not in keys:
                    self.error((*base, "skip", j), f"skip {s!r} is not an instance of this template")
            gone = set(skip)
            out = [t for t in out if t[1] not in gone]
        return out

    def _template(self, data: dict[str, Any], name: str, tdef: Any) -> None:
        base: Path_ = ("repeat", name)
        before = len(self.problems)
        if not isinstance(tdef, dict):
            self.error(base, f"a template is a mapping (count/range/for_each, namespaces, links, ...); got {tdef!r}")
            return
        bad = [k for k in tdef if k not in TEMPLATE_KEYS]
        for k in bad:
            self.error((*base, k), f"unknown field {k!r} in a template (fields: {', '.join(TEMPLATE_KEYS)})", key=True)
        instances = self._instances(tdef, base)
        for_each = "for_each" in tdef
        compiled: list[tuple[str, int, Any]] = []
        for sec in SECTIONS:
            items = tdef.get(sec)
            if items is None:
                continue
            if not isinstance(items, list):
                self.error((*base, sec), f"'{sec}' is a list; got {items!r}")
                continue
            for j, item in enumerate(items):
                compiled.append((sec, j, self.compile(item, (*base, sec, j), for_each)[0]))
        host = tdef.get("host")
        chost = self.compile(host, (*base, "host"), for_each)[0] if host is not None else None
        if instances is None or len(self.problems) > before:
            return
        failed: dict[Path_, tuple[str, str, int]] = {}  # template path → (first instance, message, count)
        smap, redirects = self.smap, self.smap.redirects
        for i, key, item in instances:
            env = Env(i, key, item, self.pools)
            label = f"{name}[{key}]"
            allocs: list[Allocation] = []
            paths: list[Path_] = []
            try:
                made = [(sec, j, self.render(c, env, allocs, paths)) for sec, j, c in compiled]
                hmade = self.render(chost, env, allocs, paths) if chost is not None else None
            except _Failed as f:
                first = failed.get(f.path)
                failed[f.path] = (label, f.msg, 1) if first is None else (first[0], first[1], first[2] + 1)
                continue
            for sec, j, obj in made:
                out = data[sec]
                redirects[(sec, len(out))] = ((*base, sec, j), f"{label}.{sec}[{j}]")
                out.append(obj)
            if hmade is not None:
                self._merge_host(data, hmade, label)
            for a, p in zip(allocs, paths, strict=True):
                self.owned.append(
                    _Owned(a.version, a.first, a.last, label, p[2:], p, a, True)
                )
        for path, (label, msg, count) in failed.items():
            more = f" (and {count - 1} more instances)" if count > 1 else ""
            self.problems.append(f"{smap.position(path)}: {label}.{dotted(path[2:])}: {msg}{more}")

    def _merge_host(self, data: dict[str, Any], made: Any, label: str) -> None:
        host = data.setdefault("host", {})
        if not isinstance(made, dict) or not isinstance(host, dict):
            return  # pydantic names the shape problem
        for k, v in made.items():
            if k != "sysctls" or not isinstance(v, dict):
                host[k] = v  # not a field a host has: pydantic says so
                continue
            have = host.setdefault("sysctls", {})
            if not isinstance(have, dict):
                return
            for sk, sv in v.items():
                if sk in have and have[sk] != sv:
                    where = self.smap.where(("host", "sysctls", sk))
                    pos = self.smap.position(("repeat", label.split("[")[0], "host", "sysctls"))
                    self.problems.append(
                        f"{pos}: {label}.host.sysctls: "
                        f"{sk} = {sv!r} conflicts with {have[sk]!r} ({where})"
                    )
                    continue
                if sk not in have:
                    have[sk] = sv
                    self.smap.redirects[("host", "sysctls", sk)] = (
                        ("repeat", label.split("[")[0], "host", "sysctls"),
                        f"{label}.host.sysctls.{sk}",
                    )

    def _explicit_addresses(self, data: dict[str, Any], n: int) -> None:
        """The addresses written on explicit ends, for the collision scan with pools."""
        import ipaddress

        links = data.get("links")
        for i in range(n):
            link = links[i] if isinstance(links, list) else None
            if not isinstance(link, dict):
                continue
            peer = link.get("peer")
            ends: list[tuple[Any, Path_]] = [(link, ("links", i))]
            if isinstance(peer, dict):
                ends.append((peer, ("links", i, "peer")))
            for end, path in ends:
                addrs = end.get("addresses")
                for j, a in enumerate(addrs if isinstance(addrs, list) else []):
                    try:
                        ip = ipaddress.ip_interface(str(a)).ip
                    except ValueError:
                        continue
                    self.owned.append(
                        _Owned(ip.version, int(ip), int(ip), dotted(path), ("addresses", j),
                               (*path, "addresses", j), str(a), False)
                    )

    def _collisions(self) -> None:
        found: list[str] = []
        pairs: set[tuple[str, str]] = set()  # one report per pair of holders
        for version in (4, 6):
            rows = sorted((o for o in self.owned if o.version == version), key=lambda o: (o.first, -o.last))
            cur: _Owned | None = None
            for o in rows:
                clash = cur is not None and o.first <= cur.last and o.owner != cur.owner and (o.pooled or cur.pooled)
                if cur is not None and clash and (o.owner, cur.owner) not in pairs:
                    pairs.add((o.owner, cur.owner))
                    found.append(
                        f"{self.smap.position(o.path)}: {o.name}: {o.described} collides with {cur.name} "
                        f"({cur.described}, {self.smap.position(cur.path)})"
                    )
                if cur is None or o.last > cur.last:
                    cur = o
        self.problems += found[:MAX_REPORTED]
        if len(found) > MAX_REPORTED:
            self.problems.append(f"{self.smap.filename}: and {len(found) - MAX_REPORTED} more address collisions")


def expand(data: dict[str, Any], smap: SourceMap) -> tuple[dict[str, Any], list[str]]:
    """The document with every template expanded (and `pools`, `repeat` gone), and the problems."""
    ex = Expander(smap)
    out = ex.run(data)
    return out, ex.problems
