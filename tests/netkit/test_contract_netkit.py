"""The kernel contract (tests/contract/suite.py) held against a kernel with netkit (inside the VM
rig, each Debian kernel), with netkit pairs: the same functions the fake is held to."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from nkplan.kernel.linux import LinuxKernel
from tests.contract.suite import *  # noqa: F403  (the contract's test functions)
from tests.contract.suite import World
from tests.host.conftest import Names, sweep_prefix

pytestmark = pytest.mark.netkit
_net = itertools.count(1)


@pytest.fixture(scope="module")
def kernel() -> LinuxKernel:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return LinuxKernel()


@pytest.fixture
def world(kernel: LinuxKernel) -> Iterator[World]:
    info = kernel.read(probe_netkit=True).kernel
    if not info.netkit:
        pytest.skip("this kernel has no netkit: run these in the VM rig (tests/vm/rig.py)")
    names = Names()
    sweep_prefix(names.prefix)
    try:
        yield World(kernel, names, names.stack, "netkit", info, 200 + next(_net))
    finally:
        sweep_prefix(names.prefix)
