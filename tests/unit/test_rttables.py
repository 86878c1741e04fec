"""Routing table names, resolved as iproute2 resolves them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nkplan.spec import rttables


def test_names_come_from_rt_tables_and_its_d_folder(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "rt_tables.d").mkdir(parents=True)
    (etc / "rt_tables").write_text("# reserved\n255\tlocal\n254 main\n100 pods # the pods\n0x20 hexed\nbad line\n")
    (etc / "rt_tables.d" / "x.conf").write_text("200 extra\n100 pods-again\n")
    got = rttables.names(str(etc), str(tmp_path / "usr"))
    assert got["pods"] == 100 and got["hexed"] == 32 and got["extra"] == 200 and got["pods-again"] == 100
    assert got["main"] == 254 and "bad" not in got


def test_usr_share_is_the_fallback_when_etc_has_no_rt_tables(tmp_path: Path) -> None:
    (tmp_path / "usr").mkdir()
    (tmp_path / "usr" / "rt_tables").write_text("7 seven\n")
    assert rttables.names(str(tmp_path / "etc"), str(tmp_path / "usr"))["seven"] == 7


@pytest.mark.parametrize(
    ("value", "want"),
    [(100, 100), ("main", 254), ("local", 255), ("0x10", 16), ("42", 42)],
)
def test_a_table_by_number_or_name(value: object, want: int) -> None:
    assert rttables.check_table(value) == want


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "routing table 0 is out of range"),
        (2**32, "out of range"),
        (True, "not True"),
        ("no-such-table", "'no-such-table' is not a number and not a name of /etc/iproute2/rt_tables"),
    ],
)
def test_a_bad_table_says_why(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rttables.check_table(value)
