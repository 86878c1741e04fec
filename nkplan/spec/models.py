"""Pydantic models of spec v1. Field names are the user-facing contract (documented in README).
Models are frozen and forbid unknown fields; cross-field rules live in checks.py so that every
problem of a file can be reported at once with its location."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nkplan.spec.rttables import Table
from nkplan.spec.rules import RuleSpec
from nkplan.spec.types import (
    IfName,
    InterfaceCidr,
    IpAddr,
    Mac,
    Metric,
    Mtu,
    NetSysctlValue,
    NsName,
    Room,
    RouteTo,
    StackName,
    SysctlValue,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class MapEntrySpec(_Model):
    key: Any = Field(description="the entry's key, typed from the map's BTF key type")
    value: Any = Field(description="the entry's value, typed from the map's BTF value type")


class MapSpec(_Model):
    entries: list[MapEntrySpec] = Field(default_factory=list, description="entries nkplan writes")
    exclusive: bool = Field(default=False, description="remove entries that are not declared")


class ProgramSpec(_Model):
    object: str = Field(description="ELF BPF object file, relative to the spec file")
    program: str = Field(min_length=1, description="the program's name in the object")
    pin_maps: bool = Field(default=False, description="also pin the program's maps next to its link")
    globals: dict[str, Any] | None = Field(
        default=None,
        description="global variables of the instance (.rodata const volatile, .data, .bss) by name, "
        "typed from the object's BTF; {ifindex: DEVICE}, {netns_cookie: NS} and {address: DEVICE} refer to "
        "what the spec declares",
    )
    maps: dict[str, MapSpec] | None = Field(
        default=None, description='entries of the program\'s own maps (SEC(".maps")), by map name'
    )


class TcxPrograms(_Model):
    ingress: list[ProgramSpec] = Field(default_factory=list)
    egress: list[ProgramSpec] = Field(default_factory=list)


class NetkitPrograms(_Model):
    primary: list[ProgramSpec] = Field(default_factory=list, description="host → namespace path")
    peer: list[ProgramSpec] = Field(default_factory=list, description="namespace → host path")


class EndFields(_Model):
    """What both ends of a pair share."""

    name: IfName
    namespace: NsName | None = None  # None = host (root) namespace
    mtu: Mtu | None = None
    up: bool = True
    mac: Mac | None = None
    addresses: list[InterfaceCidr] = Field(default_factory=list)
    policy: Literal["forward", "blackhole"] | None = None  # netkit only
    scrub: Literal["default", "none"] | None = None  # netkit only
    tcx: TcxPrograms | None = None  # BPF programs at this end's tcx hooks
    # net.ipv4.conf.DEV.* / net.ipv6.conf.DEV.* without the device part (core/sysctls.py)
    sysctls: dict[str, SysctlValue] | None = None


class PeerSpec(EndFields):
    pass


class LinkSpec(EndFields):
    kind: Literal["netkit", "veth"]
    mode: Literal["l3", "l2"] | None = None  # netkit only, default l3
    headroom: Room | None = None  # netkit only
    tailroom: Room | None = None  # netkit only
    programs: NetkitPrograms | None = None  # netkit only: BPF programs at the pair's netkit hooks
    # netkit only: "pair" (default) or "single", a device without a peer (Linux >= 7.1); only a
    # single device goes without `peer` (checks.py says so, with the position)
    pairing: Literal["pair", "single"] | None = None
    peer: PeerSpec | None = None


class NamespaceSpec(_Model):
    name: NsName
    sysctls: dict[str, NetSysctlValue] | None = None  # net.* keys of this namespace


class HostSpec(_Model):
    """What a stack sets in the host namespace without owning it."""

    sysctls: dict[str, NetSysctlValue] | None = None  # net.* keys of the host namespace


class NexthopSpec(_Model):
    """One path of a multipath route, as `ip route ... nexthop via V dev D weight W onlink`."""

    via: IpAddr | None = None
    dev: IfName | None = None
    weight: int = Field(default=1, ge=1, le=256)
    onlink: bool = False


class RouteSpec(_Model):
    to: RouteTo
    via: IpAddr | None = None
    dev: IfName | None = None
    namespace: NsName | None = None
    metric: Metric | None = None
    table: Table | None = None  # default main (local for type local), as iproute2
    type: Literal["unicast", "local", "blackhole", "unreachable", "prohibit", "throw"] = "unicast"
    scope: Literal["global", "site", "link", "host"] | None = None  # IPv4 only; default as iproute2
    src: IpAddr | None = None  # preferred source address (RTA_PREFSRC)
    onlink: bool = False
    mtu: Mtu | None = None
    nexthops: list[NexthopSpec] | None = None  # multipath (RTA_MULTIPATH)


class CheckSpec(_Model):
    """A reachability check (`nkplan check`, and `apply` after verify): ICMP echo, or with a
    port a TCP connect, from a namespace (default: the host) to an address."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, populate_by_name=True)

    from_: NsName | None = Field(
        default=None, alias="from", description="namespace the check runs in (a declared one; default: the host)"
    )
    to: IpAddr = Field(description="destination address (IPv4 or IPv6)")
    port: int | None = Field(default=None, ge=1, le=65535, description="TCP port to connect to (default: ICMP echo)")
    expect: Literal["reachable", "unreachable"] = Field(description="reachable or unreachable")
    timeout: float = Field(default=1.0, gt=0, le=60, description="seconds to wait for an answer (default 1)")


class SharedMapSpec(_Model):
    """A stack-level BPF map (`maps: {NAME: …}`), pinned in the stack's bpffs tree and used by
    every declared program whose object has a map of that name and definition. The definition
    in the kernel's words (BPF_MAP_TYPE_*, libbpf's `__uint(key_size, …)` fields), or `like`."""

    type: Literal["hash", "array", "percpu_hash", "percpu_array", "lru_hash", "lru_percpu_hash", "lpm_trie"] | None = (
        Field(default=None, description="BPF_MAP_TYPE_* in lower case")
    )
    key_size: int | None = Field(default=None, ge=1, le=65535, description="bytes of a key")
    value_size: int | None = Field(default=None, ge=1, le=1 << 20, description="bytes of a value")
    max_entries: int | None = Field(default=None, ge=1, le=(1 << 32) - 1, description="capacity")
    map_flags: int = Field(default=0, ge=0, le=(1 << 32) - 1, description="BPF_F_* flags (e.g. 1: BPF_F_NO_PREALLOC)")
    like: str | None = Field(
        default=None, description="OBJECT:MAP: the definition of map MAP in object file OBJECT (relative to the spec)"
    )


class StackSpec(_Model):
    stack: StackName
    namespaces: list[NamespaceSpec] = Field(default_factory=list)
    links: list[LinkSpec] = Field(default_factory=list)
    routes: list[RouteSpec] = Field(default_factory=list)
    host: HostSpec | None = None
    rules: list[RuleSpec] = Field(default_factory=list)  # policy routing rules (spec/rules.py)
    checks: list[CheckSpec] = Field(default_factory=list)  # reachability checks (run/reach.py); no templates
    maps: dict[str, SharedMapSpec] = Field(default_factory=dict)  # shared BPF maps (spec/sharedmaps.py)
