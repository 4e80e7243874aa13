#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: aliases
short_description: Manage entries of an aliases(5) file and compile it like postalias
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Adds, changes or removes entries of a local aliases file in the aliases(5) format
    (a name, a colon, then targets separated by commas), then compiles the index Postfix
    reads, in Python, like
    C(postalias) (with its extra C(@), C(YP_LAST_MODIFIED) and C(YP_MASTER_NAME) records).
  - Targets are normalised as C(postalias)'s RFC 822 tokenizer does (C(a , b,c) is C(a, b, c)).
  - Targets that run a program (C(|command)), write a file (C(/path)) or read a list from a
    file (C(:include:/path)) do so with the recipient's privileges; they are refused unless
    O(allow_unsafe_targets=true).
  - Lossless. Lines of entries that do not change, comments and blank lines stay byte for
    byte; a changed entry is rewritten in place (all its continuation lines); new entries are
    appended at the end.
  - Names are matched as C(postalias) folds them (quotes removed, lower-cased), so C(Root)
    and C(root) are the same entry.
  - One call handles the whole table, however many entries.
  - The source is replaced atomically (temporary file beside it, fsync, rename) keeping its
    owner, group and mode. Nothing is written when the source has a syntax error.
options:
  path:
    description:
      - The aliases file. Created when missing and O(state=present).
    type: path
    default: /etc/aliases
  entries:
    description:
      - Local names and their targets (a list, or one string). A list is rendered C(a, b).
      - Names are local parts only; C(@) or C(%) in a name is refused, as C(postalias) does.
      - With O(state=absent) only the names matter.
    type: dict
    default: {}
  allow_unsafe_targets:
    description:
      - Allow C(|command), C(/file) and C(:include:/file) targets.
    type: bool
    default: false
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.table_source
  - mailops.postfix.common.platform_lmdb
  - mailops.postfix.common.lock_timeout
notes:
  - Names and targets may not contain line breaks or NUL. Such values are refused before
    anything is written.
  - The type defaults to how main.cf names this file in C(alias_maps) or C(alias_database).
seealso:
  - module: mailops.postfix.newaliases
  - module: mailops.postfix.lookup_table
  - name: aliases(5)
    description: The format of the Postfix local aliases file.
    link: https://www.postfix.org/aliases.5.html
"""

EXAMPLES = r"""
- name: Forward root's mail to the administrator
  mailops.postfix.aliases:
    entries:
      root: chris

- name: A list of people, compiled as lmdb
  mailops.postfix.aliases:
    path: /etc/aliases
    type: lmdb
    entries:
      admins: [alice, bob, chris@mail.example.net]

- name: Pipe to a program (explicitly allowed)
  mailops.postfix.aliases:
    entries:
      tickets: "|/usr/local/bin/ticket-intake"
    allow_unsafe_targets: true

- name: Remove an alias; let a handler compile the database
  mailops.postfix.aliases:
    state: absent
    entries:
      oldname:
    compile: false
  notify: "mailops.postfix : rebuild aliases"
"""

RETURN = r"""
added:
  description: Names (folded) that were added.
  returned: always
  type: list
  elements: str
  sample: ["root"]
updated:
  description: Names (folded) whose targets changed.
  returned: always
  type: list
  elements: str
  sample: []
removed:
  description: Names (folded) that were removed.
  returned: always
  type: list
  elements: str
  sample: ["oldname"]
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
  sample: /etc/aliases.db
type:
  description: The table type used.
  returned: always
  type: str
  sample: hash
count:
  description: Number of aliases the source compiles to (postalias's extra records not counted).
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
  sample: /etc/aliases.12345.2026-11-24@10:00:00~
source_warnings:
  description: What postalias would warn about in the source (duplicates, skipped lines), with file and line.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible_collections.mailops.postfix.plugins.module_utils._entries_module import run
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import ALIASES


def main():
    run(ALIASES, path_default="/etc/aliases")


if __name__ == "__main__":
    main()
