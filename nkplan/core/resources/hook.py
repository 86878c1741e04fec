"""BPF programs at one hook of a device (netkit primary/peer through the primary, tcx
ingress/egress on any end), nkplan's own, in run order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nkplan.core.hostns import document_ns, qualified
from nkplan.core.records import HookRec, ProgramRec
from nkplan.core.resources import programvalues as values
from nkplan.core.resources.base import Claims, Need, ResourceType
from nkplan.core.resources.link import on_device
from nkplan.core.resources.namespace import in_namespace


def hook_address(ns: str, device: str, hook: str) -> str:
    return f"hook[{qualified(ns, device)} {hook}]"


class HookType(ResourceType[HookRec]):
    name = "hook"
    record = HookRec
    hidden = (
        "programs.prog_id", "programs.tag", "programs.link_id", "programs.maps",  # kernel ids: for `show`
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
            if claims.ours(have.owner) and key not in claims.want.hooks and have.programs:
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

    def needs(self, rec: HookRec) -> Iterable[Need]:
        for token in in_namespace(rec.namespace):
            yield Need(token)
        yield on_device(rec.namespace, rec.device)
        for ns, device in values.referenced_devices(rec):  # after the devices its values name
            yield Need(("device", ns, device), refers=f"ifindex of {qualified(ns, device)} changes: device replaced")

    def from_plain(self, data: dict[str, Any]) -> HookRec:
        progs = tuple(values.program_from_plain(p) for p in data["programs"])
        return HookRec(**{**data, "programs": progs})


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
    return "; ".join(words) or "re-attach"
