# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic replacement, attributes and locking (_atomic.py)."""

from __future__ import annotations

import fcntl
import grp
import os
import pathlib
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _atomic
from ansible_collections.mailops.postfix.plugins.module_utils._db import cdb
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

NOBODY = pwd.getpwnam("nobody")
POSTFIX_GID = grp.getgrnam("postfix").gr_gid
COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           ".build", "collections")


def _fill(data):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    return write


def _leftovers(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp") or n.endswith(".lock"))


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_without_reference_is_0644(tmp_path):
    target = tmp_path / "plain"
    _atomic.replace(str(target), _fill(b"x"))
    assert target.read_bytes() == b"x"
    assert _mode(target) == 0o644
    assert _leftovers(tmp_path) == []


def test_existing_index_keeps_owner_group_mode(tmp_path):
    target = tmp_path / "sasl_passwd.db"
    target.write_bytes(b"old")
    os.chown(str(target), NOBODY.pw_uid, POSTFIX_GID)
    os.chmod(str(target), 0o600)
    _atomic.replace(str(target), _fill(b"new"), ref_path=None)
    st = os.stat(str(target))
    assert target.read_bytes() == b"new"
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY.pw_uid, POSTFIX_GID, 0o600)


def test_existing_index_keeps_attributes_even_with_source(tmp_path):
    source = tmp_path / "virtual"
    source.write_bytes(b"a b\n")
    os.chmod(str(source), 0o644)
    target = tmp_path / "virtual.cdb"
    target.write_bytes(b"old")
    os.chown(str(target), NOBODY.pw_uid, NOBODY.pw_gid)
    os.chmod(str(target), 0o640)
    _atomic.replace(str(target), _fill(b"new"), ref_path=str(source))
    st = os.stat(str(target))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o640)


@pytest.mark.parametrize("src_mode,expected", [(0o640, 0o640), (0o644, 0o644), (0o600, 0o600),
                                               (0o604, 0o604), (0o666, 0o644), (0o751, 0o640)])
def test_index_mode_rule(src_mode, expected):
    assert _atomic.index_mode(src_mode) == expected


def test_new_index_from_0640_root_postfix_source(tmp_path):
    source = tmp_path / "virtual"
    source.write_bytes(b"a@example.com b\n")
    os.chown(str(source), 0, POSTFIX_GID)
    os.chmod(str(source), 0o640)
    target = tmp_path / "virtual.cdb"
    _atomic.replace(str(target), lambda tmp: cdb.write(tmp, [(b"a@example.com", b"b")]), ref_path=str(source))
    st = os.stat(str(target))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, POSTFIX_GID, 0o640)


@pytest.fixture
def open_dir():
    """A directory the postmap child (switched to the source's uid) can write: outside
    pytest's 0700 tmp tree."""
    path = tempfile.mkdtemp(prefix="mailops-atomic-")
    os.chmod(path, 0o777)
    try:
        yield pathlib.Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_new_index_matches_real_postmap_attributes(open_dir):
    """Same source, same rules: our new index gets what real postmap gives its own."""
    tmp_path = open_dir
    (tmp_path / "main.cf").write_text("compatibility_level = 3.6\n")
    # An old mtime: dict_load_file_xt() waits for a just-written main.cf to settle.
    os.utime(str(tmp_path / "main.cf"), (1000000000, 1000000000))
    for src_mode in (0o640, 0o604, 0o600):
        source = tmp_path / ("src%o" % src_mode)
        source.write_bytes(b"a@example.com b\n")
        os.chown(str(source), NOBODY.pw_uid, POSTFIX_GID)
        os.chmod(str(source), src_mode)
        subprocess.run(["postmap", "-c", str(tmp_path), "cdb:%s" % source], check=True)
        theirs = os.stat(str(source) + ".cdb")
        ours_path = str(source) + ".ours.cdb"
        _atomic.replace(ours_path, lambda tmp: cdb.write(tmp, [(b"a@example.com", b"b")]), ref_path=str(source))
        ours = os.stat(ours_path)
        assert (ours.st_uid, ours.st_gid, stat.S_IMODE(ours.st_mode)) == \
            (theirs.st_uid, theirs.st_gid, stat.S_IMODE(theirs.st_mode)), oct(src_mode)
        assert open(ours_path, "rb").read() == open(str(source) + ".cdb", "rb").read()


