"""The kernel contract (tests/contract/suite.py) held against the host kernel, with veth pairs
(the host kernel has no netkit): the same functions the fake is held to."""

from __future__ import annotations

import itertools

import pytest

from nkplan.kernel.linux import LinuxKernel
from tests.contract.suite import *  # noqa: F403  (the contract's test functions)
from tests.contract.suite import World
from tests.host.conftest import Names

pytestmark = pytest.mark.host
_net = itertools.count(1)


@pytest.fixture
def world(ns: Names) -> World:
    kernel = LinuxKernel()
    kernel.check_privileges()
    return World(kernel, ns, ns.stack, "veth", kernel.read().kernel, 200 + next(_net))
