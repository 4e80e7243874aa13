# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Inventory merge and validation of the mailops.postfix.server role.

Each function walks its input once (O(n) in the number of aliases and targets).
The documentation of each filter is in the YAML file of the same name next to this one.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.mailops.postfix.plugins.module_utils._address_classes import crossings
from ansible_collections.mailops.postfix.plugins.module_utils._address_classes import message as crossing_message
from ansible_collections.mailops.postfix.plugins.module_utils import _lookupclient
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

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


# The options of an item of a domain list. The role checks these lists here, not through its
# argument spec (whose pass over 10,000 aliases costs more than this whole check).
ALIAS_DOMAIN_KEYS = ('domain', 'aliases', 'catch_all')
MAILBOX_DOMAIN_KEYS = ('domain', 'users', 'aliases', 'catch_all')


def _domain_items(var, items, known, out):
    """(where, item) of each item of the domain list ``var``; what its shape gets wrong (not a
    list, an item not a dictionary, an unknown option, a catch_all that is not targets) in ``out``."""
    if items is None or items == '':
        return
    if not isinstance(items, list):
        out.append('%s must be a list of domains, got %s' % (var, type(items).__name__))
        return
    for index, item in enumerate(items):
        where = '%s[%d]' % (var, index)
        if not isinstance(item, Mapping):
            out.append('%s must be a dictionary (%s), got %s' % (where, ', '.join(known), type(item).__name__))
            continue
        for key in sorted((k for k in item if k not in known), key=str):
            close = difflib.get_close_matches(str(key), known, 1)
            hint = '; did you mean %s?' % close[0] if close else ''
            out.append('%s: unknown option %s (known: %s)%s' % (where, key, ', '.join(known), hint))
        catch_all = item.get('catch_all')
        if catch_all is not None and not isinstance(catch_all, str) and not (
                isinstance(catch_all, list) and all(isinstance(t, str) for t in catch_all)):
            out.append('%s.catch_all must be a target or a list of targets, got %s' % (where, catch_all))
        yield where, item


def _domain_problems(var, items, mydest, crossed, out):
    for where, item in _domain_items(var, items, ALIAS_DOMAIN_KEYS, out):
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
    for where, item in _domain_items(var, items, MAILBOX_DOMAIN_KEYS, out):
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
                if _line_break(t):
                    out.append('%s: %r holds a line break' % (label, t))
                elif UNSAFE_TARGET_RE.search(t) and not allow_unsafe_targets:
                    out.append('%s: %s runs a command or writes a file as the recipient;'
                               ' set postfix_server_allow_unsafe_targets: true to allow it' % (label, t))


# The role's variables server_inventory() reads (each present in the role's defaults): the
# action mailops.postfix.server_inventory reads them by these names.
INVENTORY_VARS = (
    'postfix_server_main_cf', 'postfix_server_main_cf_host',
    'postfix_server_virtual_alias_domains', 'postfix_server_virtual_alias_domains_host',
    'postfix_server_virtual_mailbox_domains', 'postfix_server_virtual_mailbox_domains_host',
    'postfix_server_virtual_mailbox_map', 'postfix_server_virtual_mailbox_base',
    'postfix_server_vmail_user', 'postfix_server_vmail_group', 'postfix_server_vmail_uid',
    'postfix_server_vmail_gid', 'postfix_server_virtual_minimum_uid', 'postfix_server_virtual_transport',
    'postfix_server_aliases', 'postfix_server_aliases_host', 'postfix_server_maps',
    'postfix_server_maps_host', 'postfix_server_master_cf', 'postfix_server_master_cf_host',
    'postfix_server_config_dir', 'postfix_server_virtual_alias_map', 'postfix_server_aliases_file',
)
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
    """Every inventory mistake of the server role's variables, each naming the variable and the value.

    A value of the wrong shape is reported as a problem too, never raised: the role computes this
    in a no_log task (its result holds the resolved inventory), where an error would be hidden."""
    out = []
    try:
        _inventory_problems(_mapping(inventory, 'the inventory'), allow_unsafe_targets, out)
    except AnsibleFilterError as e:
        out.append(str(e))
    return out


def _inventory_problems(inventory, allow_unsafe_targets, out):
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
    _map_problems(inventory, main_cf_vars, out)
    _service_problems(out, inventory)


