#!/usr/bin/env python3
"""The systemd units on a real systemd boot: a Debian trixie root with systemd as PID 1, booted
in the VM rig on a netkit kernel (virtme-ng --systemd), nkplan installed in it the way a user
would (a venv, pip, `nkplan install-units`, `systemctl enable`). Checked inside the guest after
boot, with systemctl, journalctl and iproute2:

* nkplan@demo.service applied /etc/nkplan/demo.yaml (a netkit pair) at boot, before
  network-pre.target; the stack exists (ip -d) and plans to no changes;
* nkplan@broken.service (a spec error) failed with nkplan's message (file:line:col) in the
  journal and changed nothing;
* nkplan-drift@demo.timer is active; after a hand change its service fails and logs the drift.

    python tests/vm/systemd_boot.py [--kernel 7] [--keep]

The root (debootstrap minbase + systemd, udev, iproute2, python3) is built once and cached under
~/.cache/nkplan/systemd-root; each run boots a fresh copy of it. Exit 0 only when every check
passed; a root or guest that cannot boot is a failure, said loudly."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rig  # noqa: E402

PACKAGES = ("systemd", "systemd-sysv", "udev", "iproute2", "python3", "python3-venv", "kmod", "procps")
MARKER = ".nkplan-systemd-root.json"
GUEST_PYTHON = "3.13"  # trixie's python3: the wheels nkplan's dependencies need
DEPENDENCIES = ("pydantic>=2.5,<3", "pyroute2>=0.9,<0.10", "ruamel.yaml>=0.18", "ruamel.yaml.clib>=0.2.8")
TIMEOUT = 900.0

DEMO = """\
stack: demo
namespaces: [{name: pod-a}]
links:
  - name: nk-demo
    kind: netkit
    mode: l3
    addresses: [10.77.0.1/32]
    peer: {name: eth0, namespace: pod-a, addresses: [10.77.1.2/32]}
routes:
  - {to: 10.77.1.2/32, dev: nk-demo}
  - {namespace: pod-a, to: default, dev: eth0}
"""
BROKEN = """\
stack: broken
namespaces: [{name: broken-ns}]
links:
  - name: nk-broken
    kind: netkit
    addresses: [10.78.0.300/32]
    peer: {name: eth0, namespace: broken-ns}
"""

CHECKS = r"""#!/bin/bash
# Runs in the guest after systemd booted it (vng --exec); results go to $1/log.
OUT=$1
exec >"$OUT/log" 2>&1 </dev/null
echo "[systemd] guest up: kernel $(uname -r), PID 1 is $(cat /proc/1/comm)"
echo up >"$OUT/booted"
export PATH=/opt/nkplan/bin:/usr/sbin:/usr/bin:/sbin:/bin
failed=0
check() { # check NAME COMMAND...
    local name=$1; shift
    if "$@" >/tmp/check.out 2>&1; then echo "PASS  $name"
    else echo "FAIL  $name"; sed 's/^/      | /' /tmp/check.out; failed=1; fi
}
timeout 300 systemctl is-system-running --wait || true  # "degraded": nkplan@broken failed, as it should
systemctl --no-pager list-units 'nkplan*' --all
before() { # before A B: unit A became active before unit B did
    local a b
    a=$(systemctl show -P ActiveEnterTimestampMonotonic "$1"); b=$(systemctl show -P ActiveEnterTimestampMonotonic "$2")
    echo "$1 at $a, $2 at $b"; [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ "$a" -le "$b" ]
}
check "PID 1 is systemd" grep -qx systemd /proc/1/comm
check "nkplan@demo.service is active" systemctl is-active nkplan@demo.service
check "nkplan@demo ran before network-pre.target" before nkplan@demo.service network-pre.target
check "the netkit pair exists (ip -d)" sh -c 'ip -d -j link show dev nk-demo | grep -q "\"info_kind\":\"netkit\""'
check "its peer is in pod-a with its address" sh -c 'ip -n pod-a -j addr show dev eth0 | grep -q 10.77.1.2'
check "demo plans to no changes" nkplan plan /etc/nkplan/demo.yaml --detailed-exitcode
check "nkplan@broken.service failed" systemctl is-failed nkplan@broken.service
check "the journal has nkplan's message" sh -c \
  'journalctl -b -u nkplan@broken.service --no-pager |
   grep -E "error: /etc/nkplan/broken.yaml:[0-9]+:[0-9]+: .*10.78.0.300"'
