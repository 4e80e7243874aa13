# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup tables, an aliases file, main.cf and master.cf brought to a declared state in one
run (the config module): what the lookup_table, aliases, postmap, postconf and master_cf
modules do one file at a time, through the same engines, in an order that keeps Postfix
consistent at every moment:

1. plan: every file is read, parsed and edited in memory, and main.cf and master.cf edits
   are checked (address classes, service fields); a pattern table's new text is opened by
   the host's Postfix. Any refusal is raised here, before any file changes.
2. tables and aliases: sources written, indexes compiled (only when stale), modes set.
3. main.cf, then master.cf: only now may they name a new index or a new table type, which
   exists by then (a new smtpd reads main.cf when it starts, reload or not).
4. tables declared absent: their source and index removed, after main.cf and master.cf
   stopped naming them.

A table of a database (pgsql, mysql, ldap, sqlite) is its client file: written in step 2 with
the lookup_client engine (the role owns it: parameters not declared are removed), its data
never touched.
"""

from __future__ import annotations

import contextlib
import os
import stat

from ansible_collections.mailops.postfix.plugins.module_utils import _atomic
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import entries_from_text
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import (
    ALIASES, TABLE, Table, apply_entries, plan_entries,
)
from ansible_collections.mailops.postfix.plugins.module_utils import _lookupclient, _maincf, _postfix
from ansible_collections.mailops.postfix.plugins.module_utils._mastercf import edit_master_cf
from ansible_collections.mailops.postfix.plugins.module_utils._postfix import edit_main_cf


def parse_mode(value, where):
    """An octal mode given as a string ('0640') or an int as YAML reads 0640; None stays None."""
    if value is None:
        return None
    try:
        mode = int(value, 8) if isinstance(value, str) else int(value)
    except ValueError:
        raise PostfixError("%s: mode %r is not an octal number" % (where, value))
    if not 0 <= mode <= 0o7777:
        raise PostfixError("%s: mode %r is out of range" % (where, value))
    return mode


class _Part(object):
    """One table (or the aliases file) of the run: its engine object and its planned edit."""

    def __init__(self, spec, kind, config_dir, config):
        self.spec, self.kind = spec, kind
        self.path = spec["path"]
        self.absent = spec.get("state") == "absent"
        self.mode = parse_mode(spec.get("mode"), self.path)
        self.secret = spec.get("secret_entries") is not None or bool(spec.get("secret"))
        self.table = Table.for_source(self.path, config_dir, spec.get("type"), kind=kind, secret=self.secret,
                                      config=config)
        self.edit = None

    @property
    def entries(self):
        given = self.spec.get("secret_entries")
        if given is not None:
            return given
        text = self.spec.get("entries_text")
        if text is not None:
            return entries_from_text(text, self.path)
        return self.spec.get("entries") or {}


class _ClientPart(object):
    """A table of a database: its client file (pgsql_table(5), mysql_table(5), ldap_table(5),
    sqlite_table(5)), written whole with the lookup_client engine."""

    kind = "client"

    def __init__(self, spec):
        self.spec = spec
        self.path = spec["path"]
        self.absent = spec.get("state") == "absent"
        mode = parse_mode(spec.get("mode"), self.path)
        self.mode = _lookupclient.DEFAULT_MODE if mode is None else mode

    def edit(self, check_mode, backup=False, lock_timeout=None):
        spec = self.spec
        if spec.get("entries") or spec.get("secret_entries") or spec.get("entries_text"):
            raise PostfixError("%s: a %s table's entries are in its database; give its client parameters"
                               " (params, secret_params)" % (self.path, spec["type"]))
        res = _lookupclient.edit(self.path, spec["type"], params=spec.get("params") or {},
                                 secret_params=spec.get("secret_params") or {}, exclusive=True,
                                 backup=backup, check_mode=check_mode, mode=self.mode, lock_timeout=lock_timeout)
        # proxymap(8) and every daemon that opened the table keep the old client settings until
        # they restart: a changed client file is applied by a reload.
        out = dict(path=self.path, type=spec["type"], changed=res["changed"], changed_params=res["changed_params"],
                   attributes_changed=res["attributes_changed"], reload_required=res["changed"])
        if res.get("backup_file"):
            out["backup_file"] = res["backup_file"]
        diff = None
        if res["changed"]:
            diff = dict(before=res["before"], after=res["after"], before_header=self.path,
                        after_header=self.path + (" (created)" if res["created"] else ""))
        return out, diff, res["warnings"]


def _unproxied(name):
    """A table name without its proxy: prefixes (proxymap.c strips every one)."""
    while name.startswith("proxy:"):
        name = name[len("proxy:"):]
    return name


def _proxy_read_maps(config, wanted):
    """The proxy_read_maps value that also allows the ``wanted`` tables (TYPE:NAME, with or
    without proxy:), or None when the current one already does. proxymap(8) may open the
    proxy:-prefixed entries of the expanded value, prefix removed (post_jail_init() in
    proxymap.c ignores the others)."""
    allowed = set(_unproxied(name) for name in _maincf.split_list(config.value("proxy_read_maps"))
                  if name.startswith("proxy:"))
    missing = []
    for name in map(_unproxied, wanted):
        if name not in allowed and name not in missing:
            missing.append(name)
    if not missing:
        return None
    current = config.raw("proxy_read_maps") or ""
    return " ".join([current.strip()] + ["proxy:" + name for name in missing]).strip()


def _mode_change(path, mode):
    """(before, after) text of a mode change ``path`` needs, or None."""
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PostfixError("%s: cannot stat: %s" % (path, e.strerror))
    if current == mode:
        return None
    return "mode %04o" % current, "mode %04o" % mode


def _chmod(path, mode):
    try:
        os.chmod(path, mode)
    except OSError as e:
        raise PostfixError("%s: cannot set mode: %s" % (path, e.strerror))


def _attribute_diff(path, change):
    return dict(before=change[0] + "\n", after=change[1] + "\n", before_header=path + " (attributes)",
                after_header=path + " (attributes)")


def _diffs(result):
    diff = result.get("diff")
    return [] if diff is None else (diff if isinstance(diff, list) else [diff])


def _plan_part(part, check_mode):
    """The edit of one table or aliases file, with everything that could refuse it done."""
    spec, table = part.spec, part.table
    part.edit = plan_entries(table, part.entries, exclusive=spec.get("exclusive", False),
                             compile_index=spec.get("compile", True), check_mode=check_mode,
                             allow_unsafe_targets=spec.get("allow_unsafe_targets", False), check_now=True)
    result = part.edit.result
    result["path"] = part.path
    if not os.path.exists(part.path) and not result["source_changed"]:
        # A declared table without entries still gets its (empty) source: main.cf names it,
        # and postmap needs a source to compile.
        result.update(changed=True, source_changed=True, created=True)
        result["diff"] = _diffs(result) + [dict(before="", after="", before_header=part.path + " (absent)",
                                                after_header=part.path + " (created, empty)")]
    if part.mode is not None:
        moded = [(p, _mode_change(p, part.mode)) for p in (part.path, table.index) if p]
        moded = [(p, c) for p, c in moded if c]
        if moded:
            result["changed"] = True
            result["mode_changed"] = [p for p, _c in moded]
            result["diff"] = _diffs(result) + [_attribute_diff(p, c) for p, c in moded]


def _apply_part(part, backup, check_mode, lock_timeout):
    edit, table = part.edit, part.table
    if not check_mode and part.mode is not None:
        # The mode asked for is set before the entries are written (a new source is created
        # empty with it), so they never sit in a file with wider permissions.
        if os.path.exists(part.path):
            _chmod(part.path, part.mode)
        else:
            _atomic.replace(part.path, lambda tmp: None, mode=part.mode)
    result = apply_entries(edit, backup=backup, check_mode=check_mode, lock_timeout=lock_timeout)
    if not check_mode and part.mode is not None and table.index and os.path.exists(table.index):
        if _mode_change(table.index, part.mode):
            _chmod(table.index, part.mode)   # an existing index keeps its mode when rebuilt
    return result


def _remove_table(part, check_mode):
    """Source and index of a table declared absent; returns the paths removed (or that would be)."""
    index = part.table.index if part.kind != "client" and part.table.indexed else None
    gone = [p for p in (part.path, index) if p and os.path.lexists(p)]
    if not check_mode:
        for path in gone:
            _atomic.remove(path)
    return gone


def unmet_expectations(info, expect):
    """What of ``expect`` (the config module's option of that name) the host, as ``info``
    (_postfix.host_info) shows it, does not meet: one line each, empty when all holds."""
    if "msg" in info:
        return ["Postfix cannot be read: %s" % info["msg"]]
    out = []
    want = expect.get("default_database_type")
    if want and info["default_database_type"] != want:
        out.append("default_database_type is %s, not %s" % (info["default_database_type"], want))
    missing = sorted(set(expect.get("map_types") or ()) - set(info["map_types"]))
    if missing:
        out.append("table types not in postconf -m: %s" % ", ".join(missing))
    if expect.get("python_lmdb") and not info["python_lmdb"]:
        out.append("the Python lmdb binding is not installed")
    kinds = set(expect.get("no_tables_of_type") or ())
    named = ["%s:%s" % (t["type"], t["path"]) for t in info["tables"] if t["type"] in kinds]
    if named:
        out.append("main.cf or master.cf names %s" % ", ".join(named))
    return out


def apply(config_dir, tables=(), aliases=None, params=None, params_absent=(), services=(), backup=False,
          check_mode=False, lock_timeout=_atomic.DEFAULT_LOCK_TIMEOUT, proxy_read=(), binary=None):
    """Bring ``tables`` (dicts as the config module's options), ``aliases``, main.cf
    (``params`` set, ``params_absent`` removed) and master.cf (``services``) to the declared
    state; ``proxy_read`` tables (TYPE:NAME) are added to proxy_read_maps unless it allows them
    already. Returns the module result: one entry per part, ``reload_required`` when main.cf,
    master.cf, a client file or a table without an index changed (or a table was removed),
    and one diff list. ``binary``: the _postfix.Binary to ask (its postconf -d is read once)."""
    params = dict(params or {})
    params_absent = list(params_absent or [])
    both = sorted(set(params) & set(params_absent))
    if both:
        raise PostfixError("main.cf parameters both set and removed: %s" % ", ".join(both))
    paths = [t["path"] for t in tables] + ([aliases["path"]] if aliases else [])
    twice = sorted(set(p for p in paths if paths.count(p) > 1))
    if twice:
        raise PostfixError("files declared more than once: %s" % ", ".join(twice))
    # The tables are compiled as Postfix will read them: with main.cf as this run leaves it
    # (myhostname goes into an alias database's YP_MASTER_NAME, smtputf8_enable decides how keys
    # fold, main.cf may name a table's type).
    maincf, config = _postfix.load(config_dir, binary, missing_ok=True)
    maincf.set_many(params)
    maincf.remove_many(params_absent)
    config = _maincf.Config(maincf, config.defaults)
    if proxy_read:
        if "proxy_read_maps" in params_absent:
            raise PostfixError("proxy_read_maps is removed, yet tables are to be read through proxymap")
        value = _proxy_read_maps(config, proxy_read)
        if value is not None:
            params["proxy_read_maps"] = value
            maincf.set_many({"proxy_read_maps": value})
            config = _maincf.Config(maincf, config.defaults)
    clients = [_ClientPart(t) for t in tables if t.get("type") in _lookupclient.TYPES]
    parts = [_Part(t, TABLE, config_dir, config) for t in tables if t.get("type") not in _lookupclient.TYPES]
    if aliases:
        parts.append(_Part(aliases, ALIASES, config_dir, config))
    present = [p for p in parts if not p.absent]
    result = dict(changed=False, tables=[], removed_files=[], reload_required=False, restart_required=False)
    with contextlib.ExitStack() as locks:
        # One lock per source from its read until it and its index are replaced (the order
        # is fixed, so two runs never wait on each other crosswise).
        for part in sorted(present, key=lambda p: p.path):
            locks.enter_context(part.table.source_lock(check_mode, lock_timeout))
        for part in present:
            _plan_part(part, check_mode)
        for client in clients:
            if not client.absent:
                client.edit(check_mode=True)
        # main.cf and master.cf are judged now on the files as they are (their edits are
        # applied after the tables; edit_main_cf and edit_master_cf read them again then).
        # Set and removed in one edit: judged as a whole (a domain moving between address
        # classes) and written once.
        main_edit = bool(params or params_absent)
        if main_edit:
            edit_main_cf(config_dir, params, remove=params_absent, check_mode=True)
        if services:
            edit_master_cf(config_dir, services, check_mode=True)

        diffs = []
        for part in present:
            part_result = _apply_part(part, backup, check_mode, lock_timeout)
            diffs += _diffs(part_result)
            part_result.pop("diff", None)
            if part.kind == ALIASES:
                result["aliases"] = part_result
            else:
                result["tables"].append(part_result)
            result["reload_required"] |= bool(part_result.get("reload_required"))
        for client in clients:
            if not client.absent:
                client_result, diff, warnings = client.edit(check_mode, backup=backup, lock_timeout=lock_timeout)
                result["tables"].append(client_result)
                result.setdefault("warnings", []).extend(warnings)
                result["reload_required"] |= client_result["reload_required"]
                if diff:
                    diffs.append(diff)
        main_cf = dict(changed=False, changed_params=[], removed_params=[], restart_params=[])
        if main_edit:
            res = edit_main_cf(config_dir, params, remove=params_absent, backup=backup, check_mode=check_mode,
                               lock_timeout=lock_timeout)
            if res["changed"]:
                main_cf.update(changed=True, changed_params=res["changed_params"],
                               removed_params=res["removed_params"], restart_params=res["restart_params"])
                diffs.append(dict(before=res["before"].decode("utf-8", "replace"),
                                  after=res["after"].decode("utf-8", "replace"),
                                  before_header=res["path"], after_header=res["path"]))
        main_cf["restart_required"] = bool(main_cf["restart_params"])
        result["main_cf"] = main_cf
        master_cf = dict(changed=False, changed_services=[])
        if services:
            res = edit_master_cf(config_dir, services, backup=backup, check_mode=check_mode,
                                 lock_timeout=lock_timeout)
            master_cf.update(changed=res["changed"], changed_services=res["changed_services"])
            if res["changed"]:
                diffs.append(dict(before=res["before"], after=res["after"], before_header=res["path"],
                                  after_header=res["path"]))
        result["master_cf"] = master_cf
    for part in parts + clients:
        if part.absent:
            gone = _remove_table(part, check_mode)
            result["removed_files"] += gone
            diffs += [dict(before=p + "\n", after="", before_header=p, after_header=p + " (removed)") for p in gone]
    result["reload_required"] |= main_cf["changed"] or master_cf["changed"] or bool(result["removed_files"])
    result["restart_required"] = main_cf["restart_required"]
    result["changed"] = (any(t["changed"] for t in result["tables"]) or result.get("aliases", {}).get("changed", False)
                         or result["reload_required"])
    if diffs:
        result["diff"] = diffs
    return result
