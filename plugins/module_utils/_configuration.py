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
"""

from __future__ import annotations

import contextlib
import os
import stat

from ansible_collections.mailops.postfix.plugins.module_utils import _atomic
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import (
    ALIASES, TABLE, Table, apply_entries, plan_entries,
)
from ansible_collections.mailops.postfix.plugins.module_utils import _maincf, _postfix
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
        return given if given is not None else (self.spec.get("entries") or {})


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
    gone = [p for p in (part.path, part.table.index if part.table.indexed else None) if p and os.path.lexists(p)]
    if not check_mode:
        for path in gone:
            _atomic.remove(path)
    return gone


def apply(config_dir, tables=(), aliases=None, params=None, params_absent=(), services=(), backup=False,
          check_mode=False, lock_timeout=_atomic.DEFAULT_LOCK_TIMEOUT):
    """Bring ``tables`` (dicts as the config module's options), ``aliases``, main.cf
    (``params`` set, ``params_absent`` removed) and master.cf (``services``) to the declared
    state. Returns the module result: one entry per part, ``reload_required`` when main.cf,
    master.cf or a table without an index changed (or a table was removed), and one diff list."""
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
    maincf, config = _postfix.load(config_dir, missing_ok=True)
    maincf.set_many(params)
    maincf.remove_many(params_absent)
    config = _maincf.Config(maincf, config.defaults)
    parts = [_Part(t, TABLE, config_dir, config) for t in tables]
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
        # main.cf and master.cf are judged now on the files as they are (their edits are
        # applied after the tables; edit_main_cf and edit_master_cf read them again then).
        main_plans = [(state, names) for state, names in (("present", params), ("absent", params_absent)) if names]
        for state, names in main_plans:
            edit_main_cf(config_dir, names, state=state, check_mode=True)
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
        main_cf = dict(changed=False, changed_params=[], removed_params=[], restart_params=[])
        for state, names in main_plans:
            res = edit_main_cf(config_dir, names, state=state, backup=backup, check_mode=check_mode,
                               lock_timeout=lock_timeout)
            if res["changed"]:
                main_cf["changed"] = True
                main_cf["changed_params" if state == "present" else "removed_params"] += res["changed_params"]
                main_cf["restart_params"] += res["restart_params"]
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
    for part in parts:
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
