"""The fleet review end to end through real `ansible-playbook` runs on the host kernel: the
playbooks of examples/fleet (copied verbatim next to a test inventory) snapshot several inventory
hosts to the controller (`state: gathered` + `dest`), each host is planned offline from its snapshot
(`nkplan plan SPEC --state snapshots/HOST.json --out plans/HOST.json`), and the saved plans are
applied with the module's `plan:` option. All hosts are this machine (local connection), each with
its own stack. Stale plans and plans made for another host are refused (exit code 3) and change
nothing. Every kernel check uses iproute2 (`ip -j`), not nkplan's reader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.play import REPO, Run, playbook, run_playbook, run_tasks
from tests.realkernel import TOKEN, ip_json

pytestmark = pytest.mark.host
NKPLAN = [sys.executable, "-m", "nkplan.cli"]
EXAMPLE = REPO / "examples/fleet"
APPLY_TASK = "Apply the saved plan"  # task names in examples/fleet/apply.yml and gather.yml
GATHER_TASK = "Snapshot the stack"


@dataclass
class Host:
    index: int

    @property
    def name(self) -> str:  # the inventory name, and the snapshot/plan file name
        return f"fleet{self.index}-{TOKEN}"

    @property
    def stack(self) -> str:
        return f"afl{self.index}-{TOKEN}"

    @property
    def ns(self) -> str:
        return f"afl{self.index}-{TOKEN}-a"

    @property
    def dev(self) -> str:
        return f"af{self.index}{TOKEN}"  # at most 15 bytes (IFNAMSIZ)

    def spec(self, mtu: int) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "namespaces": [{"name": self.ns}],
            "links": [
                {
                    "name": self.dev,
                    "kind": "veth",
                    "mtu": mtu,
                    "addresses": [f"10.237.{self.index}.1/32"],
                    "peer": {"name": "eth0", "namespace": self.ns, "addresses": [f"10.237.{self.index + 100}.2/32"]},
                }
            ],
            "routes": [{"to": f"10.237.{self.index + 100}.2/32", "dev": self.dev}],
        }


class Fleet:
    """A controller directory laid out like examples/fleet: the example playbooks, an inventory of
    `hosts`, specs/HOST.yaml, snapshots/ and plans/ (written by the steps)."""

    def __init__(self, tmp: Path, hosts: list[Host]) -> None:
        self.tmp, self.hosts = tmp, hosts
        for name in ("gather.yml", "apply.yml"):
            shutil.copy(EXAMPLE / name, tmp / name)
        for sub in ("specs", "snapshots", "plans"):
            (tmp / sub).mkdir(exist_ok=True)
        inventory = {
            "all": {
                "hosts": {
                    h.name: {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": sys.executable,
                        "ansible_become": False,  # the tests run as root; there is no sudo here
                        "nkplan_stack": h.stack,
                        "nkplan_plan_dir": str(tmp / "on-host" / h.name),
                        # one host snapshots with its spec (gather.yml's config: path), the others without
                        **({"nkplan_spec": str(self.spec_file(h))} if h.index == 2 else {}),
                    }
                    for h in hosts
                }
            }
        }
        for h in hosts:
            self.spec_file(h).write_text(json.dumps(h.spec(1400 + h.index), indent=2))
        self.inventory = tmp / "inventory.yml"
        self.inventory.write_text(json.dumps(inventory, indent=2))

    def run(self, name: str, *flags: str) -> Run:
        return run_playbook(self.tmp, self.tmp / name, self.inventory, *flags)

    def spec_file(self, h: Host) -> Path:
        return self.tmp / "specs" / f"{h.name}.yaml"

    def snapshot(self, h: Host) -> Path:
        return self.tmp / "snapshots" / f"{h.name}.json"

    def plan(self, h: Host, mtu: int) -> dict[str, Any]:
        """The offline plan of one host from its snapshot, saved as plans/HOST.json (what the fleet
        command `nkplan plan fleet.yaml --state snapshots/ --out plans/` does for every host)."""
        spec = self.tmp / "specs" / f"{h.name}.yaml"
        spec.write_text(json.dumps(h.spec(mtu), indent=2))
        out = self.tmp / "plans" / f"{h.name}.json"
        proc = subprocess.run(
            [*NKPLAN, "plan", str(spec), "--state", str(self.snapshot(h)), "--out", str(out), "--format", "json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        doc: dict[str, Any] = json.loads(proc.stdout)
        assert doc["planned_against"]["source"] == "snapshot", doc["planned_against"]
        return doc


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    made = [Host(i) for i in (1, 2, 3)]
    yield made
    # Always clean up, also when the test failed: first through nkplan, then by hand.
    for h in made:
        subprocess.run([*NKPLAN, "destroy", "--stack", h.stack, "--yes", "-q"], capture_output=True, timeout=120)
        subprocess.run(["ip", "netns", "del", h.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", h.dev], capture_output=True)


def link(name: str, ns: str | None = None) -> dict[str, Any] | None:
    found = ip_json("-d", "link", "show", "dev", name, ns=ns, check=False)
    return found[0] if found else None


def netns() -> set[str]:
    return {n["name"] for n in ip_json("netns", "list")}


def machine_id() -> str:
    return Path("/etc/machine-id").read_text().strip()


def test_gather_plan_offline_apply_then_ok(hosts: list[Host], tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, hosts)

    # gather --check: reports each snapshot it would write, writes none
    run = fleet.run("gather.yml", "--check")
    assert run.rc == 0, str(run)
    for h in hosts:
        assert run.hosts_recap[h.name]["changed"] == 1, str(run)
        assert not fleet.snapshot(h).exists()

    # gather: one snapshot per host on the controller, the document of `nkplan show --format json`
    run = fleet.run("gather.yml")
    assert run.rc == 0, str(run)
    for h in hosts:
        assert run.hosts_recap[h.name]["changed"] == 1, str(run)
        assert run.host(h.name)[GATHER_TASK]["dest"] == str(fleet.snapshot(h))
        doc = json.loads(fleet.snapshot(h).read_text())
        assert doc["stack"] == h.stack and doc["links"] == [] and doc["namespaces"] == []
        assert doc["x-nkplan-snapshot"]["host"]["machine_id"] == machine_id()
    # the same live state again: the files are already right, ok
    run = fleet.run("gather.yml")
    assert run.rc == 0 and all(run.hosts_recap[h.name]["changed"] == 0 for h in hosts), str(run)

    # offline plans, one per host (its own stack, its own MTU)
    for h in hosts:
        doc = fleet.plan(h, mtu=1400 + h.index)
        assert doc["has_changes"] and doc["summary"]["add"] == 3, doc["summary"]  # namespace, pair, route

    # apply.yml --check --diff: each plan is verified fresh and shown; nothing in the kernel
    run = fleet.run("apply.yml", "--check", "--diff")
    assert run.rc == 0, str(run)
    for h in hosts:
        result = run.host(h.name)[APPLY_TASK]
        assert result["_status"] == "ok" and result["changed"] is True, result
        assert "stdout" not in result  # nothing was applied
        assert f"+++ after: link[{h.dev}] (planned: create)" in run.output, str(run)
        assert f"+primary.mtu: {1400 + h.index}" in run.output, str(run)
        assert link(h.dev) is None and h.ns not in netns()

    # apply.yml: each host carries out its plan
    run = fleet.run("apply.yml")
    assert run.rc == 0, str(run)
    for h in hosts:
        result = run.host(h.name)[APPLY_TASK]
        assert result["changed"] is True and "Apply complete!" in result["stdout"], result
        dev = link(h.dev)
        assert dev is not None and dev["linkinfo"]["info_kind"] == "veth" and dev["mtu"] == 1400 + h.index
        peer = link("eth0", ns=h.ns)
        assert peer is not None and peer["mtu"] == 1400 + h.index
        addrs = [a["local"] for a in ip_json("addr", "show", "dev", h.dev)[0]["addr_info"]]
        assert f"10.237.{h.index}.1" in addrs, addrs

    # the same saved plans again: used up (the hosts no longer hold what the snapshots held)
    run = fleet.run("apply.yml")
    assert run.rc != 0, str(run)
    for h in hosts:
        result = run.host(h.name)[APPLY_TASK]
        assert result["_status"] == "failed" and result["rc"] == 3 and result["changed"] is False, result
        assert "differs from the snapshot the plan was made against" in result["msg"], result
        dev = link(h.dev)
        assert dev is not None and dev["mtu"] == 1400 + h.index

    # the next round: gather, plan (no changes), apply: every host ok, nothing changed
    assert fleet.run("gather.yml").rc == 0
    for h in hosts:
        assert fleet.plan(h, mtu=1400 + h.index)["has_changes"] is False
    run = fleet.run("apply.yml", "--diff")
    assert run.rc == 0, str(run)
    for h in hosts:
        assert run.hosts_recap[h.name]["changed"] == 0 and run.hosts_recap[h.name]["failed"] == 0, str(run)
        assert run.host(h.name)[APPLY_TASK]["changed"] is False


def test_stale_and_foreign_plans_are_refused(hosts: list[Host], tmp_path: Path) -> None:
    stale, foreign = hosts[0], hosts[1]
    fleet = Fleet(tmp_path, [stale, foreign])
    for h in (stale, foreign):  # both stacks exist, MTU 1400 (made with the CLI: not under test here)
        spec = tmp_path / f"{h.name}-initial.yaml"
        spec.write_text(json.dumps(h.spec(1400)))
        subprocess.run([*NKPLAN, "apply", str(spec), "--yes", "-q"], check=True, capture_output=True, timeout=120)
    assert fleet.run("gather.yml").rc == 0

    # the snapshot of `foreign` is edited to stand for another machine
    snap = json.loads(fleet.snapshot(foreign).read_text())
    snap["x-nkplan-snapshot"]["host"].update(machine_id="0" * 32, hostname="elsewhere")
    fleet.snapshot(foreign).write_text(json.dumps(snap, indent=2))
    for h in (stale, foreign):
        assert fleet.plan(h, mtu=1300)["summary"]["change"] == 1
    # ... and `stale` is changed by hand after its snapshot
    subprocess.run(["ip", "link", "set", "dev", stale.dev, "mtu", "1350"], check=True)

    def unchanged() -> None:
        got = {h.name: (link(h.dev) or {}).get("mtu") for h in (stale, foreign)}
        assert got == {stale.name: 1350, foreign.name: 1400}, got
        assert (link("eth0", ns=foreign.ns) or {}).get("mtu") == 1400

    for flags in (("--check", "--diff"), ()):
        run = fleet.run("apply.yml", *flags)
        assert run.rc != 0, str(run)
        for h, why in (
            (stale, f"the live state differs from the snapshot the plan was made against: link[{stale.dev}] changed"),
            (foreign, "this plan was made against a snapshot of host 'elsewhere'; this is "),
        ):
            result = run.host(h.name)[APPLY_TASK]
            assert result["_status"] == "failed" and result["rc"] == 3 and result["changed"] is False, result
            assert why in result["msg"], (flags, result["msg"])
            assert run.hosts_recap[h.name]["failed"] == 1, str(run)
        unchanged()


def test_bad_arguments_fail_clearly(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"stack: bad-{TOKEN}\n")
    cases = {
        "plan and src": {"plan": str(spec), "src": str(spec)},
        "missing plan": {"plan": str(tmp_path / "nope.json")},
        "not a plan": {"plan": str(spec)},
        "plan and adopt": {"plan": str(spec), "adopt": True},
        "plan and absent": {"plan": str(spec), "state": "absent"},
        "dest without gathered": {"src": str(spec), "dest": str(tmp_path / "snap.json")},
    }
    tasks = [{"name": name, "nkplan.netkit.stack": args, "ignore_errors": True} for name, args in cases.items()]
    run = run_tasks(tmp_path, tasks)
    assert run.rc == 0, str(run)
    messages = {name: run.results[name]["msg"] for name in cases}
    assert all(run.results[name]["_status"] == "failed" for name in cases), messages
    assert "mutually exclusive: src|config|plan" in messages["plan and src"], messages
    assert f"cannot read the plan {tmp_path / 'nope.json'}: No such file or directory" in messages["missing plan"]
    assert f"{spec} is not a saved nkplan plan (not JSON" in messages["not a plan"], messages
    assert "adopt cannot be given with plan" in messages["plan and adopt"], messages
    assert "goes with state=present, not state=absent" in messages["plan and absent"], messages
    assert (
        "dest (where the snapshot is written on the controller) goes with state=gathered"
        in messages["dest without gathered"]
    ), messages
    assert not (tmp_path / "snap.json").exists()


def test_gathered_dest_relative_to_the_playbook(tmp_path: Path) -> None:
    """A relative dest lands next to the playbook (here tmp_path), parents made; a stack that owns
    nothing still gives a snapshot (an empty spec plus the host's state)."""
    stack = f"afl9-{TOKEN}"
    run = playbook(tmp_path, {"stack": stack, "state": "gathered", "dest": "deep/er/snap.json"})
    assert run.rc == 0 and run.result["changed"] is True, str(run)
    path = tmp_path / "deep/er/snap.json"
    assert run.result["dest"] == str(path)
    doc = json.loads(path.read_text())
    assert doc["stack"] == stack and doc["x-nkplan-snapshot"]["host"]["machine_id"] == machine_id()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as any file the user writes, not mkstemp's 0600
