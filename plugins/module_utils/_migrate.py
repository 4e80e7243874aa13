# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Move a host off Berkeley DB: every ``hash:`` and ``btree:`` reference of main.cf and of
master.cf ``-o`` overrides becomes ``lmdb:`` or ``cdb:``, proven key by key.

plan -> build -> verify -> rewrite -> reload -> log check -> (restore on failure).

- The references are those the reload pre-flight finds (_postfix.referenced_tables: every
  explicit main.cf parameter, expanded, and every master.cf ``-o`` override, through
  ``proxy:``, ``unionmap:{}`` and ``pipemap:{}``), the maps of ``alias_database``, and the
  compiled-in defaults that still name ``hash:``/``btree:`` once the default types change
  (Postfix 3.7: ``address_verify_map``, ``postscreen_cache_map``; ``alias_maps`` and
  ``alias_database`` when main.cf does not set them): those are set explicitly.
- The rewrite is done on the raw text of each value (``$name`` kept), then proven: the new
  value, expanded, must name the same tables in the same order with only the types changed.
- A table is compiled with our engine (_mapbuild.Table: postmap, or postalias semantics for
  the maps of alias_maps/alias_database); then every record of the old index (read with our
  hash reader; btree with the host's ``postmap -s``/``postalias -s``) must be answered with
  the same value by the new index, through our reader AND through the host's real
  ``postmap -q -`` (all keys on stdin), and the new index must hold nothing else.
- A cache (``*_cache_database``, ``*_cache_map``, ``address_verify_map``, SASL auth caches)
  only changes its reference: the daemons create the new file (tlsmgr(8), verify(8),
  postscreen(8)).
- main.cf and master.cf are replaced atomically, each under its lock; then Postfix is
  reloaded and its log read from before the reload for ``unsupported dictionary type``,
  ``open database`` and ``fatal:``/``panic:`` lines. A failure after the rewrite puts the
  previous main.cf and master.cf back and reloads again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

from ansible_collections.mailops.postfix.plugins.module_utils import _atomic, _db, _maillog, _maincf, _mapbuild
from ansible_collections.mailops.postfix.plugins.module_utils import _mastercf, _postfix
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

OLD_TYPES = ("hash", "btree")
NEW_TYPES = ("lmdb", "cdb")
TABLE, ALIASES, CACHE = "table", "aliases", "cache"
ALIAS_PARAMS = ("alias_maps", "alias_database")
# SASL authentication caches are written by the smtp/lmtp clients through proxywrite
# (postconf(5) smtp_sasl_auth_cache_name); like the other caches they have no source.
EXTRA_CACHE_PARAMS = ("smtp_sasl_auth_cache_name", "lmtp_sasl_auth_cache_name")
# postalias.c: records postalias adds itself; their values depend on when and where the
# index was built, so only their presence is compared.
VOLATILE_KEYS = ("YP_LAST_MODIFIED", "YP_MASTER_NAME")
# What a daemon logs when it cannot open a migrated table (dict_open.c "unsupported
# dictionary type", dict_lmdb.c/dict_cdb.c "open database"), and any fatal error.
LOG_PATTERNS = (re.compile(r"unsupported dictionary type"), re.compile(r"open database"),
                re.compile(r"\b(fatal|panic): "))
# master.c logs this once the configuration is re-read after SIGHUP.
RELOAD_LINE = re.compile(r"\breload -- version \S+, configuration (\S+)")
# Seconds to wait for that line.
RELOAD_TIMEOUT = 10


class Refused(PostfixError):
    """Nothing was changed: ``problems`` says why, one line per table or parameter."""

    def __init__(self, problems, plan=None):
        self.problems = list(problems)
        self.plan = plan
        super().__init__("refusing to migrate, nothing changed: " + "; ".join(self.problems))


def is_cache(name):
    return _postfix.is_cache_parameter(name) or name in EXTRA_CACHE_PARAMS


# -- rewriting a raw value -----------------------------------------------------------------
# A type prefix starts a list element (start, blank, comma), a braced group ("{") or sits
# after a wrapper ("proxy:"): the places dict_open()/maps_create() read a type.
# The name after it is an absolute path or starts with a $parameter (inline:{...} contents
# and other text are left alone).
_TYPE_AT = re.compile(r"(^|[\s,{]|(?<=proxy):)(hash|btree):(?=[/$])", re.I)


def _name_end(raw, i):
    """End of the table name starting at ``raw[i]``: the next blank, comma or unbalanced
    ``}`` (a ``${name}``/``$(name)`` expression is part of the name)."""
    depth = 0
    while i < len(raw):
        c = raw[i]
        if c == "$" and raw[i + 1:i + 2] in ("{", "("):
            depth += 1
            i += 2
            continue
        if depth and c in "})":
            depth -= 1
        elif not depth and (c.isspace() or c in ",}"):
            break
        i += 1
    return i


def retype_raw(raw, new_type, keep=None, expand=None):
    """``raw`` with every ``hash:``/``btree:`` type prefix replaced by ``new_type:``, except
    the tables whose expanded name (``expand`` of the raw name) is in ``keep``."""
    def sub(m):
        if keep:
            name = raw[m.end():_name_end(raw, m.end())]
            if (expand(name) if expand else name) in keep:
                return m.group(0)
        return m.group(1) + new_type + ":"
    return _TYPE_AT.sub(sub, raw)


def _expected_refs(refs, new_type, keep=()):
    return [(new_type if typ in OLD_TYPES and path not in keep else typ, path) for typ, path in refs]


# -- reading an old index ---------------------------------------------------------------
def _strip(b):
    return b[:-1] if b.endswith(b"\0") else b


def read_old_index(typ, path, kind, config_dir):
    """{key bytes: value bytes} of the old index (NULs stripped). hash: our reader; btree:
    the host's ``postmap -s`` / ``postalias -s`` (we have no btree reader)."""
    index = _db.index_path(path, typ)
    if not os.path.exists(index):
        raise PostfixError("index %s does not exist" % index)
    if typ == "hash":
        from ansible_collections.mailops.postfix.plugins.module_utils._db import hash as db_hash
        out = {}
        try:
            for k, v in db_hash.read(index):
                out[_strip(k)] = _strip(v)
        except PostfixError as e:
            raise PostfixError("old index unreadable: %s" % e)
        return out
    tool = _postfix.which("postalias" if kind == ALIASES else "postmap")
    if not tool:
        raise PostfixError("no postmap/postalias to read the btree index %s with" % index)
    argv = [tool, "-c", config_dir, "-s", "%s:%s" % (typ, path)]
    rc, out, err = _run_bytes(argv)
    if rc != 0 or re.search(rb": (fatal|panic|warning): ", err):
        raise PostfixError("old index unreadable: %s" % err.decode("utf-8", "replace").strip())
    # postmap.c/postalias.c: "key<TAB>value" and "key:<TAB>value".
    sep = b":\t" if kind == ALIASES else b"\t"
    records = {}
    for line in out.splitlines():
        k, _s, v = line.partition(sep)
        records[k] = v
    return records


def _run_bytes(argv, data=None):
    try:
        proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                              check=False)
    except OSError as e:
        raise PostfixError("%s: %s" % (argv[0], e))
    return proc.returncode, proc.stdout, proc.stderr


