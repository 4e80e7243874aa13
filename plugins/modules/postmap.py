#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postmap
short_description: Compile, query or dump a Postfix lookup table, in Python
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - The Python equivalent of C(postmap), C(postmap -q) and C(postmap -s).
  - Compiles a lookup table source (virtual, transport, canonical, ...) into the indexed file
    Postfix reads (C(.db) Berkeley DB hash, C(.cdb), C(.lmdb)) byte-compatible with what
    C(postmap) writes, without running C(postmap).
  - Rebuilds only when the index is missing, older than the source, or its records differ
    from what the source compiles to. Records are compared, not file bytes (libdb stamps a
    random file id into every C(.db)).
  - The new index is written to a temporary file beside it, synced and renamed into place
    under a lock, so Postfix never reads a half-written table. An existing index keeps its
    owner, group and mode; a new one gets C(postmap)'s rules (owner of the source, mode 0600
    plus the source's group and other read bits).
  - >-
    A source that others may not read (a hand-made 0600 C(sasl_passwd)) gives every index this
    module writes for it the source's access bits (mode 0600 plus the source's group read bit),
    even when an older, world-readable index exists: real C(postmap) gives a new index those
    bits (its umask is 022 plus the bits the source denies, postmap.c) but leaves an existing
    C(.db) or C(.lmdb) as it was, which is why tutorials tell admins to
    C(chmod 600 sasl_passwd.db) by hand.
  - >-
    Tables without an index (O(type) V(regexp), V(pcre), V(cidr), V(texthash)): compiling
    means checking the source with the host's own Postfix (C(postmap -q KEY TYPE:PATH) with
    C(-c) O(config_dir)); a warning or fatal error about the file fails the task with
    C(path:line: Postfix's message). Such a table is never stale and nothing is written.
    O(query) asks the host's C(postmap -q) (Postfix's own regular expression engine);
    O(dump) lists a texthash table and fails for the others (Postfix has no sequence
    operation for them). A host whose Postfix lacks the type (C(postconf -m)) fails with that.
  - Postfix daemons notice a replaced indexed table by themselves; no reload is needed.
  - >-
    Network tables (C(pgsql:), C(mysql:), C(ldap:), C(sqlite:), C(proxy:...)): O(table) with
    O(query) asks the host's own C(postmap -q - TABLE) (the client plugin the daemons load,
    the same client file) once for all keys. A failed lookup (database down, wrong password,
    bad query: C(postmap) stops with C(fatal: table ...: query error)) fails the task with
    Postfix's text; it is never reported as "not found".
  - >-
    O(compare) answers "does the network table give the same results as my local file?": every
    key of the local table O(path) is asked from the other table with one C(postmap -q -) run,
    and RV(differences) lists each key whose value differs or is missing there.
  - >-
    O(expect) checks several tables in one run (what the M(mailops.postfix.server) role's verify
    step does after a change): each key of each table is looked up as with O(query) and
    RV(mismatches) names every key that is missing or answers another value.
  - With O(query), O(dump), O(compare) or O(expect) nothing is written.
