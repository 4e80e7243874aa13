# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alias (or any key -> value) rows of a PostgreSQL table kept in sync in one transaction.

Postfix reads such a table through a pgsql_table(5) client file
(``query = SELECT goto FROM alias WHERE address='%s' AND active = '1'``). Two facts of that
client shape what is stored here:

* Postfix folds the lookup key before it builds the query (dict_pgsql.c, DICT_FLAG_FOLD_FIX;
  casefold for non-ASCII keys with SMTPUTF8, dict_utf8.c): a key stored with capitals is
  never found, so keys are stored folded.
* Several result rows, or a value ``a,b``, are one comma-separated list for virtual alias
  expansion (pgsql_table(5) "expansion_limit", cleanup(8) virtual alias rules), which is how
  PostfixAdmin stores ``goto``: a list value is stored ``a,b``.

The pure part (:func:`normalise_entries`, :func:`plan`) needs no server; :func:`sync` runs
it against the database with psycopg2: BEGIN, rows of the scope read ``FOR UPDATE``, plan,
DELETE / UPDATE (execute_values) / INSERT (COPY), COMMIT - or ROLLBACK in check mode and on
any error, so nothing is ever half-written.
"""

from __future__ import annotations

import io

from ansible_collections.mailops.postfix.plugins.module_utils._errors import MissingLibrary, PostfixError

ROLES = ("key", "value", "domain", "active", "modified")

# Column names per layout. PostfixAdmin's alias table (upgrade.php of Debian's postfixadmin
# 3.3, PostgreSQL): address varchar(255) PK, goto text NOT NULL, domain varchar(255) NOT NULL
# REFERENCES domain, created/modified timestamptz default now(), active boolean NOT NULL
# default true. ``created`` is left to its default; ``modified`` is set on every change, as
# PostfixAdmin does.
LAYOUTS = {
    "pairs": dict(table=None, columns=dict(key="key", value="value")),
    "postfixadmin": dict(table="alias", columns=dict(key="address", value="goto", domain="domain",
                                                     active="active", modified="modified")),
}

_MISSING = ("the psycopg2 Python library is needed on the target (Debian/Ubuntu: apt install python3-psycopg2; "
            "RHEL: dnf install python3-psycopg2; pip: psycopg2-binary)")


class SqlEntriesError(PostfixError):
    """A refusal or a database failure (nothing written)."""


def fold(key):
    """The key as Postfix queries it: ASCII lower-case, or full case folding for non-ASCII
    keys (dict_utf8.c with smtputf8_enable=yes, str.casefold() matches ICU on tested keys)."""
    return key.lower() if key.isascii() else key.casefold()


def domain_of(key):
    """``example.com`` for ``user@example.com`` and for the catch-all ``@example.com``."""
    return key.rpartition("@")[2] if "@" in key else None


def _text(value, what):
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list, tuple)):
        raise SqlEntriesError("%s: must be a string, not %s" % (what, type(value).__name__))
    value = str(value)
    for bad, name in (("\n", "a line break"), ("\r", "a carriage return"), ("\x00", "a NUL byte")):
        if bad in value:
            # A pgsql: result with a line break would inject a line into what Postfix expands.
            raise SqlEntriesError("%s: contains %s" % (what, name))
    return value


def _value(raw, what):
    """A string, or a list stored as ``a,b`` (PostfixAdmin's goto)."""
    if isinstance(raw, (list, tuple)):
        items = [_text(item, "%s item" % what).strip() for item in raw]
        if not items or any(not item for item in items):
            raise SqlEntriesError("%s: empty target in list" % what)
        return ",".join(items)
    value = _text(raw, what).strip()
    if not value:
        raise SqlEntriesError("%s: empty value" % what)
    return value


def normalise_entries(entries, state="present", layout="pairs", domain=None):
    """Validate ``entries`` (before any connection) and return {folded key: stored value}
    (value None for state=absent). Raises SqlEntriesError naming the entry."""
    if not isinstance(entries, dict):
        raise SqlEntriesError("entries: must be a mapping of key to value")
    if domain is not None:
        domain = fold(_text(domain, "domain").strip())
        if not domain or "@" in domain:
            raise SqlEntriesError("domain %r: a domain name without '@'" % domain)
    out = {}
    for raw_key, raw_value in entries.items():
        what = "entries[%r]" % (raw_key,)
        key = _text(raw_key, what + " key").strip()
        if not key:
            raise SqlEntriesError("%s: empty key" % what)
        if any(c.isspace() for c in key):
            raise SqlEntriesError("%s: white space in a key" % what)
        key = fold(key)
        if layout == "postfixadmin" and not domain_of(key):
            raise SqlEntriesError("%s: PostfixAdmin addresses are user@domain or @domain" % what)
        if domain is not None and domain_of(key) != domain:
            raise SqlEntriesError("%s: not in domain %s" % (what, domain))
        if key in out:
            raise SqlEntriesError("%s: the same key as another entry once folded (%s)" % (what, key))
        out[key] = None if state == "absent" else _value(raw_value, what)
    return out


def non_ascii(desired):
    """Keys whose key or value is not ASCII. Postfix 3.7's pgsql client hard-codes the client
    encoding LATIN1 (PQsetClientEncoding() in dict_pgsql.c): such a key is not found, or its
    value fails the lookup with a temporary error (the value arrives as LATIN1 bytes, which
    Postfix refuses as malformed UTF-8, or has no LATIN1 equivalent at all)."""
    return sorted(k for k, v in desired.items() if not k.isascii() or (v is not None and not v.isascii()))


class Plan:
    """What one sync does: inserts and updates ({key: value}), keys whose duplicate rows are
    replaced by one, removals; and the before/after text of the rows in scope."""

    def __init__(self):
        self.insert = {}
        self.update = {}
        self.replace = {}
        self.remove = []
        self.before = {}
        self.after = {}

    @property
    def changed(self):
        return bool(self.insert or self.update or self.replace or self.remove)

    @property
    def added(self):
        return sorted(self.insert)

    @property
    def updated(self):
        return sorted(list(self.update) + list(self.replace))

    @property
    def removed(self):
        return sorted(self.remove)

    @staticmethod
    def text(rows):
        """Sorted ``key value`` lines, inactive rows marked."""
        lines = []
        for key in sorted(rows):
            for value, active in rows[key]:
                lines.append("%s %s%s\n" % (key, value, "" if active is not False else "  # inactive"))
        return "".join(lines)


def plan(current, desired, state="present", exclusive=False, has_active=False, keep=()):
    """Compare the rows in scope (``current``: iterable of (key, value, active) with active
    None when the table has no such column) with ``desired`` ({key: value or None}). A row
    is wanted active when the table has an active column; ``exclusive`` leaves keys in
    ``keep`` alone."""
    p = Plan()
    for key, value, active in current:
        p.before.setdefault(key, []).append((value, active))
    p.after = dict((k, list(v)) for k, v in p.before.items())
    if state == "absent":
        p.remove = [key for key in desired if key in p.before]
    else:
        for key, value in desired.items():
            rows = p.before.get(key)
            want = (value, True if has_active else None)
            if not rows:
                p.insert[key] = value
            elif len(rows) > 1:
                p.replace[key] = value
            elif rows[0] != want:
                p.update[key] = value
            else:
                continue
            p.after[key] = [want]
        if exclusive:
            p.remove = [key for key in p.before if key not in desired and key not in keep]
    for key in p.remove:
        del p.after[key]
    return p


# -- the database side --------------------------------------------------------------------

def _psycopg2():
    try:
        import psycopg2
        import psycopg2.extras
        import psycopg2.sql
    except ImportError as exc:
        raise MissingLibrary("%s (import failed: %s)" % (_MISSING, exc))
    return psycopg2


def connect_kwargs(login_host="", login_port=5432, login_user="postgres", login_password="", login_db="",
                   login_unix_socket="", ssl_mode="prefer", ca_cert=None, connect_params=None):
    """psycopg2.connect() keywords, as community.postgresql builds them: a unix socket
    directory wins over a host; empty values are left to libpq's defaults."""
    kw = dict(host=login_unix_socket or login_host, port=login_port, user=login_user, password=login_password,
              dbname=login_db, sslmode=ssl_mode, sslrootcert=ca_cert)
    kw = dict((k, v) for k, v in kw.items() if v not in (None, ""))
    kw.setdefault("connect_timeout", 10)
    kw["application_name"] = "mailops.postfix.sql_entries"
    kw.update(connect_params or {})
    return kw


def where(kw):
    """Where the rows are, for messages (never the password)."""
    host = kw.get("host") or "local socket"
    return "postgresql %s@%s:%s/%s" % (kw.get("user", ""), host, kw.get("port", 5432), kw.get("dbname", ""))


def _db_message(exc):
    """The server's message and detail on one line (psycopg2 Diagnostics), else libpq's text."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        detail = getattr(diag, "message_detail", None)
        return primary + (" (%s)" % detail if detail else "")
    lines = (getattr(exc, "pgerror", None) or str(exc)).strip().splitlines()
    return " / ".join(line.strip() for line in lines if line.strip()) or type(exc).__name__


def _copy_text(fields):
    # COPY text format (PostgreSQL "COPY" reference, File Formats): backslash, tab, line
    # breaks escaped; line breaks are refused earlier anyway.
    return "\t".join(f.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
                     for f in fields) + "\n"


class Target:
    """schema.table and the column of each role."""

    def __init__(self, layout="pairs", table=None, schema="public", columns=None):
        if layout not in LAYOUTS:
            raise SqlEntriesError("layout %r: one of %s" % (layout, ", ".join(LAYOUTS)))
        self.layout = layout
        self.table = table or LAYOUTS[layout]["table"]
        if not self.table:
            raise SqlEntriesError("table: required with layout=%s" % layout)
        self.schema = schema or "public"
        self.columns = dict(LAYOUTS[layout]["columns"])
        for role, name in (columns or {}).items():
            if role not in ROLES:
                raise SqlEntriesError("columns: unknown role %r (roles: %s)" % (role, ", ".join(ROLES)))
            if name in (None, ""):
                self.columns.pop(role, None)
            else:
                self.columns[role] = str(name)
        for role in ("key", "value"):
            if not self.columns.get(role):
                raise SqlEntriesError("columns: the %s column is required" % role)

    @property
    def name(self):
        return "%s.%s" % (self.schema, self.table)


def sync(target, desired, state="present", exclusive=False, domain=None, exclusive_scope="domain",
         connection=None, check_mode=False, connect=None, keep_mailbox_aliases=True):
    """One transaction. ``desired`` comes from :func:`normalise_entries`; ``connection`` is
    :func:`connect_kwargs`'s dict. Returns (Plan, count of rows in scope after)."""
    if exclusive and state != "present":
        raise SqlEntriesError("exclusive applies to state=present only")
    if exclusive and domain is None and exclusive_scope != "table":
        raise SqlEntriesError("exclusive without domain would remove every other row of %s: give domain, "
                              "or exclusive_scope=table to mean the whole table" % target.name)
    if domain is not None:
        domain = fold(domain.strip())
    psycopg2 = _psycopg2()
    sql = psycopg2.sql
    connection = connection or {}
    try:
        conn = (connect or psycopg2.connect)(**connection)
    except psycopg2.Error as exc:
        raise SqlEntriesError("%s: cannot connect: %s" % (where(connection), _db_message(exc)))
    col = dict((role, sql.Identifier(name)) for role, name in target.columns.items())
    table = sql.Identifier(target.schema, target.table)
    try:
        with conn.cursor() as cur:
            select = [col["key"], col["value"]] + ([col["active"]] if "active" in col else [])
            query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(select), table)
            args = []
            if exclusive and domain is None:
                pass  # the whole table (exclusive_scope=table)
            elif exclusive and "domain" in col:
                query += sql.SQL(" WHERE {} = %s OR {} = ANY(%s)").format(col["domain"], col["key"])
                args = [domain, list(desired)]
            elif exclusive:
                # Keys of the domain, whatever their case: a capitalised key is never found by
                # Postfix and is removed like any other row not in entries.
                like = "%@" + domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query += sql.SQL(" WHERE lower({}) LIKE %s OR {} = ANY(%s)").format(col["key"], col["key"])
                args = [like, list(desired)]
            else:
                query += sql.SQL(" WHERE {} = ANY(%s)").format(col["key"])
                args = [list(desired)]
            if not check_mode:
                # Writers of the same rows wait for this transaction; readers (Postfix) don't.
                query += sql.SQL(" FOR UPDATE")
            cur.execute(query, args)
            rows = [(r[0], r[1], (bool(r[2]) if r[2] is not None else False) if len(r) > 2 else None)
                    for r in cur.fetchall()]
            keep = ()
            if exclusive and keep_mailbox_aliases and target.layout == "postfixadmin":
                # PostfixAdmin gives every mailbox an alias row (address = goto) so that a
                # catch-all of its domain does not take the mailbox's mail: not ours to remove.
                query = sql.SQL("SELECT username FROM {}").format(sql.Identifier(target.schema, "mailbox"))
                if domain is not None:
                    query += sql.SQL(" WHERE domain = %s")
                cur.execute(query, [domain] if domain is not None else [])
                keep = set(r[0] for r in cur.fetchall())
            p = plan(rows, desired, state=state, exclusive=exclusive, has_active="active" in col, keep=keep)
            if p.changed and not check_mode:
                _apply(cur, sql, psycopg2.extras, table, col, p)
        if check_mode or not p.changed:
            conn.rollback()
        else:
            conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise SqlEntriesError("%s: %s: %s" % (where(connection), target.name, _db_message(exc)))
    finally:
        conn.close()
    return p, sum(len(v) for v in p.after.values())


def _apply(cur, sql, extras, table, col, p):
    gone = list(p.remove) + list(p.replace)
    if gone:
        cur.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(table, col["key"]), [gone])
    if p.update:
        sets = [sql.SQL("{} = d.v").format(col["value"])]
        if "active" in col:
            sets.append(sql.SQL("{} = true").format(col["active"]))
        if "modified" in col:
            sets.append(sql.SQL("{} = now()").format(col["modified"]))
        statement = sql.SQL("UPDATE {} AS t SET {} FROM (VALUES %s) AS d(k, v) WHERE t.{} = d.k").format(
            table, sql.SQL(", ").join(sets), col["key"])
        extras.execute_values(cur, statement.as_string(cur), sorted(p.update.items()), page_size=5000)
    new = dict(p.insert)
    new.update(p.replace)
    if new:
        names = [col["key"], col["value"]] + [col[r] for r in ("domain", "active") if r in col]
        buf = io.StringIO()
        for key in sorted(new):
            fields = [key, new[key]]
            if "domain" in col:
                fields.append(domain_of(key) or "")
            if "active" in col:
                fields.append("t")
            buf.write(_copy_text(fields))
        buf.seek(0)
        cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(", ").join(names)).as_string(cur),
                        buf)
