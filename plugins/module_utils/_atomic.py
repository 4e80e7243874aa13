# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one write path of every engine: temp file beside the target, fsync, attributes,
rename, directory fsync; plus a per-file lock so two runs on one host never interleave.

Attribute rules (postmap.c / mkmap_open.c, verified against Postfix 3.7):

* an existing target keeps its owner, group and mode (secret maps stay 0600);
* a new index built from a source gets what postmap would give it: the source's uid:gid
  (postmap switches to them when run as root) and mode 0644 under the umask
  ``022 | (~source_mode & 077)``, i.e. ``0600 | (source_mode & 0044)``;
* anything else new gets 0644.

Temp files: ``.<name>.<pid>.<random>.tmp`` beside the target, ``<pid>`` the writer's. A
writer killed before its rename (SIGKILL, OOM, power loss) leaves its temp file behind,
as large as the index it was writing; the next replace() of the same target removes the
temp files of writers that are gone: no process with that pid, and no process holding the
flock every writer keeps on its temp file until the rename (which also covers a writer in
another pid namespace). A live writer's temp file is never touched.

Lock files: ``locked(path)`` takes an exclusive flock on ``.<name>.lock`` in the same
directory. Postfix never opens dot files in its directories and the file is removed on
release, so nothing stays behind in /etc/postfix. Waiters re-check after locking that the
name still refers to the inode they locked (as edit_file.c does), so removing it is safe.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
import threading
import time

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

DEFAULT_LOCK_TIMEOUT = 60.0
# A wait is always bounded: a day at most.
_MAX_LOCK_TIMEOUT = 86400
_POLL = 0.05


def _strerror(exc):
    return exc.strerror or str(exc)


def read_bytes(path, missing_ok=False, missing="%s: no such file", cannot="%s: cannot read: %s",
               missing_error=PostfixError):
    """The whole of ``path`` as bytes: the one read of main.cf, master.cf and table sources.

    A missing file is ``b""`` with ``missing_ok``, else ``missing_error(missing % path)``;
    any other OSError is ``PostfixError(cannot % (path, strerror))``. The callers keep their
    own wording through ``missing`` and ``cannot``."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        if missing_ok:
            return b""
        raise missing_error(missing % path)
    except OSError as e:
        raise PostfixError(cannot % (path, _strerror(e)))


def remove(path):
    """Unlink ``path``; True when it was there, False when it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise PostfixError("%s: cannot remove: %s" % (path, _strerror(exc)))
    return True


def index_mode(source_mode):
    """Mode postmap gives a new index built from a source with ``source_mode``."""
    return 0o600 | (stat.S_IMODE(source_mode) & 0o044)


def _attributes(real, ref_path, mode):
    """(uid, gid, mode) for the file that will replace ``real``; uid/gid None: keep ours."""
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise PostfixError("cannot stat %s: %s" % (real, _strerror(exc)))
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise PostfixError("%s exists and is not a regular file" % (real,))
        uid, gid, new_mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
    else:
        uid = gid = None
        new_mode = 0o644
        if ref_path is not None:
            try:
                src = os.stat(ref_path)
            except OSError:
                src = None
            if src is not None:
                new_mode = index_mode(src.st_mode)
                # postmap takes the source's uid:gid only when it runs as root.
                if os.geteuid() == 0:
                    uid, gid = src.st_uid, src.st_gid
    if mode is not None:
        new_mode = mode
    return uid, gid, new_mode


def _fsync_path(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _writer_alive(pid):
    """Whether a process with ``pid`` exists (ours counts; a pid we may not signal exists)."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, OSError):
        # PermissionError (EPERM): it exists under another user; anything else: assume it does.
        return True
    return True


def _temp_pattern(name):
    """Matches the temp files replace() makes for a target called ``name``; group 1 is the pid.
    mkstemp's random part has no dot, so another target's temps (``name.x``) never match."""
    return re.compile(r"\A\.%s\.([0-9]+)\.[a-z0-9_]+\.tmp\Z" % re.escape(name))


def _remove_if_abandoned(path):
    """Remove the temp file ``path`` unless a writer holds its flock; never follows a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        mine, now = os.fstat(fd), os.lstat(path)
        if not stat.S_ISREG(mine.st_mode) or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            return False
        os.unlink(path)
    except OSError:
        return False  # a writer holds it, or it is gone
    finally:
        os.close(fd)
    return True


def remove_abandoned_temps(target):
    """Remove the temp files earlier writers of ``target`` left behind when they were killed
    (see the module docstring); return the paths removed. Best effort: errors are ignored."""
    real = os.path.realpath(target)
    directory = os.path.dirname(real)
    pattern = _temp_pattern(os.path.basename(real))
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None or _writer_alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        if _remove_if_abandoned(path):
            removed.append(path)
    return removed


def replace(target, write_fn, ref_path=None, mode=None):
    """Atomically replace ``target`` with a file that ``write_fn(temp_path)`` fills.

    ``ref_path`` is the source file a new index is derived from (owner and read bits);
    ``mode`` forces a mode. On any error the temp file is removed, the target is left
    untouched, and the error is raised as PostfixError (write_fn's own PostfixError as is).
    A symlinked target is followed: the file it points to is replaced. Temp files that
    killed writers of the same target left behind are removed first.
    """
    real = os.path.realpath(target)
    directory = os.path.dirname(real)
    uid, gid, new_mode = _attributes(real, ref_path, mode)
    remove_abandoned_temps(real)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".%s.%d." % (os.path.basename(real), os.getpid()), suffix=".tmp",
                                   dir=directory)
    except OSError as exc:
        raise PostfixError("cannot create a temporary file in %s: %s" % (directory, _strerror(exc)))
    # Held until the temp file is renamed or removed: tells remove_abandoned_temps() that
    # its writer is alive, whatever pid namespace it runs in. Released right after the
    # rename, so Postfix's shared lock on the new index never waits for the directory fsync.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass
    renamed = False
    try:
        write_fn(tmp)
        _fsync_path(tmp)
        st = os.stat(tmp)
        if uid is not None and (st.st_uid, st.st_gid) != (uid, gid):
            try:
                os.chown(tmp, uid, gid)
            except PermissionError:
                raise PostfixError("cannot give %s its owner %d:%d: not permitted (run as root)" % (target, uid, gid))
        # After chown, which may clear set-id bits.
        os.chmod(tmp, new_mode)
        # rename(2) swaps the name in one step: a reader opens either the old inode or the
        # new one, never a half-written file. Postfix daemons that have the old map open see
        # its link count drop to 0 (dict_changed_name() in dict.c) and restart themselves.
        os.rename(tmp, real)
        renamed = True
        os.close(fd)
        fd = -1
        _fsync_path(directory, directory=True)
    except OSError as exc:
        raise PostfixError("cannot write %s: %s" % (target, _strerror(exc)))
    finally:
        if not renamed:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if fd >= 0:
            os.close(fd)


