"""Property-based transitions on the fake kernel (Hypothesis): random sequences of random specs
(tests/randomspec.py: namespaces with sysctls, veth and netkit pairs with addresses, MTUs, MACs,
sysctls and tcx/netkit programs, routes of every table/metric/type drawn, rules), each written as a
YAML file and loaded by the normal loader, applied, planned again (no changes), and finally
destroyed (nothing left). Seeded (derandomize), so a run is repeatable; NKPLAN_RANDOM_LONG=1 runs
thousands of transitions instead of a few hundred.

A failure is shrunk by Hypothesis to a short sequence, and the last pair of specs of it (the
state before and the spec that failed) is written to tests/unit/regressions/ as a regression case;
test_saved_regressions replays every saved case on every run (CI starts without Hypothesis'
example database, so the files are the record)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from nkplan.kernel.fake import FakeKernel
from tests.randomspec import FAKE, regressions, specs
from tests.transitions import LONG, Tally, explore, run_steps

EXAMPLES = 1500 if LONG else 120
STEPS = 8
TALLY = Tally()


@pytest.fixture(autouse=True)
def lock_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


def nothing_left(kernel: FakeKernel) -> None:
    state = kernel.state
    assert not state.namespaces and not state.links and not state.routes, "destroy left objects behind"
    assert not state.rules and not state.hooks and not [d for d in state.devices], "destroy left objects behind"


def run_on_fake(steps: list[dict[str, Any]], folder: Path, tally: Tally) -> None:
    kernel = FakeKernel()
    run_steps(
        steps, kernel=kernel, folder=folder, stack="rnd", prefix="t", tally=tally,
        after_all=lambda: nothing_left(kernel),
    )  # fmt: skip


def test_random_transitions_on_the_fake_kernel(tmp_path_factory: pytest.TempPathFactory) -> None:
    explore(
        st.lists(specs(FAKE), min_size=1, max_size=STEPS),
        EXAMPLES,
        "fake",
        lambda steps: run_on_fake(steps, tmp_path_factory.mktemp("random"), TALLY),
    )
    print(f"\nfake kernel: {TALLY.transitions} transitions in {TALLY.examples} sequences, {TALLY.seconds:.1f} s")
    assert TALLY.transitions >= EXAMPLES, TALLY  # the run really applied specs


@pytest.mark.parametrize("case", regressions(), ids=lambda p: p.name)
def test_saved_regressions(case: Path, tmp_path: Path) -> None:
    """Every saved failing pair: applied from an empty stack, then the second, then destroyed."""
    saved = json.loads(case.read_text())
    run_on_fake([saved["before"], saved["after"]], tmp_path, Tally())
