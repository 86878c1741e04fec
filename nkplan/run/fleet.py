"""The fleet review: one spec (or a spec per group of hosts) planned offline against a directory of
host snapshots (`nkplan plan SPEC --state SNAPDIR`), in parallel across cores, no root needed.

SNAPDIR holds one snapshot per host, `HOST.json` as `nkplan show --format json` (or Ansible's
`state: gathered`) wrote it; the host is named by the file. SPEC is a spec file (every host), or
a fleet map:

    fleet:
      edge-*: edge.yaml      # host-name globs (fnmatch), first match wins,
      "*": pods.yaml         # spec paths relative to the map

Each host's plan is what `nkplan plan SPEC --state SNAPDIR/HOST.json` would print; `out` writes
each as a saved plan `OUT/HOST.json`, which applies on that host while it still holds what its
snapshot held (documents/savedplan.check_fresh)."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from nkplan.core.desired import Desired, desired
from nkplan.core.records import KernelInfo
from nkplan.documents.fleet import HostResult
from nkplan.documents.signing import PlanKey
from nkplan.errors import NkplanError, PlanError, SpecError

SERIAL_BELOW = 16  # hosts: fewer are planned in this process (starting workers costs more)
CHUNK = 8  # hosts per task sent to a worker


@dataclass(frozen=True)
class Host:
    name: str
    snapshot: str
    spec: str | None  # None: no pattern of the fleet map matches the host


def fleet_map(path: str) -> list[tuple[str, str]] | None:
    """The (pattern, spec path) pairs of a fleet map file, or None when `path` is a spec."""
    try:
        data = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise NkplanError(f"cannot read {path}: {exc.strerror}") from None
    except Exception:  # a spec with a YAML error: the spec loader says where, with position
        return None
    if not isinstance(data, dict) or "fleet" not in data or "stack" in data:
        return None
    entries = data["fleet"]
    if not isinstance(entries, dict) or not entries or set(data) != {"fleet"}:
        raise NkplanError(f"{path}: a fleet map is one key, fleet:, mapping host-name patterns to spec files")
    base = Path(path).parent
    out = []
    for pattern, spec in entries.items():
        if not isinstance(pattern, str) or not isinstance(spec, str):
            raise NkplanError(f"{path}: fleet: {pattern!r}: {spec!r}: expected a host pattern and a spec file path")
        out.append((pattern, str(base / spec)))
    return out


def hosts(spec: str, state_dir: str) -> list[Host]:
    """The hosts of SNAPDIR (sorted by name), each with its snapshot and spec."""
    base = Path(state_dir)
    try:
        files = sorted(p for p in base.iterdir() if p.suffix == ".json" and p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise NkplanError(f"cannot read the snapshot directory {state_dir}: {exc.strerror}") from None
    if not files:
        raise NkplanError(f"{state_dir}: no host snapshots (HOST.json, from `nkplan show --format json`)")
    mapping = fleet_map(spec)

    def spec_of(host: str) -> str | None:
        if mapping is None:
            return spec
        return next((path for pattern, path in mapping if fnmatch.fnmatchcase(host, pattern)), None)

    return [Host(p.stem, str(p), spec_of(p.stem)) for p in files]


# the work of one host (in a worker process) -------------------------------------------------------

_loaded: dict[str, Any] = {}  # spec path → Loaded, or the SpecError, per process


def _load(path: str) -> Any:
    if path not in _loaded:
        from nkplan import api

        try:
            _loaded[path] = api.load_file(path)
        except (SpecError, NkplanError) as exc:
            _loaded[path] = exc
    found = _loaded[path]
    if isinstance(found, Exception):
        raise found
    return found


_desired: dict[tuple[str, KernelInfo], Desired] = {}  # per process: most hosts share spec and kernel


def _wanted(path: str, loaded: Any) -> Callable[[KernelInfo], Desired]:
    """The spec's desired state for a kernel, computed once per (spec, kernel capabilities)."""

    def get(info: KernelInfo) -> Desired:
        key = (path, info)
        if key not in _desired:
            _desired[key] = desired(loaded.spec, info, loaded.source.filename, loaded.objects, loaded.object_maps)
        return _desired[key]

    return get


def _without_note(text: str) -> str:
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("Note: planned against a snapshot of"):
        lines = lines[2:]
    return "".join(lines)


def plan_host(
    host: Host, out_dir: str | None, detailed: bool, documents: bool = True, key: PlanKey | None = None
) -> HostResult:
    from nkplan.documents import snapshot
    from nkplan.documents.json_plan import document_dict
    from nkplan.documents.savedplan import write_saved
    from nkplan.documents.text import render_plan, summary_line
    from nkplan.run.workflow import plan_for

    def failed(problems: Sequence[str]) -> HostResult:
        return HostResult(host.name, host.spec, host.snapshot, "", "", None, tuple(problems), 1)

    if host.spec is None:
        return failed([f"no pattern of the fleet map matches host {host.name!r}"])
    try:
        loaded = _load(host.spec)
        live, ident = snapshot.load(host.snapshot)
        plan = plan_for(None, loaded, live=live, source="snapshot", host=ident, wanted=_wanted(host.spec, loaded)).plan
        if out_dir is not None:
            write_saved(plan, loaded, str(Path(out_dir) / f"{host.name}.json"), key)
    except SpecError as exc:
        return failed(exc.problems)
    except PlanError as exc:
        return failed(exc.problems)
    except NkplanError as exc:
        return failed([str(exc)])
    code = 2 if detailed and plan.has_changes else 0
    summary = summary_line(plan) if plan.has_changes else "No changes."
    text = _without_note(render_plan(plan))
    doc = None
    if documents:  # what changes only: a fleet's no-op entries would be most of the report (and its time)
        changing = dataclasses.replace(plan, changes=tuple(c for c in plan.changes if c.action != "no-op"))
        doc = document_dict(changing)
        doc["planned_against"]["state_fingerprint"] = plan.fingerprint  # of the whole state, as always
    return HostResult(host.name, host.spec, host.snapshot, summary, text, doc, (), code,
                      plan.has_changes)  # fmt: skip


def _plan_chunk(
    chunk: Sequence[Host], out_dir: str | None, detailed: bool, documents: bool, key: PlanKey | None
) -> list[HostResult]:
    return [plan_host(h, out_dir, detailed, documents, key) for h in chunk]


def plan_fleet(
    members: Sequence[Host],
    *,
    out_dir: str | None = None,
    detailed: bool = False,
    documents: bool = True,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    key: PlanKey | None = None,
) -> list[HostResult]:
    """Every host's plan, in host order; in worker processes (one per core) from SERIAL_BELOW hosts."""
    if out_dir is not None:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NkplanError(f"cannot create the plan directory {out_dir}: {exc.strerror}") from None
    workers = jobs or os.cpu_count() or 1
    if len(members) < SERIAL_BELOW or workers == 1:
        results = []
        for i, h in enumerate(members):
            results.append(plan_host(h, out_dir, detailed, documents, key))
            if progress:
                progress(i + 1, len(members))
        return results
    chunks = [members[i : i + CHUNK] for i in range(0, len(members), CHUNK)]
    results = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        n = len(chunks)
        for part in pool.map(_plan_chunk, chunks, [out_dir] * n, [detailed] * n, [documents] * n, [key] * n):
            results.extend(part)
            if progress:
                progress(len(results), len(members))
    return results
