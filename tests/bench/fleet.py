#!/usr/bin/env python3
"""Fleet review benchmark (not a test): one spec of P pods planned against H host snapshots
(`nkplan plan SPEC --state SNAPDIR`, a separate process as a user runs it, all cores).

    .venv/bin/python tests/bench/fleet.py --hosts 1000 --pods 100

The snapshots are made by applying the spec to the in-memory fake kernel and writing what it then
holds as `show --format json` does; each host gets its own name and machine-id, and a few are
edited to differ (an MTU changed by hand, a pod missing), so the report has several groups.
Target (issue 16): 1000 hosts x 100 pods in under 30 s on this machine's 2 cores."""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests" / "bench"))
from expand import TEMPLATE  # noqa: E402

from nkplan import api  # noqa: E402
from nkplan.documents import snapshot  # noqa: E402
from nkplan.kernel.fake import FakeKernel  # noqa: E402
from nkplan.run.workflow import apply_and_verify, plan_for  # noqa: E402

SPEC = TEMPLATE.replace("stack: bench", "stack: fleet")  # the scale benchmark's pods


def base_snapshot(spec_path: Path) -> dict[str, Any]:
    """What a host holds after applying the spec (the fake kernel), as a snapshot document."""
    loaded = api.load_file(str(spec_path))
    kernel = FakeKernel()
    apply_and_verify(kernel, loaded, plan_for(kernel, loaded).plan, sleep=lambda s: None)
    live = kernel.read(probe_netkit=True)
    return {"stack": "fleet", snapshot.SNAPSHOT_KEY: snapshot.to_json(live, {})}


def write_fleet(directory: Path, pods: int, hosts: int, odd: int = 3, missing: int = 2) -> Path:
    """SPEC (spec.yaml) and `hosts` snapshots in directory/snapshots; returns the spec path. The
    first `odd` hosts have h0's MTU changed by hand, the next `missing` lack pod p1."""
    spec = directory / "spec.yaml"
    spec.write_text(SPEC.format(pods=pods))
    base = base_snapshot(spec)
    snaps = directory / "snapshots"
    snaps.mkdir()
    for i in range(hosts):
        doc = copy.deepcopy(base) if i < odd + missing else base
        data = doc[snapshot.SNAPSHOT_KEY]
        data["host"] = {"hostname": f"node-{i:04d}", "machine_id": f"{i:032x}", "kernel": "6.12.0-fleet"}
        if i < odd:
            data["links"][0]["primary"]["mtu"] = 1400
        elif i < odd + missing:
            data["links"] = [link for link in data["links"] if link["primary"]["name"] != "h1"]
            data["namespaces"] = [n for n in data["namespaces"] if n["name"] != "p1"]
            data["routes"] = [r for r in data["routes"] if r.get("dev") != "h1" and r.get("namespace") != "p1"]
        (snaps / f"node-{i:04d}.json").write_text(json.dumps(doc))
    return spec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        spec = write_fleet(Path(tmp), args.pods, args.hosts)
        print(f"wrote {args.hosts} snapshots of {args.pods} pods in {time.monotonic() - t0:.1f} s")
        for fmt in ("text", "json", "markdown"):
            t1 = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "nkplan.cli", "plan", str(spec), "--state", f"{tmp}/snapshots", "--format", fmt],
                capture_output=True, text=True, cwd=ROOT,
            )  # fmt: skip
            took = time.monotonic() - t1
            lines = proc.stdout.strip().splitlines()
            last = lines[-1] if fmt == "text" and lines else f"{len(proc.stdout)} bytes"
            print(f"plan --state DIR --format {fmt:8}: {took:6.1f} s  exit {proc.returncode}  {last}")
            if proc.returncode not in (0, 2):
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