def test_explicit_mode_wins(tmp_path):
    target = tmp_path / "t"
    target.write_bytes(b"old")
    os.chmod(str(target), 0o644)
    _atomic.replace(str(target), _fill(b"new"), mode=0o600)
    assert _mode(target) == 0o600


def test_failure_in_write_fn_leaves_target_untouched(tmp_path):
    target = tmp_path / "virtual.db"
    target.write_bytes(b"precious \x00 bytes")
    os.chmod(str(target), 0o640)
    before = os.stat(str(target))

    def broken(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise PostfixError("boom")

    with pytest.raises(PostfixError, match="boom"):
        _atomic.replace(str(target), broken)
    after = os.stat(str(target))
    assert target.read_bytes() == b"precious \x00 bytes"
    assert (after.st_ino, after.st_mtime_ns, _mode(target)) == (before.st_ino, before.st_mtime_ns, 0o640)
    assert _leftovers(tmp_path) == []


def test_oserror_in_write_fn_becomes_postfix_error(tmp_path):
    target = tmp_path / "t"
    target.write_bytes(b"old")

    def broken(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(PostfixError, match="No space left on device"):
        _atomic.replace(str(target), broken)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_unexpected_exception_cleans_up_and_propagates(tmp_path):
    target = tmp_path / "t"
    target.write_bytes(b"old")

    def interrupted(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        _atomic.replace(str(target), interrupted)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_missing_directory_is_a_postfix_error(tmp_path):
    with pytest.raises(PostfixError, match="cannot create a temporary file"):
        _atomic.replace(str(tmp_path / "nope" / "t"), _fill(b"x"))


def test_target_is_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(PostfixError, match="not a regular file"):
        _atomic.replace(str(tmp_path / "d"), _fill(b"x"))


def test_readers_never_see_a_half_written_file(tmp_path):
    """While write_fn runs the target is the old file; a reader that had it open keeps the
    old inode (link count 0 afterwards: what makes Postfix daemons restart)."""
    target = tmp_path / "virtual.cdb"
    cdb.write(str(target), [(b"k", b"old")])
    old_bytes = target.read_bytes()
    with open(str(target), "rb") as reader:
        seen = []

        def write(tmp):
            seen.append(target.read_bytes())
            assert os.path.dirname(tmp) == str(tmp_path)
            assert os.path.basename(tmp).startswith(".virtual.cdb.") and tmp.endswith(".tmp")
            cdb.write(tmp, [(b"k", b"new")])
            seen.append(target.read_bytes())

        _atomic.replace(str(target), write)
        assert seen == [old_bytes, old_bytes]
        assert os.fstat(reader.fileno()).st_nlink == 0
        assert reader.read() == old_bytes
    assert cdb.lookup(str(target), b"k") == b"new"


def test_symlinked_target_replaces_the_file_it_points_to(tmp_path):
    real = tmp_path / "real.cdb"
    real.write_bytes(b"old")
    link = tmp_path / "link.cdb"
    link.symlink_to(real)
    _atomic.replace(str(link), _fill(b"new"))
    assert link.is_symlink()
    assert real.read_bytes() == b"new"


def test_replace_text_keeps_attributes_and_backs_up(tmp_path):
    path = tmp_path / "main.cf"
    path.write_bytes(b"myhostname = old\n")
    os.chown(str(path), NOBODY.pw_uid, POSTFIX_GID)
    os.chmod(str(path), 0o640)
    before = os.stat(str(path))
    backup = _atomic.replace_text(str(path), "myhostname = new\n", backup=True)
    assert path.read_bytes() == b"myhostname = new\n"
    st = os.stat(str(path))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY.pw_uid, POSTFIX_GID, 0o640)
    assert backup is not None and backup.startswith(str(path) + ".%d." % os.getpid()) and backup.endswith("~")
    bst = os.stat(backup)
    assert open(backup, "rb").read() == b"myhostname = old\n"
    assert (bst.st_uid, bst.st_gid, stat.S_IMODE(bst.st_mode)) == (NOBODY.pw_uid, POSTFIX_GID, 0o640)
    assert bst.st_mtime_ns == before.st_mtime_ns


def test_replace_text_new_file_and_no_backup(tmp_path):
    path = tmp_path / "aliases"
    assert _atomic.replace_text(str(path), b"root: admin\n", backup=True) is None
    assert path.read_bytes() == b"root: admin\n"
    assert _mode(path) == 0o644
    assert _atomic.replace_text(str(path), "postmaster: root\n") is None
    assert path.read_bytes() == b"postmaster: root\n"
    assert sorted(os.listdir(str(tmp_path))) == ["aliases"]


def test_lock_file_name_and_cleanup(tmp_path):
    target = str(tmp_path / "virtual.db")
    with _atomic.locked(target) as lpath:
        assert lpath == str(tmp_path / ".virtual.db.lock")
        assert open(lpath, "rb").read() == b"%d\n" % os.getpid()
        with _atomic.locked(target):  # re-entrant in one thread
            pass
        assert os.path.exists(lpath)
    assert os.listdir(str(tmp_path)) == []


def test_lock_excludes_a_second_process(tmp_path):
    target = str(tmp_path / "virtual.db")
    code = (
        "import sys, time\n"
        "sys.path.insert(0, %r)\n"
        "from ansible_collections.mailops.postfix.plugins.module_utils import _atomic\n"
        "with _atomic.locked(%r):\n"
        "    print('locked', flush=True)\n"
        "    sys.stdin.readline()\n"
    ) % (COLLECTIONS, target)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(PostfixError) as info:
            with _atomic.locked(target, timeout=0.3):
                pass
        message = str(info.value)
        assert str(tmp_path / ".virtual.db.lock") in message
        assert "held by pid %d" % holder.pid in message
        holder.stdin.write(b"\n")
        holder.stdin.flush()
        assert holder.wait(timeout=10) == 0
        with _atomic.locked(target, timeout=5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert os.listdir(str(tmp_path)) == []


def test_lock_serialises_threads(tmp_path):
    """Threads wait their turn (the name is removed and re-created between holders)."""
    target = str(tmp_path / "virtual.db")
    inside = []
    overlaps = []

    def worker(n):
        for _i in range(5):
            with _atomic.locked(target, timeout=20):
                if inside:
                    overlaps.append(n)
                inside.append(n)
                time.sleep(0.002)
                inside.remove(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert os.listdir(str(tmp_path)) == []


def test_lock_in_unwritable_place_is_a_postfix_error(tmp_path):
    with pytest.raises(PostfixError, match="cannot create lock file"):
        with _atomic.locked(str(tmp_path / "missing-dir" / "x")):
            pass


# -- temp files of killed writers ------------------------------------------------------------
def _dead_pid():
    """A pid no process has (a child that has exited and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_child():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_temp_name_carries_the_writers_pid(tmp_path):
    names = []

    def write(tmp):
        names.append(os.path.basename(tmp))
        with open(tmp, "wb") as f:
            f.write(b"x")

    _atomic.replace(str(tmp_path / "virtual.db"), write)
    prefix = ".virtual.db.%d." % os.getpid()
    assert names[0].startswith(prefix) and names[0].endswith(".tmp")
    assert "." not in names[0][len(prefix):-len(".tmp")]


def test_dead_writers_temp_is_removed_live_ones_and_others_kept(tmp_path, live_child):
    dead = _dead_pid()
    target = tmp_path / "virtual.db"
    target.write_bytes(b"old")
    files = {
        ".virtual.db.%d.k3x9_q2a.tmp" % dead: False,        # a killed writer's: removed
        ".virtual.db.%d.a1b2c3d4.tmp" % live_child: True,   # a running writer's
        ".virtual.db.%d.zz9yy8xx.tmp" % os.getpid(): True,  # this process's own (another thread)
        ".virtual.db.1.a1b2c3d4.tmp": True,                 # init is alive
        ".virtual.db.0.a1b2c3d4.tmp": True,                 # no such writer, not signalled
        ".virtual.db.lock": True,                           # the lock file
        ".virtual.db.k3x9_q2a.tmp": True,                   # the older name without a pid
        ".virtual.db.5.%d.k3x9_q2a.tmp" % dead: True,       # another target's (virtual.db.5)
        ".virtual.%d.k3x9_q2a.tmp" % dead: True,            # another target's (virtual)
        ".virtual.db.%d.tmp" % dead: True,                  # not our pattern
        ".virtual.db.%d.k3x9_q2a.tmp~" % dead: True,
        "virtual.db.%d.k3x9_q2a.tmp" % dead: True,
        ".other.db.%d.k3x9_q2a.tmp" % dead: True,
    }
    for name in files:
        (tmp_path / name).write_bytes(b"partial")
    _atomic.replace(str(target), _fill(b"new"))
    assert target.read_bytes() == b"new"
    assert sorted(os.listdir(str(tmp_path))) == sorted(["virtual.db"] + [n for n, kept in files.items() if kept])


def test_pid_that_cannot_be_signalled_counts_as_alive(tmp_path, monkeypatch):
    dead = _dead_pid()
    name = ".virtual.db.%d.k3x9_q2a.tmp" % dead
    (tmp_path / name).write_bytes(b"partial")

    def no_permission(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(_atomic.os, "kill", no_permission)
    assert _atomic.remove_abandoned_temps(str(tmp_path / "virtual.db")) == []
    assert os.path.exists(str(tmp_path / name))


def test_temp_locked_by_its_writer_is_kept_whatever_its_pid(tmp_path):
    """A writer in another pid namespace has a pid that means nothing here: its flock on the
    temp file keeps it."""
    path = tmp_path / (".virtual.db.%d.k3x9_q2a.tmp" % _dead_pid())
    path.write_bytes(b"partial")
    with open(str(path), "rb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        assert _atomic.remove_abandoned_temps(str(tmp_path / "virtual.db")) == []
        assert path.exists()
    assert _atomic.remove_abandoned_temps(str(tmp_path / "virtual.db")) == [str(path)]
    assert not path.exists()


def test_running_writers_temp_is_locked_and_kept(tmp_path):
    """While write_fn runs, a cleanup by another writer leaves our temp file alone."""
    target = str(tmp_path / "virtual.db")
    seen = []

    def write(tmp):
        assert _atomic.remove_abandoned_temps(target) == []
        with open(tmp, "rb") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        seen.append(os.path.exists(tmp))
        with open(tmp, "wb") as f:
            f.write(b"new")

    _atomic.replace(target, write)
    assert seen == [True]
    assert _leftovers(tmp_path) == []


def test_symlink_or_directory_named_like_a_temp_is_kept(tmp_path):
    dead = _dead_pid()
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep me")
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / (".virtual.db.%d.aaaaaaaa.tmp" % dead)).symlink_to(outside)
    (maps / (".virtual.db.%d.bbbbbbbb.tmp" % dead)).mkdir()
    assert _atomic.remove_abandoned_temps(str(maps / "virtual.db")) == []
    assert outside.read_bytes() == b"keep me"
    assert len(os.listdir(str(maps))) == 2


def test_next_run_removes_a_killed_writers_temp(tmp_path):
    """kill -9 in the middle of write_fn leaves the temp file; the next replace() removes it."""
    target = str(tmp_path / "virtual.db")
    code = (
        "import os, sys, time\n"
        "sys.path.insert(0, %r)\n"
        "from ansible_collections.mailops.postfix.plugins.module_utils import _atomic\n"
        "def write(tmp):\n"
        "    with open(tmp, 'wb') as f:\n"
        "        f.write(b'half' * 1000)\n"
        "    print(tmp, flush=True)\n"
        "    time.sleep(60)\n"
        "_atomic.replace(%r, write)\n"
    ) % (COLLECTIONS, target)
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        tmp = writer.stdout.readline().decode().strip()
        assert os.path.basename(tmp).startswith(".virtual.db.%d." % writer.pid)
        # While it runs, another run leaves its temp file alone.
        _atomic.replace(target, _fill(b"one"))
        assert os.path.exists(tmp)
        writer.kill()
        writer.wait()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert os.path.getsize(tmp) == 4000
    _atomic.replace(target, _fill(b"two"))
    assert not os.path.exists(tmp)
    assert sorted(os.listdir(str(tmp_path))) == ["virtual.db"]
    assert open(target, "rb").read() == b"two"


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), 86401])
def test_lock_timeout_is_bounded(tmp_path, timeout):
    with pytest.raises(PostfixError, match="lock_timeout must be between 0 and 86400 seconds"):
        with _atomic.locked(str(tmp_path / "virtual"), timeout=timeout):
            pass
    assert os.listdir(str(tmp_path)) == []
