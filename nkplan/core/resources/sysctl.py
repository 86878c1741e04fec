"""Namespace-level sysctls (any net.* key) of a named namespace or of the host, one record per
namespace. Only the declared keys are managed: others are not compared, and a key no longer
declared keeps its value. Nothing is ever deleted: the kernel keeps no value from before, so
`destroy` (or dropping a key) leaves the values as they are; a named namespace's values go with
the namespace."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from nkplan.core.hostns import document_ns
from nkplan.core.records import HOST, SysctlsRec, ns_label
from nkplan.core.resources.base import Claims, Need, ResourceType
from nkplan.core.resources.namespace import in_namespace
from nkplan.core.sysctls import canonical, net_key_device, restrict


class SysctlType(ResourceType[SysctlsRec]):
    name = "sysctls"
    record = SysctlsRec
    hidden = ("applied",)

    def address(self, rec: SysctlsRec) -> str:
        return f"sysctls[{ns_label(rec.namespace)}]"

    def label(self, rec: SysctlsRec) -> tuple[str, str | None]:
        return ns_label(rec.namespace), document_ns(rec.namespace)

    def claim(self, claims: Claims) -> None:
        # the namespace's own claim reports a foreign namespace; the host's values are shared by
        # nature (nkplan sets what a stack declares there and nothing else)
        for i, (ns, (rec, _path)) in enumerate(claims.want.sysctls.items()):
            claims.declared(rec, claims.live.sysctls.get(ns), i)

    def view(self, want: SysctlsRec, have: SysctlsRec) -> SysctlsRec:
        return dataclasses.replace(have, values=restrict(have.values, want.values))

    def fill_unspecified(self, want: SysctlsRec, have: SysctlsRec) -> SysctlsRec:
        # the host has no ownership mark: the live record's owner is no one's
        return dataclasses.replace(want, owner=have.owner) if want.namespace == HOST else want

    def drift(self, want: SysctlsRec, have: SysctlsRec, ours: bool) -> SysctlsRec | None:
        if want.namespace == HOST or have.applied is None or have.applied != want.applied:
            return None
        return want if want.values != have.values else None

    def needs(self, rec: SysctlsRec) -> Iterable[Need]:
        for token in in_namespace(rec.namespace):
            yield Need(token)
        for key, _ in rec.values:
            dev = net_key_device(key)
            if dev is not None:  # net.ipv4.conf.DEV.KEY: after the device, again when it is replaced
                yield Need(("device", rec.namespace, dev), lives_on=True)

    def from_plain(self, data: dict[str, Any]) -> SysctlsRec:
        return SysctlsRec(**{**data, "values": canonical(data.get("values"))})
