"""A `repeat:` template of 200 pods on the host kernel, through the real `nkplan` command: applied,
pinged pod ↔ host for a sample of instances, one instance left out (the plan deletes exactly that
pod), destroyed (nothing left). Checks read the kernel with iproute2, not with nkplan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.host import observe
from tests.host.conftest import Names

pytestmark = pytest.mark.host
NKPLAN = [sys.executable, "-m", "nkplan.cli"]
PODS = 200
SAMPLE = (1, 77, 200)


def run(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*NKPLAN, *args], capture_output=True, text=True, timeout=600)
    if check is not None:
        assert proc.returncode == check, f"nkplan {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def spec(n: Names, skip: str = "[]") -> str:
    p = n.prefix
    return f"""\
stack: {n.stack}
pools:
  pod4: 10.233.0.0/24
  host4: 10.234.0.0/24
defaults:
  links: {{kind: veth, mtu: 1500}}
repeat:
  pods:
    range: [1, {PODS + 1}]
    skip: {skip}
    namespaces:
      - name: "{p}p{{i}}"
    links:
      - name: "{p}h{{i}}"
        addresses: ["{{host4.host(i)}}/32"]
        peer: {{name: eth0, namespace: "{p}p{{i}}", addresses: ["{{pod4.host(i)}}/32"]}}
    routes:
      - {{namespace: "{p}p{{i}}", to: default, dev: eth0}}
      - {{to: "{{pod4.host(i)}}/32", dev: "{p}h{{i}}"}}
"""


def ping(ip: str, ns: str | None = None) -> bool:
    cmd = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.run([*cmd, "ping", "-c", "1", "-W", "2", ip], capture_output=True).returncode == 0


def test_a_200_pod_template_applies_pings_shrinks_by_one_and_destroys(ns: Names, tmp_path: Path) -> None:
    p = ns.prefix
    path = tmp_path / "pods.yaml"
    path.write_text(spec(ns))
    plan = run("plan", str(path), "--no-color").stdout
    assert f"namespace[{p}p17]" in plan and f"link[{p}h17]" in plan  # plans name expanded objects
    run("apply", str(path), "--yes", "-q")
    assert sum(name.startswith(f"{p}p") for name in observe.netns_names()) == PODS
    for i in SAMPLE:
        assert ping(f"10.233.0.{i}"), f"host → pod {i}"
        assert ping(f"10.234.0.{i}", ns=f"{p}p{i}"), f"pod {i} → host"
    assert run("plan", str(path), "--detailed-exitcode").returncode == 0  # applied: no changes

    path.write_text(spec(ns, skip="[77]"))
    doc = json.loads(run("plan", str(path), "--format", "json").stdout)
    changed = {
        c["address"]: c["change"]["actions"] for c in doc["resource_changes"] if c["change"]["actions"] != ["no-op"]
    }
    assert changed == {
        f"namespace[{p}p77]": ["delete"],
        f"link[{p}h77]": ["delete"],
        f"route[{p}p77 default]": ["delete"],
        "route[10.233.0.77/32]": ["delete"],
    }, changed
    run("apply", str(path), "--yes", "-q")
    assert f"{p}p77" not in observe.netns_names() and f"{p}h77" not in observe.link_names()
    assert f"{p}p76" in observe.netns_names() and ping("10.233.0.78")

    run("destroy", str(path), "--yes", "-q")
    assert not [n for n in observe.netns_names() if n.startswith(p)]
    assert not [d for d in observe.link_names() if d.startswith(p)]
