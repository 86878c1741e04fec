"""examples/gitops/ stays true to the CLI: every `nkplan` command the CI files run uses only
subcommands, flags and choices that `nkplan ... --help` lists, both CI files treat exit code 2 of
`plan --detailed-exitcode` as success, and the policy gate (no namespace deletes) gives the right
verdict on the sample plans — evaluated with jq, with the Rego policy (rego-cpp, through regopy)
and with the same rule in Python.

The sample plans in examples/gitops/samples/ are made by nkplan itself (fake kernel); regenerate
them after a change of the JSON plan document with

    NKPLAN_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/unit/test_gitops_examples.py
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from nkplan.api import load_text
from nkplan.documents.json_plan import PlanDocument, render_json
from nkplan.kernel.fake import FakeKernel
from nkplan.run.workflow import apply_and_verify, plan_for
from tests.unit.test_planner import BASE

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "examples" / "gitops"
CI_FILES = [GITOPS / "github-actions.yml", GITOPS / "gitlab-ci.yml"]
SAMPLES = GITOPS / "samples"
OPERATORS = {">", ">>", "<", "|", "||", "&&", ";", "&", "2>", ")", "("}
HOST = {"hostname": "example-host", "machine_id": "0" * 32, "kernel": "6.12.0"}


# the CI files ---------------------------------------------------------------------------------
def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def nkplan_commands(path: Path) -> list[list[str]]:
    """Every `nkplan ...` command line in the file's values (comments are not values), as argv."""
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    found = []
    for text in _strings(data):
        for line in text.splitlines():
            if not re.search(r"(^|[\s;|&(])nkplan\s+[a-z]", line):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            try:
                tokens = list(lexer)
            except ValueError as exc:  # never skip a command line silently
                raise AssertionError(f"{path.name}: cannot tokenize {line!r}: {exc}") from None
            for i, tok in enumerate(tokens):
                if tok == "nkplan":
                    argv = []
                    for t in tokens[i + 1 :]:
                        if t in OPERATORS:
                            break
                        argv.append(t)
                    found.append(argv)
    return found


