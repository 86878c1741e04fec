"""`nkplan graph`: DOT accepted by Graphviz (`dot -Tsvg`), namespaces as clusters, pairs as edges
with kind and addresses, programs per hook in order; a plan coloured by action with a legend;
Mermaid; a clear error without Graphviz."""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

import pytest

from nkplan import api, cli
from nkplan.documents.graph import from_plan, render_dot, render_mermaid
from nkplan.errors import NkplanError
from nkplan.kernel.fake import FakeKernel
from nkplan.run import pictures
from nkplan.run.workflow import plan_for
from tests.unit.test_planner import BASE

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "examples" / "demo-programs.yaml"


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))


def graphviz_accepts(dot: str) -> str:
    assert shutil.which("dot"), "Graphviz (Debian package graphviz) is needed: scripts/test installs it"
    proc = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    return html.unescape(proc.stdout).replace("\xa0", " ")  # Graphviz writes spaces as &#160;


def test_the_demo_with_programs_is_drawn_and_accepted_by_graphviz() -> None:
    if not (ROOT / "bpf" / "build" / "count.o").exists():
        pytest.fail("build the example programs first: make -C bpf")
    pic = pictures.of_spec(api.load_file(str(PROGRAMS)))
    dot = render_dot(pic)
    svg = graphviz_accepts(dot)
    for text in ("namespace pod-a", "namespace pod-b", "host namespace", "netkit l3", "netkit l2", "veth",
                 "10.10.1.2/32", "fd00:10::2/128", "netkit peer:", "1. pod_egress", "tcx ingress:", "1. count_pass"):
        assert text in svg, text
    assert dot.count("subgraph cluster_") == 3 and "legend" not in dot  # no plan: no legend
    mermaid = render_mermaid(pic)
    assert mermaid.startswith("flowchart LR\n") and mermaid.count("  subgraph ") == 3


def test_a_plan_is_coloured_by_action_with_a_legend() -> None:
    kernel = FakeKernel()
    api.apply(api.load_text(BASE, "t.yaml"), on=kernel)
    changed = BASE.replace("{name: p2}", "{name: p2}, {name: p3}").replace("kind: netkit", "kind: netkit\n    mode: l2")
    changed = changed.replace("peer: {name: eth0, namespace: p2}", "peer: {name: eth0, namespace: p3}")
    plan = plan_for(kernel, api.load_text(changed, "t.yaml")).plan
    pic = from_plan(plan)
    dot = render_dot(pic)
    graphviz_accepts(dot)
    assert "cluster_legend" in dot and "[create]" in dot and "[replace]" in dot
    assert "#ffe0c2" in dot  # replace's fill
    small = from_plan(plan, changed_only=True, limit=1)
    assert small.left_out == sum(c.action != "no-op" for c in plan.changes) - 1


def test_cli_writes_a_png_and_says_when_graphviz_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text(BASE)
    out = tmp_path / "t.png"
    assert cli.main(["graph", str(spec), "--format", "png", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(NkplanError, match="apt-get install graphviz"):
        pictures.render(pictures.of_spec(api.load_text(BASE, "t.yaml")), "svg")
    assert cli.main(["graph", str(spec), "--format", "mermaid", "--out", str(out)]) == 0  # needs nothing


def test_a_single_netkit_device_is_drawn_as_its_one_end() -> None:
    single = "  - {name: sk1, kind: netkit, pairing: single, addresses: [10.0.9.1/32]}\n"
    pair = "  - {name: ve2, kind: veth, peer: {name: eth0, namespace: p2}}\n"
    spec = api.load_text(BASE.replace(pair, pair + single), "t.yaml")
    pic = from_plan(plan_for(FakeKernel(single=True), spec).plan)
    assert "sk1" in graphviz_accepts(render_dot(pic)) and "sk1" in render_mermaid(pic)
