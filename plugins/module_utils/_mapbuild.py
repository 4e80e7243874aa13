# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile a table or aliases source into its index the way postmap/postalias do.

This is the shared driver behind the postmap, lookup_table, aliases and newaliases
modules (postmap.c:postmap() and postalias.c:postalias() over mkmap_open()):

- the table type comes from the caller, else from how main.cf references the source
  (``virtual_alias_maps = lmdb:/etc/postfix/virtual``), else ``default_database_type``;
- the records a source compiles to are decided by the source engines (_tablefile,
  _aliasfile) and stored with the NUL convention of the index format (_db); a plain
  compile needs no document (LineDocument.compile), only editing does;
- an index is stale when it is missing, older than its source, or real Postfix would not
  find every record the source compiles to, looking each key up the way its reader does
  (file bytes are no guide: libdb stamps a random file id into every .db and postalias a
  timestamp);
- a rebuild writes a temporary file beside the index and renames it into place under a
  lock (_atomic), so Postfix only ever sees the old index or the new one.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time

from ansible_collections.mailops.postfix.plugins.module_utils import _aliasfile, _atomic, _db, _tablefile
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import fold_key, to_bytes

TABLE = "table"
ALIASES = "aliases"

# postalias.c: a record whose value changes on every build and so never makes an index stale.
_VOLATILE_KEYS = (b"YP_LAST_MODIFIED",)

# aliases(5): targets that run a program, write a file or read a list of addresses from a
# file, with the privileges of the recipient.
UNSAFE_TARGET_KINDS = ("command", "file", "include")


class Table(object):
    """One source file and the index Postfix reads for it."""

    def __init__(self, source, type_name, kind=TABLE, fold=True, smtputf8=True, hostname=None, type_origin="task"):
        if kind not in (TABLE, ALIASES):
            raise ValueError(kind)
        self.source = source
        self.type = type_name
        self.kind = kind
        self.fold = fold
        self.smtputf8 = smtputf8
        self.hostname = hostname or _fqdn()
        self.type_origin = type_origin
        self.format = _db.get_format(type_name)
        self.index = _db.index_path(source, type_name)

    @classmethod
    def for_source(cls, source, config_dir="/etc/postfix", type_name=None, kind=TABLE):
        """Resolve type, SMTPUTF8 folding and myhostname from ``config_dir``/main.cf."""
        config = load_config(config_dir)
        origin = "task"
        if not type_name:
            type_name, origin = resolve_type(config, source)
        return cls(source, type_name, kind=kind, smtputf8=smtputf8_enabled(config),
                   hostname=config.value("myhostname"), type_origin=origin)

    # -- what the source compiles to ----------------------------------------------------
    def parse(self, data):
        engine = _aliasfile if self.kind == ALIASES else _tablefile
        return engine.parse(data, self.source, fold=self.fold, smtputf8=self.smtputf8)

    def stored_records(self, doc=None):
        """(keys, values, count, warnings): what the index must hold for the source (parsed
        as ``doc`` if given, else read and compiled without a document), NUL convention
        applied and, for aliases, postalias's extra records appended (a source entry wins);
        ``count`` is the number of source entries."""
        nul = self.format.NUL_TERMINATED
        if doc is None:
            document = _aliasfile.AliasDocument if self.kind == ALIASES else _tablefile.TableDocument
            with open_source(self.source) as f:
                try:
                    keys, values, warnings = document.compile(f, self.source, fold=self.fold,
                                                              smtputf8=self.smtputf8, nul=nul)
                except OSError as e:
                    raise PostfixError("%s: cannot read: %s" % (self.source, e.strerror))
        else:
            records, warnings = doc.records()
            z = b"\0" if nul else b""
            keys = [k + z for k, _v in records]
            values = [v + z for _k, v in records]
            del records
        count = len(keys)
        if self.kind == ALIASES:
            for key, value in _aliasfile.extra_records(nul, self.hostname, int(time.time())):
                if key not in keys:
                    keys.append(key)
                    values.append(value)
        return keys, values, count, warnings

    # -- the index ------------------------------------------------------------------------
    def stale_reason(self, keys, values):
        """Why the index must be rebuilt to hold ``keys`` and ``values`` (parallel lists of
        stored bytes, unique keys), or None when it is current.

        Current means Postfix finds every key with its value through the format's lookup
        path (the libdb bucket and page search, cdb_find's probing, liblmdb) and the index
        holds nothing else: reading the records back in file order would also accept an
        index whose records Postfix cannot reach. An unreadable index is stale, not an error."""
        reason = _db.stale_by_mtime(self.source, self.index)
        if reason:
            return reason
        return self.format.verify(self.index, keys, values, _VOLATILE_KEYS)

    def build(self, keys, values):
        """Write the records into the index atomically (temp file, fsync, rename); the
        caller holds the source's lock (ensure)."""
        write_columns = getattr(self.format, "write_columns", None)

        def write(tmp):
            if write_columns is not None:
                write_columns(tmp, keys, values)
            else:
                self.format.write(tmp, zip(keys, values))

        _atomic.replace(self.index, write, ref_path=self.source)

    def source_lock(self, check_mode, lock_timeout):
        """The source's lock (at most ``lock_timeout`` seconds' wait), held by a run from its
        read of the source until the source and its index are replaced; check mode changes
        nothing and takes none."""
        return contextlib.nullcontext() if check_mode else _atomic.locked(self.source, lock_timeout)

    def ensure(self, force=False, check_mode=False, doc=None, lock_timeout=_atomic.DEFAULT_LOCK_TIMEOUT):
        """Rebuild the index when stale (or forced); ``doc`` is the parsed source if at hand.

        Waits at most ``lock_timeout`` seconds for the lock. Returns a result dict for a module."""
        # Under the source's lock, so an index is never built from a source another run
        # is replacing.
        with self.source_lock(check_mode, lock_timeout), _no_cyclic_gc():
            keys, values, count, warnings = self.stored_records(doc)
            reason = "forced" if force else self.stale_reason(keys, values)
            if reason and not check_mode:
                self.build(keys, values)
        return dict(changed=bool(reason), index=self.index, type=self.type, count=count,
                    rebuild_reason=reason, source_warnings=warnings)

    def query(self, keys):
        """postmap -q: the value of each key (folded as postmap folds queries), or None."""
        self._require_index()
        return dict((key, decode(self.lookup(fold_key(to_bytes(key, "key"), self.fold, self.smtputf8))))
                    for key in keys)

    def lookup(self, key):
        # dict_db_lookup()/dict_lmdb_lookup(): try the key with a trailing NUL, then without.
        attempts = (key + b"\0", key) if self.format.NUL_TERMINATED else (key, key + b"\0")
        for attempt in attempts:
            value = self.format.lookup(self.index, attempt)
            if value is not None:
                return strip_nul(value)
        return None

    def dump(self):
        """postmap -s: every stored pair, NULs stripped."""
        self._require_index()
        return dict((decode(strip_nul(k)), decode(strip_nul(v))) for k, v in self.format.read(self.index))

    def _require_index(self):
        if not os.path.exists(self.index):
            raise PostfixError("%s: index does not exist (compile %s:%s first)" % (self.index, self.type, self.source))


