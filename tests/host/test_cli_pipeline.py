"""The pipeline workflow on the host kernel, through the real `nkplan` command: saved plans and
their stale check, drift made by hand, show → plan round trips (YAML and JSON), and offline
planning from a snapshot as an unprivileged user. The kernel is read with iproute2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.host.test_cli_veth import NKPLAN, Names, exists, link, names, netns, run, spec_text, write

__all__ = ["names"]  # the e2e names fixture (overrides the kernel tests' one in conftest)
from tests.realkernel import host_snapshot

pytestmark = pytest.mark.host


def test_saved_plan_refused_when_stale_applied_when_fresh(names: Names, tmp_path: Path) -> None:
    n = names
    path = write(tmp_path, spec_text(n, vb="", vc=""))
    saved = str(tmp_path / "plan.json")
    run("plan", path, "--out", saved)
    subprocess.run(["ip", "netns", "add", n.pb], check=True)  # a change by hand: the plan is stale
    before = host_snapshot(), netns()
    proc = run("apply", saved, check=3)
    assert "the live state changed since the plan was made" in proc.stderr, proc.stderr
    assert (host_snapshot(), netns()) == before and not exists(n.va)
    subprocess.run(["ip", "netns", "del", n.pb], check=True)
    applied = run("apply", saved)  # the state is back to what was planned: no confirmation needed
    assert "Apply complete! 5 to add, 0 to change, 0 to destroy." in applied.stdout, applied.stdout
    assert exists(n.va) and link(n.va)["mtu"] == 1400
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout


def test_tampered_saved_plan_changes_nothing(names: Names, tmp_path: Path) -> None:
    path = write(tmp_path, spec_text(names, vb="", vc=""))
    saved = tmp_path / "plan.json"
    run("plan", path, "--out", str(saved))
    saved.write_text(saved.read_text().replace("1400", "1401"))
    before = host_snapshot(), netns()
    proc = run("apply", str(saved), check=1)
    assert "was modified after it was written" in proc.stderr
    assert (host_snapshot(), netns()) == before


def test_drift_made_by_hand_is_reported(names: Names, tmp_path: Path) -> None:
    n = names
    path = write(tmp_path, spec_text(n, vb="", vc=""))
    run("apply", path, "--yes")
    subprocess.run(["ip", "link", "set", n.va, "mtu", "1300"], check=True)
    text = run("plan", path, "--no-color").stdout
    assert "changed outside nkplan since the last apply (drift)" in text
    assert "primary.mtu: 1400 (applied) → 1300 (now)" in text
    doc = json.loads(run("plan", path, "--format", "json").stdout)
    assert [d["address"] for d in doc["resource_drift"]] == [f"link[{n.va}]"]
    run("apply", path, "--yes")
    assert link(n.va)["mtu"] == 1400


def test_show_round_trips_and_snapshot_plans_without_root(names: Names, tmp_path: Path) -> None:
    n = names
    path = write(tmp_path, spec_text(n))
    run("apply", path, "--yes")
    for fmt in ("yaml", "json"):
        shown = run("show", "--stack", n.stack, "--format", fmt).stdout
        assert "No changes" in run("plan", write(tmp_path, shown)).stdout, shown
    snap = tmp_path / "snapshot.json"
    snap.write_text(run("show", "--stack", n.stack, "--format", "json").stdout)
    changed = write(tmp_path, spec_text(n).replace("mtu: 1400", "mtu: 1350"))
    on_host = json.loads(run("plan", changed, "--format", "json").stdout)
    # as nobody, from a world-readable copy: no root, no kernel access
    public = Path(f"/tmp/nkplan-offline-{n.stack}")
    public.mkdir(exist_ok=True)
    try:
        for src in (snap, Path(changed)):
            shutil.copy(src, public / src.name)
        os.chmod(public, 0o755)
        for f in public.iterdir():
            os.chmod(f, 0o644)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        args = ["plan", str(public / Path(changed).name), "--state", str(public / "snapshot.json"), "--format", "json"]
        cmd = [*nobody, *NKPLAN, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
        assert proc.returncode == 0, proc.stderr
        offline = json.loads(proc.stdout)
    finally:
        shutil.rmtree(public)
    assert offline["planned_against"]["source"] == "snapshot"
    assert offline["resource_changes"] == on_host["resource_changes"]
    assert offline["summary"] == on_host["summary"] and offline["summary"]["change"] == 1

    # the offline plan, saved, applies on this host while it holds what the snapshot held ...
    saved = str(tmp_path / "offline-plan.json")
    run("plan", changed, "--state", str(snap), "--out", saved)
    stale = str(tmp_path / "offline-stale.json")
    other = write(tmp_path, spec_text(n).replace("mtu: 1400", "mtu: 1300"), "other.yaml")
    run("plan", other, "--state", str(snap), "--out", stale)
    run("apply", saved)
    assert link(n.va)["mtu"] == 1350
    # ... and is refused (exit 3, nothing changed) once the host no longer does
    proc = run("apply", stale, check=3)
    assert "the live state differs from the snapshot the plan was made against" in proc.stderr, proc.stderr
    assert link(n.va)["mtu"] == 1350


def _on_a_terminal(cmd: list[str], env: dict[str, str]) -> str:
    """Run cmd with stdout on a pseudo-terminal; return what it printed."""
    import pty

    out = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 65536)
        out.extend(data)
        return data

    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(cmd[0], cmd, env)
    try:
        while True:
            try:
                if not read(fd):
                    break
            except OSError:
                break
    finally:
        os.waitpid(pid, 0)
    return out.decode(errors="replace")


def test_colour_only_on_a_terminal_and_never_with_no_color(names: Names, tmp_path: Path) -> None:
    path = write(tmp_path, spec_text(names, vb="", vc=""))
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert "\033[32m+\033[0m" in _on_a_terminal([*NKPLAN, "plan", path], env)
    assert "\033[" not in _on_a_terminal([*NKPLAN, "plan", path], {**env, "NO_COLOR": "1"})
    assert "\033[" not in _on_a_terminal([*NKPLAN, "plan", path, "--no-color"], env)
    assert "\033[" not in run("plan", path).stdout  # not a terminal


def test_show_all_imports_a_hand_made_setup(names: Names, tmp_path: Path) -> None:
    """A namespace and a veth pair made by hand: `show --all` exports them into a spec, which
    `apply --adopt` takes over without recreating anything."""
    n = names
    subprocess.run(["ip", "netns", "add", n.pa], check=True)
    subprocess.run(["ip", "link", "add", n.va, "type", "veth", "peer", "name", "eth0", "netns", n.pa], check=True)
    subprocess.run(["ip", "addr", "add", "10.231.9.1/32", "dev", n.va], check=True)
    subprocess.run(["ip", "link", "set", n.va, "up"], check=True)
    index = link(n.va)["ifindex"]
    shown = run("show", "--all", "--stack", n.stack).stdout
    assert f"name: {n.pa}" in shown and f"name: {n.va}" in shown
    # keep only this test's objects (the machine may have other unowned pairs)
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(shown)
    doc["namespaces"] = [x for x in doc["namespaces"] if x["name"] == n.pa]
    doc["links"] = [x for x in doc["links"] if x["name"] == n.va]
    doc["routes"] = [x for x in doc["routes"] if x.get("namespace") == n.pa or x.get("dev") == n.va]
    spec = tmp_path / "import.yaml"
    spec.write_text(json.dumps(doc))
    assert "already exists and is not managed by nkplan" in run("plan", str(spec), check=1).stderr
    run("apply", str(spec), "--adopt", "--yes")
    assert link(n.va)["ifindex"] == index, "adoption must not recreate the device"
    assert link(n.va)["ifalias"].startswith(f"nkplan:{n.stack}:primary")
    assert "No changes" in run("plan", str(spec)).stdout