@cache
def help_text(*sub: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "nkplan.cli", *sub, "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return out.stdout


def accepted(sub: str) -> dict[str, set[str] | None]:
    """Options of `nkplan SUB` from its --help, each with its choices (None: any value / a switch)."""
    options: dict[str, set[str] | None] = {}
    for match in re.finditer(r"(?<![\w-])(--?[A-Za-z][\w-]*)(?: \{([^}]*)\})?", help_text(sub)):
        flag, choices = match.group(1), match.group(2)
        options[flag] = set(choices.split(",")) if choices else options.get(flag)
    return options


def cli_problems(path: Path) -> list[str]:
    """What in the file's `nkplan` commands the CLI would reject."""
    problems = []
    subcommands = re.findall(r"^ {4}([a-z]+)\s", help_text().split("options:")[0], re.M)
    assert "plan" in subcommands and "apply" in subcommands, help_text()
    for argv in nkplan_commands(path):
        sub, rest = argv[0], argv[1:]
        if sub not in subcommands:
            problems.append(f"unknown subcommand in: nkplan {' '.join(argv)}")
            continue
        options = accepted(sub)
        for i, arg in enumerate(rest):
            if not arg.startswith("-"):
                continue
            flag = arg.split("=", 1)[0]
            if flag not in options:
                problems.append(f"`nkplan {sub}` does not accept {flag} (in: nkplan {' '.join(argv)})")
                continue
            choices = options[flag]
            value = arg.split("=", 1)[1] if "=" in arg else (rest[i + 1] if i + 1 < len(rest) else "")
            if choices is not None and value not in choices:
                problems.append(f"{flag} {value!r} is not one of {sorted(choices)}")
    return problems


@pytest.mark.parametrize("path", CI_FILES, ids=lambda p: p.name)
def test_ci_commands_use_only_what_the_cli_accepts(path: Path) -> None:
    assert cli_problems(path) == []
    # and the flow is the documented one: plan with detailed exit code, markdown, a signed saved plan;
    # apply it only if it verifies (the key from the CI secret store, as a file outside the workspace)
    commands = nkplan_commands(path)
    key = "$key" if path.name == "github-actions.yml" else "$NKPLAN_PLAN_KEY_FILE"
    plan = ["plan", "$NKPLAN_SPEC", "--detailed-exitcode", "--format", "markdown", "--out", "plan.json"]
    assert [*plan, "--sign-key", key] in commands
    assert ["apply", "plan.json", "--verify-key", key] in commands


def test_the_cli_check_catches_bad_commands(tmp_path: Path) -> None:
    bad = tmp_path / "ci.yml"
    bad.write_text(
        "job:\n  script:\n"
        "    - sudo nkplan plan spec.yaml --detailed-exitcodes > plan.md\n"
        "    - nkplan plan spec.yaml --format html\n"
        "    - nkplan deploy spec.yaml\n",
        encoding="utf-8",
    )
    assert cli_problems(bad) == [
        "`nkplan plan` does not accept --detailed-exitcodes (in: nkplan plan spec.yaml --detailed-exitcodes)",
        "--format 'html' is not one of ['json', 'markdown', 'text']",
        "unknown subcommand in: nkplan deploy spec.yaml",
    ]


@pytest.mark.parametrize("path", CI_FILES, ids=lambda p: p.name)
def test_ci_files_handle_the_exit_codes(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    scripts = "\n".join(_strings(YAML(typ="safe").load(text)))
    plan_case = scripts[scripts.index("nkplan plan") :]
    plan_case = plan_case[: plan_case.index("esac")]
    assert "|| code=$?" in plan_case, "the plan's exit code must be captured, not abort the shell"
    assert re.search(r"^\s*0\)", plan_case, re.M) and re.search(r"^\s*2\)", plan_case, re.M)
    assert re.search(r"\*\) .*exit \"\$code\"", plan_case), "any other code must fail the job"
    apply_case = scripts[scripts.index("nkplan apply") :]
    assert re.search(r"^\s*3\)", apply_case, re.M), "exit 3 (stale saved plan) must be explained"
    assert "<!-- nkplan-plan" in text or "head -n 1 plan.md" in scripts or "split('\\n', 1)[0]" in scripts


def test_readme_documents_every_exit_code_of_the_cli() -> None:
    readme = (GITOPS / "README.md").read_text(encoding="utf-8")
    codes = re.findall(r"^\s{2}(\d+)\s{2,}", help_text("plan").split("exit codes:")[1], re.M)
    assert {"0", "1", "2", "3", "4"} <= set(codes)
    for code in codes:
        assert re.search(rf"^\| {code} \|", readme, re.M), f"exit code {code} is not in examples/gitops/README.md"


# the policy gate ------------------------------------------------------------------------------
def python_gate(doc: dict[str, Any]) -> list[str]:
    """The rule of the Rego policy and of the jq line: namespaces whose actions contain delete."""
    return [
        rc["address"]
        for rc in doc["resource_changes"]
        if rc["type"] == "namespace" and "delete" in rc["change"]["actions"]
    ]


def jq_program() -> str:
    readme = (GITOPS / "README.md").read_text(encoding="utf-8")
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("jq -e '") and ln.endswith("' plan.json")]
    return shlex.split(line)[2]


def sample_plans() -> dict[str, str]:
    """The samples, made by nkplan through the fake kernel (host identity fixed)."""
    smaller = (
        "stack: t\nnamespaces: [{name: p2}]\nlinks:\n  - {name: ve2, kind: veth, peer: {name: eth0, namespace: p2}}\n"
    )
    kernel = FakeKernel()
    base = load_text(BASE, "spec.yaml")
    apply_and_verify(kernel, base, plan_for(kernel, base).plan, sleep=lambda s: None)
    update = load_text(BASE.replace("kind: netkit\n", "kind: netkit\n    policy: blackhole\n"), "spec.yaml")
    out = {}
    for name, loaded in (
        ("plan-update.json", update),
        ("plan-deletes-namespace.json", load_text(smaller, "spec.yaml")),
    ):
        plan = plan_for(kernel, loaded, host=HOST).plan
        out[name] = render_json(plan)
    return out


def _stable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("nkplan_version",)}


def test_samples_are_current_nkplan_plans() -> None:
    made = sample_plans()
    if os.environ.get("NKPLAN_UPDATE_GOLDEN") == "1":
        SAMPLES.mkdir(parents=True, exist_ok=True)
        for name, text in made.items():
            (SAMPLES / name).write_text(text, encoding="utf-8")
    for name, text in made.items():
        stored = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
        PlanDocument.model_validate(stored)  # the published schema
        assert _stable(stored) == _stable(json.loads(text)), f"{name} is stale; NKPLAN_UPDATE_GOLDEN=1 regenerates"


