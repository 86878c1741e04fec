"""The kernel contract (tests/contract/suite.py) held against the in-memory FakeKernel, for both
pair kinds. The same functions run against the host kernel and the netkit kernels."""

from __future__ import annotations

import itertools

import pytest

from nkplan.core.records import KernelInfo
from nkplan.kernel.fake import FakeKernel
from tests.contract.suite import *  # noqa: F403  (the contract's test functions)
from tests.contract.suite import World

_net = itertools.count(1)


@pytest.fixture(params=["veth", "netkit"])
def world(request: pytest.FixtureRequest) -> World:
    # the veth world's fake has netkit without single-device mode (as Linux 6.7 to 7.0), so the
    # contract's refusal side runs on the fake too
    single = request.param == "netkit"
    info = KernelInfo("fake", True, True, True, single)
    return World(FakeKernel(single=single), lambda s: f"c{s}", "contract", request.param, info, next(_net))
