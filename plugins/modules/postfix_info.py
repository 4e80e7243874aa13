#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postfix_info
short_description: Facts about a Postfix instance, read without changing anything
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Returns what C(postconf -n), C(postconf -d), C(postconf -m), C(postconf -M), C(postconf -P)
    and C(postfix status) tell, plus every lookup table main.cf or a master.cf C(-o) override
    references and whether its index is stale.
  - main.cf is parsed in Python; of duplicate definitions the last one wins, as Postfix reads it.
    Defaults, table types and C(mail_version) come from the installed C(postconf) binary;
    without it they are empty and RV(notes) says so.
  - Never changes anything. Whether the master runs is told by the lock it holds on
    C($queue_directory/pid/master.pid), like C(postfix status).
  - Also tells, for roles that would otherwise gather facts in another round trip, the host's
    operating system family (from os-release(5)) and whether the init system starts Postfix at
    boot (RV(service)).
options:
  service_name:
    description: The init system's name of the Postfix service, for RV(service).
    type: str
    default: postfix
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.read_only
  - mailops.postfix.common.platform
seealso:
  - module: mailops.postfix.postconf
  - module: mailops.postfix.reload
"""

EXAMPLES = r"""
- name: Read the Postfix facts
  mailops.postfix.postfix_info:
  register: postfix

- name: Use the table type this Postfix defaults to
  ansible.builtin.debug:
    msg: "{{ postfix.default_database_type }} maps, Postfix {{ postfix.mail_version }}"

- name: Show where submission's overrides send authenticated mail
  ansible.builtin.debug:
    msg: "{{ (postfix.services | selectattr('name', 'eq', 'submission') | first).options }}"

- name: Fail when an index is out of date
  ansible.builtin.assert:
    that: postfix.stale_tables | length == 0
