"""Named network namespaces (`ip netns`), owned through the ifalias of their `lo`."""

from __future__ import annotations

from collections.abc import Iterable

from nkplan.core.records import NamespaceRec
from nkplan.core.resources.base import Claims, ResourceType, Token


class NamespaceType(ResourceType[NamespaceRec]):
    name = "namespace"
    record = NamespaceRec
    delete_note = "Deleting a namespace also removes every device and route inside it."

    def address(self, rec: NamespaceRec) -> str:
        return f"namespace[{rec.name}]"

    def label(self, rec: NamespaceRec) -> tuple[str, str | None]:
        return rec.name, None

    def undeclared_key(self, rec: NamespaceRec) -> str:
        return rec.name

    def claim(self, claims: Claims) -> None:
        declared = claims.want.namespaces
        for i, (name, (rec, path)) in enumerate(declared.items()):
            have = claims.live.namespaces.get(name)
            if have is not None and not claims.ours(have.owner):
                if claims.foreign(f"namespace {name!r}", have.owner, (*path, "name")):
                    continue
            claims.declared(rec, have, i)
        for name, have in claims.live.namespaces.items():
            if claims.ours(have.owner) and name not in declared:
                claims.undeclared(have, self.undeclared_key(have))

    def provides(self, rec: NamespaceRec) -> Iterable[Token]:
        yield ("namespace", rec.name)


def in_namespace(ns: str) -> list[Token]:
    """The dependency of anything that lives in namespace `ns` (none for the host)."""
    return [("namespace", ns)] if ns else []
