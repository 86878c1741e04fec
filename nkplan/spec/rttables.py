"""Routing table numbers and names, as iproute2 knows them: the reserved names (`main` 254, `local`
255, `default` 253) and the names of `/etc/iproute2/rt_tables` (and `rt_tables.d/*.conf`; where
/etc has no rt_tables, iproute2 ≥ 6.x's `/usr/share/iproute2/rt_tables`). Names are resolved when
a spec is loaded, on the machine that loads it; records, plans and snapshots hold numbers."""

from __future__ import annotations

import glob
import os
from functools import cache
from typing import Annotated

from pydantic import PlainValidator, WithJsonSchema

from nkplan.core.records import RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RT_TABLE_MAIN

MAX_TABLE = 2**32 - 1
RESERVED = {"default": RT_TABLE_DEFAULT, "main": RT_TABLE_MAIN, "local": RT_TABLE_LOCAL}
ETC = "/etc/iproute2"
USR = "/usr/share/iproute2"


def _parse(path: str, into: dict[str, int]) -> None:
    """`NUMBER NAME` lines (decimal or 0x hex), `#` comments, as iproute2's rtnl_tab_initialize."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        try:
            number = int(words[0], 0)
        except ValueError:
            continue
        if 0 <= number <= MAX_TABLE:
            into.setdefault(words[1], number)


@cache
def names(etc: str = ETC, usr: str = USR) -> dict[str, int]:
    """name → number of every table this machine names (reserved names first, as iproute2)."""
    out = dict(RESERVED)
    main_file = os.path.join(etc, "rt_tables")
    _parse(main_file if os.path.exists(main_file) else os.path.join(usr, "rt_tables"), out)
    for extra in sorted(glob.glob(os.path.join(etc, "rt_tables.d", "*.conf"))):
        _parse(extra, out)
    return out


def check_table(value: object) -> int:
    """A table by number (1–4294967295) or by name."""
    if isinstance(value, bool):
        raise ValueError(f"a routing table is a number or a name, not {value!r}")
    if isinstance(value, str):
        known = names()
        if value in known:
            return known[value]
        try:
            value = int(value, 0)
        except ValueError:
            raise ValueError(
                f"routing table {value!r} is not a number and not a name of {ETC}/rt_tables "
                f"(known: {', '.join(sorted(known))})"
            ) from None
    if not isinstance(value, int):
        raise ValueError(f"a routing table is a number or a name, not {value!r}")
    if not 1 <= value <= MAX_TABLE:
        raise ValueError(f"routing table {value} is out of range (1-{MAX_TABLE})")
    return value


def table_name(number: int) -> str:
    """How plans show a table: its reserved name, else the number."""
    for name, n in RESERVED.items():
        if n == number:
            return name
    return str(number)


Table = Annotated[int, PlainValidator(check_table), WithJsonSchema({"type": ["integer", "string"]})]
