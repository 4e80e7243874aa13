#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lookup_table
short_description: Manage entries of a Postfix lookup table source and compile it
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Adds, changes or removes entries of a Postfix lookup table source file in the
    C(postmap) input format (virtual, transport, canonical, sender_dependent_relayhost, ...),
    then compiles the index Postfix reads, in Python, like M(mailops.postfix.postmap).
  - Lossless. Lines of entries that do not change, comments and blank lines stay byte for
    byte; a changed entry is rewritten in place (all its continuation lines); new entries are
    appended at the end.
  - Keys are matched as C(postmap) folds them (ASCII lower-case; full Unicode case folding of
    non-ASCII keys when SMTPUTF8 is on), so C(Support@Example.TLD) and C(support@example.tld)
    are the same entry.
  - One call handles the whole table, however many entries.
  - The source is replaced atomically (temporary file beside it, fsync, rename) keeping its
    owner, group and mode. Nothing is written when the source has a syntax error.
options:
  path:
    description:
      - The table source file (for example C(/etc/postfix/virtual)). Created when missing and
        O(state=present).
    type: path
    required: true
  entries:
    description:
      - Keys and their values. A list value is rendered C(a, b).
      - With O(state=absent) only the keys matter.
    type: dict
    default: {}
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.table_source
  - mailops.postfix.common.lock_timeout
notes:
  - Keys and values may not contain line breaks or NUL; keys may not contain unquoted white
    space or start with C(#). Such values are refused before anything is written.
seealso:
  - module: mailops.postfix.postmap
  - module: mailops.postfix.aliases
  - name: postmap(1)
    description: The input format of Postfix lookup tables.
    link: https://www.postfix.org/postmap.1.html
"""

EXAMPLES = r"""
- name: Virtual aliases for example.tld (one to many, and an external forward)
  mailops.postfix.lookup_table:
    path: /etc/postfix/virtual
    entries:
      support@example.tld: [alice, bob]
      chris@example.tld: chris@mail.example.net

- name: Make the transport map hold exactly these routes, compiled as lmdb
  mailops.postfix.lookup_table:
    path: /etc/postfix/transport
    type: lmdb
    exclusive: true
    entries:
      example.tld: "smtp:[mx.example.net]:25"

- name: Remove an alias; let a handler compile the map
  mailops.postfix.lookup_table:
    path: /etc/postfix/virtual
    state: absent
    entries:
      old@example.tld:
    compile: false
  notify: "mailops.postfix : rebuild tables"
"""

RETURN = r"""
added:
  description: Keys (folded) that were added.
  returned: always
  type: list
  elements: str
  sample: ["support@example.tld"]
updated:
  description: Keys (folded) whose value changed.
  returned: always
  type: list
  elements: str
  sample: []
removed:
  description: Keys (folded) that were removed.
  returned: always
  type: list
  elements: str
  sample: ["old@example.tld"]
source_changed:
  description: Whether the source file changed.
  returned: always
  type: bool
  sample: true
compiled:
  description: Whether the index was (or in check mode would be) rebuilt.
  returned: always
  type: bool
  sample: true
index:
  description: The index file Postfix reads.
  returned: always
  type: str
  sample: /etc/postfix/virtual.db
type:
  description: The table type used.
  returned: always
  type: str
  sample: hash
count:
  description: Number of entries the source compiles to.
  returned: always
  type: int
  sample: 2
rebuild_reason:
  description:
    - Why the index was rebuilt; null when it was current or O(compile=false).
    - C(index missing), C(index older than source) or C(forced); C(index content differs from source)
      followed by how many keys Postfix finds (real Postfix, looking every key up as it does, would not
      find every entry with its value) or how many records the index holds; C(index unreadable)
      followed by why, for a damaged or truncated index (rebuilt, not an error).
  returned: always
  type: str
  sample: "index content differs from source: Postfix finds 7264 of 8000 keys (736 not found)"
backup_file:
  description: The backup copy of the source.
  returned: when O(backup=true) and the source changed
  type: str
  sample: /etc/postfix/virtual.12345.2026-11-24@10:00:00~
source_warnings:
  description: What postmap would warn about in the source (duplicates, skipped lines), with file and line.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible_collections.mailops.postfix.plugins.module_utils._entries_module import run
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import TABLE


def main():
    run(TABLE)


if __name__ == "__main__":
    main()
