"""The registry of resource types. Order matters twice: it is the order the planner claims them
in (and so their source-order tier), and the tie-break among records that depend on nothing
between each other. To add a type: write its module (see base.py), add its record to
core/records.py and its instance here, then its kernel half (kernel/linux.py, kernel/fake.py)."""

from __future__ import annotations

from typing import Any

from nkplan.core.resources.base import Claims, Need, ResourceType
from nkplan.core.resources.hook import HookType
from nkplan.core.resources.link import LinkType
from nkplan.core.resources.namespace import NamespaceType
from nkplan.core.resources.orphan import OrphanType
from nkplan.core.resources.route import RouteType
from nkplan.core.resources.rule import RuleType
from nkplan.core.resources.sharedmap import SharedMapType
from nkplan.core.resources.sysctl import SysctlType

REGISTRY: tuple[ResourceType[Any], ...] = (
    NamespaceType(),
    LinkType(),
    RouteType(),
    SharedMapType(),
    HookType(),
    SysctlType(),
    RuleType(),
    OrphanType(),
)
BY_NAME: dict[str, ResourceType[Any]] = {t.name: t for t in REGISTRY}
_BY_RECORD: dict[type, ResourceType[Any]] = {t.record: t for t in REGISTRY}
TYPE_NAMES: tuple[str, ...] = tuple(BY_NAME)


def type_of(rec: object) -> ResourceType[Any]:
    """The resource type of a record."""
    return _BY_RECORD[type(rec)]


def address_of(rec: object) -> str:
    return type_of(rec).address(rec)


def attrs(rec: object) -> dict[str, Any]:
    return type_of(rec).attrs(rec)


def from_plain(type_name: str, data: dict[str, Any]) -> Any:
    if type_name not in BY_NAME:
        raise ValueError(f"unknown resource type {type_name!r}")
    return BY_NAME[type_name].from_plain(data)


__all__ = [
    "BY_NAME",
    "REGISTRY",
    "TYPE_NAMES",
    "Claims",
    "Need",
    "ResourceType",
    "address_of",
    "attrs",
    "from_plain",
    "type_of",
]
