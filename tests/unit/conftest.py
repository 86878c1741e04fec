from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest

from nkplan.api import Loaded, load_text


@pytest.fixture
def spec() -> Callable[[str], Loaded]:
    def make(text: str) -> Loaded:
        return load_text(textwrap.dedent(text), "t.yaml")

    return make