def _plain(value):
    """``value`` as plain Python data (dict, list, str, int, float, bool, None).

    Reading a variable through Ansible's templating renders every string of it at each read;
    the role reads its inventory once, through this, and works on the copy."""
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Iterable):
        return [_plain(v) for v in value]
    return value


def _joined(entries):
    """Entries with each list of targets as the value a table holds: "a, b"."""
    return {k: v if isinstance(v, str) else ', '.join(v) for k, v in entries.items()}


def _as_text(entries):
    """Entries as one string, "KEY<TAB>VALUE" per line: how the role hands a large map to the
    config module (entries_text), since Ansible templates and sends one string at once and a
    dictionary item by item. The inventory checks refuse the line breaks (and keys with a blank)
    that would make another line; checked again here, as the format's own rule."""
    for key, value in entries.items():
        if '\t' in key or _line_break(key) or _line_break(value):
            raise AnsibleFilterError('%r: a key or value with a line break, or a key with a tab' % key)
    return ''.join('%s\t%s\n' % kv for kv in entries.items())


RESOLVED = ('domains', 'mailbox_domains', 'mailbox_entries', 'virtual_entries', 'alias_entries')
# What the result counts (counts): the resolved items and the addresses to route.
COUNTED = RESOLVED + ('addresses',)
# The entries again as text (_as_text), for the config module's entries_text.
AS_TEXT = {'mailbox_entries': 'mailbox_text', 'virtual_entries': 'virtual_text', 'alias_entries': 'alias_text'}


def server_inventory(inventory, base_aliases=None, allow_unsafe_targets=False):
    """The server role's inventory checked and resolved in one pass: its problems (server_problems),
    and when there is none the merged domains and the entries of the virtual alias map, the virtual
    mailbox map and /etc/aliases, and the size of each. Every value in the result is plain data."""
    inventory = _plain(inventory)
    out = {'problems': server_problems(inventory, allow_unsafe_targets=allow_unsafe_targets),
           'domains': [], 'mailbox_domains': [], 'mailbox_entries': {}, 'virtual_entries': {},
           'alias_entries': {}, 'mailbox_text': '', 'virtual_text': '', 'alias_text': '', 'addresses': []}
    if out['problems']:
        out['counts'] = {k: 0 for k in COUNTED}
        return out
    domains = server_domains(*(inventory.get(var) for var in ALIAS_DOMAIN_VARS))
    mailbox_domains = server_mailbox_domains(*(inventory.get(var) for var in MAILBOX_DOMAIN_VARS))
    virtual_entries = server_virtual_entries(domains)
    # A mailbox domain's entries win over an alias domain's (combine() in the role before).
    virtual_entries.update(server_mailbox_virtual_entries(mailbox_domains))
    alias_entries = server_alias_entries(_plain(base_aliases or {}), inventory.get('postfix_server_aliases'),
                                         inventory.get('postfix_server_aliases_host'))
    # The fact is walked again (finalised) by Ansible at every task that reads it: domains by
    # name only (the aliases are in the entries), and each value as the one string a table
    # holds (a list of targets is written "a, b"), not a list of strings.
    out.update(domains=[{'domain': d['domain']} for d in domains],
               mailbox_domains=[{'domain': d['domain']} for d in mailbox_domains],
               mailbox_entries=server_mailbox_entries(mailbox_domains),
               virtual_entries=_joined(virtual_entries), alias_entries=_joined(alias_entries))
    # Sizes, for conditions and messages: `x | length` in a task walks a large x again.
    # The addresses the route module follows: catch-all keys (@domain) are not addresses; every
    # mailbox is one.
    addresses = dict.fromkeys(k for k in out['virtual_entries'] if not k.startswith('@'))
    addresses.update(dict.fromkeys(out['mailbox_entries']))
    out['addresses'] = list(addresses)
    out['counts'] = {k: len(out[k]) for k in COUNTED}
    out.update((text, _as_text(out[k])) for k, text in AS_TEXT.items())
    return out


# Lookup tables (postfix_server_maps) and master.cf services (postfix_server_master_cf)

