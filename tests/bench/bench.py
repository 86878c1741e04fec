#!/usr/bin/env python3
"""Scale benchmark (not a test): N pods, each a namespace + a veth (or netkit) pair with the peer in
the namespace + addresses + routes. Prints wall time and peak RSS of each nkplan command, run as a
separate process exactly as a user runs it (interpreter start included), beside `ip -batch` doing
the same kernel work.

    sudo .venv/bin/python tests/bench/bench.py --pods 1000 [--kind veth|netkit] [--programs]

--programs also declares count_pass (bpf/build/count.o) at every pod end's tcx ingress: one
program load (verifier included), attach and pin per pod on apply, one hook read per pod on plan.
--values declares allow_egress (bpf/build/allow.o) there instead, with one global and a 16-entry
allow list per pod (the same work, plus a .rodata value before load and 16 map writes per pod).

Targets (host, veth, N=1000): no-op plan <= 1.5 s wall; apply within 2x of ip -batch.
The `ip` baseline is one `ip -batch` for the host namespace plus one `ip -n POD -batch` per pod
(iproute2's batch mode cannot switch namespaces per line); both parts are printed."""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def allow_list(i: int) -> str:
    """allow_egress with its global and a 16-entry allow list (different per pod)."""
    entries = ", ".join(
        f"{{key: {{prefixlen: 32, addr: 10.{i % 200}.{i // 200}.{k}}}, value: {{port: {8000 + k}}}}}" for k in range(16)
    )
    obj = ROOT / "bpf" / "build" / "allow.o"
    maps = f"maps: {{allow: {{entries: [{entries}]}}}}"
    return f"{{object: {obj}, program: allow_egress, globals: {{enforce: false}}, {maps}}}"


def spec(prefix: str, pods: int, kind: str, programs: bool = False, sysctls: bool = False, values: bool = False) -> str:
    lines = [f"stack: bench-{prefix}", "namespaces:"]
    lines += [f"  - name: {prefix}p{i}" for i in range(pods)]
    lines.append("links:")
    counter = ROOT / "bpf" / "build" / "count.o"
    tcx = f", tcx: {{ingress: [{{object: {counter}, program: count_pass}}]}}" if programs else ""
    host_sysctl = ", sysctls: {ipv4.rp_filter: 0}" if sysctls else ""  # Cilium's host-end setting
    pod_sysctl = ", sysctls: {ipv4.arp_ignore: 1}" if sysctls else ""
    for i in range(pods):
        a, b = divmod(i, 250)
        lines.append(
            f"  - {{name: {prefix}h{i}, kind: {kind}, addresses: [10.{50 + a}.{b}.1/32]{host_sysctl}, "
            f"peer: {{name: eth0, namespace: {prefix}p{i}, "
            f"addresses: [10.{100 + a}.{b}.2/32, 'fd00:{a}:{b}::2/128']"
            f"{f', tcx: {{ingress: [{allow_list(i)}]}}' if values else tcx}{pod_sysctl}}}}}"
        )
    lines.append("routes:")
    for i in range(pods):
        a, b = divmod(i, 250)
        lines.append(f"  - {{namespace: {prefix}p{i}, to: default, dev: eth0}}")
        lines.append(f"  - {{to: 10.{100 + a}.{b}.2/32, dev: {prefix}h{i}}}")
    return "\n".join(lines) + "\n"


