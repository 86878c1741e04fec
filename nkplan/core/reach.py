"""Reachability checks, the pure half: what one check asks of the kernel (Probe), what the
kernel saw (Outcome), whether that passes, and the words for both. The kernel half that opens
sockets inside namespaces is kernel/reach.py; the fake kernel answers from a table.

Not a resource type (DESIGN.md lists "check" among the coming ones): a check has no record in the
kernel to read, diff, create or delete, so it would be a resource whose every plan is a no-op.
It is a confirmation of an apply instead: run after verify while the apply's undo journal is still
held (run/applier.py `confirm`), and by `nkplan check` on its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nkplan.core.records import HOST
from nkplan.errors import NkplanError, Unconfirmed, rollback_note

Expect = Literal["reachable", "unreachable"]


@dataclass(frozen=True)
class Probe:
    namespace: str  # HOST ("") for the host namespace
    to: str  # an IP address, canonical
    port: int | None  # None: ICMP echo; otherwise a TCP connect
    timeout: float  # seconds


@dataclass(frozen=True)
class Outcome:
    """What a probe saw: `reached` is True (echo reply, TCP connected), False (no answer, an
    ICMP error, refused, no route) or None (the probe could not run at all: no such namespace,
    no socket), which fails a check whatever it expects."""

    reached: bool | None
    saw: str  # in words, with the time it took: "echo reply in 0.2 ms"


@dataclass(frozen=True)
class CheckResult:
    number: int  # 1-based, as the user counts the spec's checks
    source: str  # "from → to[:port], expect E"
    expect: Expect
    outcome: Outcome

    @property
    def passed(self) -> bool:
        return self.outcome.reached is not None and self.outcome.reached == (self.expect == "reachable")

    def __str__(self) -> str:
        return f"check {self.number} ({self.source}): {self.outcome.saw}"


def describe(namespace: str, to: str, port: int | None, expect: Expect) -> str:
    """`pod-b → 10.10.0.1:443, expect unreachable` (IPv6 with a port in brackets)."""
    where = namespace if namespace != HOST else "host"
    dest = to if port is None else (f"[{to}]:{port}" if ":" in to else f"{to}:{port}")
    return f"{where} → {dest}, expect {expect}"


def results(checks: list[tuple[Probe, Expect]], outcomes: list[Outcome]) -> list[CheckResult]:
    return [
        CheckResult(i + 1, describe(p.namespace, p.to, p.port, expect), expect, o)
        for i, ((p, expect), o) in enumerate(zip(checks, outcomes, strict=True))
    ]


class ChecksFailed(Unconfirmed):
    """Reachability checks did not hold. Raised by `nkplan check`, and by apply after verify, in
    which case the applier rolls the apply back first (unless told to keep it) and says so."""

    fault = "user"

    def __init__(self, failed: list[CheckResult], total: int, note: str = "") -> None:
        self.failed, self.total, self.note = failed, total, note
        lines = [f"{len(failed)} of {total} check(s) failed:"] + [f"  {r}" for r in failed]
        if note:
            lines.append(note)
        super().__init__("\n".join(lines))

    def noted(self, note: str) -> ChecksFailed:
        """The same failure, with what happened to the apply (rolled back, or kept)."""
        return ChecksFailed(self.failed, self.total, note)

    def after_rollback(self, done: int, rolled_back: int, rollback_errors: list[str]) -> NkplanError:
        return self.noted(rollback_note(done, rolled_back, rollback_errors))
