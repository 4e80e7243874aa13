#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: migrate_tables
short_description: Move a Postfix host off Berkeley DB (hash/btree) to lmdb or cdb, proven key by key
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Finds every C(hash:) and C(btree:) reference in main.cf and in master.cf C(-o) overrides,
    also inside C(proxy:), C(unionmap:{...}) and C(pipemap:{...}) and through C($name)
    indirection (the same extractor as the M(mailops.postfix.reload) pre-flight), the maps of
    C(alias_maps) and C(alias_database), and the compiled-in defaults that would still name
    C(hash:) or C(btree:) (Postfix 3.7 - 3.10 C(address_verify_map), C(postscreen_cache_map),
    and C(alias_maps)/C(alias_database) when main.cf does not set them) - those are set explicitly.
  - "A table (anything not a cache) is compiled to the new type with this collection's engine
    (the maps of C(alias_maps)/C(alias_database) with C(postalias) semantics). Then every
    record of the old index (read with the collection's Berkeley DB hash reader; a C(btree:)
    index through the host's C(postmap -s) or C(postalias -s)) must be answered with the same
    value by the new index, through the collection's reader and through the host's real
    C(postmap -q -) with every key on its input; the new index must hold no other record
    (only the values of C(YP_LAST_MODIFIED) and C(YP_MASTER_NAME) may differ)."
  - A cache (C(*_cache_database), C(*_cache_map), C(address_verify_map), the SASL auth cache
    names) only changes its reference; the daemons create the new file.
  - Only then are main.cf and master.cf rewritten (each atomically, under its lock; only the
    type prefixes change, C($name) references are kept), C(default_database_type) set to O(to) when it
    is C(hash) or C(btree) and, on Postfix 3.11 and later, C(default_cache_db_type) to O(cache_type)
    when it is. A default type that is already C(lmdb) or C(cdb) (Debian 14 writes
    C(default_database_type = cdb)) is left as it is, whatever O(to) - the untyped tables and
    C($default_database_type:PATH) values that follow it are not Berkeley DB tables. The module does not
    set C(non_bdb_migration_level) (Postfix 3.11) either way. Postfix is reloaded when it
    runs, and its log read from just before the reload until C(log_wait) seconds after the
    master's C(reload -- version) line, for C(unsupported dictionary type), C(open database),
    C(fatal:) and C(panic:) lines of this instance's C(syslog_name).
  - Refused before any change, naming the table or parameter - O(to) or O(cache_type) not in
    C(postconf -c config_dir -m); a source that does not parse (C(path:line) and the problem); an old
    index that is missing, unreadable, corrupt or older than its source (Postfix serves the old
    index; run C(postmap) or C(newaliases) first); a new index that does not answer exactly like the old one; a value
    whose rewrite would name other tables; with O(reload), a configuration the reload pre-flight
    of M(mailops.postfix.reload) refuses already. The new index files created so far are removed.
  - A failure after the rewrite (the reload's pre-flight, the log check) restores the previous
    main.cf and master.cf, reloads again, removes the new index files the run created, and
    fails with RV(rolled_back=true) and the reason.
  - A table whose source is missing (only its old index exists) is left alone unless
    O(dump_missing_sources) - its C(hash:)/C(btree:) references (also inside a value whose other
    tables move) and its files stay as they are, the other tables are migrated, the run succeeds,
    RV(left_alone) lists it and a warning names it, at every run until it is dealt with. Refused
    instead when the table would follow C(default_database_type), which changes - an
    C(alias_database) entry without a type, a value naming C($default_database_type:PATH).
  - On a migrated host nothing is left to do and nothing is written (C(changed=false)). With
    O(keep_old=false), a later run removes the C(.db) files of tables (and caches) that the
    configuration now names only with the new type.
options:
  to:
    description:
      - The type the tables are moved to.
    type: str
    choices: [lmdb, cdb]
    default: lmdb
  cache_type:
    description:
      - The type the caches are moved to (C(cdb) cannot be written by the daemons; use C(lmdb)).
    type: str
    choices: [lmdb, cdb]
    default: lmdb
  keep_old:
    description:
      - Keep the old C(.db) files. With C(false), the old index files of tables and caches the
        configuration now names with the new type are removed (after a migration, or on a later
        run).
    type: bool
    default: true
  reload:
    description:
      - Reload Postfix after the rewrite, when it runs, and check its log.
    type: bool
    default: true
  dump_missing_sources:
    description:
      - When a table's index exists but its source does not, write the source from the old
        index first (C(key value) lines, C(key) colon C(value) for aliases, values as stored), then migrate it.
        Without it such a table is left alone (RV(left_alone)) and the others are migrated.
    type: bool
    default: false
  log_file:
    description:
      - The Postfix log to check after the reload. Default, as M(mailops.postfix.log_triage) finds
        it - C(maillog_file), else C(/var/log/mail.log) or C(/var/log/maillog), else journald.
    type: path
  log_wait:
    description:
      - Seconds to keep reading the log after the master logged its reload.
    type: float
    default: 2.0
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.platform_lmdb
attributes:
  check_mode:
    support: full
    description:
      - The plan (every reference, each table's source, old and new index and action, the default
        types) and the diff of main.cf and master.cf. Every table is compiled into a temporary directory
        and proven key by key as in a real run (RV(verified)); nothing in O(config_dir) is written.
  diff_mode:
    support: full
    description: main.cf and master.cf before and after.
seealso:
  - module: mailops.postfix.postmap
  - module: mailops.postfix.reload
  - name: postfix-non-bdb(1)
    description: The Postfix 3.11 command that redirects hash/btree references (without proving the new tables).
    link: https://www.postfix.org/postfix-non-bdb.1.html
"""

EXAMPLES = r"""
- name: Show what would move (the plan and the diff)
  mailops.postfix.migrate_tables:
  check_mode: true
  diff: true
  register: plan

- name: Move every hash/btree table to lmdb, proven key by key, reload
  mailops.postfix.migrate_tables:
    to: lmdb

- name: Later, once the host runs well on lmdb, remove the old .db files
  mailops.postfix.migrate_tables:
    keep_old: false

- name: A host whose sources were lost, cdb
  mailops.postfix.migrate_tables:
    to: cdb
    dump_missing_sources: true
"""

RETURN = r"""
plan:
  description: What the migration does (the whole result in check mode).
  returned: always
  type: dict
  contains:
    references:
      description:
        - Each place a C(hash:)/C(btree:) table is named - C(parameter), C(service) (master.cf C(-o)
          overrides, else null), C(origin) (C(main.cf), C(master.cf:LINE), C(default), C(default_database_type)),
          C(old), C(new), C(source) (null for a cache), C(old_index), C(new_index), C(kind)
          (C(table), C(aliases) or C(cache)) and C(action) (C(compile), C(dump source, compile) or C(retype)).
      type: list
      elements: dict
    tables:
      description: One entry per old table (C(old_type), C(path), C(new_type), C(kind), C(source), C(old_index),
        C(new_index), C(parameters), C(action), C(keys) - the records of the old index).
      type: list
      elements: dict
    default_types:
      description: C(default_database_type) and C(default_cache_db_type) changes (C(before), C(after)); only a
        C(hash) or C(btree) default type changes, so on a Debian 14 host this is empty.
      type: dict
    main_cf_params:
      description: The main.cf parameters rewritten or set.
      type: list
      elements: str
    master_cf_overrides:
      description: The master.cf C(-o) overrides rewritten, as C(service/type -o name).
      type: list
      elements: str
    remove_old:
      description: Old index files removed (O(keep_old=false)).
      type: list
      elements: str
    skipped:
      description: Defaults naming old tables that exist nowhere, left as they are.
      type: list
      elements: str
    left_alone:
      description: The tables left alone, as RV(left_alone).
      type: list
      elements: dict
  sample:
    references:
      - parameter: virtual_alias_maps
        service: null
        origin: main.cf
        old: hash:/etc/postfix/virtual
        new: lmdb:/etc/postfix/virtual
        source: /etc/postfix/virtual
        old_index: /etc/postfix/virtual.db
        new_index: /etc/postfix/virtual.lmdb
        kind: table
        action: compile
left_alone:
  description:
    - Tables whose source is missing (only the old index exists), left alone without
      O(dump_missing_sources) - C(reference) (C(hash:PATH) or C(btree:PATH)), the C(parameters)
      naming it (C(service -o name) for a master.cf override) and the C(reason). Each is also
      named in a warning.
  returned: success
  type: list
  elements: dict
  sample:
    - reference: hash:/etc/postfix/virtual
      parameters: [virtual_alias_maps]
      reason: source /etc/postfix/virtual is missing (only the index /etc/postfix/virtual.db exists);
        set dump_missing_sources=true to write the source from the index and migrate it
compiled:
  description: The new indexes (C(table), whether it was (re)built, C(records)).
  returned: success
  type: list
  elements: dict
verified:
  description: The tables proven key by key (C(table), C(keys), C(seconds)); in check mode too.
  returned: success
  type: list
  elements: dict
removed:
  description: Old index files removed.
  returned: success
  type: list
  elements: str
reloaded:
  description: Whether Postfix was reloaded after the rewrite.
  returned: success
  type: bool
log_problems:
  description: The problem lines found in the log after the reload.
  returned: always
  type: list
  elements: str
log_checked:
  description:
    - The log read after the reload (C(log), the C(lines) of this instance read, whether the master's
      C(reload_logged)); null without a reload.
    - When the host has no mail log to read (no O(log_file), no C(maillog_file), no syslog file and
      no journald, as in a bare container) the check is skipped, C(skipped) says why and the task
      warns; the key-by-key proof before the rewrite still holds. A O(log_file) given that cannot be
      read fails the task.
  returned: success
  type: dict
  sample: {log: /var/log/mail.log, lines: 4, reload_logged: true}
rolled_back:
  description: Whether main.cf and master.cf were restored after a failure that followed the rewrite.
  returned: always
  type: bool
rollback_reason:
  description: Why the migration was rolled back.
  returned: always
  type: str
main_cf_changed:
  description: Whether main.cf is (would be) rewritten.
  returned: success
  type: bool
master_cf_changed:
  description: Whether master.cf is (would be) rewritten.
  returned: success
  type: bool
problems:
  description: Why the migration was refused (nothing changed), one line per table or parameter.
  returned: failure
  type: list
  elements: str
seconds:
  description: How long the run took.
  returned: success
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._migrate import Refused, RolledBack, migrate


def _diff(plan):
    out = []
    for name in ("main_cf", "master_cf"):
        spec = plan[name]
        before, after = spec["before"], spec["after"]
        if before != after:
            if isinstance(before, bytes):
                before, after = before.decode("utf-8", "replace"), after.decode("utf-8", "replace")
            out.append(dict(before=before, after=after, before_header=spec["path"], after_header=spec["path"]))
    return out


def _public(plan):
    plan = dict(plan)
    plan.pop("main_cf", None)
    plan.pop("master_cf", None)
    return plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_dir=dict(type="path", default="/etc/postfix"),
            to=dict(type="str", choices=["lmdb", "cdb"], default="lmdb"),
            cache_type=dict(type="str", choices=["lmdb", "cdb"], default="lmdb"),
            keep_old=dict(type="bool", default=True),
            reload=dict(type="bool", default=True),
            dump_missing_sources=dict(type="bool", default=False),
            log_file=dict(type="path"),
            log_wait=dict(type="float", default=2.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        res = migrate(p["config_dir"], to=p["to"], cache_type=p["cache_type"], keep_old=p["keep_old"],
                      reload=p["reload"], dump_missing_sources=p["dump_missing_sources"], log_file=p["log_file"],
                      log_wait=p["log_wait"], check_mode=module.check_mode)
    except Refused as e:
        module.fail_json(msg=str(e), problems=e.problems, plan=_public(e.plan) if e.plan else None,
                         rolled_back=False, rollback_reason=None, log_problems=[])
    except RolledBack as e:
        res = e.result
        module.fail_json(msg=str(e), plan=_public(res["plan"]), rolled_back=True,
                         rollback_reason=res["rollback_reason"], log_problems=res["log_problems"],
                         changed=False)
    except PostfixError as e:
        module.fail_json(msg=str(e), rolled_back=False, rollback_reason=None, log_problems=[])
    skipped = (res.get("log_checked") or {}).get("skipped")
    if skipped:
        module.warn("the Postfix log was not checked after the reload: %s" % skipped)
    for left in res["left_alone"]:
        module.warn("%s (%s) left alone: %s" % (left["reference"], ", ".join(left["parameters"]), left["reason"]))
    diff = _diff(res["plan"]) if res["changed"] and module._diff else []
    res["plan"] = _public(res["plan"])
    if diff:
        res["diff"] = diff
    module.exit_json(**res)


if __name__ == "__main__":
    main()
