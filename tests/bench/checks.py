#!/usr/bin/env python3
"""Reachability checks at scale (not a test): N pods (a namespace and a veth pair each, plus a
blackhole route in the pod), then 4 checks per pod, all expected to pass: pod → host end (ICMP),
host → pod (ICMP), pod → host end TCP (a listener this script opens in the host namespace), and
pod → a blackholed address, expect unreachable. The stack is applied without checks first; then
the checks are timed in this process (api.check, best of --runs) and as a user runs them
(`nkplan check`, a new interpreter). Root; uses names no one else does and removes its stack.

    sudo .venv/bin/python tests/bench/checks.py --pods 50       # 200 checks

Target (issue 13 part 4): 200 passing checks finish in under 5 s."""

from __future__ import annotations

import argparse
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nkplan import api

NKPLAN = [sys.executable, "-m", "nkplan.cli"]


def spec(prefix: str, pods: int, port: int | None) -> str:
    lines = [f"stack: chk-{prefix}", "namespaces:"]
    lines += [f"  - name: {prefix}p{i}" for i in range(pods)]
    lines.append("links:")
    for i in range(pods):
        lines.append(
            f"  - {{name: {prefix}h{i}, kind: veth, addresses: [10.240.{i}.1/32], "
            f"peer: {{name: eth0, namespace: {prefix}p{i}, addresses: [10.241.{i}.2/32]}}}}"
        )
    lines.append("routes:")
    for i in range(pods):
        lines.append(f"  - {{namespace: {prefix}p{i}, to: default, dev: eth0}}")
        lines.append(f"  - {{namespace: {prefix}p{i}, to: 10.242.0.0/16, type: blackhole}}")
        lines.append(f"  - {{to: 10.241.{i}.2/32, dev: {prefix}h{i}}}")
    if port is not None:
        lines.append("checks:")
        for i in range(pods):
            ns = f"{prefix}p{i}"
            lines.append(f"  - {{from: {ns}, to: 10.240.{i}.1, expect: reachable}}")
            lines.append(f"  - {{to: 10.241.{i}.2, expect: reachable}}")
            lines.append(f"  - {{from: {ns}, to: 10.240.{i}.1, port: {port}, expect: reachable}}")
            lines.append(f"  - {{from: {ns}, to: 10.242.0.{i % 250 + 1}, expect: unreachable}}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=50, help="pods (4 checks each; default 50: 200 checks)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.pods > 250:
        ap.error("at most 250 pods (one /24 per pod in 10.240-242.0.0/16)")
    prefix = f"c{secrets.token_hex(2)}"
    listener = socket.create_server(("0.0.0.0", 0), backlog=4096)  # the host namespace; any free port
    port = listener.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp, "bare.yaml")
        bare.write_text(spec(prefix, args.pods, None))
        full = Path(tmp, "checks.yaml")
        full.write_text(spec(prefix, args.pods, port))
        try:
            t0 = time.perf_counter()
            subprocess.run([*NKPLAN, "apply", str(bare), "--yes", "-q"], check=True, capture_output=True)
            print(f"apply of {args.pods} pods (no checks): {time.perf_counter() - t0:.2f} s")
            loaded = api.load_file(str(full))
            n = len(loaded.spec.checks)
            best = float("inf")
            for _ in range(args.runs):
                t0 = time.perf_counter()
                results = api.check(loaded)
                best = min(best, time.perf_counter() - t0)
                failed = [str(r) for r in results if not r.passed]
                if failed:
                    print(f"  ! {len(failed)} check(s) failed, e.g. {failed[0]}", file=sys.stderr)
            print(f"{n} checks, in process (api.check), best of {args.runs}: {best * 1000:.0f} ms")
            t0 = time.perf_counter()
            proc = subprocess.run([*NKPLAN, "check", str(full), "-q"], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            print(
                f"{n} checks, `nkplan check` (new interpreter): {wall:.2f} s, exit {proc.returncode}: "
                f"{proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[:300]}"
            )
            t0 = time.perf_counter()
            proc = subprocess.run([*NKPLAN, "apply", str(full), "--yes", "-q"], capture_output=True, text=True)
            print(
                f"`nkplan apply` with nothing to change + {n} checks: {time.perf_counter() - t0:.2f} s, "
                f"exit {proc.returncode}"
            )
        finally:
            listener.close()
            subprocess.run([*NKPLAN, "destroy", "--stack", f"chk-{prefix}", "--yes", "-q"], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
