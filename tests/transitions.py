"""Runs a sequence of random specs (tests/randomspec.py) through nkplan, as a user would: each spec
written as a YAML file, loaded by the normal loader, applied (plan, apply, verify), then planned
again, which must show no changes; finally the stack is destroyed and must leave nothing. The
kernel-specific checks (decoys untouched, nothing left) are the caller's `after_step`/`after_all`.

On a failure it remembers the step that failed and the one before it, so the test can save the
shrunk pair as a regression case (tests/unit/regressions, replayed on every run)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nkplan import api
from nkplan.kernel.seam import Kernel
from tests.randomspec import describe, render, save_regression

NOTE = "failing pair: "
EMPTY: dict[str, Any] = {"namespaces": [], "links": [], "routes": [], "rules": []}
# On: NKPLAN_RANDOM_LONG=1 raises the number of random examples (see README, Run the tests)
LONG = os.environ.get("NKPLAN_RANDOM_LONG") == "1"


@dataclass
class Tally:
    """What a random run did: applies (transitions, the destroys included) and time spent."""

    transitions: int = 0
    examples: int = 0
    seconds: float = 0.0


def changes(plan: Any) -> list[str]:
    return [f"{c.address} {c.action} ({c.reason})" for c in plan.changes if c.action != "no-op"]


def run_steps(
    steps: Sequence[dict[str, Any]],
    *,
    kernel: Kernel | None,
    folder: Path,
    stack: str,
    prefix: str,
    tally: Tally,
    after_step: Callable[[], None] = lambda: None,
    after_all: Callable[[], None] = lambda: None,
) -> None:
    """Apply each spec in turn from an empty stack, then destroy. Every step: the apply succeeds,
    a fresh plan is empty, `after_step()` holds. At the end: `after_all()` (nothing of the stack
    left). On any failure the pair (previous spec, failing spec) goes to tally.failed."""
    started = time.monotonic()
    tally.examples += 1
    done: list[dict[str, Any]] = []
    try:
        for number, abstract in enumerate(steps):
            done.append(abstract)
            path = folder / f"step{number}.yaml"
            path.write_text(render(abstract, stack, prefix))
            loaded = api.load_file(str(path))
            api.apply(loaded, on=kernel)
            tally.transitions += 1
            left = changes(api.plan(loaded, on=kernel).plan)
            assert not left, f"a re-plan after applying step {number} is not empty: {left}"
            after_step()
        done.append(EMPTY)
        api.destroy(stack, on=kernel)
        tally.transitions += 1
        after_all()
    except BaseException as exc:
        pair = done[-2:] if len(done) > 1 else [EMPTY, *done]
        # carried by the exception itself: the one Hypothesis finally raises is the shrunk example's
        exc.add_note(NOTE + json.dumps({"before": pair[0], "after": pair[1], "error": f"{type(exc).__name__}: {exc}"}))
        raise
    finally:
        tally.seconds += time.monotonic() - started


def failing_pairs(exc: BaseException) -> list[dict[str, Any]]:
    """The failing pairs noted on an exception (and on those of an exception group: Hypothesis
    raises one when it found several distinct failures)."""
    found = [json.loads(n[len(NOTE) :]) for n in getattr(exc, "__notes__", []) if n.startswith(NOTE)]
    for inner in exc.exceptions if isinstance(exc, BaseExceptionGroup) else ():
        found += failing_pairs(inner)
    return found


def save_failures(exc: BaseException, kernel: str) -> None:
    """Save every shrunk failing pair as a regression case and say where."""
    for case in failing_pairs(exc):
        path = save_regression(kernel, case["before"], case["after"], case["error"])
        print(f"\nshrunk failing pair saved as {path} (commit it):\n{describe(case['before'], case['after'])}")


def explore(
    strategy: Any, examples: int, kernel: str, run: Callable[[list[dict[str, Any]]], None]
) -> None:
    """Hypothesis over sequences of specs drawn from `strategy`, seeded (derandomize: a run is
    repeatable) and without Hypothesis' database (CI starts clean: the saved pairs are the
    record); a failure's shrunk pair is saved under tests/unit/regressions/ before it is raised."""
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def transitions(steps: list[dict[str, Any]]) -> None:
        run(steps)

    try:
        transitions()
    except BaseException as exc:
        save_failures(exc, kernel)
        raise
