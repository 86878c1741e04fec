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


def test_one_listing_per_directory_walks_as_os_walk(tmp_path: Path) -> None:
    """bpffs.Listing: its walk is os.walk's (pruned in place, symlinks listed, never followed),
    its subdirs and names what the direct scandir and listdir give, each directory read once."""
    import os

    from nkplan.kernel.bpf import bpffs

    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "skip" / "deep").mkdir(parents=True)
    for f in ("a/f1", "a/b/f2", "a/b/c/f3", "a/skip/deep/f4"):
        (tmp_path / f).write_text("")
    (tmp_path / "a" / "to-b").symlink_to(tmp_path / "a" / "b")
    (tmp_path / "a" / "dangling").symlink_to(tmp_path / "nowhere")

    def walked(walk: object) -> list[tuple[str, list[str], list[str]]]:
        out = []
        for base, dirs, files in walk:  # type: ignore[attr-defined]
            dirs[:] = sorted(d for d in dirs if d != "skip")
            out.append((base, dirs[:], sorted(files)))
        return out

    listing = bpffs.Listing()
    assert walked(listing.walk(str(tmp_path))) == walked(os.walk(str(tmp_path)))
    assert walked(listing.walk(str(tmp_path / "absent"))) == []
    for d in (tmp_path, tmp_path / "a", tmp_path / "absent", tmp_path / "a" / "f1"):
        direct = sorted(e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False)) if d.is_dir() else []
        assert listing.subdirs(str(d)) == direct
        assert listing.names(str(d)) == (sorted(os.listdir(d)) if d.is_dir() else [])
    (tmp_path / "a" / "later").mkdir()
    assert "later" not in listing.subdirs(str(tmp_path / "a"))  # listed once, at the first ask
