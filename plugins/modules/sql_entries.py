#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sql_entries
short_description: Keep alias rows of a PostgreSQL table that Postfix queries in sync, in one transaction
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Adds, changes or removes the rows of a PostgreSQL table that Postfix reads through a
    C(pgsql:) table (pgsql_table(5)), typically C(virtual_alias_maps) shared by a fleet of MX
    hosts - one call changes what every host routes.
  - Two layouts. V(pairs) is a two-column table (a key column and a value column).
    V(postfixadmin) is PostfixAdmin's C(alias) table (C(address), C(goto), C(domain), C(active),
    C(created), C(modified)); new rows get the address's domain and C(active=true), changed
    rows C(active=true) and C(modified) the transaction time, C(created) is left to its default.
  - Everything happens in one transaction. The rows in scope are read C(FOR UPDATE) (other
    writers of those rows wait, readers such as Postfix do not), the changes are computed in
    Python, then applied with one C(DELETE), an C(UPDATE) from a C(VALUES) list and a C(COPY);
    then C(COMMIT). Any error rolls the whole transaction back; nothing is half-written.
  - Keys are stored folded as Postfix folds a key before it queries (C(dict_pgsql.c) with
    C(DICT_FLAG_FOLD_FIX) - ASCII lower-case, full case folding for non-ASCII keys), since a key
    stored with capitals is never found.
  - Driver - psycopg2 (Debian's C(python3-psycopg2), also what community.postgresql uses), imported
    only when the module runs, with a clear error naming the package when it is missing. This
    module does not build on community.postgresql because that collection has no module that
    syncs a set of rows in one transaction (C(postgresql_query) runs given statements; diff,
    exclusive sets and bulk sync would all be left to the playbook). The connection options
    carry community.postgresql's names.
options:
  layout:
    description:
      - V(pairs) - a key column and a value column, named in O(columns) (default C(key), C(value)).
      - V(postfixadmin) - PostfixAdmin's C(alias) table (O(table) defaults to C(alias)). Its
        C(domain) column references PostfixAdmin's C(domain) table, which must hold the domain.
    type: str
    choices: [pairs, postfixadmin]
    default: pairs
  table:
    description:
      - The table. Required with O(layout=pairs); C(alias) by default with O(layout=postfixadmin).
    type: str
  schema:
    description:
      - The schema of O(table).
    type: str
    default: public
  columns:
    description:
      - Column names by role, over the layout's defaults. Roles - C(key), C(value) (both
        required), C(domain) (filled with the key's domain on insert, the scope of O(exclusive)),
        C(active) (set true), C(modified) (set to the transaction time on update). An empty name drops the role.
      - "Example for a two-column table - C({key: source, value: destination})."
    type: dict
  entries:
    description:
      - Keys (addresses, C(@domain) catch-alls) and their values. A list value is stored
        C(a,b), the way PostfixAdmin stores C(goto); Postfix expands it as a list.
      - Keys and values with a line break, a carriage return or a NUL byte are refused before
        anything connects; keys may not contain white space.
      - With O(state=absent) only the keys matter.
    type: dict
    default: {}
  state:
    description:
      - V(present) - the entries exist with these values. V(absent) - rows with these keys are removed.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - With O(state=present), also remove the rows in scope that are not in O(entries) -
        the rows of O(domain) (the C(domain) column when the table has one, else keys ending
        in C(@domain)), or the whole table with O(exclusive_scope=table).
      - With O(layout=postfixadmin), the C(alias) rows of PostfixAdmin's mailboxes are left alone,
        see O(keep_mailbox_aliases).
    type: bool
    default: false
  keep_mailbox_aliases:
    description:
      - With O(layout=postfixadmin) and O(exclusive=true), leave the C(alias) rows of the
        addresses in PostfixAdmin's C(mailbox) table (same O(schema)) unless O(entries) lists
        them. PostfixAdmin gives every mailbox such a row (C(address) = C(goto), or a forward
        that keeps a copy) so that a catch-all of the domain does not take the mailbox's mail.
      - V(false) removes them like any other row not in O(entries).
    type: bool
    default: true
  domain:
    description:
      - Every key must belong to this domain; the scope of O(exclusive).
    type: str
  exclusive_scope:
    description:
      - V(domain) - O(exclusive) needs O(domain). V(table) - without O(domain), O(exclusive)
        means every row of the table (refused otherwise, so that a forgotten O(domain) cannot
        empty a shared table).
    type: str
    choices: [domain, table]
    default: domain
  login_host:
    description:
      - Host of the database server. Empty means libpq's default (the local socket).
    type: str
    default: ""
  login_port:
    description:
      - Port of the database server.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - The role to connect as.
    type: str
    default: postgres
  login_password:
    description:
      - Its password. Never logged, never in the diff or in messages.
    type: str
    default: ""
  login_db:
    description:
      - The database.
    type: str
    default: ""
    aliases: [db]
  login_unix_socket:
    description:
      - Directory of the server's unix socket; takes the place of O(login_host).
    type: str
    default: ""
  ssl_mode:
    description:
      - libpq's C(sslmode).
    type: str
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
    default: prefer
  ca_cert:
    description:
      - libpq's C(sslrootcert).
    type: str
    aliases: [ssl_rootcert]
  connect_params:
    description:
      - Any other libpq connection parameters (C(connect_timeout) is 10 unless given here).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: The rows are read without a lock, the changes computed and nothing is written (ROLLBACK).
  diff_mode:
    support: full
    description: The rows in scope before and after, one C(key value) line each, sorted; inactive rows marked.
  platform:
    platforms: posix
    support: full
    description: Targets with Python 3.8 or later and psycopg2; any host that reaches the database.
requirements:
  - psycopg2 on the target (Debian C(python3-psycopg2))
notes:
  - "Measured (PostgreSQL 15 on loopback, psycopg2 2.9, 2 cores; PostfixAdmin C(alias) table,
    O(domain) with O(exclusive=true); the module run in-process, argument checks included) -
    100,000 rows first inserted in one call 2.8 s, one value changed among them 1.5 s, no change
    1.4 s. The transaction itself (read C(FOR UPDATE), compare, write) took 0.7 s, 0.5 s and
    0.5 s of that; the rest is validating the 100,000 entries. Through C(ansible-playbook) with the
    entries in a variable, the module took 1.6 s on the target and the whole run 12 to 18 s - the
    rest is Ansible's controller handling a 100,000-key variable."
  - A run waits for other transactions that hold rows of its scope. To give up instead, set
    PostgreSQL's C(lock_timeout) through O(connect_params), for example the key C(options)
    with the value C(-c lock_timeout=5s).
  - Postfix 3.7 and older set the client encoding of their PostgreSQL connection to LATIN1
    (C(dict_pgsql.c)) - a non-ASCII key is not found there and a non-ASCII value fails the
    lookup with a temporary error. The module stores such entries (newer Postfix releases
    configure the encoding in pgsql_table(5)) and warns about them.
  - This module writes no Postfix configuration. Each host's C(pgsql:) client file
    (pgsql_table(5)) names the same table; for PostfixAdmin its query is
    C(SELECT goto FROM alias WHERE address='%s' AND active = '1').
  - The module reports C(changed) from the rows, so a second identical run reports no change
    and does not touch the table (no C(modified) stamp).