def gate_cases() -> list[tuple[str, dict[str, Any], list[str]]]:
    readme = (GITOPS / "README.md").read_text(encoding="utf-8")
    snippet = json.loads(readme.split("```json\n", 1)[1].split("```", 1)[0])
    cases = [(p.name, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(SAMPLES.glob("*.json"))]
    cases.append(("README snippet", snippet))

    def one(rtype: str, name: str, actions: list[str]) -> dict[str, Any]:
        change = {"actions": actions, "before": {"name": name}, "after": None}
        return {"resource_changes": [{"address": f"{rtype}[{name}]", "type": rtype, "name": name, "change": change}]}

    cases.append(("namespace replaced", one("namespace", "p9", ["delete", "create"])))
    cases.append(("link deleted", one("link", "v9", ["delete"])))
    expected = {
        "plan-update.json": [],
        "plan-deletes-namespace.json": ["namespace[p1]"],
        "README snippet": ["namespace[p1]"],
        "namespace replaced": ["namespace[p9]"],
        "link deleted": [],
    }
    assert {name for name, _ in cases} == set(expected), "a sample without an expected verdict"
    return [(name, doc, expected[name]) for name, doc in cases]


def test_python_gate_on_the_samples() -> None:
    for name, doc, denied in gate_cases():
        assert python_gate(doc) == denied, name


def test_ci_files_carry_the_readme_jq_gate() -> None:
    program = jq_program()
    for path in CI_FILES:
        assert program in path.read_text(encoding="utf-8"), f"{path.name}: jq gate differs"


def test_jq_gate_on_the_samples(tmp_path: Path) -> None:
    jq = shutil.which("jq")
    assert jq is not None, "jq is missing: scripts/test installs it (Debian package jq)"
    program = jq_program()
    for name, doc, denied in gate_cases():
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        run = subprocess.run([jq, "-e", program, str(path)], capture_output=True, text=True)
        if denied:
            assert run.returncode != 0, name
            assert f"the plan deletes namespaces: {', '.join(denied)}" in run.stderr, (name, run.stderr)
        else:
            assert run.returncode == 0 and run.stdout.strip() == "true", (name, run.stdout, run.stderr)


def test_rego_gate_on_the_samples() -> None:
    """examples/gitops/policy/namespaces.rego, conftest's convention (package main, deny rules),
    evaluated by rego-cpp: the same verdicts as the jq line."""
    import regopy  # a test dependency (pyproject [test]): missing means a broken install, not a skip
    policy = GITOPS / "policy" / "namespaces.rego"
    for name, doc, denied in gate_cases():
        rego = regopy.Interpreter()
        rego.add_module(policy.name, policy.read_text(encoding="utf-8"))
        rego.set_input(doc)
        out = json.loads(str(rego.query("data.main.deny")))
        (messages,) = out["expressions"]
        wanted = [f"the plan deletes {a}: every device, address and route in it goes too" for a in denied]
        assert sorted(messages) == wanted, (name, out)


# the CI lint (scripts/lint-ci-examples: zizmor offline, GitHub/GitLab JSON Schemas) ---------------
def lint(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NKPLAN_VENV": sys.prefix}
    return subprocess.run(
        [str(ROOT / "scripts" / "lint-ci-examples"), str(directory)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_ci_examples_pass_zizmor_and_the_json_schemas() -> None:
    proc = lint(ROOT / "examples")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "github-actions.yml" in proc.stdout and "gitlab-ci.yml" in proc.stdout


UNPIN = re.compile(r"actions/checkout@[0-9a-f]{40}")
PERSIST = re.compile(r"\n        with:\n          persist-credentials: false[^\n]*")
APPLY_PERMS = "    permissions:\n      actions: read "


@pytest.mark.parametrize(
    "name,edit,finding",
    [
        ("github-actions.yml", lambda t: UNPIN.sub("actions/checkout@v4", t), "unpinned-uses"),
        ("github-actions.yml", lambda t: PERSIST.sub("", t), "artipacked"),
        (
            "github-actions.yml",
            lambda t: t.replace(APPLY_PERMS, "    permissions: write-all\n#"),
            "excessive-permissions",
        ),
        ("github-actions.yml", lambda t: t.replace("runs-on:", "runs_on:", 1), "Schema validation errors"),
        (
            "gitlab-ci.yml",
            lambda t: t.replace("  stage: apply\n", "  stage: apply\n  when: sometimes\n"),
            "'sometimes'",
        ),
    ],
)
def test_the_ci_lint_fails_on_a_broken_example(tmp_path: Path, name: str, edit: Any, finding: str) -> None:
    shutil.copytree(GITOPS, tmp_path / "gitops")
    path = tmp_path / "gitops" / name
    path.write_text(edit(path.read_text()))
    proc = lint(tmp_path)
    assert proc.returncode != 0 and finding in proc.stdout + proc.stderr, proc.stdout + proc.stderr
