"""YAML → StackSpec. ruamel.yaml keeps the position of every node, so each problem — YAML syntax,
schema, or cross-field rule — is reported as file:line:col with the offending value, all at once."""

from __future__ import annotations

import gc
import hashlib
import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from nkplan.core.records import MapDef
from nkplan.errors import InternalError, SpecError
from nkplan.spec import limits
from nkplan.spec.checks import declared_hooks, semantic_problems
from nkplan.spec.models import CheckSpec, LinkSpec, NamespaceSpec, RouteSpec, StackSpec
from nkplan.spec.rules import RuleSpec
from nkplan.spec.source import Path_, SourceMap, dotted

# What only some specs use is imported when one does: `include:`, templates and defaults
# (spec/include.py, expand.py, defaults.py), BPF objects and shared maps (spec/objects.py with
# its BTF readers, sharedmaps.py): every command starts a new interpreter, and importing them
# all took a tenth of `validate` for a spec with none of them.
if TYPE_CHECKING:
    from nkplan.spec.objects import Inspect

__all__ = ["Loaded", "SourceMap", "dotted", "load_file", "load_text"]


@dataclass(frozen=True)
class Loaded:
    spec: StackSpec
    source: SourceMap
    text: str = ""  # the document as read: saved plans embed it, its digest identifies the spec
    objects: dict[str, str] = field(default_factory=dict)  # BPF object path → content digest16
    object_maps: dict[str, tuple[MapDef, ...]] = field(default_factory=dict)  # BPF object path → its own maps
    expanded: dict[str, Any] | None = None  # the plain document validated: repeat expanded, defaults applied
    fragments: tuple[tuple[str, str], ...] = ()  # `include:` fragments read: (name, text), in order

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.text.encode())
        for name, text in self.fragments:  # a spec without include: keeps the digest of its text
            h.update(f"\0{name}\0".encode() + text.encode())
        return "sha256:" + h.hexdigest()


def _plain(node: Any, path: Path_, smap: SourceMap) -> Any:
    """Copy ruamel's round-trip nodes into plain Python values, recording positions."""
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for k, v in node.items():
            child = (*path, str(k))
            try:
                kl, kc = node.lc.key(k)
                smap.keys[child] = (kl + 1, kc + 1)
                vl, vc = node.lc.value(k)
                smap.values[child] = (vl + 1, vc + 1)
            except (KeyError, TypeError):
                pass
            out[str(k)] = _plain(v, child, smap)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, v in enumerate(node):
            child = (*path, i)
            try:
                il, ic = node.lc.item(i)
                smap.values[child] = (il + 1, ic + 1)
            except (KeyError, TypeError):
                pass
            items.append(_plain(v, child, smap))
        return items
    if isinstance(node, bool) or node is None:
        return node
    for base in (int, float, str):
        if isinstance(node, base):
            return base(node)
    return node


def _value_at(data: Any, path: Path_) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _pydantic_problems(exc: ValidationError, data: Any, smap: SourceMap) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc: Path_ = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            problems.append(f"{smap.describe(loc, key=True)}: unknown field {str(loc[-1])!r}")
            continue
        if kind == "missing":
            problems.append(f"{smap.describe(loc)}: required field {str(loc[-1])!r} is missing")
            continue
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        else:
            msg = f"{msg} (got {_value_at(data, loc)!r})"
        problems.append(f"{smap.describe(loc)}: {msg}")
    return problems


class _Fallback(Exception):
    """The fast parser cannot take this document the way the YAML 1.2 parser would: use that one."""


class _Yaml12Resolver(VersionedResolver):
    """ruamel's resolver asks which YAML version a document is at every scalar it resolves, and
    on the libyaml path that question costs an AttributeError each time (about a fifth of loading
    a 1000-pod spec). The answer there is always ruamel's default, YAML 1.2: given once."""

    processing_version = (1, 2)