# Options of a map, its states and table types. Indexed types are compiled (postmap); the others
# are read whole by each daemon at start, so a change needs a reload (DATABASE_README).
MAP_OPTIONS = ('path', 'type', 'entries', 'parameter', 'exclusive', 'secret', 'mode', 'state')
# Options of a table in a database (its client file): the data is the database's, never written.
NETWORK_OPTIONS = ('path', 'type', 'parameter', 'client', 'client_secret', 'proxy', 'expect', 'mode', 'state')
MAP_STATES = ('present', 'absent')
INDEXED_TYPES = ('hash', 'cdb', 'lmdb')
UNINDEXED_TYPES = ('regexp', 'pcre', 'cidr', 'texthash')
FILE_TYPES = INDEXED_TYPES + UNINDEXED_TYPES
NETWORK_TYPES = ('pgsql', 'mysql', 'ldap', 'sqlite')
MAP_TYPES = FILE_TYPES + NETWORK_TYPES
INDEX_SUFFIX = {'hash': '.db', 'cdb': '.cdb', 'lmdb': '.lmdb'}
# Maps of these parameters hold passwords: secret by default (SASL_README, smtp(8)).
SECRET_PARAMS = ('smtp_sasl_password_maps', 'lmtp_sasl_password_maps')
# The role's own map parameters another map may join (after the role's file map).
JOINED_PARAMS = ('virtual_alias_maps', 'virtual_mailbox_maps')
# The packages that bring a table type Postfix loads as a plugin (Debian: postfix-pcre).
TYPE_PACKAGES = {'pcre': 'postfix-pcre', 'lmdb': 'postfix-lmdb', 'cdb': 'postfix-cdb', 'pgsql': 'postfix-pgsql',
                 'mysql': 'postfix-mysql', 'ldap': 'postfix-ldap', 'sqlite': 'postfix-sqlite'}
# main.cf parameters a map may be attached to: the *_maps and *_checks parameters of Postfix 3.7
# (postconf -d), less the role's own (ROLE_PARAMS) and proxy_read_maps/proxy_write_maps (lists of
# tables proxymap may open, not tables). Access maps used in smtpd_*_restrictions have no
# parameter of their own: reference them through postfix_server_main_cf.
MAP_PARAMS = (
    'address_verify_sender_dependent_default_transport_maps', 'address_verify_sender_dependent_relayhost_maps',
    'address_verify_transport_maps', 'body_checks', 'canonical_maps', 'fallback_transport_maps',
    'header_checks', 'lmtp_body_checks', 'lmtp_discard_lhlo_keyword_address_maps', 'lmtp_generic_maps',
    'lmtp_header_checks', 'lmtp_mime_header_checks', 'lmtp_nested_header_checks', 'lmtp_pix_workaround_maps',
    'lmtp_sasl_password_maps', 'lmtp_tls_policy_maps', 'local_login_sender_maps', 'local_recipient_maps',
    'mailbox_command_maps', 'mailbox_transport_maps', 'milter_header_checks', 'mime_header_checks',
    'nested_header_checks', 'postscreen_discard_ehlo_keyword_address_maps', 'postscreen_reject_footer_maps',
    'rbl_reply_maps', 'recipient_bcc_maps', 'recipient_canonical_maps', 'relay_recipient_maps',
    'relocated_maps', 'sender_bcc_maps', 'sender_canonical_maps', 'sender_dependent_default_transport_maps',
    'sender_dependent_relayhost_maps', 'smtp_body_checks', 'smtp_discard_ehlo_keyword_address_maps',
    'smtp_generic_maps', 'smtp_header_checks', 'smtp_mime_header_checks', 'smtp_nested_header_checks',
    'smtp_pix_workaround_maps', 'smtp_sasl_password_maps', 'smtp_tls_policy_maps',
    'smtpd_discard_ehlo_keyword_address_maps', 'smtpd_milter_maps', 'smtpd_reject_footer_maps',
    'smtpd_sender_login_maps', 'tls_server_sni_maps', 'tlsproxy_client_policy_maps', 'transport_maps',
)
MAP_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.+-]*$')
MODE_RE = re.compile(r'^0?[0-7]{3}$')
# regexp_table(5): [!]/pattern/flags; the delimiter is any non-alphanumerical character but
# white space. Flags: regexp i, m, x; pcre_table(5) i, m, s, x, A, E, U, X.
PATTERN_KEY_RE = re.compile(r'^(!)?([^A-Za-z0-9\s\\])(.+)\2([A-Za-z]*)$', re.S)
PATTERN_FLAGS = {'regexp': 'imx', 'pcre': 'imsxAEUX'}
_TRUE = ('yes', 'on', 'true', '1', 'y', 't')
_FALSE = ('no', 'off', 'false', '0', 'n', 'f')

