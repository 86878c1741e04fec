"""The closed expression language of `repeat:` templates: `{i}`, `{key}`, `{item.FIELD}` and the
pool functions `{POOL.host(n)}`, `{POOL.host(n, LEN, k)}`, `{POOL.net(n, LEN)}`. A template string is
parsed once (compile) and evaluated per instance (render); nothing in a spec is ever executed.

Every problem is a (path in the file, message) pair; the caller adds the position and instance."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

Path_ = tuple[str | int, ...]
IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED = "{i}, {key}, {item.FIELD}, {POOL.host(n)}, {POOL.host(n, LEN, k)}, {POOL.net(n, LEN)}"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_FIELD = r"[A-Za-z_][A-Za-z0-9_-]*"
_POOL_CALL = re.compile(rf"^({_NAME})\.(host|net)\((.*)\)$")
_ITEM = re.compile(rf"^item\.({_FIELD})$")
_INT = re.compile(r"^-?[0-9]+$")
_POOL_NAME = re.compile(rf"^{_NAME}$")
RESERVED = ("i", "key", "item")


class TemplateError(Exception):
    """A template string that is not in the language (found once, when compiling)."""


class RenderError(Exception):
    """An expression that has no value for one instance (a pool exhausted, an item without FIELD)."""


@dataclass(frozen=True)
class Pool:
    name: str
    net: IpNet
    path: Path_  # where it is declared

    def _subnet(self, n: int, length: int) -> tuple[int, int]:
        """(first address as int, size) of the n-th /length subnet."""
        maxlen = self.net.max_prefixlen
        if not self.net.prefixlen <= length <= maxlen:
            raise RenderError(
                f"prefix length {length} does not fit pool {self.name} ({self.net}): "
                f"expected {self.net.prefixlen}..{maxlen}"
            )
        size = 1 << (maxlen - length)
        count = self.net.num_addresses // size
        if not 0 <= n < count:
            raise RenderError(
                f"pool {self.name} ({self.net}) is exhausted: it holds {count} /{length} "
                f"(0..{count - 1}), asked for number {n}"
            )
        return int(self.net.network_address) + n * size, size


@dataclass(frozen=True)
class Env:
    """What one instance knows: its index, its key and item (for_each), the pools."""

    i: int
    key: str | int | None
    item: dict[str, Any] | None
    pools: dict[str, Pool]


@dataclass
class Allocation:
    """An interval of addresses a pool function handed to an instance (for the collision check)."""

    version: int
    first: int
    last: int
    text: str
    within: int | None = None  # {pool.host(i, LEN, k)}: the /LEN of the pool the address is in

    @property
    def described(self) -> str:
        """The allocation in a collision message (made only for one: it costs an ipaddress parse)."""
        if self.within is None:
            return self.text
        return f"{self.text} (in {ipaddress.ip_network((self.first, self.within))})"


# an argument: ("i",), ("key",), ("item", FIELD) or ("int", N)
Arg = tuple[str, ...] | tuple[str, int]


@dataclass(frozen=True)
class Expr:
    kind: str  # "i" | "key" | "item" | "host" | "net"
    text: str
    field: str = ""
    pool: str = ""
    args: tuple[Arg, ...] = ()


def _arg(text: str) -> Arg:
    t = text.strip()
    if t in ("i", "key"):
        return (t,)
    m = _ITEM.match(t)
    if m:
        return ("item", m.group(1))
    if _INT.match(t):
        return ("int", int(t))
    raise TemplateError(f"argument {t!r} is not i, key, item.FIELD or an integer")


def parse_expr(text: str, pools: dict[str, Pool], for_each: bool) -> Expr:
    body = text.strip()
    if body == "i":
        return Expr("i", text)
    if body == "key" or body.startswith("item."):
        if not for_each:
            raise TemplateError(f"{{{body}}} needs for_each (this template counts: use {{i}})")
        if body == "key":
            return Expr("key", text)
        m = _ITEM.match(body)
        if not m:
            raise TemplateError(f"{{{body}}} is not item.FIELD")
        return Expr("item", text, field=m.group(1))
    m = _POOL_CALL.match(body)
    if not m:
        raise TemplateError(f"unknown expression {{{body}}}; the language has {ALLOWED}")
    pool, fn, raw = m.groups()
    if pool not in pools:
        known = ", ".join(sorted(pools)) or "none (declare them under 'pools:')"
        raise TemplateError(f"{{{body}}}: no pool {pool!r} (pools: {known})")
    args = tuple(_arg(a) for a in raw.split(",")) if raw.strip() else ()
    want = {"host": (1, 3), "net": (2,)}[fn]
    if len(args) not in want:
        forms = {"host": "host(n) or host(n, LEN, k)", "net": "net(n, LEN)"}[fn]
        raise TemplateError(f"{{{body}}}: {fn} takes {forms}")
    for a in args:
        if a[0] in ("key", "item") and not for_each:
            raise TemplateError(f"{{{body}}}: {a[0]} needs for_each (this template counts: use i)")
    for a in args[1:]:
        if a[0] != "int":
            raise TemplateError(f"{{{body}}}: the prefix length and the offset k are integers")
    return Expr(fn, text, pool=pool, args=args)


@dataclass(frozen=True)
class Template:
    """A compiled template string: literal text and expressions; `whole` when the string is
    exactly one expression (its value keeps its type: `metric: "{i}"` is an integer)."""

    parts: tuple[str | Expr, ...]
    whole: bool


_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def compile_string(text: str, pools: dict[str, Pool], for_each: bool) -> str | Template:
    """A string as is when it has no braces, else its Template ({{ and }} are literal braces)."""
    if "{" not in text and "}" not in text:
        return text
    parts: list[str | Expr] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        tok = m.group(0)
        if tok in ("{{", "}}"):
            parts.append(tok[0])
        elif tok in ("{", "}"):
            raise TemplateError(f"unbalanced {tok!r} in {text!r} (write {tok}{tok} for a literal brace)")
        else:
            parts.append(parse_expr(m.group(1), pools, for_each))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    merged: list[str | Expr] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    if all(isinstance(p, str) for p in merged):
        return "".join(str(p) for p in merged)
    return Template(tuple(merged), whole=len(merged) == 1)


def _int_arg(a: Arg, env: Env, expr: Expr) -> int:
    if a[0] == "int":
        return int(a[1])
    if a[0] == "i":
        return env.i
    value: Any = env.key if a[0] == "key" else _item(env, str(a[1]))
    if isinstance(value, bool) or not isinstance(value, int):
        raise RenderError(f"{{{expr.text.strip()}}}: {'.'.join(str(x) for x in a)} is {value!r}, not an integer")
    return value


def _item(env: Env, fld: str) -> Any:
    if env.item is None or fld not in env.item:
        raise RenderError(f"instance {env.key!r} has no field {fld!r} (for {{item.{fld}}})")
    return env.item[fld]


def evaluate(expr: Expr, env: Env, allocs: list[Allocation]) -> Any:
    if expr.kind == "i":
        return env.i
    if expr.kind == "key":
        return env.key
    if expr.kind == "item":
        return _item(env, expr.field)
    pool = env.pools[expr.pool]
    n = _int_arg(expr.args[0], env, expr)
    version = pool.net.version
    if expr.kind == "host" and len(expr.args) == 1:
        first, size = pool._subnet(n, pool.net.max_prefixlen)
        text = str(ipaddress.ip_address(first) if version == 4 else ipaddress.IPv6Address(first))
        allocs.append(Allocation(version, first, first, text))
        return text
    length = int(expr.args[1][1])
    first, size = pool._subnet(n, length)
    allocs.append(Allocation(version, first, first + size - 1, ""))
    if expr.kind == "net":
        net = ipaddress.ip_network((first, length)) if version == 4 else ipaddress.IPv6Network((first, length))
        allocs[-1].text = str(net)
        return str(net)
    k = int(expr.args[2][1])
    if not 0 <= k < size:
        raise RenderError(f"{{{expr.text.strip()}}}: a /{length} holds addresses 0..{size - 1}, asked for {k}")
    addr = str(ipaddress.ip_address(first + k) if version == 4 else ipaddress.IPv6Address(first + k))
    allocs[-1].text, allocs[-1].within = addr, length
    return addr


def render(t: Template, env: Env, allocs: list[Allocation]) -> Any:
    if t.whole:
        return evaluate(t.parts[0], env, allocs)  # type: ignore[arg-type]
    out = []
    for p in t.parts:
        if isinstance(p, str):
            out.append(p)
        else:
            v = evaluate(p, env, allocs)
            if isinstance(v, (dict, list)):
                raise RenderError(f"{{{p.text.strip()}}} is a {type(v).__name__}; only a whole string can take one")
            out.append(str(v))
    return "".join(out)


def make_pool(name: str, value: Any, path: Path_) -> Pool:
    if not _POOL_NAME.match(name) or name in RESERVED:
        raise TemplateError(f"pool name {name!r} must be a letter or '_' then letters, digits, '_' (not i, key, item)")
    if not isinstance(value, str):
        raise TemplateError(f"pool {name!r} is a CIDR such as 10.20.0.0/16 or fd00:20::/64, not {value!r}")
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise TemplateError(f"pool {name!r}: {value!r} is not a network CIDR ({exc})") from None
    return Pool(name, net, path)
