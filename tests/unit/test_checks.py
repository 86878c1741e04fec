"""Reachability checks (`checks:`): spec errors with positions, the words of a result, apply's
rollback when a check fails (through the fake kernel, whose probe() answers from a table), the
`check` and `apply --keep-on-check-failure` commands, and the pure packet helpers of the real
prober (the real prober itself runs in tests/host/test_checks.py)."""

from __future__ import annotations

import struct
import textwrap
from pathlib import Path

import pytest

from nkplan import api, cli
from nkplan.core.reach import CheckResult, ChecksFailed, Outcome, describe
from nkplan.errors import SpecError
from nkplan.kernel.fake import FakeKernel
from nkplan.kernel.reach import _checksum, echo_request, is_echo_reply

SPEC = textwrap.dedent("""\
    stack: chk
    namespaces: [{name: pa}, {name: pb}]
    links:
      - {name: va, kind: veth, addresses: [10.9.0.1/32], peer: {name: eth0, namespace: pa, addresses: [10.9.1.2/32]}}
    routes:
      - {namespace: pa, to: default, dev: eth0}
    checks:
      - {from: pa, to: 10.9.0.1, expect: reachable}
      - {from: pb, to: 10.9.0.1, port: 443, expect: unreachable, timeout: 2}
      - {to: 10.9.1.2, expect: reachable}
""")


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))


def fake() -> FakeKernel:
    """A fake kernel on which every check of SPEC holds (check 2 expects 10.9.0.1:443 closed)."""
    kernel = FakeKernel()
    kernel.unreachable.add(("pb", "10.9.0.1", 443))
    return kernel


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        api.load_text(text, "t.yaml")
    return info.value.problems


def with_check(check: str) -> str:
    return f"stack: s\nnamespaces: [{{name: pa}}]\nchecks:\n  - {check}\n"


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (
            "{from: nope, to: 10.0.0.1, expect: reachable}",
            "t.yaml:4:12: checks[0].from: check 1 runs in namespace 'nope', which the spec does not declare",
        ),
        ("{to: 10.0.0.256, expect: reachable}", "t.yaml:4:10: checks[0].to: invalid IP address '10.0.0.256'"),
        ("{to: 10.0.0.0/24, expect: reachable}", "t.yaml:4:10: checks[0].to: invalid IP address '10.0.0.0/24'"),
        ("{to: 10.0.0.1, port: 0, expect: reachable}", "t.yaml:4:26: checks[0].port:"),
        ("{to: 10.0.0.1, port: 65536, expect: reachable}", "t.yaml:4:26: checks[0].port:"),
        ("{to: 10.0.0.1, expect: maybe}", "t.yaml:4:28: checks[0].expect:"),
        ("{to: 10.0.0.1}", "t.yaml:4:5: checks[0].expect: required field 'expect' is missing"),
        ("{to: 10.0.0.1, expect: reachable, timeout: 0}", "t.yaml:4:48: checks[0].timeout:"),
        ("{to: 'fe80::1', expect: reachable}", "t.yaml:4:10: checks[0].to: check 1: fe80::1 is an IPv6 link-local"),
        ("{to: 224.0.0.1, expect: reachable}", "t.yaml:4:10: checks[0].to: check 1: 224.0.0.1 is not a single host's"),
        ("{to: 10.0.0.1, expect: reachable, via: x}", "t.yaml:4:39: checks[0].via: unknown field 'via'"),
    ],
)
def test_spec_errors_name_the_place(check: str, expected: str) -> None:
    found = problems(with_check(check))
    assert any(p.startswith(expected) for p in found), found


def test_bad_expect_and_port_say_what_is_allowed() -> None:
    (expect,) = problems(with_check("{to: 10.0.0.1, expect: maybe}"))
    assert "'reachable'" in expect and "'unreachable'" in expect
    (port,) = problems(with_check("{to: 10.0.0.1, port: 70000, expect: reachable}"))
    assert "65535" in port


def test_every_check_problem_of_a_file_is_reported_at_once() -> None:
    text = "stack: s\nchecks:\n  - {from: x, to: 10.0.0.1, expect: reachable}\n  - {to: nope, expect: reachable}\n"
    found = problems(text)
    assert sorted(p[:9] for p in found) == ["t.yaml:3:", "t.yaml:4:"]