def measure(cmd: list[str], stdin: str | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if stdin is not None:
        assert proc.stdin
        proc.stdin.write(stdin)
        proc.stdin.close()
    assert proc.stderr
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        print(f"  ! {' '.join(cmd[:4])} exited {code}: {err.strip()[:2000]}", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, code


def ip_batch(prefix: str, pods: int, kind: str) -> tuple[float, float]:
    """Create the same objects with iproute2; returns (host-batch seconds, total seconds)."""
    host = []
    for i in range(pods):
        host.append(f"netns add {prefix}p{i}")
    for i in range(pods):
        a, b = divmod(i, 250)
        h = f"{prefix}h{i}"
        host.append(f"link add {h} type {kind} peer name eth0 netns {prefix}p{i}")
        host.append(f"link set {h} alias nkplan:x:primary")
        host.append(f"addr add 10.{50 + a}.{b}.1/32 dev {h}")
        host.append(f"link set {h} up")
        host.append(f"route add 10.{100 + a}.{b}.2/32 dev {h} proto 237")
    t0 = time.perf_counter()
    subprocess.run(["ip", "-batch", "-"], input="\n".join(host) + "\n", text=True, check=True)
    t_host = time.perf_counter() - t0
    for i in range(pods):
        a, b = divmod(i, 250)
        cmds = [
            "link set lo alias nkplan:x:ns",
            "link set lo up",
            f"addr add 10.{100 + a}.{b}.2/32 dev eth0",
            f"addr add fd00:{a}:{b}::2/128 dev eth0",
            "link set eth0 alias nkplan:x:peer",
            "link set eth0 up",
            "route add default dev eth0 proto 237",
        ]
        subprocess.run(
            ["ip", "-n", f"{prefix}p{i}", "-batch", "-"], input="\n".join(cmds) + "\n", text=True, check=True
        )
    return t_host, time.perf_counter() - t0


def ip_cleanup(prefix: str, pods: int) -> float:
    t0 = time.perf_counter()
    batch = [f"netns del {prefix}p{i}" for i in range(pods)]
    subprocess.run(["ip", "-batch", "-"], input="\n".join(batch) + "\n", text=True, capture_output=True)
    return time.perf_counter() - t0


def leftovers(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return [n for n in names + ns if n.startswith(prefix)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--kind", choices=("veth", "netkit"), default="veth")
    ap.add_argument("--programs", action="store_true", help="also run count_pass at every pod end's tcx ingress")
    ap.add_argument("--sysctls", action="store_true", help="also declare one sysctl on every device end")
    ap.add_argument(
        "--values", action="store_true",
        help="instead of count_pass, allow_egress with one global and a 16-entry map per pod (compare with --programs)",
    )  # fmt: skip
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests import testrun

    testrun.acquire()  # not while a real-kernel test run uses this kernel: each would skew the other
    prefix = "b" + secrets.token_hex(2)
    nkplan = [sys.executable, "-m", "nkplan.cli"]
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        if args.programs or args.values:
            subprocess.run(["make", "-s", "-C", str(ROOT / "bpf")], check=True)
        path.write_text(spec(prefix, args.pods, args.kind, args.programs, args.sysctls, args.values))
        try:
            for label, cmd in [
                ("validate", [*nkplan, "validate", str(path)]),
                ("plan (from empty)", [*nkplan, "plan", str(path)]),
                ("apply", [*nkplan, "apply", str(path), "--yes", "-q"]),
                ("plan (no-op)", [*nkplan, "plan", str(path), "--detailed-exitcode"]),
                ("destroy", [*nkplan, "destroy", str(path), "--yes", "-q"]),
            ]:
                wall, rss, code = measure(cmd)
                if label == "plan (no-op)" and code != 0:
                    print("  ! the no-op plan was not empty", file=sys.stderr)
                rows.append((label, wall, rss))
            time.sleep(1)  # let asynchronous namespace teardown finish before the baseline
            t_host, t_total = ip_batch(prefix, args.pods, args.kind)
            rows.append(("ip -batch create (host part)", t_host, 0.0))
            rows.append(("ip -batch create (total)", t_total, 0.0))
            rows.append(("ip -batch netns del", ip_cleanup(prefix, args.pods), 0.0))
        finally:
            subprocess.run([*nkplan, "destroy", "--stack", f"bench-{prefix}", "--yes", "-q"], capture_output=True)
            ip_cleanup(prefix, args.pods)
    extra = ", count_pass on every pod end's tcx ingress (the ip baseline has no programs)" if args.programs else ""
    extra += ", one sysctl per device end (the ip baseline sets none)" if args.sysctls else ""
    extra += ", allow_egress with a global and 16 map entries per pod end" if args.values else ""
    print(f"\nnkplan benchmark: {args.pods} pods, {args.kind}{extra}, kernel {os.uname().release}")
    print(f"{'step':32} {'wall s':>8} {'peak RSS MiB':>13}")
    for label, wall, rss in rows:
        print(f"{label:32} {wall:8.2f} {rss:13.1f}" if rss else f"{label:32} {wall:8.2f} {'-':>13}")
    left = leftovers(prefix)
    if left:
        print(f"WARNING: leftovers: {left[:10]}")
    print(f"\nmax RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