def _fast_plain(text: str, smap: SourceMap) -> Any:
    """libyaml (ruamel.yaml.clib) composes the node tree ~10x faster than the pure-Python
    round-trip parser, with positions and ruamel's YAML 1.2 tag resolution. Anything unusual
    (anchors, duplicate keys, a scanner disagreement) falls back to the round-trip parser, which
    then gives the authoritative answer or error."""
    try:
        importlib.import_module("ruamel.yaml.clib._ruamel_yaml")  # libyaml binding present?
    except ImportError:
        raise _Fallback from None
    yaml = YAML(typ="safe", pure=False)
    yaml.Resolver = _Yaml12Resolver
    try:
        root = yaml.compose(text)
    except Exception:
        raise _Fallback from None
    construct = yaml.constructor.construct_object
    seen: set[int] = set()

    def walk(node: Any, path: Path_) -> Any:
        if id(node) in seen:  # an alias: keep the slow path's semantics
            raise _Fallback
        seen.add(id(node))
        if isinstance(node, MappingNode):
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, ScalarNode):
                    raise _Fallback
                key = str(construct(knode))
                if key in out:
                    raise _Fallback
                child = (*path, key)
                smap.keys[child] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
                smap.values[child] = (vnode.start_mark.line + 1, vnode.start_mark.column + 1)
                out[key] = walk(vnode, child)
            return out
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                child = (*path, i)
                smap.values[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(walk(item, child))
            return items
        try:
            return construct(node)
        except (ValueError, OverflowError):  # the slow path reports it, with its position
            raise _Fallback from None

    return walk(root, ()) if root is not None else None


_STR = "tag:yaml.org,2002:str"


def _event_plain(text: str, smap: SourceMap | None) -> Any:
    """The common case in one pass over libyaml's event stream, with no node tree: the bounds of
    spec/limits.py checked and the plain data built, positions recorded into `smap` at once
    (composing a node tree, walking it and the separate bounds pass took about twice as long).
    Without a map no position is recorded, which takes 40% less time: _parse does that first and
    this pass again, with the map, only when a position is asked for. Scalars resolve and
    construct exactly as in _fast_plain (ruamel's YAML 1.2 resolver and safe constructor). Anything
    else — anchors, aliases, explicit tags or directives, duplicate or non-scalar keys, a bound
    reached, a YAML error — is _Fallback: the bounds pass and _fast_plain then answer as before."""
    try:
        importlib.import_module("ruamel.yaml.clib._ruamel_yaml")
    except ImportError:
        raise _Fallback from None
    yaml = YAML(typ="safe", pure=False)
    yaml.Resolver = _Yaml12Resolver
    resolver, construct = yaml.resolver, yaml.constructor.construct_object
    if resolver.yaml_path_resolvers:
        raise _Fallback
    if None in resolver.versioned_resolver:
        raise _Fallback
    # first character of a plain scalar → the match functions of its implicit resolvers (taken
    # out of ruamel's lazily compiled patterns once, not through their proxy at every scalar)
    first = {c: tuple(regexp.match for _tag, regexp in found) for c, found in resolver.versioned_resolver.items()}
    resolve = resolver.resolve
    values, keys = (smap.values, smap.keys) if smap is not None else (None, None)
    max_depth, max_nodes, max_digits = limits.MAX_DEPTH, limits.MAX_NODES, limits.MAX_DIGITS
    # one frame per open collection: [container, its path, the key awaiting its value (maps)];
    # without a map every path is () (building them is most of what recording positions costs)
    frames: list[list[Any]] = []
    path: Path_ = ()
    root: Any = None
    nodes = documents = 0
    plain: dict[str, Any] = {}  # a plain scalar's text → its value (keys and kinds repeat)
    _, parser = yaml.get_constructor_parser(text)  # yaml.parse's generator would double the calls
    get_event = parser.get_event
    try:
        while True:
            event = get_event()
            cls = event.__class__
            if cls is ScalarEvent:
                value = event.value
                if event.anchor is not None or event.tag is not None:
                    raise _Fallback
                if event.style:  # quoted or block: always a string here (no path resolvers)
                    obj: Any = value
                elif value in plain:
                    obj = plain[value]
                else:
                    if len(value) > max_digits:
                        raise _Fallback
                    # what resolve() does, without its cost for the strings no implicit type matches
                    matchers = first.get(value[0] if value else "")
                    obj = value
                    if matchers and any(match(value) for match in matchers):
                        tag = resolve(ScalarNode, value, event.implicit)
                        if str(tag) != _STR:
                            obj = construct(ScalarNode(tag, value, event.start_mark, event.end_mark, style=""))
                    plain[value] = obj
                is_collection = False
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _Fallback
                obj = {} if cls is MappingStartEvent else []
                is_collection = True
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                top = frames.pop()
                if top[2] is not None:
                    raise _Fallback
                continue
            elif cls is DocumentStartEvent:
                documents += 1
                if documents > 1 or event.version is not None or event.tags:
                    raise _Fallback
                continue
            elif cls is StreamEndEvent:
                break
            elif cls is DocumentEndEvent or cls is StreamStartEvent:
                continue
            else:  # an alias
                raise _Fallback
            nodes += 1
            if nodes > max_nodes:
                raise _Fallback
            if not frames:
                root = obj
            else:
                top = frames[-1]
                container, key = top[0], top[2]
                if key is None and container.__class__ is dict:  # a mapping key
                    if is_collection:
                        raise _Fallback
                    key = str(obj)
                    if key in container:
                        raise _Fallback
                    top[2] = key
                    if keys is not None:
                        mark = event.start_mark
                        keys[(*top[1], key)] = (mark.line + 1, mark.column + 1)
                    continue
                if key is None:
                    key = len(container)
                    container.append(obj)
                else:
                    container[key] = obj
                    top[2] = None
                if values is not None:
                    path = (*top[1], key)
                    mark = event.start_mark
                    values[path] = (mark.line + 1, mark.column + 1)
            if is_collection:
                frames.append([obj, path, None])
                if len(frames) > max_depth:
                    raise _Fallback
        if frames:
            raise _Fallback
    except _Fallback:
        raise
    except Exception:  # a YAML or construction error: the slower paths report it, located
        raise _Fallback from None
    finally:
        parser.dispose()
    return root


def _slow_plain(text: str, smap: SourceMap) -> Any:
    yaml = YAML(typ="rt")
    filename = smap.filename
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else f"{filename}:1:1"
        raise SpecError([f"{pos}: malformed YAML: {exc.problem or exc.context}"]) from None
    except Exception as exc:  # ruamel raises a few unmarked errors
        raise SpecError([f"{filename}:1:1: malformed YAML: {exc}"]) from None
    if doc is not None and not isinstance(doc, CommentedMap):
        raise SpecError([f"{filename}:1:1: expected a mapping at the top level, got {type(doc).__name__}"])
    return _plain(doc, (), smap) if doc is not None else None


def _parse(text: str, smap: SourceMap) -> Any:
    """YAML text → plain data, positions recorded in `smap` (libyaml when it can, else ruamel's);
    within the bounds of spec/limits.py first. On the common path the positions are recorded
    only when `smap` is first asked for one (a problem or a warning to locate)."""
    limits.check_size(text, smap.filename)
    try:
        try:
            data = _event_plain(text, None)
        except _Fallback:
            return _located_parse(text, smap)
        smap.defer(partial(_located_parse, text))  # the same pass again, with the positions
        return data
    except RecursionError:  # limits.check bounds the nesting; this is the last line of defence
        raise SpecError([f"{smap.filename}:1:1: nested too deeply to read; refused"]) from None


def _located_parse(text: str, smap: SourceMap) -> Any:
    """The parsers that record positions as they go: the event pass, else (anything unusual) the
    bounds pass and the node-tree parsers, which report every YAML error located."""
    try:
        return _event_plain(text, smap)
    except _Fallback:
        smap.values.clear()
        smap.keys.clear()
    limits.check(text, smap.filename)
    try:
        return _fast_plain(text, smap)
    except _Fallback:
        smap.values.clear()
        smap.keys.clear()
        return _slow_plain(text, smap)


def load_text(text: str, filename: str, inspect: Inspect | None = None, root: str | None = None) -> Loaded:
    """Parse and check a spec. `inspect` lists the programs and maps of a BPF object file; it is
    needed only when the spec declares programs (nkplan.api passes libbpf's). `root`: the
    directory `include:` paths must stay inside (default: the spec file's folder)."""
    with _collector_paused():
        return _load_text(text, filename, inspect, root)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a spec loads. Loading makes a few hundred
    objects per pod (plain data, then the models), all kept and none in a cycle, and every
    collection of the oldest generation walks all of them again: at 5000 pods that made loading
    grow faster than the spec (0.73 s, 0.62 s without). Collection resumes after, as it was."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _load_text(text: str, filename: str, inspect: Inspect | None, root: str | None) -> Loaded:
    smap = SourceMap(filename)
    data = _parse(text, smap)
    if data is None:
        raise SpecError([f"{filename}:1:1: the file is empty; expected a mapping with 'stack:'"])
    if not isinstance(data, dict):
        raise SpecError([f"{filename}:1:1: expected a mapping at the top level, got {type(data).__name__}"])
    # Top-level keys starting with "x-" are extensions nkplan ignores (show --format json puts
    # the live snapshot under x-nkplan-snapshot, and the document stays a valid spec).
    data = {k: v for k, v in data.items() if not k.startswith("x-")}
    fragments: tuple[tuple[str, str], ...] = ()
    if "include" in data:
        from nkplan.spec.include import merge_includes

        fragments = tuple(merge_includes(data, smap, root, _parse))
    data, expanded = expand_data(data, smap)
    name = _namer(smap)
    try:
        spec = StackSpec.model_validate(data)
    except ValidationError as exc:
        # Report the cross-field problems of the valid items too: all problems of a file at once.
        problems = _pydantic_problems(exc, data, smap)
        problems += [f"{smap.describe(loc)}: {msg}" for loc, msg in _partial_semantics(data, name)]
        raise SpecError(_unique(problems)) from None
    found = semantic_problems(spec, name)
    digests: dict[str, str] = {}
    object_maps: dict[str, tuple[MapDef, ...]] = {}
    programs = any(True for _ in declared_hooks(spec))
    if programs or spec.maps:
        from nkplan.spec.objects import ObjectFacts, object_problems
        from nkplan.spec.sharedmaps import shared_map_problems

        facts = ObjectFacts()
        if programs:
            if inspect is None:
                raise InternalError("the spec declares BPF programs but the loader was given no object inspector")
            more, facts = object_problems(spec, filename, inspect)
            found += more
        if spec.maps:
            found += shared_map_problems(spec, filename, inspect, facts, lambda p: smap.where(p, key=True))
        digests, object_maps = facts.digests, facts.maps
    problems = [f"{smap.describe(loc)}: {msg}" for loc, msg in found]
    if problems:
        raise SpecError(_unique(problems))
    return Loaded(spec, smap, text, digests, object_maps, expanded, fragments)


def expand_data(data: dict[str, Any], smap: SourceMap) -> tuple[dict[str, Any], dict[str, Any]]:
    """`repeat:`/`pools:` expanded and `defaults:` applied (spec/expand.py, spec/defaults.py):
    (the plain document pydantic validates, twice: the second is kept for `validate --expanded`);
    SpecError with every problem of those sections."""
    if not any(k in data for k in ("repeat", "pools", "defaults")):
        return data, data
    from nkplan.spec.defaults import apply_defaults
    from nkplan.spec.expand import expand

    data, problems = expand(data, smap)
    problems += apply_defaults(data, smap)
    if problems:
        raise SpecError(problems)
    return data, data


def _namer(smap: SourceMap) -> Callable[[Path_], str]:
    """An item's name in cross-field messages: `links[3]`, or `pods[17].links[0]` for one a template made."""
    if not smap.redirects:
        return dotted

    def name(path: Path_) -> str:
        return smap.origin(path)[1] or dotted(path)

    return name


def _unique(problems: list[str]) -> list[str]:
    """A problem of a defaults value shows once, not once per item it fills."""
    return list(dict.fromkeys(problems))


_SECTIONS: dict[str, type[NamespaceSpec] | type[LinkSpec] | type[RouteSpec] | type[RuleSpec] | type[CheckSpec]] = {
    "namespaces": NamespaceSpec,
    "links": LinkSpec,
    "routes": RouteSpec,
    "rules": RuleSpec,
    "checks": CheckSpec,
}


def _partial_semantics(data: dict[str, Any], name: Callable[[Path_], str]) -> list[tuple[Path_, str]]:
    """Cross-field checks over the items that are valid on their own, with their original indexes."""
    kept: dict[str, list[Any]] = {}
    index: dict[str, list[int]] = {}
    for section, model in _SECTIONS.items():
        kept[section], index[section] = [], []
        items = data.get(section)
        for i, item in enumerate(items if isinstance(items, list) else []):
            try:
                kept[section].append(model.model_validate(item))
                index[section].append(i)
            except ValidationError:
                continue
    partial = StackSpec.model_construct(
        stack="x",
        namespaces=kept["namespaces"],
        links=kept["links"],
        routes=kept["routes"],
        rules=kept["rules"],
        checks=kept["checks"],
    )
    out = []
    def orig(path: Path_) -> Path_:
        if len(path) >= 2 and isinstance(path[1], int) and str(path[0]) in index:
            return (path[0], index[str(path[0])][path[1]], *path[2:])
        return path

    for loc, msg in semantic_problems(partial, lambda p: name(orig(p))):
        out.append((orig(loc), msg))
    return out


def load_file(path: str, inspect: Inspect | None = None, root: str | None = None) -> Loaded:
    """Load a spec from a path, or from stdin when path is '-'."""
    if path == "-":
        return load_text(sys.stdin.read(), "<stdin>", inspect)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except UnicodeDecodeError as exc:  # say where, as for any other spec error
        head = Path(path).read_bytes()[: exc.start]
        line, col = head.count(b"\n") + 1, exc.start - (head.rfind(b"\n") + 1) + 1
        raise SpecError([f"{path}:{line}:{col}: not UTF-8 (byte 0x{exc.object[exc.start]:02x}); refused"]) from None
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc}"]) from None
    return load_text(text, path, inspect, root)
