"""Routes nkplan installed (protocol RTPROT_NKPLAN), in any table, keyed as the kernel keys them:
(namespace, table, to, metric). Everything else (type, gateway, device, nexthops, scope, source,
onlink, mtu) changes in place (RTM_NEWROUTE with NLM_F_REPLACE)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from nkplan.core.hostns import document_ns
from nkplan.core.records import HOST, RT_TABLE_MAIN, NexthopRec, RouteRec
from nkplan.core.resources.base import Claims, Need, ResourceType, Token
from nkplan.core.resources.link import on_device
from nkplan.core.resources.namespace import in_namespace
from nkplan.spec.checks import effective_metric
from nkplan.spec.rttables import table_name


class RouteType(ResourceType[RouteRec]):
    name = "route"
    record = RouteRec

    def address(self, rec: RouteRec) -> str:
        to = {"0.0.0.0/0": "default"}.get(rec.to, rec.to)
        default_metric = effective_metric(None, rec.family == 6)
        table = f" table {table_name(rec.table)}" if rec.table != RT_TABLE_MAIN else ""
        metric = f" metric {rec.metric}" if rec.metric != default_metric else ""
        ns = f"{rec.namespace} " if rec.namespace != HOST else ""
        return f"route[{ns}{to}{table}{metric}]"

    def label(self, rec: RouteRec) -> tuple[str, str | None]:
        return rec.to, document_ns(rec.namespace)

    def claim(self, claims: Claims) -> None:
        owned_ns = {n for n, r in claims.live.namespaces.items() if claims.ours(r.owner)}
        owned = (r for r in claims.live.routes if claims.ours(r.owner) or (r.namespace and r.namespace in owned_ns))
        live = {r.key: r for r in owned}
        for i, (key, (rec, _path)) in enumerate(claims.want.routes.items()):
            claims.declared(rec, live.get(key), i)
        for key, have in live.items():
            if key not in claims.want.routes:
                claims.undeclared(have, self.address(have))

    def fill_unspecified(self, want: RouteRec, have: RouteRec) -> RouteRec:
        """No `dev` declared (on the route or a nexthop): the kernel resolves it from `via`."""
        if want.dev is None and want.via is not None:
            want = dataclasses.replace(want, dev=have.dev)
        if any(nh.dev is None for nh in want.nexthops) and len(want.nexthops) == len(have.nexthops):
            nexthops = tuple(
                dataclasses.replace(w, dev=h.dev) if w.dev is None else w
                for w, h in zip(want.nexthops, have.nexthops, strict=True)
            )
            want = dataclasses.replace(want, nexthops=nexthops)
        return want

    def needs(self, rec: RouteRec) -> Iterable[Need]:
        for token in in_namespace(rec.namespace):
            yield Need(token)
        devices = rec.devices()
        for dev in devices:
            yield on_device(rec.namespace, dev)
        if rec.src is not None:  # the kernel refuses a source no device has, and drops the route with it
            yield Need(("address", rec.namespace, rec.src), lives_on=True)
        if not devices and (rec.via is not None or rec.nexthops):  # through whichever device reaches it
            yield on_device(rec.namespace, None)

    def homes(self, rec: RouteRec) -> tuple[Token, ...]:
        """A route dies with its devices (IPv6 multipath: once all of them are gone), and update
        is RTM_NEWROUTE with NLM_F_CREATE | NLM_F_REPLACE. A route whose device the kernel
        chooses (from `via`) has no home that can be named."""
        named = all(nh.dev for nh in rec.nexthops) if rec.nexthops else rec.dev is not None
        return tuple(("device", rec.namespace, dev) for dev in rec.devices()) if named else ()

    def from_plain(self, data: dict[str, Any]) -> RouteRec:
        hops = tuple(NexthopRec(**nh) for nh in data.get("nexthops") or ())
        return RouteRec(**{**data, "nexthops": hops})
