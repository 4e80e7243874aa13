#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: master_cf
short_description: Add, change, remove or comment out Postfix master.cf services, in Python
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - The Python equivalent of C(postconf -M name/type='...') (add or replace a service),
    C(postconf -F) (one field), C(postconf -P) and C(postconf -PX) (one C(-o) override),
    C(postconf -MX) (remove) and C(postconf -M#) (comment out), for many services in one call.
  - A service is identified by its name and type, like C(submission/inet). When master.cf
    has it more than once, a changed service is written, as C(postconf -M) does, in place of
    the first entry and the later ones are removed; unset fields and overrides come from the
    last entry, the one master(8) uses.
  - Untouched entries, comments and blank lines keep their bytes. An edited entry is written
    in C(postconf)'s column layout, one C(-o) override per continuation line indented 4
    spaces, at the place it had (C(postconf) moves it below the comment lines that follow
    it); comment lines that were between its continuation lines follow it. A new service is
    appended at the end, as C(postconf -M) does.
  - An edit that changes nothing rewrites nothing (the file and its mtime stay as they are);
    the file keeps its owner, group and mode and is replaced atomically under a lock.
  - A master.cf line with too few fields or an unknown service type fails the task, naming
    the file and line (C(/etc/postfix/master.cf:12) followed by what is wrong), and nothing is written.
  - A changed master.cf takes effect with a reload (M(mailops.postfix.reload)). On SIGHUP
    master(8) re-reads master.cf, starts added services, stops removed ones and restarts
    changed ones, listeners included. No restart is needed (RV(restart_required)).
options:
  services:
    description:
      - The services to manage, applied in order.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The service name (first column), such as C(submission), C(smtp) or
            C(127.0.0.1:10025). No whitespace, C(=), C(/), braces or leading C(#).
        type: str
        required: true
      type:
        description:
          - The service type (second column).
        type: str
        required: true
        choices: [inet, unix, unix-dgram, fifo, pass]
      state:
        description:
          - V(present) adds the service or changes the fields given; V(absent) removes every
            entry of it (C(postconf -MX)); V(commented) puts C(#) before each of its lines
            (C(postconf -M#)). With V(absent) and V(commented) only O(services[].name) and
            O(services[].type) are used.
        type: str
        choices: [present, absent, commented]
        default: present
      private:
        description:
          - Private service (C(y), C(n) or C(-) for the default). Unset keeps the current value; a new service gets C(-).
        type: str
      unpriv:
        description:
          - Unprivileged service (C(y), C(n) or C(-)). Unset keeps the current value; a new service gets C(-).
        type: str
      chroot:
        description:
          - Run chrooted (C(y), C(n) or C(-)). Unset keeps the current value; a new service gets C(-).
        type: str
      wakeup:
        description:
          - Wake-up time in seconds (C(60), C(60?) or C(-)). Unset keeps the current value; a new service gets C(-).
        type: str
      maxproc:
        description:
          - Process limit (a number, C(0) for none, or C(-) for C($default_process_limit)).
            Unset keeps the current value; a new service gets C(-).
        type: str
      command:
        description:
          - The daemon program (eighth column), such as C(smtpd) or C(pipe). Required to add a
            service; unset keeps the current one.
        type: str
      args:
        description:
          - The command's arguments after its options, such as C([flags=R, user=list, argv=/usr/bin/x]).
            They replace the current ones; unset keeps them. An argument with whitespace is
            written in braces (C({a b})).
        type: list
        elements: str
      options:
        description:
          - The C(-o name=value) overrides, as a dictionary. A value with whitespace is written
            C(-o {name=value}). A boolean is written C(yes)/C(no).
          - By default the service gets exactly these overrides (others are removed); see
            O(services[].options_exclusive). Unset keeps the current overrides.
        type: dict
      options_exclusive:
        description:
          - With V(false), overrides not in O(services[].options) are kept.
        type: bool
        default: true
  backup:
    description:
      - Copy master.cf to a time-stamped backup before changing it.
    type: bool
    default: false
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.lock_timeout
  - mailops.postfix.common.attributes
attributes:
  diff_mode:
    description: The whole master.cf before and after.
  platform:
    platforms: posix
    support: full
    description: Targets with Python 3.8 or later; the Postfix binaries are not needed.
notes:
  - Names and values may not contain a newline, a carriage return or a NUL byte, and braces
    must be balanced, so that one service can never be turned into several lines or entries.
  - The lock file is C(.master.cf.lock) beside master.cf.
seealso:
  - module: mailops.postfix.postconf
  - module: mailops.postfix.reload
  - name: master(5)
    description: The master.cf file format.
    link: https://www.postfix.org/master.5.html
"""

EXAMPLES = r"""
- name: Enable the submission service on port 587
  mailops.postfix.master_cf:
    services:
      - name: submission
        type: inet
        private: "n"
        chroot: "y"
        command: smtpd
        options:
          syslog_name: postfix/submission
          smtpd_tls_security_level: encrypt
          smtpd_sasl_auth_enable: "yes"
  notify: "mailops.postfix : reload"

- name: Add one override to smtp, keeping the others
  mailops.postfix.master_cf:
    services:
      - name: smtp
        type: inet
        options:
          smtpd_tls_security_level: may
        options_exclusive: false
    backup: true

- name: A content filter service and a pipe transport in one call
  mailops.postfix.master_cf:
    services:
      - name: 127.0.0.1:10026
        type: inet
        private: "n"
        maxproc: "10"
        command: smtpd
        options:
          content_filter: ""
          smtpd_recipient_restrictions: permit_mynetworks, reject
      - name: mailman
        type: unix
        unpriv: "n"
        chroot: "n"
        command: pipe
        args: [flags=FRX, user=list, "argv=/usr/lib/mailman/bin/postfix-to-mailman.py", "${nexthop}", "${user}"]

- name: Drop uucp, comment out relay
  mailops.postfix.master_cf:
    services:
      - {name: uucp, type: unix, state: absent}
      - {name: relay, type: unix, state: commented}
"""

RETURN = r"""
path:
  description: The master.cf file.
  returned: always
  type: str
  sample: /etc/postfix/master.cf
changed_services:
  description: The services (C(name/type)) whose entries changed (or would change in check mode).
  returned: always
  type: list
  elements: str
  sample: [submission/inet]
restart_required:
  description:
    - Whether a C(postfix stop; postfix start) is needed. Always V(false), since a reload makes
      master(8) re-read master.cf, start added services, stop removed ones and restart changed ones.
  returned: always
  type: bool
  sample: false
restart_services:
  description: The changed services that would need a restart rather than a reload (none, see RV(restart_required)).
  returned: always
  type: list
  elements: str
  sample: []
backup_file:
  description: The backup copy made before the change.
  returned: when O(backup=true) and master.cf changed
  type: str
  sample: /etc/postfix/master.cf.4242.2026-01-01@12:00:00~
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._atomic import DEFAULT_LOCK_TIMEOUT
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._mastercf import SERVICE_OPTIONS, edit_master_cf


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_dir=dict(type="path", default="/etc/postfix"),
            services=dict(type="list", elements="dict", required=True, options=SERVICE_OPTIONS),
            backup=dict(type="bool", default=False),
            lock_timeout=dict(type="float", default=DEFAULT_LOCK_TIMEOUT),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        res = edit_master_cf(p["config_dir"], p["services"], backup=p["backup"],
                             check_mode=module.check_mode, lock_timeout=p["lock_timeout"])
    except PostfixError as e:
        module.fail_json(msg=str(e))
    result = dict(
        changed=res["changed"],
        path=res["path"],
        changed_services=res["changed_services"],
        restart_required=res["restart_required"],
        restart_services=res["restart_services"],
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
