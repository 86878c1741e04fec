"""`include:` fragments: merged in order, positions kept per file, escapes refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from nkplan import api
from nkplan.errors import PlanFileError, SpecError


def write(base: Path, name: str, text: str) -> str:
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def problems(path: str, root: str | None = None) -> list[str]:
    with pytest.raises(SpecError) as exc:
        api.load_file(path, root=root)
    return exc.value.problems


def test_fragments_are_appended_in_order(tmp_path: Path) -> None:
    write(tmp_path, "parts/ns.yaml", "namespaces:\n  - name: b\n  - name: c\n")
    write(tmp_path, "parts/more.yaml", "x-note: ignored\nnamespaces: [{name: d}]\nroutes: []\n")
    main = write(tmp_path, "s.yaml", "stack: s\ninclude: [parts/ns.yaml, parts/more.yaml]\nnamespaces: [{name: a}]\n")
    loaded = api.load_file(main)
    assert [n.name for n in loaded.spec.namespaces] == ["a", "b", "c", "d"]
    assert [name for name, _ in loaded.fragments] == [f"{tmp_path}/parts/ns.yaml", f"{tmp_path}/parts/more.yaml"]
    assert loaded.source.where(("namespaces", 2, "name")) == f"{tmp_path}/parts/ns.yaml:3:11"
    assert loaded.source.where(("namespaces", 0, "name")) == f"{main}:3:21"
    # the digest covers the fragments too
    plain = api.load_text("stack: s\nnamespaces: [{name: a}]\n", main)
    assert loaded.digest != plain.digest
    assert "include" not in (loaded.expanded or {})


def test_problems_in_a_fragment_name_the_fragment(tmp_path: Path) -> None:
    write(tmp_path, "f/l.yaml", "links:\n  - name: x\n    kind: veth\n    bogus: 1\n")
    write(tmp_path, "f/n.yaml", "namespaces:\n  - name: a\n")
    main = write(tmp_path, "s.yaml", "stack: s\ninclude: [f/l.yaml, f/n.yaml]\nnamespaces: [{name: a}]\n")
    got = problems(main)
    assert any(p.startswith(f"{tmp_path}/f/l.yaml:4:5: ") and "unknown field 'bogus'" in p for p in got)
    assert any(p.startswith(f"{tmp_path}/f/n.yaml:2:11: ") and "declared twice" in p for p in got)


def test_escapes_and_absolute_paths_are_refused_with_positions(tmp_path: Path) -> None:
    write(tmp_path, "outside.yaml", "namespaces: [{name: evil}]\n")
    main = write(tmp_path, "d/s.yaml", "stack: s\ninclude:\n  - ../outside.yaml\n  - /etc/passwd\n  - nope.yaml\n")
    got = problems(main)
    assert got[0].startswith(f"{main}:3:5: include: '../outside.yaml' leads outside")
    assert got[1].startswith(f"{main}:4:5: include: '/etc/passwd' is an absolute path")
    assert got[2].startswith(f"{main}:5:5: include: no such file")
    # a wider root (the directory given to `plan DIR`) allows what lies inside it
    wider = write(tmp_path, "d/t.yaml", "stack: t\ninclude: [../outside.yaml]\n")
    assert [n.name for n in api.load_file(wider, root=str(tmp_path)).spec.namespaces] == ["evil"]


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "secret/x.yaml", "namespaces: [{name: evil}]\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link.yaml").symlink_to(tmp_path / "secret" / "x.yaml")
    main = write(tmp_path, "d/s.yaml", "stack: s\ninclude: [link.yaml]\n")
    assert "leads outside" in problems(main)[0]


def test_a_fragment_holds_list_sections_only(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", "stack: other\nhost: {}\nlinks: {}\n")
    main = write(tmp_path, "s.yaml", "stack: s\ninclude: [f.yaml]\n")
    got = problems(main)
    assert got[0].startswith(f"{tmp_path}/f.yaml:1:1: 'stack' cannot be in a fragment")
    assert got[1].startswith(f"{tmp_path}/f.yaml:2:1: 'host' cannot be in a fragment")
    assert got[2].startswith(f"{tmp_path}/f.yaml:3:8: links: expects a list")


def test_include_needs_a_file_and_saved_plans_refuse_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        api.load_text("stack: s\ninclude: [f.yaml]\n", "<stdin>")
    assert "include: needs a spec file" in exc.value.problems[0]
    write(tmp_path, "f.yaml", "namespaces: [{name: a}]\n")
    loaded = api.load_file(write(tmp_path, "s.yaml", "stack: s\ninclude: [f.yaml]\n"))
    from nkplan.documents.savedplan import write_saved
    from nkplan.kernel.fake import FakeKernel

    plan = api.plan(loaded, on=FakeKernel()).plan
    with pytest.raises(PlanFileError, match="uses include:"):
        write_saved(plan, loaded, str(tmp_path / "p.json"))
