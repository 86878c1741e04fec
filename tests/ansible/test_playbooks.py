"""The nkplan.netkit collection through real `ansible-playbook` runs on the host kernel (veth):
`--check --diff` shows the planned changes and changes nothing; a real run applies; a second run
reports changed=0; an update is planned honestly in check mode; `state: gathered` returns the live
stack; `state: absent` removes it; a spec error fails the task with file:line; adoption. Every
kernel check uses iproute2 (`ip -j`), not nkplan's reader."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.play import REPO, core_version, playbook
from tests.realkernel import TOKEN, ip_json

pytestmark = pytest.mark.host
NKPLAN = [sys.executable, "-m", "nkplan.cli"]
_serial = itertools.count()


class Names:
    def __init__(self, tag: str) -> None:
        self.stack = f"ans{tag}-{TOKEN}"
        self.ns = f"ans{tag}-{TOKEN}-a"
        self.dev = f"av{tag}{TOKEN}"  # at most 15 bytes (IFNAMSIZ)
        self.hand = f"ah{tag}{TOKEN}"


@pytest.fixture
def names() -> Iterator[Names]:
    n = Names(str(next(_serial) % 10))
    yield n
    # Always clean up, also when the test failed: first through nkplan, then by hand.
    subprocess.run([*NKPLAN, "destroy", "--stack", n.stack, "--yes", "-q"], capture_output=True, timeout=120)
    subprocess.run(["ip", "netns", "del", n.ns], capture_output=True)
    for dev in (n.dev, n.hand):
        subprocess.run(["ip", "link", "del", dev], capture_output=True)


def spec(n: Names, mtu: int = 1400) -> dict[str, Any]:
    return {
        "stack": n.stack,
        "namespaces": [{"name": n.ns}],
        "links": [
            {
                "name": n.dev,
                "kind": "veth",
                "mtu": mtu,
                "addresses": ["10.236.0.1/32"],
                "peer": {"name": "eth0", "namespace": n.ns, "addresses": ["10.236.1.2/32"]},
            }
        ],
        "routes": [{"to": "10.236.1.2/32", "dev": n.dev}, {"namespace": n.ns, "to": "default", "dev": "eth0"}],
    }


def links(ns: str | None = None) -> dict[str, dict[str, Any]]:
    return {d["ifname"]: d for d in ip_json("-d", "link", "show", ns=ns)}


def netns() -> set[str]:
    return {n["name"] for n in ip_json("netns", "list")}


def absent(n: Names) -> None:
    assert n.dev not in links(), f"{n.dev} exists"
    assert n.ns not in netns(), f"{n.ns} exists"


def test_the_controller_is_a_supported_ansible_core() -> None:
    """The playbooks below run under the ansible-core this run is meant to test (scripts/test sets
    NKPLAN_ANSIBLE_CORE per minor version), and that version is in the collection's declared range."""
    version = core_version()
    wanted = os.environ.get("NKPLAN_ANSIBLE_CORE")
    if wanted:
        assert version.startswith(f"{wanted}."), (version, wanted)
    minor = tuple(int(part) for part in version.split(".")[:2])
    runtime = (REPO / "ansible_collections/nkplan/netkit/meta/runtime.yml").read_text()
    assert 'requires_ansible: ">=2.15,<2.20"' in runtime and (2, 15) <= minor < (2, 20), (version, runtime)


