#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postconf
short_description: Set, remove or comment out Postfix main.cf parameters, in Python
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - The Python equivalent of C(postconf -e) (O(state=present)), C(postconf -X)
    (O(state=absent)) and C(postconf -#) (O(state=commented)), for many parameters in one call.
  - Every definition of a parameter is replaced in place (its continuation lines with it;
    comment lines between them stay); parameters not yet in the file are appended at the
    end in C(strcmp) order. Comments, blank lines and every untouched line keep their bytes.
  - Unlike C(postconf -e), an edit that changes nothing rewrites nothing (the file and its
    mtime stay as they are), and the file keeps its owner, group and mode (C(postconf -e)
    always leaves it 0644 and owned by the caller). It is replaced atomically under a lock.
  - Refuses, writing nothing, a change after which a domain would be in more than one
    address class, that is listed by two of C(mydestination) (local),
    C(virtual_alias_domains), C(virtual_mailbox_domains) and C(relay_domains) (see
    ADDRESS_CLASS_README). Lists are compared after C($name) expansion, case-folded,
    with C(/file/name) lists and the keys of C(hash:), C(cdb:), C(lmdb:), C(texthash:) and
    C(inline:) tables read (an indexed table through its index, else its source); other
    tables are not read (RV(domain_lists_not_checked)). A name that C(relay_domains) gets
    only through C($mydestination) (its default below C(compatibility_level = 2)) does not
    count.
  - The whole file after the edit is judged; a change is refused while any domain is in
    two classes, also one that was there before; a call that changes nothing never fails.
  - A main.cf change takes effect with a reload (M(mailops.postfix.reload)), except for the
    parameters the master reads only when it starts (RV(restart_params)).
options:
  params:
    description:
      - With O(state=present), a dictionary of parameter name to value. A value is a string,
        an integer, a boolean (written C(yes)/C(no)) or a list (written C(a, b)); a list
        matches an existing value with the same items however it is separated or split over
        continuation lines.
      - With O(state=absent) or O(state=commented), a list of names (a dictionary's values are
        ignored).
      - Names are letters, digits and underscores. Values may not contain a newline, a
        carriage return or a NUL byte.
    type: raw
    required: true
  state:
    description:
      - V(present) sets the parameters, V(absent) removes them, V(commented) comments them out
        (C(#) before the first line and before each continuation line).
    type: str
    choices: [present, absent, commented]
    default: present
  backup:
    description:
      - Copy main.cf to a time-stamped backup before changing it.
    type: bool
    default: false
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.lock_timeout
  - mailops.postfix.common.attributes
  - mailops.postfix.common.platform
attributes:
  diff_mode:
    description: The whole main.cf before and after.
notes:
  - When Postfix is installed, its compiled-in defaults (C(postconf -d)) are used to expand
    C($name) references for the address class check; without it, Postfix 3.7's defaults.
seealso:
  - module: mailops.postfix.reload
  - module: mailops.postfix.postfix_info
  - name: postconf(5)
    description: The Postfix configuration parameters.
    link: https://www.postfix.org/postconf.5.html
"""

EXAMPLES = r"""
- name: Serve a virtual alias domain
  mailops.postfix.postconf:
    params:
      virtual_alias_domains: [chrisbinnie.tld]
      virtual_alias_maps: hash:/etc/postfix/virtual
      alias_maps: hash:/etc/aliases
  notify: "mailops.postfix : reload"

- name: Limit message size (an integer is fine)
  mailops.postfix.postconf:
    params:
      message_size_limit: 20480000
    backup: true

- name: Drop a relay host
  mailops.postfix.postconf:
    params: [relayhost]
    state: absent

- name: Comment out a setting, keeping it for reference
  mailops.postfix.postconf:
    config_dir: /etc/postfix-out
    params: [smtpd_banner]
    state: commented
"""

RETURN = r"""
path:
  description: The main.cf file.
  returned: always
  type: str
  sample: /etc/postfix/main.cf
changed_params:
  description: The parameters whose lines changed (or would change in check mode).
  returned: always
  type: list
  elements: str
  sample: [virtual_alias_domains, virtual_alias_maps]
restart_required:
  description:
    - Whether a changed parameter is one the master reads only at start, so that
      C(postfix stop; postfix start) is needed instead of a reload.
  returned: always
  type: bool
  sample: false
restart_params:
  description:
    - The changed parameters that need a restart, out of C(config_directory),
      C(data_directory), C(import_environment), C(inet_interfaces), C(inet_protocols),
      C(queue_directory).
  returned: always
  type: list
  elements: str
  sample: [inet_interfaces]
backup_file:
  description: The backup copy made before the change.
  returned: when O(backup=true) and main.cf changed
  type: str
  sample: /etc/postfix/main.cf.4242.2026-01-01@12:00:00~
domain_lists_not_checked:
  description:
    - The tables and files of the address class domain lists that could not be read, so
      the names in them were not compared, each naming the parameter, the table or file, and why. Empty
      when nothing changed.
  returned: always
  type: list
  elements: str
  sample: ["virtual_mailbox_domains: ldap:/etc/postfix/ldap-domains.cf (ldap tables are not read here)"]
warnings_main_cf:
  description: What Postfix would warn about main.cf (duplicate definitions, stray continuation lines).
  returned: always
  type: list
  elements: str
  sample: ["/etc/postfix/main.cf:40: overriding earlier entry: relayhost="]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._atomic import DEFAULT_LOCK_TIMEOUT
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._postfix import edit_main_cf


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_dir=dict(type="path", default="/etc/postfix"),
            params=dict(type="raw", required=True),
            state=dict(type="str", default="present", choices=["present", "absent", "commented"]),
            backup=dict(type="bool", default=False),
            lock_timeout=dict(type="float", default=DEFAULT_LOCK_TIMEOUT),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        res = edit_main_cf(p["config_dir"], p["params"], state=p["state"], backup=p["backup"],
                           check_mode=module.check_mode, lock_timeout=p["lock_timeout"])
    except PostfixError as e:
        module.fail_json(msg=str(e))
    result = dict(
        changed=res["changed"],
        path=res["path"],
        changed_params=res["changed_params"],
        restart_required=res["restart_required"],
        restart_params=res["restart_params"],
        warnings_main_cf=res["warnings"],
        domain_lists_not_checked=res["domain_lists_not_checked"],
    )
    if res["backup_file"]:
        result["backup_file"] = res["backup_file"]
    if res["changed"] and module._diff:
        result["diff"] = {
            "before": res["before"].decode("utf-8", "replace"),
            "after": res["after"].decode("utf-8", "replace"),
            "before_header": res["path"],
            "after_header": res["path"],
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
