"""The systemd units nkplan ships (nkplan/units/): `nkplan install-units` writes them into a unit
directory with the absolute path of this nkplan filled in (systemd wants an absolute ExecStart,
and a venv's nkplan is on no system PATH)."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nkplan.errors import NkplanError

UNIT_NAMES = ("nkplan@.service", "nkplan-drift@.service", "nkplan-drift@.timer")
PLACEHOLDER = "@NKPLAN@"
DEFAULT_DIR = "/etc/systemd/system"


def nkplan_command() -> str:
    """How systemd should start this nkplan: its console script when it is the one running (or
    sits beside this interpreter), else this interpreter with -m nkplan.cli."""
    beside = Path(sys.executable).with_name("nkplan")
    if beside.is_file() and os.access(beside, os.X_OK):
        return shlex.quote(str(beside))
    return f"{shlex.quote(sys.executable)} -m nkplan.cli"


def render(name: str, command: str) -> str:
    text = resources.files("nkplan.units").joinpath(name).read_text(encoding="utf-8")
    return text.replace(PLACEHOLDER, command)


@dataclass(frozen=True)
class Installed:
    path: Path
    changed: bool


def install(directory: str = DEFAULT_DIR, command: str | None = None) -> list[Installed]:
    """Write the units into `directory` (atomically each; unchanged files are left alone)."""
    target = Path(directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NkplanError(f"cannot create the unit directory {target}: {exc.strerror}") from None
    cmd = command or nkplan_command()
    out = []
    for name in UNIT_NAMES:
        text = render(name, cmd)
        path = target / name
        try:
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                out.append(Installed(path, False))
                continue
            tmp = path.with_name(f".{name}.{os.getpid()}")
            tmp.write_text(text, encoding="utf-8")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            raise NkplanError(f"cannot write {path}: {exc.strerror}") from None
        out.append(Installed(path, True))
    return out
