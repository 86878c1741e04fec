"""Canonical resource records, shared by the desired side (normalised spec) and the live side
(kernel reader). Both sides are put in exactly this form so a plain == tells "no change": sorted
address tuples, defaulted attributes, host namespace spelled "" (HOST)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from nkplan.core.sysctls import NO_SYSCTLS, Sysctls

HOST = ""  # the root (host) network namespace
OWNER_PREFIX = "nkplan:"  # ifalias prefix marking a device end or a namespace's lo as owned
RTPROT_NKPLAN = 237  # route protocol number marking routes nkplan installed

Kind = Literal["netkit", "veth"]
Mode = Literal["l2", "l3"]
Policy = Literal["forward", "blackhole"]
Scrub = Literal["default", "none"]
Pairing = Literal["pair", "single"]
Role = Literal["primary", "peer", "ns"]


def owner_alias(stack: str, role: Role, applied: str | None = None) -> str:
    """The ifalias written on every owned device end (role primary/peer) and on a namespace's lo:
    `nkplan:STACK:ROLE`, and on a primary `nkplan:STACK:primary:DIGEST`, the digest of the
    declared pair as last applied, so a later plan can tell drift (a change made outside nkplan)
    from a change of the spec; a namespace with declared sysctls carries theirs the same way
    (`nkplan:STACK:ns:DIGEST`)."""
    mark = f"{OWNER_PREFIX}{stack}:{role}"
    return f"{mark}:{applied}" if applied and role in ("primary", "ns") else mark


def _owner_parts(alias: str | None) -> list[str] | None:
    if not alias or not alias.startswith(OWNER_PREFIX):
        return None
    parts = alias[len(OWNER_PREFIX) :].split(":")  # stack names cannot contain ':'
    if len(parts) not in (2, 3) or not parts[0] or parts[1] not in ("primary", "peer", "ns"):
        return None
    return parts


def parse_owner_alias(alias: str | None) -> tuple[str, Role] | None:
    parts = _owner_parts(alias)
    return (parts[0], parts[1]) if parts else None  # type: ignore[return-value]


def parse_applied_digest(alias: str | None) -> str | None:
    parts = _owner_parts(alias)
    return parts[2] if parts and len(parts) == 3 else None


def ns_label(ns: str) -> str:
    return ns or "host"


@dataclass(frozen=True)
class NamespaceRec:
    name: str
    owner: str | None = None


@dataclass(frozen=True)
class EndRec:
    """One end of a device pair. `policy`/`scrub` are netkit-only (None on veth) and are always as
    seen from this end itself (the kernel reports a peer's policies reversed; the reader fixes it).
    `mac` None means "kernel chooses" on the desired side; the live side always fills it for L2/veth
    and leaves it None for L3 netkit (all-zero MAC)."""

    namespace: str
    name: str
    mtu: int = 1500
    up: bool = True
    mac: str | None = None
    addresses: tuple[str, ...] = ()  # canonical CIDR strings, sorted (see normalize.sort_cidrs)
    policy: Policy | None = None
    scrub: Scrub | None = None
    # declared per-device sysctls (desired); live: the values of the keys the read was asked for
    sysctls: Sysctls = NO_SYSCTLS


@dataclass(frozen=True)
class LinkRec:
    """A device pair, addressed by its primary end; or a netkit device in single mode
    (pairing "single", Linux >= 7.1), which has no peer: `peer` None, and nothing else does."""

    kind: Kind
    primary: EndRec
    peer: EndRec | None
    mode: Mode | None = None  # netkit only
    headroom: int | None = None  # netkit only; None = not declared / kernel default 0
    tailroom: int | None = None
    pairing: Pairing | None = None  # netkit only: "pair" or "single" (older kernels: always "pair")
    owner: str | None = None
    # Digest of the declared record as last applied (desired side: of this record). Not an
    # attribute: never compared, never shown as a change; it only tells drift from spec changes.
    applied: str | None = field(default=None, compare=False)

    @property
    def ends(self) -> tuple[EndRec, ...]:
        """The devices of the link: (primary, peer), or (primary,) for a single device."""
        return (self.primary,) if self.peer is None else (self.primary, self.peer)


Hook = Literal["primary", "peer", "ingress", "egress"]  # netkit: primary/peer; tcx: ingress/egress


@dataclass(frozen=True)
class MapDef:
    """A map a program uses, by the name the kernel keeps (at most 15 characters) and the
    definition that decides whether a new instance of the program takes it over (libbpf's rule
    for maps pinned by name: same type, key and value size, max_entries and flags)."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


# The map types a stack-level `maps:` entry may declare, by the names of the kernel's
# BPF_MAP_TYPE_* (lower case, as bpftool prints them): the ones BPF_MAP_CREATE makes from a
# definition alone (no BTF, no inner map, no value type of the kernel's).
MAP_TYPES: dict[str, int] = {
    "hash": 1,
    "array": 2,
    "percpu_hash": 5,
    "percpu_array": 6,
    "lru_hash": 9,
    "lru_percpu_hash": 10,
    "lpm_trie": 11,
}
MAP_TYPE_NAMES: dict[int, str] = {v: k for k, v in MAP_TYPES.items()}


@dataclass(frozen=True)
class SharedMapRec:
    """A map the stack declares by name (`maps:`), pinned at
    /sys/fs/bpf/nkplan/STACK/:maps/NAME; programs whose object has a map of that name (and the
    same definition) use this one instead of their own (libbpf's reuse of a pinned map).
    `type` is the kernel's BPF_MAP_TYPE_* name in lower case (MAP_TYPES)."""

    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    owner: str | None = None
    map_id: int | None = field(default=None, compare=False)  # live side, for `show`

    def definition(self) -> MapDef:
        kind = MAP_TYPES.get(self.type, -1)
        return MapDef(self.name, kind, self.key_size, self.value_size, self.max_entries, self.flags)


IFINDEX, NETNS_COOKIE = "ifindex", "netns_cookie"  # ValueRef kinds, as the spec names them


@dataclass(frozen=True)
class ValueRef:
    """Bytes [offset, offset+size) of a value take a number the kernel gives an object the spec
    declares, filled in at apply time (the object may not exist yet when the plan is made):
    kind "ifindex", the ifindex of `device` in `namespace`; kind "netns_cookie", the cookie of
    `namespace` ("" the host; `device` is "")."""

    offset: int
    size: int
    namespace: str
    device: str
    kind: str = IFINDEX  # plans saved before netns cookies name devices only

    @property
    def words(self) -> str:
        """What the number is, for messages and plans."""
        if self.kind == NETNS_COOKIE:
            return f"the netns cookie of {self.namespace or 'the host namespace'}"
        return f"the ifindex of {self.device}" + (f" in namespace {self.namespace}" if self.namespace else "")


@dataclass(frozen=True)
class GlobalRec:
    """A declared global variable of a program instance: where it lives (data section, offset)
    and its encoded bytes (hex; references left zero), with the value as the spec wrote it."""

    name: str
    section: str
    offset: int
    data: str
    text: str
    hint: str = "hex"  # how to show bytes read back (spec.bpfvalues.decode)
    refs: tuple[ValueRef, ...] = ()


@dataclass(frozen=True)
class EntryRec:
    """One entry of a program's map: key and value as bytes (hex; device references filled in
    with the ifindexes known when planned), and as the spec wrote them (desired side)."""

    key: str
    value: str
    key_text: str = field(default="", compare=False)
    value_text: str = field(default="", compare=False)
    key_refs: tuple[ValueRef, ...] = field(default=(), compare=False)
    value_refs: tuple[ValueRef, ...] = field(default=(), compare=False)
    hint: str = field(default="hex", compare=False)  # how to show a value read back


@dataclass(frozen=True)
class MapEntriesRec:
    """The entries of one of a program's maps, sorted by key. Desired: the declared ones, and
    whether entries not declared go (`exclusive`). Live: every entry; the hook type's view keeps
    what the declaration manages (core/resources/programvalues.py)."""

    name: str
    entries: tuple[EntryRec, ...] = ()
    exclusive: bool = False
    # live side, not exclusive: the declared keys (hex) the map did not hold when planned. A
    # rollback writes this record back, and deletes these: the failed apply may have added them
    absent: tuple[str, ...] = field(default=(), compare=False)


# What the reader reads of the running programs' maps: per hook (namespace, device, hook) and
# declared program name, the desired record (its `globals`: read the data sections; its
# `map_entries`: read those maps, every entry of an exclusive one, only the declared keys of
# another). A program not named here has only its map definitions read: a plan of programs
# that declare no values reads no map contents.
BpfReads = dict[tuple[str, str, str], dict[str, "ProgramRec"]]


@dataclass(frozen=True)
class SectionRec:
    """A data section's bytes as a running program holds them (live side, hex)."""

    name: str
    data: str


@dataclass(frozen=True)
class ProgramRec:
    """One BPF program on a hook, identified by its ELF program name and the content digest of
    its object file (first 16 hex of SHA-256, as in its pin name). `object` is the file's path
    on the desired side ("" on the live side: the kernel does not know it) and is not compared."""

    program: str
    digest: str
    pin_maps: bool = False
    object: str = field(default="", compare=False)
    # live side only, for `show`: what the kernel calls it
    prog_id: int | None = field(default=None, compare=False)
    tag: str = field(default="", compare=False)
    link_id: int | None = field(default=None, compare=False)
    # the program's own maps (not .data/.bss/.rodata): from the object file on the desired side,
    # from the kernel on the live side; () where unknown. Lets a plan say which maps an update
    # in place carries over.
    maps: tuple[MapDef, ...] = field(default=(), compare=False)
    # the stack's shared maps (`maps:`, SharedMapRec) this program uses instead of maps of its
    # own, sorted: desired, its object's maps of a declared name; live, the pinned shared maps
    # whose map ids the program holds. A difference loads a new instance.
    shared: tuple[str, ...] = ()
    # globals: declared on the desired side; `digest` then names the instance (object and
    # values, spec.globals.instance_digest) and `object_digest` the object file alone
    globals: tuple[GlobalRec, ...] = field(default=(), compare=False)
    object_digest: str = field(default="", compare=False)
    # live side: the instance's data sections (.rodata, .data, .bss) as the kernel holds them
    sections: tuple[SectionRec, ...] = field(default=(), compare=False)
    # declared entries of the program's own maps (desired); their content (live: every entry
    # of every map, so not compared as such). What is compared is `entries_key`, a digest of the
    # entries the declaration manages: set on the desired side when planned, on the live side by
    # the hook type's view from the entries it keeps (core/resources/programvalues.py); "" when
    # the program declares none, so a raw live record equals a desired one without entries
    map_entries: tuple[MapEntriesRec, ...] = field(default=(), compare=False)
    entries_key: str = ""
    # live side, set by the hook type's view: declared .data/.bss globals whose running value
    # differs from the declared one (changed outside nkplan); apply writes them back in place
    drifted: tuple[str, ...] = ()


@dataclass(frozen=True)
class HookRec:
    """The programs nkplan runs at one hook, in order. `device` is the device whose ifindex the
    hook is addressed through: for netkit hooks the pair's primary, for tcx hooks the end itself.
    Programs attached by others at the same hook are not in here (LiveState.foreign_programs)."""

    namespace: str
    device: str
    hook: Hook
    programs: tuple[ProgramRec, ...] = ()
    owner: str | None = None
    # Drift (core/resources/hook.py). `applied`: the digest of the programs as last applied,
    # which apply writes into a marker in the hook's pin directory (desired: of these programs);
    # never compared. `foreign`: the programs others had attached at the hook ("NAME (id N)")
    # when nkplan last applied it (live, from the marker; None: no marker, a hook applied by an
    # older nkplan); desired, those there now, so a program attached since is acknowledged by
    # apply (left attached, never detached). `foreign_now` (live): those there now.
    applied: str | None = field(default=None, compare=False)
    foreign: tuple[str, ...] | None = None
    foreign_now: tuple[str, ...] = field(default=(), compare=False)
    # temporary pins ("<program>@<digest>-new", bpf/pins.py TEMP_SUFFIX) an apply killed between
    # pinning a new link and renaming the pin into place left here: never declared, so a plan
    # shows them as a change and the next apply (or destroy) detaches and removes them
    leftovers: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrphanPin:
    """Something pinned in a stack's bpffs tree that no declared program, map or rule owns: a
    link pin whose link is gone from its hook (detached outside nkplan, or its device deleted),
    a stray pin. `path` is relative to the stack's directory; `hook` and `program` say which
    program a stale link pin was (a declared one is re-attached instead)."""

    owner: str
    path: str
    what: str
    hook: tuple[str, str, str] | None = None  # (namespace, device, hook) of a stale link pin
    program: str | None = None


@dataclass(frozen=True)
class ForeignProgram:
    """A program attached at a managed hook by someone else: left alone, shown as a warning."""

    namespace: str
    device: str
    hook: Hook
    prog_id: int
    name: str
    link_id: int | None = None


RouteType = Literal["unicast", "local", "blackhole", "unreachable", "prohibit", "throw"]
Scope = Literal["global", "site", "link", "host"]
RT_TABLE_DEFAULT = 253
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255


@dataclass(frozen=True)
class NexthopRec:
    """One path of a multipath route (`ip route ... nexthop via V dev D weight W [onlink]`).
    Desired `dev` None means the kernel resolves it from `via`."""

    via: str | None = None
    dev: str | None = None
    weight: int = 1
    onlink: bool = False


@dataclass(frozen=True)
class RouteRec:
    """A route nkplan installed, identified by (namespace, table, to, metric) as the kernel
    identifies it. `to` is canonical CIDR ("0.0.0.0/0" / "::/0" for default). Desired `dev` None
    means the kernel resolves it from `via`. `scope` is always the effective one (iproute2's
    default filled in; IPv6 routes have none but "global"). A multipath route has `nexthops`
    and no `via`/`dev` of its own; a blackhole/unreachable/prohibit/throw route has neither."""

    namespace: str
    to: str
    via: str | None = None
    dev: str | None = None
    metric: int = 0
    owner: str | None = None
    table: int = RT_TABLE_MAIN
    type: RouteType = "unicast"
    scope: Scope | None = None  # None: filled in at construction (default_scope)
    src: str | None = None
    onlink: bool = False
    mtu: int | None = None
    nexthops: tuple[NexthopRec, ...] = ()

    def __post_init__(self) -> None:
        if self.scope is None:
            gateway = self.via is not None or bool(self.nexthops)
            object.__setattr__(self, "scope", default_scope(self.family, self.type, gateway))

    @property
    def family(self) -> int:
        return 6 if ":" in self.to else 4

    @property
    def key(self) -> tuple[str, int, str, int]:
        """What tells two routes apart in the kernel (a second route with the same key is EEXIST)."""
        return (self.namespace, self.table, self.to, self.metric)

    def devices(self) -> tuple[str, ...]:
        """Every device the route sends through (its own, and each nexthop's)."""
        found = [self.dev] if self.dev else []
        found += [nh.dev for nh in self.nexthops if nh.dev]
        return tuple(dict.fromkeys(found))


def default_scope(family: int, rtype: str, gateway: bool) -> Scope:
    """The scope iproute2 gives a route that declares none (ip/iproute.c): IPv6 knows only
    global; local routes are host; a unicast route without a gateway (and not multipath) is
    link; everything else global."""
    if family == 6:
        return "global"
    if rtype == "local":
        return "host"
    if rtype == "unicast" and not gateway:
        return "link"
    return "global"


@dataclass(frozen=True)
class SysctlsRec:
    """The declared net.* sysctls of one namespace (HOST: the host's). Live: the values of the
    keys the read was asked for. `applied`: for a named namespace, the digest of the values as
    last applied (in its lo's ownership mark), to tell drift; the host has no such mark."""

    namespace: str
    values: Sysctls = NO_SYSCTLS
    owner: str | None = None
    applied: str | None = field(default=None, compare=False)


RuleFamily = Literal["inet", "inet6"]
RuleAction = Literal["lookup", "blackhole", "unreachable", "prohibit"]


@dataclass(frozen=True)
class RuleRec:
    """A policy routing rule (`ip rule`), identified by (namespace, family, priority). `src` and
    `dst` are a spec's `from` and `to` (canonical CIDR; `ip -j rule` calls them so too); `iif`
    and `oif` device names; `fwmark`/`fwmask` as the kernel keeps them (a mark without a mask:
    0xffffffff); `table` only with action lookup. `protocol` is the rule's FRA_PROTOCOL: 237
    (RTPROT_NKPLAN) on every rule nkplan makes. Live only: `extra`, what the rule holds that nkplan
    does not manage (e.g. `ipproto 6`, `not`), so such a rule never looks equal to a declared one;
    `applied`, for a host rule, the digest in its ownership marker; `stale`, a marker whose rule is
    gone (kernel/bpf/rulemarks.py)."""

    namespace: str
    family: RuleFamily
    priority: int
    src: str | None = None
    dst: str | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    action: RuleAction = "lookup"
    table: int | None = None
    protocol: int = RTPROT_NKPLAN
    extra: tuple[str, ...] = ()
    owner: str | None = None
    applied: str | None = field(default=None, compare=False)
    stale: bool = field(default=False, compare=False)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.namespace, self.family, self.priority)


