#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lookup_client
short_description: Write the client file of a Postfix pgsql, mysql, ldap or sqlite table
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Sets or removes the parameters of the configuration file that a network or SQL lookup
    table names, such as C(/etc/postfix/pgsql-virtual.cf) in
    C(virtual_alias_maps = proxy:pgsql:/etc/postfix/pgsql-virtual.cf).
    See pgsql_table(5), mysql_table(5), ldap_table(5) and sqlite_table(5).
  - The file has main.cf's syntax and is edited like M(mailops.postfix.postconf) edits main.cf
    (C(postconf -e) and C(postconf -X)), losslessly; comments, blank lines and untouched lines
    keep their bytes. An edit that changes nothing rewrites nothing.
  - Only the parameters the client reads are accepted; an unknown name (a typo) is refused,
    with the nearest known name.
  - The credentials (C(password) of pgsql and mysql tables, C(bind_pw) of ldap tables) are
    given in O(secret_params) only; their values never appear in the result or the diff
    (shown as C(<hidden>)).
  - The file is kept mode O(mode) (C(0640)), owned by root and the C(postfix) group (when it
    exists and the module runs as root), since it holds a password. It is replaced atomically
    under a lock.
  - The table's data and the database server are not touched. A change is read by Postfix
    processes that open the table afterwards (a reload, M(mailops.postfix.reload), makes it
    immediate). Check the result with C(postmap -q KEY pgsql:/etc/postfix/pgsql-virtual.cf).
