"""The main job, glued from the layers: load → read → check capabilities → plan → apply → verify.
The CLI (and later the Ansible module) call these; they do no argument parsing or printing."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nkplan import __version__
from nkplan.core.capabilities import (
    capability_problems,
    declared_net_keys,
    declared_sysctls,
    needs_netkit,
    net_key_problems,
    snapshot_sysctl_problems,
)
from nkplan.core.desired import Desired, bpf_reads, desired
from nkplan.core.plan import Plan
from nkplan.core.planner import make_plan
from nkplan.core.records import HOST, KernelInfo, LiveState
from nkplan.errors import Interrupted, PlanError, VerifyError
from nkplan.kernel.seam import Kernel
from nkplan.run.identity import host_identity
from nkplan.spec.loader import Loaded
from nkplan.spec.models import StackSpec

if TYPE_CHECKING:  # the applier and the checks are imported when used: a plan needs neither
    from nkplan.core.reach import CheckResult, Expect, Probe
    from nkplan.run.applier import Progress

VERIFY_DELAYS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)  # namespace teardown is asynchronous


@dataclass(frozen=True)
class Planned:
    plan: Plan
    live: LiveState


def plan_for(
    kernel: Kernel | None,
    loaded: Loaded,
    *,
    adopt: bool = False,
    live: LiveState | None = None,
    source: str = "kernel",
    host: dict[str, str] | None = None,
    wanted: Callable[[KernelInfo], Desired] | None = None,
) -> Planned:
    """Plan a spec against the kernel (read now) or a given snapshot (`live`, `source="snapshot"`,
    with the snapshot's `host` identity)."""
    spec = loaded.spec
    if live is None:
        assert kernel is not None
        live = kernel.read(
            probe_netkit=needs_netkit(spec),
            sysctls=declared_sysctls(spec),
            net_keys=declared_net_keys(spec),
            bpf_reads=bpf_reads(spec, loaded.source.filename, loaded.objects, loaded.object_maps),
        )
    locate = loaded.source.where
    problems = capability_problems(spec, live.kernel, locate)
    if live.kernel.host_net_keys is not None:  # a snapshot holds no sysctls to check against
        problems += net_key_problems(spec, live, locate)
    if source == "snapshot":  # ... and only the values of the keys its `show` was asked for
        problems += snapshot_sysctl_problems(spec, live, locate)
    if kernel is not None and loaded.objects:
        problems += [f"{loaded.source.filename}: cannot manage BPF programs here: {p}" for p in kernel.bpf_problems()]
    if problems:
        raise PlanError(problems)
    if wanted is not None:  # the caller's (cached) desired state: a fleet plans one spec many times
        want = wanted(live.kernel)
    else:
        want = desired(spec, live.kernel, loaded.source.filename, loaded.objects, loaded.object_maps)
    plan = make_plan(want, live, adopt=adopt, locate=locate)
    ident = host if host is not None else host_identity()
    meta = {
        "nkplan_version": __version__,
        "spec_file": loaded.source.filename,
        "spec_digest": loaded.digest,
        "source": source,
        "host": {**ident, "kernel": live.kernel.release or ident.get("kernel", "")},
        "adopt": adopt,
    }
    return Planned(dataclasses.replace(plan, meta=meta), live)


def empty_spec(stack: str, filename: str = "<destroy>") -> Loaded:
    from nkplan.spec.loader import SourceMap

    return Loaded(StackSpec(stack=stack), SourceMap(filename))


def apply_and_verify(
    kernel: Kernel,
    loaded: Loaded,
    plan: Plan,
    *,
    adopt: bool = False,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    keep_on_check_failure: bool = False,
) -> None:
    """Apply, verify by re-reading, then run the spec's reachability checks. The checks run
    inside the apply (apply_plan's `confirm`), so its undo journal is still there when one
    fails: the apply is rolled back and ChecksFailed raised, saying so. With
    keep_on_check_failure the checks run after the apply is over and a failure keeps it."""

    def verify() -> None:
        left: Plan | None = None
        for delay in VERIFY_DELAYS:
            sleep(delay)
            left = plan_for(kernel, loaded, adopt=False).plan
            if not left.has_changes:
                return
        assert left is not None
        pending = ", ".join(f"{c.address} ({c.action})" for c in left.changes if c.action != "no-op")
        raise VerifyError(f"after apply the kernel still differs from the spec: {pending}")

    def confirm() -> None:
        verify()
        if not keep_on_check_failure:
            require_checks(kernel, loaded.spec)

    from nkplan.run.applier import apply_plan

    apply_plan(kernel, plan, progress, confirm)
    try:
        if keep_on_check_failure:
            require_checks(kernel, loaded.spec, note="the apply was kept (--keep-on-check-failure)")
    except KeyboardInterrupt as exc:  # the apply is over and verified: it stays
        raise interrupted_after(exc, "during the checks (--keep-on-check-failure)") from None


def interrupted_after(exc: KeyboardInterrupt, when: str) -> Interrupted:
    """A signal once an apply's steps are all done and verified: the change is kept."""
    by = f" by {exc.args[0]}" if exc.args else ""
    return Interrupted(f"interrupted{by} {when}: the apply had completed and is kept")


def check_list(spec: StackSpec) -> list[tuple[Probe, Expect]]:
    from nkplan.core.reach import Probe

    return [(Probe(c.from_ or HOST, c.to, c.port, c.timeout), c.expect) for c in spec.checks]


def run_checks(kernel: Kernel, spec: StackSpec) -> list[CheckResult]:
    """Every reachability check of the spec, run together; results in spec order."""
    checks = check_list(spec)
    if not checks:
        return []
    from nkplan.core.reach import results

    return results(checks, kernel.probe([p for p, _e in checks]))


def require_checks(kernel: Kernel, spec: StackSpec, note: str = "") -> list[CheckResult]:
    """run_checks, raising ChecksFailed (with `note`) unless every check passed."""
    done = run_checks(kernel, spec)
    failed = [r for r in done if not r.passed]
    if failed:
        from nkplan.core.reach import ChecksFailed

        raise ChecksFailed(failed, len(done), note)
    return done