def host_query_all(config_dir, spec, keys):
    """What the host's real ``postmap -q - TYPE:PATH`` answers for every key: {key: value}."""
    postmap = _postfix.which("postmap")
    if not postmap:
        raise PostfixError("postmap not found: the new indexes cannot be checked by the host's Postfix")
    # -f: the keys are asked as stored (postalias's YP_* records are upper case; a folded
    # query would never find them).
    rc, found, err = _postfix.postmap_query([postmap, "-c", config_dir, "-f"], spec, list(keys))
    bad = [ln for ln in err.splitlines() if re.search(r": (fatal|panic|warning): ", ln)]
    if bad or rc not in (0, 1):
        raise PostfixError("%s: postmap -q - failed: %s" % (spec, "; ".join(bad) or "exit %d" % rc))
    return found


def compare(old, new, what, volatile=VOLATILE_KEYS):
    """Problems (at most a few keys named) when ``new`` does not answer ``old`` exactly."""
    vol = set(k.encode() for k in volatile)
    missing = [k for k in old if k not in new]
    wrong = [k for k in old if k in new and k not in vol and new[k] != old[k]]
    extra = [k for k in new if k not in old]
    if not (missing or wrong or extra):
        return None
    parts = []
    for label, keys in (("not found", missing), ("with another value", wrong), ("not in the old index", extra)):
        if keys:
            shown = ", ".join(k.decode("utf-8", "replace") for k in sorted(keys)[:3])
            parts.append("%d %s (%s%s)" % (len(keys), label, shown, ", ..." if len(keys) > 3 else ""))
    return "%s: %s" % (what, "; ".join(parts))


