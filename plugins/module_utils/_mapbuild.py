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
  lock (_atomic), so Postfix only ever sees the old index or the new one;
- regexp, pcre, cidr and texthash tables have no index: their daemons read the source when
  they open the table (dict_regexp_open(), dict_pcre_open(), dict_cidr_open(),
  dict_thash_open() read the whole file then), so a changed source needs ``postfix reload``.
  "Compiling" one means letting the host's own postmap open the new text before it goes live
  (check_source); queries go through the host's ``postmap -q`` (Postfix's regex engine);
- a secret table (smtp_sasl_password_maps) keeps its source and index 0600, owned by root
  when we are root, and no value of it reaches a diff, a warning or an error.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import stat
import tempfile
import time

from ansible_collections.mailops.postfix.plugins.module_utils import _aliasfile, _atomic, _db, _tablefile
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import fold_key, to_bytes

TABLE = "table"
ALIASES = "aliases"

# Types without an index: the daemons read the source itself (see the module docstring).
SOURCE_CHECKED_TYPES = ("regexp", "pcre", "cidr", "texthash")
# The mode of a secret table's source and index.
SECRET_MODE = 0o600
# Looked up when the host's postmap checks a source: any key opens the table, which is what
# makes Postfix parse (and warn about) every line.
_PROBE_KEY = "mailops-postfix-check.invalid"

# postalias.c: a record whose value changes on every build and so never makes an index stale.
_VOLATILE_KEYS = (b"YP_LAST_MODIFIED",)

# aliases(5): targets that run a program, write a file or read a list of addresses from a
# file, with the privileges of the recipient.
UNSAFE_TARGET_KINDS = ("command", "file", "include")