# The options of a master_cf service (the module's suboptions).
SERVICE_OPTIONS = ('name', 'type', 'state', 'private', 'unpriv', 'chroot', 'wakeup', 'maxproc', 'command',
                   'args', 'options', 'options_exclusive')
MAP_VARS = ('postfix_server_maps', 'postfix_server_maps_host')
SERVICE_VARS = ('postfix_server_master_cf', 'postfix_server_master_cf_host')


def _bool(value):
    """``value`` as Ansible reads a boolean, or None when it is none."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _folds(table_type):
    """Whether keys of this type are folded (postmap lower-cases keys of key-value tables; regexp,
    pcre and cidr patterns are matched as written)."""
    return table_type not in ('regexp', 'pcre', 'cidr')


def _merge_entries(merged, entries, fold, removing):
    """Entries of one layer over ``merged`` (key -> value, in order). Keys are matched as Postfix
    matches them; a null value in a later layer removes the key."""
    index = {(str(k).strip().lower() if fold else str(k)): k for k in merged}
    for key, value in entries.items():
        ident = str(key).strip().lower() if fold else str(key)
        old = index.pop(ident, None)
        if old is not None:
            del merged[old]
        if value is None and removing:
            continue
        merged[key] = value
        index[ident] = key


# Options merged per key across layers (a null value in the host layer drops the fleet's).
MERGED_OPTIONS = ('entries', 'client', 'client_secret', 'expect')


def server_maps(fleet, host=None, config_dir='/etc/postfix', table_type='hash'):
    """Merge the map layers (fleet, then host) into name -> resolved map, sorted by name.

    A host map of the same name wins per option and per entry; a null entry value in the host
    layer removes the fleet's entry of that key."""
    layers = []
    for var, layer in zip(MAP_VARS, (fleet, host)):
        if isinstance(layer, Mapping):
            layers.append((var, layer))
    options = {}
    for var, layer in layers:
        for name, spec in layer.items():
            name = str(name).strip()
            merged = options.setdefault(name, {})
            merged['where'] = '%s.%s' % (var, name)
            if isinstance(spec, Mapping):
                merged.update((k, v) for k, v in spec.items() if k not in MERGED_OPTIONS)
    out = {}
    for name in sorted(options):
        spec = options[name]
        kind = str(_or_default(spec.get('type'), table_type)).strip().lower()
        network = kind in NETWORK_TYPES
        merged = {option: {} for option in MERGED_OPTIONS}
        for index, (var, layer) in enumerate(layers):
            spec_layer = layer.get(name)
            if spec_layer is None:
                spec_layer = next((v for k, v in layer.items() if str(k).strip() == name), None)
            if not isinstance(spec_layer, Mapping):
                continue
            for option in MERGED_OPTIONS:
                if isinstance(spec_layer.get(option), Mapping):
                    # Client parameter names are matched as written; keys as Postfix folds them.
                    fold = _folds(kind) and option in ('entries', 'expect')
                    _merge_entries(merged[option], spec_layer[option], fold, index > 0)
        parameter = str(_or_default(spec.get('parameter'), '')).strip() or None
        secret = _bool(spec['secret']) if spec.get('secret') is not None else None
        exclusive = _bool(spec['exclusive']) if spec.get('exclusive') is not None else None
        proxy = _bool(spec['proxy']) if spec.get('proxy') is not None else None
        path = str(_or_default(spec.get('path'), '')).strip() or '%s/%s%s' % (
            str(config_dir).rstrip('/'), name, '.cf' if network else '')
        mode = spec.get('mode')
        resolved = {
            'name': name,
            'where': spec['where'],
            'path': path,
            'type': kind,
            'reference': '%s:%s' % (kind, path),
            'index': path + INDEX_SUFFIX[kind] if kind in INDEX_SUFFIX else None,
            'entries': merged['entries'],
            'parameter': parameter,
            'exclusive': True if exclusive is None else exclusive,
            'secret': parameter in SECRET_PARAMS if secret is None else secret,
            'mode': None if mode is None else str(mode).strip(),
            'state': str(_or_default(spec.get('state'), 'present')).strip().lower(),
            'network': network,
        }
        if network:
            # Read through proxymap(8) unless told otherwise: one connection pool per host
            # instead of one per daemon process (proxymap(8), "too many connections").
            resolved.update(client=merged['client'], client_secret=merged['client_secret'],
                            expect=merged['expect'], proxy=True if proxy is None else proxy, secret=False,
                            entries={})
            if resolved['proxy']:
                resolved['reference'] = 'proxy:' + resolved['reference']
        out[name] = resolved
    return out


