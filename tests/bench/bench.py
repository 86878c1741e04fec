#!/usr/bin/env python3
"""Scale benchmark (not a test): N pods, each a namespace + a veth (or netkit) pair with the peer in
the namespace + addresses + routes. Prints wall time, CPU time (user, system) and peak RSS of each
nkplan command, run as a separate process exactly as a user runs it (interpreter start included),
beside the kernel's own cost of the same work, and the ratios and growth the targets are set in.

    sudo .venv/bin/python tests/bench/bench.py --sizes 1000,2000,5000,10000 [--kind veth|netkit]
    sudo .venv/bin/python tests/bench/bench.py --pods 1000 --programs
    sudo .venv/bin/python tests/bench/bench.py --pods 1000 --compare /path/to/other/tree

--programs also declares count_pass (bpf/build/count.o) at every pod end's tcx ingress: one
program load (verifier included), attach and pin per pod on apply, one hook read per pod on plan.
--values declares allow_egress (bpf/build/allow.o) there instead, with one global and a 16-entry
allow list per pod (the same work, plus a .rodata value before load and 16 map writes per pod).
--compare runs validate and both plans also from another tree's nkplan package, alternated with
this one's on the same kernel state, and prints the medians (the fair before/after on a shared
machine: compare the CPU column).

Kernel baselines: `ip -batch` creating the same objects (one batch for the host namespace plus one
`ip -n POD -batch` per pod, since batch mode cannot switch namespaces per line); the kernel's
teardown (`ip -batch netns del`, then waiting until every host end is gone); with --programs, a
minimal loop attaching N tcx links and one detaching them (with --unpins also: pinned, each pin
unlinked after or before its detach).

Targets (issue 15; host, veth): at N = 1000 no-op plan and plan from empty <= 0.5 s, apply <= 0.7x
`ip -batch`, destroy <= 2x the kernel teardown; every command grows <= 2.1x per doubling up to
10,000; peak RSS <= 150 MiB at 1000, <= 800 MiB at 10,000. With --programs: apply <= 5 s, no-op plan
<= 0.8 s, destroy <= 1.2x the tcx link removal."""

from __future__ import annotations

import argparse
import itertools
import math
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRIXIE_IP = str(ROOT / "tests" / "vm" / "trixie-ip")


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


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, float, int]:
    """(wall s, user CPU s, system CPU s, peak RSS MiB, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd="/"
    )  # cwd: `python -m` puts the working directory first on sys.path, before PYTHONPATH
    assert proc.stderr
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        print(f"  ! {' '.join(cmd[:4])} exited {code}: {err.strip()[:2000]}", file=sys.stderr)
    return wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, code


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
    # bookworm's ip cannot make netkit pairs ("Garbage instead of arguments"): trixie's can (the VM
    # rig's observer, tests/vm/trixie-ip)
    ip = TRIXIE_IP if kind == "netkit" else "ip"
    t0 = time.perf_counter()
    if kind == "netkit":
        # iproute2's netkit parser keeps its "seen peer" state across the lines of a batch (a
        # second `type netkit` line fails as a duplicate peer): one `ip link add` per pair
        made = [line for line in host if line.startswith("netns add")]
        subprocess.run([ip, "-batch", "-"], input="\n".join(made) + "\n", text=True, check=True)
        for line in host:
            if line.startswith("link add"):
                subprocess.run([ip, *line.split()], check=True)
        host = [line for line in host if not line.startswith(("link add", "netns add"))]
    subprocess.run([ip, "-batch", "-"], input="\n".join(host) + "\n", text=True, check=True)
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
        subprocess.run([ip, "-n", f"{prefix}p{i}", "-batch", "-"], input="\n".join(cmds) + "\n", text=True, check=True)
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


def pod_links(prefix: str) -> int:
    """How many of the bench's host ends exist now (sysfs: no process per look)."""
    return sum(1 for name in os.listdir("/sys/class/net") if name.startswith(prefix))


def ip_teardown(prefix: str, pods: int) -> float:
    """The kernel's own teardown of the pods: `ip -batch` deletes the namespaces, then wait until
    every host end is gone (namespace cleanup is asynchronous; nkplan's destroy waits for it too)."""
    t0 = time.perf_counter()
    ip_cleanup(prefix, pods)
    while pod_links(prefix) and time.perf_counter() - t0 < 600:
        time.sleep(0.01)
    return time.perf_counter() - t0


