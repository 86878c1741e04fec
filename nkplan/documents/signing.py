"""Signed saved plans. A saved plan is what a root process on the host carries out; its checksum
tells damage, not a forger. With a key (`plan --out PLAN.json --sign-key KEYFILE`, or
NKPLAN_PLAN_KEY naming the file) the plan also carries an HMAC-SHA256 of the same canonical body
the checksum covers; `apply PLAN.json` with a verification key (`--verify-key KEYFILE`, or
NKPLAN_PLAN_VERIFY_KEY) refuses a plan that is unsigned or signed with another key.

HMAC-SHA256 with a shared secret file: the standard library's `hmac`, no new dependency. In the
GitOps flow both jobs run on the managed host and the secret lives in the CI secret store, so a
public-key scheme would add a dependency without taking a secret off any machine that holds one."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

from nkplan.errors import PlanFileError, PlanKeyError

ALGORITHM = "hmac-sha256"
SIGN_ENV = "NKPLAN_PLAN_KEY"
VERIFY_ENV = "NKPLAN_PLAN_VERIFY_KEY"
MIN_KEY_BYTES = 32  # HMAC-SHA256's own block of strength; a shorter secret is guessable sooner
MAX_KEY_BYTES = 4096  # a key file is a secret, not a document: a big file is the wrong file


@dataclass(frozen=True)
class PlanKey:
    path: str
    secret: bytes

    @property
    def key_id(self) -> str:
        """Names the key in the plan and in messages without revealing it (a domain-separated digest)."""
        return hashlib.sha256(b"nkplan-plan-key-id\0" + self.secret).hexdigest()[:16]


def load_key(path: str) -> PlanKey:
    """The secret in a key file: its bytes, surrounding whitespace removed (secret stores and
    `echo` add a newline); any encoding (base64, hex, raw) is fine as long as it is the same file."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise PlanKeyError(f"cannot read the plan key {path}: {exc.strerror}") from None
    if len(raw) > MAX_KEY_BYTES:
        raise PlanKeyError(f"the plan key {path} is larger than {MAX_KEY_BYTES} bytes: is it the right file?")
    secret = raw.strip()
    if len(secret) < MIN_KEY_BYTES:
        raise PlanKeyError(
            f"the plan key {path} holds {len(secret)} bytes; a key needs at least {MIN_KEY_BYTES} "
            "(make one with: head -c 32 /dev/urandom | base64 > KEYFILE)"
        )
    return PlanKey(path, secret)


def configured_key(option: str | None, env: str) -> PlanKey | None:
    """The key named by a command-line option, else by the environment variable, else none."""
    path = option or os.environ.get(env) or None
    return load_key(path) if path else None


def signature(blob: bytes, key: PlanKey) -> dict[str, str]:
    mac = hmac.new(key.secret, blob, hashlib.sha256).hexdigest()
    return {"algorithm": ALGORITHM, "key_id": key.key_id, "value": mac}


@dataclass(frozen=True)
class Verdict:
    """What apply learnt of a saved plan's signature (reported by the CLI)."""

    signed: bool
    verified: bool
    key_id: str | None = None

    def note(self, path: str) -> str | None:
        if self.verified:
            return f"{path}: signature verified ({ALGORITHM}, key {self.key_id})"
        if self.signed:
            return (
                f"{path} is signed (key {self.key_id}) but no verification key is configured "
                f"(--verify-key or {VERIFY_ENV}): the signature was not checked"
            )
        return None


def check(path: str, sig: Any, blob: bytes, key: PlanKey | None) -> Verdict:
    """Refuse (PlanFileError) a plan that is unsigned or wrongly signed when `key` is given."""
    signed = isinstance(sig, dict)
    key_id = str(sig.get("key_id")) if isinstance(sig, dict) else None
    if sig is not None and not (signed and sig.get("algorithm") == ALGORITHM and isinstance(sig.get("value"), str)):
        raise PlanFileError(f"{path} has a signature nkplan cannot read (expected {ALGORITHM}); make a new plan")
    if key is None:
        return Verdict(signed, False, key_id)
    if not signed:
        raise PlanFileError(
            f"{path} is not signed, and a verification key is configured ({key.path}): refused, nothing was "
            "changed; sign plans with `nkplan plan --out PLAN.json --sign-key KEYFILE`"
        )
    assert isinstance(sig, dict)
    expected = signature(blob, key)["value"]
    if not hmac.compare_digest(expected, str(sig["value"])):
        whose = (
            f"was made with another key ({key_id})"
            if key_id != key.key_id
            else "was made with this key, but the plan was changed after it was signed"
        )
        raise PlanFileError(
            f"{path} is not signed by the verification key {key.path} (key {key.key_id}; the plan's signature "
            f"{whose}): refused, nothing was changed"
        )
    return Verdict(True, True, key.key_id)
