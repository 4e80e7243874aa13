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

from ansible_collections.mailops.postfix.plugins.module_utils._address_classes import crossings
from ansible_collections.mailops.postfix.plugins.module_utils._address_classes import message as crossing_message

# Targets only allowed in /etc/aliases: they run programs, write files or read a list.
UNSAFE_TARGET_RE = re.compile(r'^"?(\||/|:include:)')
DOMAIN_RE = re.compile(r'^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)+$')
BAD_ALIAS_KEY_RE = re.compile(r'[\s,:]')
BAD_LOCAL_NAME_RE = re.compile(r'[\s,@:]')
SPACE_RE = re.compile(r'\s')
MYDESTINATION_SEP_RE = re.compile(r'[\s,]+')

# main.cf parameters the role writes itself, and the variables they come from.
ROLE_PARAMS = {
    'virtual_alias_domains': 'postfix_server_virtual_alias_domains and postfix_server_table_type',
    'virtual_alias_maps': 'postfix_server_virtual_alias_domains and postfix_server_table_type',
    'alias_maps': 'postfix_server_virtual_alias_domains and postfix_server_table_type',
    'alias_database': 'postfix_server_virtual_alias_domains and postfix_server_table_type',
    'virtual_mailbox_domains': 'postfix_server_virtual_mailbox_domains',
    'virtual_mailbox_maps': 'postfix_server_virtual_mailbox_map and postfix_server_table_type',
    'virtual_mailbox_base': 'postfix_server_virtual_mailbox_base',
    'virtual_uid_maps': 'postfix_server_vmail_uid',
    'virtual_gid_maps': 'postfix_server_vmail_gid',
    'virtual_minimum_uid': 'postfix_server_virtual_minimum_uid',
    'virtual_transport': 'postfix_server_virtual_transport',
}

# Options of a virtual mailbox user, and its states.
USER_OPTIONS = ('mailbox', 'state')
USER_STATES = ('present', 'absent')
# Postfix's own lower bound of virtual_minimum_uid (mail_params.c: at least 1).
MINIMUM_UID_FLOOR = 1
BAD_ACCOUNT_NAME_RE = re.compile(r'[\s,:/]')
BAD_TRANSPORT_RE = re.compile(r'[\s,]')


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


def _domain_name(item):
    return str(_or_default(item.get('domain'), '')).strip().lower()


def _alias_address(alias, domain):
    """An alias key (local part or address) as the address it stands for, lower-cased."""
    key = str(alias).strip().lower()
    return key if '@' in key else key + '@' + domain


def _merge_aliases(entry, item):
    aliases = _or_default(item.get('aliases'), {})
    if isinstance(aliases, Mapping):
        entry['aliases'].update(aliases)
    if item.get('catch_all') is not None:
        entry['catch_all'] = item['catch_all']


def server_domains(fleet, *more):
    """Merge virtual alias domain lists (fleet, then host): one entry per domain, later layers win per alias."""
    merged = {}
    for layer in (fleet,) + more:
        for item in _or_default(layer, []):
            if not isinstance(item, Mapping):
                continue
            name = _domain_name(item)
            _merge_aliases(merged.setdefault(name, {'domain': name, 'aliases': {}}), item)
    return list(merged.values())


def server_virtual_entries(domains):
    """Virtual alias map entries of merged domains: address (or @domain for a catch-all) -> targets."""
    out = {}
    for d in domains:
        domain = d['domain']
        for alias, targets in sorted(d['aliases'].items(), key=_sort_key):
            out[_alias_address(alias, domain)] = _targets(targets)
        if 'catch_all' in d:
            out['@' + domain] = _targets(d['catch_all'])
    return out


# Virtual mailbox domains


def _user_local_part(key, domain):
    """A users key (local part, or an address in ``domain``) as its folded local part; an address
    in another domain comes back whole (folded), for server_problems to report."""
    key = str(key).strip().lower()
    local, at, rest = key.rpartition('@')
    return local if at and rest == domain else key


def _user_options(value):
    return dict(value) if isinstance(value, Mapping) else {}


def _is_present(options):
    return str(_or_default(options.get('state'), 'present')).strip().lower() != 'absent'


def _present_users(domain):
    return {local for local, options in domain['users'].items() if local and _is_present(options)}


