#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: reload
short_description: Check the Postfix configuration, then make the running master re-read it
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - The Python equivalent of C(postfix reload), with a pre-flight check first. When a check
    fails the task fails and nothing is signalled.
  - "Checks: main.cf and master.cf parse and their C($name) expressions (master.cf's in C(-o)
    overrides) expand; every lookup table main.cf or a master.cf C(-o) override references (and
    each map of C(alias_database)) exists, and an indexed one (hash, btree, cdb, lmdb) has an
    index that is not older than its source (the stale ones are named, with the master.cf line,
    service and parameter for an override; types without an index, such as regexp, pcre, cidr
    or texthash, are never stale);
    no domain is in more than one address class (listed by two of C(mydestination),
    C(virtual_alias_domains), C(virtual_mailbox_domains) and C(relay_domains), read as
    M(mailops.postfix.postconf) reads them); main.cf,
    master.cf and the tables are not world-writable; main.cf and master.cf are owned by
    root (or the user running the task); master.cf exists."
  - Then it reads C(queue_directory) (main.cf, else the compiled-in default), the master pid
    from C($queue_directory/pid/master.pid), tells from the lock the master holds on that file
    whether it runs, checks in /proc that the pid is Postfix's C(master), and sends it SIGHUP.
    A pid file that names any other process is refused.
  - Postfix not running is not an error (RV(running) is false); with O(start_if_stopped=true)
    it is started, through systemd for /etc/postfix when systemd manages the host, else
    with C(postfix -c config_dir start).
  - Unlike C(postfix reload) it does not run C(postsuper) on the queue around the signal.
  - Some parameters are only read when the master starts (see M(mailops.postfix.postconf)'s
    C(restart_required)); a reload does not apply those.
options:
  config_dir:
    description:
      - The Postfix configuration directory holding main.cf and master.cf.
    type: path
    default: /etc/postfix
  start_if_stopped:
    description:
      - Start Postfix when it is not running (after the same checks).
    type: bool
    default: false
  wait:
    description:
      - After the signal, wait at most this many seconds for the daemons started before it to
        exit. master(8) tells them to, but an idle one (proxymap, smtpd) may still answer one more
        request with the old configuration; a task that queries Postfix right after the reload
        (a verify step) would see it. Those still running then (an SMTP session in progress) are
        returned in RV(old_processes). V(0) does not wait.
    type: float
    default: 10
attributes:
  check_mode:
    support: full
    description: Runs the checks and reports whether it would reload or start; signals nothing.
  diff_mode:
    support: none
    description: Changes no file.
  platform:
    platforms: posix
    support: full
    description: Linux targets (uses /proc) with Python 3.8 or later; run as root.
seealso:
  - module: mailops.postfix.postconf
  - module: mailops.postfix.postfix_info
  - name: postfix(1)
    description: The Postfix control program whose reload this module replaces.
    link: https://www.postfix.org/postfix.1.html
"""

EXAMPLES = r"""
- name: Reload Postfix (a handler)
  mailops.postfix.reload:
  listen: "mailops.postfix : reload"

- name: Reload, or start it when it is down
  mailops.postfix.reload:
    start_if_stopped: true

- name: Reload a second instance
  mailops.postfix.reload:
    config_dir: /etc/postfix-out
"""

RETURN = r"""
reloaded:
  description: Whether the master was sent SIGHUP (would be, in check mode).
  returned: success
  type: bool
  sample: true
old_processes:
  description:
    - After a reload, the pids of daemons from before the signal still running when O(wait) ran
      out (they finish their work with the old configuration).
  returned: when the master was running
  type: list
  elements: int
  sample: []
started:
  description: Whether Postfix was started (would be, in check mode).
  returned: success
  type: bool
  sample: false
start_method:
  description: How it was started (C(systemd) or C(postfix start)); null when not started.
  returned: success
  type: str
  sample: null
running:
  description: Whether the master runs (after a start, if one was done).
  returned: success
  type: bool
  sample: true
pid:
  description: The master's pid, when it runs.
  returned: success
  type: int
  sample: 4242
pid_file:
  description: The master's pid and lock file.
  returned: success
  type: str
  sample: /var/spool/postfix/pid/master.pid
queue_directory:
  description: The queue directory used to find the pid file.
  returned: success
  type: str
  sample: /var/spool/postfix
tables_checked:
  description: The lookup tables the pre-flight check looked at (main.cf's and master.cf's).
  returned: success
  type: list
  elements: str
  sample: [/etc/aliases, /etc/postfix/virtual]
problems:
  description: The failed pre-flight checks.
  returned: failure
  type: list
  elements: str
  sample:
    - "hash:/etc/postfix/virtual (virtual_alias_maps): index /etc/postfix/virtual.db is older than its source; run postmap/postalias"
    - "/etc/postfix/master.cf:17: submission/inet -o smtpd_recipient_restrictions: hash:/etc/postfix/access:
      index /etc/postfix/access.db is older than its source; run postmap/postalias"
stale_tables:
  description: The stale or missing indexes found by the pre-flight check.
  returned: failure
  type: list
  elements: str
  sample: [/etc/postfix/virtual.db]
domain_lists_not_checked:
  description:
    - The tables and files of the address class domain lists the pre-flight check could not
      read, so the names in them were not compared, each naming the parameter, the table or file, and why.
  returned: success
  type: list
  elements: str
  sample: ["relay_domains: mysql:/etc/postfix/relay-domains.cf (mysql tables are not read here)"]
warnings_main_cf:
  description: What Postfix would warn about while reading main.cf.
  returned: success
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._postfix import PreflightFailed, reload


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_dir=dict(type="path", default="/etc/postfix"),
            start_if_stopped=dict(type="bool", default=False),
            wait=dict(type="float", default=10.0),
        ),
        supports_check_mode=True,
    )
    try:
        result = reload(module.params["config_dir"], start_if_stopped=module.params["start_if_stopped"],
                        check_mode=module.check_mode, wait=module.params["wait"])
    except PreflightFailed as e:
        module.fail_json(msg=str(e), problems=e.problems, stale_tables=e.stale)
    except PostfixError as e:
        module.fail_json(msg=str(e))
    result["warnings_main_cf"] = result.pop("warnings")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
