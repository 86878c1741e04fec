"""Policy routing rules in a spec (`rules:`), as `ip rule` names their parts:
`{namespace: pod-a, priority: 100, from: 10.0.1.3/32, table: 100}`. The model, its scalar types
and its cross-field checks; records are made in core/resources/rule.py."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from nkplan.spec.rttables import Table
from nkplan.spec.types import IfName, NsName

MAX_U32 = 2**32 - 1
# the kernel's own rules: 0 (lookup local), 32766 (lookup main), 32767 (lookup default, IPv4)
KERNEL_PRIORITIES = {0: "local", 32766: "main", 32767: "default"}
SELECTORS = ("from", "to", "iif", "oif", "fwmark")
Problem = tuple[tuple[str | int, ...], str]


def check_priority(value: int) -> int:
    if value in KERNEL_PRIORITIES:
        raise ValueError(
            f"priority {value} is the kernel's own rule (lookup {KERNEL_PRIORITIES[value]}), which nkplan "
            "never touches; pick another priority"
        )
    return value


def check_rule_prefix(value: str) -> str:
    """`from`/`to`: a CIDR, or a bare address (a /32 or /128, as `ip rule` reads it)."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"invalid rule prefix {value!r} (expected CIDR like 10.0.1.0/24 or fd00::/64)") from None
    if "/" in value and net.with_prefixlen != ipaddress.ip_interface(value).with_prefixlen:
        raise ValueError(f"rule prefix {value!r} has host bits set; did you mean {net.with_prefixlen}?")
    if net.prefixlen == 0:
        raise ValueError(f"rule prefix {value!r} matches everything; leave the field out instead")
    return net.with_prefixlen


def parse_fwmark(value: int | str) -> tuple[int, int]:
    """(mark, mask) of a spec's fwmark: an integer, or `ip rule`'s text "MARK[/MASK]" (0x hex or
    decimal). A mark without a mask gets the kernel's 0xffffffff."""
    if isinstance(value, int):
        mark, mask = value, MAX_U32
    else:
        text, _, masktext = value.partition("/")
        mark = int(text.strip(), 0)
        mask = int(masktext.strip(), 0) if masktext else MAX_U32
    return mark, mask


def check_fwmark(value: object) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"fwmark is an integer or the text MARK/MASK (e.g. 0x10/0xff), not {value!r}")
    try:
        mark, mask = parse_fwmark(value)
    except ValueError:
        raise ValueError(f"fwmark {value!r} is not MARK or MARK/MASK (numbers, e.g. 0x10/0xff)") from None
    for what, n in (("mark", mark), ("mask", mask)):
        if not 0 <= n <= MAX_U32:
            raise ValueError(f"fwmark {value!r}: {what} {n} is out of range (0-{MAX_U32})")
    if mask == 0:
        raise ValueError(f"fwmark {value!r} has mask 0, which matches every packet; it selects nothing")
    return value


Priority = Annotated[int, Field(ge=1, le=MAX_U32), AfterValidator(check_priority)]
RulePrefix = Annotated[str, AfterValidator(check_rule_prefix)]
FwMark = Annotated[int | str, PlainValidator(check_fwmark), WithJsonSchema({"type": ["integer", "string"]})]
RuleAction = Literal["lookup", "blackhole", "unreachable", "prohibit"]


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, populate_by_name=True)

    namespace: NsName | None = Field(default=None, description="where the rule lives (default: the host)")
    priority: Priority = Field(description="the rule's preference (1-4294967295, not 32766/32767); its identity")
    family: Literal["inet", "inet6"] | None = Field(
        default=None, description="inet or inet6; only needed when neither from nor to says it (default inet)"
    )
    from_: RulePrefix | None = Field(default=None, alias="from", description="source prefix")
    to: RulePrefix | None = Field(default=None, description="destination prefix")
    iif: IfName | None = Field(default=None, description="input device name")
    oif: IfName | None = Field(default=None, description="output device name")
    fwmark: FwMark | None = Field(default=None, description="firewall mark: MARK or MARK/MASK")
    table: Table | None = Field(default=None, description="routing table (number or rt_tables name); with lookup")
    action: RuleAction | None = Field(default=None, description="lookup (default), blackhole, unreachable, prohibit")


def rule_family(rule: RuleSpec) -> Literal["inet", "inet6"]:
    for prefix in (rule.from_, rule.to):
        if prefix is not None:
            return "inet6" if ":" in prefix else "inet"
    return rule.family or "inet"


def rule_action(rule: RuleSpec) -> RuleAction:
    return rule.action or "lookup"


def _label(ns: str | None) -> str:
    return f"namespace {ns!r}" if ns else "the host namespace"


def rule_problems(
    rules: list[RuleSpec], namespaces: set[str], name: Callable[[tuple[str | int, ...]], str] | None = None
) -> Iterator[Problem]:
    named = name or (lambda p: f"{p[0]}[{p[1]}]")
    seen: dict[tuple[str, str, int], int] = {}
    for i, rule in enumerate(rules):
        base: tuple[str | int, ...] = ("rules", i)
        what = f"rule {rule.priority}"
        if rule.namespace and rule.namespace not in namespaces:
            yield (*base, "namespace"), f"namespace {rule.namespace!r} is not declared under 'namespaces:'"
        if all(getattr(rule, "from_" if s == "from" else s) is None for s in SELECTORS):
            yield base, f"{what} has no selector: give at least one of {', '.join(SELECTORS)}"
        fams = {f: "inet6" if ":" in p else "inet" for f, p in (("from", rule.from_), ("to", rule.to)) if p}
        if len(set(fams.values())) > 1:
            yield (*base, "to"), f"{what}: from {rule.from_!r} and to {rule.to!r} are of different IP families"
        elif fams and rule.family is not None and rule.family not in fams.values():
            fld, fam = next(iter(fams.items()))
            yield (*base, "family"), f"{what}: family {rule.family!r} does not match {fld} ({fam})"
        action = rule_action(rule)
        if action == "lookup" and rule.table is None:
            yield base, f"{what} needs a table to look up (or an action: blackhole, unreachable, prohibit)"
        if action != "lookup" and rule.table is not None:
            yield (*base, "table"), f"{what}: action {action} takes no table (table {rule.table} given)"
        key = (rule.namespace or "", rule_family(rule), rule.priority)
        if key in seen:
            yield (*base, "priority"), (
                f"{what} ({key[1]}) in {_label(rule.namespace)} is declared twice "
                f"({named(('rules', seen[key]))} and {named(base)})"
            )
        else:
            seen[key] = i
