# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The driver shared by the lookup_table and aliases modules: one argument spec, one
edit-and-compile pass through _mapbuild, one way of reporting."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._atomic import DEFAULT_LOCK_TIMEOUT
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import (
    ALIASES, SOURCE_CHECKED_TYPES, Table, manage_entries,
)

INDEXED_CHOICES = ["hash", "cdb", "lmdb"]


def run(kind, path_default=None):
    """Build the module for ``kind`` (TABLE or ALIASES), run it and exit."""
    spec = dict(
        path=dict(type="path", default=path_default) if path_default else dict(type="path", required=True),
        entries=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        exclusive=dict(type="bool", default=False),
        compile=dict(type="bool", default=True),
        type=dict(type="str", choices=INDEXED_CHOICES + ([] if kind == ALIASES else list(SOURCE_CHECKED_TYPES))),
        config_dir=dict(type="path", default="/etc/postfix"),
        backup=dict(type="bool", default=False),
        lock_timeout=dict(type="float", default=DEFAULT_LOCK_TIMEOUT),
    )
    mutually_exclusive = []
    if kind == ALIASES:
        spec["allow_unsafe_targets"] = dict(type="bool", default=False)
    else:
        # Tables holding passwords (smtp_sasl_password_maps): values never reported.
        spec["secret_entries"] = dict(type="dict", no_log=True)
        spec["secret"] = dict(type="bool", default=False)
        mutually_exclusive.append(("entries", "secret_entries"))
    module = AnsibleModule(argument_spec=spec, mutually_exclusive=mutually_exclusive, supports_check_mode=True)
    p = module.params
    secret = bool(p.get("secret")) or p.get("secret_entries") is not None
    entries = p["secret_entries"] if p.get("secret_entries") is not None else p["entries"]
    if p.get("secret") and p.get("secret_entries") is None and p["state"] == "present" and any(
            v not in (None, "", []) for v in p["entries"].values()):
        # Module arguments are logged unless no_log: the values would show in -v output.
        module.fail_json(msg="%s: secret=true with values in entries would log them; use secret_entries" % p["path"])
    try:
        table = Table.for_source(p["path"], p["config_dir"], p["type"], kind=kind, secret=secret)
        result = manage_entries(table, entries, state=p["state"], exclusive=p["exclusive"],
                                compile_index=p["compile"], backup=p["backup"], check_mode=module.check_mode,
                                allow_unsafe_targets=p.get("allow_unsafe_targets", False),
                                lock_timeout=p["lock_timeout"])
    except PostfixError as e:
        module.fail_json(msg=str(e))
    for warning in result["source_warnings"]:
        module.warn(warning)
    module.exit_json(**result)
