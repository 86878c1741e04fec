"""Pictures of a stack (`nkplan graph`): namespaces as clusters, each device pair as an edge
between its two ends (kind, mode and addresses), and the programs at each hook in order; with a
plan, what is created, updated, replaced or deleted is coloured, with a legend. Graphviz DOT and
Mermaid (which GitHub renders in Markdown). Pure: records in, text out (rendering DOT to SVG/PNG
is the CLI's, through Graphviz's `dot`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nkplan.core.plan import Plan
from nkplan.core.records import HOST, EndRec, HookRec, LinkRec, NamespaceRec, ns_label

# action → (fill, border/edge colour); None: unchanged
COLOURS: dict[str, tuple[str, str]] = {
    "create": ("#d4f7d4", "#1a7f37"),
    "update": ("#fff1c2", "#9a6700"),
    "replace": ("#ffe0c2", "#bc4c00"),
    "delete": ("#ffd7d5", "#cf222e"),
}
PLAIN = ("#ffffff", "#57606a")
HOOK_WORDS = {"primary": "netkit primary", "peer": "netkit peer", "ingress": "tcx ingress", "egress": "tcx egress"}


@dataclass
class Hook:
    hook: str
    programs: tuple[str, ...]
    action: str | None


@dataclass
class End:
    namespace: str
    name: str
    addresses: tuple[str, ...]
    hooks: list[Hook] = field(default_factory=list)


@dataclass
class Pair:
    primary: End
    peer: End | None  # None: a single netkit device (drawn as its one end, no edge)
    label: str
    action: str | None


@dataclass
class Picture:
    """What is drawn: namespaces (with their action), pairs, and whether it shows a plan."""

    stack: str
    namespaces: dict[str, str | None] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    with_plan: bool = False
    left_out: int = 0  # changes not drawn (kept small)

    def ends(self) -> list[End]:
        return [e for p in self.pairs for e in (p.primary, p.peer) if e is not None]


def _end(rec: EndRec) -> End:
    return End(rec.namespace, rec.name, rec.addresses)


def _pair_label(link: LinkRec) -> str:
    kind = link.kind if link.mode is None else f"{link.kind} {link.mode}"
    return kind


def picture(records: Iterable[tuple[object, str | None]], stack: str, *, with_plan: bool = False) -> Picture:
    """A picture of the records (each with its plan action, or None: unchanged / no plan).
    Namespaces of ends are drawn even when they are not among the records (the host always)."""
    pic = Picture(stack, with_plan=with_plan)
    hooks: list[tuple[HookRec, str | None]] = []
    for rec, action in records:
        if isinstance(rec, NamespaceRec):
            pic.namespaces[rec.name] = action
        elif isinstance(rec, LinkRec):
            peer = _end(rec.peer) if rec.peer is not None else None
            pic.pairs.append(Pair(_end(rec.primary), peer, _pair_label(rec), action))
        elif isinstance(rec, HookRec):
            hooks.append((rec, action))
    for end in pic.ends():
        pic.namespaces.setdefault(end.namespace, None)
    by_primary = {(p.primary.namespace, p.primary.name): p for p in pic.pairs}
    by_end = {(e.namespace, e.name): e for e in pic.ends()}
    for hook, action in hooks:
        programs = tuple(p.program for p in hook.programs)
        target: End | None
        if hook.hook in ("primary", "peer"):  # netkit hooks: addressed through the primary
            owner = by_primary.get((hook.namespace, hook.device))
            target = None if owner is None else (owner.primary if hook.hook == "primary" else owner.peer)
        else:
            target = by_end.get((hook.namespace, hook.device))
        if target is not None:
            target.hooks.append(Hook(hook.hook, programs, action))
    return pic


def from_plan(plan: Plan, *, changed_only: bool = False, limit: int | None = None) -> Picture:
    """The plan's resources (after, or before for a delete), coloured by action; changed_only:
    only what changes (and the namespaces it is in); limit: at most that many changes drawn."""
    items: list[tuple[object, str | None]] = []
    drawn = 0
    left = 0
    # a changed hook is drawn on its pair, unchanged or not
    hooked = {
        (c.address_ns, c.device)
        for c in (_hook_of(ch) for ch in plan.changes if ch.action != "no-op")
        if c is not None
    }
    for change in plan.changes:
        if change.action == "no-op":
            rec = change.after if change.after is not None else change.before
            context = isinstance(rec, LinkRec) and bool(
                {(end.namespace, end.name) for end in rec.ends} & hooked
            )
            if changed_only and not context:
                continue
            action = None
        else:
            if limit is not None and drawn >= limit:
                left += 1
                continue
            drawn += 1
            action = change.action
        rec = change.after if change.after is not None else change.before
        items.append((rec, action))
    pic = picture(items, plan.stack, with_plan=True)
    pic.left_out = left
    return pic


@dataclass(frozen=True)
class _HookAt:
    address_ns: str
    device: str


def _hook_of(change: object) -> _HookAt | None:
    rec = getattr(change, "after", None) or getattr(change, "before", None)
    return _HookAt(rec.namespace, rec.device) if isinstance(rec, HookRec) else None


# DOT --------------------------------------------------------------------------------------------
def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _ids(pic: Picture) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    ns_ids = {ns: f"ns{i}" for i, ns in enumerate(sorted(pic.namespaces))}
    end_ids = {(e.namespace, e.name): f"end{i}" for i, e in enumerate(pic.ends())}
    return ns_ids, end_ids


def _end_text(end: End) -> list[str]:
    lines = [end.name, *end.addresses]
    return lines


def _hook_text(h: Hook) -> str:
    progs = [f"{i}. {p}" for i, p in enumerate(h.programs, 1)] or ["(none)"]
    return "\n".join([HOOK_WORDS.get(h.hook, h.hook) + ":", *progs])


def _tag(action: str | None) -> str:
    return f" [{action}]" if action else ""


def render_dot(pic: Picture) -> str:
    ns_ids, end_ids = _ids(pic)
    out = [
        f"digraph {_q('nkplan ' + pic.stack)} {{",
        "  graph [rankdir=LR, fontname=Helvetica, fontsize=12, compound=true, nodesep=0.35, ranksep=1.1,"
        f" label={_q('nkplan stack ' + pic.stack)}, labelloc=t];",
        "  node [fontname=Helvetica, fontsize=11, style=\"rounded,filled\", shape=box];",
        "  edge [fontname=Helvetica, fontsize=10, dir=none];",
    ]
    for ns in sorted(pic.namespaces, key=lambda n: (n != HOST, n)):
        action = pic.namespaces[ns]
        fill, line = COLOURS.get(action or "", ("#f6f8fa", "#8c959f"))
        title = ("host namespace" if ns == HOST else f"namespace {ns}") + _tag(action)
        out += [
            f"  subgraph cluster_{ns_ids[ns]} {{",
            f"    label={_q(title)}; style=\"rounded,filled\"; fillcolor={_q(fill)}; color={_q(line)};"
            " penwidth=1.5;",
        ]
        for end in pic.ends():
            if end.namespace != ns:
                continue
            eid = end_ids[(end.namespace, end.name)]
            out.append(f"    {eid} [label={_q(chr(10).join(_end_text(end)))}, fillcolor=\"#ffffff\"];")
            for j, h in enumerate(end.hooks):
                hfill, hline = COLOURS.get(h.action or "", ("#eef3ff", "#0969da"))
                hid = f"{eid}_h{j}"
                out.append(
                    f"    {hid} [shape=note, style=filled, label={_q(_hook_text(h) + _tag(h.action))},"
                    f" fillcolor={_q(hfill)}, color={_q(hline)}];"
                )
                out.append(f"    {hid} -> {eid} [style=dotted, color={_q(hline)}];")
        if not any(e.namespace == ns for e in pic.ends()):
            out.append(f"    {ns_ids[ns]}_empty [label=\"(no devices)\", shape=plaintext, style=\"\"];")
        out.append("  }")
    for pair in pic.pairs:
        if pair.peer is None:
            continue
        a = end_ids[(pair.primary.namespace, pair.primary.name)]
        b = end_ids[(pair.peer.namespace, pair.peer.name)]
        _, line = COLOURS.get(pair.action or "", PLAIN)
        style = ", style=dashed" if pair.action == "delete" else ""
        out.append(f"  {a} -> {b} [label={_q(pair.label + _tag(pair.action))}, color={_q(line)}, penwidth=2{style}];")
    if pic.with_plan:
        out += _dot_legend(pic)
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_legend(pic: Picture) -> list[str]:
    rows = "".join(
        f'<TR><TD BGCOLOR="{fill}" WIDTH="18"> </TD><TD ALIGN="LEFT"><FONT COLOR="{line}">{name}</FONT></TD></TR>'
        for name, (fill, line) in COLOURS.items()
    )
    rows += '<TR><TD BGCOLOR="#ffffff" WIDTH="18"> </TD><TD ALIGN="LEFT">unchanged</TD></TR>'
    if pic.left_out:
        rows += f'<TR><TD COLSPAN="2">… {pic.left_out} more changes not drawn</TD></TR>'
    return [
        "  subgraph cluster_legend {",
        '    label="legend"; style="rounded"; color="#8c959f";',
        f'    legend [shape=plaintext, style="", label=<<TABLE BORDER="0" CELLSPACING="2">{rows}</TABLE>>];',
        "  }",
    ]


# Mermaid ----------------------------------------------------------------------------------------
def _m(text: str) -> str:
    """A Mermaid label: quoted, lines joined with <br/>, what would end or confuse it escaped."""
    lines = [line.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") for line in text.split("\n")]
    return '"' + "<br/>".join(lines) + '"'


def render_mermaid(pic: Picture) -> str:
    ns_ids, end_ids = _ids(pic)
    out = ["flowchart LR"]
    classes: dict[str, list[str]] = {}
    for ns in sorted(pic.namespaces, key=lambda n: (n != HOST, n)):
        action = pic.namespaces[ns]
        title = ("host" if ns == HOST else f"namespace {ns}") + _tag(action)
        out.append(f"  subgraph {ns_ids[ns]}[{_m(title)}]")
        if action:
            classes.setdefault(action, []).append(ns_ids[ns])
        ends = [e for e in pic.ends() if e.namespace == ns]
        for end in ends:
            eid = end_ids[(end.namespace, end.name)]
            out.append(f"    {eid}[{_m(chr(10).join(_end_text(end)))}]")
            for j, h in enumerate(end.hooks):
                hid = f"{eid}_h{j}"
                out.append(f"    {hid}>{_m(_hook_text(h) + _tag(h.action))}]")
                out.append(f"    {hid} -.- {eid}")
                if h.action:
                    classes.setdefault(h.action, []).append(hid)
        if not ends:
            out.append(f"    {ns_ids[ns]}_empty[(no devices)]")
        out.append("  end")
    link_styles: list[str] = []
    n_links = sum(len(e.hooks) for e in pic.ends())  # the hook links come first, in order
    for pair in pic.pairs:
        if pair.peer is None:
            continue
        a = end_ids[(pair.primary.namespace, pair.primary.name)]
        b = end_ids[(pair.peer.namespace, pair.peer.name)]
        arrow = "-.-" if pair.action == "delete" else "---"
        out.append(f"  {a} {arrow}|{_m(pair.label + _tag(pair.action))}| {b}")
        if pair.action:
            link_styles.append(f"  linkStyle {n_links} stroke:{COLOURS[pair.action][1]},stroke-width:3px")
        n_links += 1
    for name, (fill, line) in COLOURS.items():
        out.append(f"  classDef {name} fill:{fill},stroke:{line},stroke-width:2px")
    for name, ids in classes.items():
        out.append(f"  class {','.join(ids)} {name}")
    out += link_styles
    return "\n".join(out) + "\n"


def mermaid_legend(pic: Picture) -> str:
    """A one-line legend for Markdown (Mermaid has no legend of its own)."""
    words = {"create": "🟩 create", "update": "🟨 update", "replace": "🟧 replace", "delete": "🟥 delete"}
    text = "Legend: " + " · ".join(words.values()) + " · ⬜ unchanged"
    if pic.left_out:
        text += f". {pic.left_out} more changes are not drawn."
    return text


def draw(pic: Picture, fmt: str) -> str:
    return render_mermaid(pic) if fmt == "mermaid" else render_dot(pic)


def only_changed_namespaces(pic: Picture, keep: Sequence[str] = ()) -> Picture:
    """Drop namespaces with nothing drawn in them and no action of their own."""
    used = {e.namespace for e in pic.ends()} | set(keep)
    pic.namespaces = {ns: a for ns, a in pic.namespaces.items() if ns in used or a}
    return pic


__all__ = ["Picture", "draw", "from_plan", "ns_label", "picture", "render_dot", "render_mermaid"]
