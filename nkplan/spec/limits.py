"""Bounds on a spec file before it is turned into data, so that hostile input (a pull request
planned in CI) gets a located error in bounded time and memory instead of exhausting the machine:

- nesting deeper than MAX_DEPTH (the parsers recurse: 5000 levels end in a RecursionError);
- aliases that expand the document beyond MAX_NODES nodes (a "billion laughs" of nested aliases
  took 22 GB and five minutes before this check);
- plain numbers longer than MAX_DIGITS digits (Python refuses to convert beyond 4300);
- files larger than MAX_BYTES.

One pass over libyaml's event stream (iterative, no recursion, no node tree), before anything is
composed: libyaml's composer, which the loader's fast path uses, recurses in C and kills the
interpreter with a segmentation fault at 200,000 levels, so the bound cannot wait for it. The pass
costs about an eighth of a load (0.06 of 0.46 s for 1000 pods written out). A document the event
parser rejects is left to the loader, which reports the YAML error with its position."""

from __future__ import annotations

import importlib
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)

from nkplan.errors import SpecError

MAX_BYTES = 8 * 1024 * 1024  # a 10,000-pod spec written out is ~2.5 MiB (a template: a few KiB)
MAX_DEPTH = 100
MAX_NODES = 2_000_000  # a 10,000-pod spec written out is ~0.5 million
MAX_DIGITS = 1000
_NUMBER = re.compile(r"[-+]?(0[xob])?[0-9a-fA-F_.]+([eE][-+]?[0-9]+)?")


def _where(filename: str, event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    if mark is None:
        return f"{filename}:1:1"
    return f"{filename}:{mark.line + 1}:{mark.column + 1}"


def check_size(text: str, filename: str) -> None:
    """SpecError when the text is larger than MAX_BYTES."""
    if len(text) > MAX_BYTES:
        raise SpecError([f"{filename}:1:1: the file is {len(text) / 2**20:.0f} MiB; specs may be at most "
                         f"{MAX_BYTES // 2**20} MiB"])  # fmt: skip


def check(text: str, filename: str) -> None:
    """SpecError (located) when the text exceeds a bound; nothing when within them."""
    check_size(text, filename)
    try:
        importlib.import_module("ruamel.yaml.clib._ruamel_yaml")
        yaml = YAML(typ="safe", pure=False)
    except ImportError:  # the pure parser: slower, the same events
        yaml = YAML(typ="safe", pure=True)
    depth = 0
    nodes = 0
    sizes: dict[str, int] = {}  # anchor -> expanded size of its node
    open_: list[tuple[str | None, int]] = []  # (anchor, nodes when it opened) per open collection
    try:
        for event in yaml.parse(text):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                nodes += 1
                if depth > MAX_DEPTH:
                    raise SpecError([f"{_where(filename, event)}: nesting deeper than {MAX_DEPTH} levels; refused"])
                open_.append((event.anchor, nodes))
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
                anchor, start = open_.pop()
                if anchor is not None:
                    sizes[anchor] = nodes - start + 1
            elif isinstance(event, AliasEvent):
                nodes += sizes.get(event.anchor, 1)
            elif isinstance(event, ScalarEvent):
                nodes += 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                value = event.value
                if not event.style and len(value) > MAX_DIGITS and _NUMBER.fullmatch(value):  # plain: a number
                    raise SpecError([f"{_where(filename, event)}: a number of {len(value)} digits; refused"])
            if nodes > MAX_NODES:
                raise SpecError(
                    [f"{_where(filename, event)}: the document expands to more than {MAX_NODES:,} nodes "
                     "(aliases repeating aliases?); refused"]
                )  # fmt: skip
    except SpecError:
        raise
    except Exception:  # a YAML error: the loader's parse reports it, with its position
        return