def manage_entries(table, entries, state="present", exclusive=False, compile_index=True, backup=False,
                   check_mode=False, allow_unsafe_targets=False, lock_timeout=_atomic.DEFAULT_LOCK_TIMEOUT):
    """Edit the entries of ``table``'s source in one pass, write it if it changed, then
    compile the index when stale; wait at most ``lock_timeout`` seconds for another run
    holding the source's lock. Returns a result dict (with a diff) for a module."""
    if exclusive and state != "present":
        raise PostfixError("exclusive applies to state=present only")
    # One lock from the read of the source until both it and its index are replaced: two
    # runs never edit the same old text, so neither loses the other's entries.
    with table.source_lock(check_mode, lock_timeout):
        return _manage_entries(table, entries, state, exclusive, compile_index, backup, check_mode,
                               allow_unsafe_targets, lock_timeout)


def _manage_entries(table, entries, state, exclusive, compile_index, backup, check_mode, allow_unsafe_targets,
                    lock_timeout):
    try:
        before = read_file(table.source)
    except SourceMissing:
        before = b""
    doc = table.parse(before)
    added, updated, removed = [], [], []
    if state == "present":
        for key, value in entries.items():
            if value is None or value == "" or value == []:
                raise PostfixError("%s: %s %r has no value" % (table.source, doc.KEY_WORD, key))
            if table.kind == ALIASES and not allow_unsafe_targets:
                refuse_unsafe_targets(table.source, key, value)
            existed = doc.get(key) is not None
            if doc.set(key, value):
                (updated if existed else added).append(folded(doc, key))
        if exclusive:
            removed = [decode(k) for k in doc.keep_only(list(entries))]
    else:
        removed = [folded(doc, key) for key in entries if doc.remove(key)]
    after = doc.render()
    source_changed = after != before
    result = dict(changed=source_changed, source_changed=source_changed, added=added, updated=updated,
                  removed=removed)
    if source_changed:
        result["diff"] = dict(before=before.decode("utf-8", "replace"), after=after.decode("utf-8", "replace"),
                              before_header=table.source, after_header=table.source)
        if not check_mode:
            backup_file = _atomic.replace_text(table.source, after, backup=backup)
            if backup_file:
                result["backup_file"] = backup_file
    if compile_index:
        built = table.ensure(check_mode=check_mode, doc=doc, lock_timeout=lock_timeout)
        result["changed"] = source_changed or built["changed"]
        result.update(compiled=built["changed"], index=built["index"], type=table.type, count=built["count"],
                      rebuild_reason=built["rebuild_reason"], source_warnings=built["source_warnings"])
    else:
        result.update(compiled=False, index=table.index, type=table.type, count=len(doc.keys()),
                      rebuild_reason=None, source_warnings=doc.warnings)
    return result


