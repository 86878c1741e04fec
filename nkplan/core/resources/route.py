"""Main-table routes nkplan installed (protocol RTPROT_NKPLAN), keyed by (namespace, to, metric)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from nkplan.core.hostns import document_ns
from nkplan.core.records import HOST, RouteRec
from nkplan.core.resources.base import Claims, Need, ResourceType
from nkplan.core.resources.link import on_device
from nkplan.core.resources.namespace import in_namespace
from nkplan.spec.checks import effective_metric


class RouteType(ResourceType[RouteRec]):
    name = "route"
    record = RouteRec

    def address(self, rec: RouteRec) -> str:
        to = {"0.0.0.0/0": "default"}.get(rec.to, rec.to)
        default_metric = effective_metric(None, rec.family == 6)
        metric = f" metric {rec.metric}" if rec.metric != default_metric else ""
        ns = f"{rec.namespace} " if rec.namespace != HOST else ""
        return f"route[{ns}{to}{metric}]"

    def label(self, rec: RouteRec) -> tuple[str, str | None]:
        return rec.to, document_ns(rec.namespace)

    def claim(self, claims: Claims) -> None:
        owned_ns = {n for n, r in claims.live.namespaces.items() if claims.ours(r.owner)}
        live = {
            (r.namespace, r.to, r.metric): r
            for r in claims.live.routes
            if claims.ours(r.owner) or (r.namespace and r.namespace in owned_ns)
        }
        for i, (key, (rec, _path)) in enumerate(claims.want.routes.items()):
            claims.declared(rec, live.get(key), i)
        for key, have in live.items():
            if key not in claims.want.routes:
                claims.undeclared(have, self.address(have))

    def fill_unspecified(self, want: RouteRec, have: RouteRec) -> RouteRec:
        """No `dev` declared: the kernel resolves it from `via`."""
        return dataclasses.replace(want, dev=have.dev) if want.dev is None else want

    def needs(self, rec: RouteRec) -> Iterable[Need]:
        for token in in_namespace(rec.namespace):
            yield Need(token)
        yield on_device(rec.namespace, rec.dev)
