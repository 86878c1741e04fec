#!/usr/bin/env python3
"""Benchmark (not a test): how long LinuxKernel.read() takes on a big setup.

Builds N namespaces (default 1000), each holding the peer of a veth pair whose other end is in the
host namespace, 2 addresses per end (IPv4 + IPv6), lo marked owned, one nkplan route per namespace;
then times read() in-process and in a fresh interpreter, and removes everything it made.

    sudo .venv/bin/python tests/host/bench_read.py [-n 1000] [--repeat 5] [--keep]

Everything is named with a random token (nkb<token>...), so nothing else on the machine is touched.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from nkplan.core.records import RTPROT_NKPLAN  # noqa: E402
from nkplan.kernel.linux import LinuxKernel  # noqa: E402


def ip_batch(lines: list[str], netns: str | None = None) -> None:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    subprocess.run(cmd, input="\n".join(lines) + "\n", text=True, check=True)


def v4(i: int, host: int) -> str:
    return f"10.{100 + (i >> 6)}.{(i & 63) << 2}.{host}/30"


def build(tok: str, n: int) -> list[str]:
    names = [f"nkb{tok}-{i:04d}" for i in range(n)]
    host: list[str] = []
    for i, ns in enumerate(names):
        h = f"nkb{tok}h{i}"
        host += [
            f"netns add {ns}",
            f"link add {h} type veth peer name p0 netns {ns}",
            f"link set {h} alias nkplan:bench:primary up",
            f"addr add {v4(i, 1)} dev {h}",
            f"addr add fd00:{tok}:{i:x}::1/64 dev {h} nodad",
        ]
    ip_batch(host)

    def inside(i: int) -> None:
        ip_batch(
            [
                "link set lo alias nkplan:bench:ns up",
                "link set p0 alias nkplan:bench:peer up",
                f"addr add {v4(i, 2)} dev p0",
                f"addr add fd00:{tok}:{i:x}::2/64 dev p0 nodad",
                f"route add default via {v4(i, 1).split('/')[0]} dev p0 proto {RTPROT_NKPLAN} metric 0",
            ],
            names[i],
        )

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(inside, range(n)))
    return names


def cleanup(tok: str) -> None:
    names = (
        sorted(p for p in os.listdir("/run/netns") if p.startswith(f"nkb{tok}-")) if os.path.isdir("/run/netns") else []
    )
    if names:
        ip_batch([f"netns del {ns}" for ns in names])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # host ends vanish asynchronously after netns del
        out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        if f"nkb{tok}h" not in out:
            return
        time.sleep(0.2)
    print("warning: some host ends were still listed after 60 s", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="namespaces (default 1000)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="leave the setup in place")
    args = ap.parse_args()
    tok = secrets.token_hex(2)
    t0 = time.perf_counter()
    try:
        build(tok, args.n)
        print(f"setup: {args.n} namespaces in {time.perf_counter() - t0:.1f} s (token {tok})")
        kernel = LinuxKernel()
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            live = kernel.read()
            times.append(time.perf_counter() - t)
        mine = [k for k in live.links if k[1].startswith(f"nkb{tok}h")]
        routes = [r for r in live.routes if r.namespace.startswith(f"nkb{tok}-")]
        assert len(mine) == args.n, f"expected {args.n} pairs, read {len(mine)}"
        assert len(routes) == args.n, f"expected {args.n} routes, read {len(routes)}"
        print(
            f"read(): best {min(times) * 1000:.0f} ms, median {sorted(times)[len(times) // 2] * 1000:.0f} ms "
            f"({len(live.links)} links, {len(live.devices)} devices, {len(live.routes)} routes)"
        )
        code = "from nkplan.kernel.linux import LinuxKernel; LinuxKernel().read()"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
        print(f"fresh interpreter, import + read(): {(time.perf_counter() - t) * 1000:.0f} ms")
    finally:
        if not args.keep:
            t = time.perf_counter()
            cleanup(tok)
            print(f"cleanup: {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