def test_checks_are_not_allowed_in_templates() -> None:
    text = "stack: s\nrepeat:\n  pods:\n    count: 2\n    checks: [{to: 10.0.0.1, expect: reachable}]\n"
    (problem,) = problems(text)
    assert "t.yaml:5:5" in problem and "unknown field 'checks' in a template" in problem


def test_a_valid_spec_loads_its_checks() -> None:
    spec = api.load_text(SPEC, "t.yaml").spec
    assert [(c.from_, c.to, c.port, c.expect, c.timeout) for c in spec.checks] == [
        ("pa", "10.9.0.1", None, "reachable", 1.0),
        ("pb", "10.9.0.1", 443, "unreachable", 2.0),
        (None, "10.9.1.2", None, "reachable", 1.0),
    ]
    assert api.load_text("stack: s\nchecks: [{to: 'FD00::1', expect: reachable}]\n", "t").spec.checks[0].to == "fd00::1"


def test_words_of_a_result() -> None:
    assert describe("pb", "10.10.0.1", 443, "unreachable") == "pb → 10.10.0.1:443, expect unreachable"
    assert describe("", "fd00::1", 80, "reachable") == "host → [fd00::1]:80, expect reachable"
    r = CheckResult(
        2, describe("pb", "10.10.0.1", 443, "unreachable"), "unreachable", Outcome(True, "connected in 3 ms")
    )
    assert str(r) == "check 2 (pb → 10.10.0.1:443, expect unreachable): connected in 3 ms"
    assert not r.passed
    assert CheckResult(1, "x", "unreachable", Outcome(False, "no answer")).passed
    # a probe that could not run fails whatever the check expects
    assert not CheckResult(1, "x", "unreachable", Outcome(None, "namespace 'p' does not exist")).passed
    assert not CheckResult(1, "x", "reachable", Outcome(None, "namespace 'p' does not exist")).passed


def test_apply_runs_the_checks_after_verify_and_keeps_the_apply_when_they_pass() -> None:
    kernel = fake()
    api.apply(api.load_text(SPEC, "t.yaml"), on=kernel)
    assert set(kernel.state.namespaces) == {"pa", "pb"}
    assert kernel.calls.count("probe") == 1


def test_a_failed_check_rolls_the_apply_back_and_names_the_check() -> None:
    kernel = fake()
    kernel.unreachable.add(("pa", "10.9.0.1", None))
    seen: list[tuple[str, str]] = []
    with pytest.raises(ChecksFailed) as info:
        api.apply(api.load_text(SPEC, "t.yaml"), on=kernel, progress=lambda stage, op: seen.append((stage, op.address)))
    msg = str(info.value)
    assert msg.splitlines()[:2] == [
        "1 of 3 check(s) failed:",
        "  check 1 (pa → 10.9.0.1, expect reachable): no answer within 1 s",
    ]
    done = [a for s, a in seen if s == "done"]
    undone = [a for s, a in seen if s == "undone"]
    assert undone == list(reversed(done)) and done
    assert f"rolled back {len(done)} of {len(done)} completed step(s)" in msg
    assert kernel.state.namespaces == {} and kernel.state.links == {}


def test_a_check_that_connects_when_it_should_not_is_reported_with_what_it_saw() -> None:
    kernel = fake()
    api.apply(api.load_text(SPEC, "t.yaml"), on=kernel)  # check 2: refused/no answer, as it expects
    kernel2 = fake()
    flipped = SPEC.replace(
        "{from: pa, to: 10.9.0.1, expect: reachable}", "{from: pa, to: 10.9.0.1, expect: unreachable}"
    )
    with pytest.raises(ChecksFailed) as info:
        api.apply(api.load_text(flipped, "t.yaml"), on=kernel2)
    assert "check 1 (pa → 10.9.0.1, expect unreachable): echo reply in 1 ms" in str(info.value)
    assert kernel2.state.namespaces == {}


