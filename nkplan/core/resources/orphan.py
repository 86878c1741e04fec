"""Orphan pins: what lies in a stack's bpffs tree (/sys/fs/bpf/nkplan/STACK/) that no declared
program, shared map or rule marker owns: the pin of a link detached outside nkplan (of a program
no longer declared at that hook: a declared one is re-attached, hook.py), pins of a device deleted
outside nkplan, something pinned there by hand. Never declared: each shows in the drift section
(`pin[PATH]`) and apply removes it. A pin holds a BPF object alive, so removing it frees what
nothing else holds; it never detaches a link that is on a hook (those are not orphans)."""

from __future__ import annotations

from typing import Any

from nkplan.core.records import OrphanPin
from nkplan.core.resources.base import Claims, ResourceType
from nkplan.errors import PlanFileError


def inside_stack_tree(path: str) -> bool:
    """Is `path` a plain relative path (no root, no `.`/`..` part, no NUL) that stays inside a
    stack's bpffs tree? A saved plan is input: its pin paths must not name a file elsewhere."""
    parts = path.split("/")
    return bool(path) and "\0" not in path and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


class OrphanType(ResourceType[OrphanPin]):
    name = "pin"
    record = OrphanPin

    def address(self, rec: OrphanPin) -> str:
        return f"pin[{rec.path}]"

    def label(self, rec: OrphanPin) -> tuple[str, str | None]:
        return rec.path, None

    def claim(self, claims: Claims) -> None:
        declared = {(key, p.program) for key, (hook, _path) in claims.want.hooks.items() for p in hook.programs}
        for have in claims.live.orphan_pins:
            if not claims.ours(have.owner):
                continue
            if have.hook is not None and (have.hook, have.program) in declared:
                continue  # a declared program detached outside nkplan: its hook re-attaches it
            claims.undeclared(have, self.address(have))

    def orphan(self, have: OrphanPin) -> str:
        return f"{have.what}; no declared program, map or rule owns it"

    def from_plain(self, data: dict[str, Any]) -> OrphanPin:
        if not inside_stack_tree(str(data.get("path", ""))):
            raise PlanFileError(f"pin path {data.get('path')!r} is not inside the stack's bpffs tree")
        hook = data.get("hook")
        return OrphanPin(**{**data, "hook": tuple(hook) if hook is not None else None})