check "broken changed nothing" sh -c '! ip netns list | grep -q broken-ns && ! ip link show dev nk-broken'
check "nkplan-drift@demo.timer is active" systemctl is-active nkplan-drift@demo.timer
check "no drift yet" systemctl start nkplan-drift@demo.service
ip link set dev nk-demo mtu 1300
check "after a hand change the drift service fails" sh -c '! systemctl start nkplan-drift@demo.service'
check "and logs the drift" sh -c \
  'journalctl -b -u nkplan-drift@demo.service --no-pager |
   grep -E "drift: stack .demo. differs from /etc/nkplan/demo.yaml: 1 change"'
journalctl -b -u 'nkplan*' --no-pager | tail -40
echo "[systemd] result: $([ $failed = 0 ] && echo PASS || echo FAIL)"
echo $failed >"$OUT/status.tmp" && mv "$OUT/status.tmp" "$OUT/status"
sync
"""


def root_dir() -> Path:
    return rig.cache_dir() / "systemd-root"


def build_root() -> Path:
    """debootstrap the cached base root once (a few minutes; ~400 MB)."""
    root = root_dir()
    if (root / MARKER).is_file() and (root / "usr/lib/systemd/systemd").exists():
        return root
    if shutil.which("debootstrap") is None:
        rig.apt_install(["debootstrap"], "to build the systemd root")
    archive = rig.debian_archive()
    staging = root.with_name(f".staging-{root.name}")
    rig.rmtree(staging)
    rig.say(f"building the systemd root (debootstrap --variant=minbase trixie + {', '.join(PACKAGES)}) ...")
    t0 = time.monotonic()
    rig.run_cmd(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", f"--keyring={archive.signed_by}",
         "trixie", str(staging), archive.uri],
        what="debootstrap",
    )  # fmt: skip
    shutil.rmtree(staging / "var/cache/apt/archives", ignore_errors=True)
    meta = {"built": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "packages": list(PACKAGES)}
    (staging / MARKER).write_text(json.dumps(meta) + "\n", encoding="utf-8")
    rig.rmtree(root)
    os.replace(staging, root)
    rig.say(f"  built {rig.human_size(rig.dir_size(root))} at {root} in {time.monotonic() - t0:.0f} s")
    return root


def wheelhouse(dest: Path) -> None:
    """nkplan's wheel and its dependencies' wheels for the guest's Python, fetched on the host."""
    py = str(rig.venv_python())
    dest.mkdir(parents=True)
    # from a copy of the tree: setuptools would leave build/ in the checkout, and reuse a stale one
    src = dest.with_name("nkplan-src")
    junk = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(rig.REPO, src, ignore=junk)
    rig.run_cmd([py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(src)], what="pip wheel")
    shutil.rmtree(src)
    plat = ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux_2_28_x86_64"]  # fmt: skip
    rig.run_cmd(
        [py, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", GUEST_PYTHON,
         "--implementation", "cp", *plat, "-d", str(dest), *DEPENDENCIES],
        what="pip download",
    )  # fmt: skip


def chroot(root: Path, *cmd: str) -> str:
    return rig.run_cmd(["chroot", str(root), *cmd], what=f"chroot {cmd[0]}")