# -- the plan ------------------------------------------------------------------------------
class Migration(object):
    """One migration of ``config_dir`` to ``to`` (tables) and ``cache_type`` (caches)."""

    def __init__(self, config_dir="/etc/postfix", to="lmdb", cache_type="lmdb", keep_old=True, reload=True,
                 dump_missing_sources=False, log_file=None, log_wait=2.0, binary=None):
        if to not in NEW_TYPES:
            raise PostfixError("to must be one of %s, not %r" % (", ".join(NEW_TYPES), to))
        if cache_type not in NEW_TYPES:
            raise PostfixError("cache_type must be one of %s, not %r" % (", ".join(NEW_TYPES), cache_type))
        self.config_dir = config_dir
        self.to = to
        self.cache_type = cache_type
        self.keep_old = keep_old
        self.reload = reload
        self.dump_missing_sources = dump_missing_sources
        self.log_file = log_file
        self.log_wait = log_wait
        self.binary = binary if binary is not None else _postfix.Binary()
        self._config = None
        self._jobs = {}
        self._left = {}
        self.log_checked = None

    def new_type(self, parameter):
        return self.cache_type if is_cache(parameter) else self.to

    def map_types(self):
        """``postconf -c DIR -m``: dynamicmaps.cf is read from this instance's meta_directory."""
        if not self.binary:
            raise PostfixError("postconf not found: cannot tell which table types this Postfix reads")
        rc, out, err = _postfix._run([self.binary.postconf, "-c", self.config_dir, "-m"])
        if rc != 0:
            raise PostfixError("postconf -c %s -m failed: %s" % (self.config_dir, err.strip()))
        return out.split()

    def plan(self, read_old=True):
        """The whole plan (a dict); raises Refused naming every table that cannot be migrated.

        With ``read_old``, every old index is read (kept for verify) and every source parsed."""
        config_dir = self.config_dir
        problems = []
        self._left = {}
        main_path = _postfix.main_cf_path(config_dir)
        master_path = _postfix.master_cf_path(config_dir)
        maincf, config = _postfix.load(config_dir, self.binary)
        mastercf = _mastercf.MasterCf.load(master_path, missing_ok=True)
        main_before = maincf.render()
        master_before = mastercf.render()
        types = self.map_types()
        for want, opt in ((self.to, "to"), (self.cache_type, "cache_type")):
            if want not in types:
                problems.append("%s: %s=%s: this Postfix has no %s table type (postconf -c %s -m lists: %s); "
                                "install it (Debian: postfix-%s)" % (config_dir, opt, want, want, config_dir,
                                                                     " ".join(types), want))
        defaults = self.binary.defaults(config_dir) if self.binary else {}
        refs = []       # one per place a table is named
        main_edits = {}
        # 1. explicit main.cf parameters
        for name in sorted(config.explicit):
            value = config.value(name)
            found = _postfix.table_refs(value)
            old = [r for r in found if r[0] in OLD_TYPES]
            if not old:
                continue
            raw = config.explicit[name]
            keep = self._keep(name, None, old)
            if len(keep) == len(set(p for _t, p in old)):
                continue
            new_raw = retype_raw(raw, self.new_type(name), keep, config.expand)
            main_edits[name] = (raw, new_raw, found)
            for typ, path in (r for r in old if r[1] not in keep):
                refs.append(self._ref(name, None, typ, path, origin="main.cf"))
        # 2. default types: a Berkeley DB default becomes ``to`` / ``cache_type``. A default that
        # is already lmdb or cdb (Debian 14's default_database_type = cdb, Postfix 3.11's
        # default_cache_db_type = lmdb) is left as it is: every untyped alias_database entry,
        # every $default_database_type:PATH value and every postmap/postalias run without a type
        # follow it (postconf(5) default_database_type), and those tables are not Berkeley DB
        # ones this run proves; it is also the type postfix-non-bdb(1) redirects to.
        type_edits = {}
        ddt = config.value("default_database_type") or "hash"
        if ddt in OLD_TYPES:
            type_edits["default_database_type"] = self.to
        if "default_cache_db_type" in defaults and (config.value("default_cache_db_type") or "") in OLD_TYPES:
            type_edits["default_cache_db_type"] = self.cache_type
        # alias_database entries without a type use default_database_type (newaliases).
        if ddt in OLD_TYPES and "alias_database" in config.explicit:
            for tok in _maincf.split_list(config.value("alias_database")):
                if not tok.startswith("/"):
                    continue
                if self._keep("alias_database", None, [(ddt, tok)]):
                    # newaliases gives it default_database_type, which changes: Postfix would
                    # look for the new index nobody built.
                    problems.append("%s: alias_database entry %s has no type and follows default_database_type "
                                    "(%s -> %s), but its source is missing: write %s:%s or restore the source"
                                    % (main_path, tok, ddt, self.to, ddt, tok))
                    continue
                refs.append(self._ref("alias_database", None, ddt, tok, origin="default_database_type"))
        # 3. the new main.cf, then defaults that still name an old type get an explicit value
        newcf = _maincf.MainCf(main_before, main_path)
        newcf.set_many(dict((n, e[1]) for n, e in main_edits.items()))
        if type_edits:
            newcf.set_many(type_edits)
        # A default may name another default ($address_verify_map in proxy_write_maps): repeat
        # until no default set in one pass changes what the others expand to.
        for _pass in range(4):
            newconfig = _maincf.Config(newcf, defaults)
            skipped = []
            added = False
            for name in sorted(defaults):
                if name in config.explicit or name in main_edits:
                    continue
                found = _postfix.table_refs(newconfig.value(name))
                old = [r for r in found if r[0] in OLD_TYPES]
                if not old:
                    continue
                if not is_cache(name) and all(not os.path.exists(p) and not os.path.exists(_db.index_path(p, t))
                                              for t, p in old):
                    skipped.append("%s (default %s): neither source nor index exists; left as it is"
                                   % (name, defaults[name]))
                    continue
                keep = self._keep(name, None, old)
                if len(keep) == len(set(p for _t, p in old)):
                    continue
                raw = defaults[name]
                new_raw = retype_raw(raw, self.new_type(name), keep, newconfig.expand)
                main_edits[name] = (raw, new_raw, _postfix.table_refs(config.value(name)))
                newcf.set_many({name: new_raw})
                added = True
                for typ, path in (r for r in old if r[1] not in keep):
                    refs.append(self._ref(name, None, typ, path, origin="default"))
            if not added:
                break
        newconfig = _maincf.Config(newcf, defaults)
        # 4. master.cf -o overrides
        master_edits = []
        newmaster = _mastercf.MasterCf(master_before, master_path)
        for entry, newentry in zip(mastercf.entries(), newmaster.entries()):
            for idx, name, raw in _mastercf.option_params(entry.argv):
                value = _postfix.service_value(config, entry, raw)
                found = _postfix.table_refs(value)
                old = [r for r in found if r[0] in OLD_TYPES]
                if not old:
                    continue
                keep = self._keep(name, entry.key, old)
                if len(keep) == len(set(p for _t, p in old)):
                    continue
                new_raw = retype_raw(raw, self.new_type(name), keep,
                                     lambda text, entry=entry: _postfix.service_value(config, entry, text))
                newentry.argv[idx] = "%s=%s" % (name, new_raw)
                newentry.edited = True
                master_edits.append((newentry, name, raw, new_raw, found))
                for typ, path in (r for r in old if r[1] not in keep):
                    refs.append(self._ref(name, entry.key, typ, path, origin="master.cf:%d" % entry.lineno))
        # 5. prove the rewrite: same tables, same order, only old types changed (the tables
        # left alone keep theirs)
        keep = set(p for _t, p in self._left)
        nbdb = config.value("non_bdb_migration_level")
        if nbdb and nbdb != "disable":
            # postfix-non-bdb(1): from enable-redirect on, a hash:/btree: table is opened as
            # $default_database_type / $default_cache_db_type - not from the .db left alone.
            for left in self._left.values():
                left["reason"] += ("; with non_bdb_migration_level = %s Postfix does not read this .db: it "
                                   "opens the table as another type" % nbdb)
        if keep:
            # A table left alone must still be named with its old type everywhere; a value that
            # names it through $default_database_type (which changes) would not be.
            left_type = dict((p, t) for t, p in self._left)
            sites = [(name, "%s: parameter %s" % (main_path, name), newconfig.value(name))
                     for name in sorted(set(newconfig.explicit) | set(defaults))]
            for entry in newmaster.entries():
                for _idx, name, raw in _mastercf.option_params(entry.argv):
                    sites.append((name, "%s:%d: %s -o %s" % (master_path, entry.lineno, entry.key, name),
                                  _postfix.service_value(newconfig, entry, raw)))
            for name, where, value in sites:
                for typ, path in _postfix.table_refs(value):
                    if path in left_type and typ != left_type[path] and not is_cache(name):
                        problems.append("%s would name %s:%s, whose source is missing (the table is left alone): "
                                        "write %s:%s there, or restore the source"
                                        % (where, typ, path, left_type[path], path))
        for name, (raw, new_raw, found) in sorted(main_edits.items()):
            got = _postfix.table_refs(newconfig.value(name))
            if got != _expected_refs(found, self.new_type(name), keep):
                problems.append("%s: parameter %s = %s: cannot retype its tables safely (the rewritten value "
                                "names %s); edit it by hand" % (main_path, name, raw, _fmt_refs(got)))
        for newentry, name, raw, new_raw, found in master_edits:
            got = _postfix.table_refs(_postfix.service_value(newconfig, newentry, new_raw))
            if got != _expected_refs(found, self.new_type(name), keep):
                problems.append("%s:%d: %s -o %s=%s: cannot retype its tables safely; edit it by hand"
                                % (master_path, newentry.lineno, newentry.key, name, raw))
        # 6. the tables: one job per (old type, path), kind from where it is named
        tables = {}
        for ref in refs:
            key = (ref["old_type"], ref["path"])
            job = tables.get(key)
            if job is None:
                job = tables[key] = dict(old_type=ref["old_type"], path=ref["path"], new_type=ref["new_type"],
                                         kind=ref["kind"], old_index=ref["old_index"], new_index=ref["new_index"],
                                         source=ref["source"], parameters=[], action=None, records=None)
            if ref["kind"] == ALIASES or (job["kind"] == CACHE and ref["kind"] != CACHE):
                job["kind"] = ref["kind"]
                job["new_type"] = ref["new_type"]
            site = ref["parameter"] if ref["service"] is None else "%s -o %s" % (ref["service"], ref["parameter"])
            if site not in job["parameters"]:
                job["parameters"].append(site)
        for job in tables.values():
            job["new_index"] = _db.index_path(job["path"], job["new_type"])
            problems.extend(self._check_table(job, read_old))
        for ref in refs:
            job = tables[(ref["old_type"], ref["path"])]
            ref.update(kind=job["kind"], new_type=job["new_type"], new="%s:%s" % (job["new_type"], job["path"]),
                       new_index=job["new_index"], action=job["action"])
        main_after = newcf.render()
        master_after = newmaster.render()
        # 7. old indexes of tables already migrated (keep_old: false removes them)
        removable = self._old_leftovers(newconfig, newmaster) if not self.keep_old else []
        plan = dict(
            config_dir=config_dir,
            to=self.to,
            cache_type=self.cache_type,
            references=[dict((k, r[k]) for k in ("parameter", "service", "origin", "old", "new", "source",
                                                 "old_index", "new_index", "kind", "action")) for r in refs],
            tables=[dict((k, v) for k, v in job.items() if k != "records") for _k, job in sorted(tables.items())],
            default_types=dict((n, dict(before=config.value(n) or None, after=v)) for n, v in sorted(type_edits.items())),
            main_cf_params=sorted(set(main_edits) | set(type_edits)),
            master_cf_overrides=["%s -o %s" % (e.key, n) for e, n, _r, _nr, _f in master_edits],
            remove_old=removable,
            skipped=skipped,
            left_alone=[dict(self._left[k], parameters=list(self._left[k]["parameters"]))
                        for k in sorted(self._left)],
            main_cf=dict(path=main_path, before=main_before, after=main_after),
            master_cf=dict(path=master_path, before=master_before, after=master_after),
        )
        self._jobs = tables
        if problems:
            raise Refused(problems, plan)
        return plan

    def _keep(self, parameter, service, old):
        """The paths among ``old`` ([(type, path)] named by ``parameter``) that are left alone:
        tables (not caches) whose source is missing and only the old index exists, without
        ``dump_missing_sources``; each is recorded with the reason."""
        keep = set()
        if is_cache(parameter) or self.dump_missing_sources:
            return keep
        for typ, path in old:
            index = _db.index_path(path, typ)
            if os.path.exists(path) or not os.path.exists(index):
                continue
            keep.add(path)
            site = parameter if service is None else "%s -o %s" % (service, parameter)
            left = self._left.setdefault((typ, path), dict(
                reference="%s:%s" % (typ, path), parameters=[],
                reason="source %s is missing (only the index %s exists); set dump_missing_sources=true to "
                       "write the source from the index and migrate it" % (path, index)))
            if site not in left["parameters"]:
                left["parameters"].append(site)
        return keep

    def _ref(self, parameter, service, typ, path, origin):
        kind = CACHE if is_cache(parameter) else (ALIASES if parameter in ALIAS_PARAMS else TABLE)
        new_type = self.cache_type if kind == CACHE else self.to
        return dict(parameter=parameter, service=service, origin=origin, old_type=typ, path=path,
                    old="%s:%s" % (typ, path), new="%s:%s" % (new_type, path), new_type=new_type,
                    source=None if kind == CACHE else path, old_index=_db.index_path(path, typ),
                    new_index=_db.index_path(path, new_type), kind=kind, action=None)

    def _check_table(self, job, read_old):
        """Decide the job's action; the problems that refuse the migration."""
        what = "%s:%s (%s)" % (job["old_type"], job["path"], ", ".join(job["parameters"]))
        if job["kind"] == CACHE:
            job["source"] = None
            job["action"] = "retype"
            return []
        has_source = os.path.exists(job["path"])
        has_index = os.path.exists(job["old_index"])
        if not has_index:
            if has_source:
                return ["%s: index %s is missing; run %s first (the migration proves the new index against it)"
                        % (what, job["old_index"], "newaliases" if job["kind"] == ALIASES else "postmap")]
            return ["%s: neither the source nor the index %s exists" % (what, job["old_index"])]
        if not has_source and not self.dump_missing_sources:
            return ["%s: source %s is missing (only the index %s exists); set dump_missing_sources=true to write "
                    "the source from the index" % (what, job["path"], job["old_index"])]
        problems = []
        if has_source and _db.stale_by_mtime(job["path"], job["old_index"]):
            # Postfix warns "database ... is older than source file" and serves the old index:
            # the migration proves the new index against what Postfix serves today.
            problems.append("%s: index %s is older than its source; run %s first" % (
                what, job["old_index"], "newaliases" if job["kind"] == ALIASES else "postmap"))
        job["action"] = "compile" if has_source else "dump source, compile"
        if not read_old:
            return problems
        try:
            job["records"] = read_old_index(job["old_type"], job["path"], job["kind"], self.config_dir)
            job["keys"] = len(job["records"])
        except PostfixError as e:
            problems.append("%s: %s" % (what, e))
        if has_source:
            try:
                self._table(job).stored_records()
            except PostfixError as e:
                problems.append("%s: %s" % (what, e))
        return problems

    def _table(self, job):
        if self._config is None:
            self._config = _postfix.load(self.config_dir, self.binary, missing_ok=True)[1]
        config = self._config
        return _mapbuild.Table(job["path"], job["new_type"], kind=_mapbuild.ALIASES if job["kind"] == ALIASES
                               else _mapbuild.TABLE, smtputf8=_mapbuild.smtputf8_enabled(config),
                               hostname=config.value("myhostname"), type_origin="migrate_tables",
                               config_dir=self.config_dir)

    def _old_leftovers(self, newconfig, newmaster):
        """Old ``.db`` files of tables the (new) configuration names with a new type and
        nowhere with an old one."""
        names = set()
        oldrefs = set()
        found = _postfix.referenced_tables(newconfig, mastercf=newmaster)
        for typ, path in _postfix.alias_database_refs(newconfig, newconfig.value("default_database_type") or "hash"):
            found.setdefault((typ, path), {})
        for name in newconfig.defaults:
            if name not in newconfig.explicit:
                for ref in _postfix.table_refs(newconfig.value(name)):
                    found.setdefault(ref, {})
        for typ, path in found:
            if typ in OLD_TYPES:
                oldrefs.add(path)
            elif typ in NEW_TYPES:
                names.add(path)
        out = []
        for path in sorted(names - oldrefs):
            index = path + ".db"
            if os.path.exists(index):
                out.append(index)
        return out

    # -- apply -------------------------------------------------------------------------------
    def run(self, check_mode=False):
        start = time.time()
        plan = self.plan(read_old=True)
        jobs = self._jobs
        result = dict(plan=plan, changed=False, compiled=[], verified=[], removed=[], reloaded=False, log_checked=None,
                      rolled_back=False, rollback_reason=None, log_problems=[], main_cf_changed=False,
                      master_cf_changed=False, left_alone=plan["left_alone"])
        main = plan["main_cf"]
        master = plan["master_cf"]
        rewrite = main["before"] != main["after"] or master["before"] != master["after"]
        result["changed"] = bool(rewrite or plan["remove_old"])
        result["main_cf_changed"] = main["before"] != main["after"]
        result["master_cf_changed"] = master["before"] != master["after"]
        if not result["changed"]:
            result["seconds"] = round(time.time() - start, 3)
            return result
        if self.reload and rewrite:
            # A reload the pre-flight would refuse anyway: say so before anything changes.
            problems, _warnings, _facts = _postfix.preflight(self.config_dir, self.binary)
            if problems:
                raise Refused(["the reload pre-flight fails before the migration: %s" % p for p in problems], plan)
        created = []
        # Check mode proves every table too, compiled into a scratch directory.
        scratch = tempfile.mkdtemp(prefix="mailops-migrate-") if check_mode else None
        try:
            # 1. compile and verify every table (nothing Postfix reads has changed yet)
            for n, key in enumerate(sorted(jobs)):
                job = jobs[key]
                if job["kind"] == CACHE:
                    continue
                t0 = time.time()
                rebuilt = self._prove(job, created, None if scratch is None else os.path.join(scratch, str(n)))
                result["compiled"].append(dict(table="%s:%s" % (job["new_type"], job["path"]), rebuilt=rebuilt,
                                               records=job["keys"]))
                result["verified"].append(dict(table="%s:%s" % (job["new_type"], job["path"]), keys=job["keys"],
                                               seconds=round(time.time() - t0, 3)))
                # Proven: the old records are not needed any more (big tables one at a time).
                job["records"] = None
        except PostfixError as e:
            _remove(created)
            raise Refused([str(e)], plan)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        if check_mode:
            result["seconds"] = round(time.time() - start, 3)
            return result
        # 2. rewrite main.cf and master.cf, reload, check the log
        if rewrite:
            self._rewrite(main, master, result, created, plan)
        # 3. old indexes of migrated tables
        for path in plan["remove_old"]:
            if _atomic.remove(path):
                result["removed"].append(path)
        result["seconds"] = round(time.time() - start, 3)
        return result

    def _prove(self, job, created, scratch=None):
        """Compile ``job``'s new index and verify it; whether it was (re)built. Files made in
        the configuration directory are added to ``created``. With ``scratch`` (check mode) the
        index (and a source dumped from the old index) go to that new directory instead."""
        table = self._table(job)
        if scratch is None:
            if not os.path.exists(job["path"]):
                created.append(job["path"])
                self._dump_source(job, job["path"])
            if not os.path.exists(job["new_index"]):
                created.append(job["new_index"])
            rebuilt = table.ensure()["changed"]
            name = job["path"]
        else:
            os.mkdir(scratch, 0o700)
            name = os.path.join(scratch, os.path.basename(job["path"]))
            if not os.path.exists(job["path"]):
                self._dump_source(job, name)
                table.source = name
            table.index = _db.index_path(name, job["new_type"])
            keys, values, _count, _warnings = table.stored_records()
            table.build(keys, values)
            rebuilt = True
        self.verify(job, table, name)
        return rebuilt

    def verify(self, job, table, name=None):
        """Every record of the old index answered exactly by the new one (``table``'s index,
        for ``name``, else the table's path): our reader (lookup path and full read) and the
        host's ``postmap -q -``."""
        old = job["records"]
        spec = "%s:%s" % (job["new_type"], name or job["path"])
        what = "%s:%s -> %s" % (job["old_type"], job["path"], spec)
        raw = dict((_strip(k), (k, v)) for k, v in table.format.read(table.index))
        stored = dict((k, _strip(v)) for k, (_rk, v) in raw.items())
        problem = compare(old, stored, what + " (new index records)")
        if problem is None:
            # Each record looked up the way Postfix's reader finds it (the format's verify:
            # liblmdb's lookup, cdb_find's probing), with the bytes stored (postalias keeps
            # the YP_* records without the NUL the others have).
            keys = [raw[k][0] for k in old]
            reason = table.format.verify(table.index, keys, [raw[k][1] for k in old],
                                         tuple(raw[k.encode()][0] for k in VOLATILE_KEYS if k.encode() in raw))
            if reason:
                problem = "%s (lookups): %s" % (what, reason)
        if problem is None:
            # postalias stores the YP_* records without the NUL the others have, and a
            # process that found one convention no longer tries the other (dict_db.c,
            # dict_lmdb.c DICT_FLAG_TRY0NULL/TRY1NULL): Postfix never looks them up; our
            # reader checked them above.
            vol = set(k.encode() for k in VOLATILE_KEYS)
            asked = [k for k in old if k not in vol]
            host = host_query_all(self.config_dir, spec, asked)
            rest = dict((k, stored[k]) for k in stored if k not in old or k in vol)
            host.update(rest)
            problem = compare(old, host, what + " (host postmap -q)")
        if problem:
            raise PostfixError(problem)

    def _dump_source(self, job, path):
        """Write the source ``path`` from the old index, values as stored (aliases as ``key: value``)."""
        lines = []
        for k in sorted(job["records"]):
            if job["kind"] == ALIASES and (k == b"@" or k.startswith(b"YP_")):
                continue
            lines.append(k + (b": " if job["kind"] == ALIASES else b" ") + job["records"][k] + b"\n")
        # The old index's mode: a secret table (sasl_passwd.db 0600) keeps its secret.
        try:
            mode = os.stat(job["old_index"]).st_mode & 0o777
        except OSError as e:
            raise PostfixError("%s: cannot stat: %s" % (job["old_index"], e.strerror))
        _atomic.replace_text(path, b"".join(lines), mode=mode)
        # The new index must not be older than its source.
        old = time.time() - 2
        os.utime(path, (old, old))

    def _rewrite(self, main, master, result, created, plan):
        main_path, master_path = main["path"], master["path"]
        with _atomic.locked(main_path), _atomic.locked(master_path):
            # Refuse if someone changed the files since the plan was made.
            for spec in (main, master):
                now = _read_text(spec["path"])
                if now != spec["before"]:
                    _remove(created)
                    raise Refused(["%s changed while the migration ran; nothing changed" % spec["path"]], plan)
            written = []
            try:
                if main["before"] != main["after"]:
                    _atomic.replace_text(main_path, main["after"])
                    written.append((main_path, main["before"]))
                if master["before"] != master["after"]:
                    _atomic.replace_text(master_path, master["after"])
                    written.append((master_path, master["before"]))
                if self.reload:
                    since = time.time()
                    mark = self._log_mark()
                    res = _postfix.reload(self.config_dir, binary=self.binary)
                    result["reloaded"] = res["reloaded"]
                    if res["reloaded"] and mark[0] == "none":
                        # No log to read (a container without syslog or maillog_file): the
                        # key-by-key proof above stands; say the log was not checked.
                        result["log_checked"] = dict(log=None, lines=0, reload_logged=False, skipped=mark[1])
                    elif res["reloaded"]:
                        problems = self.check_log(mark, since)
                        result["log_problems"] = problems
                        result["log_checked"] = self.log_checked
                        if problems:
                            raise PostfixError("the Postfix log after the reload: " + "; ".join(problems))
            except PostfixError as e:
                for path, text in written:
                    _atomic.replace_text(path, text)
                result["rolled_back"] = True
                result["rollback_reason"] = str(e)
                if self.reload:
                    try:
                        result["reloaded_after_rollback"] = _postfix.reload(self.config_dir,
                                                                            binary=self.binary)["reloaded"]
                    except PostfixError as e2:
                        result["rollback_reason"] += "; the reload after restoring failed too: %s" % e2
                _remove(created)
                raise RolledBack(result)

    # -- the log after the reload ----------------------------------------------------------
    def _log_mark(self):
        configured = self.log_file or _maillog.maillog_file(self.config_dir)[0]
        if configured and not configured.startswith("/dev/") and not os.path.exists(configured):
            # postlogd(8) creates maillog_file with its first line.
            return ("file", configured, 0)
        try:
            kind, where, _w = _maillog.resolve(self.log_file, self.config_dir)
        except PostfixError as e:
            if self.log_file:
                raise   # a log the task named must be readable
            return ("none", str(e), None)
        if kind == "file":
            try:
                return (kind, where, os.stat(where).st_size)
            except OSError:
                return (kind, where, 0)
        return (kind, None, None)

    def check_log(self, mark, since):
        """Problem lines Postfix logged since ``mark`` (file offset) / ``since`` (journald):
        waits for master's "reload -- version ..., configuration DIR" line for this
        configuration directory, then ``log_wait`` seconds more."""
        syslog_name = _postfix.load(self.config_dir, self.binary)[1].value("syslog_name") or "postfix"
        ours = re.compile(r"\s%s(/[\w.-]+)?\[\d+\]: " % re.escape(syslog_name))
        config_dir = os.path.realpath(self.config_dir)
        deadline = time.time() + RELOAD_TIMEOUT + self.log_wait
        seen_reload = None
        lines = []
        reader = _LogReader(mark, since)
        while True:
            lines.extend(ln for ln in reader.new_lines() if ours.search(ln))
            if seen_reload is None:
                for ln in lines:
                    m = RELOAD_LINE.search(ln)
                    if m and os.path.realpath(m.group(1)) == config_dir:
                        seen_reload = time.time()
                        break
            if seen_reload is not None and time.time() >= seen_reload + self.log_wait:
                break
            if time.time() >= deadline:
                break
            time.sleep(0.2)
        problems = [ln for ln in lines if any(p.search(ln) for p in LOG_PATTERNS)]
        self.log_checked = dict(log=mark[1] or "journald", lines=len(lines), reload_logged=seen_reload is not None)
        if seen_reload is None:
            problems.append("%s: no reload line for %s logged within %d s"
                            % (mark[1] or "journald", self.config_dir, RELOAD_TIMEOUT))
        return problems


