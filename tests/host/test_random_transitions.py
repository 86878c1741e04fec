"""Property-based transitions on the host kernel (Hypothesis, root): random sequences of random
specs (tests/randomspec.py: up to 4 namespaces with sysctls, up to 4 veth pairs with addresses,
MTUs, MACs, device sysctls and tcx programs from bpf/build, routes of the tables/metrics/types
drawn, rules), each written as YAML, loaded by the normal loader, applied, planned again (no
changes). After every step, decoys made here by hand — an unowned namespace and an unowned host
veth pair with addresses and routes, names with the run's token — and the machine's own devices,
addresses, routes and namespaces are identical (`ip -d -j`, minus counters) to before the run;
after each sequence the stack is destroyed and no namespace, device or bpffs pin of it is left.

Seeded (derandomize): at least 200 transitions in the normal run; NKPLAN_RANDOM_LONG=1 runs more.
A shrunk failing pair is saved under tests/unit/regressions/ (replayed here and in tests/unit)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from nkplan import api
from nkplan.errors import NkplanError
from tests.host import observe
from tests.host.conftest import Names, sweep_prefix
from tests.randomspec import HOST, regressions, specs
from tests.realkernel import TOKEN, _volatile, host_snapshot, ip_json
from tests.transitions import LONG, Tally, explore, run_steps

pytestmark = pytest.mark.host
EXAMPLES = 400 if LONG else 64
STEPS = 8
MIN_TRANSITIONS = 200
TALLY = Tally()
PINS = Path("/sys/fs/bpf/nkplan")


@pytest.fixture(scope="module")
def decoys() -> Iterator[Callable[[], Any]]:
    """An unowned namespace and host veth pair, with addresses and routes on both sides; returns
    what iproute2 shows of them and of the rest of the host (minus counters)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    ns, host, peer = f"rnd{TOKEN}dz", f"rnd{TOKEN}dh", f"rnd{TOKEN}dp"
    cmds = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns],
        ["ip", "addr", "add", "198.18.250.1/30", "dev", host],
        ["ip", "link", "set", host, "up"],
        ["ip", "route", "add", "198.18.251.0/24", "dev", host],
        ["ip", "-n", ns, "addr", "add", "198.18.250.2/30", "dev", peer],
        ["ip", "-n", ns, "link", "set", peer, "up"],
        ["ip", "-n", ns, "route", "add", "198.19.0.0/24", "dev", peer],  # a destination the specs use too
    ]
    try:
        for cmd in cmds:
            subprocess.run(cmd, check=True, capture_output=True)

        settled(host, ns)

        def observed() -> Any:
            return (
                host_snapshot(),
                _volatile(ip_json("-d", "link", "show", "dev", host)),
                _volatile(ip_json("addr", "show", "dev", host)),
                ip_json("route", "show", "table", "all", "dev", host),
                _volatile(ip_json("-d", "link", "show", ns=ns)),
                _volatile(ip_json("addr", "show", ns=ns)),
                ip_json("route", "show", "table", "all", ns=ns),
                ip_json("rule", "show", ns=ns),
            )

        yield observed
    finally:
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def settled(host: str, ns: str) -> None:
    """Wait until the decoy's IPv6 link-local addresses have left duplicate address detection:
    their flags change on their own a moment after the device comes up."""
    deadline = time.monotonic() + 20
    while ip_json("-6", "addr", "show", "dev", host, "tentative") or ip_json("-6", "addr", "show", "tentative", ns=ns):
        assert time.monotonic() < deadline, "the decoy's IPv6 addresses stayed tentative for 20 s"
        time.sleep(0.1)


def nothing_left(names: Names) -> None:
    """Observed without nkplan: no namespace or device of the stack, no pins under its bpffs folder."""
    assert not [n for n in observe.netns_names() if n.startswith(names.prefix)], "destroy left namespaces"
    assert not [d for d in observe.link_names() if d.startswith(names.prefix)], "destroy left host devices"
    stack_pins = PINS / names.stack
    assert not stack_pins.exists() or not any(stack_pins.rglob("*@*")), f"destroy left pins under {stack_pins}"


def clean(names: Names) -> None:
    """After a failed sequence: destroy (bpffs pins too), then remove what is left by name."""
    try:
        api.destroy(names.stack)
    except NkplanError:
        pass
    sweep_prefix(names.prefix)


def run_on_host(steps: list[dict[str, Any]], folder: Path, names: Names, decoys: Callable[[], Any]) -> None:
    before = decoys()

    def unchanged() -> None:
        assert decoys() == before, "an unowned decoy or a host device, address, route or namespace changed"

    try:
        run_steps(
            steps, kernel=None, folder=folder, stack=names.stack, prefix=names.prefix, tally=TALLY,
            after_step=unchanged, after_all=lambda: (nothing_left(names), unchanged()),
        )  # fmt: skip
    except BaseException:
        clean(names)
        raise


def test_random_transitions_on_the_host_kernel(
    tmp_path_factory: pytest.TempPathFactory, decoys: Callable[[], Any]
) -> None:
    names = Names()
    clean(names)

    explore(
        st.lists(specs(HOST), min_size=1, max_size=STEPS),
        EXAMPLES,
        "host",
        lambda steps: run_on_host(steps, tmp_path_factory.mktemp("random"), names, decoys),
    )
    print(f"\nhost kernel: {TALLY.transitions} transitions in {TALLY.examples} sequences, {TALLY.seconds:.1f} s")
    assert TALLY.transitions >= MIN_TRANSITIONS, TALLY


def test_saved_regressions_on_the_host_kernel(tmp_path: Path, decoys: Callable[[], Any]) -> None:
    """Every saved failing pair (found on either kernel, netkit ones left out: the host has none)."""
    names = Names()
    cases = [json.loads(p.read_text()) for p in regressions()]
    veth_only = [c for c in cases if all(x["kind"] == "veth" for s in (c["before"], c["after"]) for x in s["links"])]
    assert veth_only, "no saved regression case to replay"
    for number, case in enumerate(veth_only):
        folder = tmp_path / str(number)
        folder.mkdir()
        run_on_host([case["before"], case["after"]], folder, names, decoys)
