# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Inventory merge and validation of the mailops.postfix.server role.

Each function walks its input once (O(n) in the number of aliases and targets).
The documentation of each filter is in the YAML file of the same name next to this one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ansible.errors import AnsibleFilterError

# Targets only allowed in /etc/aliases: they run programs, write files or read a list.
UNSAFE_TARGET_RE = re.compile(r'^"?(\||/|:include:)')
DOMAIN_RE = re.compile(r'^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)+$')
BAD_ALIAS_KEY_RE = re.compile(r'[\s,:]')
BAD_LOCAL_NAME_RE = re.compile(r'[\s,@:]')
SPACE_RE = re.compile(r'\s')
MYDESTINATION_SEP_RE = re.compile(r'[\s,]+')

# main.cf parameters the role writes itself.
ROLE_PARAMS = ('virtual_alias_domains', 'virtual_alias_maps', 'alias_maps', 'alias_database')


def _or_default(value, default):
    """Like Jinja's default(x, true): a missing or false value gives the default."""
    return value if value else default


def _targets(value):
    """A target value (none, comma-separated string, list or scalar) as a list of trimmed strings."""
    if value is None:
        items = []
    elif isinstance(value, str):
        items = value.split(',')
    elif isinstance(value, Iterable) and not isinstance(value, Mapping):
        items = value
    else:
        items = [value]
    return [str(t).strip() for t in items]


def _sort_key(item):
    """Sort key of Jinja's dictsort: by key, case-insensitively."""
    key = item[0]
    return key.lower() if isinstance(key, str) else key


def _mapping(value, where):
    if not isinstance(value, Mapping):
        raise AnsibleFilterError('%s must be a dictionary, got %s' % (where, type(value).__name__))
    return value


def server_domains(fleet, *more):
    """Merge virtual alias domain lists (fleet, then host): one entry per domain, later layers win per alias."""
    merged = {}
    for layer in (fleet,) + more:
        for item in _or_default(layer, []):
            if not isinstance(item, Mapping):
                continue
            name = str(_or_default(item.get('domain'), '')).strip().lower()
            entry = merged.setdefault(name, {'domain': name, 'aliases': {}})
            aliases = _or_default(item.get('aliases'), {})
            if isinstance(aliases, Mapping):
                entry['aliases'].update(aliases)
            if item.get('catch_all') is not None:
                entry['catch_all'] = item['catch_all']
    return list(merged.values())


def server_virtual_entries(domains):
    """Virtual alias map entries of merged domains: address (or @domain for a catch-all) -> targets."""
    out = {}
    for d in domains:
        domain = d['domain']
        for alias, targets in sorted(d['aliases'].items(), key=_sort_key):
            key = str(alias).strip().lower()
            if '@' not in key:
                key = key + '@' + domain
            out[key] = _targets(targets)
        if 'catch_all' in d:
            out['@' + domain] = _targets(d['catch_all'])
    return out


def server_alias_entries(base, *more):
    """/etc/aliases entries of layered alias dictionaries (later layers win per name)."""
    out = {}
    for i, layer in enumerate((base,) + more):
        for name, targets in _mapping(_or_default(layer, {}), 'aliases layer %d' % i).items():
            out[str(name).strip().lower()] = _targets(targets)
    return out


def _mydestination(main_cf):
    """The names of mydestination, with $myhostname and $mydomain expanded, lower-cased."""
    if 'mydestination' not in main_cf:
        return []
    myhostname = str(main_cf.get('myhostname', '')).lower()
    mydomain = str(main_cf.get('mydomain', myhostname.split('.', 1)[1] if '.' in myhostname else '')).lower()
    md = main_cf['mydestination']
    names = md if not isinstance(md, str) and isinstance(md, Iterable) else MYDESTINATION_SEP_RE.split(str(md))
    out = []
    for name in names:
        name = str(name).strip().lower()
        if myhostname:
            name = name.replace('${myhostname}', myhostname).replace('$myhostname', myhostname)
        if mydomain:
            name = name.replace('${mydomain}', mydomain).replace('$mydomain', mydomain)
        out.append(name)
    return out


def _domain_problems(var, items, mydest, out):
    for index, item in enumerate(_or_default(items, [])):
        where = '%s[%d]' % (var, index)
        if not isinstance(item, Mapping):
            item = {}
        domain = str(_or_default(item.get('domain'), '')).strip().lower()
        if not DOMAIN_RE.match(domain):
            out.append('%s.domain: %s is not a domain name' % (where, item.get('domain', '')))
        elif domain in mydest:
            out.append('%s.domain: %s is also in mydestination (%s); a domain must never be both'
                       ' a virtual alias domain and in mydestination' % (where, domain, ', '.join(mydest)))
        aliases = _mapping(_or_default(item.get('aliases'), {}), where + '.aliases')
        entries = [(str(key).strip(), value, False) for key, value in aliases.items()]
        if item.get('catch_all') is not None:
            entries.append(('@' + domain, item['catch_all'], True))
        for key, value, catch_all in entries:
            label = where + ('.catch_all' if catch_all else '.aliases: ' + key)
            if not catch_all and (key == '' or BAD_ALIAS_KEY_RE.search(key) or key.startswith('@')):
                out.append(label + ' is not a local part or an address')
            elif not catch_all and '@' in key and key.split('@')[-1].lower() != domain:
                out.append('%s is not an address in %s' % (label, domain))
            else:
                for t in _given_targets(label, value, out):
                    if UNSAFE_TARGET_RE.search(t):
                        out.append('%s: %s is a command, file or include; virtual aliases take addresses'
                                   ' (route to a name in postfix_server_aliases instead)' % (label, t))
                    elif SPACE_RE.search(t):
                        out.append('%s: %s contains a space; give one target per list item' % (label, t))


def _given_targets(label, value, out):
    """The non-empty targets of ``value``, in order; a value with no target at all, or an empty
    one among others, is reported in ``out`` at its place."""
    targets = _targets(value)
    if not any(targets):
        out.append('%s has no target (%s)' % (label, value))
        return
    for t in targets:
        if t == '':
            out.append('%s has an empty target in %s' % (label, value))
        else:
            yield t


def _alias_problems(var, aliases, allow_unsafe_targets, out):
    for name, value in _mapping(_or_default(aliases, {}), var).items():
        key = str(name).strip()
        label = var + '.' + key
        if key == '' or BAD_LOCAL_NAME_RE.search(key):
            out.append('%s: %s is not a local alias name' % (var, key))
        else:
            for t in _given_targets(label, value, out):
                if UNSAFE_TARGET_RE.search(t) and not allow_unsafe_targets:
                    out.append('%s: %s runs a command or writes a file as the recipient;'
                               ' set postfix_server_allow_unsafe_targets: true to allow it' % (label, t))


def server_problems(inventory, allow_unsafe_targets=False):
    """Every inventory mistake of the server role's variables, each naming the variable and the value."""
    inventory = _mapping(inventory, 'the inventory')
    out = []
    main_cf = {}
    for var in ('postfix_server_main_cf', 'postfix_server_main_cf_host'):
        params = _mapping(_or_default(inventory.get(var), {}), var)
        for name in ROLE_PARAMS:
            if name in params:
                out.append('%s.%s: %s is set by the role (from postfix_server_virtual_alias_domains and'
                           ' postfix_server_table_type); remove it' % (var, name, params[name]))
        main_cf.update(params)
    mydest = _mydestination(main_cf)
    for var in ('postfix_server_virtual_alias_domains', 'postfix_server_virtual_alias_domains_host'):
        _domain_problems(var, inventory.get(var), mydest, out)
    for var in ('postfix_server_aliases', 'postfix_server_aliases_host'):
        _alias_problems(var, inventory.get(var), allow_unsafe_targets, out)
    return out


class FilterModule:
    """Inventory merge and validation of the server role."""

    def filters(self):
        return {
            'server_domains': server_domains,
            'server_virtual_entries': server_virtual_entries,
            'server_alias_entries': server_alias_entries,
            'server_problems': server_problems,
        }
