# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ask any Postfix table (pgsql:, mysql:, ldap:, sqlite:, proxy:..., or a file table) through
the host's own ``postmap -q -``, and compare a local table with another one.

The host's postmap is the only faithful client of a network table: it loads the same client
plugin (dict_pgsql.c, dict_mysql.c, dict_ldap.c, dict_sqlite.c) the daemons load, with the same
client file, the same key folding (postmap -q sets DICT_FLAG_FOLD_FIX, postmap.c) and the same
query expansion (db_common.c).

``postmap -q -`` (postmap(1)) reads one key a line from stdin and prints ``key<TAB>value`` for
each key found, in input order, in one process: one connection to the database for all keys.
A lookup that fails (database down, bad password, bad query) is fatal in postmap_queries()
("table TYPE:NAME: query error"), so a failure is never mistaken for "not found".
"""

from __future__ import annotations

import os
import re
import subprocess

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

# Parameters of pgsql_table(5), mysql_table(5), ldap_table(5) whose values are secrets.
SECRET_PARAMS = ("password", "bind_pw")
# user:password@ in a URI (a pgsql ``hosts`` value may be a postgresql:// URI).
_URI_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_TABLE_SPEC = re.compile(r"^((?:proxy:)?)([a-z0-9_]+):(.+)$")
# proxymap(8)'s socket under queue_directory (dict_proxy.c: "private/" + MAIL_SERVICE_PROXYMAP).
_PROXY_SOCKET = "private/proxymap"


class NetworkTable(object):
    """A ``TYPE:NAME`` (or ``proxy:TYPE:NAME``) table as main.cf names it, asked through the
    host's postmap with ``-c config_dir``."""

    def __init__(self, spec, config_dir="/etc/postfix", timeout=120):
        m = _TABLE_SPEC.match(spec or "")
        if not m:
            raise PostfixError("%s: not a Postfix table (TYPE:NAME, for example pgsql:/etc/postfix/pgsql-virtual.cf)"
                               % spec)
        self.spec = spec
        self.proxy = bool(m.group(1))
        self.type = m.group(2)
        self.name = m.group(3)
        self.config_dir = config_dir
        self.timeout = timeout
        self.warnings = []   # Postfix's warnings of the last successful query (redacted)

    # -- secrets ----------------------------------------------------------------------------
    def secrets(self):
        """Values in the client file that must never be shown (password, bind_pw); empty when
        NAME is not a readable file. The file has main.cf's syntax (cfg_parser.c)."""
        try:
            with open(self.name, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return []
        found, current = [], None
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace():   # continuation line (main.cf syntax)
                if current is not None:
                    found[current] += " " + line.strip()
                continue
            name, sep, value = line.partition("=")
            current = None
            if sep and name.strip() in SECRET_PARAMS and value.strip():
                found.append(value.strip())
                current = len(found) - 1
        return found

    @staticmethod
    def redact(text, hidden):
        for value in sorted(hidden, key=len, reverse=True):
            text = text.replace(value, "<hidden>")
        return _URI_PASSWORD.sub(r"\1<hidden>@", text)

    # -- running postmap ----------------------------------------------------------------------
    def _postmap(self):
        from ansible_collections.mailops.postfix.plugins.module_utils import _postfix  # pylint: disable=import-outside-toplevel
        postmap = _postfix.which("postmap")
        if not postmap:
            raise PostfixError("%s: postmap not found: a network table is queried by the host's Postfix" % self.spec)
        binary = _postfix.Binary()
        types = binary.map_types()
        wanted = ["proxy", self.type] if self.proxy else [self.type]
        for t in wanted:
            if t not in types:
                raise PostfixError("%s: this host's Postfix has no %s table type (postconf -m lists: %s); install it "
                                   "(Debian: postfix-%s)" % (self.spec, t, " ".join(types), t))
        argv = [postmap]
        if self.config_dir and os.path.exists(os.path.join(self.config_dir, "main.cf")):
            argv += ["-c", self.config_dir]
        if self.proxy:
            self._require_proxymap(binary)
        return argv

    def _require_proxymap(self, binary):
        """proxy: tables are answered by a running Postfix's proxymap(8); without it postmap
        retries the socket for many seconds before giving up (clnt_stream.c), so say so now."""
        argv = [binary.postconf, "-h", "queue_directory"]
        if self.config_dir and os.path.exists(os.path.join(self.config_dir, "main.cf")):
            argv[1:1] = ["-c", self.config_dir]
        from ansible_collections.mailops.postfix.plugins.module_utils import _postfix  # pylint: disable=import-outside-toplevel
        rc, out, err = _postfix._run(argv)  # pylint: disable=protected-access
        if rc != 0:
            raise PostfixError("%s: postconf -h queue_directory failed: %s" % (self.spec, err.strip()))
        socket_path = os.path.join(out.strip(), _PROXY_SOCKET)
        if not os.path.exists(socket_path):
            raise PostfixError("%s: a proxy: table needs a running Postfix (proxymap(8)); %s does not exist"
                               % (self.spec, socket_path))

    def _direct_reason(self, key):
        """Through proxymap(8) a failed lookup says only "query error" (the reason is in the
        mail log): ask the table once without proxy: for the client library's own words."""
        direct = NetworkTable("%s:%s" % (self.type, self.name), self.config_dir, min(self.timeout, 30))
        try:
            direct.query([key])
        except PostfixError as e:
            return "; asked without proxy: (the reason proxymap(8) logs): %s" % str(e).split(": postmap -q failed: ", 1)[-1]
        return "; asked without proxy: the table answers (proxymap(8) itself fails: see the mail log)"

    def query(self, keys):
        """{key: value or None} for ``keys``, asked with one ``postmap -q - TABLE``.

        Keys are passed as given: postmap folds them as it folds any query (lower case,
        DICT_FLAG_FOLD_FIX) and prints each found key as it was given."""
        keys = list(keys)
        for key in keys:
            if key == "" or any(c in key for c in "\n\r\t\0"):
                # postmap -q - reads one key a line, ignores an empty one and prints
                # key<TAB>value (a TAB in a key would make the answer ambiguous).
                raise PostfixError("%s: key %r: an empty key or one with a line break, TAB or NUL cannot be "
                                   "queried" % (self.spec, key))
        result = dict((key, None) for key in keys)
        if not keys:
            return result
        from ansible_collections.mailops.postfix.plugins.module_utils import _postfix  # pylint: disable=import-outside-toplevel
        asked = [key.encode("utf-8", "surrogateescape") for key in keys]
        try:
            rc, found, err = _postfix.postmap_query(self._postmap(), self.spec, asked, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            why = ""
            if self.proxy:
                # dict_proxy.c retries for ever when proxymap(8) dies on the table (a client
                # file it cannot use, a table not in proxy_read_maps): the reason is in the mail log.
                why = ("; proxymap(8) did not answer: see the mail log (a client file proxymap cannot use, or a "
                       "table not listed in proxy_read_maps)")
            raise PostfixError("%s: postmap -q did not answer within %g seconds%s" % (self.spec, self.timeout, why))
        except PostfixError as e:
            raise PostfixError(self.redact(str(e), self.secrets()))
        hidden = self.secrets()
        problems = [line for line in err.splitlines() if re.search(r": (fatal|panic|error): ", line)]
        # postmap exits 0 when a key was found, 1 when none was (postmap.c); a fatal error
        # exits 1 too, recognised by its message.
        if problems or rc not in (0, 1):
            # Every line: the warnings before the fatal one say why (dict_pgsql.c: "connect to
            # pgsql server HOST: ... password authentication failed").
            text = "; ".join(line.strip() for line in err.splitlines() if line.strip()) or "exit status %d" % rc
            if self.proxy:
                text += self._direct_reason(keys[0])
            raise PostfixError(self.redact("%s: postmap -q failed: %s" % (self.spec, text), hidden))
        self.warnings = [self.redact(line, hidden) for line in err.splitlines() if line.strip()]
        for key, raw in zip(keys, asked):
            if raw in found:
                result[key] = found[raw].decode("utf-8", "surrogateescape")
        return result


def compare(expected, other, config_dir="/etc/postfix", timeout=120):
    """Ask ``other`` (a TYPE:NAME) for every key of ``expected`` ({key: value}, a local table's
    records) with one postmap run. Returns (differences, warnings): [{key, expected, got}]
    sorted by key, ``got`` None when ``other`` does not have the key."""
    table = NetworkTable(other, config_dir, timeout)
    keys = sorted(expected)
    got = table.query(keys)
    differences = [dict(key=k, expected=expected[k], got=got[k]) for k in keys if got[k] != expected[k]]
    return differences, list(table.warnings)
