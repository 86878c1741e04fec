"""Shared BPF maps: maps a stack declares by name (`maps:`), made by nkplan and pinned in the
stack's bpffs tree (/sys/fs/bpf/nkplan/STACK/:maps/NAME). A program whose object has a map of
that name and definition uses the pinned map instead of one of its own (libbpf's reuse of a
pinned map), so several programs, on any hooks of the stack, count into one map.

A map outlives its users: deleting the last program that uses it keeps it (its contents too);
only removing it from the spec deletes it (the pin: programs still holding it keep their
reference until they go). A definition cannot change in place (BPF_MAP_CREATE fixes it), so a
changed one replaces the map, and the hooks of the programs using it are replaced with it (a
program keeps the map it was loaded with: only a new instance can use the new map)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nkplan.core.records import SharedMapRec
from nkplan.core.resources.base import Claims, ResourceType, Token


def map_token(name: str) -> Token:
    """What a shared map provides and a hook whose programs have a map of that name needs."""
    return ("map", name)


class SharedMapType(ResourceType[SharedMapRec]):
    name = "map"
    record = SharedMapRec
    hidden = ("map_id",)  # kernel id: for `show`
    delete_note = "Deleting a shared map removes its pin; programs still using it keep it until they go."

    def address(self, rec: SharedMapRec) -> str:
        return f"map[{rec.name}]"

    def label(self, rec: SharedMapRec) -> tuple[str, str | None]:
        return rec.name, None

    def claim(self, claims: Claims) -> None:
        live = claims.live.shared_maps
        for i, (name, (rec, _path)) in enumerate(claims.want.shared_maps.items()):
            claims.declared(rec, live.get((claims.stack, name)), i)
        for (stack, name), have in live.items():
            if claims.ours(stack) and name not in claims.want.shared_maps:
                claims.undeclared(have, self.address(have))

    def replace_reasons(self, have: SharedMapRec, want: SharedMapRec, paths: tuple[str, ...]) -> Mapping[str, str]:
        return {
            p: f"a map's {p} cannot change in place (the kernel fixes it at creation)" for p in paths if p != "owner"
        }

    def provides(self, rec: SharedMapRec) -> Iterable[Token]:
        yield map_token(rec.name)

    def from_plain(self, data: dict[str, Any]) -> SharedMapRec:
        return SharedMapRec(**data)
