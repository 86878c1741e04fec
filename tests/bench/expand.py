#!/usr/bin/env python3
"""Templates at scale (not a test): a `repeat:` template of N pods against the same spec written
out in full, both in one run. Each is loaded (parse, expand, validate) and planned from empty
against the in-memory fake kernel, in this process, best of --runs; then `nkplan validate` is timed
as a user runs it (a new interpreter each time). No root needed.

    .venv/bin/python tests/bench/expand.py --pods 10000

Target (issue 11): the template costs no more than 1.2x the written-out spec."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nkplan import api
from nkplan.kernel.fake import FakeKernel

TEMPLATE = """\
stack: bench
pools:
  host4: 10.50.0.0/16
  pod4: 10.100.0.0/16
  pod6: fd00:100::/64
defaults:
  links: {{kind: veth}}
repeat:
  pods:
    count: {pods}
    namespaces:
      - name: "p{{i}}"
    links:
      - name: "h{{i}}"
        addresses: ["{{host4.host(i)}}/32"]
        peer: {{name: eth0, namespace: "p{{i}}", addresses: ["{{pod4.host(i)}}/32", "{{pod6.host(i)}}/128"]}}
    routes:
      - {{namespace: "p{{i}}", to: default, dev: eth0}}
      - {{to: "{{pod4.host(i)}}/32", dev: "h{{i}}"}}
"""


def written_out(pods: int) -> str:
    """The same spec as a user (or a generator script) writes it: one flow mapping per item."""
    lines = ["stack: bench", "namespaces:"]
    lines += [f"  - {{name: p{i}}}" for i in range(pods)]
    lines.append("links:")
    for i in range(pods):
        h, p = divmod(i, 256)
        lines.append(
            f"  - {{name: h{i}, kind: veth, addresses: [10.50.{h}.{p}/32], peer: {{name: eth0, namespace: p{i}, "
            f"addresses: [10.100.{h}.{p}/32, 'fd00:100::{i:x}/128']}}}}"
        )
    lines.append("routes:")
    for i in range(pods):
        h, p = divmod(i, 256)
        lines.append(f"  - {{namespace: p{i}, to: default, dev: eth0}}")
        lines.append(f"  - {{to: 10.100.{h}.{p}/32, dev: h{i}}}")
    return "\n".join(lines) + "\n"


def load_and_plan(text: str, name: str) -> tuple[float, float, api.Loaded]:
    t0 = time.perf_counter()
    loaded = api.load_text(text, name)
    t1 = time.perf_counter()
    api.plan(loaded, on=FakeKernel())
    return t1 - t0, time.perf_counter() - t0, loaded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    texts = {"template": TEMPLATE.format(pods=args.pods), "written out": written_out(args.pods)}
    best: dict[str, tuple[float, float]] = {}
    specs = {}
    for _ in range(args.runs):
        for label, text in texts.items():  # interleaved: both see the same machine
            load, total, specs[label] = load_and_plan(text, f"{label}.yaml")
            old = best.get(label, (float("inf"), float("inf")))
            best[label] = (min(old[0], load), min(old[1], total))
    assert specs["template"].spec == specs["written out"].spec, "the two specs differ"
    cli: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            for label, text in texts.items():
                path = Path(tmp) / f"{label.replace(' ', '-')}.yaml"
                path.write_text(text)
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "nkplan.cli", "validate", str(path)], check=True, stdout=subprocess.DEVNULL
                )
                cli[label] = min(cli.get(label, float("inf")), time.perf_counter() - t0)
    print(
        f"{args.pods} pods ({len(specs['template'].spec.links)} links, {len(specs['template'].spec.routes)} routes), "
        f"best of {args.runs}"
    )
    print(f"{'':14}{'load+validate':>15}{'load+plan':>12}{'nkplan validate (process)':>28}{'bytes':>10}")
    for label in texts:
        load, total = best[label]
        print(f"{label:14}{load:14.2f}s{total:11.2f}s{cli[label]:27.2f}s{len(texts[label]):10}")
    ratios = [
        best["template"][0] / best["written out"][0],
        best["template"][1] / best["written out"][1],
        cli["template"] / cli["written out"],
    ]
    print("template / written out: " + ", ".join(f"{r:.2f}x" for r in ratios) + " (target <= 1.2x)")
    return 0 if max(ratios) <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
