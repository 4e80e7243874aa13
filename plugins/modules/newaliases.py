#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: newaliases
short_description: Rebuild the Postfix alias databases, in Python
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - The Python equivalent of C(newaliases) (C(postalias) over every map of C(alias_database)).
  - Reads C(alias_database) from main.cf (a map without a C(type:) prefix uses
    C(default_database_type)) and rebuilds each map whose index is missing, older than its
    source, or whose records differ from what the source compiles to. Like C(newaliases),
    C(alias_maps) is not touched.
  - Indexes are compiled like C(postalias) writes them, including its extra records
    (C(@), C(YP_LAST_MODIFIED), C(YP_MASTER_NAME)), and replaced atomically under a lock.
options:
  force:
    description:
      - Rebuild every map even when it is current.
    type: bool
    default: false
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
  - mailops.postfix.common.lock_timeout
  - mailops.postfix.common.platform_lmdb
attributes:
  check_mode:
    support: full
    description: Reports which maps would be rebuilt and why, writing nothing.
  diff_mode:
    support: none
    description: Indexes are binary files; aliases sources are not changed by this module.
seealso:
  - module: mailops.postfix.aliases
  - module: mailops.postfix.postmap
  - name: newaliases(1)
    description: The Postfix manual page of the command this module replaces.
    link: https://www.postfix.org/newaliases.1.html
"""

EXAMPLES = r"""
- name: Rebuild /etc/aliases.db when /etc/aliases changed
  mailops.postfix.newaliases:

- name: Rebuild every alias database unconditionally
  mailops.postfix.newaliases:
    force: true
"""

RETURN = r"""
rebuilt:
  description: The maps rebuilt (or, in check mode, that would be), as C(type:path).
  returned: always
  type: list
  elements: str
  sample: ["hash:/etc/aliases"]
maps:
  description: Every map of C(alias_database) with its index, entry count and rebuild reason (null when current).
  returned: always
  type: list
  elements: dict
  sample: [{"map": "hash:/etc/aliases", "index": "/etc/aliases.db", "count": 12, "rebuild_reason": null}]
source_warnings:
  description: What postalias would warn about (duplicate names, lines it would skip), with file and line.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._atomic import DEFAULT_LOCK_TIMEOUT
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import rebuild_alias_databases


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_dir=dict(type="path", default="/etc/postfix"),
            force=dict(type="bool", default=False),
            lock_timeout=dict(type="float", default=DEFAULT_LOCK_TIMEOUT),
        ),
        supports_check_mode=True,
    )
    try:
        maps = rebuild_alias_databases(module.params["config_dir"], force=module.params["force"],
                                       check_mode=module.check_mode, lock_timeout=module.params["lock_timeout"])
    except PostfixError as e:
        module.fail_json(msg=str(e))
    warnings = [w for m in maps for w in m.pop("warnings")]
    for w in warnings:
        module.warn(w)
    rebuilt = [m["map"] for m in maps if m["rebuild_reason"]]
    module.exit_json(changed=bool(rebuilt), rebuilt=rebuilt, maps=maps, source_warnings=warnings)


if __name__ == "__main__":
    main()