def _to_bytes(content):
    if isinstance(content, str):
        return content.encode("utf-8", "surrogateescape")
    return bytes(content)


def backup_copy(path):
    """Copy ``path`` to ``path.<pid>.<YYYY-mm-dd@HH:MM:SS>~`` (Ansible's backup_local
    naming) with the same owner, mode and times; return the backup path."""
    backup = "%s.%d.%s~" % (path, os.getpid(), time.strftime("%Y-%m-%d@%H:%M:%S"))
    try:
        st = os.stat(path)
        with open(path, "rb") as src:
            # Created 0600 and opened exclusively: a secret is never readable by others.
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as dst:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    dst.write(chunk)
                if (os.fstat(dst.fileno()).st_uid, os.fstat(dst.fileno()).st_gid) != (st.st_uid, st.st_gid):
                    try:
                        os.fchown(dst.fileno(), st.st_uid, st.st_gid)
                    except PermissionError:
                        pass
                os.fchmod(dst.fileno(), stat.S_IMODE(st.st_mode))
                dst.flush()
                os.fsync(dst.fileno())
        os.utime(backup, ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError as exc:
        raise PostfixError("cannot back up %s to %s: %s" % (path, backup, _strerror(exc)))
    return backup


def replace_text(path, content, backup=False, mode=None):
    """Atomically replace a source file (main.cf, aliases, a table source) with ``content``
    (bytes, or str written as UTF-8). An existing file keeps its owner, group and mode; a
    new one gets 0644 unless ``mode`` is given. With ``backup``, an existing file is first
    copied by backup_copy(); its path is returned (else None)."""
    data = _to_bytes(content)
    backup_path = None
    if backup and os.path.exists(path):
        backup_path = backup_copy(path)

    def fill(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    replace(path, fill, mode=mode)
    return backup_path


def lock_path(path):
    """The lock file guarding ``path``: ``.<name>.lock`` in the same directory."""
    real = os.path.realpath(path)
    return os.path.join(os.path.dirname(real), "." + os.path.basename(real) + ".lock")


# Locks this process holds, per thread: nested locked() on one path in one thread re-enters.
_held = {}
_held_guard = threading.Lock()


def _holder(lpath):
    try:
        with open(lpath, "rb") as f:
            pid = f.read(32).strip().decode("ascii", "replace")
    except OSError:
        pid = ""
    return " (held by pid %s)" % pid if pid.isdigit() else ""


def _acquire(lpath, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lpath, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise PostfixError("cannot create lock file %s: %s" % (lpath, _strerror(exc)))
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
                        raise PostfixError("cannot lock %s: %s" % (lpath, _strerror(exc)))
                if time.monotonic() >= deadline:
                    raise PostfixError(
                        "timed out after %g s waiting for lock file %s%s: another run is changing the same file"
                        % (timeout, lpath, _holder(lpath)))
                time.sleep(_POLL)
            mine = os.fstat(fd)
            try:
                now = os.stat(lpath)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                os.ftruncate(fd, 0)
                os.write(fd, b"%d\n" % os.getpid())
                return fd
        except BaseException:
            os.close(fd)
            raise
        # The previous holder removed the name while we waited: lock the new file.
        os.close(fd)


@contextlib.contextmanager
def locked(path, timeout=DEFAULT_LOCK_TIMEOUT):
    """Hold an exclusive lock for ``path`` (see lock_path) for the ``with`` block.

    Raises PostfixError naming the lock file (and the holder's pid) after ``timeout``
    seconds. Re-entrant within one thread.
    """
    if not 0 <= timeout <= _MAX_LOCK_TIMEOUT:  # also refuses NaN
        raise PostfixError("lock_timeout must be between 0 and %d seconds, not %r" % (_MAX_LOCK_TIMEOUT, timeout))
    lpath = lock_path(path)
    key = (threading.get_ident(), lpath)
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield lpath
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    fd = _acquire(lpath, timeout)
    entry = [fd, 1]
    with _held_guard:
        _held[key] = entry
    try:
        yield lpath
    finally:
        with _held_guard:
            del _held[key]
        # Remove the name while still holding the lock; waiters on this inode re-check.
        try:
            os.unlink(lpath)
        except OSError:
            pass
        os.close(fd)