"""

RETURN = r"""
host:
  description:
    - C(os_family) (as Ansible's fact of that name, for example C(Debian) or C(RedHat)),
      C(distribution) (os-release C(ID)) and C(distribution_major_version) (os-release
      C(VERSION_ID) up to its first dot; empty on Debian testing). Also returned on failure.
  returned: always
  type: dict
  sample: {os_family: Debian, distribution: debian, distribution_major_version: "12"}
python_lmdb:
  description:
    - Whether the Python running this module can import the C(lmdb) binding the collection's
      modules need for C(lmdb) tables (Debian package python3-lmdb).
  returned: always
  type: bool
service:
  description:
    - C(name) (O(service_name)), C(manager) (C(systemd), C(sysv) or null), C(enabled) (whether it
      starts Postfix at boot; null when no init system tells) and C(state) (C(systemctl
      is-enabled)'s word).
  returned: always
  type: dict
  sample: {name: postfix, manager: systemd, enabled: true, state: enabled}
config_dir:
  description: The configuration directory read.
  returned: always
  type: str
  sample: /etc/postfix
main_cf:
  description: The main.cf file read.
  returned: always
  type: str
  sample: /etc/postfix/main.cf
master_cf:
  description: The master.cf file read.
  returned: always
  type: str
  sample: /etc/postfix/master.cf
services:
  description:
    - The active services of master.cf in file order, as C(postconf -M) lists them (commented-out
      entries are not services; an entry spread over continuation lines is one service).
      Empty when master.cf does not exist (RV(notes) says so).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The service name (for C(inet), the listen address and port or service).
      type: str
      sample: submission
    type:
      description: The service type (C(inet), C(unix), C(unix-dgram), C(fifo) or C(pass)).
      type: str
      sample: inet
    private:
      description: The private column as written (C(y), C(n) or C(-) for the default).
      type: str
      sample: n
    unpriv:
      description: The unprivileged column as written.
      type: str
      sample: "-"
    chroot:
      description: The chroot column as written.
      type: str
      sample: y
    wakeup:
      description: The wakeup column as written (seconds, optionally with C(?), or C(-)).
      type: str
      sample: "-"
    maxproc:
      description: The process limit column as written.
      type: str
      sample: "-"
    command:
      description: The command (the daemon program name).
      type: str
      sample: smtpd
    args:
      description:
        - The command's arguments other than the C(-o) overrides, in file order (options
          such as C(-v) come first), C({ }) grouping removed.
      type: list
      elements: str
      sample: [flags=DRhu, user=vmail, "argv=/usr/bin/maildrop -d ${recipient}"]
    options:
      description:
        - The C(-o name=value) overrides as the daemon applies them and C(postconf -P)
          shows them (C(-o { name = value }) unwrapped and trimmed; of a name given twice the
          later value). Values are raw, not C($name)-expanded.
      type: dict
      sample: {"syslog_name": "postfix/submission", "smtpd_tls_security_level": "encrypt"}
parameters:
  description:
    - Every parameter main.cf sets, with its raw (unexpanded) value, like C(postconf -n)
      (which would also collapse whitespace and hide names it does not know).
  returned: always
  type: dict
  sample: {"alias_maps": "hash:/etc/aliases", "mydestination": "$myhostname, localhost"}
defaults:
  description: The compiled-in defaults (C(postconf -d)), raw; empty without the binary.
  returned: always
  type: dict
  sample: {"myorigin": "$myhostname"}
map_types:
  description: The lookup table types this Postfix supports (C(postconf -m)).
  returned: always
  type: list
  elements: str
  sample: [btree, cdb, hash, lmdb, regexp, texthash]
default_database_type:
  description: The table type used when a map names none (expanded; null when unknown).
  returned: always
  type: str
  sample: hash
mail_version:
  description: The Postfix version (null without the binary).
  returned: always
  type: str
  sample: 3.7.11
queue_directory:
  description: The queue directory (main.cf, else the compiled-in default).
  returned: always
  type: str
  sample: /var/spool/postfix
pid_file:
  description: The master's pid and lock file.
  returned: always
  type: str
  sample: /var/spool/postfix/pid/master.pid
running:
  description: Whether the master runs (it holds the lock on RV(pid_file) and /proc confirms it).
  returned: always
  type: bool
  sample: true
master_pid:
  description: The master's pid when it runs, else null.
  returned: always
  type: int
  sample: 1234
tables:
  description:
    - Every lookup table main.cf references (values are C($name)-expanded; C(proxy:),
      C(unionmap:{...}) and C(pipemap:{...}) are followed), plus each map of C(alias_database),
      plus every table a master.cf C(-o) override references (its value expanded as that service's
      daemon sees it, with its own overrides over main.cf and C($service_name) set).
  returned: always
  type: list
  elements: dict
  contains:
    type:
      description: The table type.
      type: str
      sample: hash
    path:
      description: The source (or, for C(ldap:) style tables, configuration) file.
      type: str
      sample: /etc/postfix/virtual
    parameters:
      description: The main.cf parameters that reference it (C(alias_database) for its maps).
      type: list
      elements: str
      sample: [virtual_alias_maps]
    overrides:
      description: The master.cf C(-o) overrides that reference it.
      type: list
      elements: dict
      contains:
        service:
          description: The service, C(name/type).
          type: str
          sample: submission/inet
        parameter:
          description: The overridden parameter.
          type: str
          sample: smtpd_recipient_restrictions
        line:
          description: The master.cf line where the service's entry starts.
          type: int
          sample: 17
    source_exists:
      description: Whether the file exists.
      type: bool
    index:
      description: The index file Postfix opens (null for types with no index, such as regexp).
      type: str
      sample: /etc/postfix/virtual.db
    index_exists:
      description: Whether the index exists (null for types with no index).
      type: bool
    stale:
      description: The index is missing or older than its source (always false without an index, and for caches).
      type: bool
    cache:
      description:
        - A cache Postfix daemons create and write themselves (C(*_cache_database), C(*_cache_map),
          C(address_verify_map)); it has no source and is never built with postmap.
      type: bool
stale_tables:
  description: The paths of the stale tables.
  returned: always
  type: list
  elements: str
  sample: [/etc/postfix/virtual]
restart_params:
  description: The parameters a running master only reads at start (a change needs a restart).
  returned: always
  type: list
  elements: str
  sample: [inet_interfaces, inet_protocols]
notes:
  description: What could not be determined and why.
  returned: always
  type: list
  elements: str
  sample: []
warnings_main_cf:
  description: What Postfix would warn about while reading main.cf, and the master pid check.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._postfix import host_info


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_dir=dict(type="path", default="/etc/postfix"),
            service_name=dict(type="str", default="postfix"),
        ),
        supports_check_mode=True,
    )
    result = host_info(module.params["config_dir"], module.params["service_name"])
    if "msg" in result:
        module.fail_json(**result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
