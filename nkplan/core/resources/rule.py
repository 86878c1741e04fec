"""Policy routing rules (`ip rule`), keyed by (namespace, family, priority).

Ownership: every rule nkplan makes carries FRA_PROTOCOL 237 (RTPROT_NKPLAN, as its routes). In a
named namespace that is enough: the namespace's owner owns its protocol-237 rules (as routes). In
the host namespace a rule has no place for a stack's name, so the owning stack keeps a marker
directory in its bpffs tree (kernel/bpf/rulemarks.py), whose name also carries the digest of the
rule as applied (drift). The kernel cannot change a rule in place (no NLM_F_REPLACE for rules in
net/core/fib_rules.c): any change is a replace; only ownership (the host marker) updates."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from nkplan.core.hostns import document_ns, record_ns
from nkplan.core.records import HOST, RTPROT_NKPLAN, RuleRec, digest, ns_label, plain
from nkplan.core.resources.base import Claims, Need, ResourceType
from nkplan.core.resources.namespace import in_namespace
from nkplan.spec.rules import RuleSpec, parse_fwmark, rule_action, rule_family

# record field → the spec's name for it, in words of reasons
SPEC_NAMES = {"src": "from", "dst": "to"}
# what a record keeps that is not part of the rule itself (never in the applied digest)
_BOOKKEEPING = ("owner", "applied", "stale", "protocol", "extra")


def rule_label(rec: RuleRec) -> str:
    """`100`, or `100 inet6` for an IPv6 rule: the part of an address after the namespace."""
    return f"{rec.priority}" + (" inet6" if rec.family == "inet6" else "")


def rule_address(rec: RuleRec) -> str:
    ns = f"{rec.namespace} " if rec.namespace != HOST else ""
    return f"rule[{ns}{rule_label(rec)}]"


def applied_digest(rec: RuleRec) -> str:
    """12 hex digits of the declared rule (bookkeeping left out): a host rule's marker carries it."""
    data = plain(rec)
    for k in _BOOKKEEPING:
        data.pop(k)
    return digest(data)


def rule_record(rule: RuleSpec, stack: str) -> RuleRec:
    mark, mask = parse_fwmark(rule.fwmark) if rule.fwmark is not None else (None, None)
    action = rule_action(rule)
    rec = RuleRec(
        namespace=record_ns(rule.namespace),
        family=rule_family(rule),
        priority=rule.priority,
        src=rule.from_,
        dst=rule.to,
        iif=rule.iif,
        oif=rule.oif,
        fwmark=mark,
        fwmask=mask,
        action=action,
        table=rule.table if action == "lookup" else None,
        owner=stack,
    )
    return dataclasses.replace(rec, applied=applied_digest(rec))


class RuleType(ResourceType[RuleRec]):
    name = "rule"
    record = RuleRec
    hidden = ("applied", "stale")

    def address(self, rec: RuleRec) -> str:
        return rule_address(rec)

    def label(self, rec: RuleRec) -> tuple[str, str | None]:
        return rule_label(rec), document_ns(rec.namespace)

    def claim(self, claims: Claims) -> None:
        ours: dict[tuple[str, str, int], RuleRec] = {}
        theirs: dict[tuple[str, str, int], RuleRec] = {}  # nkplan's protocol, another owner (or none)
        hand: dict[tuple[str, str, int], RuleRec] = {}  # made by others (another protocol)
        for r in claims.live.rules:
            if r.protocol == RTPROT_NKPLAN and claims.ours(r.owner):
                if r.key not in ours or ours[r.key].stale:
                    ours[r.key] = r
            elif r.protocol == RTPROT_NKPLAN:
                theirs.setdefault(r.key, r)
            else:
                hand.setdefault(r.key, r)
        for i, (key, (rec, path)) in enumerate(claims.want.rules.items()):
            have = ours.get(key)
            if have is not None and have.stale:
                have = None  # the marker of a rule that is gone: make it again
            if have is None and key in theirs:
                other = theirs[key]
                what = f"{rule_address(rec)} (a rule with nkplan's protocol {RTPROT_NKPLAN})"
                if claims.foreign(what, other.owner, (*path, "priority")):
                    continue
                have = other
            if have is None and key in hand:
                if claims.adopt:
                    have = hand[key]  # taken over: made again with nkplan's protocol
                else:
                    claims.warnings.append(
                        f"{rule_address(rec)}: a rule made outside nkplan (protocol {hand[key].protocol}) has the "
                        f"same priority in {ns_label(rec.namespace)}; both will be in the kernel, in an order "
                        "the kernel chooses (--adopt replaces it with this one)"
                    )
            claims.declared(rec, have, i)
        for key, have in ours.items():
            if key not in claims.want.rules:
                claims.undeclared(have, self.address(have))

    def replace_reasons(self, have: RuleRec, want: RuleRec, paths: tuple[str, ...]) -> Mapping[str, str]:
        out = {}
        for p in paths:
            if p == "owner":
                continue  # the host marker (or nothing, in a named namespace): updated
            if p == "protocol":
                out[p] = f"a rule made outside nkplan is made again with protocol {RTPROT_NKPLAN}"
            elif p == "extra":
                out[p] = f"it holds what nkplan does not manage ({', '.join(have.extra)})"
            else:
                out[p] = f"{SPEC_NAMES.get(p, p)} cannot change in place"
        return out

    def drift(self, want: RuleRec, have: RuleRec, ours: bool) -> RuleRec | None:
        """Host rules: the marker holds the digest of the rule as applied; the same digest as now
        declared but other live attributes = changed outside nkplan. Named namespaces have no
        such place (README: what drift can see)."""
        if not ours or have.stale or have.applied is None or have.applied != want.applied:
            return None
        return want if want != have else None

    def needs(self, rec: RuleRec) -> Iterable[Need]:
        for token in in_namespace(rec.namespace):
            yield Need(token)
        # the kernel matches devices by name (a rule waits for a missing one), so a rule does not
        # live on its devices; made after them only so that it works from the first packet
        for dev in (rec.iif, rec.oif):
            if dev is not None:
                yield Need(("device", rec.namespace, dev))

    def from_plain(self, data: dict[str, Any]) -> RuleRec:
        return RuleRec(**{**data, "extra": tuple(data.get("extra", ()))})
