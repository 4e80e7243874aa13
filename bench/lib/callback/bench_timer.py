# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback for bench/run.py: wall time of every task (start of the task to start of the next,
as ansible.posix.profile_tasks counts it) and of every host's part in it, written as JSON to
the file named by $MAILOPS_BENCH_TIMER_OUT when the playbook ends. Prints nothing."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_timer
type: aggregate
short_description: task and per-host timings as JSON, for bench/run.py
description:
  - Writes the wall time of every task and of each host's run of it to $MAILOPS_BENCH_TIMER_OUT.
requirements:
  - enabled with ANSIBLE_CALLBACKS_ENABLED=bench_timer
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._t0 = time.perf_counter()
        self._tasks = []
        self._current = None
        self._host_start = {}

    def _close_current(self):
        if self._current is not None:
            self._current["wall"] = time.perf_counter() - self._current.pop("_start")
            self._tasks.append(self._current)
            self._current = None

    def _start(self, task, handler):
        self._close_current()
        role = task._role.get_name() if getattr(task, "_role", None) else ""
        self._current = {"name": task.get_name(), "role": role, "action": task.action,
                         "handler": handler, "hosts": {}, "_start": time.perf_counter()}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task, False)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task, True)

    def v2_runner_on_start(self, host, task):
        self._host_start[(host.get_name(), task._uuid)] = time.perf_counter()

    def _host_done(self, result, status):
        key = (result._host.get_name(), result._task._uuid)
        start = self._host_start.pop(key, None)
        if self._current is not None and start is not None:
            hosts = self._current["hosts"]
            # A loop task ends here once, after all its items: the whole span counts.
            hosts[key[0]] = {"seconds": time.perf_counter() - start, "status": status}

    def v2_runner_on_ok(self, result):
        self._host_done(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._host_done(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._host_done(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._host_done(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._close_current()
        out = os.environ.get("MAILOPS_BENCH_TIMER_OUT")
        if out:
            with open(out, "w") as f:
                json.dump({"total": time.perf_counter() - self._t0, "tasks": self._tasks}, f)
