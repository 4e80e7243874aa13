#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: config
short_description: Set lookup tables, an aliases file, main.cf and master.cf together, in one run
version_added: "0.4.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Does what M(mailops.postfix.lookup_table), M(mailops.postfix.aliases),
    M(mailops.postfix.postconf) and M(mailops.postfix.master_cf) do, through the same engines and
    with the same rules (lossless edits, atomic replacement, locks, folded keys, secret tables,
    host checks of pattern tables), for all the files of a host in one module run (one round
    trip to the host instead of one per file). The M(mailops.postfix.server) role uses it.
  - >-
    Order. First every file is read and edited in memory, the main.cf and master.cf edits are
    checked (for example a domain in two address classes) and the new text of each
    V(regexp), V(pcre), V(cidr) and V(texthash) table is opened by the host's Postfix; any
    refusal fails the task before any file changes. Then the table and aliases sources are
    written and their indexes compiled (only when stale; aliases with C(postalias) semantics);
    then main.cf, then master.cf, so that main.cf names a new index or table type only once it
    exists (a new C(smtpd) process reads main.cf when it starts, reload or not). Last, the
    source and index of tables declared O(tables[].state=absent) are removed, after main.cf no
    longer names them.
  - >-
    A table of a database (O(tables[].type) V(pgsql), V(mysql), V(ldap), V(sqlite)) is its
    client file, written as M(mailops.postfix.lookup_client) writes it from
    O(tables[].params) and O(tables[].secret_params), whole (a parameter not given is removed),
    0640 root:postfix unless O(tables[].mode) says otherwise; its data is never touched.
  - Does not reload Postfix. RV(reload_required) says when main.cf, master.cf, a client file or a table
    without an index changed (daemons read those when they start); a changed indexed table
    needs no reload (the daemons notice the new index). RV(restart_required) names main.cf
    changes that need C(postfix stop; postfix start) (C(inet_interfaces), C(inet_protocols)).