options:
  path:
    description:
      - The table source file, without the index suffix (for example C(/etc/postfix/virtual)).
      - One of O(path) and O(table) is required.
    type: path
  table:
    description:
      - A table as main.cf names it, C(TYPE:NAME), for example
        C(pgsql:/etc/postfix/pgsql-virtual.cf) or C(proxy:pgsql:/etc/postfix/pgsql-virtual.cf),
        asked with O(query) through the host's C(postmap -c CONFIG_DIR -q - TABLE).
      - The host's Postfix must have the type (C(postconf -m); Debian packages C(postfix-pgsql),
        C(postfix-mysql), C(postfix-ldap), C(postfix-sqlite)).
      - A C(proxy:) table is answered by proxymap(8) of a running Postfix (and must be listed in
        its C(proxy_read_maps)); without a running Postfix the task fails at once.
      - Only with O(query).
    type: str
  compare:
    description:
      - Another table, C(TYPE:NAME) as for O(table) (for example
        C(proxy:pgsql:/etc/postfix/pgsql-virtual.cf)), to ask for every key of the local table
        O(path). Returns RV(differences) and RV(compared); never changes anything.
      - The local records are read from the index Postfix reads (like O(dump)), so O(path)
        must be an indexed table (C(hash), C(cdb), C(lmdb)) that is compiled, or a
        C(texthash) table. Keys are as stored (folded); the other table folds queries as
        C(postmap -q) does.
      - Values are compared as text, byte for byte. A database that joins several rows with
        C(,) (pgsql_table(5)) differs from a local C(a, b) value.
    type: str
  type:
    description:
      - The table type.
      - Default is the type main.cf uses for O(path) (for example C(lmdb) for
        C(virtual_alias_maps = lmdb:/etc/postfix/virtual)), else main.cf's
        C(default_database_type), else C(hash).
      - Not with O(table) (its C(TYPE:) says it).
    type: str
    choices: [hash, cdb, lmdb, regexp, pcre, cidr, texthash]
  force:
    description:
      - Rebuild even when the index is current.
    type: bool
    default: false
  query:
    description:
      - Look these keys up in the index, like C(postmap -q), and return RV(lookups).
        Keys are folded as C(postmap -q) folds them. Nothing is compiled.
      - For a table without an index, and for O(table), the host's C(postmap -q) answers.
      - A key that is empty or holds a line break, TAB or NUL is refused with O(table)
        (C(postmap -q -) reads one key a line).
    type: list
    elements: str
  dump:
    description:
      - Return every record of the index, like C(postmap -s). Nothing is compiled.
    type: bool
    default: false
  expect:
    description:
      - Tables and the values their keys must answer, checked in one run; returns RV(mismatches)
        and RV(checked), never fails because of a mismatch. Not with the other options but
        O(config_dir) and O(timeout).
      - A key is looked up as O(query) does it (folded as C(postmap -q) folds it).
    type: list
    elements: dict
    suboptions:
      label:
        description: How messages name the table (default its C(TYPE:PATH) or O(expect[].table)).
        type: str
      path:
        description: A local table's source, as O(path). One of O(expect[].path) and O(expect[].table).
        type: path
      type:
        description: The local table's type, as O(type).
        type: str
        choices: [hash, cdb, lmdb, regexp, pcre, cidr, texthash]
      table:
        description:
          - A table as main.cf names it, as O(table) (network tables, C(proxy:)).
          - Without entries it is asked one key that cannot exist, so that a server that cannot be
            reached, refused credentials or a broken query fail the task.
        type: str
      entries:
        description: Key -> the value it must answer (a list is compared as C(a, b)).
        type: dict
        default: {}
      entries_text:
        description:
          - The same as O(expect[].entries) given as one string, C(KEY<TAB>VALUE) per line (as
            M(mailops.postfix.config)'s C(entries_text)), which Ansible templates and sends at once
            (the M(mailops.postfix.server) role checks its maps this way).
        type: str
      secret_entries:
        description:
          - The same for a table holding passwords; never logged, and a mismatch names the key only.
        type: dict
  timeout:
    description:
      - Seconds to wait for the host's C(postmap -q) with O(table), O(compare) or O(expect); the task fails
        when it does not answer by then (a C(proxy:) table whose proxymap(8) keeps failing;
        C(postmap) retries for ever, the reason is in the mail log).
    type: float
    default: 120
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.lock_timeout
  - mailops.postfix.common.platform_lmdb
attributes:
  check_mode:
    support: full
    description: Reports whether the index would be rebuilt, and why, without writing it.
  diff_mode:
    support: none
    description: The index is a binary file; the source is unchanged by this module.
notes:
  - Duplicate keys are handled as C(postmap) does by default. The first value is kept and a warning names the key.
seealso:
  - module: mailops.postfix.lookup_table
  - module: mailops.postfix.newaliases
  - name: postmap(1)
    description: The Postfix manual page of the command this module replaces.
    link: https://www.postfix.org/postmap.1.html
  - name: regexp_table(5)
    description: The format of Postfix regular expression tables.
    link: https://www.postfix.org/regexp_table.5.html
"""

EXAMPLES = r"""
- name: Compile the virtual alias map when its source changed
  mailops.postfix.postmap:
    path: /etc/postfix/virtual

- name: Compile a transport map as cdb
  mailops.postfix.postmap:
    path: /etc/postfix/transport
    type: cdb

- name: Check that aliases resolve as declared
  mailops.postfix.postmap:
    path: /etc/postfix/virtual
    query:
      - support@example.tld
      - unknown@example.tld
  register: lookup

- name: Show where support@ goes
  ansible.builtin.debug:
    msg: "{{ lookup.lookups['support@example.tld'] }}"

- name: Ask the PostgreSQL table the daemons use
  mailops.postfix.postmap:
    table: pgsql:/etc/postfix/pgsql-virtual.cf
    query:
      - support@example.tld
      - unknown@example.tld
  register: sql

# The tutorial's question: does the network table give the same results as the local file?
- name: Compare every key of the local virtual table with what PostgreSQL answers
  mailops.postfix.postmap:
    path: /etc/postfix/virtual
    compare: proxy:pgsql:/etc/postfix/pgsql-virtual.cf
  register: cmp

- name: Stop when they differ
  ansible.builtin.assert:
    that: cmp.differences | length == 0
    fail_msg: "{{ cmp.differences }}"

- name: Dump the whole table
  mailops.postfix.postmap:
    path: /etc/postfix/virtual
    dump: true
  register: table
"""

RETURN = r"""
table:
  description: The table asked, C(TYPE:NAME), as given in O(table).
  returned: when O(table) is given
  type: str
  sample: pgsql:/etc/postfix/pgsql-virtual.cf
index:
  description: The index file Postfix reads; null for regexp, pcre, cidr and texthash tables.
  returned: when O(path) is given
  type: str
  sample: /etc/postfix/virtual.db
type:
  description:
    - The table type used; RV(type_origin) tells where it came from.
    - With O(table), its type (C(pgsql), or C(proxy:pgsql)).
  returned: always
  type: str
  sample: hash
type_origin:
  description: Where the type came from (task, a main.cf parameter, default_database_type, built-in default).
  returned: when O(path) is given
  type: str
  sample: main.cf virtual_alias_maps
count:
  description: Number of entries the source compiles to.
  returned: when compiling
  type: int
  sample: 3
rebuild_reason:
  description:
    - Why the index was (or in check mode would be) rebuilt; null when it was current.
    - C(index missing), C(index older than source) or C(forced); C(index content differs from source)
      followed by how many keys Postfix finds (real Postfix, looking every key up as it does, would not
      find every entry with its value) or how many records the index holds; C(index unreadable)
      followed by why, for a damaged or truncated index (rebuilt, not an error).
  returned: when compiling
  type: str
  sample: index older than source
source_warnings:
  description: What postmap would warn about (duplicate keys, lines it would skip), with file and line.
  returned: when compiling
  type: list
  elements: str
  sample: ['/etc/postfix/virtual:7: duplicate entry: "support@example.tld"']
lookups:
  description: For each key of O(query), its value, or null when absent.
  returned: when O(query) is given
  type: dict
  sample: {"support@example.tld": "alice, bob", "unknown@example.tld": null}
differences:
  description:
    - With O(compare), each key of the local table whose value in the other table differs;
      C(got) is null when the other table does not have the key. Sorted by key.
    - Secret tables (C(smtp_sasl_password_maps)) show their values here; do not compare them.
  returned: when O(compare) is given
  type: list
  elements: dict
  sample: [{"key": "sales@example.tld", "expected": "bob@example.tld", "got": "carol@example.tld"},
           {"key": "info@example.tld", "expected": "alice@example.tld", "got": null}]
compared:
  description: How many keys of the local table were asked from the other table.
  returned: when O(compare) is given
  type: int
  sample: 1200
mismatches:
  description:
    - >-
      With O(expect), one message per key that is missing (C(LABEL: KEY has no entry (expected
      VALUE))) or answers another value (C(LABEL: KEY resolves to GOT (expected VALUE))); a secret
      table's message names the key only.
  returned: when O(expect) is given
  type: list
  elements: str
  sample: ["/etc/postfix/virtual: sales@example.tld resolves to bob@example.tld (expected carol@example.tld)"]
checked:
  description: With O(expect), each table's label, reference and number of keys looked up.
  returned: when O(expect) is given
  type: list
  elements: dict
  sample: [{"label": "/etc/postfix/virtual", "reference": "lmdb:/etc/postfix/virtual", "keys": 10000}]
records:
  description: Every key and value of the index.
  returned: when O(dump=true)
  type: dict
  sample: {"support@example.tld": "alice, bob"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._atomic import DEFAULT_LOCK_TIMEOUT
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import entries_from_text
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import SOURCE_CHECKED_TYPES, Table
from ansible_collections.mailops.postfix.plugins.module_utils._netquery import NetworkTable, compare


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path"),
            table=dict(type="str"),
            compare=dict(type="str"),
            type=dict(type="str", choices=["hash", "cdb", "lmdb"] + list(SOURCE_CHECKED_TYPES)),
            config_dir=dict(type="path", default="/etc/postfix"),
            force=dict(type="bool", default=False),
            lock_timeout=dict(type="float", default=DEFAULT_LOCK_TIMEOUT),
            query=dict(type="list", elements="str"),
            dump=dict(type="bool", default=False),
            timeout=dict(type="float", default=120.0),
            expect=dict(type="list", elements="dict", options=dict(
                label=dict(type="str"),
                path=dict(type="path"),
                type=dict(type="str", choices=["hash", "cdb", "lmdb"] + list(SOURCE_CHECKED_TYPES)),
                table=dict(type="str"),
                entries=dict(type="dict", default={}),
                entries_text=dict(type="str"),
                # Passwords (smtp_sasl_password_maps): never logged, never in a message.
                secret_entries=dict(type="dict", no_log=True),
            ), mutually_exclusive=[("path", "table"), ("table", "type"),
                                   ("entries", "secret_entries", "entries_text")],
                required_one_of=[("path", "table")]),
        ),
        mutually_exclusive=[("query", "dump"), ("query", "force"), ("dump", "force"), ("path", "table"),
                            ("table", "type"), ("table", "dump"), ("table", "force"), ("table", "compare"),
                            ("compare", "query"), ("compare", "dump"), ("compare", "force"),
                            ("expect", "path"), ("expect", "table"), ("expect", "type"), ("expect", "query"),
                            ("expect", "dump"), ("expect", "force"), ("expect", "compare")],
        required_one_of=[("path", "table", "expect")],
        required_by={"table": ("query",)},
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["expect"] is not None:
            result, warnings = expectations(p)
        elif p["table"] is not None:
            result, warnings = network_query(p)
        else:
            result, warnings = local_table(module, p)
    except PostfixError as e:
        module.fail_json(msg=str(e))
    for warning in list(result.get("source_warnings", ())) + list(warnings):
        module.warn(warning)
    module.exit_json(**result)


def network_query(p):
    """O(table) with O(query): the host's postmap -q - answers. Returns (result, warnings)."""
    net = NetworkTable(p["table"], p["config_dir"], p["timeout"])
    result = dict(changed=False, table=p["table"], type=("proxy:" if net.proxy else "") + net.type)
    result["lookups"] = net.query(p["query"])
    return result, list(net.warnings)


# A key no table holds: asked from a network table that has no expected entries, so that a
# lookup failure (server down, credentials refused, broken query) shows.
PROBE_KEY = "mailops-postfix-probe@nonexistent.invalid"


def expectations(p):
    """O(expect): every key of every table looked up, one postmap run (or index read) per
    table. Returns (result, warnings)."""
    result = dict(changed=False, mismatches=[], checked=[])
    warnings = []
    for spec in p["expect"]:
        secret = spec["secret_entries"] is not None
        entries = spec["secret_entries"] if secret else spec["entries"]
        if spec["entries_text"] is not None:
            entries = entries_from_text(spec["entries_text"], spec["label"] or spec["path"] or spec["table"])
        keys = list(entries)
        if spec["table"] is not None:
            net = NetworkTable(spec["table"], p["config_dir"], p["timeout"])
            try:
                answers = net.query(keys or [PROBE_KEY])
            except PostfixError as e:
                # Named as the caller names the table (the role: its inventory variable).
                raise PostfixError("%s: %s" % (spec["label"], e) if spec["label"] else str(e))
            warnings += net.warnings
            reference = spec["table"]
        else:
            table = Table.for_source(spec["path"], p["config_dir"], spec["type"])
            answers = table.query(keys) if keys else {}
            reference = "%s:%s" % (table.type, spec["path"])
        label = spec["label"] or reference
        for key, value in entries.items():
            want = ", ".join("%s" % v for v in value) if isinstance(value, list) else "%s" % value
            got = answers.get(key)
            if got is None:
                result["mismatches"].append("%s: %s has no entry%s" % (label, key, "" if secret else " (expected %s)" % want))
            elif got != want:
                result["mismatches"].append("%s: %s resolves to %s" % (
                    label, key, "another value (secret map)" if secret else "%s (expected %s)" % (got, want)))
        result["checked"].append(dict(label=label, reference=reference, keys=len(keys)))
    return result, warnings


def local_table(module, p):
    """Compile, query, dump or compare the local table O(path). Returns (result, warnings)."""
    warnings = []
    table = Table.for_source(p["path"], p["config_dir"], p["type"])
    result = dict(changed=False, index=table.index, type=table.type, type_origin=table.type_origin)
    if p["query"] is not None:
        result["lookups"] = table.query(p["query"])
    elif p["compare"] is not None:
        records = table.dump()
        result["differences"], warnings = compare(records, p["compare"], p["config_dir"], p["timeout"])
        result["compared"] = len(records)
    elif p["dump"]:
        result["records"] = table.dump()
    else:
        result.update(table.ensure(force=p["force"], check_mode=module.check_mode,
                                   lock_timeout=p["lock_timeout"]))
    return result, warnings


if __name__ == "__main__":
    main()
