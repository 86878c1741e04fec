"""Signed saved plans through the CLI and the fake kernel: `plan --out --sign-key` signs,
`apply PLAN.json --verify-key` (or NKPLAN_PLAN_VERIFY_KEY) refuses an unsigned plan, one signed
with another key, and one changed after signing even with its checksum made again (a forger
without the key); each refusal exits 1 and changes nothing. Without a verification key a signed
plan applies as before, with a warning that its signature was not checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from nkplan import api, cli
from nkplan.core.records import KernelInfo, LiveState
from nkplan.documents import savedplan, signing
from nkplan.documents.json_plan import plan_schema
from nkplan.kernel.fake import FakeKernel
from tests.unit.test_planner import BASE

KEY = "0123456789abcdef0123456789abcdef-the-ci-secret\n"
OTHER = "fedcba9876543210fedcba9876543210-another-one\n"


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPLAN_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv(signing.SIGN_ENV, raising=False)
    monkeypatch.delenv(signing.VERIFY_ENV, raising=False)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    # a saved plan is bound to the kernel it was made on: the fake reports this one's
    fake = FakeKernel(LiveState(kernel=KernelInfo(os.uname().release, True, True, True)))
    monkeypatch.setattr(api, "kernel", lambda: fake)
    return fake


def files(tmp_path: Path) -> tuple[str, str, str]:
    (tmp_path / "spec.yaml").write_text(BASE)
    (tmp_path / "key").write_text(KEY)
    (tmp_path / "other").write_text(OTHER)
    return str(tmp_path / "spec.yaml"), str(tmp_path / "key"), str(tmp_path / "other")


def plan_out(tmp_path: Path, *extra: str) -> str:
    spec, _, _ = files(tmp_path)
    out = str(tmp_path / "plan.json")
    assert cli.main(["plan", spec, "--out", out, *extra]) == 0
    return out


def untouched(kernel: FakeKernel) -> bool:
    return not kernel.state.namespaces and not kernel.state.links and set(kernel.calls) <= {"read"}


def test_signed_plan_verifies_and_applies(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    out = plan_out(tmp_path, "--sign-key", str(tmp_path / "key"))
    doc = json.loads(Path(out).read_text())
    assert doc["signature"]["algorithm"] == "hmac-sha256"
    assert KEY.strip() not in Path(out).read_text()  # the secret never lands in the artifact
    jsonschema.validate(doc, plan_schema())
    capsys.readouterr()
    assert cli.main(["apply", out, "--verify-key", str(tmp_path / "key")]) == 0
    assert "signature verified" in capsys.readouterr().err
    assert set(kernel.state.namespaces) == {"p1", "p2"}


def test_the_signature_does_not_change_the_checksum(tmp_path: Path, kernel: FakeKernel) -> None:
    plain = json.loads(Path(plan_out(tmp_path)).read_text())
    signed = json.loads(Path(plan_out(tmp_path, "--sign-key", str(tmp_path / "key"))).read_text())
    assert signed["checksum"] == plain["checksum"] and "signature" not in plain


def refused(out: str, key: str, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert cli.main(["apply", out, "--verify-key", key]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nothing was changed" in err
    assert untouched(kernel)
    return err


def test_unsigned_plan_is_refused(tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    out = plan_out(tmp_path)
    assert "is not signed" in refused(out, str(tmp_path / "key"), kernel, capsys)


def test_plan_signed_with_another_key_is_refused(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    out = plan_out(tmp_path, "--sign-key", str(tmp_path / "other"))
    assert "was made with another key" in refused(out, str(tmp_path / "key"), kernel, capsys)


def test_signature_stripped_is_refused(tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    out = plan_out(tmp_path, "--sign-key", str(tmp_path / "key"))
    doc = json.loads(Path(out).read_text())
    del doc["signature"]
    Path(out).write_text(json.dumps(doc))
    assert "is not signed" in refused(out, str(tmp_path / "key"), kernel, capsys)


def test_forged_plan_with_a_fresh_checksum_is_refused(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    # a forger without the key: edits the steps and the embedded spec, computes the checksum again
    out = plan_out(tmp_path, "--sign-key", str(tmp_path / "key"))
    doc = json.loads(Path(out).read_text())
    doc["spec"]["text"] = doc["spec"]["text"].replace("p2", "px")
    doc["checksum"] = savedplan._digest(doc)
    Path(out).write_text(json.dumps(doc))
    err = refused(out, str(tmp_path / "key"), kernel, capsys)
    assert "changed after it was signed" in err


def test_keys_from_the_environment(
    tmp_path: Path, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(signing.SIGN_ENV, str(tmp_path / "other"))
    out = plan_out(tmp_path)
    assert "signature" in json.loads(Path(out).read_text())
    monkeypatch.setenv(signing.VERIFY_ENV, str(tmp_path / "key"))
    assert "another key" in refused(out, str(tmp_path / "key"), kernel, capsys)
    capsys.readouterr()
    assert cli.main(["apply", out]) == 1 and untouched(kernel)  # the environment's key alone refuses too
    monkeypatch.setenv(signing.VERIFY_ENV, str(tmp_path / "other"))
    assert cli.main(["apply", out]) == 0 and set(kernel.state.namespaces) == {"p1", "p2"}


def test_signed_plan_without_a_verification_key_warns_and_applies(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    out = plan_out(tmp_path, "--sign-key", str(tmp_path / "key"))
    capsys.readouterr()
    assert cli.main(["apply", out]) == 0
    assert "warning:" in (err := capsys.readouterr().err) and "the signature was not checked" in err
    assert set(kernel.state.namespaces) == {"p1", "p2"}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["plan", "{spec}", "--sign-key", "{key}"], "--sign-key signs a saved plan: give --out"),
        (["plan", "{spec}", "--out", "{out}", "--sign-key", "{short}"], "holds 5 bytes; a key needs at least 32"),
        (["plan", "{spec}", "--out", "{out}", "--sign-key", "{missing}"], "cannot read the plan key"),
        (["apply", "{spec}", "--yes", "--verify-key", "{key}"], "--verify-key checks a saved plan"),
    ],
)
def test_key_mistakes_are_clear_errors(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    spec, key, _ = files(tmp_path)
    (tmp_path / "short").write_text("abcde\n")
    names = {"spec": spec, "key": key, "out": str(tmp_path / "p.json"), "short": str(tmp_path / "short")}
    names["missing"] = str(tmp_path / "nope")
    capsys.readouterr()
    assert cli.main([a.format(**names) for a in argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert untouched(kernel) and not (tmp_path / "p.json").exists()


def test_unreadable_signature_is_refused(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    out = plan_out(tmp_path, "--sign-key", str(tmp_path / "key"))
    doc = json.loads(Path(out).read_text())
    doc["signature"]["algorithm"] = "md5"
    Path(out).write_text(json.dumps(doc))
    capsys.readouterr()
    assert cli.main(["apply", out]) == 1  # even without a verification key: not silently ignored
    assert "a signature nkplan cannot read" in capsys.readouterr().err and untouched(kernel)
