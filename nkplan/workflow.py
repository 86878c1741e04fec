"""The main job, glued from the layers: load → read → check capabilities → plan → apply → verify.
The CLI (and later the Ansible module) call these; they do no argument parsing or printing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from nkplan.applier import Progress, apply_plan
from nkplan.capabilities import capability_problems, needs_netkit
from nkplan.desired import desired
from nkplan.errors import PlanError, VerifyError
from nkplan.kernel.base import Kernel
from nkplan.loader import Loaded
from nkplan.plan import Plan
from nkplan.planner import make_plan
from nkplan.spec.models import StackSpec
from nkplan.state import LiveState

VERIFY_DELAYS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)  # namespace teardown is asynchronous


@dataclass(frozen=True)
class Planned:
    plan: Plan
    live: LiveState


def plan_for(kernel: Kernel, loaded: Loaded, *, adopt: bool = False, live: LiveState | None = None) -> Planned:
    spec = loaded.spec
    if live is None:
        live = kernel.read(probe_netkit=needs_netkit(spec))
    locate = loaded.source.where
    problems = capability_problems(spec, live.kernel, locate)
    if problems:
        raise PlanError(problems)
    return Planned(make_plan(desired(spec, live.kernel), live, adopt=adopt, locate=locate), live)


def empty_spec(stack: str, filename: str = "<destroy>") -> Loaded:
    from nkplan.loader import SourceMap

    return Loaded(StackSpec(stack=stack), SourceMap(filename))


def apply_and_verify(
    kernel: Kernel,
    loaded: Loaded,
    plan: Plan,
    *,
    adopt: bool = False,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    apply_plan(kernel, plan, progress)
    left: Plan | None = None
    for delay in VERIFY_DELAYS:
        sleep(delay)
        left = plan_for(kernel, loaded, adopt=False).plan
        if not left.has_changes:
            return
    assert left is not None
    pending = ", ".join(f"{c.address} ({c.action})" for c in left.changes if c.action != "no-op")
    raise VerifyError(f"after apply the kernel still differs from the spec: {pending}")