seealso:
  - name: pgsql_table(5)
    description: How Postfix queries PostgreSQL.
    link: https://www.postfix.org/pgsql_table.5.html
  - module: mailops.postfix.lookup_table
"""

EXAMPLES = r"""
- name: The virtual aliases of example.com, exactly these (one transaction)
  mailops.postfix.sql_entries:
    login_host: db.example.net
    login_user: mailadmin
    login_password: "{{ vault_mail_db_password }}"
    login_db: mail
    table: virtual_aliases
    columns: {key: source, value: destination}
    domain: example.com
    exclusive: true
    entries:
      postmaster@example.com: root@example.net
      sales@example.com: [alice@example.com, bob@example.com]

- name: One alias in PostfixAdmin's alias table
  mailops.postfix.sql_entries:
    layout: postfixadmin
    login_unix_socket: /var/run/postgresql
    login_user: postfixadmin
    login_db: postfixadmin
    entries:
      info@example.org: alice@example.org

- name: Remove an alias
  mailops.postfix.sql_entries:
    layout: postfixadmin
    login_host: db.example.net
    login_user: postfixadmin
    login_password: "{{ vault_pfa_password }}"
    login_db: postfixadmin
    state: absent
    entries:
      old@example.org:
"""

RETURN = r"""
added:
  description: Keys (folded) of the rows inserted.
  returned: always
  type: list
  elements: str
  sample: ["sales@example.com"]
