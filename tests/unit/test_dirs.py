"""`nkplan plan|apply|destroy DIR` through the fake kernel: a directory of stack files, one report,
the worst exit code, nothing applied unless every stack plans, stack-by-stack apply."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from nkplan import api, cli
from nkplan.documents.json_plan import plan_schema
from nkplan.errors import KernelError
from nkplan.kernel.fake import FakeKernel
from nkplan.run.many import stack_files, worst

A = "stack: a\nnamespaces: [{name: a1}, {name: a2}]\n"
B = "stack: b\ninclude: [parts/b.yaml]\nnamespaces: [{name: b1}]\n"
B_PART = "namespaces:\n  - name: b2\nlinks:\n  - {name: vb, kind: veth, peer: {name: eth0, namespace: b2}}\n"
C = "stack: c\nnamespaces: [{name: c1}]\n"


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    fake = FakeKernel()
    monkeypatch.setattr(api, "kernel", lambda: fake)
    return fake


def stacks(tmp_path: Path, **files: str) -> str:
    d = tmp_path / "stacks"
    (d / "parts").mkdir(parents=True)
    (d / "parts" / "b.yaml").write_text(B_PART)
    (d / "README.md").write_text("not a stack\n")
    (d / ".hidden.yaml").write_text("not: a stack\n")
    for name, text in files.items():
        (d / name.replace("_", ".")).write_text(text)
    return str(d)


def test_which_files_are_stacks(tmp_path: Path) -> None:
    d = stacks(tmp_path, b_yml=B, a_yaml=A, c_yaml=C)
    assert [Path(f).name for f in stack_files(d)] == ["a.yaml", "b.yml", "c.yaml"]  # sorted, not parts/


def test_worst_exit_code() -> None:
    assert worst([0, 2, 3, 1]) == 1
    assert worst([0, 2, 3]) == 3
    assert worst([2, 0]) == 2
    assert worst([]) == 0
    assert worst([4, 3]) == 4 and worst([130, 1]) == 130


def test_three_stacks_applied_and_destroyed(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    d = stacks(tmp_path, a_yaml=A, b_yaml=B, c_yaml=C)
    assert cli.main(["plan", d, "--detailed-exitcode"]) == 2
    out = capsys.readouterr().out
    assert out.index(f"=== stack 'a' ({d}/a.yaml) ===") < out.index("=== stack 'b'") < out.index("=== stack 'c'")
    assert "3 stacks: 3 with changes, 0 without, 0 not planned (errors)." in out

    assert cli.main(["apply", d, "--yes"]) == 0
    out = capsys.readouterr().out
    assert "Apply complete: 3 stacks changed, 0 had no changes." in out
    assert set(kernel.state.namespaces) >= {"a1", "a2", "b1", "b2", "c1"}
    assert {s.stack for s in api.stacks(on=kernel)} == {"a", "b", "c"}
    assert cli.main(["plan", d, "--detailed-exitcode"]) == 0
    assert "3 stacks: 0 with changes, 3 without" in capsys.readouterr().out

    assert cli.main(["destroy", d, "--yes"]) == 0
    out = capsys.readouterr().out
    assert out.index("=== destroy stack 'c'") < out.index("=== destroy stack 'a'")  # reverse order
    assert api.stacks(on=kernel) == []
    assert not {"a1", "a2", "b1", "b2", "c1"} & set(kernel.state.namespaces)


def test_a_broken_file_stops_only_its_own_plan_and_apply_changes_nothing(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    d = stacks(tmp_path, a_yaml=A, b_yaml="stack: b\nnamespaces: [{name: b1, bogus: 1}]\n", c_yaml=C)
    assert cli.main(["plan", d, "--detailed-exitcode"]) == 1
    cap = capsys.readouterr()
    assert f"error: {d}/b.yaml:2:25: namespaces[0].bogus: unknown field 'bogus'" in cap.err
    assert "Plan: 2 to add" in cap.out and "Plan: 1 to add" in cap.out  # a and c are planned
    assert "3 stacks: 2 with changes, 0 without, 1 not planned (errors)." in cap.out

    doc = json.loads(_run_json(d, capsys))
    jsonschema.validate(doc, plan_schema())
    assert doc["kind"] == "plan-set" and doc["exit_code"] == 1 and doc["has_errors"]
    assert [(s["stack"], s["exit_code"], s["plan"] is None) for s in doc["stacks"]] == [
        ("a", 0, False),
        (None, 1, True),
        ("c", 0, False),
    ]

    assert cli.main(["apply", d, "--yes"]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert kernel.state.namespaces == {} or not {"a1", "c1"} & set(kernel.state.namespaces)
    assert api.stacks(on=kernel) == []


def _run_json(d: str, capsys: pytest.CaptureFixture[str]) -> str:
    cli.main(["plan", d, "--format", "json"])
    return capsys.readouterr().out


def test_markdown_is_one_comment_with_a_section_per_stack(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    d = stacks(tmp_path, a_yaml=A, b_yaml="stack: b\nnamespaces: [{name: b1, bogus: 1}]\n", c_yaml=C)
    assert cli.main(["plan", d, "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    assert md.startswith(f"<!-- nkplan-plan-set dir={d} -->\n## nkplan plan for 3 stacks")
    assert "### nkplan plan for stack `a`" in md and "### nkplan plan for stack `c`" in md
    assert "b.yaml: not planned" in md and "unknown field 'bogus'" in md


def test_same_stack_twice_and_one_object_in_two_stacks(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    d = stacks(
        tmp_path, a_yaml=A, b_yaml="stack: a\nnamespaces: [{name: z}]\n", c_yaml="stack: c\nnamespaces: [{name: a2}]\n"
    )
    assert cli.main(["plan", d]) == 1
    err = capsys.readouterr().err
    assert f"{d}/a.yaml:1:8: stack 'a' is also declared by {d}/b.yaml" in err
    assert f"{d}/b.yaml:1:8: stack 'a' is also declared by {d}/a.yaml" in err
    d2 = stacks(tmp_path / "two", a_yaml=A, c_yaml="stack: c\nnamespaces: [{name: a2}]\n")
    assert cli.main(["apply", d2, "--yes"]) == 1
    err = capsys.readouterr().err
    assert f"{d2}/a.yaml: namespace[a2] is also declared by stack 'c' ({d2}/c.yaml)" in err
    assert f"{d2}/c.yaml: namespace[a2] is also declared by stack 'a' ({d2}/a.yaml)" in err
    assert api.stacks(on=kernel) == []


def test_stack_two_of_three_fails_at_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(op: str, obj: object) -> KernelError | None:
        return KernelError("refused (EPERM)") if op == "create_link" else None

    fake = FakeKernel(fail=fail)
    monkeypatch.setattr(api, "kernel", lambda: fake)
    d = stacks(tmp_path, a_yaml=A, b_yaml=B, c_yaml=C)
    assert cli.main(["apply", d, "--yes"]) == 1
    err = capsys.readouterr().err
    assert f"stack 'b' ({d}/b.yaml): apply failed (above: what became of its steps)" in err and "rolled back" in err
    assert f"already applied and kept: {d}/a.yaml" in err and f"not attempted: {d}/c.yaml" in err
    assert [s.stack for s in api.stacks(on=fake)] == ["a"]  # b rolled back, c never started


def test_out_and_metrics_are_refused_for_a_directory(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    d = stacks(tmp_path, a_yaml=A)
    assert cli.main(["plan", d, "--out", str(tmp_path / "p.json")]) == 1
    assert "a saved plan holds one stack" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_an_empty_directory_is_an_error(tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert cli.main(["plan", str(tmp_path / "empty")]) == 1
    assert "no stack files" in capsys.readouterr().err


def test_validate_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = stacks(tmp_path, a_yaml=A, b_yaml=B, c_yaml="stack: c\nnamespaces: [{name: c1, bogus: 1}]\n")
    assert cli.main(["validate", d]) == 1
    cap = capsys.readouterr()
    assert f"{d}/b.yaml: valid (stack 'b': 2 namespaces, 1 links" in cap.out
    assert "3 stack files: 2 valid, 1 with problems." in cap.out
    assert f"error: {d}/c.yaml:2:25: namespaces[0].bogus" in cap.err


def test_a_fragment_at_the_top_level_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = stacks(tmp_path, a_yaml="stack: a\ninclude: [common.yaml]\n", common_yaml="namespaces: [{name: x}]\n")
    assert cli.main(["validate", d]) == 1
    assert f"{d}/common.yaml: is included by {d}/a.yaml as a fragment" in capsys.readouterr().err


def test_markdown_of_many_stacks_stays_under_the_limit() -> None:
    from nkplan.documents.many import StackResult, render_set_markdown

    kernel = FakeKernel()
    results = []
    for i in range(40):
        text = f"stack: s{i}\nnamespaces: [" + ", ".join(f"{{name: n{i}x{j}}}" for j in range(30)) + "]\n"
        results.append(
            StackResult(f"d/s{i}.yaml", f"s{i}", api.plan(api.load_text(text, f"s{i}.yaml"), on=kernel).plan)
        )
    md = render_set_markdown("d", results, limit=60000)
    assert len(md) <= 60000
    assert md.count("| `s") == 40  # every stack is in the table
    assert "stack sections left out (comment size limit)" in md
    small = render_set_markdown("d", results[:3])
    assert small.count("### nkplan plan for stack") == 3 and "left out" not in small


def test_a_stack_changed_between_plan_and_apply_is_refused_as_stale(
    tmp_path: Path, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.apply(api.load_text(C, "c.yaml"), on=kernel)  # c1 exists, owned by c
    d = stacks(tmp_path, a_yaml=A, c_yaml="stack: c\nnamespaces: [{name: c1}, {name: c2}]\n")

    def meddle(args: object, verb: str) -> None:  # someone deletes c1 while the plans are shown
        kernel.state.namespaces.pop("c1")

    monkeypatch.setattr(cli, "_confirm", meddle)
    assert cli.main(["apply", d]) == 3
    err = capsys.readouterr().err
    assert f"{d}/c.yaml: the live state of stack 'c' changed since its plan was shown" in err
    assert f"already applied and kept: {d}/a.yaml" in err
    assert "c2" not in kernel.state.namespaces and "a1" in kernel.state.namespaces


def test_two_stacks_may_set_different_host_sysctls_but_not_the_same_one(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = "stack: {s}\nhost: {{sysctls: {{net.ipv4.conf.{dev}.rp_filter: 0}}}}\n"
    d = stacks(tmp_path, a_yaml=mine.format(s="a", dev="nk-a"), b_yaml=mine.format(s="b", dev="nk-b"))
    assert cli.main(["plan", d]) == 0, capsys.readouterr().err
    capsys.readouterr()
    d2 = stacks(tmp_path / "two", a_yaml=mine.format(s="a", dev="nk-a"), b_yaml=mine.format(s="b", dev="nk-a"))
    assert cli.main(["plan", d2]) == 1
    assert "sysctls[host] net.ipv4.conf.nk-a.rp_filter is also declared by stack 'b'" in capsys.readouterr().err