def test_check_apply_idempotent_update_gather_absent(names: Names, tmp_path: Path) -> None:
    n = names
    # --check --diff: the planned creates, and nothing in the kernel
    run = playbook(tmp_path, {"config": spec(n)}, "--check", "--diff")
    assert run.rc == 0, str(run)
    assert run.recap["changed"] == 1 and run.recap["failed"] == 0, str(run)
    assert f"+++ after: link[{n.dev}] (planned: create)" in run.output, str(run)
    assert "+primary.mtu: 1400" in run.output and f'+peer.namespace: "{n.ns}"' in run.output, str(run)
    assert f"+++ after: namespace[{n.ns}] (planned: create)" in run.output, str(run)
    assert run.result["changed"] is True and run.result["plan"]["has_changes"] is True
    assert run.result["summary"] == {"add": 4, "change": 0, "destroy": 0, "replace": 0, "unchanged": 0}
    assert [d["after_header"] for d in run.result["diff"]][0] == f"namespace[{n.ns}] (planned: create)"
    assert "stdout" not in run.result  # nothing was applied
    absent(n)

    # a real run applies
    run = playbook(tmp_path, {"config": spec(n)})
    assert run.rc == 0 and run.recap["changed"] == 1, str(run)
    assert "Apply complete!" in run.result["stdout"], str(run)
    dev = links()[n.dev]
    assert dev["linkinfo"]["info_kind"] == "veth" and dev["mtu"] == 1400
    addrs = [f"{a['local']}/{a['prefixlen']}" for a in ip_json("addr", "show", "dev", n.dev)[0]["addr_info"]]
    assert [a for a in addrs if not a.startswith("fe80:")] == ["10.236.0.1/32"]
    peer = links(n.ns)["eth0"]
    assert peer["mtu"] == 1400 and "UP" in peer["flags"]
    routes = ip_json("route", "show", "dev", n.dev)
    assert any(r["dst"] == "10.236.1.2" and str(r.get("protocol")) == "237" for r in routes), routes

    # a second run: ok, changed=0
    run = playbook(tmp_path, {"config": spec(n)}, "--diff")
    assert run.rc == 0 and run.recap["changed"] == 0, str(run)
    assert run.result["changed"] is False and run.result["summary"]["unchanged"] == 4
    assert run.result.get("diff", []) == []

    # an update in check mode: planned honestly, nothing changes; the diff shows only the MTUs
    run = playbook(tmp_path, {"config": spec(n, mtu=1300)}, "--check", "--diff")
    assert run.rc == 0 and run.recap["changed"] == 1, str(run)
    assert run.result["summary"]["change"] == 1
    assert "-primary.mtu: 1400\n+primary.mtu: 1300" in run.output, str(run)
    assert "mac" not in "".join(line for line in run.output.splitlines() if line[:1] in "+-" and "mac" in line)
    assert links()[n.dev]["mtu"] == 1400

    # gathered: the live stack as data
    run = playbook(tmp_path, {"stack": n.stack, "state": "gathered"})
    assert run.rc == 0 and run.recap["changed"] == 0, str(run)
    got = run.result["gathered"]
    assert got["stack"] == n.stack and run.result["exists"] is True
    assert [ns["name"] for ns in got["namespaces"]] == [n.ns]
    assert [(link["name"], link["kind"], link["peer"]["namespace"]) for link in got["links"]] == [(n.dev, "veth", n.ns)]
    assert any(d["primary"]["name"] == n.dev for d in run.result["snapshot"]["links"])

    # absent: check mode plans the deletes and keeps everything; the real run removes; again: ok
    run = playbook(tmp_path, {"stack": n.stack, "state": "absent"}, "--check", "--diff")
    assert run.rc == 0 and run.recap["changed"] == 1, str(run)
    assert run.result["summary"]["destroy"] == 4
    assert f"--- before: link[{n.dev}] (live)" in run.output, str(run)
    assert n.dev in links() and n.ns in netns()
    run = playbook(tmp_path, {"stack": n.stack, "state": "absent"})
    assert run.rc == 0 and run.recap["changed"] == 1, str(run)
    absent(n)
    run = playbook(tmp_path, {"stack": n.stack, "state": "absent"})
    assert run.rc == 0 and run.recap["changed"] == 0, str(run)


def test_spec_error_fails_with_file_line(names: Names, tmp_path: Path) -> None:
    n = names
    path = tmp_path / "bad.yaml"
    path.write_text(f"stack: {n.stack}\nlinks:\n  - name: {n.dev}\n    kind: vethx\n    peer: {{name: eth0}}\n")
    run = playbook(tmp_path, {"src": str(path)})
    assert run.rc != 0 and run.recap["failed"] == 1, str(run)
    assert f"{path}:4:11: links[0].kind:" in run.output, str(run)
    assert "nothing was changed" in run.output
    assert n.dev not in links()

    # an inline YAML string keeps its own lines, named <config>
    run = playbook(tmp_path, {"config": path.read_text()})
    assert run.rc != 0 and "<config>:4:11: links[0].kind:" in run.output, str(run)


def test_lost_output_is_read_again(names: Names, tmp_path: Path) -> None:
    """run_command can lose the stdout of a command that exits during a select() timeout: the
    module runs a read-only command again when its JSON came back empty. Here an nkplan wrapper
    prints nothing (exit 0) on its first call, as if the output had been lost."""
    n = names
    marker = tmp_path / "first-call-done"
    wrapper = tmp_path / "nkplan-lossy"
    wrapper.write_text(
        f"#!/bin/sh\nif [ ! -e {marker} ]; then touch {marker}; exit 0; fi\n"
        f'exec {sys.executable} -m nkplan.cli "$@"\n'
    )
    wrapper.chmod(0o755)
    run = playbook(tmp_path, {"config": spec(n), "nkplan_executable": str(wrapper)}, "--check")
    assert run.rc == 0 and run.recap["changed"] == 1, str(run)
    assert marker.exists() and run.result["summary"]["add"] == 4, run.result  # namespace, pair, 2 routes
    assert n.dev not in links()  # check mode: nothing applied


def test_src_and_adopt(names: Names, tmp_path: Path) -> None:
    n = names
    subprocess.run(["ip", "link", "add", n.hand, "type", "veth", "peer", "name", n.hand + "p"], check=True)
    path = tmp_path / "spec.yaml"
    path.write_text(
        f"stack: {n.stack}\nlinks:\n  - {{name: {n.hand}, kind: veth, mtu: 1450, peer: {{name: {n.hand}p}}}}\n"
    )
    run = playbook(tmp_path, {"src": str(path)}, "--check")
    assert run.rc != 0 and run.recap["failed"] == 1, str(run)
    assert n.hand in run.output and "--adopt" in run.output, run  # the plan names the object and the way out

    run = playbook(tmp_path, {"src": str(path), "adopt": True, "stack": n.stack})
    assert run.rc == 0 and run.recap["changed"] == 1, str(run)
    assert links()[n.hand]["mtu"] == 1450
    run = playbook(tmp_path, {"src": str(path)})
    assert run.rc == 0 and run.recap["changed"] == 0, str(run)

    # the stack option is a safety check against the wrong spec
    run = playbook(tmp_path, {"src": str(path), "stack": "someone-else"})
    assert run.rc != 0 and "not for stack 'someone-else'" in run.output, str(run)
