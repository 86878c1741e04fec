"""BPF programs at the hooks of owned devices: what runs there (read()), and the pins of
deleted devices. Making a hook run the declared programs is hookwriter.py.

Identity and ownership. A link nkplan attached is pinned at
`/sys/fs/bpf/nkplan/<stack>/<ns>/<device>/<hook>/<program>@<digest16>` (pins.py): the pin says which
declared program (ELF name + object digest) the link runs and which stack owns it; the kernel
(PROG_QUERY) says where on the hook it sits. A link at a hook of an owned device is *owned* if
its id is that of a link pinned in the owner stack's directory for that hook; any other link
there is *foreign* (attached by someone else: reported, never touched). A pin whose link is no
longer on the hook (detached out of band) counts for nothing: the hook lacks that program (a
hook with pins but none of its links attached is reported with no programs), the planner
re-attaches it, and the writer replaces the stale pin.

Cost: one PROG_QUERY per hook of every owned device end (tcx ingress/egress; a netkit primary
also its primary and peer hooks, which a single netkit device does not have), made by the
reader's worker thread while it is inside each namespace anyway, with the ifindexes of the link
dump (no lookups, no extra thread); bpffs is walked once for the hooks (bpffs.hook_dirs: one
scandir per directory of nkplan's pin tree) and once more for orphan pins (orphans.py), each pin
of a hook that has programs is opened once, and each hook's marker is one listdir.
Nothing here imports pyroute2."""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nkplan.core.records import (
    HOST,
    BpfReads,
    EntryRec,
    ForeignProgram,
    Hook,
    HookRec,
    LiveState,
    MapDef,
    MapEntriesRec,
    OrphanPin,
    ProgramRec,
    SectionRec,
    ValueRef,
    parse_owner_alias,
)
from nkplan.errors import KernelError
from nkplan.kernel.bpf import bpffs, hookmarks, info, mprog, pins
from nkplan.kernel.bpf import consts as BC
from nkplan.kernel.bpf import syscall as S
from nkplan.kernel.bpf.bpffs import PinEntry
from nkplan.kernel.bpf.mprog import HookState
from nkplan.kernel.bpf.pins import LinkPin
from nkplan.kernel.netlink.consts import IFLA_NETKIT_PRIMARY
from nkplan.kernel.netlink.reader import PAIR_KINDS, NsScan, is_single
from nkplan.spec.bpfvalues import fill_refs
from nkplan.spec.globals import NumberOf
from nkplan.spec.mapentries import ENTRY_MAP_TYPES


# reading ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HookScan:
    namespace: str
    device: str
    hook: Hook
    owner: str
    state: HookState


@dataclass
class HookScanner:
    """reader.read_state's per-namespace visitor: PROG_QUERY every hook of every owned device end
    of the namespace the calling (worker) thread is in. Only hooks with programs are kept."""

    found: list[HookScan] = field(default_factory=list)

    def split(self) -> HookScanner:
        return HookScanner()

    def merge(self, other: HookScanner) -> None:
        self.found += other.found

    def __call__(self, namespace: str, scan: NsScan) -> None:
        for dev in scan.links.values():
            if dev.kind not in PAIR_KINDS:
                continue
            parsed = parse_owner_alias(dev.alias)
            if parsed is None or parsed[1] == "ns":
                continue
            names: tuple[Hook, ...] = BC.TCX_HOOKS
            # a single netkit device has no netkit hooks: the kernel answers EOPNOTSUPP to
            # every query of them (7.3), so only its tcx hooks are asked
            if dev.kind == "netkit" and dev.info.get(IFLA_NETKIT_PRIMARY) and not is_single(dev):
                names = BC.NETKIT_HOOKS + BC.TCX_HOOKS
            for hook in names:
                try:
                    state = mprog.prog_query(dev.ifindex, BC.ATTACH_TYPES[hook])
                except OSError as exc:
                    # ENODEV: deleted since the dump; EINVAL: no tcx/netkit hooks on this kernel
                    if exc.errno in (errno.ENODEV, errno.EINVAL):
                        continue
                    raise
                if state.entries:
                    self.found.append(HookScan(namespace, dev.name, hook, parsed[0], state))


