"""nkplan's public Python API. Everything else in the package is internal and may change.

The composition root: it wires the pure layers (spec, core, documents) to the real kernel
(kernel.linux, kernel.bpf), which the pure layers never import themselves."""

from __future__ import annotations

import json
from typing import Any

from nkplan.core.records import MapDef
from nkplan.spec.loader import Loaded
from nkplan.spec.loader import load_file as _load_file
from nkplan.spec.loader import load_text as _load_text

__all__ = ["Loaded", "inspect_object", "load_dict", "load_file", "load_text"]


def inspect_object(path: str) -> tuple[list[str], tuple[MapDef, ...]]:
    """The program names and own maps of a BPF object file, through libbpf (no privileges);
    libbpf (ctypes) is loaded only when a spec declares programs."""
    from nkplan.kernel.bpf import libbpf

    return libbpf.inspect_names(path)


def load_file(path: str) -> Loaded:
    """A spec from a file (or stdin for "-"); SpecError with file:line:col for every problem."""
    return _load_file(path, inspect_object)


def load_text(text: str, filename: str = "<text>") -> Loaded:
    """A spec from YAML text; `filename` names it in messages (and BPF object paths resolve
    against its folder)."""
    return _load_text(text, filename, inspect_object)


def load_dict(data: dict[str, Any], filename: str = "<dict>") -> Loaded:
    """A spec from data already parsed (for example an Ansible module's inline config). The
    positions in messages are those of its JSON rendering (JSON is YAML), one key per line."""
    return _load_text(json.dumps(data, indent=1, default=str) + "\n", filename, inspect_object)
