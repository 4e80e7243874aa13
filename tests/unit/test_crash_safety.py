# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash safety at scale: a compile killed with SIGKILL at any moment leaves real Postfix
answering from the old index or the new one, never from a partial, broken or missing file,
and the next compile removes the killed writer's temp file.

For each indexed type, a 150,001-entry source (2% of the entries with 200-600 targets,
5-16 KB values; ~46 MB of source, a 50-62 MB index) is compiled once in its "old" version,
then the "new" version (10% of the values changed, 1,000 keys gone and 1,000 added, the
sentinel's value "old" -> "new") is written to the source path and compiled again and again
by a child process that is killed after a random delay. Kills are spread over the whole
compile, measured first by one uncut run (with the reader below running, as in the killed
runs): two at its very start (0 and 1 ms after the child is started), 24 stratified over
the way from its start to the end of the write (interpreter start, imports, parse, index
write), and 10 on the child's own phase marks for the end of the compile (start of
replace(), within 5 ms of the temp file's fsync, just before and just after rename(2),
the directory fsync).
A timed kill waits for the last mark the uncut run had made by its moment and scales the
rest by the child's pace up to that mark: under a varying load, absolute delays would
bunch the kills at one end of the compile.

After every kill, real ``postmap -q`` answers the sentinel with exactly "old" or "new" (no
error, no warning other than the index being older than the source), a hash index passes
``db_verify``, a cdb index holds exactly the records of one version (read_cdb), and the
outcome agrees with the last mark the child wrote (a mark is written before its step):
"old" if it never reached the rename, "new" once it marked the rename done.
Meanwhile a reader thread queries the sentinel with postmap while the child runs. Every
5th kill and at the end every key is looked up with one ``postmap -q -`` run and compared
with the declared records of the version the sentinel names. When the new index landed,
the old one is put back (a hard link renamed into place), so both outcomes keep coming.
Temp files never pile up (at most the last killed writer's), and after the final uncut
compile no ``.tmp`` or ``.lock`` file is left.

Counts: 36 kills per type (2 + 24 + 10), enough to hit every phase several times while
the file stays near 2 minutes with ``pytest -n 2`` on 2 cores (one worker runs two of
the three types): a killed run costs a child start plus half a compile on average
(0.5-1 s), db_verify of the 61 MB hash file or reading back the 49 MB cdb ~0.5 s, a full
lookup of 150k keys 0.5-1.3 s; 30-80 s per type in all.
"""

from __future__ import annotations

import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from postfix_oracle import postmap_query, read_cdb

COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           ".build", "collections")
SUFFIX = {"hash": ".db", "cdb": ".cdb", "lmdb": ".lmdb"}

ENTRIES = 150000
SENTINEL = b"sentinel@example.tld"
FULL_CHECK_EVERY = 5
READER_PAUSE = 0.05  # between the reader's queries (each a postmap process)
EARLY_KILLS = 2        # right after the child starts
STRATIFIED_KILLS = 24  # one in each 1/24 of the compile up to the end of the write
# Kills timed on the child's phase marks: (mark, how many, most seconds to wait after it),
# for the end of the compile. The temp file's fsync takes 10-500 ms for these sizes (the
# same file, minutes apart): a kill within 5 ms of its mark lands inside it, a kill timed
# by the clock would mostly miss it or come after the exit.
MARK_KILLS = (("replace", 2, 0.0), ("fsync", 3, 0.005), ("rename", 2, 0.0), ("renamed", 2, 0.0),
              ("dirsync", 1, 0.0))
PHASES = ("start", "imported", "replace", "fsync", "rename", "renamed", "dirsync", "done")
ORDER = ("exec",) + PHASES

# The child: our engine compiling the source, with phase marks (name, CLOCK_MONOTONIC) written
# to a pipe at the points where the write path changes what is on disk.
CHILD = r"""
import os, sys, time
fd = int(sys.argv[1])
def mark(name):
    os.write(fd, b"%s %.6f\n" % (name, time.monotonic()))
mark(b"start")
sys.path.insert(0, sys.argv[2])
from ansible_collections.mailops.postfix.plugins.module_utils import _atomic
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import Table
mark(b"imported")
replace, fsync_path, rename = _atomic.replace, _atomic._fsync_path, os.rename
def marked_replace(*args, **kwargs):
    mark(b"replace")
    return replace(*args, **kwargs)
def marked_fsync(path, directory=False):
    mark(b"dirsync" if directory else b"fsync")
    return fsync_path(path, directory)
def marked_rename(src, dst):
    mark(b"rename")
    rename(src, dst)
    mark(b"renamed")
_atomic.replace, _atomic._fsync_path, os.rename = marked_replace, marked_fsync, marked_rename
Table(sys.argv[3], sys.argv[4], hostname="x").ensure(force=True)
mark(b"done")
"""

_OLDER = re.compile(rb"^postmap: warning: database \S+ is older than source file \S+$")


def make_versions(seed=1):
    """(old, new): declared records {key: value} of the two versions of the source."""
    rng = random.Random(seed)
    old = {}
    for i in range(ENTRIES):
        key = b"user%d@domain%d.example" % (i, i % 97)
        if i % 50 == 7:
            old[key] = b", ".join(b"member%d-%d@lists%d.example" % (i, j, j % 13)
                                  for j in range(rng.randint(200, 600)))
        else:
            old[key] = b"mbox%d@store.example" % i
    new = dict(old)
    keys = list(old)
    for key in rng.sample(keys, ENTRIES // 10):
        new[key] = old[key].replace(b".example", b".example.net", 1)
    for key in rng.sample(keys, 1000):
        del new[key]
    for i in range(1000):
        new[b"added%d@domain%d.example" % (i, i % 97)] = b"fresh%d@store.example" % i
    old[SENTINEL] = b"old"
    new[SENTINEL] = b"new"
    return old, new


def write_source(path, records):
    with open(path, "wb") as f:
        f.write(b"".join(b"%s\t%s\n" % item for item in records.items()))


class Child(object):
    """One compile by our engine in a child process, with its phase marks."""

    def __init__(self, source, type_name):
        self.read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-c", CHILD, str(write_fd), COLLECTIONS, source, type_name],
                pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            os.close(write_fd)
        self.started = time.monotonic()
        self.marks = {}
        self._buf = b""

    def _read(self, timeout):
        """Read what marks are there within ``timeout``; False at end of file."""
        ready, _w, _x = select.select([self.read_fd], [], [], max(timeout, 0))
        if not ready:
            return True
        chunk = os.read(self.read_fd, 4096)
        self._buf += chunk
        lines = self._buf.split(b"\n")
        self._buf = lines.pop()
        for line in lines:
            name, stamp = line.split()
            self.marks[name.decode()] = float(stamp)
        return bool(chunk)

    def wait_mark(self, name, timeout=60):
        """Block until the child writes mark ``name``; False when it ended without it."""
        deadline = time.monotonic() + timeout
        while name not in self.marks and time.monotonic() < deadline:
            if not self._read(deadline - time.monotonic()):
                break
        return name in self.marks

    def kill(self):
        """SIGKILL the child (this pid only) and reap it; whether it was still running."""
        running = self.proc.poll() is None
        if running:
            self.proc.kill()
        self.proc.wait()
        return running

    def finish(self):
        """Reap the child and read all its marks; its stderr."""
        try:
            err = self.proc.communicate(timeout=120)[1]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 10
        while self._read(1) and time.monotonic() < deadline:
            pass
        os.close(self.read_fd)
        return err

    def last_phase(self):
        """The last phase the child marked ("exec": none). A mark is written before the step
        it names, so a child whose last mark is "rename" may or may not have renamed."""
        hit = [name for name in PHASES if name in self.marks]
        return hit[-1] if hit else "exec"


class Reader(threading.Thread):
    """Queries the sentinel with real postmap in a loop (while a compile runs)."""

    def __init__(self, check):
        super().__init__(daemon=True)
        self.check = check
        self.stop = threading.Event()
        self.answers = []
        self.failures = []

    def run(self):
        while not self.stop.is_set():
            try:
                self.answers.append(self.check())
            except AssertionError as exc:
                self.failures.append(str(exc))
            self.stop.wait(READER_PAUSE)


class Rig(object):
    def __init__(self, root, type_name):
        self.type = type_name
        self.dir = os.path.join(root, "maps")
        os.makedirs(self.dir)
        self.config = os.path.join(root, "cf")
        os.makedirs(self.config)
        main_cf = os.path.join(self.config, "main.cf")
        with open(main_cf, "w", encoding="ascii") as f:
            f.write("compatibility_level = 3.6\nmyhostname = crash.example\n")
        # Postfix tools wait for a main.cf changed in the last seconds to settle: date it back.
        os.utime(main_cf, (1000000000, 1000000000))
        self.source = os.path.join(self.dir, "virtual")
        self.index = self.source + SUFFIX[type_name]
        self.spec = "%s:%s" % (type_name, self.source)
        self.saved_old = os.path.join(root, "old" + SUFFIX[type_name])

    def sentinel(self):
        """Real postmap's answer for the sentinel: "old" or "new", else an AssertionError."""
        proc = subprocess.run(["postmap", "-c", self.config, "-q", SENTINEL, self.spec],
                              capture_output=True, check=False)
        noise = [line for line in proc.stderr.splitlines() if not _OLDER.match(line)]
        assert proc.returncode == 0 and not noise and proc.stdout in (b"old\n", b"new\n"), \
            "postmap -q sentinel: exit %d, stdout %r, stderr %r" % (proc.returncode, proc.stdout[:200], proc.stderr)
        return proc.stdout.strip().decode()

    def compile(self):
        child = Child(self.source, self.type)
        err = child.finish()
        assert child.proc.returncode == 0, err.decode("utf-8", "replace")
        return child

    def put_back_old(self):
        """The old index back in place (hard link of the saved copy renamed over the index)."""
        link = os.path.join(self.dir, ".reset-link")
        os.link(self.saved_old, link)
        os.rename(link, self.index)

    def leftovers(self):
        return sorted(n for n in os.listdir(self.dir) if n.endswith(".tmp"))

    def check_structure(self, versions, outcome):
        if self.type == "hash":
            proc = subprocess.run(["db_verify", "-q", self.index], capture_output=True, check=False)
            assert proc.returncode == 0, proc.stderr
        elif self.type == "cdb":
            assert dict(read_cdb(self.index)) == versions[outcome]

    def check_everything(self, versions, outcome, all_keys):
        found = postmap_query(self.config, self.spec, all_keys)
        expected = versions[outcome]
        if found != expected:
            missing = sum(1 for k in expected if k not in found)
            extra = sum(1 for k in found if k not in expected)
            wrong = sum(1 for k in expected if k in found and found[k] != expected[k])
            pytest.fail("%s after kill: %d missing, %d extra, %d wrong values (sentinel says %s)"
                        % (self.spec, missing, extra, wrong, outcome))


def kill_plan(rng):
    """Shuffled [("time", share of an uncut compile) or ("mark", name, seconds after it)]."""
    plan = [("time", 0.0), ("time", 0.001)][:EARLY_KILLS]
    plan += [("time", (i + rng.random()) / STRATIFIED_KILLS) for i in range(STRATIFIED_KILLS)]
    for name, count, most in MARK_KILLS:
        plan += [("mark", name, rng.random() * most) for _i in range(count)]
    rng.shuffle(plan)
    return plan


def wait_share(child, uncut, share):
    """Sleep until ``child`` is ``share`` of the way from its start to the end of its write
    (the "fsync" mark), by the uncut compile's timeline anchored on the child's own marks:
    wait for the last mark the uncut compile had made by then, and scale the rest by how
    slow the child was up to that mark (the machine's load varies; absolute delays would
    bunch the kills at one end)."""
    total = uncut.marks["fsync"] - uncut.started
    target = share * total
    anchor, anchor_at = None, 0.0
    for name in PHASES:
        at = uncut.marks[name] - uncut.started
        if at <= target:
            anchor, anchor_at = name, at
    if anchor is None or not child.wait_mark(anchor):
        wake = child.started + target
    else:
        reached = child.marks[anchor] - child.started
        wake = child.marks[anchor] + (target - anchor_at) * (reached / anchor_at if anchor_at > 0 else 1.0)
    time.sleep(max(wake - time.monotonic(), 0))


@pytest.mark.parametrize("type_name", ["hash", "cdb", "lmdb"])
def test_kill_9_anywhere_leaves_old_or_new(type_name):
    started = time.monotonic()
    spent = {}
    clock = [started]

    def lap(what):
        now = time.monotonic()
        spent[what] = spent.get(what, 0.0) + now - clock[0]
        clock[0] = now

    rng = random.Random(type_name)
    root = tempfile.mkdtemp(prefix="mailops-crash-")
    rig = Rig(root, type_name)
    try:
        old, new = make_versions()
        versions = {"old": old, "new": new}
        all_keys = sorted(set(old) | set(new))
        write_source(rig.source, old)
        rig.compile()
        assert rig.sentinel() == "old"
        rig.check_everything(versions, "old", all_keys)
        os.link(rig.index, rig.saved_old)

        write_source(rig.source, new)
        reader = Reader(rig.sentinel)
        reader.start()
        try:
            uncut = rig.compile()  # as the killed ones run: with the reader querying
        finally:
            reader.stop.set()
            reader.join()
        assert not reader.failures, reader.failures[:3]
        assert rig.sentinel() == "new"
        rig.put_back_old()
        lap("set-up")

        outcomes = {"old": 0, "new": 0}
        phases = {}
        stats = {"max_tmp_bytes": 0, "reader_queries": len(reader.answers), "full_checks": 1, "finished": 0}
        plan = kill_plan(rng)
        for n, step in enumerate(plan, 1):
            reader = Reader(rig.sentinel)
            child = Child(rig.source, type_name)
            reader.start()
            try:
                if step[0] == "time":
                    wait_share(child, uncut, step[1])
                elif child.wait_mark(step[1]):
                    time.sleep(step[2])
                stats["finished"] += not child.kill()
            finally:
                reader.stop.set()
                reader.join()
                child.finish()
            lap("killed runs")
            stats["reader_queries"] += len(reader.answers)
            assert not reader.failures, reader.failures[:3]
            phase = child.last_phase()
            phases.setdefault(phase, []).append(step)

            tmps = rig.leftovers()
            # Each writer removes the temp files of dead writers before it makes its own.
            assert len(tmps) <= 1, tmps
            for name in tmps:
                stats["max_tmp_bytes"] = max(stats["max_tmp_bytes"], os.path.getsize(os.path.join(rig.dir, name)))

            outcome = rig.sentinel()
            outcomes[outcome] += 1
            if ORDER.index(phase) < ORDER.index("rename"):
                assert outcome == "old", (n, step, phase)
            elif phase != "rename":
                assert outcome == "new", (n, step, phase)
            rig.check_structure(versions, outcome)
            lap("checks")
            if n % FULL_CHECK_EVERY == 0:
                rig.check_everything(versions, outcome, all_keys)
                stats["full_checks"] += 1
                lap("full checks")
            if outcome == "new":
                rig.put_back_old()

        # What the last kill left is what the final compile starts from.
        rig.check_everything(versions, rig.sentinel(), all_keys)
        rig.compile()
        assert rig.sentinel() == "new"
        rig.check_structure(versions, "new")
        rig.check_everything(versions, "new", all_keys)
        stats["full_checks"] += 2
        assert [name for name in os.listdir(rig.dir) if name.endswith(".tmp") or name.endswith(".lock")] == []
        lap("final")

        m = dict((name, uncut.marks[name] - uncut.started) for name in PHASES)
        shares = sorted(step[1] for step in sum(phases.values(), []) if step[0] == "time")
        lines = [
            "%s: %d entries, source %d bytes, index %d bytes" % (
                type_name, len(new), os.path.getsize(rig.source), os.path.getsize(rig.index)),
            "uncut compile %.2f s: start+imports %.2f, parse %.2f, write %.2f, fsync+chmod %.3f, rename %.4f, "
            "dir fsync %.3f, exit %.3f" % (
                m["done"], m["imported"], m["replace"] - m["imported"], m["fsync"] - m["replace"],
                m["rename"] - m["fsync"], m["renamed"] - m["rename"], m["dirsync"] - m["renamed"],
                m["done"] - m["dirsync"]),
            "%d kills: %d timed at %.1f%%-%.1f%% of the way to the end of the write, %d on phase marks; "
            "last mark reached: %s" % (
                len(plan), len(shares), 100 * shares[0], 100 * shares[-1], len(plan) - len(shares),
                ", ".join("%s %d" % (p, len(phases[p])) for p in ORDER if p in phases)),
            "outcomes old %d / new %d; %d finished before the kill; largest temp left %d bytes; "
            "%d reader queries during compiles; %d full checks" % (
                outcomes["old"], outcomes["new"], stats["finished"], stats["max_tmp_bytes"],
                stats["reader_queries"], stats["full_checks"]),
            "%.1f s: %s" % (time.monotonic() - started, ", ".join("%s %.1f" % item for item in spent.items())),
        ]
        print("\n" + "\n  ".join(lines))
    finally:
        shutil.rmtree(root, ignore_errors=True)