def _mailbox_path(domain, local, options):
    """The mailbox of a user relative to virtual_mailbox_base: its option, else DOMAIN/LOCAL/ (Maildir)."""
    path = options.get('mailbox')
    if path is None or str(path).strip() == '':
        return '%s/%s/' % (domain, local)
    return str(path).strip()


def server_mailbox_domains(fleet, *more):
    """Merge virtual mailbox domain lists (fleet, then host): one entry per domain, later layers win per
    user and per alias."""
    merged = {}
    for layer in (fleet,) + more:
        for item in _or_default(layer, []):
            if not isinstance(item, Mapping):
                continue
            name = _domain_name(item)
            entry = merged.setdefault(name, {'domain': name, 'users': {}, 'aliases': {}})
            users = _or_default(item.get('users'), {})
            if isinstance(users, Mapping):
                for key, options in users.items():
                    entry['users'][_user_local_part(key, name)] = _user_options(options)
            _merge_aliases(entry, item)
    return list(merged.values())


def server_mailbox_entries(domains):
    """Virtual mailbox map entries of merged mailbox domains: address -> mailbox path (users not absent)."""
    out = {}
    for d in domains:
        for local, options in sorted(d['users'].items(), key=_sort_key):
            if local and _is_present(options):
                out[local + '@' + d['domain']] = _mailbox_path(d['domain'], local, options)
    return out


def _expand_target(target, domain, users):
    """A bare name that is a user of the mailbox domain stands for that user's address."""
    if '@' not in target and target.lower() in users:
        return target.lower() + '@' + domain
    return target


def server_mailbox_virtual_entries(domains):
    """Virtual alias map entries of merged mailbox domains: their aliases, and with a catch-all an
    identity entry per user (so that the catch-all does not take the users' mail) before @domain."""
    out = {}
    for d in domains:
        domain = d['domain']
        users = _present_users(d)
        for alias, targets in sorted(d['aliases'].items(), key=_sort_key):
            out[_alias_address(alias, domain)] = [_expand_target(t, domain, users) for t in _targets(targets)]
        if 'catch_all' in d:
            for local in sorted(users):
                address = local + '@' + domain
                out.setdefault(address, [address])
            out['@' + domain] = [_expand_target(t, domain, users) for t in _targets(d['catch_all'])]
    return out


def server_alias_entries(base, *more):
    """/etc/aliases entries of layered alias dictionaries (later layers win per name)."""
    out = {}
    for i, layer in enumerate((base,) + more):
        for name, targets in _mapping(_or_default(layer, {}), 'aliases layer %d' % i).items():
            out[str(name).strip().lower()] = _targets(targets)
    return out


# Problems


def _main_cf_names(main_cf, name):
    """A main.cf domain list split (string or list), lower-cased, with $myhostname and $mydomain
    expanded; [] when the parameter is not set."""
    if name not in main_cf:
        return []
    myhostname = str(main_cf.get('myhostname', '')).lower()
    mydomain = str(main_cf.get('mydomain', myhostname.split('.', 1)[1] if '.' in myhostname else '')).lower()
    value = main_cf[name]
    names = value if not isinstance(value, str) and isinstance(value, Iterable) else MYDESTINATION_SEP_RE.split(
        str(value))
    out = []
    for item in names:
        item = str(item).strip().lower()
        if myhostname:
            item = item.replace('${myhostname}', myhostname).replace('$myhostname', myhostname)
        if mydomain:
            item = item.replace('${mydomain}', mydomain).replace('$mydomain', mydomain)
        if item:
            out.append(item)
    return out


def _mydestination(main_cf):
    """The names of mydestination, with $myhostname and $mydomain expanded, lower-cased."""
    return _main_cf_names(main_cf, 'mydestination')


def _relay_domains(main_cf):
    """The domain names written into relay_domains: $mydestination (names it only inherits, the
    idiom of older releases) and type:table or /file entries are left out."""
    return [name for name in _main_cf_names(main_cf, 'relay_domains')
            if ':' not in name and '/' not in name and not name.startswith('$')]


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


