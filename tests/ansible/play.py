"""Running real `ansible-playbook` against localhost for the nkplan.netkit collection's tests.

The collection is taken from the checkout (ANSIBLE_COLLECTIONS_PATH = the repository root), the
module runs under this venv's Python (set explicitly: interpreter discovery on this machine finds a
broken pyenv shim), and everything Ansible writes goes below the test's tmp_path. The playbook is
written as JSON (which is YAML). The test callback `callback_plugins/nkplan_record.py` records each
task's result as JSON, so tests read structured results, while the PLAY RECAP and the diff come
from the default callback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # this venv: `nkplan`, and the module's interpreter
# The controller: this venv's ansible-core unless NKPLAN_ANSIBLE_BIN names the bin directory of
# another one (scripts/test runs the playbooks once per supported ansible-core minor version).
ANSIBLE_BIN = Path(os.environ.get("NKPLAN_ANSIBLE_BIN", BIN))
RECAP = re.compile(r"^localhost\s+:\s+(.*)$", re.M)
HOST_RECAP = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.M)


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    recap: dict[str, int]
    results: dict[str, dict[str, Any]]  # task name → its result (with "_status": ok|failed|skipped)
    seconds: float

    def host(self, name: str) -> dict[str, dict[str, Any]]:
        """Task name → result for one host of a play on several hosts."""
        hosts: dict[str, dict[str, dict[str, Any]]] = self.results.get("_hosts", {})
        return hosts.get(name, {})

    @property
    def hosts_recap(self) -> dict[str, dict[str, int]]:
        """Host → its PLAY RECAP counts."""
        return {host: _counts(line) for host, line in HOST_RECAP.findall(self.stdout)}

    @property
    def result(self) -> dict[str, Any]:
        """The result of the task named "stack" ({} if it did not run)."""
        return self.results.get("stack", {})

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"ansible-playbook → {self.rc} in {self.seconds:.1f} s\n{self.stdout}\n{self.stderr}"


def env(tmp: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    home = Path(out.get("HOME", "/tmp/home"))
    if not os.access(home, os.W_OK):  # the VM guest sets HOME=/tmp/home; be safe anyway
        out["HOME"] = str(tmp / "home")
    out.update(
        PATH=f"{BIN}{os.pathsep}{out.get('PATH', '')}",  # this venv's `nkplan` is the one found
        ANSIBLE_COLLECTIONS_PATH=str(REPO),
        ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).parent / "callback_plugins"),
        ANSIBLE_CALLBACKS_ENABLED="nkplan_record",
        NKPLAN_RECORD=str(tmp / "results.json"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-remote"),
        ANSIBLE_PIPELINING="1",  # no module file to write, chmod and remove per task
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        NO_COLOR="1",
    )
    return out


def core_version() -> str:
    """The controller's ansible-core version, e.g. "2.15.13"."""
    out = subprocess.run([str(ANSIBLE_BIN / "ansible-playbook"), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"\[core ([0-9.]+)", out)
    assert m, out
    return m.group(1)


def _counts(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def _run(tmp: Path, args: list[str], timeout: float) -> Run:
    record = tmp / "results.json"
    record.unlink(missing_ok=True)
    for sub in ("ansible-local", "ansible-remote"):  # made beforehand: no warning about their mode
        (tmp / sub).mkdir(mode=0o700, exist_ok=True)
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(ANSIBLE_BIN / "ansible-playbook"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,  # no ansible.cfg of the checkout or the caller
        env=env(tmp),
    )
    seconds = time.monotonic() - t0
    m = RECAP.search(proc.stdout)
    recap = _counts(m.group(1)) if m else {}
    results = json.loads(record.read_text()) if record.exists() else {}
    return Run(proc.returncode, proc.stdout, proc.stderr, recap, results, seconds)


def run_playbook(tmp: Path, path: Path, inventory: Path, *flags: str, timeout: float = 600) -> Run:
    """An existing playbook file (e.g. a copy of an example) against an inventory file."""
    return _run(tmp, ["-i", str(inventory), str(path), *flags], timeout)


def run_tasks(tmp: Path, tasks: list[dict[str, Any]], *flags: str, timeout: float = 300) -> Run:
    """One play on localhost (connection local, no facts) with these tasks; flags e.g. "--check"."""
    play = [
        {
            "name": "nkplan",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "tasks": tasks,
        }
    ]
    path = tmp / "playbook.yml"
    path.write_text(json.dumps(play, indent=2))
    return _run(tmp, ["-i", "localhost,", str(path), *flags], timeout)


def playbook(tmp: Path, module_args: dict[str, Any], *flags: str, timeout: float = 300) -> Run:
    """A play with one task, "stack": nkplan.netkit.stack with module_args."""
    return run_tasks(tmp, [{"name": "stack", "nkplan.netkit.stack": module_args}], *flags, timeout=timeout)
