# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stopping what a test started, by PID only (never by name): the private Postfix, PostgreSQL
and slapd instances share this."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether ``pid`` exited within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def stop(pid: int | None, timeout: float = 10.0, term: bool = True) -> None:
    """SIGTERM (unless ``term`` is false: the process was asked to stop some other way), wait
    ``timeout`` seconds, then SIGKILL."""
    if not pid:
        return
    if term:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    if not wait_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