def _virtual_alias_problems(where, domain, item, out, target_check=None):
    """The aliases and catch-all of one domain item (virtual alias or virtual mailbox domain).

    ``target_check(key, value, catch_all)``: None, or a function giving why a target of that entry
    is refused (or None)."""
    aliases = _mapping(_or_default(item.get('aliases'), {}), where + '.aliases')
    entries = [(key, value, False) for key, value in aliases.items()]
    if item.get('catch_all') is not None:
        entries.append(('@' + domain, item['catch_all'], True))
    for raw_key, value, catch_all in entries:
        key = str(raw_key).strip()
        label = where + ('.catch_all' if catch_all else '.aliases: ' + key)
        if not catch_all and (key == '' or BAD_ALIAS_KEY_RE.search(key) or key.startswith('@')):
            out.append(label + ' is not a local part or an address')
        elif not catch_all and '@' in key and key.rsplit('@', 1)[-1].lower() != domain:
            out.append('%s is not an address in %s' % (label, domain))
        else:
            target_problem = target_check(raw_key, value, catch_all) if target_check is not None else None
            for t in _given_targets(label, value, out):
                if UNSAFE_TARGET_RE.search(t):
                    out.append('%s: %s is a command, file or include; virtual aliases take addresses'
                               ' (route to a name in postfix_server_aliases instead)' % (label, t))
                elif SPACE_RE.search(t):
                    out.append('%s: %s contains a space; give one target per list item' % (label, t))
                elif target_problem is not None:
                    problem = target_problem(t)
                    if problem:
                        out.append('%s: %s' % (label, problem))


def _domain_problems(var, items, mydest, crossed, out):
    for index, item in enumerate(_or_default(items, [])):
        where = '%s[%d]' % (var, index)
        if not isinstance(item, Mapping):
            item = {}
        domain = _domain_name(item)
        if not DOMAIN_RE.match(domain):
            out.append('%s.domain: %s is not a domain name' % (where, item.get('domain', '')))
        elif domain in mydest:
            out.append('%s.domain: %s is also in mydestination (%s); a domain must never be both'
                       ' a virtual alias domain and in mydestination' % (where, domain, ', '.join(mydest)))
        elif domain in crossed and crossed[domain][-1][0] == 'relay_domains' and len(crossed[domain]) == 2:
            # Crossings with virtual mailbox domains are reported on those.
            out.append(_crossing_problem(where + '.domain', domain, crossed[domain],
                                         ('virtual_alias_domains', where)))
        _virtual_alias_problems(where, domain, item, out)


def _class_crossings(inventory, main_cf_vars, mydest, relay):
    """The domains inventory puts in more than one address class (_address_classes.crossings):
    domain -> [(class parameter, where inventory lists it)], in Postfix's resolve order."""
    def where(param):
        return [var for var, params in main_cf_vars if param in params][-1:] or ['postfix_server_main_cf']

    alias = _declared_domains(inventory, ALIAS_DOMAIN_VARS)
    mailbox = _declared_domains(inventory, MAILBOX_DOMAIN_VARS)
    origins = {'mydestination': dict.fromkeys(mydest, where('mydestination')[0] + '.mydestination'),
               'virtual_alias_domains': alias, 'virtual_mailbox_domains': mailbox,
               'relay_domains': dict.fromkeys(relay, where('relay_domains')[0] + '.relay_domains')}
    found = crossings({param: [d for d in names if DOMAIN_RE.match(d)] for param, names in origins.items()})
    return {domain: [(param, origins[param][domain]) for param in params] for domain, params in found}


def _crossing_problem(label, domain, places, own=None):
    """``label``: the crossing of ``domain`` over ``places`` ((param, where) pairs) in
    _address_classes' words; ``own`` replaces where its own class lists it."""
    params = [param for param, _where in places]
    origins = [own[1] if own and param == own[0] else where for param, where in places]
    return '%s: %s' % (label, crossing_message([(domain, params, origins)], refusing=False))


def _path_problem(path):
    """Why a mailbox path relative to virtual_mailbox_base is refused, or None."""
    if path == '':
        return 'is empty'
    if path.startswith('/'):
        return 'is an absolute path; a mailbox is a path under postfix_server_virtual_mailbox_base'
    parts = path.split('/')
    if '..' in parts:
        return 'leaves postfix_server_virtual_mailbox_base (a .. segment)'
    if SPACE_RE.search(path):
        return 'contains white space'
    if '.' in parts or '' in parts[:-1]:
        return 'has an empty or . segment; write it plainly (DIR/SUBDIR/ for a Maildir)'
    return None


def _user_problems(where, domain, users, seen, out):
    """The users of one mailbox domain item. ``seen``: address -> (label, mailbox, present), the
    declaration that wins so far (later layers replace earlier ones)."""
    here = {}
    for key, options in users.items():
        name = str(key).strip()
        label = '%s.users: %s' % (where, name)
        local = _user_local_part(name, domain)
        if local == '' or name.startswith('@'):
            out.append(label + ' has no local part')
        elif BAD_ALIAS_KEY_RE.search(name):
            out.append(label + ' is not a local part or an address')
        elif '@' in local:
            out.append('%s is not an address in %s' % (label, domain))
        elif local in here:
            out.append('%s is a duplicate of user %s (the same address, %s@%s)' % (label, here[local], local, domain))
        elif options is not None and not isinstance(options, Mapping):
            here[local] = name
            out.append('%s: %s is not a dictionary of options (mailbox, state)' % (label, options))
        else:
            here[local] = name
            options = _user_options(options)
            for option in options:
                if option not in USER_OPTIONS:
                    out.append('%s: unknown option %s (known: %s)' % (label, option, ', '.join(USER_OPTIONS)))
            state = options.get('state')
            if state is not None and str(state).strip().lower() not in USER_STATES:
                out.append('%s: state %s is not present or absent' % (label, state))
            path = _mailbox_path(domain, local, options)
            if options.get('mailbox') is not None:
                path = str(options['mailbox']).strip()
            problem = _path_problem(path)
            if problem:
                out.append('%s: mailbox %s %s' % (label, path, problem))
            seen[local + '@' + domain] = (label, path, _is_present(options))


def _shared_mailboxes(seen, out):
    """Two present users delivering into one mailbox."""
    owners = {}
    for address, (label, path, present) in seen.items():
        if not present:
            continue
        first = owners.setdefault(path.rstrip('/'), (address, label))
        if first[0] != address:
            out.append("%s: mailbox %s is also the mailbox of %s (%s); give each user its own, or deliver"
                       " one address into the other's mailbox with an alias" % (label, path, first[0], first[1]))


def _bare_target_check(domain, merged):
    """The target check of the aliases of mailbox domain ``domain``: a bare name must be a user of it.

    Only entries that take effect are checked: a fleet alias a host overrides may name a user that
    host removes."""
    merged = merged.get(domain, {'users': {}, 'aliases': {}})
    users = merged['users']

    def problem(target):
        if '@' in target:
            return None
        name = target.lower()
        if name not in users:
            return ('%s is not a user of %s; name a user declared in its users, or give a full address'
                    % (target, domain))
        if not _is_present(users[name]):
            return '%s is a user of %s with state: absent; mail to it would bounce' % (target, domain)
        return None

    def check(key, value, catch_all):
        effective = merged.get('catch_all') if catch_all else merged['aliases'].get(key)
        return problem if effective is value else None
    return check


def _mailbox_domain_problems(var, items, merged, crossed, seen, out):
    for index, item in enumerate(_or_default(items, [])):
        where = '%s[%d]' % (var, index)
        if not isinstance(item, Mapping):
            item = {}
        domain = _domain_name(item)
        if not DOMAIN_RE.match(domain):
            out.append('%s.domain: %s is not a domain name' % (where, item.get('domain', '')))
        elif domain in crossed:
            out.append(_crossing_problem(where + '.domain', domain, crossed[domain],
                                         ('virtual_mailbox_domains', where)))
        _user_problems(where, domain, _mapping(_or_default(item.get('users'), {}), where + '.users'), seen, out)
        _virtual_alias_problems(where, domain, item, out, _bare_target_check(domain, merged))


def _integer(var, value, out):
    """``value`` as an int, or None (missing, or reported in ``out`` when it is not an integer)."""
    if value is None:
        return None
    if isinstance(value, bool):
        out.append('%s: %s is not an integer' % (var, value))
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        out.append('%s: %s is not an integer' % (var, value))
        return None


def _vmail_problems(inventory, out):
    """The account, ids, paths and transport of virtual mailbox delivery."""
    minimum = _integer('postfix_server_virtual_minimum_uid', inventory.get('postfix_server_virtual_minimum_uid'), out)
    uid = _integer('postfix_server_vmail_uid', inventory.get('postfix_server_vmail_uid'), out)
    gid = _integer('postfix_server_vmail_gid', inventory.get('postfix_server_vmail_gid'), out)
    if minimum is not None and minimum < MINIMUM_UID_FLOOR:
        out.append('postfix_server_virtual_minimum_uid: %d is below %d, the least Postfix accepts'
                   % (minimum, MINIMUM_UID_FLOOR))
    if uid is not None and minimum is not None and uid < minimum:
        out.append('postfix_server_vmail_uid: %d is below postfix_server_virtual_minimum_uid (%d); virtual(8)'
                   ' refuses to deliver as a uid under it' % (uid, minimum))
    if gid is not None and gid < 1:
        out.append("postfix_server_vmail_gid: %d is root's group; give the mailboxes a group of their own" % gid)
    for var in ('postfix_server_vmail_user', 'postfix_server_vmail_group'):
        if var not in inventory:
            continue
        name = str(_or_default(inventory[var], '')).strip()
        if name == '' or BAD_ACCOUNT_NAME_RE.search(name):
            out.append('%s: %s is not a user or group name' % (var, inventory[var]))
        elif name == 'root':
            out.append('%s: root would own every mailbox; use an account of its own (vmail)' % var)
    for var in ('postfix_server_virtual_mailbox_base', 'postfix_server_virtual_mailbox_map'):
        if var not in inventory:
            continue
        path = str(_or_default(inventory[var], '')).strip()
        if not path.startswith('/') or path.rstrip('/') == '':
            out.append('%s: %s is not an absolute path below /' % (var, inventory[var]))
    if 'postfix_server_virtual_transport' in inventory:
        transport = str(_or_default(inventory['postfix_server_virtual_transport'], '')).strip()
        if transport == '' or BAD_TRANSPORT_RE.search(transport):
            out.append('postfix_server_virtual_transport: %s is not a transport (virtual, or'
                       ' lmtp:unix:private/dovecot-lmtp)' % inventory['postfix_server_virtual_transport'])


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


ALIAS_DOMAIN_VARS = ('postfix_server_virtual_alias_domains', 'postfix_server_virtual_alias_domains_host')
MAILBOX_DOMAIN_VARS = ('postfix_server_virtual_mailbox_domains', 'postfix_server_virtual_mailbox_domains_host')


def _declared_domains(inventory, variables):
    """domain -> where inventory first declares it (``var[index]``)."""
    out = {}
    for var in variables:
        for index, item in enumerate(_or_default(inventory.get(var), [])):
            if isinstance(item, Mapping):
                out.setdefault(_domain_name(item), '%s[%d]' % (var, index))
    return out


def server_problems(inventory, allow_unsafe_targets=False):
    """Every inventory mistake of the server role's variables, each naming the variable and the value."""
    inventory = _mapping(inventory, 'the inventory')
    out = []
    main_cf = {}
    main_cf_vars = []
    for var in ('postfix_server_main_cf', 'postfix_server_main_cf_host'):
        params = _mapping(_or_default(inventory.get(var), {}), var)
        for name, source in ROLE_PARAMS.items():
            if name in params:
                out.append('%s.%s: %s is set by the role (from %s); remove it' % (var, name, params[name], source))
        main_cf_vars.append((var, params))
        main_cf.update(params)
    mydest = _mydestination(main_cf)
    crossed = _class_crossings(inventory, main_cf_vars, mydest, _relay_domains(main_cf))
    for domain, places in crossed.items():
        if [param for param, _where in places] == ['mydestination', 'relay_domains']:
            out.append(_crossing_problem(places[1][1], domain, places))
    for var in ALIAS_DOMAIN_VARS:
        _domain_problems(var, inventory.get(var), mydest, crossed, out)
    merged = {d['domain']: d for d in server_mailbox_domains(*(inventory.get(var) for var in MAILBOX_DOMAIN_VARS))}
    seen = {}
    for var in MAILBOX_DOMAIN_VARS:
        _mailbox_domain_problems(var, inventory.get(var), merged, crossed, seen, out)
    _shared_mailboxes(seen, out)
    _vmail_problems(inventory, out)
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
            'server_mailbox_domains': server_mailbox_domains,
            'server_mailbox_entries': server_mailbox_entries,
            'server_mailbox_virtual_entries': server_mailbox_virtual_entries,
            'server_problems': server_problems,
        }