def test_keep_on_check_failure_keeps_the_apply() -> None:
    kernel = fake()
    kernel.unreachable.add(("", "10.9.1.2", None))
    with pytest.raises(ChecksFailed) as info:
        api.apply(api.load_text(SPEC, "t.yaml"), on=kernel, keep_on_check_failure=True)
    assert "check 3 (host → 10.9.1.2, expect reachable)" in str(info.value)
    assert "the apply was kept (--keep-on-check-failure)" in str(info.value)
    assert set(kernel.state.namespaces) == {"pa", "pb"}


def test_with_nothing_to_change_apply_still_runs_the_checks() -> None:
    kernel = fake()
    spec = api.load_text(SPEC, "t.yaml")
    api.apply(spec, on=kernel)
    kernel.unreachable.add(("pa", "10.9.0.1", None))
    with pytest.raises(ChecksFailed) as info:
        api.apply(spec, on=kernel)
    assert "nothing was changed" in str(info.value)
    assert set(kernel.state.namespaces) == {"pa", "pb"}


def test_check_alone_changes_nothing_and_reports_a_missing_namespace() -> None:
    kernel = fake()
    results = api.check(api.load_text(SPEC, "t.yaml"), on=kernel)
    assert [r.passed for r in results] == [False, False, True]
    assert results[0].outcome.saw == "namespace 'pa' does not exist"
    assert kernel.state.namespaces == {}


def test_a_spec_without_checks_never_probes() -> None:
    kernel = fake()
    api.apply(api.load_text(SPEC.split("checks:")[0], "t.yaml"), on=kernel)
    assert "probe" not in kernel.calls


def test_cli_check_and_apply_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kernel = fake()
    monkeypatch.setattr(api, "kernel", lambda: kernel)
    path = tmp_path / "s.yaml"
    path.write_text(SPEC)
    assert cli.main(["check", str(path)]) == cli.EXIT_ERROR  # nothing applied yet
    out = capsys.readouterr().out
    assert "FAIL check 1 (pa → 10.9.0.1, expect reachable): namespace 'pa' does not exist" in out
    assert "Checks: 1 passed, 2 failed." in out

    assert cli.main(["apply", str(path), "--yes", "-q"]) == cli.EXIT_OK
    assert "Checks passed: 3 of 3." in capsys.readouterr().out
    assert cli.main(["check", str(path), "-q"]) == cli.EXIT_OK
    assert capsys.readouterr().out == "Checks: 3 passed, 0 failed.\n"

    kernel.unreachable.add(("pa", "10.9.0.1", None))
    path.write_text(SPEC.replace("10.9.1.2/32]", "10.9.1.2/32, 10.9.1.3/32]"))  # a change, then a failed check
    assert cli.main(["apply", str(path), "--yes"]) == cli.EXIT_ERROR
    cap = capsys.readouterr()
    assert "error:   check 1 (pa → 10.9.0.1, expect reachable): no answer within 1 s" in cap.err
    assert "link[va]: rolled back (update)" in cap.out and "error: rolled back 1 of 1 completed step(s)" in cap.err
    assert not api.plan(api.load_text(SPEC, "t.yaml"), on=kernel).plan.has_changes  # the old state is back

    assert cli.main(["apply", str(path), "--yes", "-q", "--keep-on-check-failure"]) == cli.EXIT_ERROR
    assert "error: the apply was kept (--keep-on-check-failure)" in capsys.readouterr().err
    assert not api.plan(api.load_text(path.read_text(), "t.yaml"), on=kernel).plan.has_changes


def test_echo_request_and_reply_parsing() -> None:
    req = echo_request(False, 0x1234, 7)
    assert req[0] == 8 and _checksum(req) == 0  # a valid ICMP checksum sums to zero
    assert struct.unpack("!HH", req[4:8]) == (0x1234, 7)
    assert echo_request(True, 5, 1)[0] == 128
    reply = bytes([0]) + req[1:]
    ip_header = bytes([0x45]) + bytes(19)
    assert is_echo_reply(ip_header + reply, False, 0x1234)
    assert not is_echo_reply(ip_header + reply, False, 0x1235)
    assert not is_echo_reply(ip_header + req, False, 0x1234)  # our own request, seen on the way in
    assert is_echo_reply(bytes([129]) + echo_request(True, 5, 1)[1:], True, 5)
    assert not is_echo_reply(b"\x45", False, 1)
