# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client configuration files of Postfix's network tables: pgsql:, mysql:, ldap:, sqlite:.

``pgsql:/etc/postfix/pgsql-virtual.cf`` names a file of ``name = value`` lines that
cfg_parser.c reads with dict_load_file() - the same reader as main.cf (readllines.c:
comments, blank lines, continuation lines; split_nameval.c), values taken literally
(no ``$name`` expansion). So the file is edited with the main.cf engine (_maincf.MainCf),
losslessly; this module adds the parameter names each client knows, the secret ones, and
the file's mode.
"""

from __future__ import annotations

import difflib
import grp
import os
import re
import stat

from ansible_collections.mailops.postfix.plugins.module_utils import _atomic, _maincf
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError, PostfixError

HIDDEN = "<hidden>"
HIDDEN_CHANGED = "<hidden, changed>"

# db_common.c (db_common_parse, db_common_parse_domain, db_common_sql_build_query): the
# parameters every SQL client reads; select_field/table/where_field/additional_conditions
# are the pre-2.2 query form ("OBSOLETE QUERY INTERFACE" in the man pages).
_SQL_COMMON = ("query", "result_format", "domain", "expansion_limit",
               "select_field", "table", "where_field", "additional_conditions")

KNOWN = {
    # pgsql_table(5), dict_pgsql.c (Postfix 3.7).
    "pgsql": frozenset(("hosts", "user", "password", "dbname", "select_function") + _SQL_COMMON),
    # mysql_table(5), dict_mysql.c; tls_ciphers is read by dict_mysql.c but not in the 3.7 page.
    "mysql": frozenset(("hosts", "user", "password", "dbname", "option_file", "option_group",
                        "require_result_set", "tls_cert_file", "tls_key_file", "tls_CAfile",
                        "tls_CApath", "tls_verify_cert", "tls_ciphers") + _SQL_COMMON),
    # ldap_table(5), dict_ldap.c; result_filter is result_format's name before Postfix 2.2,
    # still read when result_format is unset.
    "ldap": frozenset((
        "server_host", "server_port", "timeout", "search_base", "query_filter", "result_format",
        "result_filter", "domain", "result_attribute", "special_result_attribute",
        "terminal_result_attribute", "leaf_result_attribute", "scope", "bind", "bind_dn", "bind_pw",
        "recursion_limit", "expansion_limit", "size_limit", "dereference", "chase_referrals",
        "version", "debuglevel", "sasl_mechs", "sasl_realm", "sasl_authz_id", "sasl_minssf",
        "start_tls", "tls_ca_cert_dir", "tls_ca_cert_file", "tls_cert", "tls_key",
        "tls_require_cert", "tls_random_file", "tls_cipher_suite")),
    # sqlite_table(5), dict_sqlite.c.
    "sqlite": frozenset(("dbpath",) + _SQL_COMMON),
}

# Names Postfix ignores with a warning (ldap_table(5): "cache (IGNORED with a warning)").
IGNORED = {
    "ldap": {n: "ignored by Postfix since OpenLDAP dropped its cache (ldap_table(5))"
             for n in ("cache", "cache_expiry", "cache_size")},
}

# The credentials: set only through secret_params, never shown.
SECRET = {
    "pgsql": frozenset(("password",)),
    "mysql": frozenset(("password",)),
    "ldap": frozenset(("bind_pw",)),
    "sqlite": frozenset(),
}

TYPES = tuple(sorted(KNOWN))
DEFAULT_MODE = 0o640


def check_name(table_type, name):
    """Refuse a name the client does not read, suggesting the nearest known one."""
    if table_type not in KNOWN:
        raise PostfixError("unknown table type %r: one of %s" % (table_type, ", ".join(TYPES)))
    if not isinstance(name, str):
        raise PostfixError("parameter name %r is not a string" % (name,))
    if name in KNOWN[table_type]:
        return
    why = IGNORED.get(table_type, {}).get(name)
    if why:
        raise PostfixError("%s_table(5) parameter %s: %s; remove it" % (table_type, name, why))
    close = difflib.get_close_matches(name, sorted(KNOWN[table_type]), n=1, cutoff=0.6)
    hint = "; did you mean %s?" % close[0] if close else ""
    others = [t for t in TYPES if t != table_type and name in KNOWN[t]]
    if others and not close:
        hint = "; it is a parameter of %s tables" % " and ".join(others)
    raise PostfixError("unknown %s_table(5) parameter %r%s" % (table_type, name, hint))


def check_value(name, value):
    """A value as the client file holds it; newline, carriage return and NUL refused."""
    # normalize_value refuses newline, carriage return and NUL: a value is one logical line.
    if isinstance(value, dict):
        raise PostfixError("parameter %s: a dictionary is not a value" % name)
    try:
        return _maincf.normalize_value(value, name)
    except PostfixError as exc:
        # The message names the parameter and the character, never the value.
        raise PostfixError(str(exc).replace("main.cf values are", "a client file value is"))


def masked(maincf, hidden, changed=()):
    """The file's text with the value of every parameter in ``hidden`` shown as <hidden>
    (``<hidden, changed>`` for those in ``changed``, so that a diff shows a changed
    password), continuation lines of such a value dropped, a stray continuation line before
    the first parameter shown as <hidden> too: for diffs and messages."""
    skip = set()
    start = {}
    covered = set()
    for e in maincf.entries:
        covered.add(e.start)
        covered.update(e.conts)
        if e.name in hidden:
            start[e.start] = e.name
            skip.update(e.conts)
    out = []
    for idx, line in enumerate(maincf.lines):
        if idx in skip:
            continue
        if idx not in covered and _maincf.line_kind(line) != _maincf.BLANK:
            # A continuation line before the first parameter (Postfix ignores it with a warning).
            out.append("    %s\n" % HIDDEN)
            continue
        if idx in start:
            out.append("%s = %s\n" % (start[idx], HIDDEN_CHANGED if start[idx] in changed else HIDDEN))
            continue
        out.append(line.decode("utf-8", "replace"))
    return "".join(out)


def _group_id(group):
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


_OVERRIDE = re.compile(r"^(.*: overriding earlier entry: )([^=]*)=.*$", re.S)
_ORPHAN = re.compile(r"^(.*: logical line must not start with whitespace): .*$", re.S)


def _redacted(warning, hidden):
    """A main.cf reader warning without the text of a value that may be secret."""
    m = _OVERRIDE.match(warning)
    if m:
        return "%s%s=%s" % (m.group(1), m.group(2), HIDDEN if m.group(2) in hidden else warning[m.end(2) + 1:])
    m = _ORPHAN.match(warning)
    if m:
        return m.group(1)
    return warning


def load(path, missing_ok):
    """The client file parsed; a line Postfix would refuse is reported by number and reason
    only: its text may be (part of) a password."""
    try:
        return _maincf.MainCf.load(path, missing_ok=missing_ok)
    except ParseError as exc:
        reason = exc.message.split(": ", 1)[0]
        raise ParseError(exc.path, exc.line, "%s (the line is not shown: it may hold a password)" % reason)


def file_warnings(maincf, table_type, hidden=()):
    """What the client would not understand among the names already in the file."""
    out = [_redacted(w, hidden) for w in maincf.warnings]
    for e in maincf.entries:
        try:
            check_name(table_type, e.name)
        except PostfixError as exc:
            out.append("%s:%d: %s" % (maincf.path, e.lineno, exc))
    return out


def edit(path, table_type, params=None, secret_params=None, state="present", backup=False,
         check_mode=False, mode=DEFAULT_MODE, group="postfix", lock_timeout=None, exclusive=False):
    """Set (``state=present``) or remove (``absent``) parameters of a client file;
    ``exclusive`` (with present) also removes every parameter not given.

    ``params`` are logged by Ansible; ``secret_params`` are not, and their values - and those
    of the client's credentials (SECRET) - never appear in the result: the diff shows them
    as <hidden>. Nothing is written when nothing changes. The file is kept ``mode`` (0640)
    and owned by root with group ``group`` (when that group exists and we run as root).
    """
    if table_type not in KNOWN:
        raise PostfixError("unknown table type %r: one of %s" % (table_type, ", ".join(TYPES)))
    if not isinstance(path, str) or not os.path.isabs(path):
        # A name without a slash is read by Postfix as a main.cf parameter prefix (cfg_parser.c).
        raise PostfixError("path %r: must be an absolute file name (%s:/path/to/file.cf)" % (path, table_type))
    if not os.path.isdir(os.path.dirname(path)):
        raise PostfixError("%s: no such directory" % os.path.dirname(path))
    params = {} if params is None else params
    secret_params = {} if secret_params is None else secret_params
    if state == "present":
        if not isinstance(params, dict) or not isinstance(secret_params, dict):
            raise PostfixError("params and secret_params must be dictionaries of name: value with state=present")
        for name in params:
            check_name(table_type, name)
            if name in SECRET[table_type]:
                raise PostfixError("parameter %s: give it in secret_params, not params (params are logged)" % name)
        for name in secret_params:
            check_name(table_type, name)
        both = sorted(set(params) & set(secret_params))
        if both:
            raise PostfixError("parameter %s: given in both params and secret_params" % both[0])
        wanted = dict(params)
        wanted.update(secret_params)
        for name, value in wanted.items():
            check_value(name, value)
        if not wanted:
            raise PostfixError("params and secret_params are empty")
    elif state == "absent":
        names = []
        for group_ in (params, secret_params):
            if isinstance(group_, dict):
                for name, value in group_.items():
                    if group_ is params and name in SECRET[table_type] and value not in (None, ""):
                        raise PostfixError("parameter %s: a value in params is logged; list only the name" % name)
                    names.append(name)
            elif isinstance(group_, (list, tuple)):
                names.extend(group_)
            else:
                raise PostfixError("params must be a list of names or a dictionary with state=absent")
        for name in names:
            check_name(table_type, name)
        if not names:
            raise PostfixError("params is empty")
    else:
        raise PostfixError("unknown state %r" % (state,))
    hidden = set(SECRET[table_type]) | set(secret_params)
    gid = _group_id(group) if os.geteuid() == 0 else None
    uid = 0 if os.geteuid() == 0 else None

    def attempt():
        maincf = load(path, missing_ok=(state == "present"))
        exists = os.path.exists(path)
        before_text = masked(maincf, hidden) if exists else ""
        if state == "present":
            changed = maincf.set_many(wanted)
            if exclusive:
                changed += maincf.remove_many(sorted(n for n in maincf.params() if n not in wanted))
        else:
            changed = maincf.remove_many(names)
        return maincf, exists, before_text, changed

    def attributes_to_fix(exists):
        """(what, current) for an existing file whose mode/owner/group differ from the wanted."""
        if not exists:
            return []
        st = os.stat(path)
        fix = []
        if stat.S_IMODE(st.st_mode) != mode:
            fix.append("mode %04o -> %04o" % (stat.S_IMODE(st.st_mode), mode))
        if uid is not None and st.st_uid != uid:
            fix.append("owner %d -> %d" % (st.st_uid, uid))
        if gid is not None and st.st_gid != gid:
            fix.append("group %d -> %d" % (st.st_gid, gid))
        return fix

    result = {"path": path, "backup_file": None}

    def run():
        maincf, exists, before_text, changed = attempt()
        fix = attributes_to_fix(exists)
        write = bool(changed) or (state == "present" and not exists)
        if not check_mode:
            if fix:
                # Tighten first: the replacement below copies these attributes.
                if uid is not None or gid is not None:
                    os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
                os.chmod(path, mode)
            if write:
                data = maincf.render()

                def fill(tmp):
                    with open(tmp, "wb") as f:
                        f.write(data)
                    if not exists and (uid is not None or gid is not None):
                        os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)

                if backup and exists:
                    result["backup_file"] = _atomic.backup_copy(path)
                _atomic.replace(path, fill, mode=mode)
        return maincf, exists, before_text, changed, fix, write

    if check_mode:
        maincf, exists, before_text, changed, fix, write = run()
    else:
        timeout = _atomic.DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        try:
            with _atomic.locked(path, timeout):
                maincf, exists, before_text, changed, fix, write = run()
        except OSError as exc:
            raise PostfixError("cannot write %s: %s" % (path, exc.strerror or exc))
    result.update(
        changed=bool(write or fix),
        created=not exists and write,
        changed_params=sorted(changed),
        attributes_changed=fix,
        before=before_text,
        after=masked(maincf, hidden, changed),
        warnings=file_warnings(maincf, table_type, hidden),
    )
    return result