@dataclass(frozen=True)
class DeviceInfo:
    """Every device the reader saw, owned or not: enough to refuse a collision."""

    namespace: str
    name: str
    kind: str  # "netkit", "veth", "" (no IFLA_INFO_KIND: physical/loopback), or another kind
    ifindex: int
    owner: str | None = None
    role: Role | None = None


@dataclass(frozen=True)
class KernelInfo:
    release: str = ""
    netkit: bool | None = None  # None = not probed (spec had no netkit link)
    netkit_scrub: bool | None = None
    netkit_headroom: bool | None = None
    netkit_single: bool | None = None  # single-device mode (IFLA_NETKIT_PAIRING, Linux 7.1)
    # the per-device sysctl keys this kernel has (None: not read, e.g. a spec declaring none)
    sysctl_keys: tuple[str, ...] | None = None
    # of the namespace keys asked about, those the host's /proc/sys has (None: not read)
    host_net_keys: tuple[str, ...] | None = None


@dataclass
class LiveState:
    """A snapshot of what the kernel holds. `links` holds every pair with at least one owned end
    (any stack) plus, with adopt, unowned pairs; `devices` every device seen; `routes` every route
    with protocol RTPROT_NKPLAN, owner taken from the owner of its output device."""

    namespaces: dict[str, NamespaceRec] = field(default_factory=dict)
    links: dict[tuple[str, str], LinkRec] = field(default_factory=dict)  # key (ns, primary name)
    devices: dict[tuple[str, str], DeviceInfo] = field(default_factory=dict)
    routes: list[RouteRec] = field(default_factory=list)
    kernel: KernelInfo = field(default_factory=KernelInfo)
    # BPF: the owned programs of every hook of every owned device that has some (key (ns, device,
    # hook)), and the programs others attached at those hooks.
    hooks: dict[tuple[str, str, str], HookRec] = field(default_factory=dict)
    foreign_programs: list[ForeignProgram] = field(default_factory=list)
    # net.* sysctls of the namespaces (and the host) the read was asked about, by namespace
    sysctls: dict[str, SysctlsRec] = field(default_factory=dict)
    # policy routing rules of every namespace, but the kernel's own (protocol kernel); owner:
    # a named namespace's owner for protocol-237 rules there, a stack's marker for host ones
    rules: list[RuleRec] = field(default_factory=list)
    # named namespaces whose lo mark carries the digest of applied sysctls (namespace → digest),
    # whether or not the read was asked for their keys: tells `nkplan stacks` a stack sets some
    ns_sysctl_marks: dict[str, str] = field(default_factory=dict)
    # the shared maps pinned in each stack's bpffs tree, key (stack, name)
    shared_maps: dict[tuple[str, str], SharedMapRec] = field(default_factory=dict)
    # pins in stacks' bpffs trees that nothing nkplan manages holds (kernel/bpf/orphans.py)
    orphan_pins: list[OrphanPin] = field(default_factory=list)
    # the cookie of the host namespace ("") and of each named namespace (SO_NETNS_COOKIE)
    netns_cookies: dict[str, int] = field(default_factory=dict)

    def number(self, ref: ValueRef) -> int | None:
        """The number a value's reference takes now (None: its device or namespace is not there)."""
        if ref.kind == NETNS_COOKIE:
            return self.netns_cookies.get(ref.namespace)
        d = self.devices.get((ref.namespace, ref.device))
        return d.ifindex if d is not None else None


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = frozenset({str, int, bool, float, type(None)})


