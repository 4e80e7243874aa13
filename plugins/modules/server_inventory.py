#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: server_inventory
short_description: Check and resolve the server role's inventory on the controller
version_added: "0.5.0"
author: mailops.postfix maintainers (@mailops)
description:
  - The first step of the M(mailops.postfix.server) role, as an action that runs on the
    controller and never contacts the host. It reads the role's inventory variables
    (C(postfix_server_virtual_alias_domains), C(postfix_server_aliases), C(postfix_server_maps),
    C(postfix_server_main_cf) and the others the filter P(mailops.postfix.server_inventory#filter)
    takes, each with its C(_host) layer) as they are defined for the host, renders the strings
    that hold a template, and returns what that filter returns.
  - The same check as the filter, faster on large inventories. A filter receives its input
    through Ansible's templating, which renders every string of 10,000 aliases again
    (0.5 s at that size); this action walks the variables once and renders only the strings
    that hold a template.
  - Reports problems, never fails on them. The role asserts that RV(problems) is empty before
    anything on the host changes, and registers the result with C(no_log) (the entries of
    secret maps are in it).
options:
  base_aliases:
    description: Aliases every host gets before the fleet's and the host's (the role's C(postmaster)).
    type: dict
    default: {}
  allow_unsafe_targets:
    description:
      - Allow C(|command), C(/file) and C(:include:) targets in C(/etc/aliases) (never in virtual
        maps), as C(postfix_server_allow_unsafe_targets).
    type: bool
    default: false
  return_entries:
    description:
      - Return RV(mailbox_entries), RV(virtual_entries) and RV(alias_entries). V(false) returns
        them empty; the same entries are in RV(mailbox_text), RV(virtual_text) and RV(alias_text),
        and RV(counts) still counts them. The role passes V(false) (it writes and checks the
        tables from the texts), as Ansible walks every value of a registered result once more (10,000
        entries took 0.1 to 0.2 s of every host's run).
    type: bool
    default: true
extends_documentation_fragment:
  - mailops.postfix.common.read_only
attributes:
  action:
    support: full
    description: Runs on the controller.
  platform:
    platforms: all
    support: full
    description: Runs on the controller only.
seealso:
  - plugin: mailops.postfix.server_inventory
    plugin_type: filter
  - module: mailops.postfix.config
"""

EXAMPLES = r"""
- name: Resolve the inventory (domains, mailboxes, aliases, targets, main.cf)
  mailops.postfix.server_inventory:
    base_aliases:
      postmaster: [root]
  register: server_inventory
  no_log: true

- name: Check the inventory
  ansible.builtin.assert:
    that: server_inventory.problems | length == 0
    fail_msg: "{{ server_inventory.problems }}"
"""

RETURN = r"""
problems:
  description: Every inventory mistake, each naming the variable and the value; empty when all is well.
  returned: always
  type: list
  elements: str
domains:
  description: The merged virtual alias domains (fleet, then host), by name.
  returned: always
  type: list
  elements: dict
mailbox_domains:
  description: The merged virtual mailbox domains, by name.
  returned: always
  type: list
  elements: dict
mailbox_entries:
  description: The virtual mailbox map, address to mailbox path (empty while there is a problem, and with O(return_entries=false)).
  returned: always
  type: dict
virtual_entries:
  description: The virtual alias map, address (or C(@domain)) to its targets as one string (empty with O(return_entries=false)).
  returned: always
  type: dict
alias_entries:
  description: The entries of C(/etc/aliases), name to its targets as one string (empty with O(return_entries=false)).
  returned: always
  type: dict
mailbox_text:
  description: RV(mailbox_entries) as one string, C(KEY<TAB>VALUE) per line (M(mailops.postfix.config)'s C(entries_text)).
  returned: always
  type: str
virtual_text:
  description: RV(virtual_entries) as one string, the same way.
  returned: always
  type: str
alias_text:
  description: RV(alias_entries) as one string, the same way.
  returned: always
  type: str
addresses:
  description: The addresses the role routes, the keys of RV(virtual_entries) but the catch-alls (C(@domain)), then the mailboxes.
  returned: always
  type: list
  elements: str
counts:
  description: >-
    The number of each of RV(domains), RV(mailbox_domains), RV(mailbox_entries), RV(virtual_entries), RV(alias_entries)
    and RV(addresses).
  returned: always
  type: dict
  sample: {domains: 2, mailbox_domains: 0, mailbox_entries: 0, virtual_entries: 12, alias_entries: 3, addresses: 11}
"""
