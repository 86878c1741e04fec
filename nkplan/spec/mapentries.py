"""`maps:` of a program entry: declared entries of the program's own maps, keys and values
checked against the map's BTF key and value types (spec.bpfvalues) and encoded as records. Pure.

Which maps: BTF-defined maps (SEC(".maps") with __type(key, …) and __type(value, …)) of the
kinds whose entries one can list and delete: hash, LRU hash, LPM trie, and arrays (an array always
has every index: declared entries are written, `exclusive` cannot apply)."""

from __future__ import annotations

from collections.abc import Mapping

from nkplan.core.records import EntryRec, MapDef, MapEntriesRec
from nkplan.spec import btf as B
from nkplan.spec.bpfvalues import Resolver, ValueProblem, encode, hint, show
from nkplan.spec.models import MapSpec

BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_LPM_TRIE = 1, 2, 9, 11
ENTRY_MAP_TYPES = {
    BPF_MAP_TYPE_HASH: "hash",
    BPF_MAP_TYPE_ARRAY: "array",
    BPF_MAP_TYPE_LRU_HASH: "LRU hash",
    BPF_MAP_TYPE_LPM_TRIE: "LPM trie",
}


# Validation and the desired records both encode a spec's entries; a bench spec has 16,000. Keyed
# by the MapSpec object (kept in the value, so an id is never confused with a later object's), the
# object's BTF and the map definitions. References are resolved by device name alone (the same
# spec's devices), so the result does not depend on which resolver asked.
_CACHE: dict[int, tuple[MapSpec, B.ObjectBtf, MapDef, MapEntriesRec]] = {}
_CACHE_MAX = 1 << 14


def program_map_entries(
    tp: B.ObjectBtf, maps: Mapping[str, MapSpec], defs: tuple[MapDef, ...], resolve: Resolver
) -> tuple[MapEntriesRec, ...]:
    """The declared entries, per map (sorted by name), entries sorted by key. ValueProblem:
    `where` starts with the map's name."""
    by_name = {d.name: d for d in defs}
    out = []
    for name, spec in maps.items():
        types = tp.maps.get(name)
        d = by_name.get(name[:15])
        if types is None or d is None:
            have = ", ".join(sorted(tp.maps)) or "none"
            raise ValueProblem((name,), f"the object has no map {name!r} (it has: {have})")
        if d.type not in ENTRY_MAP_TYPES:
            raise ValueProblem(
                (name,),
                f"map {name!r} is of type {d.type}; entries can be declared for hash, LRU hash, "
                "LPM trie and array maps",
            )
        if not types.key or not types.value:
            raise ValueProblem((name,), f"map {name!r} has no BTF key/value types: declare it with __type(key, …)")
        if spec.exclusive and d.type == BPF_MAP_TYPE_ARRAY:
            raise ValueProblem((name, "exclusive"), f"map {name!r} is an array: every index exists, none can go")
        if len(spec.entries) > d.max_entries:
            raise ValueProblem((name, "entries"), f"{len(spec.entries)} entries; map {name!r} holds {d.max_entries}")
        hit = _CACHE.get(id(spec))
        if hit is not None and hit[0] is spec and hit[1] is tp and hit[2] == d:
            out.append(hit[3])
            continue
        entries: dict[str, EntryRec] = {}
        for i, e in enumerate(spec.entries):
            where = (name, "entries", i)
            key = encode(tp, types.key, e.key, resolve, (*where, "key"))
            value = encode(tp, types.value, e.value, resolve, (*where, "value"))
            if len(key.data) != d.key_size or len(value.data) != d.value_size:
                raise ValueProblem(where, f"map {name!r}: the BTF types do not match its key/value sizes")
            if key.data.hex() in entries and not key.refs:
                raise ValueProblem((*where, "key"), f"key {show(e.key)} is declared twice in map {name!r}")
            entries[key.data.hex() + (f"#{i}" if key.refs else "")] = EntryRec(
                key.data.hex(), value.data.hex(), show(e.key), show(e.value), key.refs, value.refs,
                hint(tp, types.value),
            )  # fmt: skip
        ordered = tuple(entries[k] for k in sorted(entries))
        rec = MapEntriesRec(d.name, ordered, spec.exclusive)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[id(spec)] = (spec, tp, d, rec)
        out.append(rec)
    return tuple(sorted(out, key=lambda m: m.name))