# json.dumps(data, sort_keys=True, separators=(",", ":")), without making an encoder per call
_DIGEST_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def digest(data: object) -> str:
    """12 hex digits of SHA-256 over JSON-shaped data (keys sorted): the "as applied" digests that
    ownership marks carry."""
    return hashlib.sha256(_DIGEST_JSON.encode(data).encode()).hexdigest()[:12]


def plain(value: Any) -> Any:
    """A record as JSON-shaped data (dataclasses → dicts, tuples → lists), as
    json.loads(json.dumps(dataclasses.asdict(rec))) gives it, several times faster: plans
    convert every record they compare, and a stack of 1000 pods has over 10,000."""
    cls = type(value)
    if cls in _SCALARS:  # most of the calls: answered before any lookup
        return value
    if cls is Sysctls:  # a record value with a document form of its own
        return value.__plain__()
    names = _FIELD_NAMES.get(cls)
    if names is None and hasattr(cls, "__dataclass_fields__"):
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(value))
    if names is not None:  # scalars (most fields) taken as they are, without a call
        out: dict[str, Any] = {}
        for name in names:
            field_value = getattr(value, name)
            out[name] = field_value if type(field_value) in _SCALARS else plain(field_value)
        return out
    if cls is tuple or cls is list:
        return [v if type(v) in _SCALARS else plain(v) for v in value]
    if cls is dict:
        return {k: v if type(v) in _SCALARS else plain(v) for k, v in value.items()}
    return value