def server_map_params(maps):
    """main.cf parameters of merged maps: parameter -> TYPE:PATH of each present map attached to
    it, joined by ', ' in map name order; a parameter whose maps are all absent -> None (removed)."""
    out = {}
    for name in sorted(maps):
        m = maps[name]
        if not m.get('parameter') or m['parameter'] in JOINED_PARAMS:
            continue
        refs = out.setdefault(m['parameter'], [])
        if m['state'] != 'absent':
            refs.append(m['reference'])
    return {param: ', '.join(refs) if refs else None for param, refs in out.items()}


def _service_key(item):
    return (str(_or_default(item.get('name'), '')).strip(), str(_or_default(item.get('type'), '')).strip())


def server_config_tables(maps):
    """Merged maps as the tables option of the config module, in name order: secret maps' entries
    in secret_entries (never logged), absent maps with their path and type only."""
    out = []
    for name in sorted(maps):
        m = maps[name]
        table = {'path': m['path'], 'type': m['type'], 'state': m['state']}
        if m['state'] == 'absent':
            pass
        elif m.get('network'):
            table.update(params=m['client'], secret_params=m['client_secret'], mode=m['mode'])
        else:
            table.update(exclusive=m['exclusive'], mode=m['mode'])
            table['secret_entries' if m['secret'] else 'entries'] = m['entries']
        out.append(table)
    return out


def server_proxy_read(maps):
    """The tables proxymap(8) must be allowed to open for the present maps read through it."""
    return [m['reference'] for name, m in sorted(maps.items())
            if m['state'] != 'absent' and m.get('network') and m.get('proxy')]


def server_joined_refs(maps):
    """The role's own map parameters (JOINED_PARAMS) -> the references of the present maps of
    ``maps`` that join it, in name order. The role names them after its own file map, which it
    leaves out when inventory declares no entry for it (the database holds them)."""
    return {param: [m['reference'] for name, m in sorted(maps.items())
                    if m.get('parameter') == param and m['state'] != 'absent'] for param in JOINED_PARAMS}


def server_master_services(fleet, *more):
    """Merge master.cf service lists (fleet, then host): a later service of the same name and type
    replaces the earlier one in place; new ones are appended."""
    merged = {}
    for layer in (fleet,) + more:
        for item in _or_default(layer, []):
            if isinstance(item, Mapping):
                merged[_service_key(item)] = dict(item)
    return list(merged.values())


def _line_break(value):
    """Whether a value (string, number, or list of them) holds a line break or NUL."""
    items = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and ('\n' in v or '\r' in v or '\0' in v) for v in items)


def _pattern_key_problem(key, kind):
    m = PATTERN_KEY_RE.match(key)
    if not m:
        return ('is not a pattern of the form /pattern/flags (%s_table(5)); if/endif blocks are not'
                ' supported in entries' % kind)
    bad = [f for f in m.group(4) if f not in PATTERN_FLAGS[kind]]
    if bad:
        return 'has flags %s that %s_table(5) does not know (%s)' % (
            ''.join(bad), kind, ', '.join(PATTERN_FLAGS[kind]))
    return None


def _cidr_key_problem(key):
    network = key[1:] if key.startswith('!') else key
    if network.startswith('[') and network.endswith(']'):
        network = network[1:-1]
    else:
        network = network.replace('[', '').replace(']', '')
    try:
        ipaddress.ip_network(network, strict=True)
    except ValueError as e:
        return 'is not a network in address or address/prefix form (cidr_table(5)): %s' % e
    return None


