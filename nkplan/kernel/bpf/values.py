"""A program instance's globals at apply time: the devices its values name are looked up now
(a device the same apply created or replaced has its ifindex only now; namespaces' cookies
likewise), the instance's digest is
computed from what will really be loaded (spec.globals.instance_digest, so its pin names it and
the next plan agrees), and the data sections' patches are handed to libbpf before load. Declared
map entries are written into the instance's maps: after load and before attach for a new
instance, in place (no reload) for a running one."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from nkplan.core.records import NETNS_COOKIE, ProgramRec, ValueRef
from nkplan.errors import KernelError
from nkplan.kernel.bpf import hooks, info
from nkplan.kernel.bpf import syscall as S
from nkplan.kernel.netlink.netns import netns_cookie
from nkplan.spec.bpfvalues import fill_refs
from nkplan.spec.globals import filled, instance_digest
from nkplan.spec.mapentries import BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH

# the map types whose entries go in one MAP_UPDATE_BATCH: hash, array, LRU hash (an LPM trie has
# no batch operations)
BATCH_MAP_TYPES = frozenset({BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_LRU_HASH})


def _number(ref: ValueRef) -> int:
    """The number a reference takes now: a device's ifindex or a namespace's cookie."""
    try:
        if ref.kind == NETNS_COOKIE:
            return netns_cookie(ref.namespace)
        return hooks.ifindex(ref.namespace, ref.device)
    except KernelError as exc:
        why = f"a program's value takes {ref.words}, which cannot be found: {exc}"
        raise KernelError(why, exc.errno) from None


def settle(rec: ProgramRec) -> ProgramRec:
    """The record with its digest computed from the numbers its references take now (only
    records with references change)."""
    if not rec.object_digest or not any(g.refs for g in rec.globals):
        return rec
    digest = instance_digest(rec.object_digest, rec.globals, _number)
    return dataclasses.replace(rec, digest=digest)


def patches(rec: ProgramRec) -> dict[str, list[tuple[int, bytes]]]:
    """{data section: [(offset, bytes)]} of the instance's globals, references filled in."""
    out: dict[str, list[tuple[int, bytes]]] = {}
    for g in rec.globals:
        data = filled(g, _number)
        assert data is not None  # _number answers or raises
        out.setdefault(g.section, []).append((g.offset, data))
    return out


def write_entries(rec: ProgramRec, map_fds: Mapping[str, int], what: str) -> None:
    """Write the declared entries into the program's maps ({kernel map name: fd}), references
    filled with the numbers of now; of an exclusive map, delete every entry not declared, and
    of another the keys the record lists as absent (a rollback's record: the live hook's view).
    Entries go in one MAP_UPDATE_BATCH where the map has it (hash, LRU hash, array), else one
    MAP_UPDATE_ELEM each (LPM tries, the allow lists' kind, have no batch operations)."""
    for m in rec.map_entries:
        fd = map_fds.get(m.name)
        if fd is None:
            raise KernelError(f"{what}: the program has no map {m.name}")
        try:
            # the kernel copies key_size and value_size bytes from the buffers whatever their
            # length: a record that does not match the map (a saved plan written by hand, an
            # object changed since) is refused before anything is written
            mi = info.map_info(fd)
            pairs: list[tuple[bytes, bytes]] = []
            for e in m.entries:
                key = fill_refs(bytes.fromhex(e.key), e.key_refs, _number)
                value = fill_refs(bytes.fromhex(e.value), e.value_refs, _number)
                if len(key) != mi.key_size or len(value) != mi.value_size:
                    raise KernelError(
                        f"{what}: map {m.name} has {mi.key_size}-byte keys and {mi.value_size}-byte values; "
                        f"entry {e.key_text or '0x' + e.key} has a {len(key)}-byte key and a "
                        f"{len(value)}-byte value (the plan does not match the object)"
                    )
                pairs.append((key, value))
            if any(len(k) != 2 * mi.key_size for k in m.absent):
                raise KernelError(f"{what}: map {m.name} has {mi.key_size}-byte keys; the plan's keys to delete do not")
            keys = {k for k, _v in pairs}
            batch = mi.type in BATCH_MAP_TYPES and len(pairs) > 1
            if not batch or not S.map_update_batch(fd, [k for k, _v in pairs], [v for _k, v in pairs]):
                for key, value in pairs:  # one at a time: a single entry, an LPM trie, an old kernel
                    S.map_update_raw(fd, key, value)
            for hexkey in m.absent:  # a rollback: keys the failed apply added go again
                if bytes.fromhex(hexkey) not in keys:
                    S.map_delete_raw(fd, bytes.fromhex(hexkey))
            if m.exclusive:
                for key in S.map_keys(fd, mi.key_size, 1 << 20) or ():
                    if key not in keys:
                        S.map_delete_raw(fd, key)
        except S.BatchError as exc:
            e = m.entries[exc.written]
            raise KernelError(
                f"{what}: writing entry {e.key_text or '0x' + e.key} of map {m.name} (after {exc.written} of "
                f"{len(m.entries)}): {exc.strerror}",
                exc.errno,
            ) from None
        except OSError as exc:
            raise KernelError(f"{what}: writing the entries of map {m.name}: {exc.strerror}", exc.errno) from None


def write_globals(rec: ProgramRec, map_fds: Mapping[str, int], what: str) -> None:
    """Write the declared globals of writable sections (.data, .bss) into a running instance's
    section maps ({kernel map name: fd}; libbpf names them OBJ.SECTION): puts back values changed
    outside nkplan, without a reload. .rodata is frozen and never needs it."""
    by_section = {name[name.index(".") :]: fd for name, fd in map_fds.items() if "." in name}
    for section, parts in patches(rec).items():
        if section.startswith(".rodata"):
            continue
        fd = by_section.get(section)
        if fd is None:
            raise KernelError(f"{what}: the running program has no {section} map")
        try:
            size = info.map_info(fd).value_size
            image = bytearray(S.map_lookup_raw(fd, bytes(4), size) or bytes(size))
            for offset, data in parts:
                image[offset : offset + len(data)] = data
            S.map_update_raw(fd, bytes(4), bytes(image))
        except OSError as exc:
            raise KernelError(f"{what}: writing its {section} globals: {exc.strerror}", exc.errno) from None