class Table(object):
    """One source file and the index Postfix reads for it."""

    def __init__(self, source, type_name, kind=TABLE, fold=True, smtputf8=True, hostname=None, type_origin="task",
                 secret=False, config_dir=None):
        if kind not in (TABLE, ALIASES):
            raise ValueError(kind)
        self.source = source
        self.type = type_name
        self.kind = kind
        self.fold = fold
        self.smtputf8 = smtputf8
        self.hostname = hostname or _fqdn()
        self.type_origin = type_origin
        self.secret = secret
        self.config_dir = config_dir
        self._reader = None     # lookup(raw key) of the index (lookup())
        # An index Postfix reads, or (regexp, pcre, cidr, texthash) the source itself.
        self.indexed = type_name not in SOURCE_CHECKED_TYPES
        if self.indexed:
            self.format = _db.get_format(type_name)
            self.index = _db.index_path(source, type_name)
        elif kind == ALIASES:
            raise _db.UnsupportedType("aliases cannot be a %s table" % type_name)
        else:
            self.format = None
            self.index = None

    @classmethod
    def for_source(cls, source, config_dir="/etc/postfix", type_name=None, kind=TABLE, secret=False, config=None):
        """Resolve type, SMTPUTF8 folding and myhostname from ``config_dir``/main.cf (or from
        ``config``, a main.cf about to be written, as a _maincf.Config)."""
        config = load_config(config_dir) if config is None else config
        origin = "task"
        if not type_name:
            type_name, origin = resolve_type(config, source, indexed_only=kind == ALIASES)
        return cls(source, type_name, kind=kind, smtputf8=smtputf8_enabled(config),
                   hostname=config.value("myhostname"), type_origin=origin, secret=secret, config_dir=config_dir)

    # -- what the source compiles to ----------------------------------------------------
    def parse(self, data):
        if self.kind == ALIASES:
            return _aliasfile.parse(data, self.source, fold=self.fold, smtputf8=self.smtputf8)
        return _tablefile.parse(data, self.source, fold=self.fold, smtputf8=self.smtputf8,
                                type_name=self.type, secret=self.secret)

    def redacted(self, data, changed=()):
        """``data`` of this (secret) table's source as a diff shows it: values hidden, the
        entries of the folded keys ``changed`` marked."""
        changed = set(to_bytes(k, "key") for k in changed)
        return _tablefile.redacted(data, self.source, self.type, changed)

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

        _atomic.replace(self.index, write, ref_path=self.source, mode=self.index_mode())

    def index_mode(self):
        """The mode a rebuilt index must have, or None for _atomic's rules (an existing index
        keeps its mode, a new one gets postmap's).  A secret table's index is 0600.  A source
        that others may not read gives its index its own access bits (index_mode(): 0600 plus
        the source's group read bit), even when the index exists: postmap(1) creates a new
        index 0644 under the umask 022 | (~source_mode & 077) (postmap.c), so a hand-made 0600
        sasl_passwd gets a 0600 .db, but an old world-readable .db would keep its mode."""
        if self.secret:
            return SECRET_MODE
        try:
            source_mode = os.stat(self.source).st_mode
        except OSError:
            return None
        if source_mode & stat.S_IROTH:
            return None
        return _atomic.index_mode(source_mode)

    def source_lock(self, check_mode, lock_timeout):
        """The source's lock (at most ``lock_timeout`` seconds' wait), held by a run from its
        read of the source until the source and its index are replaced; check mode changes
        nothing and takes none."""
        return contextlib.nullcontext() if check_mode else _atomic.locked(self.source, lock_timeout)

    def ensure(self, force=False, check_mode=False, doc=None, lock_timeout=_atomic.DEFAULT_LOCK_TIMEOUT):
        """Rebuild the index when stale (or forced); ``doc`` is the parsed source if at hand.

        Waits at most ``lock_timeout`` seconds for the lock. Returns a result dict for a module.

        A table without an index is never stale: its source is checked by the host's postmap
        instead (check_source), and the result has ``index`` None."""
        if not self.indexed:
            doc = self.parse(read_file(self.source)) if doc is None else doc
            self.check_source(self.source)
            return dict(changed=False, index=None, type=self.type, count=doc_count(doc), rebuild_reason=None,
                        source_warnings=doc.warnings)
        # Under the source's lock, so an index is never built from a source another run
        # is replacing.
        with self.source_lock(check_mode, lock_timeout), _no_cyclic_gc():
            keys, values, count, warnings = self.stored_records(doc)
            reason = "forced" if force else self.stale_reason(keys, values)
            if reason and not check_mode:
                self.build(keys, values)
        return dict(changed=bool(reason), index=self.index, type=self.type, count=count,
                    rebuild_reason=reason, source_warnings=warnings)

    # -- tables without an index: the host's Postfix reads them ----------------------------
    def _postmap(self):
        """argv start of the host's postmap with -c config_dir; PostfixError when Postfix
        lacks this table type (postconf -m)."""
        engine = _postfix()
        postmap = engine.which("postmap")
        if not postmap:
            raise PostfixError("%s: postmap not found: a %s table is checked and queried by the host's Postfix"
                               % (self.source, self.type))
        types = engine.Binary().map_types()
        if self.type not in types:
            raise PostfixError("%s: this host's Postfix has no %s table type (postconf -m lists: %s); install it "
                               "(Debian: postfix-%s)" % (self.source, self.type, " ".join(types), self.type))
        argv = [postmap]
        if self.config_dir and os.path.exists(os.path.join(self.config_dir, "main.cf")):
            argv += ["-c", self.config_dir]
        return argv

    def check_source(self, path, hide=()):
        """Let the host's postmap open ``path`` (this table's source, or a new text of it in a
        temporary file) as TYPE:path, the way a daemon opens it; raise PostfixError
        ``source:line: <Postfix's text>`` for every warning or fatal error Postfix prints
        about the file (regexp: "warning: regexp map PATH, line N: ...").  ``hide``: values
        replaced by <hidden> in the messages (a secret table)."""
        argv = self._postmap() + ["-q", _PROBE_KEY, "%s:%s" % (self.type, path)]
        _rc, _out, err = _postfix()._run(argv)
        problems = []
        fatal = []
        # "postmap: warning: regexp map /x, line 3: text" (dict_regexp.c, dict_pcre.c,
        # dict_cidr.c), "postmap: warning: /x, line 3: text" (dict_thash.c).
        pattern = re.compile(r"^\S+: (warning|fatal|error|panic): (?:\w+ map )?%s, line (\d+): (.*)$" % re.escape(path))
        for line in err.splitlines():
            m = pattern.match(line)
            if m:
                problems.append("%s:%s: %s" % (self.source, m.group(2), m.group(3)))
            elif path in line and re.search(r": (warning|fatal|error|panic): ", line):
                problems.append("%s: %s" % (self.source, line.split(": ", 1)[-1].replace(path, self.source)))
            elif re.search(r": (fatal|panic): ", line):
                fatal.append(line.split(": ", 1)[-1])
        if fatal and not problems:
            problems.append("%s: cannot check the table with %s: %s"
                            % (self.source, " ".join(argv[:-3]), "; ".join(fatal)))
        if problems:
            message = "\n".join(problems)
            for value in hide:
                if value:
                    message = message.replace(decode(value), "<hidden>")
            # One line per problem, each "path:line: Postfix's text".
            raise PostfixError(message)

    def check_text(self, data, hide=()):
        """check_source() on ``data`` written to a temporary file (mode 0600) beside the
        source (else in the system's temporary directory), removed afterwards."""
        directory = os.path.dirname(os.path.abspath(self.source))
        if not os.path.isdir(directory):
            directory = None
        fd, tmp = tempfile.mkstemp(prefix=".%s.%d." % (os.path.basename(self.source), os.getpid()), suffix=".tmp",
                                   dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            _settled(tmp)
            self.check_source(tmp, hide)
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def query(self, keys):
        """postmap -q: the value of each key (folded as postmap folds queries), or None.
        A table without an index is asked through the host's postmap -q, all keys at once."""
        if not self.indexed:
            return self._host_query(list(keys))
        self._require_index()
        return dict((key, decode(self.lookup(fold_key(to_bytes(key, "key"), self.fold, self.smtputf8))))
                    for key in keys)

    def lookup(self, key):
        # dict_db_lookup()/dict_lmdb_lookup(): try the key with a trailing NUL, then without.
        attempts = (key + b"\0", key) if self.format.NUL_TERMINATED else (key, key + b"\0")
        if self._reader is None:
            # Kept for the next keys (_db: a Reader notices a replaced file).
            self._reader = self.format.Reader(self.index).lookup
        for attempt in attempts:
            value = self._reader(attempt)
            if value is not None:
                return strip_nul(value)
        return None

    def _host_query(self, keys):
        if not os.path.exists(self.source):
            raise PostfixError("%s: no such file" % self.source)
        asked = [to_bytes(key, "key") for key in keys]
        if any(not k or b"\n" in k or b"\r" in k or b"\t" in k for k in asked):
            # postmap -q - reads one key a line and answers KEY<TAB>VALUE.
            raise PostfixError("%s: an empty key or one with a line break or TAB cannot be queried" % self.source)
        rc, found, err = _postfix().postmap_query(self._postmap(), "%s:%s" % (self.type, self.source), asked)
        fatal = [line for line in err.splitlines() if re.search(r": (fatal|panic): ", line)]
        if fatal or rc not in (0, 1):
            raise PostfixError("%s: postmap -q failed: %s" % (self.source, "; ".join(fatal) or "exit %d" % rc))
        return dict((key, decode(found[raw]) if raw in found else None) for key, raw in zip(keys, asked))

    def dump(self):
        """postmap -s: every stored pair, NULs stripped."""
        if self.type == "texthash":
            records, _warnings = self.parse(read_file(self.source)).records()
            return dict((decode(k), decode(v)) for k, v in records)
        if not self.indexed:
            raise PostfixError("%s: a %s table cannot be dumped (Postfix has no sequence operation for it; "
                               "postmap -s refuses it too)" % (self.source, self.type))
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
    # One lock from the read of the source until both it and its index are replaced: two
    # runs never edit the same old text, so neither loses the other's entries.
    with table.source_lock(check_mode, lock_timeout):
        edit = plan_entries(table, entries, state=state, exclusive=exclusive, compile_index=compile_index,
                            check_mode=check_mode, allow_unsafe_targets=allow_unsafe_targets)
        return apply_entries(edit, backup=backup, check_mode=check_mode, lock_timeout=lock_timeout)


class EntriesEdit(object):
    """An edit of a table's source computed but not applied yet (plan_entries): the module
    result so far, the new text, the parsed document it came from."""

    def __init__(self, table, result, doc, after, compile_index, checked):
        self.table, self.result, self.doc, self.after = table, result, doc, after
        self.compile_index = compile_index
        self.checked = checked   # the host's Postfix already opened the new text


def plan_entries(table, entries, state="present", exclusive=False, compile_index=True, check_mode=False,
                 allow_unsafe_targets=False, check_now=False):
    """Read and edit ``table``'s source in memory: a parse error, an entry without a value or
    an unsafe alias target is raised here, before anything is written. A new text of a table
    without an index is opened by the host's Postfix here in check mode or with
    ``check_now`` (else by apply_entries, on the file about to go live). The caller holds the
    source's lock."""
    if exclusive and state != "present":
        raise PostfixError("exclusive applies to state=present only")
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
    if exclusive and not table.indexed and table.type != "texthash":
        # regexp, pcre, cidr: the first match wins, so the declared order is the table's.
        after = doc.ordered(list(entries))
    else:
        after = doc.render()
    source_changed = after != before
    secured = secure_files(table, check_mode=True) if table.secret else []   # applied by apply_entries
    result = dict(changed=source_changed or bool(secured), source_changed=source_changed, added=added,
                  updated=updated, removed=removed)
    if table.kind == TABLE:
        # Daemons read a table without an index only when they open it (see the docstring).
        result["reload_required"] = source_changed and not table.indexed
    if table.secret:
        result["secured"] = [text for text, _before, _after in secured]
    diffs = []
    if source_changed:
        if table.secret:
            shown_before, shown_after = table.redacted(before), table.redacted(after, updated)
        else:
            shown_before, shown_after = before.decode("utf-8", "replace"), after.decode("utf-8", "replace")
        diffs.append(dict(before=shown_before, after=shown_after, before_header=table.source,
                          after_header=table.source))
    for text, old, new in secured:
        path = text.split(": ", 1)[0]
        diffs.append(dict(before=old + "\n", after=new + "\n", before_header=path + " (attributes)",
                          after_header=path + " (attributes)"))
    if diffs:
        result["diff"] = diffs[0] if len(diffs) == 1 else diffs
    checked = source_changed and compile_index and not table.indexed and (check_mode or check_now)
    if checked:
        table.check_text(after, doc_values(doc) if table.secret else ())
    return EntriesEdit(table, result, doc, after, compile_index, checked)


def apply_entries(edit, backup=False, check_mode=False, lock_timeout=_atomic.DEFAULT_LOCK_TIMEOUT):
    """Write the source ``edit`` computed (atomically; a table without an index is first
    opened by the host's Postfix) and compile the index when stale. Returns the result."""
    table, result, doc, after, compile_index = edit.table, edit.result, edit.doc, edit.after, edit.compile_index
    hide = doc_values(doc) if table.secret else ()
    if table.secret and not check_mode:
        secure_files(table, check_mode=False)   # before the entries are written
    if result["source_changed"] and not check_mode:
        check = compile_index and not table.indexed and not edit.checked
        backup_file = write_source(table, after, backup=backup, check=check, hide=hide)
        if backup_file:
            result["backup_file"] = backup_file
    if compile_index and table.indexed:
        built = table.ensure(check_mode=check_mode, doc=doc, lock_timeout=lock_timeout)
        result["changed"] = result["changed"] or built["changed"]
        result.update(compiled=built["changed"], index=built["index"], type=table.type, count=built["count"],
                      rebuild_reason=built["rebuild_reason"], source_warnings=built["source_warnings"])
    else:
        result.update(compiled=False, index=table.index, type=table.type, count=doc_count(doc),
                      rebuild_reason=None, source_warnings=doc.warnings)
    return result


def write_source(table, data, backup=False, check=False, hide=()):
    """Replace ``table``'s source with ``data`` atomically (keeping its attributes; a new
    secret source is created 0600).  With ``check``, the host's Postfix opens the temporary
    file first (Table.check_source) and nothing is written (no backup either) when it
    refuses it.  Returns the backup's path, if one was made."""
    made = []

    def fill(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
        if check:
            _settled(tmp)
            table.check_source(tmp, hide)
            os.utime(tmp, None)
        if backup and os.path.exists(table.source):
            made.append(_atomic.backup_copy(table.source))

    _atomic.replace(table.source, fill, mode=SECRET_MODE if table.secret and not os.path.exists(table.source) else None)
    return made[0] if made else None


def secure_files(table, check_mode):
    """A secret table's source and index: tighten a mode that lets group or others in to
    0600 and, when we run as root, give a file owned by another user to root (its group
    kept).  Returns (what changed, attributes before, after) for each change; in check mode
    nothing is changed."""
    changes = []
    root = os.geteuid() == 0
    for path in (table.source, table.index):
        if path is None:
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise PostfixError("%s: cannot stat: %s" % (path, e.strerror))
        mode = stat.S_IMODE(st.st_mode)
        new_mode = SECRET_MODE if mode & 0o077 else mode
        new_uid = 0 if root and st.st_uid != 0 else st.st_uid
        if (new_mode, new_uid) == (mode, st.st_uid):
            continue
        old = "mode %04o owner %d" % (mode, st.st_uid)
        new = "mode %04o owner %d" % (new_mode, new_uid)
        changes.append(("%s: %s -> %s (secret table)" % (path, old, new), old, new))
        if not check_mode:
            try:
                if new_uid != st.st_uid:
                    os.chown(path, new_uid, -1)
                os.chmod(path, new_mode)
            except OSError as e:
                raise PostfixError("%s: cannot secure: %s" % (path, e.strerror))
    return changes


def doc_count(doc):
    """Entries of a source: the records, plus those inside if/endif blocks of a pattern table."""
    return len(doc.keys()) + len(getattr(doc, "guarded", ()))


def doc_values(doc):
    return [v for v in doc._values if v is not None]  # pylint: disable=protected-access


def _settled(path):
    """Date a just-written temporary file back two seconds: dict_thash_open() reads a file
    modified in the last second again and again until it settles."""
    old = time.time() - 2
    os.utime(path, (old, old))


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


def resolve_type(config, source, indexed_only=False):
    """(type, origin): the type main.cf uses for ``source`` (an indexed one, or also regexp,
    pcre, cidr, texthash unless ``indexed_only``), else default_database_type, else hash;
    origin tells where the type came from."""
    wanted = os.path.abspath(source)
    usable = _db.INDEXED_TYPES if indexed_only else _db.INDEXED_TYPES + SOURCE_CHECKED_TYPES
    for (table_type, path), info in sorted(_postfix().referenced_tables(config).items()):
        if table_type in usable and os.path.abspath(path) == wanted:
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
    return _atomic.read_bytes(path, missing_error=SourceMissing)