def _entry_problems(label, kind, entries, removing, out, option='entries'):
    for raw_key, value in entries.items():
        key = str(raw_key)
        where = '%s.%s: %s' % (label, option, key.strip())
        if key.strip() == '':
            out.append('%s.%s: an empty key' % (label, option))
            continue
        if _line_break(key):
            out.append('%s contains a line break' % where)
            continue
        if kind in PATTERN_FLAGS:
            problem = _pattern_key_problem(key.strip(), kind)
        elif kind == 'cidr':
            problem = _cidr_key_problem(key.strip())
        elif SPACE_RE.search(key.strip()) or key.strip().startswith('#'):
            problem = 'contains white space or starts with #; a %s key is one word (postmap(1))' % kind
        else:
            problem = None
        if problem:
            out.append('%s %s' % (where, problem))
        if value is None:
            if not removing:
                out.append('%s has no value' % where)
        elif isinstance(value, Mapping) or (isinstance(value, list) and any(
                isinstance(v, (Mapping, list)) for v in value)):
            out.append('%s: the value is not a string or a list of strings' % where)
        elif _line_break(value):
            out.append('%s: the value contains a line break' % where)
        elif (str(value).strip() if not isinstance(value, list) else ', '.join(map(str, value)).strip()) == '':
            out.append('%s has an empty value' % where)


def _client_problems(label, kind, option, params, out):
    """The client parameters of a database map (one layer): known names, one-line values."""
    if not isinstance(params, Mapping):
        out.append('%s.%s: must be a dictionary of %s_table(5) parameters (name -> value)' % (label, option, kind))
        return
    for name, value in params.items():
        try:
            _lookupclient.check_name(kind, name)
        except PostfixError as e:
            out.append('%s.%s: %s' % (label, option, e))
            continue
        if option == 'client' and name in _lookupclient.SECRET[kind]:
            out.append('%s.client.%s: a credential; give it in client_secret (never logged, hidden in diffs)'
                       % (label, name))
        if value is not None:
            try:
                _lookupclient.check_value(name, value)
            except PostfixError as e:
                out.append('%s.%s: %s' % (label, option, e))


def _network_spec_problems(label, kind, spec, out):
    for option in spec:
        if option == 'entries':
            out.append('%s.entries: a %s map\'s data is in its database, which the role does not write'
                       ' (mailops.postfix.sql_entries does); list keys the verify step checks in expect'
                       % (label, kind))
        elif option not in NETWORK_OPTIONS:
            out.append('%s: unknown key %s for a %s map (known: %s)' % (label, option, kind, ', '.join(NETWORK_OPTIONS)))
    for option in ('client', 'client_secret'):
        if spec.get(option) is not None:
            _client_problems(label, kind, option, spec[option], out)
    if spec.get('proxy') is not None and _bool(spec['proxy']) is None:
        out.append('%s.proxy: %s is not a boolean' % (label, spec['proxy']))
    if spec.get('expect') is not None:
        if not isinstance(spec['expect'], Mapping):
            out.append('%s.expect: must be a dictionary (key -> the value the table answers)' % label)
        else:
            # Checked as entries of a key-value table (one word a key, one line a value).
            _entry_problems(label, kind, spec['expect'], True, out, option='expect')


