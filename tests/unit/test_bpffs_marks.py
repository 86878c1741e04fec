"""The hook marker (kernel/bpf/hookmarks.py) on a plain directory, and which names of a stack's
bpffs tree are nkplan's own (kernel/bpf/orphans.py): everything else is an orphan pin."""

from __future__ import annotations

from pathlib import Path

from nkplan.kernel.bpf import hookmarks, orphans


def test_a_marker_round_trips(tmp_path: Path) -> None:
    assert hookmarks.read(str(tmp_path)) is None
    hookmarks.write(str(tmp_path), "0123456789ab", [(12, "theirs"), (3, "x.y")])
    assert hookmarks.read(str(tmp_path)) == ("0123456789ab", ("x.y (id 3)", "theirs (id 12)"))
    hookmarks.write(str(tmp_path), "ba9876543210", [])
    assert hookmarks.read(str(tmp_path)) == ("ba9876543210", ())
    hookmarks.remove(str(tmp_path))
    assert hookmarks.read(str(tmp_path)) is None


def test_what_in_a_stack_tree_is_nkplans_own() -> None:
    hook = ["pod", "eth0", "ingress"]
    assert orphans._known_file(hook, "count_pass@0123456789abcdef")
    pin = "count_pass@0123456789abcdef"
    assert orphans._known_dir(hook, f"{pin}-maps", [pin])
    assert orphans._known_dir(hook, f"{pin}-maps", [f"{pin}-new"])  # not yet renamed: the hook's leftovers
    assert not orphans._known_dir(hook, f"{pin}-maps", [])  # its link pin gone: its maps are orphans
    assert orphans._known_dir(hook, ":applied@0123456789ab", [])
    assert orphans._known_file([":maps"], "counters")
    assert orphans._known_dir([":host"], ":rules", [])
    assert not orphans._known_file(hook, "stray")
    assert not orphans._known_file([], "stray")
    assert not orphans._known_file(["pod", "eth0"], "stray")
    assert not orphans._known_dir(hook, "stuff", [])
