"""One real-kernel test run per kernel at a time, and no leftovers of a killed run in the next.

Every object a run makes carries the run's TOKEN in its name (tests/realkernel.py). A run that is
killed (a session stopped mid-test, a CI timeout) cannot clean up, and the next run on the same
kernel then trips over what it left: the same fixed test addresses on a device that survived
("a route to 10.232.1.2/32 with that metric already exists"). So a run

1. takes the kernel-wide test lock: an abstract unix socket, which lives in the network namespace
   rather than a file system (runs from other checkouts, containers or mount namespaces on the same
   kernel see it), and which the kernel releases when the holder dies, however it dies;
2. holding it, knows no other test run is alive on this kernel, and removes what earlier runs
   left: each run marks itself with a namespace `nkt-<TOKEN>` for its lifetime; a mark found at
   start belongs to a dead run, whose namespaces, host devices, bpffs stack trees and host rules
   (found through the stack's rule markers) are removed — only objects named exactly as test runs
   name theirs, with that run's token (`_test_name`);
3. marks itself and removes its mark when it ends cleanly.
Host sysctls a killed run changed cannot be put back (nothing recorded their old values)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.realkernel import TOKEN, ip_json

LOCK_NAME = b"\0nkplan-real-kernel-tests"
MARK_PREFIX = "nkt-"
MARK = f"{MARK_PREFIX}{TOKEN}"
BPFFS_ROOT = Path("/sys/fs/bpf/nkplan")
WAIT_LIMIT = 3600.0  # s: a whole CI run of the other holder, with margin
_MARK_RE = re.compile(rf"^{MARK_PREFIX}([0-9a-f]{{4}})$")
_lock: socket.socket | None = None


def acquire(limit: float = WAIT_LIMIT) -> None:
    """Hold the kernel-wide test lock for the rest of this process (idempotent); wait for it while
    another run holds it, saying so."""
    global _lock
    if _lock is not None:
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    start = last_said = time.monotonic()
    while True:
        try:
            sock.bind(LOCK_NAME)
            break
        except OSError:
            now = time.monotonic()
            if now - start > limit:
                sock.close()
                raise RuntimeError(f"another real-kernel test run held the kernel for {limit:.0f} s") from None
            if now - last_said >= 30 or now == start:
                print(
                    f"\n[testrun] another real-kernel test run holds this kernel; waiting ({now - start:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                last_said = now
            time.sleep(1)
    _lock = sock


def _test_name(token: str) -> re.Pattern[str]:
    """The names test runs give their objects (tests/host/conftest.py Names, tests/host/
    test_cli_veth.py Names, the decoy, tests/ansible), with `token` where they put it: a name must
    match one of these whole patterns, so a device or stack that merely contains the four hex
    digits (a container runtime's vethcafe123, a stack named edge-cafe) is never taken."""
    t = re.escape(token)
    families = [
        rf"k{t}[0-9a-f]{{2}}.*",  # tests/host/conftest.py Names: k<TOKEN><serial><suffix>
        rf"stk{t}[0-9a-f]{{2}}",  # ... and its stack
        rf"decoy-{t}x|dcy{t}[hp]",  # the session decoy
        rf"(e2e|pa|pb|va|vb|vc)-{t}[0-9]*",  # tests/host/test_cli_veth.py Names (+ pod numbers)
        rf"kx{t}z[yz]",  # tests/host/test_testrun.py
        rf"ans[0-9a-z]{{0,4}}-{t}(-a)?|a[vh][0-9a-z]{{0,4}}{t}",  # tests/ansible/test_playbooks.py
        rf"fleet[0-9]+-{t}|afl[0-9]+-{t}(-a)?|af[0-9]+{t}|bad-{t}",  # tests/ansible/test_fleet.py
    ]
    return re.compile("|".join(f"(?:{f})" for f in families))


def _ours(name: str, token: str) -> bool:
    return _test_name(token).fullmatch(name) is not None


def _netns() -> list[str]:
    return [n["name"] for n in ip_json("netns", "list")]


def _quiet(*cmd: str) -> None:
    subprocess.run(cmd, capture_output=True)


def _rule_markers(stack_dir: Path) -> set[str]:
    """The <family>-<priority> of a stack's host rule markers (<stack>/:host/:rules/…@<digest>)."""
    return {m.name.partition("@")[0] for m in stack_dir.glob("*/:rules/*")}


def _reap_rules(stack_dir: Path) -> None:
    """Host rules the dead run's stack applied (nkplan's protocol, family and priority from its
    markers) — unless another stack's marker claims the same family and priority: then it is that
    stack's rule as much as the dead run's, and it stays."""
    others = set()
    for other in BPFFS_ROOT.iterdir():
        if other != stack_dir:
            others |= _rule_markers(other)
    for head in _rule_markers(stack_dir) - others:
        family, _, prio = head.partition("-")
        if family in ("inet", "inet6") and prio.isdigit():
            flag = "-4" if family == "inet" else "-6"
            _quiet("ip", flag, "rule", "del", "priority", prio, "protocol", "237")


def _remove_tree(path: Path) -> None:
    # bpffs: unlink pins, rmdir directories, bottom up (no rm -r across file systems needed)
    for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        (sub.rmdir if sub.is_dir() and not sub.is_symlink() else sub.unlink)()
    path.rmdir()


def reap(token: str) -> list[str]:
    """Remove what the dead run `token` left; returns what was removed, for the log."""
    gone = []
    if BPFFS_ROOT.is_dir():
        for stack in BPFFS_ROOT.iterdir():
            if _ours(stack.name, token):
                _reap_rules(stack)
                _remove_tree(stack)
                gone.append(f"bpffs {stack.name}")
    for dev in ip_json("-d", "link", "show"):
        # devices first: a namespace goes away asynchronously, and its veth peers with it
        # only virtual devices (a kind: veth, netkit, dummy, …) can be a test's
        if _ours(dev["ifname"], token) and dev.get("linkinfo", {}).get("info_kind"):
            _quiet("ip", "link", "del", dev["ifname"])
            gone.append(f"link {dev['ifname']}")
    for ns in _netns():
        if _ours(ns, token):
            _quiet("ip", "netns", "del", ns)
            gone.append(f"netns {ns}")
    _quiet("ip", "netns", "del", f"{MARK_PREFIX}{token}")
    return gone


def begin() -> None:
    """Lock, reap the leftovers of dead runs, mark this run. Root only."""
    acquire()
    for ns in _netns():
        m = _MARK_RE.match(ns)
        if m and m.group(1) != TOKEN:
            gone = reap(m.group(1))
            print(
                f"\n[testrun] removed what killed test run {m.group(1)} left: {', '.join(gone) or 'nothing'}",
                file=sys.stderr,
                flush=True,
            )
    if MARK not in _netns():
        subprocess.run(["ip", "netns", "add", MARK], check=True)


def end() -> None:
    _quiet("ip", "netns", "del", MARK)