def prepare_guest(root: Path, out: Path) -> None:
    """Install nkplan into the copy as a user would, with the two stacks' units enabled."""
    wheels = root / "tmp/wheels"
    wheelhouse(wheels)
    chroot(root, "python3", "-m", "venv", "/opt/nkplan")
    chroot(root, "/opt/nkplan/bin/pip", "install", "-q", "--no-index", "--find-links", "/tmp/wheels", "nkplan")
    rig.say("  " + chroot(root, "/opt/nkplan/bin/nkplan", "install-units").splitlines()[0] + " ...")
    etc = root / "etc/nkplan"
    etc.mkdir(parents=True)
    (etc / "demo.yaml").write_text(DEMO, encoding="utf-8")
    (etc / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    chroot(root, "systemctl", "enable", "nkplan@demo.service", "nkplan@broken.service", "nkplan-drift@demo.timer")
    (root / "etc/hostname").write_text("nkplan-systemd\n", encoding="utf-8")
    (root / "etc/machine-id").write_text("", encoding="utf-8")  # systemd makes one at boot
    (out / "checks.sh").write_text(CHECKS, encoding="utf-8")
    shutil.rmtree(wheels)


def run(key: str, keep: bool) -> int:
    rig.ensure(quiet=True)
    kernel = rig.fetch_kernels([key])[key]
    base = build_root()
    out = rig.new_outdir(f"systemd-{key}")
    guest_root = out / "root"
    t0 = time.monotonic()
    rig.run_cmd(["cp", "-a", "--reflink=auto", str(base), str(guest_root)], what="copying the systemd root")
    results = guest_root / "nkplan-out"  # the root is shared read-write: the guest writes here
    results.mkdir()
    prepare_guest(guest_root, results)
    rig.say(f"systemd root ready in {time.monotonic() - t0:.0f} s; booting {kernel.release} with systemd as PID 1")
    vng = rig.vng_binary()
    argv = [
        str(vng), "--run", str(kernel.vmlinuz), "--root", str(guest_root), "--rw", "--systemd",
        "--disable-kvm", "--cpus", "1", "--memory", "1G", "--force-9p", "--verbose",
        "--exec", "/bin/bash /nkplan-out/checks.sh /nkplan-out",
    ]  # fmt: skip
    (out / "vng-argv.txt").write_text(shlex.join(argv) + "\n", encoding="utf-8")
    env = dict(os.environ, PATH=f"{vng.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    t1 = time.monotonic()
    with (out / "vng.log").open("wb") as vlog:
        try:
            subprocess.run(argv, cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=vlog, stderr=subprocess.STDOUT,
                           timeout=TIMEOUT, start_new_session=True)  # fmt: skip
        except subprocess.TimeoutExpired:
            rig.say(f"the guest did not finish within {TIMEOUT:.0f} s")
    elapsed = time.monotonic() - t1
    for name in ("log", "status", "booted"):
        if (results / name).is_file():
            shutil.copy(results / name, out / name)
    log = (out / "log").read_text(encoding="utf-8", errors="replace") if (out / "log").is_file() else ""
    for line in log.splitlines():
        print(f"[systemd {key}] {line}")
    status_file = out / "status"
    if not keep:
        rig.rmtree(guest_root)
    if not status_file.is_file():
        bar = "!" * 78
        tail = (out / "vng.log").read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
        print(bar, file=sys.stderr)
        print(f"systemd boot: kernel {kernel.release}: no result from the guest after {elapsed:.0f} s "
              f"({'booted' if (out / 'booted').is_file() else 'never reached the checks'}); last lines of vng.log:",
              file=sys.stderr)  # fmt: skip
        for line in tail:
            print(f"  | {line}", file=sys.stderr)
        print(bar, file=sys.stderr, flush=True)
        return rig.EXIT_NO_BOOT
    ok = status_file.read_text().strip() == "0"
    verdict = "PASS" if ok else "FAIL"
    rig.say(f"systemd boot on {kernel.release}: {verdict} after {elapsed:.0f} s in the guest (logs: {out})")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", default="7", help="kernel series of the rig (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the guest's root copy in the run folder")
    args = ap.parse_args()
    try:
        return run(args.kernel, args.keep)
    except rig.RigError as exc:
        print(f"systemd boot: {exc}", file=sys.stderr)
        return rig.EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