def tcx_floor(prefix: str, pods: int, unpins: bool = False) -> dict[str, float]:
    """The kernel's own cost of adding and of removing `pods` tcx links: count_pass loaded once, one
    link at the tcx ingress of every host end the ip baseline made, then a minimal loop detaching
    and closing them; both loops timed (each attach to an empty hook and each removal waits for an
    RCU grace period). With `unpins`, two more rounds where every link is pinned first (in a bpffs
    directory of the benchmark's own) and each removal also unlinks its pin, after the detach as
    nkplan does, and before it: what work that queues RCU callbacks between grace periods costs."""
    from nkplan.kernel.bpf import bpffs, hooks, libbpf, mprog

    def attach_all() -> list[int]:
        return [hooks.attach(hooks.HookRef("", f"{prefix}h{i}", "ingress"), prog) for i in range(pods)]

    obj = libbpf.load_program(str(ROOT / "bpf" / "build" / "count.o"), "count_pass")
    out: dict[str, float] = {}
    try:
        prog = obj.program_fd("count_pass")
        t0 = time.perf_counter()
        links = attach_all()
        out["tcx attach"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for fd in links:
            mprog.link_detach(fd)
            os.close(fd)
        out["tcx floor"] = time.perf_counter() - t0
        if not unpins:
            return out
        directory = f"/sys/fs/bpf/nkbench-{prefix}"
        try:
            for label, unpin_first in (("tcx unpin after", False), ("tcx unpin before", True)):
                links = attach_all()
                paths = [f"{directory}/l{i}" for i in range(pods)]
                for fd, path in zip(links, paths, strict=True):
                    bpffs.pin(fd, path)
                t0 = time.perf_counter()
                for fd, path in zip(links, paths, strict=True):
                    if unpin_first:
                        os.unlink(path)
                    mprog.link_detach(fd)
                    if not unpin_first:
                        os.unlink(path)
                    os.close(fd)
                out[label] = time.perf_counter() - t0
        finally:
            bpffs.remove_tree(directory, root="/sys/fs/bpf")
        return out
    finally:
        obj.close()


def child_env(tree: str | None = None) -> dict[str, str]:
    """nkplan's environment as a user's: bytecode caches written and used (a CI or agent shell
    may set PYTHONDONTWRITEBYTECODE, and every start then compiles pydantic anew); PYTHONPATH=tree
    runs that tree's nkplan package (default: this benchmark's own tree)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = tree or str(ROOT)
    return env


Row = tuple[str, float, float, float, float]  # label, wall s, user s, sys s, peak RSS MiB (0: not measured)
STEPS = ("validate", "plan (from empty)", "apply", "plan (no-op)", "destroy")


def run_size(args: argparse.Namespace, pods: int, tmp: Path) -> dict[str, Row]:
    prefix = "b" + secrets.token_hex(2)
    nkplan = [sys.executable, "-m", "nkplan.cli"]
    path = tmp / f"bench-{pods}.yaml"
    path.write_text(spec(prefix, pods, args.kind, args.programs, args.sysctls, args.values))
    rows: dict[str, Row] = {}
    compare: dict[str, list[float]] = {}
    try:
        for label, verb in zip(STEPS, ("validate", "plan", "apply", "plan", "destroy"), strict=True):
            cmd = [*nkplan, verb, str(path)]
            if args.profile:  # cProfile each command, main thread only (the times then include it)
                out = Path(args.profile) / f"{pods}-{label.split()[0]}{'-noop' if 'no-op' in label else ''}.prof"
                cmd[1:1] = ["-m", "cProfile", "-o", str(out.resolve())]
            if verb in ("apply", "destroy"):
                cmd += ["--yes", "-q"]
            if label == "plan (no-op)":
                cmd.append("--detailed-exitcode")
            wall, user, sys_, rss, code = measure(cmd, env=child_env())
            if label == "plan (no-op)" and code != 0:
                print("  ! the no-op plan was not empty", file=sys.stderr)
            rows[label] = (label, wall, user, sys_, rss)
            if args.compare and verb in ("validate", "plan"):
                # the same command from another tree, alternated, on the same kernel state
                for _ in range(args.repeat):
                    for tree in (args.compare, str(ROOT)):
                        w, u, s, _r, _c = measure(cmd, env=child_env(tree))
                        compare.setdefault(f"{label} @ {tree}", []).extend([w, u + s])
        time.sleep(1)  # let asynchronous namespace teardown finish before the baseline
        t_host, t_total = ip_batch(prefix, pods, args.kind)
        rows["ip create (host part)"] = ("ip -batch create (host part)", t_host, 0, 0, 0)
        rows["ip create"] = ("ip -batch create (total)", t_total, 0, 0, 0)
        if args.programs:
            floors = tcx_floor(prefix, pods, args.unpins)
            words = {
                "tcx attach": f"kernel: attach {pods} tcx links",
                "tcx floor": f"kernel: remove {pods} tcx links",
                "tcx unpin after": "  ... detach, then unlink its pin",
                "tcx unpin before": "  ... unlink its pin, then detach",
            }
            for key, took in floors.items():
                rows[key] = (words[key], took, 0, 0, 0)
        rows["teardown"] = ("kernel teardown (netns del, wait)", ip_teardown(prefix, pods), 0, 0, 0)
    finally:
        subprocess.run([*nkplan, "destroy", "--stack", f"bench-{prefix}", "--yes", "-q"], capture_output=True)
        ip_cleanup(prefix, pods)
        left = leftovers(prefix)
        if left:
            print(f"WARNING: leftovers: {left[:10]}")
    for key, vals in compare.items():
        walls, cpus = sorted(vals[0::2]), sorted(vals[1::2])
        rows[key] = (key, walls[len(walls) // 2], cpus[len(cpus) // 2], 0, -1)
    return rows


def ratio_lines(rows: dict[str, Row], programs: bool) -> list[str]:
    pairs = [("apply", "ip create", "apply / ip -batch create", "<= 0.7x")]
    pairs.append(("destroy", "teardown", "destroy / kernel teardown", "<= 2x"))
    if programs:
        pairs.append(("destroy", "tcx floor", "destroy / tcx link removal", "<= 1.2x"))
    return [
        f"{what:42} {rows[a][1] / rows[b][1]:8.2f}x  (target {target})"
        for a, b, what, target in pairs
        if a in rows and b in rows
    ]


def print_table(pods: int, args: argparse.Namespace, rows: dict[str, Row]) -> None:
    extra = ", count_pass on every pod end's tcx ingress (the ip baseline has no programs)" if args.programs else ""
    extra += ", one sysctl per device end (the ip baseline sets none)" if args.sysctls else ""
    extra += ", allow_egress with a global and 16 map entries per pod end" if args.values else ""
    print(f"\nnkplan benchmark: {pods} pods, {args.kind}{extra}, kernel {os.uname().release}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'step':42} {'wall s':>8} {'user s':>7} {'sys s':>7} {'peak RSS MiB':>13}")
    for label, wall, user, sys_, rss in rows.values():
        if rss < 0:  # a --compare median: wall and CPU (user+sys)
            print(f"{label:42} {wall:8.2f} {'cpu':>7} {user:7.2f}")
        elif rss:
            print(f"{label:42} {wall:8.2f} {user:7.2f} {sys_:7.2f} {rss:13.1f}")
        else:
            print(f"{label:42} {wall:8.2f} {'-':>7} {'-':>7} {'-':>13}")
    for line in ratio_lines(rows, args.programs):
        print(line)


def print_growth(results: dict[int, dict[str, Row]]) -> None:
    """Growth per doubling of pods between consecutive sizes: (t2/t1) ** (1 / log2(n2/n1)); wall
    and, for nkplan's own share, user CPU."""
    sizes = sorted(results)
    if len(sizes) < 2:
        return
    print("\ngrowth per doubling (target <= 2.1x): wall [user CPU]")
    head = "".join(f"{f'{a}->{b}':>18}" for a, b in itertools.pairwise(sizes))
    print(f"{'step':42}{head}")
    for key in [*STEPS, "ip create", "tcx attach", "tcx floor", "teardown"]:
        if not all(key in results[n] for n in sizes):
            continue
        cells = ""
        for a, b in itertools.pairwise(sizes):
            ra, rb = results[a][key], results[b][key]
            exp = 1 / math.log2(b / a)
            cell = f"{(rb[1] / ra[1]) ** exp:.2f}x"
            if ra[2] and rb[2]:
                cell += f" [{(rb[2] / ra[2]) ** exp:.2f}x]"
            cells += f"{cell:>18}"
        print(f"{results[sizes[0]][key][0]:42}{cells}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--sizes", help="comma-separated pod counts, run in turn (e.g. 1000,2000,5000,10000)")
    ap.add_argument("--kind", choices=("veth", "netkit"), default="veth")
    ap.add_argument("--programs", action="store_true", help="also run count_pass at every pod end's tcx ingress")
    ap.add_argument("--sysctls", action="store_true", help="also declare one sysctl on every device end")
    ap.add_argument("--compare", metavar="TREE", help="also run validate and both plans from TREE's nkplan package "
                    "(PYTHONPATH=TREE), alternating with this tree's, and print the medians")  # fmt: skip
    ap.add_argument("--profile", metavar="DIR", help="profile each nkplan command with cProfile (main thread): "
                    "DIR/PODS-STEP.prof, read with pstats")  # fmt: skip
    ap.add_argument("--unpins", action="store_true", help="with --programs, also time removing pinned tcx links, "
                    "unlinking each pin after and before its detach")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=3, help="alternations for --compare (default 3)")
    ap.add_argument(
        "--values", action="store_true",
        help="instead of count_pass, allow_egress with one global and a 16-entry map per pod (compare with --programs)",
    )  # fmt: skip
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [args.pods]
    sys.path.insert(0, str(ROOT))
    from tests import testrun

    testrun.acquire()  # not while a real-kernel test run uses this kernel: each would skew the other
    if args.programs or args.values:
        subprocess.run(["make", "-s", "-C", str(ROOT / "bpf")], check=True)
    results: dict[int, dict[str, Row]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pods in sizes:
            results[pods] = run_size(args, pods, Path(tmp))
            print_table(pods, args, results[pods])
            sys.stdout.flush()
    print_growth(results)
    print(f"\nmax RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