updated:
  description: Keys whose value (or active flag, or duplicate rows) changed.
  returned: always
  type: list
  elements: str
  sample: []
removed:
  description: Keys whose rows were removed.
  returned: always
  type: list
  elements: str
  sample: ["old@example.com"]
count:
  description: Rows in scope after the run (the keys of O(entries), the domain, or the table).
  returned: always
  type: int
  sample: 2
table:
  description: The table, C(schema.table).
  returned: always
  type: str
  sample: public.alias
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.postfix.plugins.module_utils._errors import MissingLibrary, PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._sqlentries import (
    Target, connect_kwargs, non_ascii, normalise_entries, sync,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            layout=dict(type="str", default="pairs", choices=["pairs", "postfixadmin"]),
            table=dict(type="str"),
            schema=dict(type="str", default="public"),
            columns=dict(type="dict"),
            entries=dict(type="dict", default={}),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            exclusive=dict(type="bool", default=False),
            domain=dict(type="str"),
            exclusive_scope=dict(type="str", default="domain", choices=["domain", "table"]),
            keep_mailbox_aliases=dict(type="bool", default=True),
            login_host=dict(type="str", default=""),
            login_port=dict(type="int", default=5432, aliases=["port"]),
            login_user=dict(type="str", default="postgres"),
            login_password=dict(type="str", default="", no_log=True),
            login_db=dict(type="str", default="", aliases=["db"]),
            login_unix_socket=dict(type="str", default=""),
            ssl_mode=dict(type="str", default="prefer",
                          choices=["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]),
            ca_cert=dict(type="str", aliases=["ssl_rootcert"]),
            connect_params=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        target = Target(p["layout"], p["table"], p["schema"], p["columns"])
        desired = normalise_entries(p["entries"], p["state"], p["layout"], p["domain"])
        connection = connect_kwargs(
            p["login_host"], p["login_port"], p["login_user"], p["login_password"], p["login_db"],
            p["login_unix_socket"], p["ssl_mode"], p["ca_cert"], p["connect_params"])
        plan, count = sync(target, desired, state=p["state"], exclusive=p["exclusive"], domain=p["domain"],
                           exclusive_scope=p["exclusive_scope"], connection=connection,
                           check_mode=module.check_mode, keep_mailbox_aliases=p["keep_mailbox_aliases"])
    except MissingLibrary as e:
        module.fail_json(msg=missing_required_lib("psycopg2") + " " + str(e))
    except PostfixError as e:
        module.fail_json(msg=str(e))
    odd = non_ascii(desired) if p["state"] == "present" else []
    if odd:
        module.warn("%d entries are not ASCII (first: %s): Postfix 3.7 and older query PostgreSQL with the client "
                    "encoding LATIN1 (dict_pgsql.c) and do not find them or fail the lookup with a temporary error; "
                    "use ASCII addresses (IDNA xn-- domains) for those hosts" % (len(odd), odd[0]))
    result = dict(changed=plan.changed, added=plan.added, updated=plan.updated, removed=plan.removed,
                  count=count, table=target.name)
    if module._diff:
        result["diff"] = dict(before=plan.text(plan.before), after=plan.text(plan.after),
                              before_header=target.name, after_header=target.name)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
