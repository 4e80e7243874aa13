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
  - With O(query) or O(dump) nothing is written.
options:
  path:
    description:
      - The table source file, without the index suffix (for example C(/etc/postfix/virtual)).
    type: path
    required: true
  type:
    description:
      - The table type.
      - Default is the type main.cf uses for O(path) (for example C(lmdb) for
        C(virtual_alias_maps = lmdb:/etc/postfix/virtual)), else main.cf's
        C(default_database_type), else C(hash).
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
      - For a table without an index, the host's C(postmap -q) answers.
    type: list
    elements: str
  dump:
    description:
      - Return every record of the index, like C(postmap -s). Nothing is compiled.
    type: bool
    default: false
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

- name: Dump the whole table
  mailops.postfix.postmap:
    path: /etc/postfix/virtual
    dump: true
  register: table
"""

RETURN = r"""
index:
  description: The index file Postfix reads; null for regexp, pcre, cidr and texthash tables.
  returned: always
  type: str
  sample: /etc/postfix/virtual.db
type:
  description: The table type used; RV(type_origin) tells where it came from.
  returned: always
  type: str
  sample: hash
type_origin:
  description: Where the type came from (task, a main.cf parameter, default_database_type, built-in default).
  returned: always
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
records:
  description: Every key and value of the index.
  returned: when O(dump=true)
  type: dict
  sample: {"support@example.tld": "alice, bob"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._atomic import DEFAULT_LOCK_TIMEOUT
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import SOURCE_CHECKED_TYPES, Table


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            type=dict(type="str", choices=["hash", "cdb", "lmdb"] + list(SOURCE_CHECKED_TYPES)),
            config_dir=dict(type="path", default="/etc/postfix"),
            force=dict(type="bool", default=False),
            lock_timeout=dict(type="float", default=DEFAULT_LOCK_TIMEOUT),
            query=dict(type="list", elements="str"),
            dump=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("query", "dump"), ("query", "force"), ("dump", "force")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        table = Table.for_source(p["path"], p["config_dir"], p["type"])
        result = dict(changed=False, index=table.index, type=table.type, type_origin=table.type_origin)
        if p["query"] is not None:
            result["lookups"] = table.query(p["query"])
        elif p["dump"]:
            result["records"] = table.dump()
        else:
            result.update(table.ensure(force=p["force"], check_mode=module.check_mode,
                                       lock_timeout=p["lock_timeout"]))
    except PostfixError as e:
        module.fail_json(msg=str(e))
    for warning in result.get("source_warnings", ()):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
