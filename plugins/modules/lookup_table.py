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
  - >-
    Tables without an index (O(type) V(regexp), V(pcre), V(cidr), V(texthash)): the key of an
    entry is the whole pattern as written, with its delimiters and flags for regexp and pcre
    (C(/^postmaster@old-domain/)), the network for cidr (C(192.0.2.0/24)); these keys are not
    case-folded (texthash keys are, like hash). The first matching entry wins, so order matters:
    new entries are appended in the order of O(entries), and with O(exclusive=true) the entries
    of the file are put in that order (an entry moves with the comment lines directly above it).
  - >-
    For those types O(compile) means checking the new source with the host's own Postfix before
    it goes live. The new text is written to a temporary file and opened by C(postmap -q KEY
    TYPE:TEMPFILE) (with C(-c) O(config_dir)) the way a daemon opens it; when Postfix prints a
    warning or fatal error about it (a bad regular expression, a bad network mask) the change is
    refused with C(path:line: Postfix's message) and nothing is written. A host whose Postfix
    lacks the type (C(postconf -m), for example pcre without the postfix-pcre package) fails
    with that. Their daemons read the source only when they open the table at process start
    (dict_regexp_open(), dict_pcre_open(), dict_cidr_open(), dict_thash_open() read the whole
    file then; regexp_table(5), pcre_table(5), cidr_table(5)), so a changed source needs
    C(postfix reload): RV(reload_required) says so.
  - >-
    C(if PATTERN) ... C(endif) blocks of regexp, pcre and cidr tables are kept byte for byte;
    entries inside them cannot be edited, and O(exclusive=true) is refused for a file with such
    blocks.
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
      - Mutually exclusive with O(secret_entries).
    type: dict
    default: {}
  secret_entries:
    description:
      - The same as O(entries), for a table holding passwords (C(smtp_sasl_password_maps),
        C(KEY user:password)). Using it makes the table secret, see O(secret).
      - Its values are never logged (C(no_log)).
      - Mutually exclusive with O(entries).
    type: dict
  secret:
    description:
      - Treat the table as secret. Implied by O(secret_entries); set it for O(state=absent)
        calls on a secret table (or O(exclusive=true) with O(secret_entries)). Values in
        O(entries) are refused with it, since O(entries) is logged; use O(secret_entries).
      - The source and the index are created with mode 0600, and an existing source or index
        whose mode lets its group or others in is tightened to 0600 (when running as root, a
        file owned by another user is also given to root, its group kept); that counts as a
        change, is listed in RV(secured), shown in the diff and only reported in check mode.
      - >-
        Why the index too: C(postmap) creates an index with mode 0644 (mkmap_open() and
        dict_open()) under a umask of 022 plus the group and other bits the source denies
        (postmap.c), so the index of a 0600 source is 0600, but a C(.db) or C(.lmdb) index made
        before the source was protected stays world-readable (seen with Postfix 3.7), which is
        why tutorials tell admins to
        C(chmod 600 sasl_passwd.db) by hand. A secret table's index is always 0600.
      - >-
        No value of a secret table is shown anywhere. The diff shows each entry as
        C(KEY <hidden>) (C(KEY <hidden, changed>) after the change of its value), its
        continuation lines and comment lines (a comment may be an old entry) as C(<hidden>);
        warnings and errors name the line or the key, never the value.
    type: bool
    default: false
  type:
    description:
      - The table type. Default is the type main.cf uses for O(path) (for example C(lmdb) for
        C(virtual_alias_maps = lmdb:/etc/postfix/virtual), or C(pcre) for
        C(smtp_generic_maps = pcre:/etc/postfix/generic)), else main.cf's
        C(default_database_type), else C(hash).
      - V(hash), V(cdb), V(lmdb) are compiled into an index; V(regexp), V(pcre), V(cidr) and
        V(texthash) have none (see the description).
    type: str
    choices: [hash, cdb, lmdb, regexp, pcre, cidr, texthash]
  compile:
    description:
      - Compile the index after editing, when it is stale (missing, older than the source, or
        with other records than the source compiles to).
      - For V(regexp), V(pcre), V(cidr) and V(texthash) tables, check a changed source with the
        host's Postfix before it is written (see the description); V(false) writes it unchecked.
      - Set V(false) when a handler compiles it.
    type: bool
    default: true
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.table_source
  - mailops.postfix.common.platform_lmdb
  - mailops.postfix.common.lock_timeout
notes:
  - Keys and values may not contain line breaks or NUL; keys may not contain unquoted white
    space or start with C(#) (regexp and pcre patterns may contain white space between their
    delimiters). Such values are refused before anything is written.
seealso:
  - module: mailops.postfix.postmap
  - module: mailops.postfix.aliases
  - name: postmap(1)
    description: The input format of Postfix lookup tables.
    link: https://www.postfix.org/postmap.1.html
  - name: regexp_table(5)
    description: The format of Postfix regular expression tables.
    link: https://www.postfix.org/regexp_table.5.html
  - name: pcre_table(5)
    description: The format of Postfix PCRE tables.
    link: https://www.postfix.org/pcre_table.5.html
  - name: cidr_table(5)
    description: The format of Postfix CIDR tables.
    link: https://www.postfix.org/cidr_table.5.html
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

- name: SMTP relay credentials, kept 0600 and never shown
  mailops.postfix.lookup_table:
    path: /etc/postfix/sasl_passwd
    secret_entries:
      "[smtp.example.net]:587": "relayuser:{{ relay_password }}"

- name: Rewrite old addresses with a regular expression table, checked by Postfix first
  mailops.postfix.lookup_table:
    path: /etc/postfix/generic_regexp
    type: regexp
    exclusive: true
    entries:
      /^(.*)@old\.example$/: ${1}@example.tld
      /^root@/: postmaster@example.tld
  notify: "mailops.postfix : reload"

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
  description: Whether the index was (or in check mode would be) rebuilt. Always false for a table without an index.
  returned: always
  type: bool
  sample: true
index:
  description: The index file Postfix reads; null for regexp, pcre, cidr and texthash tables.
  returned: always
  type: str
  sample: /etc/postfix/virtual.db
reload_required:
  description:
    - >-
      True when the source of a regexp, pcre, cidr or texthash table changed (or would change in
      check mode): Postfix daemons read it only when they open the table, run C(postfix reload).
    - Always false for indexed tables (daemons notice a replaced index by themselves).
  returned: always
  type: bool
  sample: false
secured:
  description:
    - >-
      For a secret table, the files whose mode or owner was (in check mode would be) tightened,
      as C(PATH: mode 0644 owner 0 -> mode 0600 owner 0 ...).
  returned: when the table is secret
  type: list
  elements: str
  sample: ["/etc/postfix/sasl_passwd.db: mode 0644 owner 0 -> mode 0600 owner 0 (secret table)"]
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
  description:
    - What postmap would warn about in the source (duplicates, skipped lines), with file and line.
    - For a secret table, the line or the key, never the value.
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
