"""Signed saved plans on the host kernel, through the real `nkplan` command: with a verification
key configured (NKPLAN_PLAN_VERIFY_KEY, as a CI runner would set it), an unsigned plan and a plan
forged without the key (edited, its checksum made again) are refused with exit 1 and the kernel
is unchanged (read with iproute2); the plan signed with the key applies."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from nkplan.documents.savedplan import _digest
from tests.host.test_cli_veth import NKPLAN, Names, exists, link, names, netns, spec_text, write

__all__ = ["names"]  # the e2e names fixture (overrides the kernel tests' one in conftest)
from tests.realkernel import host_snapshot

pytestmark = pytest.mark.host


def nkplan(*args: str, env: dict[str, str], check: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*NKPLAN, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == check, f"nkplan {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def test_apply_refuses_unsigned_and_forged_plans(names: Names, tmp_path: Path) -> None:
    n = names
    key = tmp_path / "plan.key"
    key.write_bytes(os.urandom(32).hex().encode() + b"\n")
    path = write(tmp_path, spec_text(n, vb="", vc=""))
    verify = {"NKPLAN_PLAN_VERIFY_KEY": str(key)}
    unsigned, signed, forged = (str(tmp_path / f"{k}.json") for k in ("unsigned", "signed", "forged"))
    nkplan("plan", path, "--out", unsigned, env={}, check=0)
    nkplan("plan", path, "--out", signed, "--sign-key", str(key), env={}, check=0)
    doc = json.loads(Path(signed).read_text())  # a forger without the key: mtu changed, checksum redone
    doc["spec"]["text"] = doc["spec"]["text"].replace("mtu: 1400", "mtu: 1300")
    for op in doc["operations"]:
        if op["after"] and "mtu" in json.dumps(op["after"]):
            op["after"] = json.loads(json.dumps(op["after"]).replace("1400", "1300"))
    doc["checksum"] = _digest(doc)
    Path(forged).write_text(json.dumps(doc, indent=2))

    before = host_snapshot(), netns()
    assert not exists(n.va) and n.pa not in before[1]
    proc = nkplan("apply", unsigned, env=verify, check=1)
    assert "is not signed, and a verification key is configured" in proc.stderr, proc.stderr
    proc = nkplan("apply", forged, env=verify, check=1)
    assert "the plan was changed after it was signed" in proc.stderr, proc.stderr
    assert (host_snapshot(), netns()) == before and not exists(n.va)

    proc = nkplan("apply", signed, env=verify, check=0)
    assert "signature verified" in proc.stderr
    assert exists(n.va) and link(n.va)["mtu"] == 1400 and n.pa in netns()