class _LogReader(object):
    """New lines of the mail log at each call: a file read on from the last offset (from the
    start again when it was rotated or truncated), or journald since a time."""

    def __init__(self, mark, since):
        self.kind, self.path, self.offset = mark
        self.since = since
        self.seen = 0
        self.partial = b""

    def new_lines(self):
        if self.kind != "file":
            lines = list(_maillog._journal_lines(self.since, None))  # pylint: disable=protected-access
            new, self.seen = lines[self.seen:], len(lines)
            return new
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:
                    self.offset, self.partial = 0, b""
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise PostfixError("%s: cannot read the mail log: %s" % (self.path, e.strerror))
        self.offset += len(data)
        data = self.partial + data
        # A line still being written is kept for the next call.
        body, _sep, self.partial = data.rpartition(b"\n")
        return body.decode("utf-8", "replace").splitlines() if _sep else []


class RolledBack(PostfixError):
    def __init__(self, result):
        self.result = result
        super().__init__("migration rolled back, previous main.cf and master.cf restored: %s"
                         % result["rollback_reason"])


def _fmt_refs(refs):
    return ", ".join("%s:%s" % r for r in refs) or "no tables"


def _read_text(path):
    """main.cf as bytes, master.cf as text (as the plan holds them); a missing file is empty."""
    data = _atomic.read_bytes(path, missing_ok=True)
    return data if path.endswith("main.cf") else data.decode("utf-8", "surrogateescape")


def _remove(paths):
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def migrate(config_dir="/etc/postfix", to="lmdb", cache_type="lmdb", keep_old=True, reload=True,
            dump_missing_sources=False, log_file=None, log_wait=2.0, check_mode=False, binary=None):
    """The module's entry point: the result dict (the plan included); raises Refused
    (nothing changed) or RolledBack (rewritten, then restored)."""
    return Migration(config_dir, to=to, cache_type=cache_type, keep_old=keep_old, reload=reload,
                     dump_missing_sources=dump_missing_sources, log_file=log_file, log_wait=log_wait,
                     binary=binary).run(check_mode=check_mode)
