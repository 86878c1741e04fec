"""Attribute-level differences between two record dicts, as dotted paths ("peer.policy")."""

from __future__ import annotations

import re
from typing import Any

from deepdiff import DeepDiff

_PART = re.compile(r"\[('?)(.*?)\1\]")


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    """Top-level or nested-field paths that differ; a changed list is reported as the list itself
    (addresses: [a] → [a, b] is one attribute change, as a reviewer reads it)."""
    if before == after:
        return ()
    diff = DeepDiff(before, after, view="tree", verbose_level=0)
    paths: set[str] = set()
    for level in diff.tree.values():
        for item in level:
            parts = [m.group(2) for m in _PART.finditer(item.path())]
            # Stop at the first list index: report the list, not its element.
            keep = []
            for part in parts:
                if part.isdigit():
                    break
                keep.append(part)
            paths.add(".".join(keep))
    return tuple(sorted(paths))
