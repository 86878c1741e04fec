"""The layers, enforced statically. The pure layers (spec/, core/, documents/, errors, and the
fake kernel with the seam it implements) must not reach the kernel: no module of theirs may
import, directly or through other nkplan modules, anything under nkplan.kernel (except the fake
and the seam), nkplan.run, nkplan.api, nkplan.cli, ctypes, pyroute2, or the libbpf wrapper.
That keeps `validate` and planning usable without root and the planner testable without a
kernel. Read from the source (AST, every import statement, also those inside functions), so a
lazy import counts as much as a top-level one, and every module of a pure layer is covered."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nkplan"
PURE_PACKAGES = ("nkplan.spec", "nkplan.core", "nkplan.documents")
PURE_MODULES = ("nkplan.errors", "nkplan.kernel.fake", "nkplan.kernel.seam")
# the pure side may use these modules of the kernel package: the seam's protocol and the fake
KERNEL_ALLOWED = ("nkplan.kernel.fake", "nkplan.kernel.seam")
FORBIDDEN_PREFIXES = ("nkplan.kernel", "nkplan.run", "nkplan.api", "nkplan.cli", "ctypes", "pyroute2")
CORE_FORBIDDEN = ("ruamel",)  # the planner core does no YAML


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every module an import statement of the file names (absolute, as written)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, module_name(p, root)) for p in sorted(root.rglob("*.py"))}


def is_pure(name: str) -> bool:
    return name in PURE_MODULES or any(name == p or name.startswith(p + ".") for p in PURE_PACKAGES)


def violations(graph: dict[str, set[str]]) -> list[str]:
    """'pure.module -> ... -> forbidden' for every pure module that reaches a forbidden one."""
    out = []
    for start in sorted(m for m in graph if is_pure(m)):
        seen: dict[str, str | None] = {start: None}
        todo = [start]
        while todo:
            cur = todo.pop()
            for dep in sorted(graph.get(cur, ())):
                forbidden = dep.startswith(FORBIDDEN_PREFIXES) and not dep.startswith(KERNEL_ALLOWED)
                if start.startswith("nkplan.core") and dep.startswith(CORE_FORBIDDEN):
                    forbidden = True
                if forbidden:
                    chain = [dep, cur]
                    while seen[chain[-1]] is not None:
                        chain.append(seen[chain[-1]])  # type: ignore[arg-type]
                    out.append(" -> ".join(reversed(chain)))
                    continue
                if dep in graph and dep not in seen:
                    seen[dep] = cur
                    todo.append(dep)
    return out


def test_every_pure_layer_is_covered() -> None:
    graph = import_graph()
    for pkg in PURE_PACKAGES:
        assert any(m.startswith(pkg + ".") for m in graph), f"{pkg} has no modules: the layer list is stale"
    assert sum(is_pure(m) for m in graph) >= 25  # not a hand-picked list: every module of those layers


def test_pure_layers_do_not_reach_the_kernel() -> None:
    found = violations(import_graph())
    assert not found, "pure modules reach kernel-facing code:\n" + "\n".join(found)


def test_a_planted_import_is_caught(tmp_path: Path) -> None:
    """The check itself can fail: a lazy import of the netlink layer inside a function of a copy of
    the planner, two modules away from the module that is checked."""
    copy = tmp_path / "nkplan"
    for src in PACKAGE.rglob("*.py"):
        dst = copy / src.relative_to(PACKAGE)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text())
    planner = copy / "core" / "planner.py"
    planted = "\n\ndef _planted() -> None:\n    from nkplan.kernel.netlink import rtnl  # noqa\n"
    planner.write_text(planner.read_text() + planted)
    found = violations(import_graph(copy))
    assert "nkplan.core.planner -> nkplan.kernel.netlink" in found, found
    assert "nkplan.core.planner -> nkplan.kernel.netlink.rtnl" in found, found


@pytest.mark.parametrize("forbidden", ["pyroute2", "ctypes"])
def test_importing_every_pure_module_loads_no_kernel_library(forbidden: str) -> None:
    """The same at run time: import every pure module in a fresh interpreter."""
    pure = sorted(m for m in import_graph() if is_pure(m))
    code = f"import sys\nfor m in {pure!r}: __import__(m)\nprint({forbidden!r} in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", f"importing the pure modules loaded {forbidden}"