def _map_spec_problems(var, name, spec, config_dir, out, kind=None):
    label = '%s.%s' % (var, name)
    if kind in NETWORK_TYPES:
        _network_spec_problems(label, kind, spec, out)
    else:
        for option in spec:
            if option in NETWORK_OPTIONS and option not in MAP_OPTIONS:
                out.append('%s: %s is an option of a database map (%s); this map is a %s file'
                           % (label, option, ', '.join(NETWORK_TYPES), kind))
            elif option not in MAP_OPTIONS:
                out.append('%s: unknown key %s (known: %s)' % (label, option, ', '.join(MAP_OPTIONS)))
    if spec.get('type') is not None and str(spec['type']).strip().lower() not in MAP_TYPES:
        out.append('%s.type: %s is not a table type the role writes (%s)' % (label, spec['type'], ', '.join(MAP_TYPES)))
    if spec.get('state') is not None and str(spec['state']).strip().lower() not in MAP_STATES:
        out.append('%s.state: %s is not present or absent' % (label, spec['state']))
    for option in ('exclusive', 'secret'):
        if spec.get(option) is not None and _bool(spec[option]) is None:
            out.append('%s.%s: %s is not a boolean' % (label, option, spec[option]))
    if spec.get('mode') is not None:
        if not isinstance(spec['mode'], str) or not MODE_RE.match(spec['mode'].strip()):
            out.append("%s.mode: %s is not an octal mode in quotes, such as '0640'" % (label, spec['mode']))
    if spec.get('path') is not None:
        path = str(spec['path']).strip()
        parts = path.split('/')
        base = str(config_dir).rstrip('/') + '/'
        if not path.startswith(base) or '..' in parts or '.' in parts or path.endswith('/') or SPACE_RE.search(path):
            out.append('%s.path: %s is not a file under postfix_server_config_dir (%s); the role keeps its'
                       ' tables there, where postfix check and the reload pre-flight look' % (label, path, base))
    if spec.get('parameter') is not None:
        param = str(spec['parameter']).strip()
        if param in JOINED_PARAMS:
            pass
        elif param in ROLE_PARAMS:
            out.append('%s.parameter: %s is set by the role (from %s); choose another parameter'
                       % (label, param, ROLE_PARAMS[param]))
        elif param not in MAP_PARAMS:
            close = difflib.get_close_matches(param, MAP_PARAMS, 1)
            out.append('%s.parameter: %s is not a main.cf parameter that takes lookup tables (a *_maps or'
                       ' *_checks parameter of postconf(5))%s; for an access map in smtpd_*_restrictions leave'
                       ' parameter out and name the map in postfix_server_main_cf'
                       % (label, param, '; did you mean %s?' % close[0] if close else ''))
    if kind not in NETWORK_TYPES and spec.get('entries') is not None and not isinstance(spec['entries'], Mapping):
        out.append('%s.entries: must be a dictionary (key -> value), got %s' % (label, type(spec['entries']).__name__))


def _map_problems(inventory, main_cf_vars, out):
    config_dir = str(_or_default(inventory.get('postfix_server_config_dir'), '/etc/postfix'))
    layers = []
    for var in MAP_VARS:
        layer = _or_default(inventory.get(var), {})
        if not isinstance(layer, Mapping):
            out.append('%s: must be a dictionary of maps (name -> options), got %s' % (var, type(layer).__name__))
            layer = {}
        layers.append(layer)
    maps = server_maps(layers[0], layers[1], config_dir=config_dir)
    # Options and entries are checked with the type that takes effect (merged).
    for var, layer in zip(MAP_VARS, layers):
        for name, spec in layer.items():
            name = str(name).strip()
            if not MAP_NAME_RE.match(name):
                out.append('%s.%s: the map name is not a file name (letters, digits, _ . + -)' % (var, name))
            if not isinstance(spec, Mapping):
                out.append('%s.%s: %s is not a dictionary of options (%s)' % (var, name, spec, ', '.join(MAP_OPTIONS)))
                continue
            kind = maps[name]['type'] if name in maps else None
            _map_spec_problems(var, name, spec, config_dir, out, kind)
            if kind not in NETWORK_TYPES and isinstance(spec.get('entries'), Mapping) and name in maps:
                _entry_problems('%s.%s' % (var, name), kind, spec['entries'], var != MAP_VARS[0], out)
    mailbox_domains = _declared_domains(inventory, MAILBOX_DOMAIN_VARS)
    for name, m in maps.items():
        if m['state'] == 'absent':
            continue
        if m['network'] and not m['client']:
            out.append('%s.client: the %s client file\'s parameters are missing (%s_table(5))'
                       % (m['where'], m['type'], m['type']))
        if m['parameter'] == 'virtual_mailbox_maps' and not mailbox_domains:
            out.append('%s.parameter: virtual_mailbox_maps is set only while a virtual mailbox domain is'
                       ' declared (postfix_server_virtual_mailbox_domains)' % m['where'])
        if m['network'] and m['mode'] and MODE_RE.match(m['mode']) and int(m['mode'], 8) & 0o007:
            out.append('%s.mode: %s lets every local user read the client file (its credentials); client files'
                       ' are 0640 root:postfix' % (m['where'], m['mode']))
    own_files = [(var, inventory.get(var)) for var in ('postfix_server_virtual_alias_map',
                                                       'postfix_server_virtual_mailbox_map',
                                                       'postfix_server_aliases_file')]
    own_files += [('postfix_server_config_dir', config_dir.rstrip('/') + '/' + f) for f in ('main.cf', 'master.cf')]
    paths = {}
    main_cf_params = {}
    for var, params in main_cf_vars:
        for param in params:
            main_cf_params.setdefault(param, var)
    for name, m in maps.items():
        if m['type'] not in MAP_TYPES:
            continue
        for var, path in own_files:
            if path and str(path).strip() == m['path']:
                out.append('%s.path: %s is the file of %s' % (m['where'], m['path'], var))
        if m['path'] in paths:
            out.append('%s.path: %s is also the path of %s' % (m['where'], m['path'], paths[m['path']]))
        paths.setdefault(m['path'], m['where'])
        if m['parameter'] and m['parameter'] in main_cf_params:
            out.append('%s.parameter: %s is also set in %s; set it in one place (the role writes %s = %s)'
                       % (m['where'], m['parameter'], main_cf_params[m['parameter']], m['parameter'],
                          server_map_params(maps)[m['parameter']] or '(removed)'))
        if m['state'] == 'absent':
            # Its files are deleted: main.cf must not name them any more (restrictions, say).
            for var, params in main_cf_vars:
                for param, value in params.items():
                    text = ' '.join(map(str, value)) if isinstance(value, list) else str(value)
                    if re.search(r'(^|[\s,:])%s($|[\s,])' % re.escape(m['path']), text):
                        out.append('%s.state: absent deletes %s, but %s.%s still names it; remove it there too'
                                   % (m['where'], m['path'], var, param))
        if m['secret'] is True and m['mode'] and MODE_RE.match(m['mode']) and int(m['mode'], 8) & 0o077:
            out.append('%s.mode: %s lets others than the owner read a secret map; secret maps are 0600'
                       % (m['where'], m['mode']))


