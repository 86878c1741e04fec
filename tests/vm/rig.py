#!/usr/bin/env python3
"""nkplan VM test rig: run commands under real Debian kernels that have netkit.

The host kernel is built without CONFIG_NETKIT, so everything that needs a real netkit device
runs in a throwaway QEMU guest (virtme-ng, TCG, one CPU) that shares the host's root filesystem
read-only. See /work/shared/KERNEL-TESTING.md for the facts this rig is built on.

Subcommands (run ``python tests/vm/rig.py -h`` for the options):

  fetch     download and unpack the two Debian kernels into the cache
  observer  build a Debian trixie root with iproute2 + bpftool (independent observers)
  ensure    install what booting needs (qemu, kmod, virtme-ng)
  run       boot one kernel and run a shell command in the guest
  run-all   prepare everything, run the command on every kernel, print a summary

Cache: ``${NKPLAN_CACHE:-$HOME/.cache/nkplan}``: apt/ (private apt sources, lists, cache),
kernels/<release>/ (dpkg -x of the packages + modules.dep; kernels/6.12 and kernels/7 are symlinks),
trixie-root/ (the observer), runs/<stamp>-<kernel>-<pid>/ (one per boot: guest.sh, cmd.sh, log,
status, vng.log; the last 20 are kept). Only the standard library is used.

In the guest: root, cwd = the checkout; / is the host's root over 9p, read-only (the checkout and
the venv too); /tmp, /run, /etc, /var are writable (RAM); $NKPLAN_VM_OUT is the run folder,
writable and seen by the host. Environment: NKPLAN_IN_VM=1, NKPLAN_KERNEL=<release, as uname -r>,
NKPLAN_KERNEL_SERIES=6.12|7, NKPLAN_CACHE, HOME=/tmp/home, PATH starts with the venv's bin/.

Results: PASS, FAIL (the command's status), NO-BOOT, TIMEOUT, CRASH (the guest stopped before
the command finished). Exit codes: 0 success; the guest command's own status when it failed;
2 rig/setup error; 3 no status came back from the guest (NO-BOOT, TIMEOUT, CRASH).
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VM_DIR = REPO / "tests" / "vm"

EXIT_SETUP = 2
EXIT_NO_BOOT = 3

DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_STALE_DAYS = 7
OBSERVER_PACKAGES = ("iproute2", "bpftool")
# Debian packages that booting needs (checked with dpkg-query, installed if missing)
APT_NEEDS = (
    "qemu-system-x86",
    "kmod",  # depmod for the unpacked kernels' modules.dep
    "busybox-static",  # vng builds an initramfs (Debian's 9p is modular) around a static busybox
    "file",  # vng reads the kernel version from the vmlinuz with it
)
KEEP_RUNS = 20


class RigError(Exception):
    """An expected failure: printed as one clear message, no traceback."""

    def __init__(self, message: str, code: int = EXIT_SETUP) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------------
# small helpers


def say(msg: str) -> None:
    print(f"[rig] {msg}", flush=True)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def cache_dir() -> Path:
    env = os.environ.get("NKPLAN_CACHE")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "nkplan"


def run_cmd(
    argv: Sequence[str],
    *,
    what: str,
    cwd: Path | None = None,
    quiet: bool = True,
    env: dict[str, str] | None = None,
) -> str:
    """Run argv; return stdout. On failure raise RigError with the command's output tail."""
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if quiet else None,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise RigError(f"{what}: command not found: {argv[0]}") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise RigError(f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n{tail}".rstrip())
    return proc.stdout


def rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def atomic_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


# --------------------------------------------------------------------------------------------
# private apt configuration (the system's apt config stays untouched)


@dataclasses.dataclass(frozen=True)
class Archive:
    uri: str
    signed_by: str


def debian_archive() -> Archive:
    """URIs / Signed-By of the main Debian archive, taken from the system's deb822 sources."""
    if not DEBIAN_SOURCES.exists():
        return Archive(DEFAULT_MIRROR, DEFAULT_KEYRING)
    stanzas = re.split(r"\n\s*\n", DEBIAN_SOURCES.read_text(encoding="utf-8"))
    for stanza in stanzas:
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        uris = fields.get("uris", "").split()
        suites = fields.get("suites", "").split()
        if not uris or not suites or all(s.endswith("-security") for s in suites):
            continue
        if "deb" not in fields.get("types", "deb").split():
            continue
        return Archive(uris[0], fields.get("signed-by", DEFAULT_KEYRING))
    raise RigError(f"no main Debian archive (URIs:/Suites:) found in {DEBIAN_SOURCES}")


class PrivateApt:
    """apt-get / apt-cache with their own sources, lists and cache under <cache>/apt."""

    SUITES = ("trixie", "trixie-backports")

    def __init__(self, cache: Path) -> None:
        self.root = cache / "apt"
        self.sources = self.root / "sources.list"
        self.lists = self.root / "lists"
        self.pkgcache = self.root / "cache"
        self.archive = debian_archive()

    def options(self) -> list[str]:
        return [
            "-o", f"Dir::Etc::SourceList={self.sources}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={self.lists}",
            "-o", f"Dir::Cache={self.pkgcache}",
            "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Languages=none",
        ]  # fmt: skip

    def prepare(self) -> None:
        (self.lists / "partial").mkdir(parents=True, exist_ok=True)
        (self.pkgcache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        text = "".join(
            f"deb [signed-by={self.archive.signed_by}] {self.archive.uri} {suite} main\n" for suite in self.SUITES
        )
        if not self.sources.exists() or self.sources.read_text(encoding="utf-8") != text:
            self.sources.write_text(text, encoding="utf-8")

    def lists_age_days(self) -> float | None:
        stamps = [p.stat().st_mtime for p in self.lists.glob("*_Packages*") if p.is_file()]
        if not stamps:
            return None
        return (time.time() - min(stamps)) / 86400

    def update(self) -> None:
        self.prepare()
        t0 = time.monotonic()
        say(f"updating private apt lists for {', '.join(self.SUITES)} ({self.archive.uri}) ...")
        run_cmd(["apt-get", *self.options(), "-q", "update"], what="apt-get update")
        say(f"  lists updated in {time.monotonic() - t0:.1f} s")

    def search_names(self, regex: str) -> list[str]:
        out = run_cmd(
            ["apt-cache", *self.options(), "search", "--names-only", regex],
            what="apt-cache search",
        )
        return [line.split(" - ", 1)[0].strip() for line in out.splitlines() if line.strip()]

    def versions_in_suite(self, packages: Sequence[str], suite: str) -> dict[str, list[str]]:
        """{package: versions available in suite, newest first} (one apt-cache call)."""
        found: dict[str, list[str]] = {p: [] for p in packages}
        if not packages:
            return found
        out = run_cmd(["apt-cache", *self.options(), "madison", *packages], what="apt-cache madison")
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 3 and parts[0] in found and f" {suite}/" in f" {parts[2].split(' ', 1)[-1]}":
                found[parts[0]].append(parts[1])
        return found

    def download(self, packages: Sequence[str], dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        run_cmd(
            ["apt-get", *self.options(), "-q", "download", *packages],
            what="apt-get download",
            cwd=dest,
        )
        debs = sorted(dest.glob("*.deb"))
        if len(debs) != len(packages):
            raise RigError(f"expected {len(packages)} .deb files in {dest}, found {len(debs)}")
        return debs


# --------------------------------------------------------------------------------------------
# kernels


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    key: str  # what the user types: --kernel 6.12
    suite: str
    # regex for the package that carries vmlinuz; group 1 is the kernel release (uname -r)
    image_re: str
    packages_fmt: tuple[str, ...]  # packages to fetch, "{rel}" is replaced by the release

    def packages(self, release: str) -> list[str]:
        return [p.format(rel=release) for p in self.packages_fmt]


KERNELS: dict[str, KernelSpec] = {
    "6.12": KernelSpec(
        key="6.12",
        suite="trixie",
        image_re=r"^linux-image-(6\.12\.\d+\+deb13-amd64)-unsigned$",
        packages_fmt=("linux-image-{rel}-unsigned",),
    ),
    "7": KernelSpec(
        key="7",
        suite="trixie-backports",
        image_re=r"^linux-binary-(7\.\d+\.\d+\+deb13-amd64)$",
        packages_fmt=("linux-binary-{rel}", "linux-modules-{rel}", "linux-base-{rel}"),
    ),
}

MARKER = ".nkplan-kernel.json"


@dataclasses.dataclass(frozen=True)
class Kernel:
    key: str
    release: str  # e.g. 6.12.117+deb13-amd64 (what uname -r says in the guest)
    root: Path  # <cache>/kernels/<release>
    vmlinuz: Path


def release_sort_key(release: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", release.split("+", 1)[0]))


def load_kernel(path: Path, key: str) -> Kernel | None:
    marker = path / MARKER
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
        vmlinuz = path / meta["vmlinuz"]
        release = str(meta["release"])
    except (OSError, ValueError, KeyError):
        return None
    if not vmlinuz.is_file():
        return None
    return Kernel(key=key, release=release, root=path, vmlinuz=vmlinuz)


def cached_kernel(cache: Path, key: str) -> Kernel | None:
    link = cache / "kernels" / key
    if not link.is_symlink():
        return None
    return load_kernel(link.resolve(), key)


def newest_release(apt: PrivateApt, spec: KernelSpec) -> tuple[str, dict[str, str]]:
    """Newest kernel release of spec in its suite, and {package: version} to download."""
    # apt-cache takes POSIX regexes (no \d): search by prefix, then filter with Python's re
    prefix = re.escape(spec.image_re[1:].split("(", 1)[0])
    names = [n for n in apt.search_names(f"^{prefix}") if re.match(spec.image_re, n)]
    available = apt.versions_in_suite(names, spec.suite)
    releases = [m.group(1) for n, v in available.items() if v and (m := re.match(spec.image_re, n))]
    if not releases:
        raise RigError(
            f"no package matching {spec.image_re} in suite {spec.suite}: the archive layout may have changed"
        )
    release = max(releases, key=release_sort_key)
    pins: dict[str, str] = {}
    for pkg, versions in apt.versions_in_suite(spec.packages(release), spec.suite).items():
        if not versions:
            raise RigError(f"package {pkg} is not in suite {spec.suite}")
        pins[pkg] = versions[0]  # madison lists the newest first
    return release, pins


def find_vmlinuz(root: Path, release: str) -> Path:
    for cand in (root / "boot" / f"vmlinuz-{release}", root / "usr/lib/modules" / release / "vmlinuz"):
        if cand.is_file():
            return cand
    found = sorted(root.glob("**/vmlinuz*"))
    if found:
        return found[0]
    raise RigError(f"no vmlinuz in the unpacked kernel under {root}")


def unpack_kernel(apt: PrivateApt, spec: KernelSpec, release: str, pins: dict[str, str]) -> Kernel:
    kernels = apt.root.parent / "kernels"
    final = kernels / release
    staging = kernels / f".staging-{release}"
    debs_dir = kernels / f".debs-{release}"
    rmtree(staging)
    rmtree(debs_dir)
    t0 = time.monotonic()
    say(f"fetching {spec.key} kernel {release} from {spec.suite}: {', '.join(pins)} ...")
    debs = apt.download([f"{p}={v}" for p, v in pins.items()], debs_dir)
    size = sum(d.stat().st_size for d in debs)
    dt = time.monotonic() - t0
    say(f"  downloaded {human_size(size)} in {dt:.1f} s")
    t1 = time.monotonic()
    staging.mkdir(parents=True)
    for deb in debs:
        run_cmd(["dpkg-deb", "-x", str(deb), str(staging)], what=f"unpacking {deb.name}")
    vmlinuz = find_vmlinuz(staging, release)
    moddir = staging / "usr/lib/modules" / release
    if not moddir.is_dir():
        raise RigError(f"no modules directory usr/lib/modules/{release} in {', '.join(pins)}")
    # vng finds the modules by walking up from the vmlinuz to <x>/usr/lib/modules/<release>;
    # it needs modules.dep there, which Debian's packages do not ship.
    if not (moddir / "modules.dep").is_file():
        if shutil.which("depmod") is None:
            raise RigError("depmod not found: run `python tests/vm/rig.py ensure` first")
        run_cmd(["depmod", "-a", "-b", str(staging / "usr"), release], what="depmod")
    if not (moddir / "modules.dep").is_file():
        raise RigError(f"depmod did not produce {moddir / 'modules.dep'}")
    meta = {
        "key": spec.key,
        "release": release,
        "suite": spec.suite,
        "packages": pins,
        "vmlinuz": str(vmlinuz.relative_to(staging)),
        "fetched": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    (staging / MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    rmtree(final)
    os.replace(staging, final)
    rmtree(debs_dir)
    say(f"  unpacked {human_size(dir_size(final))} into {final} in {time.monotonic() - t1:.1f} s")
    kernel = load_kernel(final, spec.key)
    assert kernel is not None
    return kernel


def fetch_kernels(keys: Sequence[str], refresh: bool = False) -> dict[str, Kernel]:
    cache = cache_dir()
    kernels_dir = cache / "kernels"
    kernels_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Kernel] = {}
    apt: PrivateApt | None = None
    updated = False
    for key in keys:
        spec = KERNELS[key]
        have = cached_kernel(cache, key)
        if have is not None and not refresh:
            result[key] = have
            continue
        if apt is None:
            apt = PrivateApt(cache)
        if not updated and (refresh or apt.lists_age_days() is None):
            apt.update()
            updated = True
        elif not updated:
            apt.prepare()
        release, pins = newest_release(apt, spec)
        kernel = load_kernel(kernels_dir / release, key)
        if kernel is None:
            kernel = unpack_kernel(apt, spec, release, pins)
        else:
            say(f"{key} kernel {release}: already unpacked")
        old = cached_kernel(cache, key)
        atomic_symlink(kernels_dir / key, release)
        if old is not None and old.release != release:
            say(f"  replacing {old.release} with {release}")
            rmtree(old.root)
        result[key] = kernel
    return result


def cmd_fetch(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    kernels = fetch_kernels(list(KERNELS), refresh=args.refresh)
    for key, k in kernels.items():
        say(f"kernel {key}: {k.release}  {k.vmlinuz}")
    age = PrivateApt(cache_dir()).lists_age_days()
    if age is not None and age > LISTS_STALE_DAYS and not args.refresh:
        say(
            f"note: the kernel lists are {age:.0f} days old; "
            "`python tests/vm/rig.py fetch --refresh` picks up newer kernels"
        )
    say(f"fetch done in {time.monotonic() - t0:.1f} s")
    return 0


# --------------------------------------------------------------------------------------------
# ensure: packages that booting needs


def venv_python() -> Path:
    """The python whose environment gets virtme-ng (and whose bin/ the guest's PATH gets)."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "bin" / "python"
    venv = REPO / ".venv" / "bin" / "python"
    if not venv.exists():
        raise RigError(f"no virtualenv: {venv} is missing and rig.py is not run from a venv")
    return venv


def vng_binary() -> Path:
    return venv_python().parent / "vng"


def apt_install(packages: Sequence[str], why: str) -> None:
    say(f"installing {' '.join(packages)} ({why}) ...")
    t0 = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        run_cmd(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            what="apt-get install",
            env=env,
        )
    except RigError:
        say("  apt-get install failed; retrying after apt-get update ...")
        run_cmd(["apt-get", "-q", "update"], what="apt-get update")
        run_cmd(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            what="apt-get install",
            env=env,
        )
    say(f"  installed in {time.monotonic() - t0:.1f} s")


def missing_packages(packages: Sequence[str]) -> list[str]:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n", *packages],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=False,
    )
    installed = {line.split()[0] for line in proc.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in packages if p not in installed]


def ensure(quiet: bool = True) -> None:
    missing = missing_packages(APT_NEEDS)
    if missing:
        apt_install(missing, "needed to boot the test VM")
    vng = vng_binary()
    if not vng.exists():
        python = venv_python()
        say(f"installing virtme-ng into {python.parent.parent} ...")
        run_cmd([str(python), "-m", "pip", "install", "-q", "virtme-ng"], what="pip install")
    if not vng.exists():
        raise RigError(f"virtme-ng is installed but {vng} is missing")
    if not quiet:
        say(f"ensure: qemu, kmod and {vng} present")


def cmd_ensure(args: argparse.Namespace) -> int:
    ensure(quiet=False)
    return 0


# --------------------------------------------------------------------------------------------
# observer: Debian trixie's iproute2 + bpftool, run through the trixie root's own loader


def observer_root() -> Path:
    return cache_dir() / "trixie-root"


OBSERVER_MARKER = ".nkplan-observer.json"


def build_observer(quiet: bool = True) -> Path:
    root = observer_root()
    marker = root / OBSERVER_MARKER
    if marker.is_file() and all((root / "usr/sbin" / b).exists() for b in ("ip", "bpftool")):
        if not quiet:
            say(f"observer: trixie root present at {root}")
        return root
    if shutil.which("debootstrap") is None:
        apt_install(["debootstrap"], "to build the trixie observer root")
    archive = debian_archive()
    staging = root.with_name(f".staging-{root.name}")
    rmtree(staging)
    say(f"building observer root (debootstrap --variant=minbase trixie + {', '.join(OBSERVER_PACKAGES)}) ...")
    t0 = time.monotonic()
    run_cmd(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(OBSERVER_PACKAGES)}",
            f"--keyring={archive.signed_by}",
            "trixie",
            str(staging),
            archive.uri,
        ],
        what="debootstrap",
    )
    shutil.rmtree(staging / "var/cache/apt/archives", ignore_errors=True)
    versions = run_cmd(
        ["dpkg-query", f"--admindir={staging}/var/lib/dpkg", "-W", *OBSERVER_PACKAGES],
        what="dpkg-query",
    )
    packages = dict(line.split("\t", 1) for line in versions.strip().splitlines())
    meta = {
        "built": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "packages": packages,
    }
    (staging / OBSERVER_MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    rmtree(root)
    os.replace(staging, root)
    say(
        f"  built {human_size(dir_size(root))} at {root} in {time.monotonic() - t0:.1f} s: "
        + ", ".join(f"{k} {v}" for k, v in packages.items())
    )
    return root


def cmd_observer(args: argparse.Namespace) -> int:
    build_observer(quiet=False)
    for tool, argv in (("trixie-ip", ["-d", "-j", "link", "show", "lo"]), ("trixie-bpftool", ["version"])):
        out = run_cmd([str(VM_DIR / tool), *argv], what=tool)
        if tool == "trixie-ip":
            try:
                json.loads(out)
            except ValueError as exc:
                raise RigError(f"trixie-ip did not print JSON: {out[:200]!r}") from exc
            say(f"observer check: tests/vm/trixie-ip -d -j link show lo -> valid JSON ({len(out)} bytes)")
        else:
            say(f"observer check: tests/vm/trixie-bpftool version -> {out.splitlines()[0]}")
    return 0


# --------------------------------------------------------------------------------------------
# run: boot a kernel, run a command, collect log + status through an rwdir

GUEST_SCRIPT = r"""#!/bin/bash
# Written by tests/vm/rig.py; runs inside the VM as root.
OUT=__OUT__
exec >"$OUT/log" 2>&1 </dev/null
echo "[rig] guest up: kernel $(uname -r), $(nproc) cpu(s)"
echo "up" >"$OUT/booted"
if ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf || echo "[rig] warning: could not mount bpffs at /sys/fs/bpf"
fi
mkdir -p /run/netns 2>/dev/null
if ! { touch /run/netns/.rig-w && rm -f /run/netns/.rig-w; } 2>/dev/null; then
    mount -t tmpfs -o mode=0755 tmpfs /run/netns || echo "[rig] warning: /run/netns not writable"
fi
mountpoint -q /tmp || mount -t tmpfs -o mode=1777 tmpfs /tmp
# Python trees (interpreter, venv, checkout) come again over extra 9p shares mounted with
# cache=loose and bound over their paths: vng's root share is uncached, which makes every
# import's stat/open a round trip (import pyroute2: ~8.5 s uncached, ~3-5 s cached).
__FAST_MOUNTS__
export PATH=__VENV_BIN__:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export NKPLAN_IN_VM=1 NKPLAN_KERNEL=__RELEASE__ NKPLAN_KERNEL_SERIES=__KEY__
export NKPLAN_CACHE=__CACHE__ NKPLAN_VM_OUT="$OUT" HOME=/tmp/home TMPDIR=/tmp
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
mkdir -p "$HOME"
cd __REPO__ || exit 99
bash "$OUT/cmd.sh"
rc=$?
echo "$rc" >"$OUT/status.tmp" && mv "$OUT/status.tmp" "$OUT/status"
sync
"""


@dataclasses.dataclass
class RunResult:
    kernel: str
    release: str
    result: str  # PASS / FAIL / NO-BOOT / TIMEOUT / CRASH
    status: int | None
    seconds: float
    outdir: Path

    @property
    def exit_code(self) -> int:
        if self.status is None:
            return EXIT_NO_BOOT
        return self.status


def new_outdir(key: str) -> Path:
    runs = cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = runs / f"{stamp}-{key}-{os.getpid()}"
    out.mkdir()
    old = sorted(p for p in runs.iterdir() if p.is_dir())
    for stale in old[:-KEEP_RUNS]:
        shutil.rmtree(stale, ignore_errors=True)
    return out


class LogStreamer:
    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self.pos = 0
        self.partial = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def pump(self, final: bool = False) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            return
        text = self.partial + self.decoder.decode(data, final=final)
        lines = text.split("\n")
        self.partial = lines.pop()
        if final and self.partial:
            lines.append(self.partial)
            self.partial = ""
        for line in lines:
            print(f"{self.prefix} {line}", flush=True)


SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+@:=-]*$")


def fast_exports(out: Path) -> list[Path]:
    """Host trees to share again with cache=loose: the interpreter, the venv, the checkout."""
    python = venv_python()
    try:
        base = run_cmd(
            [str(python), "-c", "import os, sys; print(os.path.realpath(sys.base_prefix))"],
            what="asking the venv for its base interpreter",
        ).strip()
    except RigError:
        base = ""
    cands = [Path(base)] if base else []
    cands += [python.parent.parent.resolve(), REPO]
    exports: list[Path] = []
    for cand in sorted(set(cands), key=lambda p: len(p.parts)):
        if not cand.is_dir() or str(cand) == "/" or not SAFE_PATH.match(str(cand)):
            continue
        if any(cand.is_relative_to(e) for e in exports):
            continue  # already inside an export
        if out.is_relative_to(cand):
            continue  # a bind over it would hide the rwdir that carries log and status back
        exports.append(cand)
    return exports


def fast_qemu_opts(exports: Sequence[Path]) -> list[str]:
    if not exports:
        return []
    opts = []
    for i, path in enumerate(exports):
        opts += [
            f"-fsdev local,id=nkfast{i},path={path},security_model=none,readonly=on,multidevs=remap",
            f"-device virtio-9p-pci,fsdev=nkfast{i},mount_tag=nkfast{i}",
        ]
    return ["--qemu-opts=" + " ".join(opts)]  # "=": the value starts with "-"


def fast_mount_script(exports: Sequence[Path]) -> str:
    lines = []
    for i, path in enumerate(exports):
        p = shlex.quote(str(path))
        lines.append(
            f"mkdir -p /run/nkfast{i} && mount -t 9p -o ro,trans=virtio,version=9p2000.L,"
            f"access=any,msize=512000,cache=loose nkfast{i} /run/nkfast{i} "
            f"&& mount --bind /run/nkfast{i} {p} "
            f'|| echo "[rig] warning: no cached share for {path} (slower imports)"'
        )
    return "\n".join(lines)


def boot_and_run(kernel: Kernel, command: str, timeout: float, memory: str, verbose: bool) -> RunResult:
    vng = vng_binary()
    if not vng.exists():
        raise RigError(f"{vng} missing: run `python tests/vm/rig.py ensure`")
    out = new_outdir(kernel.key)
    exports = fast_exports(out)
    script = GUEST_SCRIPT
    for token, value in (
        ("__OUT__", shlex.quote(str(out))),
        ("__VENV_BIN__", shlex.quote(str(venv_python().parent))),
        ("__RELEASE__", shlex.quote(kernel.release)),
        ("__KEY__", shlex.quote(kernel.key)),
        ("__CACHE__", shlex.quote(str(cache_dir()))),
        ("__FAST_MOUNTS__", fast_mount_script(exports)),
        ("__REPO__", shlex.quote(str(REPO))),
    ):
        script = script.replace(token, value)
    (out / "guest.sh").write_text(script, encoding="utf-8")
    (out / "cmd.sh").write_text(command + "\n", encoding="utf-8")
    argv = [
        str(vng),
        "--run", str(kernel.vmlinuz),
        "--disable-kvm",
        "--cpus", "1",
        "--memory", memory,
        "--force-9p",  # qemu 7.2's C virtiofsd fails here; vng would retry it for ~6 s
        "--rwdir", str(out),
        "--cwd", "/",
        "--verbose",
        *fast_qemu_opts(exports),
        "--exec", f"/bin/bash {shlex.quote(str(out / 'guest.sh'))}",
    ]  # fmt: skip
    (out / "vng-argv.txt").write_text(shlex.join(argv) + "\n", encoding="utf-8")
    prefix = f"[{kernel.key}]"
    say(f"booting {kernel.release} (TCG, 1 cpu, {memory}, timeout {timeout:.0f} s); logs in {out}")
    t0 = time.monotonic()
    with (out / "vng.log").open("wb") as vlog:
        # vng runs virtme-run through the shell: the venv's bin/ must be on PATH
        env = dict(os.environ, PATH=f"{vng.parent}{os.pathsep}{os.environ.get('PATH', '')}")
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=vlog,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        streamer = LogStreamer(out / "log", prefix)
        vstream = LogStreamer(out / "vng.log", f"{prefix} vng:") if verbose else None
        timed_out = False
        try:
            while proc.poll() is None:
                streamer.pump()
                if vstream:
                    vstream.pump()
                if time.monotonic() - t0 > timeout:
                    timed_out = True
                    break
                time.sleep(0.3)
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
    elapsed = time.monotonic() - t0
    streamer.pump(final=True)
    if vstream:
        vstream.pump(final=True)
    status: int | None = None
    status_file = out / "status"
    if status_file.is_file():
        try:
            status = int(status_file.read_text(encoding="utf-8").strip())
        except ValueError:
            status = None
    booted = (out / "booted").is_file()
    if status is not None:
        result = "PASS" if status == 0 else "FAIL"
        say(f"{kernel.release}: guest command exited {status} ({result}) after {elapsed:.1f} s")
    else:
        if timed_out and booted:
            result, what = "TIMEOUT", f"timed out after {timeout:.0f} s (the command did not finish)"
        elif timed_out:
            result, what = "NO-BOOT", f"did not boot / timed out after {timeout:.0f} s"
        elif booted:
            result = "CRASH"
            what = f"stopped after {elapsed:.0f} s before the command finished (panic? poweroff?)"
        else:
            result = "NO-BOOT"
            what = f"did not boot (vng exited {proc.returncode} after {elapsed:.0f} s, no status file)"
        bar = "!" * 78
        tail = (out / "vng.log").read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        print(bar, file=sys.stderr)
        print(f"VM rig: kernel {kernel.release} {what}", file=sys.stderr)
        print(
            f"VM rig: guest {'started' if booted else 'never started'} the command; last lines of {out / 'vng.log'}:",
            file=sys.stderr,
        )
        for line in tail:
            print(f"  | {line}", file=sys.stderr)
        print(bar, file=sys.stderr, flush=True)
    return RunResult(kernel.key, kernel.release, result, status, elapsed, out)


def prepare(keys: Sequence[str]) -> dict[str, Kernel]:
    ensure(quiet=True)
    kernels = fetch_kernels(keys)
    build_observer(quiet=True)
    return kernels


def shell_command(parts: Sequence[str]) -> str:
    parts = list(parts)
    if parts and parts[0] == "--":
        parts = parts[1:]
    if not parts:
        raise RigError("no command given: use `rig.py run --kernel 6.12 -- 'CMD ...'`")
    return parts[0] if len(parts) == 1 else shlex.join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    command = shell_command(args.command)
    kernel = prepare([args.kernel])[args.kernel]
    res = boot_and_run(kernel, command, args.timeout, args.memory, args.verbose)
    return res.exit_code


def cmd_run_all(args: argparse.Namespace) -> int:
    command = shell_command(args.command)
    kernels = prepare(list(KERNELS))
    results = [boot_and_run(kernels[key], command, args.timeout, args.memory, args.verbose) for key in KERNELS]
    print()
    print(f"{'kernel':<26} {'result':<8} {'status':>6} {'seconds':>8}")
    for r in results:
        status = "-" if r.status is None else str(r.status)
        print(f"{r.release:<26} {r.result:<8} {status:>6} {r.seconds:>8.1f}")
    failed = [r for r in results if r.result != "PASS"]
    if not failed:
        print(f"all {len(results)} kernels passed")
        return 0
    print(f"{len(failed)} of {len(results)} kernels failed: {', '.join(r.release for r in failed)}")
    if any(r.status is None for r in failed):
        return EXIT_NO_BOOT
    return next(r.exit_code for r in failed)


# --------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rig.py",
        description="Run commands under real Debian kernels with netkit, in a TCG VM.",
    )
    sub = p.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    f = sub.add_parser("fetch", help="download + unpack the Debian kernels (cached)")
    f.add_argument("--refresh", action="store_true", help="update apt lists; fetch newer kernels")
    f.set_defaults(func=cmd_fetch)
    o = sub.add_parser("observer", help="build the trixie root for trixie-ip / trixie-bpftool")
    o.set_defaults(func=cmd_observer)
    e = sub.add_parser("ensure", help="install qemu, kmod, virtme-ng if missing")
    e.set_defaults(func=cmd_ensure)
    for name, helptext in (
        ("run", "boot one kernel and run CMD in the guest"),
        ("run-all", "run CMD on every kernel, print a summary"),
    ):
        r = sub.add_parser(name, help=helptext)
        if name == "run":
            r.add_argument("--kernel", required=True, choices=sorted(KERNELS))
        r.add_argument(
            "--timeout",
            type=float,
            default=900,
            metavar="S",
            help="seconds per boot+run before giving up (default 900)",
        )
        r.add_argument("--memory", default="1G", help="guest memory (default 1G)")
        r.add_argument("--verbose", action="store_true", help="also stream vng/console output")
        r.add_argument(
            "command",
            nargs=argparse.REMAINDER,
            metavar="-- CMD...",
            help="shell command run in the guest with cwd = repo root",
        )
        r.set_defaults(func=cmd_run if name == "run" else cmd_run_all)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RigError as exc:
        print(f"rig.py: error: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        print("rig.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
