"""`--metrics-file PATH` on `plan`, `apply` and `drift`: the run's outcome as Prometheus metrics in the
text exposition format, for node_exporter's textfile collector. Written atomically (a temporary
file in the same folder, then rename(2)), so the collector never reads half a file; written
also when the command fails (its exit code is a metric). The file holds one run's samples, plus
the time of the last successful apply carried over from the file it replaces, so a plan (or a
failed apply) writing the same file does not lose it.

Metrics (every sample labelled `stack`, the spec's stack; "" when the spec could not be read):
  nkplan_pending_changes{stack,command,action}   gauge: changes the plan holds, by action
      (create, update, replace, delete); after a successful apply 0 (verified), after a failed
      one the plan's (it was rolled back)
  nkplan_drift_objects{stack,command}            gauge: objects changed outside nkplan
  nkplan_run_duration_seconds{stack,command}     gauge: wall time of the command
  nkplan_run_exit_code{stack,command}            gauge: the command's exit code (0 ok, 2 changes
      pending with --detailed-exitcode, others: see exit codes)
  nkplan_run_timestamp_seconds{stack,command}    gauge: when the command ended (Unix time)
  nkplan_last_apply_success_timestamp_seconds{stack}  gauge: when an apply last succeeded"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass, field

from nkplan.core.plan import Plan

PENDING_ACTIONS = ("create", "update", "replace", "delete")
LAST_APPLY = "nkplan_last_apply_success_timestamp_seconds"

HELP: dict[str, str] = {
    "nkplan_pending_changes": "Changes the plan holds, by action (0 after a successful apply).",
    "nkplan_drift_objects": "Objects owned by the stack changed outside nkplan since the last apply.",
    "nkplan_run_duration_seconds": "Wall time of the nkplan command.",
    "nkplan_run_exit_code": "Exit code of the nkplan command (see nkplan --help).",
    "nkplan_run_timestamp_seconds": "When the nkplan command ended, in Unix time.",
    LAST_APPLY: "When an nkplan apply of the stack last succeeded, in Unix time.",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Run:
    """What one command saw, filled in as it goes; `write` turns it into the file."""

    command: str
    started: float = field(default_factory=time.monotonic)
    stack: str = ""
    plan: Plan | None = None
    applying: bool = False  # `drift --converge`: the run applies, like `apply`

    def observe(self, plan: Plan) -> None:
        self.stack = plan.stack
        self.plan = plan

    def render(self, exit_code: int, now: float, last_apply: dict[str, float]) -> str:
        stack, cmd = self.stack, self.command
        samples: dict[str, list[str]] = {name: [] for name in HELP}
        if self.plan is not None:
            applied = (cmd == "apply" or self.applying) and exit_code == 0
            counts = dict.fromkeys(PENDING_ACTIONS, 0)
            for change in self.plan.changes:
                if change.action in counts and not applied:
                    counts[change.action] += 1
            for action, n in counts.items():
                samples["nkplan_pending_changes"].append(
                    f"nkplan_pending_changes{_labels(stack=stack, command=cmd, action=action)} {n}"
                )
            drift = 0 if applied else len(self.plan.drift)
            samples["nkplan_drift_objects"].append(f"nkplan_drift_objects{_labels(stack=stack, command=cmd)} {drift}")
        both = _labels(stack=stack, command=cmd)
        duration = max(0.0, time.monotonic() - self.started)
        samples["nkplan_run_duration_seconds"].append(f"nkplan_run_duration_seconds{both} {duration:.3f}")
        samples["nkplan_run_exit_code"].append(f"nkplan_run_exit_code{both} {exit_code}")
        samples["nkplan_run_timestamp_seconds"].append(f"nkplan_run_timestamp_seconds{both} {_number(round(now, 3))}")
        last = dict(last_apply)
        if (cmd == "apply" or self.applying) and exit_code == 0 and self.plan is not None:
            last[stack] = round(now, 3)
        for name in sorted(last):
            samples[LAST_APPLY].append(f"{LAST_APPLY}{_labels(stack=name)} {_number(last[name])}")
        lines: list[str] = []
        for name, text in HELP.items():
            if samples[name]:
                lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", *samples[name]]
        return "\n".join(lines) + "\n"


_LAST_RE = re.compile(rf'^{LAST_APPLY}\{{stack="((?:[^"\\]|\\.)*)"\}} (\S+)$', re.MULTILINE)


def previous_last_apply(path: str) -> dict[str, float]:
    """The last-successful-apply times the file already holds (by stack), to carry over."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return {}
    found: dict[str, float] = {}
    for stack, value in _LAST_RE.findall(text):
        try:
            found[stack.replace('\\"', '"').replace("\\\\", "\\")] = float(value)
        except ValueError:
            continue
    return found


def write(path: str, run: Run, exit_code: int, now: float | None = None) -> None:
    """Replace the file at `path` with the run's metrics, atomically (temp file + rename in the
    same folder; the collector reads only `*.prom` files, the temp file is not one)."""
    text = run.render(exit_code, time.time() if now is None else now, previous_last_apply(path))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
