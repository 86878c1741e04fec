"""One error hierarchy. Each class says whose fault it is, so the CLI can word it and pick an exit code."""

from __future__ import annotations


class NkplanError(Exception):
    """Base of every error nkplan raises on purpose. `fault` names who must act ("spec", "user",
    "environment", "kernel", "nkplan"): for callers of nkplan.api that sort errors; the CLI words
    each error itself and picks `exit_code`."""

    fault = "nkplan"
    exit_code = 1


class SpecError(NkplanError):
    """The spec file is wrong: carries every problem found, each with file:line:col."""

    fault = "spec"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class PlanError(NkplanError):
    """The spec is valid but cannot be planned against this kernel (collision, capability)."""

    fault = "spec"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class CapabilityError(NkplanError):
    """The running kernel or process lacks something the spec needs (netkit, root, CAP_NET_ADMIN)."""

    fault = "environment"


class KernelError(NkplanError):
    """The kernel refused an operation; the message says in words what and why."""

    fault = "kernel"

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)


class LockError(NkplanError):
    """Another nkplan process holds this stack's lock."""

    fault = "environment"
    exit_code = 4


class PlanFileError(NkplanError):
    """A saved plan file is unreadable, truncated, modified, or of another format version."""

    fault = "user"


class PlanKeyError(NkplanError):
    """A plan signing or verification key file is unreadable or too short to be a secret."""

    fault = "user"


class StalePlanError(NkplanError):
    """The live state (or host) no longer matches the one a saved plan was computed against."""

    fault = "environment"
    exit_code = 3


class VerifyError(NkplanError):
    """After apply the kernel still differs from the spec."""

    fault = "kernel"


class Unconfirmed(NkplanError):
    """Raised by an apply's confirmation (run after its last step, before its undo journal is
    dropped: reachability checks) to have the completed steps rolled back. The applier hands
    back `after_rollback(...)`: the same error, telling what the rollback did."""

    fault = "user"

    def after_rollback(self, done: int, rolled_back: int, rollback_errors: list[str]) -> NkplanError:
        return self


def rollback_note(done: int, rolled_back: int, rollback_errors: list[str]) -> str:
    """What a rollback did, in the words ApplyFailed uses."""
    lines = [f"rolled back {rolled_back} of {done} completed step(s)"]
    lines += [f"rollback step failed: {err}" for err in rollback_errors]
    if rollback_errors:
        lines.append("the kernel may now hold a partial change: run `nkplan plan` to see it")
    return "\n".join(lines)


class InternalError(NkplanError):
    """A bug in nkplan."""

    fault = "nkplan"


class Interrupted(NkplanError):
    """A signal (SIGINT, SIGTERM, SIGHUP) ended the command at a point the message describes."""

    fault = "user"
    exit_code = 130
