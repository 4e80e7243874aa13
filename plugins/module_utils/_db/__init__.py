# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Indexed lookup-table formats behind one interface, like Postfix's dict_db.c,
dict_cdb.c and dict_lmdb.c behind dict_open().

Every format module (``hash``, ``cdb``, ``lmdb``) provides:

``SUFFIX``
    the index file name suffix Postfix appends to the table name (".db", ".cdb", ".lmdb").
``NUL_TERMINATED``
    whether postmap stores keys and values with a trailing NUL by default
    (``dict_db_update`` / ``dict_lmdb_update``: yes; ``dict_cdbm_open`` forces TRY0NULL: no).
``write(path, records)``
    write a complete new index file at ``path`` (a temporary name chosen by the caller,
    who renames it into place) from ``records``, a sequence of ``(key, value)`` bytes
    pairs with unique keys, exactly as they are to be stored (NULs already applied).
``read(path)``
    iterate over every stored ``(key, value)`` bytes pair, raw.
``lookup(path, key)``
    the raw stored value for the raw ``key`` or None.
``Reader(path)``
    the same lookups, many of them: ``lookup(key)``, ``close()``; what it keeps between
    lookups is read again when the file's ``identity`` changes.
``verify(path, keys, values, volatile)``
    why the file does not answer every ``keys[i]`` with ``values[i]`` when each key is
    looked up the way Postfix's reader looks it up (libdb's bucket and in-page binary
    search, cdb_find's probing, liblmdb's own lookup), or holds other records; None when
    it does. Values of the keys in ``volatile`` are not compared. A file that cannot be
    read is a reason, not an error: it is stale.

Errors are raised as ``PostfixError`` subclasses with a message fit for a user.
"""

from __future__ import annotations

import os
from operator import ne

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

# Types whose index we can write and read. Other Postfix types either need no index
# (texthash, regexp, pcre, cidr, inline, static) or are served over the network.
INDEXED_TYPES = ("hash", "cdb", "lmdb")
# Types postmap can compile but this engine does not (btree is only used for caches).
UNSUPPORTED_INDEXED_TYPES = ("btree", "dbm", "sdbm")
# Types that read the source file itself at open time: no index, nothing to compile.
SOURCE_READ_TYPES = ("texthash", "regexp", "pcre", "cidr")

# The start of every rebuild_reason for an index whose records are not the source's.
DIFFERS = "index content differs from source"

_SUFFIXES = {"hash": ".db", "btree": ".db", "cdb": ".cdb", "lmdb": ".lmdb", "dbm": ".pag", "sdbm": ".pag"}


class UnsupportedType(PostfixError):
    """A table type this engine cannot compile."""


def get_format(type_name):
    """Return the format module for a Postfix table type ("hash", "cdb", "lmdb").

    Only the format asked for is imported (a process compiles one type). The imports are
    written out by name, not done with importlib: Ansible ships a module with the
    module_utils its source names, so a computed import would be missing on the target."""
    # pylint: disable=import-outside-toplevel
    if type_name == "hash":
        from ansible_collections.mailops.postfix.plugins.module_utils._db import hash as db_format
    elif type_name == "cdb":
        from ansible_collections.mailops.postfix.plugins.module_utils._db import cdb as db_format
    elif type_name == "lmdb":
        from ansible_collections.mailops.postfix.plugins.module_utils._db import lmdb as db_format
    else:
        raise UnsupportedType(
            "unsupported table type %r: this engine compiles %s" % (type_name, ", ".join(INDEXED_TYPES)))
    return db_format


def stale_by_mtime(source, index):
    """"index missing", "index older than source" or None: the part of staleness that the
    modification times tell. Postfix checks the same at open time and warns "database %s
    is older than source file %s" (dict_db.c, dict_cdb.c, dict_lmdb.c).  A source that
    cannot be stat'ed tells nothing; an index that cannot be stat'ed counts as missing."""
    try:
        index_mtime = os.stat(index).st_mtime
    except OSError:
        return "index missing"
    try:
        if index_mtime < os.stat(source).st_mtime:
            return "index older than source"
    except OSError:
        pass
    return None


def identity(path):
    """(device, inode, mtime, size) of the file at ``path``: a format's Reader opens the file
    again when it changes (a new index renamed into place, as postmap and our writer do)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PostfixError("%s: cannot open: %s" % (path, exc.strerror))
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def index_path(source, type_name):
    """The index file Postfix opens for ``type_name:source`` (e.g. virtual -> virtual.db)."""
    try:
        return source + _SUFFIXES[type_name]
    except KeyError:
        raise UnsupportedType("table type %r has no index file" % (type_name,))


def differences(keys, values, got, volatile=()):
    """(not found, found with another value) for ``got[i]``, the value a format's lookup
    path finds for ``keys[i]`` (None: not found), against ``values[i]``; the values of
    ``volatile`` keys are not compared."""
    if got == values:
        return 0, 0
    missing = got.count(None)
    wrong = sum(map(ne, got, values)) - missing
    for key in volatile:
        if key in keys:
            i = keys.index(key)
            wrong -= got[i] is not None and got[i] != values[i]
    return missing, wrong


def verdict(expected, missing, wrong, stored):
    """None when Postfix finds all ``expected`` keys with their values and the file holds
    ``stored == expected`` records, else a reason with counts for rebuild_reason, e.g.
    "index content differs from source: Postfix finds 7264 of 8000 keys (736 not found)"."""
    if missing or wrong:
        parts = ["%d not found" % missing] if missing else []
        if wrong:
            parts.append("%d with another value" % wrong)
        return "%s: Postfix finds %d of %d keys (%s)" % (DIFFERS, expected - missing - wrong, expected,
                                                         ", ".join(parts))
    if stored != expected:
        return "%s: it holds %d records, the source %d" % (DIFFERS, stored, expected)
    return None


def unreadable(exc):
    """rebuild_reason for an index that cannot be read at all."""
    return "index unreadable: %s" % (exc,)
