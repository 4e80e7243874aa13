# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""lmdb tables as ``postmap lmdb:`` writes them (Postfix dict_lmdb.c / slmdb.c), through
the ``lmdb`` binding (py-lmdb), imported only when a table is actually opened.

The file holds only LMDB's unnamed main database; keys and values carry a trailing NUL
(dict_lmdb_update: LMDB_NO_TRAILING_NULL is never defined). It is opened like slmdb_open()
opens a map: MDB_NOSUBDIR and MDB_NOLOCK, so no ``-lock`` file is created.
"""

from __future__ import annotations

import os
import struct
from itertools import repeat

from ansible_collections.mailops.postfix.plugins.module_utils import _db
from ansible_collections.mailops.postfix.plugins.module_utils._errors import MissingLibrary, PostfixError

SUFFIX = ".lmdb"
NUL_TERMINATED = True

# MDB_MAXKEYSIZE of the liblmdb Postfix links (0.9.x default); larger keys cannot be stored.
MAX_KEY_SIZE = 511
# lmdb_map_size default (mail_params.h); slmdb doubles it on MDB_MAP_FULL.
DEFAULT_MAP_SIZE = 16 * 1024 * 1024
# SLMDB_FUDGE: readers map at least the file size plus this much.
_READ_FUDGE = 10240
# Records loaded per write transaction (bounds the dirty pages held in memory).
_TXN_BATCH = 65536
# Keys looked up per getmulti() call when verifying.
_VERIFY_BATCH = 65536
# Lookups a Reader makes one by one before it reads the whole file (see Reader).
_READER_POINT_LOOKUPS = 64
_MAGIC = 0xBEEFC0DE
_P_INVALID_MASK = (1 << (8 * struct.calcsize("P"))) - 1

_MISSING = (
    "lmdb: tables need the Python lmdb binding on the target host: install the Debian/Ubuntu "
    "package python3-lmdb (RHEL/Fedora: python3-lmdb; or `pip install lmdb`)")


class LmdbError(PostfixError):
    """An lmdb file that cannot be written or read."""


def _binding():
    try:
        import lmdb  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise MissingLibrary("%s (import failed: %s)" % (_MISSING, exc))
    return lmdb


def _describe_key(key):
    text = key.rstrip(b"\0").decode("utf-8", "backslashreplace")
    return repr(text[:80] + "..." if len(text) > 80 else text)


def _initial_map_size(keys, values):
    """A map size that fits the records in one go: pages are filled to about half in the
    worst case, and a value larger than about a page goes to its own overflow pages."""
    need = 2 * (sum(map(len, keys)) + sum(map(len, values)) + 16 * len(keys)) + (1 << 20)
    size = DEFAULT_MAP_SIZE
    while size < need:
        size *= 2
    return size


def write(path, records):
    """Write ``records`` (unique ``(key, value)`` bytes pairs) as a new lmdb file at ``path``."""
    records = list(records)
    for record in records:
        if not (isinstance(record, tuple) and len(record) == 2
                and isinstance(record[0], bytes) and isinstance(record[1], bytes)):
            raise LmdbError("lmdb records must be (bytes, bytes) pairs, got %r" % (type(record).__name__,))
    write_columns(path, [k for k, _v in records], [v for _k, v in records])


def write_columns(path, keys, values):
    """Write the records ``keys[i]`` -> ``values[i]`` (lists of bytes) as a new lmdb file."""
    if len(keys) != len(values) or not all(map(isinstance, keys, repeat(bytes))) \
            or not all(map(isinstance, values, repeat(bytes))):
        raise LmdbError("lmdb records must be (bytes, bytes) pairs")
    if keys and not min(map(len, keys)):
        raise LmdbError("empty keys cannot be stored in an lmdb table")
    if keys and max(map(len, keys)) > MAX_KEY_SIZE:
        key = next(k for k in keys if len(k) > MAX_KEY_SIZE)
        raise LmdbError("key %s is %d bytes long: lmdb tables cannot store keys longer than %d bytes"
                        % (_describe_key(key), len(key), MAX_KEY_SIZE))
    # First value of a key wins, as postmap keeps the first of duplicate entries.
    first = dict(zip(reversed(keys), reversed(values)))
    order = sorted(first)
    lmdb = _binding()
    map_size = _initial_map_size(keys, values)
    try:
        # An existing file is replaced, not updated: start from an empty file.
        with open(path, "wb"):
            pass
        # slmdb_open(): MDB_NOSUBDIR | MDB_NOLOCK. Durability is the caller's: the temp
        # file is fsynced before it is renamed into place.
        env = lmdb.open(path, subdir=False, lock=False, map_size=map_size, max_dbs=0,
                        sync=False, metasync=False, readahead=False)
    except OSError as exc:
        raise LmdbError("cannot write %s: %s" % (path, exc.strerror or exc))
    except lmdb.Error as exc:
        raise LmdbError("cannot create lmdb file %s: %s" % (path, exc))
    try:
        # Keys are sorted, so every put appends (MDB_APPEND). A transaction keeps its dirty
        # pages in memory until it commits: load in batches (the file is renamed into
        # place only when complete, so this is as atomic as Postfix's one bulk load).
        for start in range(0, len(order), _TXN_BATCH):
            batch = order[start:start + _TXN_BATCH]
            while True:
                try:
                    with env.begin(write=True) as txn:
                        txn.cursor().putmulti(zip(batch, map(first.__getitem__, batch)), append=True)
                    break
                except lmdb.MapFullError:
                    # slmdb_prepare(): on MDB_MAP_FULL double the map size and load again.
                    map_size *= 2
                    env.set_mapsize(map_size)
    except lmdb.Error as exc:
        raise LmdbError("cannot write lmdb file %s: %s" % (path, exc))
    finally:
        env.close()


def _check_file(path):
    """Refuse files LMDB would reject or crash on (a truncated file gets SIGBUS on access).

    Reads both meta pages (mdb_env_read_header) and checks that the newer one's last page
    and main root lie inside the file. Returns the file size.
    """
    word = struct.calcsize("P")
    page_header = word + 8
    wfmt = "Q" if word == 8 else "I"
    db_size = 8 + 5 * word
    dbs_off = page_header + 8 + 2 * word
    meta_len = dbs_off + 2 * db_size + 2 * word
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            first = f.read(meta_len)
            if len(first) < meta_len:
                raise LmdbError("%s: not an lmdb file (%d bytes)" % (path, size))
            if struct.unpack_from("=I", first, page_header)[0] != _MAGIC:
                raise LmdbError("%s: not an lmdb file (bad magic number)" % (path,))
            # The page size is kept in the free DB's md_pad field of the meta page.
            psize = struct.unpack_from("=I", first, dbs_off)[0]
            if psize < 512 or psize > 65536 or psize & (psize - 1):
                raise LmdbError("%s: not an lmdb file (bad page size %d)" % (path, psize))
            f.seek(psize)
            second = f.read(meta_len)
    except OSError as exc:
        raise LmdbError("cannot read %s: %s" % (path, exc.strerror or exc))
    best = None
    for page in (first, second):
        if len(page) < meta_len or struct.unpack_from("=I", page, page_header)[0] != _MAGIC:
            continue
        # mm_dbs[MAIN_DBI].md_root, then mm_last_pg and mm_txnid.
        root = struct.unpack_from("=" + wfmt, page, dbs_off + db_size + 8 + 4 * word)[0]
        last_pg, txnid = struct.unpack_from("=" + 2 * wfmt, page, dbs_off + 2 * db_size)
        if best is None or txnid > best[0]:
            best = (txnid, last_pg, root)
    if best is None:
        raise LmdbError("%s: not an lmdb file (no valid meta page)" % (path,))
    _txnid, last_pg, root = best
    if (last_pg + 1) * psize > size or (root != _P_INVALID_MASK and root > last_pg):
        raise LmdbError("%s: corrupt or truncated lmdb file (%d bytes, %d pages expected)"
                        % (path, size, last_pg + 1))
    return size


def _open_readonly(path):
    size = _check_file(path)
    lmdb = _binding()
    try:
        # slmdb_open(): map at least the file size plus SLMDB_FUDGE.
        env = lmdb.open(path, subdir=False, lock=False, readonly=True, create=False, max_dbs=0,
                        map_size=max(DEFAULT_MAP_SIZE, size + _READ_FUDGE), readahead=False)
    except lmdb.Error as exc:
        raise LmdbError("cannot open lmdb file %s: %s" % (path, exc))
    return lmdb, env


def read(path):
    """Iterate over every stored ``(key, value)``, in key order (the only order lmdb has)."""
    lmdb, env = _open_readonly(path)

    def records():
        try:
            with env.begin(buffers=False) as txn:
                for key, value in txn.cursor():
                    yield key, value
        except lmdb.Error as exc:
            raise LmdbError("cannot read lmdb file %s: %s" % (path, exc))
        finally:
            env.close()

    return records()


def verify(path, keys, values, volatile=()):
    """Why the file does not answer ``keys`` with ``values``, or None (see _db.verify). The
    keys are looked up by liblmdb itself (mdb_get through the binding's getmulti), the
    library Postfix reads the file with."""
    try:
        lmdb, env = _open_readonly(path)
    except MissingLibrary:
        raise
    except PostfixError as exc:
        return _db.unreadable(exc)
    missing = wrong = 0
    try:
        with env.begin(buffers=False) as txn:
            cursor = txn.cursor()
            # In batches: the values found are compared and dropped, never all held at once.
            for start in range(0, len(keys), _VERIFY_BATCH):
                batch = keys[start:start + _VERIFY_BATCH]
                found = cursor.getmulti([key for key in batch if 0 < len(key) <= MAX_KEY_SIZE])
                if len(found) == len(batch):  # every key found, in the order asked
                    got = [value for _key, value in found]
                else:
                    got = list(map(dict(found).get, batch))
                lost, other = _db.differences(batch, values[start:start + _VERIFY_BATCH], got, volatile)
                missing += lost
                wrong += other
            stored = env.stat()["entries"]
    except lmdb.Error as exc:
        return _db.unreadable("cannot read lmdb file %s: %s" % (path, exc))
    finally:
        env.close()
    return _db.verdict(len(keys), missing, wrong, stored)


class Reader(object):
    """Many lookups in the lmdb file at ``path`` (the route module asks thousands).

    LMDB lets a process open a file once (py-lmdb refuses a second open of it), so no
    environment is kept open between lookups; opening one costs ten times a lookup. After
    _READER_POINT_LOOKUPS lookups every record is read once, by liblmdb's cursor over the
    same B+tree that mdb_get descends, and later keys are dict lookups; read again when
    the file there is replaced (postmap and our writer rename a new one into place)."""

    def __init__(self, path):
        self.path = path
        self._ident = None
        self._asked = 0
        self._records = None

    def lookup(self, key):
        ident = _db.identity(self.path)
        if ident != self._ident:
            self._ident, self._asked, self._records = ident, 0, None
        if self._records is None:
            self._asked += 1
            if self._asked <= _READER_POINT_LOOKUPS:
                return lookup(self.path, key)
            self._records = dict(read(self.path))
        return self._records.get(key)   # empty or too long keys are never stored

    def close(self):
        self._ident, self._asked, self._records = None, 0, None


def lookup(path, key):
    """The raw value stored for ``key``, or None."""
    lmdb, env = _open_readonly(path)
    try:
        if not key or len(key) > MAX_KEY_SIZE:
            return None
        with env.begin(buffers=False) as txn:
            return txn.get(key)
    except lmdb.Error as exc:
        raise LmdbError("cannot read lmdb file %s: %s" % (path, exc))
    finally:
        env.close()