def server_map_type_problems(maps, map_types):
    """The present maps whose type this Postfix lacks (``map_types``: postconf -m)."""
    out = []
    known = set(map_types or ())
    for name in sorted(maps):
        m = maps[name]
        if m['state'] != 'absent' and m['type'] not in known:
            package = TYPE_PACKAGES.get(m['type'])
            out.append('%s.type: this Postfix has no %s tables (postconf -m: %s)%s' % (
                m['where'], m['type'], ', '.join(sorted(known)),
                '; install %s (postfix_server_install: true does)' % package if package else ''))
    return out


def _service_problems(out, inventory):
    for var in SERVICE_VARS:
        items = _or_default(inventory.get(var), [])
        if not isinstance(items, list):
            out.append('%s: must be a list of services, got %s' % (var, type(items).__name__))
            continue
        seen = {}
        for index, item in enumerate(items):
            where = '%s[%d]' % (var, index)
            if not isinstance(item, Mapping):
                out.append('%s: %s is not a service (a dictionary with name and type)' % (where, item))
                continue
            name, kind = _service_key(item)
            if not name or not kind:
                out.append('%s: a service needs name and type (such as submission and inet)' % where)
                continue
            where = '%s (%s/%s)' % (where, name, kind)
            if (name, kind) in seen:
                out.append('%s: %s/%s is also %s[%d]; declare a service once per list' % (
                    where, name, kind, var, seen[(name, kind)]))
            seen[(name, kind)] = index
            for option in item:
                if option not in SERVICE_OPTIONS:
                    out.append('%s: unknown key %s (known: %s)' % (where, option, ', '.join(SERVICE_OPTIONS)))
            values = [item.get(k) for k in SERVICE_OPTIONS if k != 'options']
            values += list(item['args']) if isinstance(item.get('args'), list) else []
            if isinstance(item.get('options'), Mapping):
                values += [str(k) for k in item['options']] + list(item['options'].values())
            elif item.get('options') is not None:
                out.append('%s.options: must be a dictionary (parameter -> value)' % where)
            if any(_line_break(v) for v in values):
                out.append('%s: a value contains a line break' % where)


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
            'server_inventory': server_inventory,
            'server_config_tables': server_config_tables,
            'server_proxy_read': server_proxy_read,
            'server_joined_refs': server_joined_refs,
            'server_maps': server_maps,
            'server_map_params': server_map_params,
            'server_map_type_problems': server_map_type_problems,
            'server_master_services': server_master_services,
        }
