"""`include:` — fragment files inside one stack. A fragment is a YAML mapping of list sections
(namespaces, links, routes, rules) whose items are appended, in the order of the `include:` list,
after the including file's own items of that section. Paths are relative to the including file and
must stay inside the spec's directory tree (`root`: the folder of the spec file, or the directory
given to `plan DIR`): absolute paths and `..` escapes (symbolic links included) are refused, so a
pull request cannot make CI read arbitrary files. Fragments include nothing themselves. Every item
keeps its own file:line:col (SourceMap.files)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nkplan.errors import SpecError
from nkplan.spec.source import Path_, SourceMap

FRAGMENT_SECTIONS = ("namespaces", "links", "routes", "rules")

Parse = Callable[[str, SourceMap], Any]  # YAML text → plain data, positions recorded in the map


def _display(including: str, rel: str) -> str:
    """The fragment's name in messages: beside the including file, as the user would write it."""
    return os.path.normpath(os.path.join(os.path.dirname(including), rel))


def _resolve(entry: Any, including: str, root: Path, pos: str) -> tuple[Path | None, str]:
    if not isinstance(entry, str) or not entry or "\0" in entry:
        return None, f"{pos}: include: expects a relative path to a fragment file, got {entry!r}"
    if os.path.isabs(entry):
        return None, f"{pos}: include: {entry!r} is an absolute path; give a path relative to {including}"
    target = (Path(including).parent / entry).resolve()
    try:
        target.relative_to(root.resolve())
    except ValueError:
        return None, f"{pos}: include: {entry!r} leads outside the spec's directory {str(root)!r}; refused"
    return target, ""


def merge_includes(data: dict[str, Any], smap: SourceMap, root: str | None, parse: Parse) -> list[tuple[str, str]]:
    """Pop `include:` from `data` and append each fragment's items (positions re-keyed, the file
    recorded in `smap.files`). Returns the fragments read, (name, text), in order; SpecError with
    every problem of the include list and the fragments."""
    entries = data.pop("include", None)
    if entries is None:
        return []
    including = smap.filename
    if not isinstance(entries, list):
        raise SpecError([f"{smap.position(('include',))}: include: expects a list of fragment files"])
    if including.startswith("<"):
        raise SpecError([f"{smap.position(('include',))}: include: needs a spec file (fragments are found beside it)"])
    base = Path(root) if root is not None else Path(including).parent
    problems: list[str] = []
    read: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for i, entry in enumerate(entries):
        pos = smap.position(("include", i))
        target, problem = _resolve(entry, including, base, pos)
        if target is None:
            problems.append(problem)
            continue
        name = _display(including, entry)
        if target in seen:
            problems.append(f"{pos}: include: {entry!r} is included twice")
            continue
        seen.add(target)
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            problems.append(f"{pos}: include: no such file {name!r}")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{pos}: include: cannot read {name!r}: {exc}")
            continue
        fsmap = SourceMap(name)
        try:
            frag = parse(text, fsmap)
        except SpecError as exc:
            problems += exc.problems
            continue
        read.append((name, text))
        if frag is None:
            continue  # an empty fragment adds nothing
        if not isinstance(frag, dict):
            problems.append(f"{name}:1:1: a fragment must be a mapping of {', '.join(FRAGMENT_SECTIONS)}")
            continue
        for key, items in frag.items():
            if key.startswith("x-"):
                continue  # extension keys are ignored, as at the top of a stack file
            if key not in FRAGMENT_SECTIONS:
                problems.append(
                    f"{fsmap.position((key,), key=True)}: {key!r} cannot be in a fragment "
                    f"(only {', '.join(FRAGMENT_SECTIONS)}; stack-wide settings stay in the stack file)"
                )
                continue
            if not isinstance(items, list):
                problems.append(f"{fsmap.position((key,))}: {key}: expects a list")
                continue
            mine = data.setdefault(key, [])
            if not isinstance(mine, list):
                continue  # the stack file's own section is wrong: validation reports it
            _rekey(fsmap, smap, key, len(mine), name)
            mine.extend(items)
    if problems:
        raise SpecError(problems)
    return read


def _rekey(frag: SourceMap, smap: SourceMap, section: str, offset: int, name: str) -> None:
    """Positions of `section[k]...` in the fragment become those of `section[offset+k]...`."""

    def moved(path: Path_) -> Path_ | None:
        if len(path) >= 2 and path[0] == section and isinstance(path[1], int):
            return (section, offset + path[1], *path[2:])
        return None

    for table, into in ((frag.values, smap.values), (frag.keys, smap.keys)):
        for path, pos in table.items():
            new = moved(path)
            if new is not None:
                into[new] = pos
                if len(new) == 2:
                    smap.files[new] = name
