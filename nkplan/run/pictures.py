"""`nkplan graph`: the picture of a spec (no kernel), of a plan (the spec against the kernel), or
of a stack as the kernel holds it; SVG and PNG through Graphviz's `dot` (a Debian package)."""

from __future__ import annotations

import shutil
import subprocess

from nkplan.core.desired import desired
from nkplan.core.records import KernelInfo
from nkplan.documents.graph import Picture, draw, from_plan, picture, render_dot
from nkplan.errors import NkplanError
from nkplan.kernel.seam import Kernel
from nkplan.spec.loader import Loaded

GRAPHVIZ_FORMATS = ("svg", "png")


def of_spec(loaded: Loaded) -> Picture:
    """What the spec declares, drawn without reading the kernel."""
    want = desired(loaded.spec, KernelInfo(), loaded.source.filename, loaded.objects, loaded.object_maps)
    records = [rec for table in (want.namespaces, want.links, want.hooks) for rec, _path in table.values()]
    return picture(((r, None) for r in records), loaded.spec.stack)


def of_stack(kernel: Kernel, stack: str) -> Picture:
    """What the kernel holds for the stack (its ownership marks)."""
    live = kernel.read()
    records: list[object] = [n for n in live.namespaces.values() if n.owner == stack]
    records += [link for link in live.links.values() if link.owner == stack]
    records += [h for h in live.hooks.values() if h.owner == stack]
    return picture(((r, None) for r in records), stack)


def of_plan(kernel: Kernel, loaded: Loaded, adopt: bool = False) -> Picture:
    from nkplan.run.workflow import plan_for

    return from_plan(plan_for(kernel, loaded, adopt=adopt).plan)


def render(pic: Picture, fmt: str) -> bytes:
    """The picture as `fmt`: dot or mermaid text, or svg/png drawn by Graphviz."""
    if fmt not in GRAPHVIZ_FORMATS:
        return draw(pic, fmt).encode()
    dot = shutil.which("dot")
    if dot is None:
        raise NkplanError(
            f"--format {fmt} needs Graphviz's `dot` command, which is not installed (Debian: apt-get install"
            " graphviz); --format dot or mermaid need nothing"
        )
    try:
        proc = subprocess.run([dot, f"-T{fmt}"], input=render_dot(pic).encode(), capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise NkplanError(f"Graphviz ({dot}) did not finish drawing within 120 s") from None
    if proc.returncode != 0:
        raise NkplanError(f"Graphviz's dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout
