# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action of mailops.postfix.server_inventory: the server role's inventory checked and resolved
on the controller (the documentation is in plugins/modules/server_inventory.py)."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.mailops.postfix.plugins.filter.server_inventory import INVENTORY_VARS, server_inventory

# The entries as dictionaries; the same entries are in the *_text results.
ENTRY_DICTS = ('mailbox_entries', 'virtual_entries', 'alias_entries')


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(('base_aliases', 'allow_unsafe_targets', 'return_entries'))

    def _rendered(self, value):
        """``value`` with each string that holds a template rendered, walked once in plain Python.

        Templating the whole variable at once renders it through Ansible's lazy containers,
        string by string (about 50 microseconds each: 0.5 s for 10,000 aliases); almost none of
        an alias list's strings holds a template, and a string without one renders to itself.
        Keys are kept as they are, as Ansible's templating keeps them."""
        if isinstance(value, str):
            return self._templar.template(value) if self._templar.is_possibly_template(value) else value
        if isinstance(value, Mapping):
            return {k: self._rendered(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._rendered(v) for v in value]
        return value

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _spec, args = self.validate_argument_spec(argument_spec=dict(
            base_aliases=dict(type='dict', default={}),
            allow_unsafe_targets=dict(type='bool', default=False),
            return_entries=dict(type='bool', default=True),
        ))
        missing = [name for name in INVENTORY_VARS if name not in task_vars]
        if missing:
            raise AnsibleActionFail('not defined: %s (the role defaults define them)' % ', '.join(missing))
        inventory = {name: self._rendered(task_vars[name]) for name in INVENTORY_VARS}
        result.update(server_inventory(inventory, args['base_aliases'],
                                       allow_unsafe_targets=args['allow_unsafe_targets']))
        if not args['return_entries']:
            # Ansible walks every value of a registered result once more (the register
            # projection): 10,000 entries twice over, dictionaries and texts, for nothing.
            result.update((name, {}) for name in ENTRY_DICTS)
        result['changed'] = False
        return result
