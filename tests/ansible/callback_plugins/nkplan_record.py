"""Test helper (not part of the collection): an aggregate callback that writes every task result,
by task name, to the JSON file named by $NKPLAN_RECORD, so the tests read the module's result
without an extra task (a module run costs ~10 s in the emulated VM guest)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: nkplan_record
type: aggregate
short_description: record task results as JSON for nkplan's tests
description: >-
  Writes each task's result (plus _status and _seconds), by task name, to the file named by NKPLAN_RECORD;
  under the key _hosts, the same by host name, then task name (plays on several hosts).
"""


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "nkplan_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.results: dict[str, Any] = {}
        self.started = time.monotonic()

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self.started = time.monotonic()

    def _record(self, result: Any, status: str) -> None:
        data = dict(result._result)
        data["_status"] = status
        data["_seconds"] = round(time.monotonic() - self.started, 2)
        self.results[result._task.get_name()] = data
        self.results.setdefault("_hosts", {}).setdefault(result._host.get_name(), {})[result._task.get_name()] = data
        path = os.environ.get("NKPLAN_RECORD")
        if path:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.results, f, default=str)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")