options:
  path:
    description:
      - The client file, an absolute name (a name without C(/) would be read by Postfix as a
        main.cf parameter prefix). Its directory must exist.
    type: path
    required: true
  type:
    description:
      - The table type that reads the file; decides which parameter names are known.
    type: str
    required: true
    choices: [ldap, mysql, pgsql, sqlite]
  params:
    description:
      - With O(state=present), a dictionary of parameter name to value. A value is a string,
        an integer, a boolean (written C(yes)/C(no)) or a list (written C(a, b), for C(hosts),
        C(server_host) or C(domain)).
      - With O(state=absent), a list of names (a dictionary's values are ignored).
      - These values are logged by Ansible. C(password) and C(bind_pw) are refused here; give
        them in O(secret_params).
      - Values may not contain a newline, a carriage return or a NUL byte.
    type: raw
    default: {}
  secret_params:
    description:
      - Parameters whose values are not logged nor shown (C(<hidden>) in the diff), with
        O(state=present). Any known name may be given here, for example C(hosts) holding a
        C(postgresql://) URI with a password.
      - A name may not be in both O(params) and O(secret_params).
    type: dict
    default: {}
  state:
    description:
      - V(present) sets the parameters (creating the file), V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
  mode:
    description:
      - The file's permissions, kept on every run (an existing file with another mode is fixed).
    type: raw
    default: "0640"
  backup:
    description:
      - Copy the file to a time-stamped backup (mode 0600) before changing it.
    type: bool
    default: false
extends_documentation_fragment:
  - mailops.postfix.common.lock_timeout
  - mailops.postfix.common.attributes
  - mailops.postfix.common.platform
attributes:
  diff_mode:
    description: The whole file before and after, credentials and O(secret_params) shown as C(<hidden>).
notes:
  - The client plugin must be installed on the host for Postfix to use the table (Debian
    packages C(postfix-pgsql), C(postfix-mysql), C(postfix-ldap), C(postfix-sqlite));
    this module does not need it.
seealso:
  - module: mailops.postfix.postconf
  - module: mailops.postfix.postmap
  - name: pgsql_table(5)
    description: PostgreSQL lookup table client parameters.
    link: https://www.postfix.org/pgsql_table.5.html
  - name: ldap_table(5)
    description: LDAP lookup table client parameters.
    link: https://www.postfix.org/ldap_table.5.html
"""

EXAMPLES = r"""
- name: Virtual aliases from PostgreSQL
  mailops.postfix.lookup_client:
    path: /etc/postfix/pgsql-virtual.cf
    type: pgsql
    params:
      hosts: db1.example.com db2.example.com
      user: postfix
      dbname: mail
      query: SELECT destination FROM virtual WHERE source = '%s'
    secret_params:
      password: "{{ vault_postfix_db_password }}"

- name: Mailbox domains from LDAP
  mailops.postfix.lookup_client:
    path: /etc/postfix/ldap-domains.cf
    type: ldap
    params:
      server_host: [ldap://ldap1.example.com, ldap://ldap2.example.com]
      search_base: ou=domains,dc=example,dc=com
      query_filter: (associatedDomain=%s)
      result_attribute: associatedDomain
      bind_dn: cn=postfix,dc=example,dc=com
    secret_params:
      bind_pw: "{{ vault_ldap_password }}"

- name: Drop an old parameter
  mailops.postfix.lookup_client:
    path: /etc/postfix/pgsql-virtual.cf
    type: pgsql
    params: [select_field, table, where_field]
    state: absent
"""

RETURN = r"""
path:
  description: The client file.
  returned: always
  type: str
  sample: /etc/postfix/pgsql-virtual.cf
created:
  description: Whether the file was (in check mode would be) created.
  returned: always
  type: bool
  sample: false
changed_params:
  description: The parameters whose lines changed (or would change in check mode), sorted.
  returned: always
  type: list
  elements: str
  sample: [hosts, password]
attributes_changed:
  description: The mode, owner or group of an existing file that was (would be) fixed.
  returned: always
  type: list
  elements: str
  sample: ["mode 0644 -> 0640"]
backup_file:
  description: The backup copy made before the change.
  returned: when O(backup=true) and the file changed
  type: str
  sample: /etc/postfix/pgsql-virtual.cf.4242.2026-01-01@12:00:00~
warnings_file:
  description:
    - What the client would not understand among the lines already in the file (unknown
      names, duplicates, stray continuation lines), each as C(file:line) and the problem.
  returned: always
  type: list
  elements: str
  sample: ["/etc/postfix/pgsql-virtual.cf:3: unknown pgsql_table(5) parameter 'dbnmae'; did you mean dbname?"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._atomic import DEFAULT_LOCK_TIMEOUT
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._lookupclient import DEFAULT_MODE, TYPES, edit


def _mode(value):
    if value is None:
        return DEFAULT_MODE
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    try:
        mode = int(text, 8)
    except ValueError:
        raise PostfixError("mode %r: an octal number such as 0640" % (value,))
    if not 0 <= mode <= 0o7777:
        raise PostfixError("mode %r: out of range" % (value,))
    return mode


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            type=dict(type="str", required=True, choices=list(TYPES)),
            params=dict(type="raw", default={}),
            secret_params=dict(type="dict", default={}, no_log=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            mode=dict(type="raw", default="0640"),
            backup=dict(type="bool", default=False),
            lock_timeout=dict(type="float", default=DEFAULT_LOCK_TIMEOUT),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        res = edit(p["path"], p["type"], params=p["params"], secret_params=p["secret_params"],
                   state=p["state"], backup=p["backup"], check_mode=module.check_mode,
                   mode=_mode(p["mode"]), lock_timeout=p["lock_timeout"])
    except PostfixError as e:
        module.fail_json(msg=str(e))
    result = dict(
        changed=res["changed"],
        path=res["path"],
        created=res["created"],
        changed_params=res["changed_params"],
        attributes_changed=res["attributes_changed"],
        warnings_file=res["warnings"],
    )
    if res["backup_file"]:
        result["backup_file"] = res["backup_file"]
    if res["changed"] and module._diff:
        result["diff"] = {
            "before": res["before"],
            "after": res["after"],
            "before_header": res["path"],
            "after_header": res["path"],
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
