"""The bad-input corpus (issue 14): hostile and broken specs, snapshots and saved plans, each run
through the real command in its own process. Every case must end with exit 1 and a clear error —
for a spec, `FILE:LINE:COL:` and the offending value — with no traceback, within 2 s of CPU and
200 MB of memory (measured by the kernel for that process: wait4's rusage). None of these
commands reaches the kernel: they fail while reading their input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

NKPLAN = [sys.executable, "-m", "nkplan.cli"]
CPU_LIMIT = 2.0  # s of user + system time
RSS_LIMIT = 200 * 1024  # KiB

GOOD = """\
stack: s
namespaces: [{name: p1}]
links:
  - name: v1
    kind: veth
    mtu: 1500
    addresses: [10.0.0.1/32]
    peer: {name: eth0, namespace: p1, addresses: [10.0.1.2/32]}
routes:
  - {to: 10.0.1.2/32, dev: v1}
"""


def swap(old: str, new: str) -> bytes:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1).encode()


def bomb(levels: int) -> bytes:
    lines = ["stack: s", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return ("\n".join(lines) + "\n").encode()


# name -> (content, what the message must contain, a position required)
SPECS: dict[str, tuple[bytes, str, bool]] = {
    "empty": (b"", "the file is empty", True),
    "only a comment": (b"# nothing\n", "the file is empty", True),
    "a list": (b"- a\n- b\n", "expected a mapping at the top level", True),
    "a scalar": (b"hello\n", "expected a mapping at the top level", True),
    "no stack": (b"namespaces: []\n", "stack", True),
    "billion laughs": (bomb(9), "expands to more than", True),
    "deep flow nesting": (b"stack: s\nx: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nesting deeper than", True),
    "deep block nesting": (
        b"stack: s\n" + b"".join(b"  " * i + b"k:\n" for i in range(200)) + b"  " * 200 + b"v\n",
        "nesting deeper than",
        True,
    ),
    "a 5000-digit number": (swap("mtu: 1500", "mtu: " + "9" * 5000), "a number of 5000 digits", True),
    "a huge integer": (swap("mtu: 1500", "mtu: " + "9" * 40), "mtu", True),
    "NUL byte": (b"stack: s\x00\n", "malformed YAML", True),
    "invalid UTF-8": (b"stack: s\xff\xfe\n", "not UTF-8", True),
    "tab indentation": (b"stack: s\nnamespaces:\n\t- {name: p1}\n", "malformed YAML", True),
    "duplicate top-level key": (b"stack: s\nstack: t\n", "stack", True),
    "duplicate nested key": (swap("mtu: 1500", "mtu: 1500\n    mtu: 1400"), "mtu", True),
    "unclosed flow": (b"stack: s\nnamespaces: [{name: p1}\n", "malformed YAML", True),
    "undefined alias": (b"stack: s\nnamespaces: *nope\n", "malformed YAML", True),
    "two documents": (b"stack: s\n---\nstack: t\n", "malformed YAML", True),
    "negative mtu": (swap("mtu: 1500", "mtu: -1"), "mtu", True),
    "mtu too large": (swap("mtu: 1500", "mtu: 70000"), "mtu", True),
    "float mtu": (swap("mtu: 1500", "mtu: 1500.5"), "mtu", True),
    "string mtu": (swap("mtu: 1500", "mtu: large"), "mtu", True),
    "bool name": (swap("name: v1", "name: true"), "name", True),
    "name too long": (swap("name: v1", "name: abcdefghijklmnop"), "abcdefghijklmnop", True),
    "name with a slash": (swap("name: v1", "name: a/b"), "a/b", True),
    "name with a space": (swap("name: v1", "name: 'a b'"), "a b", True),
    "confusable name": (swap("name: v1", "name: vа1"), "U+0430", True),  # Cyrillic а
    "empty namespace name": (swap("{name: p1}]", "{name: ''}]"), "name", True),
    "1 MB name": (swap("name: v1", "name: " + "x" * 1_000_000), "name", True),
    "unknown top-level key": (GOOD.encode() + b"extra: 1\n", "extra", True),
    "unknown link field": (swap("mtu: 1500", "mtu: 1500\n    colour: red"), "colour", True),
    "bad kind": (swap("kind: veth", "kind: bridge"), "bridge", True),
    "bad address": (swap("10.0.0.1/32", "10.0.0.300/32"), "10.0.0.300/32", True),
    "bad IPv6 address": (swap("10.0.0.1/32", "fd00::zz/64"), "fd00::zz/64", True),
    "prefix too long": (swap("10.0.0.1/32", "10.0.0.1/33"), "10.0.0.1/33", True),
    "bad mac": (swap("mtu: 1500", "mtu: 1500\n    mac: 02:00:00:00:00"), "02:00:00:00:00", True),
    "bad route destination": (swap("to: 10.0.1.2/32", "to: nowhere"), "nowhere", True),
    "route to an undeclared device": (swap("dev: v1}", "dev: v9}"), "v9", True),
    "negative metric": (swap("dev: v1}", "dev: v1, metric: -5}"), "metric", True),
    "table out of range": (swap("dev: v1}", "dev: v1, table: 99999999999}"), "table", True),
    "unknown table name": (swap("dev: v1}", "dev: v1, table: nosuchtable}"), "nosuchtable", True),
    "links not a list": (swap("links:\n", "links: 5\nx:\n"), "links", True),
    "namespaces a mapping": (swap("namespaces: [{name: p1}]", "namespaces: {p1: {}}"), "namespaces", True),
    "peer in an undeclared namespace": (swap("namespace: p1,", "namespace: p9,"), "p9", True),
    "duplicate link": (
        GOOD.replace("routes:", "  - {name: v1, kind: veth, peer: {name: e, namespace: p1}}\nroutes:").encode(),
        "v1",
        True,
    ),  # fmt: skip
    "duplicate namespace": (swap("[{name: p1}]", "[{name: p1}, {name: p1}]"), "p1", True),
    "bad sysctl key": (swap("mtu: 1500", "mtu: 1500\n    sysctls: {nope: 1}"), "nope", True),
    "sysctl value a list": (swap("mtu: 1500", "mtu: 1500\n    sysctls: {ipv4.forwarding: [1]}"), "forwarding", True),
    "host sysctl outside net": (GOOD.encode() + b"host: {sysctls: {kernel.panic: 1}}\n", "kernel.panic", True),
    "rule priority out of range": (
        GOOD.encode() + b"rules: [{priority: 99999999999, table: main}]\n",
        "priority",
        True,
    ),
    "rule with a bad action": (GOOD.encode() + b"rules: [{priority: 10, action: explode}]\n", "explode", True),
    "check with a bad expect": (GOOD.encode() + b"checks: [{to: 10.0.0.1, expect: maybe}]\n", "maybe", True),
    "check port out of range": (
        GOOD.encode() + b"checks: [{to: 10.0.0.1, port: 70000, expect: reachable}]\n",
        "70000",
        True,
    ),  # fmt: skip
    "template count too large": (
        b"stack: s\nrepeat:\n  p:\n    count: 1000000000\n    namespaces: [{name: 'p{i}'}]\n",
        "1000000000",
        True,
    ),  # fmt: skip
    "template code injection": (
        b"stack: s\nrepeat:\n  p:\n    count: 2\n    namespaces: [{name: \"{__import__('os')}\"}]\n",
        "__import__",
        True,
    ),  # fmt: skip
    "include an absolute path": (b"stack: s\ninclude: [/etc/passwd]\n", "/etc/passwd", True),
    "include escaping the directory": (b"stack: s\ninclude: [../../etc/passwd]\n", "../../etc/passwd", True),
    "include itself": (b"stack: s\ninclude: [self.yaml]\n", "self.yaml", True),
    "defaults of the wrong type": (b"stack: s\ndefaults: [1, 2]\n", "defaults", True),
    "stack name with spaces": (b"stack: 'a b'\n", "a b", True),
    "program object outside the tree": (
        swap("mtu: 1500", "mtu: 1500\n    tcx: {ingress: [{object: /etc/passwd, program: x}]}"),
        "/etc/passwd",
        True,
    ),  # fmt: skip
    "program without an object": (swap("mtu: 1500", "mtu: 1500\n    tcx: {ingress: [{program: x}]}"), "object", True),
    "netkit mode on a veth": (swap("mtu: 1500", "mtu: 1500\n    mode: l2"), "mode", True),
    "bad netkit policy": (swap("kind: veth", "kind: netkit\n    policy: maybe"), "maybe", True),
    "null stack": (b"stack: null\n", "stack", True),
    "a 10 MB file of pods": (
        b"stack: s\nnamespaces:\n"
        + b"".join(b"  - {name: p%d}\n" % i for i in range(500_000))
        + b"  - {name: 'not valid'}\n",
        "specs may be at most 8 MiB",
        True,
    ),  # fmt: skip
}


@dataclass
class Outcome:
    code: int
    err: str
    cpu: float
    rss: int


def run(args: list[str], cwd: Path) -> Outcome:
    proc = subprocess.Popen([*NKPLAN, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "NKPLAN_ALLOW_PATHS": ""})  # fmt: skip
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(proc.returncode, err, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def judge(case: str, out: Outcome, must: str, file: str | None) -> list[str]:
    bad = []
    if out.code != 1:
        bad.append(f"exit {out.code}")
    if "Traceback" in out.err or not out.err.startswith("error: "):
        bad.append("not a clear error")
    if must not in out.err:
        bad.append(f"no {must!r} in the message")
    if file is not None and not re.search(rf"{re.escape(file)}:\d+:\d+: ", out.err):
        bad.append("no FILE:LINE:COL")
    if out.cpu > CPU_LIMIT:
        bad.append(f"{out.cpu:.1f} s of CPU")
    if out.rss > RSS_LIMIT:
        bad.append(f"{out.rss // 1024} MB")
    return [f"{case}: {', '.join(bad)}\n    {out.err[:300]}"] if bad else []


def test_bad_specs(tmp_path: Path) -> None:
    assert len(SPECS) >= 60
    jobs = []
    for i, (case, (content, must, located)) in enumerate(SPECS.items()):
        d = tmp_path / f"c{i}"
        d.mkdir()
        name = "self.yaml" if case == "include itself" else "spec.yaml"
        (d / name).write_bytes(content)
        jobs.append((case, d, name, must, located))

    def one(job: tuple[str, Path, str, str, bool]) -> list[str]:
        case, d, name, must, located = job
        return judge(case, run(["validate", name], d), must, name if located else None)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = [f for found in pool.map(one, jobs) for f in found]
    assert not failures, "\n".join(failures)


def test_bad_snapshots_and_saved_plans(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(GOOD)
    snapshots = {
        "truncated": b'{"x-nkplan-snapshot": {"format": 1, "host": {',
        "not JSON": b"hello",
        "wrong format": json.dumps({"format": 99, "host": {}}).encode(),
        "a spec, not a snapshot": GOOD.encode(),
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "a 5000-digit number": b'{"format": ' + b"9" * 5000 + b"}",
        "invalid UTF-8": b'{"format": 1, "host": "\xff"}',
        "fields missing": json.dumps({"format": 1, "host": {}, "kernel": {}}).encode(),
    }
    failures = []
    for case, content in snapshots.items():
        (tmp_path / "snap.json").write_bytes(content)
        out = run(["plan", "spec.yaml", "--state", "snap.json"], tmp_path)
        failures += judge(f"snapshot {case}", out, "snap.json", None)
    plans = {
        "truncated": b'{"format_version": "1", "nkplan_version": "0.1.0", "stack": ',
        "not JSON": b'{"format_version": "1", "nkplan_version": nonsense',
        "deep nesting": b'{"format_version": "1", "nkplan_version": "0", "x": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        "a 5000-digit number": b'{"format_version": "1", "nkplan_version": "0", "x": ' + b"9" * 5000 + b"}",
        "no checksum": json.dumps({"format_version": "1", "nkplan_version": "0"}).encode(),
        "edited": json.dumps({"format_version": "1", "nkplan_version": "0", "checksum": "0" * 64}).encode(),
    }
    for case, content in plans.items():
        (tmp_path / "plan.json").write_bytes(content)
        out = run(["apply", "plan.json"], tmp_path)
        failures += judge(f"saved plan {case}", out, "plan.json", None)
    assert not failures, "\n".join(failures)


def test_sensible_aliases_still_load() -> None:
    """The limits leave ordinary specs alone: an alias used sensibly still loads."""
    from nkplan.spec.loader import load_text

    text = "stack: s\nx-shared: &peer {name: eth0, namespace: p1}\nnamespaces: [{name: p1}]\n"
    text += "links: [{name: v1, kind: veth, peer: *peer}]\n"
    assert load_text(text, "ok.yaml").spec.links[0].peer is not None
