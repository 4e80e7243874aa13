"""Run module calls in several OS processes at once, round after round.

A ``Crowd`` keeps one worker process per slot for the whole test. Each round every worker
runs its next module call in-process (module_runner.run_module); all of them wait on one
barrier first, so the calls start together and really contend for the same files.

Workers come from a "forkserver" context that preloads this module (Ansible and the
collection's modules with it): each worker is a cheap fork of a single-threaded server,
not of the pytest process (an xdist worker has threads of its own, and forking a
threaded process may deadlock the child).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import queue
import threading
import time
import traceback
from collections import namedtuple

from ansible_collections.mailops.postfix.plugins.module_utils import _atomic
from module_runner import run_module

MODULES = ("lookup_table", "aliases", "postconf", "postmap", "newaliases")
for _name in MODULES:
    importlib.import_module("ansible_collections.mailops.postfix.plugins.modules." + _name)

TIMEOUT = 60.0

# One call of one round: the worker's pid, when the call started and ended (time.monotonic(),
# one clock for every process on Linux) and the module's result.
Run = namedtuple("Run", "pid start end result")


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _work(slot, calls, barrier, results):
    """Worker ``slot``: for each round, wait for the others, run the call, report."""
    for rnd, (module, args) in enumerate(calls):
        try:
            barrier.wait(TIMEOUT)
        except threading.BrokenBarrierError:
            return
        start = time.monotonic()
        try:
            result = run_module(module, args, fail_ok=True)
        except BaseException:  # pylint: disable=broad-except  # reported, not lost in the child
            result = {"failed": True, "msg": traceback.format_exc()}
        results.put((rnd, slot, Run(os.getpid(), start, time.monotonic(), result)))


class Crowd(object):
    """``calls[slot][round]`` is a (module, args) pair; ``next_round()`` runs one round."""

    def __init__(self, calls):
        if len({len(c) for c in calls}) != 1:
            raise ValueError("every slot needs one call per round")
        self.calls = calls
        self.rounds = len(calls[0])
        self.done = 0
        ctx = _context()
        self.barrier = ctx.Barrier(len(calls) + 1)
        self.results = ctx.Queue()
        self.procs = [ctx.Process(target=_work, args=(slot, c, self.barrier, self.results), daemon=True)
                      for slot, c in enumerate(calls)]

    def __enter__(self):
        for proc in self.procs:
            proc.start()
        return self

    def next_round(self):
        """Release every worker at once; return their Runs in slot order."""
        rnd = self.done
        self.barrier.wait(TIMEOUT)
        got = [None] * len(self.procs)
        for _i in self.procs:
            try:
                r, slot, run = self.results.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError("round %d: a worker gave no result within %g s" % (rnd, TIMEOUT))
            assert r == rnd, (r, rnd)
            got[slot] = run
        self.done += 1
        return got

    @staticmethod
    def in_flight(runs):
        """The most runs that were in progress at one moment."""
        events = sorted([(r.start, 1) for r in runs] + [(r.end, -1) for r in runs])
        most = now = 0
        for _t, step in events:
            now += step
            most = max(most, now)
        return most

    def __exit__(self, *exc):
        self.barrier.abort()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.results.close()
        return False


def _hold(path, held, release):
    with _atomic.locked(path):
        held.set()
        release.wait(TIMEOUT)


@contextlib.contextmanager
def lock_held_elsewhere(path):
    """Hold ``_atomic.locked(path)`` in another process for the ``with`` block; yield its pid."""
    ctx = _context()
    held, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(path, held, release), daemon=True)
    proc.start()
    try:
        if not held.wait(TIMEOUT):
            raise AssertionError("the lock holder did not take the lock")
        yield proc.pid
    finally:
        release.set()
        proc.join(TIMEOUT)
        if proc.is_alive():
            proc.kill()
            proc.join()
