"""The pure layers must not load kernel-facing libraries: that keeps `validate` and planning
usable without root, and the planner testable without a kernel."""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "nkplan.planner",
    "nkplan.plan",
    "nkplan.desired",
    "nkplan.capabilities",
    "nkplan.loader",
    "nkplan.render.text",
    "nkplan.render.markdown",
    "nkplan.export",
    "nkplan.workflow",
    "nkplan.applier",
    "nkplan.kernel.fake",
]


def test_pure_modules_do_not_import_pyroute2_or_ctypes() -> None:
    code = (
        "import sys\n"
        f"for m in {PURE!r}: __import__(m)\n"
        "bad = [m for m in ('pyroute2', 'ctypes') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"pure modules pulled in: {out}"


def test_planner_has_no_yaml_dependency() -> None:
    code = "import sys; import nkplan.planner; print('ruamel' in ' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