def rebuild_alias_databases(config_dir, force=False, check_mode=False, lock_timeout=_atomic.DEFAULT_LOCK_TIMEOUT):
    """newaliases: rebuild each stale map of alias_database (alias_maps is not touched)."""
    config = load_config(config_dir)
    smtputf8 = smtputf8_enabled(config)
    maps = []
    for type_name, path in _postfix().alias_database_refs(config, config.value("default_database_type") or "hash"):
        table = Table(path, type_name, kind=ALIASES, smtputf8=smtputf8, hostname=config.value("myhostname"),
                      type_origin="alias_database")
        result = table.ensure(force=force, check_mode=check_mode, lock_timeout=lock_timeout)
        maps.append(dict(map="%s:%s" % (type_name, path), index=table.index, count=result["count"],
                         rebuild_reason=result["rebuild_reason"], warnings=result["source_warnings"]))
    return maps


def refuse_unsafe_targets(source, name, value):
    """Refuse |command, /file and :include: targets (the caller did not opt in)."""
    for target in _aliasfile.targets(_aliasfile.render_value(value)):
        if target.kind in UNSAFE_TARGET_KINDS:
            raise PostfixError("%s: alias %r has a %s target %r; set allow_unsafe_targets=true to allow it"
                               % (source, name, target.kind, target.text))


# -- configuration --------------------------------------------------------------------------
def load_config(config_dir):
    """main.cf of ``config_dir`` layered over the installed Postfix's defaults."""
    return _postfix().load(config_dir, missing_ok=True)[1]


def resolve_type(config, source):
    """(type, origin): the type main.cf uses for ``source``, else default_database_type,
    else hash; origin tells where the type came from."""
    wanted = os.path.abspath(source)
    for (table_type, path), info in sorted(_postfix().referenced_tables(config).items()):
        if table_type in _db.INDEXED_TYPES and os.path.abspath(path) == wanted:
            return table_type, "main.cf %s" % info["parameters"][0]
    default = config.value("default_database_type")
    if default:
        return default, "default_database_type"
    return "hash", "built-in default"


def smtputf8_enabled(config):
    # casefold.c folds non-ASCII keys only when SMTPUTF8 is on (the default at
    # compatibility_level >= 1); the value may be an expression (Debian 13's default is).
    value = config.value("smtputf8_enable").strip().lower()
    return value in ("yes", "true", "1", "")


@contextlib.contextmanager
def _no_cyclic_gc():
    """Compiling makes millions of objects and no reference cycles; the cyclic collector
    would only walk the growing lists again and again (a quarter of the time at 1M)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _postfix():
    # Imported when needed: a compile given its type and host name reads no main.cf.
    from ansible_collections.mailops.postfix.plugins.module_utils import _postfix as engine  # pylint: disable=import-outside-toplevel
    return engine


def _fqdn():
    import socket  # pylint: disable=import-outside-toplevel
    return socket.getfqdn()


# -- bytes ----------------------------------------------------------------------------------
def strip_nul(b):
    return b[:-1] if b.endswith(b"\0") else b


def decode(b):
    return None if b is None else b.decode("utf-8", "surrogateescape")


def folded(doc, key):
    return decode(doc.fold_key(to_bytes(key, doc.KEY_WORD)))


class SourceMissing(PostfixError):
    pass


def open_source(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise SourceMissing("%s: no such file" % path)
    except OSError as e:
        raise PostfixError("%s: cannot read: %s" % (path, e.strerror))


def read_file(path):
    with open_source(path) as f:
        try:
            return f.read()
        except OSError as e:
            raise PostfixError("%s: cannot read: %s" % (path, e.strerror))
