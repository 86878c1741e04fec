"""The host (root) network namespace between the layers. A spec and the JSON plan say None
(the key left out, or null); records and live state say HOST (""), so records compare with a
plain ==; pin paths say ":host" (kernel/bpf/pins.py). The conversions live here so that no layer
spells the host its own way."""

from __future__ import annotations

from nkplan.core.records import HOST


def record_ns(declared: str | None) -> str:
    """A spec's namespace (None: the host) as records spell it."""
    return HOST if declared is None else declared


def document_ns(ns: str) -> str | None:
    """A record's namespace as documents spell it (None: the host)."""
    return None if ns == HOST else ns


def qualified(ns: str, name: str) -> str:
    """A device name in an address: `ns/name`, or the bare name in the host namespace."""
    return name if ns == HOST else f"{ns}/{name}"