@dataclass
class Pinned:
    pin: LinkPin
    link: info.LinkInfo
    fd: int | None = None  # kept open only when asked (the writer); the caller closes it


def _link_id(path: str) -> int | None:
    """The id of the tcx/netkit link pinned at path, or None."""
    fd = bpffs.open_pin(path)
    if fd is None:
        return None
    try:
        link = info.link_info(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return link.id if link.type in (BC.BPF_LINK_TYPE_TCX, BC.BPF_LINK_TYPE_NETKIT) else None


def open_pins(found: Sequence[LinkPin], *, keep_fds: bool = False) -> list[Pinned]:
    """What the kernel says about each pinned link (pins that hold no tcx/netkit link are left
    out). With keep_fds, each Pinned keeps an open fd of its link (the caller closes it)."""
    out: list[Pinned] = []
    for pin in found:
        fd = bpffs.open_pin(pin.path)
        if fd is None:
            continue
        try:
            link = info.link_info(fd)
        except OSError:
            os.close(fd)
            continue
        if link.type not in (BC.BPF_LINK_TYPE_TCX, BC.BPF_LINK_TYPE_NETKIT):
            os.close(fd)  # not a tcx/netkit link (something else pinned under that name)
            continue
        if keep_fds:
            out.append(Pinned(pin, link, fd))
        else:
            os.close(fd)
            out.append(Pinned(pin, link))
    return out


def pinned_links(stack: str, namespace: str, device: str, hook: Hook, *, keep_fds: bool = False) -> list[Pinned]:
    """The link pins in the stack's directory for one hook (sorted by name), with what the kernel
    says about each link. Nothing if bpffs or the directory is absent."""
    entries = bpffs.hook_pins(pins.hook_dir(stack, namespace, device, hook))
    found = [LinkPin(stack, namespace, device, hook, e.program, e.digest) for e in entries]
    return open_pins(found, keep_fds=keep_fds)


_Maps = tuple[tuple[MapDef, ...], tuple[SectionRec, ...], tuple[MapEntriesRec, ...]]
_KEYS_MAX = 1 << 24  # an exclusive map is read to its end; a map that never ends (keys added
# faster than read) is cut off there rather than read forever


def _prog_info(prog_id: int, want: ProgramRec | None = None, number: NumberOf | None = None) -> tuple[str, str, *_Maps]:
    """(name, tag, maps, data sections, map entries) of a loaded program; empty if it is gone.
    With `want` (the declared program), its maps (the program's own) and what of their contents
    the declaration manages: its data sections (.data/.bss/.rodata, whose kernel names hold a
    dot: what its globals hold) if it declares globals, every entry of a map it declares
    exclusive, the declared keys of another map it declares entries for (one lookup each: a
    busy or large map's other entries are not the declaration's business). `number` fills the
    devices' ifindexes and namespaces' cookies into keys that name one."""
    try:
        fd = info.open_prog(prog_id)
    except KernelError:
        return "", "", (), (), ()
    try:
        got = info.prog_info(fd)
        return (got.name, got.tag, *(_map_defs(got.map_ids, want, number) if want is not None else ((), (), ())))
    except OSError:
        return "", "", (), (), ()
    finally:
        os.close(fd)


def _declared_keys(declared: Sequence[MapEntriesRec], number: NumberOf | None) -> set[bytes] | None:
    """The keys to look up in a map declared (possibly twice: one program twice on a hook) as
    `declared`; None: every entry (exclusive)."""
    if any(m.exclusive for m in declared):
        return None

    def known(ref: ValueRef) -> int:
        return (number(ref) if number is not None else None) or 0

    return {fill_refs(bytes.fromhex(e.key), e.key_refs, known) for m in declared for e in m.entries}


def _entries(fd: int, d: MapDef, keys: set[bytes] | None) -> MapEntriesRec | None:
    if keys is None:
        keys_read = S.map_keys(fd, d.key_size, _KEYS_MAX)
        if keys_read is None:
            return None
        keys = set(keys_read)
    entries = []
    for key in keys:
        if len(key) != d.key_size:
            continue  # declared for another definition of the map: nothing of it is there
        value = S.map_lookup_raw(fd, key, d.value_size)
        if value is not None:  # absent (or deleted meanwhile)
            entries.append(EntryRec(key.hex(), value.hex()))
    return MapEntriesRec(d.name, tuple(sorted(entries, key=lambda e: e.key)))


def _map_defs(map_ids: Sequence[int], want: ProgramRec, number: NumberOf | None) -> _Maps:
    out, sections, entries = [], [], []
    declared: dict[str, list[MapEntriesRec]] = {}
    for m in want.map_entries:
        declared.setdefault(m.name, []).append(m)
    for map_id in map_ids:
        try:
            fd = info.open_map(map_id)
        except KernelError:
            continue  # freed meanwhile
        try:
            d = info.map_info(fd).definition()
            if "." not in d.name:
                out.append(d)
                if d.type in ENTRY_MAP_TYPES and d.name in declared:
                    found = _entries(fd, d, _declared_keys(declared[d.name], number))
                    if found is not None:
                        entries.append(found)
            elif d.max_entries == 1 and want.globals:  # a data section: libbpf's "OBJNAME.SECTION", one value
                value = S.map_lookup_raw(fd, bytes(4), d.value_size)
                if value is not None:
                    sections.append(SectionRec(d.name[d.name.index(".") :], value.hex()))
        finally:
            os.close(fd)
    return tuple(out), tuple(sections), tuple(entries)


def _uses(prog_id: int, shared: dict[int, str]) -> tuple[str, ...]:
    """The shared maps (map id → name) the program holds, sorted by name."""
    try:
        fd = info.open_prog(prog_id)
    except KernelError:
        return ()
    try:
        ids = info.prog_info(fd).map_ids
    except OSError:
        return ()
    finally:
        os.close(fd)
    return tuple(sorted(shared[i] for i in ids if i in shared))


def _stale(live: LiveState, key: bpffs.HookKey, pin: PinEntry) -> None:
    """A link pin whose link is not on its hook (detached outside nkplan, or its device gone)."""
    stack, ns, device, hook = key
    rel = posixpath.relpath(pin.path, pins.stack_dir(stack))
    what = "the pin of a link that is no longer on its hook (detached outside nkplan?)"
    live.orphan_pins.append(OrphanPin(stack, rel, what, (ns, device, hook), pin.program))


Mark = tuple[str, tuple[str, ...]] | None


def _marked(
    key: bpffs.HookKey, mark: Mark, programs: tuple[ProgramRec, ...], foreign: list[str], temps: Sequence[str]
) -> HookRec:
    """The hook's record with what its marker says (hookmarks.py) and the temporary pins an
    interrupted apply left (by name)."""
    stack, ns, device, hook = key
    applied, was = mark if mark is not None else (None, None)
    leftovers = tuple(posixpath.basename(p) for p in temps)
    return HookRec(ns, device, hook, programs, stack, applied, was, tuple(foreign), leftovers)


def fill_state(
    live: LiveState, found: Sequence[HookScan], reads: BpfReads | None = None, listing: bpffs.Listing | None = None
) -> None:
    """live.hooks and live.foreign_programs from the scanned hooks: owned links (matched to the
    owner stack's pins by link id) in kernel run order; every other link is foreign. A hook of an
    owned device where the owner has pins (or a marker) but none of them holds a link on the hook
    (all detached out of band) is reported with no programs, so the plan says what nkplan would
    re-attach. Pins whose link is not on their hook go to live.orphan_pins. Temporary pins of the
    owner's (a link pinned, killed before the rename) are the hook's `leftovers`; the link such a
    pin holds is neither owned nor foreign: the next apply removes it. `reads`: what to read of
    the maps of the declared programs (records.BpfReads); no contents of any other program's.
    `listing`: the read's bpffs.Listing (orphans.fill walks the same tree)."""
    reads = reads or {}
    listing = listing or bpffs.Listing()
    every = list(bpffs.hook_dirs(listing=listing))
    listed = {directory: listing.names(directory) for _key, directory in every}
    index = {key: entries for key, directory in every if (entries := bpffs.hook_pins(directory, listed[directory]))}
    temps = {key: left for key, directory in every if (left := bpffs.temp_pins(directory, listed[directory]))}
    seen: set[bpffs.HookKey] = set()
    for sc in found:
        pkey = (sc.owner, sc.namespace, sc.device, sc.hook)
        seen.add(pkey)
        left = temps.get(pkey, [])
        leftover_links = {i for i in map(_link_id, left) if i is not None}
        owned: dict[int, PinEntry] = {}
        on_hook = {e.link_id for e in sc.state.entries}
        for pe in index.get(pkey, ()):
            link_id = _link_id(pe.path)
            if link_id is not None and link_id in on_hook:
                owned[link_id] = pe
            else:
                _stale(live, pkey, pe)
        foreign: list[tuple[int, str]] = []
        programs: list[ProgramRec] = []
        shared = {m.map_id: m.name for (st, _), m in live.shared_maps.items() if st == sc.owner and m.map_id}
        for entry in sc.state.entries:
            pin = owned.get(entry.link_id) if entry.link_id is not None else None
            if pin is not None:
                want = reads.get((sc.namespace, sc.device, sc.hook), {}).get(pin.program)
                want = want or ProgramRec(pin.program, pin.digest)  # declares nothing: definitions only
                _name, tag, maps, sections, map_entries = _prog_info(entry.prog_id, want, live.number)
                programs.append(
                    ProgramRec(
                        pin.program,
                        pin.digest,
                        pin_maps=pin.maps,
                        prog_id=entry.prog_id,
                        tag=tag,
                        link_id=entry.link_id,
                        maps=maps,
                        shared=_uses(entry.prog_id, shared) if shared else (),
                        sections=sections,
                        map_entries=map_entries,
                    )
                )
            elif entry.link_id is None or entry.link_id not in leftover_links:
                name = _prog_info(entry.prog_id)[0]
                foreign.append((entry.prog_id, name))
                live.foreign_programs.append(
                    ForeignProgram(sc.namespace, sc.device, sc.hook, entry.prog_id, name, entry.link_id)
                )
        directory = pins.hook_dir(*pkey)
        mark = hookmarks.read(directory, listed.get(directory))
        if programs or pkey in index or mark is not None or left:
            now = [f"{name} (id {pid})" for pid, name in sorted(foreign)]
            live.hooks[(sc.namespace, sc.device, sc.hook)] = _marked(pkey, mark, tuple(programs), now, left)
    for key, directory in every:  # pins, a marker or leftovers, and nothing at all on the hook
        if key in seen:
            continue
        stack, ns, device, hook = key
        for pe in index.get(key, ()):
            _stale(live, key, pe)
        dev = live.devices.get((ns, device))
        if dev is not None and dev.owner == stack and dev.kind in PAIR_KINDS:
            mark = hookmarks.read(directory, listed[directory])
            stray = temps.get(key, [])
            if key in index or mark is not None or stray:
                live.hooks[(ns, device, hook)] = _marked(key, mark, (), [], stray)


# pins of deleted devices ----------------------------------------------------------------------------
def have_pins() -> bool:
    """Does any stack have pins at all (cheap: one scandir)?"""
    return bool(bpffs.stacks())


def remove_device_pins(ends: Iterable[tuple[str, str]]) -> None:
    """Remove the pin directories of deleted devices ((namespace, device) pairs), for every stack.
    Best effort: a pin left behind holds only a defunct link, which read() ignores and
    set_programs replaces."""
    stacks = bpffs.stacks()
    for namespace, device in ends:
        for stack in stacks:
            try:
                bpffs.remove_tree(pins.device_dir(stack, namespace, device))
            except (KernelError, ValueError):
                pass


def remove_namespace_pins(namespace: str) -> None:
    """Remove the pin directories of every device of a deleted namespace, for every stack (best effort)."""
    if namespace == HOST:
        return
    for stack in bpffs.stacks():
        try:
            bpffs.remove_tree(posixpath.join(pins.stack_dir(stack), pins.ns_component(namespace)))
        except (KernelError, ValueError):
            pass
