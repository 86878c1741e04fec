"""The nkplan.netkit collection on netkit, inside the VM rig (each Debian kernel), in one real
`ansible-playbook` run with three tasks on one netkit L2 pair spec: check mode with diff (plans the
creates), a real run (applies), the same again (ok, changed=0). Afterwards Debian trixie's
iproute2 (an independent observer) shows the device with its mode and policies.

Python runs ~35x slower in the emulated guest (an ansible-playbook start alone takes ~40 s), so
this is one playbook; that check mode changes nothing in the kernel is checked with veth on the
host (tests/ansible). The cleanup runs in-process. Ansible writes only below tmp_path (/tmp in the
guest) and HOME (/tmp/home)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.play import run_tasks

pytestmark = pytest.mark.netkit
TRIXIE_IP = str(Path(__file__).resolve().parents[1] / "vm" / "trixie-ip")


def observe(*args: str, ns: str | None = None) -> Any:
    cmd = [TRIXIE_IP, "-j", *(["-n", ns] if ns else []), *args]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout or "[]")


@pytest.fixture
def names(token: str) -> Iterator[tuple[str, str, str]]:
    stack, ns, dev = f"ansnk{token}", f"ansnk{token}-a", f"ank{token}"
    yield stack, ns, dev
    from nkplan.kernel.linux import LinuxKernel
    from nkplan.run.workflow import apply_and_verify, empty_spec, plan_for

    kernel, loaded = LinuxKernel(), empty_spec(stack)
    try:
        apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", dev], capture_output=True)


def test_playbook_check_apply_ok_on_netkit(names: tuple[str, str, str], tmp_path: Path) -> None:
    stack, ns, dev = names
    config = {
        "stack": stack,
        "namespaces": [{"name": ns}],
        "links": [
            {
                "name": dev,
                "kind": "netkit",
                "mode": "l2",
                "policy": "forward",
                "addresses": ["10.252.0.1/24"],
                "peer": {"name": "eth0", "namespace": ns, "policy": "blackhole", "addresses": ["10.252.0.2/24"]},
            }
        ],
    }
    task = {"nkplan.netkit.stack": {"config": config}}
    run = run_tasks(
        tmp_path,
        [
            {"name": "check", **task, "check_mode": True, "diff": True},
            {"name": "apply", **task},
            {"name": "again", **task},
        ],
        timeout=900,
    )
    tasks = ", ".join(f"{name} {r.get('_seconds', 0):.0f} s" for name, r in run.results.items())
    print(f"ansible-playbook: {run.seconds:.0f} s (tasks: {tasks})")
    assert run.rc == 0 and run.recap["changed"] == 2 and run.recap["ok"] == 3, str(run)
    check, apply, again = (run.results[t] for t in ("check", "apply", "again"))
    assert check["changed"] is True and check["summary"]["add"] == 2 and "stdout" not in check
    assert f"link[{dev}] (planned: create)" in [d["after_header"] for d in check["diff"]]
    assert f"+++ after: link[{dev}] (planned: create)" in run.stdout and '+mode: "l2"' in run.stdout, str(run)
    assert apply["changed"] is True and "Apply complete!" in apply["stdout"]
    assert apply["plan"]["resource_changes"] == check["plan"]["resource_changes"]  # check mode told the truth
    assert again["changed"] is False and again["summary"]["unchanged"] == 2

    (primary,) = observe("-d", "link", "show", "dev", dev)
    data = primary["linkinfo"]["info_data"]
    assert primary["linkinfo"]["info_kind"] == "netkit", primary
    assert data["mode"] == "l2" and data["type"] == "primary", data
    assert data["policy"] == "forward" and data["peer_policy"] == "blackhole", data
    (peer,) = observe("-d", "link", "show", "dev", "eth0", ns=ns)
    assert peer["linkinfo"]["info_data"]["type"] == "peer"
