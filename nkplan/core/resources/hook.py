"""BPF programs at one hook of a device (netkit primary/peer through the primary, tcx
ingress/egress on any end), nkplan's own, in run order."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable
from typing import Any

from nkplan.core.hostns import document_ns, qualified
from nkplan.core.records import NETNS_COOKIE, HookRec, ProgramRec, digest
from nkplan.core.resources import programvalues as values
from nkplan.core.resources.base import Claims, Need, ResourceType
from nkplan.core.resources.link import on_device
from nkplan.core.resources.namespace import in_namespace
from nkplan.core.resources.sharedmap import map_token


def hook_address(ns: str, device: str, hook: str) -> str:
    return f"hook[{qualified(ns, device)} {hook}]"


class HookType(ResourceType[HookRec]):
    name = "hook"
    record = HookRec
    undo_failed = frozenset({"create", "update", "delete"})  # kernel/bpf/hookwriter.py reads the hook afresh
    hidden = (
        "programs.prog_id", "programs.tag", "programs.link_id", "programs.maps",  # kernel ids: for `show`
        "applied", "foreign_now",  # bookkeeping
        "programs.object_digest", "programs.sections",  # globals' bookkeeping: the plan says them in words
        "programs.globals.section", "programs.globals.offset", "programs.globals.data",
        "programs.globals.hint", "programs.globals.refs",
        "programs.map_entries.entries.key_refs", "programs.map_entries.entries.value_refs",
        "programs.map_entries.entries.hint", "programs.drifted", "programs.entries_key",
    )  # fmt: skip

    def address(self, rec: HookRec) -> str:
        return hook_address(rec.namespace, rec.device, rec.hook)

    def label(self, rec: HookRec) -> tuple[str, str | None]:
        return f"{rec.device} {rec.hook}", document_ns(rec.namespace)

    def claim(self, claims: Claims) -> None:
        live = claims.live
        for i, (key, (rec, _path)) in enumerate(claims.want.hooks.items()):
            have = live.hooks.get(key)
            rec = values.with_live_devices(rec, live)
            claims.declared(rec, have if have is not None and claims.ours(have.owner) else None, i)
        for key, have in live.hooks.items():
            if claims.ours(have.owner) and key not in claims.want.hooks and (have.programs or have.leftovers):
                claims.undeclared(have, self.address(have))
        owned = {(d.namespace, d.name) for d in live.devices.values() if claims.ours(d.owner)}
        for f in live.foreign_programs:
            if (f.namespace, f.device) in owned:
                claims.warnings.append(
                    f"{hook_address(f.namespace, f.device, f.hook)}: program {f.name!r} (id {f.prog_id}) "
                    "was attached by someone else; nkplan leaves it alone"
                )

    def view(self, want: HookRec, have: HookRec) -> HookRec:
        return values.view(want, have)

    def describe_update(self, have: HookRec, want: HookRec) -> str:
        return describe_programs(have, want)

    def fill_unspecified(self, want: HookRec, have: HookRec) -> HookRec:
        """The programs others attached are not declared: those at the hook now are acknowledged
        (a hook without a marker, applied by an older nkplan, keeps none)."""
        if have.foreign is None or want.foreign == have.foreign_now:
            return want
        return dataclasses.replace(want, foreign=have.foreign_now)

    def drift(self, want: HookRec, have: HookRec, ours: bool) -> HookRec | None:
        """As last applied (the hook's marker): the declared programs, if the spec did not change
        them since (else the live ones), with the foreign programs there then. Drift: a managed
        program detached or swapped outside nkplan, one attached by someone else since."""
        if not ours or have.applied is None or have.foreign is None:
            return None
        applied = want if have.applied == want.applied else have
        applied = dataclasses.replace(applied, foreign=have.foreign, applied=have.applied)
        now = self.drift_now(have)
        return applied if (applied.programs, applied.foreign) != (now.programs, now.foreign) else None

    def drift_now(self, have: HookRec) -> HookRec:
        return dataclasses.replace(have, foreign=have.foreign_now) if have.foreign is not None else have

    def describe_drift(self, applied: HookRec, now: HookRec) -> str | None:
        """Map entries and .data/.bss globals written outside nkplan: the program list reads the
        same on both sides, so say which entries and values differ (now → as applied)."""
        was = {p.program: p for p in applied.programs}
        words = [
            f"globals of {p.program}: {values.globals_drift(p, was[p.program])}"
            for p in now.programs
            if p.program in was and p.drifted and p.digest == was[p.program].digest
        ]
        words += [w for p in now.programs if p.program in was for w in values.entries_changed(p, was[p.program])]
        return "; ".join(words) + " (now → as applied)" if words else None

    def batch_key(self, rec: HookRec) -> Hashable | None:
        """Consecutive hook deletes (a destroy's) go to the kernel together, which detaches every
        program before it removes any pin (kernel/bpf/hookwriter.py remove_programs)."""
        return "hooks"

    def needs(self, rec: HookRec) -> Iterable[Need]:
        for token in in_namespace(rec.namespace):
            yield Need(token)
        yield on_device(rec.namespace, rec.device)
        # a shared map of a name one of the programs has: made first, gone last, and when it is
        # replaced (a new definition) the programs are loaded again to use the new one
        names = {m.name for p in rec.programs for m in p.maps} | {n for p in rec.programs for n in p.shared}
        for name in sorted(names):
            yield Need(map_token(name), lives_on=True)
        for ref in values.references(rec):  # after the devices and namespaces its values name
            if ref.kind == NETNS_COOKIE:
                for token in in_namespace(ref.namespace):
                    yield Need(token, refers=f"netns cookie of {ref.namespace} changes: namespace replaced")
            else:
                why = f"ifindex of {qualified(ref.namespace, ref.device)} changes: device replaced"
                yield Need(("device", ref.namespace, ref.device), refers=why)

    def attrs(self, rec: HookRec) -> dict[str, Any]:
        data = super().attrs(rec)
        for p in data["programs"]:  # plans of stacks without shared maps read as before
            if not p.get("shared"):
                p.pop("shared", None)
        if not data.get("foreign"):  # ... and of hooks without foreign programs
            data.pop("foreign", None)
        if not rec.leftovers:  # the usual case: not worth a line in every plan
            data.pop("leftovers", None)
        return data

    def from_plain(self, data: dict[str, Any]) -> HookRec:
        progs = tuple(values.program_from_plain(p) for p in data["programs"])
        foreign = data.get("foreign")
        return HookRec(
            **{
                **data,
                "programs": progs,
                "foreign": tuple(foreign) if foreign is not None else None,
                "foreign_now": tuple(data.get("foreign_now", ())),
                "leftovers": tuple(data.get("leftovers", ())),
            }
        )


def programs_digest(programs: Iterable[ProgramRec]) -> str:
    """The digest a hook's marker holds: which programs, in which order, as which instance."""
    return digest([[p.program, p.digest[:16], p.pin_maps, list(p.shared)] for p in programs])


def _what_maps_do(old: ProgramRec, new: ProgramRec) -> str:
    """Which of the new object's maps the new instance takes over from the running one (same
    name and definition: the applier's rule, libbpf's for pinned maps) and which start empty.
    Said only when both sides' maps are known (read from a kernel, not from a snapshot)."""
    if not old.maps or not new.maps:
        return "object changed"
    names = [m.name for m in old.maps]
    running = {m.name: m for m in old.maps if names.count(m.name) == 1}
    kept = [m.name for m in new.maps if running.get(m.name) == m]
    fresh = [m.name for m in new.maps if running.get(m.name) != m]
    words = ["object changed"]
    if kept:
        words.append("maps kept: " + ", ".join(kept))
    if fresh:
        words.append("maps starting empty: " + ", ".join(fresh))
    return "; ".join(words)


def describe_programs(have: HookRec, want: HookRec) -> str:
    """What an update of a hook does, in words: attach, detach, update in place, reorder."""
    old = {p.program: p for p in have.programs}
    new = {p.program: p for p in want.programs}
    words = [f"attach {n}" for n in new if n not in old]
    words += [f"detach {n}" for n in old if n not in new]
    words += [
        f"update {n} in place ({values.what_changed(old[n], new[n], _what_maps_do(old[n], new[n]))})"
        for n in new
        if n in old and new[n].digest != old[n].digest
    ]
    words += [f"pin maps of {n}" for n in new if n in old and new[n].pin_maps != old[n].pin_maps]
    for n in new:
        if n in old and new[n].digest == old[n].digest and new[n].shared != old[n].shared:
            uses = ", ".join(new[n].shared) or "none"
            words.append(f"load {n} again to use the shared maps: {uses}")
    words += [
        f"set globals of {n} changed outside nkplan ({values.globals_drift(old[n], new[n])})"
        for n in new
        if n in old and old[n].drifted and new[n].digest == old[n].digest
    ]
    words += [w for n in new if n in old for w in values.entries_changed(old[n], new[n])]
    kept_old = [n for n in old if n in new]
    kept_new = [n for n in new if n in old]
    if kept_old != kept_new:
        words.append("reorder: " + ", ".join(kept_new))
    seen = set(have.foreign or ())
    added = [f for f in want.foreign or () if f not in seen]
    if added:
        words.append(f"acknowledge {', '.join(added)}, attached outside nkplan (left attached)")
    gone = [f for f in have.foreign or () if f not in set(want.foreign or ())]
    if gone and want.foreign is not None:
        words.append(f"forget {', '.join(gone)} (no longer attached)")
    left = [n for n in have.leftovers if n not in want.leftovers]
    if left:
        words.append("remove the pin(s) an interrupted apply left: " + ", ".join(left))
    return "; ".join(words) or "re-attach"
