"""Fixtures for LinuxKernel's real-kernel tests on the host (root; namespaces and veth).

Every object a test makes is named from `names` (the run's TOKEN plus a per-test serial), so
tests/realkernel.host_snapshot leaves them out, and the `sweep` finalizer removes whatever carries
the test's prefix even when the test failed halfway. Markers are registered in pyproject.toml."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.host import observe
from tests.realkernel import TOKEN, host_snapshot

_serial = itertools.count(1)


class Names:
    """Per-test names: prefix k<TOKEN><serial> (7 chars), leaving 8 for a suffix (IFNAMSIZ 15)."""

    def __init__(self) -> None:
        self.prefix = f"k{TOKEN}{next(_serial) % 256:02x}"
        self.stack = f"st{self.prefix}"

    def __call__(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        assert len(name) <= 15, name
        return name


@pytest.fixture
def names() -> Names:
    return Names()


def sweep_prefix(prefix: str) -> None:
    """Remove every namespace and host device whose name starts with prefix; wait until the
    kernel has really let go of them (namespace deletion is asynchronous)."""
    for ns in observe.netns_names():
        if ns.startswith(prefix):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for dev in observe.link_names():
        if dev.startswith(prefix):
            subprocess.run(["ip", "link", "del", dev], capture_output=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not any(d.startswith(prefix) for d in observe.link_names()):
            return
        time.sleep(0.1)
    raise AssertionError(f"devices named {prefix}* still present 20 s after cleanup")


@pytest.fixture
def sweep(names: Names) -> Iterator[Names]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    sweep_prefix(names.prefix)
    try:
        yield names
    finally:
        sweep_prefix(names.prefix)


@pytest.fixture
def host_unchanged() -> Iterator[None]:
    """The host's own devices, addresses, routes and namespaces (everything not carrying the run's
    token) are identical before and after the test."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    before = host_snapshot()
    yield
    assert host_snapshot() == before, "the test changed host state it did not create"


@pytest.fixture
def ns(sweep: Names, host_unchanged: None) -> Names:
    """The usual combination: unique names, swept afterwards, host checked unchanged."""
    return sweep
