"""Device pairs (netkit, veth), addressed by their primary end. What each kind allows and fixes
at creation is the kind table (core/linkkinds.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from nkplan.core.hostns import document_ns, qualified
from nkplan.core.linkkinds import kind_of, noun
from nkplan.core.records import EndRec, LinkRec, ns_label
from nkplan.core.resources.base import Claims, Need, ResourceType, Token
from nkplan.core.resources.namespace import in_namespace
from nkplan.core.sysctls import NO_SYSCTLS, canonical, restrict


def link_address(ns: str, name: str) -> str:
    return f"link[{qualified(ns, name)}]"


def _other_end(rec: LinkRec) -> tuple[str, str] | None:
    return (rec.peer.namespace, rec.peer.name) if rec.peer is not None else None


class LinkType(ResourceType[LinkRec]):
    name = "link"
    record = LinkRec
    hidden = ("applied",)
    # links.update_link compares with the device as it is (MTU, MAC, up) and tolerates addresses
    # already added or removed, so update(after, before) also takes back a half-done update
    undo_failed = frozenset({"update"})

    def address(self, rec: LinkRec) -> str:
        return link_address(rec.primary.namespace, rec.primary.name)

    def label(self, rec: LinkRec) -> tuple[str, str | None]:
        return rec.primary.name, document_ns(rec.primary.namespace)

    def claim(self, claims: Claims) -> None:
        live = claims.live
        for i, (key, (rec, path)) in enumerate(claims.want.links.items()):
            have = live.links.get(key)
            blocked = False
            for end in rec.ends:
                epath = path if end is rec.primary else (*path, "peer")
                dev = live.devices.get((end.namespace, end.name))
                if dev is None or claims.ours(dev.owner):
                    continue
                what = f"device {end.name!r} in {ns_label(end.namespace)}"
                if claims.foreign(what, dev.owner, (*epath, "name")):
                    blocked = True
                elif have is None or _other_end(have) != _other_end(rec):
                    claims.problems.append(
                        f"{claims.locate((*epath, 'name'))}: {what} exists but is not the "
                        f"{noun(rec)} declared here ({dev.kind or 'device'}); cannot adopt it"
                    )
                    blocked = True
            if blocked:
                continue
            if have is not None and not claims.ours(have.owner) and not claims.adopt:
                have = None  # half-owned pair: handled by the device checks above
            claims.declared(rec, have, i)
        for key, have in live.links.items():
            if claims.ours(have.owner) and key not in claims.want.links:
                claims.undeclared(have, self.address(have))

    def view(self, want: LinkRec, have: LinkRec) -> LinkRec:
        """Of an end's sysctls, only the declared keys are managed: the others are not compared."""
        if not any(end.sysctls for end in have.ends):
            return have  # the read was asked for none (or this pair's devices have none of them)
        ends = {}
        for side in ("primary", "peer"):
            h, w = getattr(have, side), getattr(want, side)
            if h is not None:
                ends[side] = dataclasses.replace(h, sysctls=restrict(h.sysctls, w.sysctls if w else NO_SYSCTLS))
        return dataclasses.replace(have, **ends)

    def fill_unspecified(self, want: LinkRec, have: LinkRec) -> LinkRec:
        """mac and head/tailroom left out of the spec mean "whatever the kernel chose"."""
        ends = {}
        for side in ("primary", "peer"):
            w, h = getattr(want, side), getattr(have, side)
            if w is not None and h is not None and w.mac is None:
                ends[side] = dataclasses.replace(w, mac=h.mac)
        return dataclasses.replace(
            want,
            headroom=have.headroom if want.headroom is None else want.headroom,
            tailroom=have.tailroom if want.tailroom is None else want.tailroom,
            **ends,
        )

    def replace_reasons(self, have: LinkRec, want: LinkRec, paths: tuple[str, ...]) -> Mapping[str, str]:
        # a kind change is judged by both kinds' tables (the old one's fixed fields and the new one's)
        fixed = {**kind_of(have.kind).fixed, **kind_of(want.kind).fixed}
        if "pairing" in paths:  # pair <-> single: the peer's settings differ as a consequence, not a cause
            return {"pairing": fixed["pairing"]}
        return {p: fixed[p] for p in paths if p in fixed}

    def drift(self, want: LinkRec, have: LinkRec, ours: bool) -> LinkRec | None:
        """Owned pairs carry the digest of their declaration as last applied (the primary's
        ownership mark): same digest as now declared but other live attributes = drift."""
        if not ours or have.applied is None or have.applied != want.applied:
            return None
        return want if want != have else None

    def provides(self, rec: LinkRec) -> Iterable[Token]:
        for end in rec.ends:
            yield ("device", end.namespace, end.name)
            yield ("devices-in", end.namespace)
            for cidr in end.addresses:  # what a route's `src` needs (core/resources/route.py)
                yield ("address", end.namespace, cidr.split("/")[0])

    def needs(self, rec: LinkRec) -> Iterable[Need]:
        for end in rec.ends:
            for token in in_namespace(end.namespace):
                yield Need(token)

    def batch_key(self, rec: LinkRec) -> Hashable | None:
        return rec.primary.namespace  # one group delete per namespace (kernel/netlink/batch.py)

    def from_plain(self, data: dict[str, Any]) -> LinkRec:
        ends: dict[str, EndRec | None] = {}
        for k in ("primary", "peer"):
            end = data[k]  # None: the peer of a single device
            ends[k] = None if end is None else EndRec(
                **{**end, "addresses": tuple(end["addresses"]), "sysctls": canonical(end.get("sysctls"))}
            )
        kind = kind_of(data["kind"])
        # documents written before a field was read hold the only value it had then
        missing = {f: kind.defaults[f] for f in (*kind.read_only, *kind.late) if f not in data}
        return LinkRec(**{**data, **ends, **missing})


def on_device(ns: str, device: str | None) -> Need:
    """The dependency of what lives on a device (any device of the namespace if None)."""
    return Need(("device", ns, device) if device is not None else ("devices-in", ns), lives_on=True)