options:
  tables:
    description:
      - Lookup table sources, each as M(mailops.postfix.lookup_table) takes it (with
        O(tables[].state=present) and, unlike that module, always the whole declared state of
        the entries given), or the client files of database tables.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The table source file. Created (empty if no entry is given) when missing.
        type: path
        required: true
      type:
        description:
          - The table type, as for M(mailops.postfix.lookup_table) (default the type main.cf uses
            for O(tables[].path), else C(default_database_type)).
          - V(pgsql), V(mysql), V(ldap) and V(sqlite) make O(tables[].path) the table's client file.
        type: str
        choices: [hash, cdb, lmdb, regexp, pcre, cidr, texthash, pgsql, mysql, ldap, sqlite]
      entries:
        description: Keys and their values (a list value is rendered C(a, b)).
        type: dict
        default: {}
      entries_text:
        description:
          - The same as O(tables[].entries) given as one string, C(KEY<TAB>VALUE) per line (a key
            holds no tab; a line break ends the value). Every entry is checked as one given in
            O(tables[].entries).
          - For maps of thousands of entries - Ansible templates and sends one string at once, a
            dictionary item by item (the M(mailops.postfix.server) role sends its maps this way).
        type: str
      secret_entries:
        description:
          - The same as O(tables[].entries) for a table holding passwords; never logged, the
            diff shows keys only, source and index kept 0600 (see M(mailops.postfix.lookup_table)'s
            C(secret)).
        type: dict
      params:
        description:
          - For a database table, the client file's parameters (pgsql_table(5), mysql_table(5),
            ldap_table(5), sqlite_table(5)), as M(mailops.postfix.lookup_client) takes them (known
            names only, no credentials).
        type: dict
      secret_params:
        description:
          - For a database table, its credentials (C(password), C(bind_pw)); never logged, shown
            as C(<hidden>) in diffs.
        type: dict
      exclusive:
        description: Remove every entry not given.
        type: bool
        default: false
      compile:
        description:
          - Compile the index when stale; for tables without an index, have the host's Postfix
            open the new text before it is written.
        type: bool
        default: true
      mode:
        description:
          - The mode of the source and of its index, such as C('0640'). Set on an existing source
            before its entries are written, and given to a new one when it is created, so the
            entries never sit in a file with wider permissions. Without it an existing file keeps
            its mode and a new one gets the umask's (a secret table's 0600).
        type: raw
      state:
        description:
          - V(absent) removes the source and the index (after main.cf and master.cf were
            written), whatever O(tables[].entries) says.
        type: str
        choices: [present, absent]
        default: present
  aliases:
    description:
      - The aliases file, as M(mailops.postfix.aliases) takes it; compiled with C(postalias)
        semantics.
    type: dict
    suboptions:
      path:
        description: The aliases file.
        type: path
        default: /etc/aliases
      type:
        description: The index type (default main.cf's C(default_database_type)).
        type: str
        choices: [hash, cdb, lmdb]
      entries:
        description: Names and their targets.
        type: dict
        default: {}
      entries_text:
        description:
          - The same as O(aliases.entries) given as one string, C(NAME<TAB>TARGETS) per line, as
            O(tables[].entries_text).
        type: str
      exclusive:
        description: Remove every alias not given.
        type: bool
        default: false
      compile:
        description: Compile the alias database when stale.
        type: bool
        default: true
      allow_unsafe_targets:
        description: Allow C(|command), C(/file) and C(:include:) targets.
        type: bool
        default: false
  params:
    description:
      - main.cf parameters to set, as M(mailops.postfix.postconf) with C(state=present).
    type: dict
    default: {}
  params_absent:
    description:
      - main.cf parameters to remove (C(postconf -X)); names main.cf does not set are ignored.
    type: list
    elements: str
    default: []
  services:
    description:
      - master.cf services, as M(mailops.postfix.master_cf)'s O(mailops.postfix.master_cf#module:services).
    type: list
    elements: dict
    default: []
  proxy_read_maps:
    description:
      - Tables (C(TYPE:NAME), with or without C(proxy:)) that proxymap(8) must be allowed to
        open. C(proxy_read_maps) is left alone when its expanded value (as this run leaves
        main.cf) already lists each of them with the C(proxy:) prefix, as proxymap reads it (the
        default names C($virtual_alias_maps) and most C(*_maps)); otherwise the missing ones are
        appended to its current value.
    type: list
    elements: str
    default: []
  backup:
    description:
      - Keep a timestamped copy of each file before changing it.
    type: bool
    default: false
  facts:
    description:
      - Also return the Postfix facts, read before anything is written, as
        M(mailops.postfix.postfix_info) returns them but the C(postconf -d) defaults (RV(facts)),
        so that a caller needs no second module run to learn them.
    type: bool
    default: false
  service_name:
    description: The init system's name of the Postfix service, for RV(facts).
    type: str
    default: postfix
  expect:
    description:
      - What the host must be like for this run to write anything, checked first, before any
        file is read for editing. When any of it does not hold, nothing is changed, RV(ready) is
        V(false) and RV(unmet) says what did not hold; the task does not fail, so that the caller
        can install, migrate and run again. Postfix must also be readable (installed, main.cf
        parsed).
      - The M(mailops.postfix.server) role writes in a single module run this way when nothing
        is to be installed or migrated.
    type: dict
    suboptions:
      default_database_type:
        description: C(default_database_type) of this Postfix (the table type the caller chose from it).
        type: str
      map_types:
        description: Table types that C(postconf -m) must list.
        type: list
        elements: str
        default: []
      python_lmdb:
        description: The Python lmdb binding must be installed.
        type: bool
        default: false
      no_tables_of_type:
        description:
          - Table types that no table of main.cf or master.cf may have (as
            M(mailops.postfix.postfix_info)'s RV(mailops.postfix.postfix_info#module:tables) lists
            them), for example V([hash, btree]) before they are migrated.
        type: list
        elements: str
        default: []
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.lock_timeout
  - mailops.postfix.common.platform_lmdb
attributes:
  check_mode:
    support: full
    description: Reports every change with its diff, writing nothing.
  diff_mode:
    support: full
    description: One diff per changed file (secret tables show keys only).
notes:
  - One call per host and run, however many tables and entries.
seealso:
  - module: mailops.postfix.lookup_table
  - module: mailops.postfix.aliases
  - module: mailops.postfix.postconf
  - module: mailops.postfix.master_cf
  - module: mailops.postfix.reload
"""

EXAMPLES = r"""
- name: Virtual aliases, a transport map, /etc/aliases and main.cf in one run
  mailops.postfix.config:
    tables:
      - path: /etc/postfix/virtual
        type: lmdb
        exclusive: true
        entries:
          info@example.tld: alice@example.tld
          sales@example.tld: [alice@example.tld, bob@example.net]
      - path: /etc/postfix/transport
        type: lmdb
        entries:
          example.net: "smtp:[mail.example.net]"
    aliases:
      path: /etc/aliases
      type: lmdb
      entries:
        postmaster: root
        root: admin@example.tld
    params:
      virtual_alias_domains: example.tld
      virtual_alias_maps: lmdb:/etc/postfix/virtual
      transport_maps: lmdb:/etc/postfix/transport
      alias_maps: lmdb:/etc/aliases
      alias_database: lmdb:/etc/aliases
  register: postfix_config

- name: Aliases in PostgreSQL, read through proxymap
  mailops.postfix.config:
    tables:
      - path: /etc/postfix/pgsql-virtual.cf
        type: pgsql
        params:
          hosts: db.example.tld
          user: postfix
          dbname: mail
          query: SELECT goto FROM alias WHERE address = '%s' AND active
        secret_params:
          password: "{{ vault_postfix_db_password }}"
    params:
      virtual_alias_maps: proxy:pgsql:/etc/postfix/pgsql-virtual.cf
    proxy_read_maps: [pgsql:/etc/postfix/pgsql-virtual.cf]
  register: postfix_config

- name: Reload Postfix when main.cf, master.cf or a pattern table changed
  mailops.postfix.reload:
  when: postfix_config.reload_required

- name: Write only on a host that needs nothing installed or migrated first
  mailops.postfix.config:
    tables:
      - path: /etc/postfix/virtual
        type: lmdb
        entries:
          info@example.tld: alice@example.tld
    params:
      virtual_alias_maps: lmdb:/etc/postfix/virtual
    expect:
      map_types: [lmdb]
      python_lmdb: true
      no_tables_of_type: [hash, btree]
  register: postfix_config

- name: Say what the host lacks (nothing was changed)
  ansible.builtin.debug:
    msg: "{{ postfix_config.unmet }}"
  when: not postfix_config.ready
"""

RETURN = r"""
tables:
  description:
    - One result per present table, in the order given (database tables' client files last), as
      M(mailops.postfix.lookup_table) returns it (without the diff) plus C(path), C(mode_changed)
      (paths whose mode was set) and C(created) (an empty source was made); for a client file
      C(path), C(type), C(changed), C(changed_params), C(attributes_changed) and C(reload_required).
  returned: always
  type: list
  elements: dict
aliases:
  description: The aliases file's result, as M(mailops.postfix.aliases) returns it (without the diff).
  returned: when O(aliases) is given
  type: dict
main_cf:
  description:
    - C(changed), C(changed_params) (set), C(removed_params), C(restart_params) and
      C(restart_required) of main.cf.
  returned: always
  type: dict
  sample: {changed: true, changed_params: [virtual_alias_maps], removed_params: [], restart_params: [],
           restart_required: false}
master_cf:
  description: C(changed) and C(changed_services) (C(name/type)) of master.cf.
  returned: always
  type: dict
removed_files:
  description: Sources and indexes of tables declared absent that were removed.
  returned: always
  type: list
  elements: str
reload_required:
  description:
    - main.cf, master.cf or a client file changed, a table without an index changed, or a table was removed;
      C(postfix reload) makes the daemons see it.
  returned: always
  type: bool
restart_required:
  description: A main.cf parameter that Postfix reads only at start changed (see RV(main_cf)).
  returned: always
  type: bool
ready:
  description:
    - Everything O(expect) asks for holds (always V(true) without O(expect)); when V(false), no
      file was read for editing or changed and only C(changed) (V(false)), RV(reload_required),
      RV(restart_required), RV(unmet) and RV(facts) are returned.
  returned: always
  type: bool
unmet:
  description: What of O(expect) did not hold, one line each.
  returned: always
  type: list
  elements: str
  sample: ["table types not in postconf -m: lmdb", "main.cf or master.cf names hash:/etc/aliases"]
facts:
  description:
    - The Postfix facts as they were before this run, with the keys M(mailops.postfix.postfix_info) returns
      (C(mail_version), C(default_database_type), C(map_types), C(tables), C(running), C(host),
      C(service), C(python_lmdb)...) but C(defaults), the thousand or so values of C(postconf -d)
      (M(mailops.postfix.postfix_info) returns them); when Postfix cannot be read, only C(host),
      C(service) and C(msg) (why).
  returned: when O(facts) is true or O(expect) is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.postfix.plugins.module_utils._atomic import DEFAULT_LOCK_TIMEOUT
from ansible_collections.mailops.postfix.plugins.module_utils._configuration import apply, unmet_expectations
from ansible_collections.mailops.postfix.plugins.module_utils._entries_module import INDEXED_CHOICES
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._lookupclient import TYPES as CLIENT_TYPES
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import SOURCE_CHECKED_TYPES
from ansible_collections.mailops.postfix.plugins.module_utils._mastercf import SERVICE_OPTIONS
from ansible_collections.mailops.postfix.plugins.module_utils._postfix import Binary, host_info


def checked_services(module, services):
    """Each service checked against master_cf's own argument spec (defaults filled in)."""
    validator = ArgumentSpecValidator(SERVICE_OPTIONS)
    out = []
    for i, service in enumerate(services):
        checked = validator.validate(service)
        if checked.error_messages:
            module.fail_json(msg="services[%d]: %s" % (i, "; ".join(checked.error_messages)))
        out.append(checked.validated_parameters)
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_dir=dict(type="path", default="/etc/postfix"),
            tables=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                type=dict(type="str", choices=INDEXED_CHOICES + list(SOURCE_CHECKED_TYPES) + list(CLIENT_TYPES)),
                entries=dict(type="dict", default={}),
                entries_text=dict(type="str"),
                params=dict(type="dict"),
                # password, bind_pw: never logged, <hidden> in diffs.
                secret_params=dict(type="dict", no_log=True),
                # Passwords (smtp_sasl_password_maps): never logged, never in a diff.
                secret_entries=dict(type="dict", no_log=True),
                exclusive=dict(type="bool", default=False),
                compile=dict(type="bool", default=True),
                mode=dict(type="raw"),
                state=dict(type="str", default="present", choices=["present", "absent"]),
            ), mutually_exclusive=[("entries", "secret_entries", "entries_text")]),
            aliases=dict(type="dict", options=dict(
                path=dict(type="path", default="/etc/aliases"),
                type=dict(type="str", choices=INDEXED_CHOICES),
                entries=dict(type="dict", default={}),
                entries_text=dict(type="str"),
                exclusive=dict(type="bool", default=False),
                compile=dict(type="bool", default=True),
                allow_unsafe_targets=dict(type="bool", default=False),
            ), mutually_exclusive=[("entries", "entries_text")]),
            params=dict(type="dict", default={}),
            params_absent=dict(type="list", elements="str", default=[]),
            services=dict(type="list", elements="dict", default=[]),
            proxy_read_maps=dict(type="list", elements="str", default=[]),
            backup=dict(type="bool", default=False),
            lock_timeout=dict(type="float", default=DEFAULT_LOCK_TIMEOUT),
            facts=dict(type="bool", default=False),
            service_name=dict(type="str", default="postfix"),
            expect=dict(type="dict", options=dict(
                default_database_type=dict(type="str"),
                map_types=dict(type="list", elements="str", default=[]),
                python_lmdb=dict(type="bool", default=False),
                no_tables_of_type=dict(type="list", elements="str", default=[]),
            )),
        ),
        supports_check_mode=True,
    )
    p = module.params
    binary = Binary()
    # The facts are read first, before any file is, and returned in every outcome.
    returned = {}
    if p["facts"] or p["expect"] is not None:
        returned["facts"] = host_info(p["config_dir"], p["service_name"], binary)
        # About a thousand postconf -d values that Ansible would walk again at every use.
        returned["facts"].pop("defaults", None)
    unmet = unmet_expectations(returned["facts"], p["expect"]) if p["expect"] is not None else []
    if unmet:
        module.exit_json(changed=False, ready=False, unmet=unmet, reload_required=False, restart_required=False,
                         **returned)
    try:
        result = apply(p["config_dir"], tables=p["tables"], aliases=p["aliases"], params=p["params"],
                       params_absent=p["params_absent"], services=checked_services(module, p["services"]),
                       backup=p["backup"], proxy_read=p["proxy_read_maps"],
                       check_mode=module.check_mode, lock_timeout=p["lock_timeout"], binary=binary)
    except PostfixError as e:
        module.fail_json(msg=str(e), **returned)
    result.update(ready=True, unmet=[], **returned)
    for part in result["tables"] + ([result["aliases"]] if "aliases" in result else []):
        for warning in part.pop("source_warnings", []):
            module.warn(warning)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
