# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where does mail to an address go: the path Postfix takes, computed from main.cf and the
tables (``static``), or asked of the running Postfix with ``sendmail -bv`` (``live``).

Static mode follows the steps of one submission, as ``sendmail -bv`` reports them:

1. cleanup(8) canonicalises the address through trivial-rewrite(8) ``rewrite``: a bare name
   gets ``@$myorigin`` (append_at_myorigin), ``user@host`` gets ``.$mydomain`` when
   append_dot_mydomain is on, a trailing dot goes.
2. cleanup(8) (cleanup_addr.c) maps it through recipient_canonical_maps, then canonical_maps
   (canonical(5); one address out, repeated until it stops changing, at most 10 times).
3. cleanup(8) (cleanup_map1n.c) expands it through virtual_alias_maps (virtual(5)):
   recursively; an address that is part of its own expansion is kept and not expanded again;
   virtual_alias_recursion_limit and virtual_alias_expansion_limit stop the message ("message
   not accepted, try again later").
4. trivial-rewrite(8) ``resolve`` (resolve.c) gives each result an address class and a
   (transport, nexthop): mydestination and the inet_interfaces/proxy_interfaces literals are
   local, then virtual_alias_domains (an address left there is "User unknown in virtual
   alias table"), virtual_mailbox_domains, relay_domains, else default; a transport:nexthop
   in local_transport etc. sets the nexthop; relayhost overrides the domain for relay and
   default; transport_maps (transport(5)) override all but the virtual alias class;
   relocated_maps bounce last.
5. The delivery agent, for the transports whose answer is known without delivering:
   local(8) expands alias_maps (aliases(5)) recursively within itself, forwards addresses
   that resolve to another transport ("forwards to", not followed further, like
   ``sendmail -bv``), delivers to the mailbox of a system user or says
   ``unknown user: "name"``; virtual(8) says ``unknown user: "address"`` for an address not in
   virtual_mailbox_maps; error(8) bounces with its nexthop text; discard(8) accepts.

Address lookups (mail_addr_find.c): ``user+ext@domain``, ``user@domain``, then, when the
domain is $myorigin or local (resolve_local: mydestination, inet_interfaces,
proxy_interfaces), ``user+ext`` and ``user``, then ``@domain``. regexp and pcre tables see
the full address only. An extension removed to find a match (``user@domain`` or ``user``) is
added to every result when propagate_unmatched_extensions names the table's class.

Tables: hash, cdb and lmdb through this collection's readers (_mapbuild.Table.query); every
other type (regexp, pcre, cidr, texthash, inline, static, ldap, pgsql, ...) through the host's
``postmap -q KEY TYPE:NAME`` with ``-c config_dir``; such tables are named in
``lookups_via_postmap``.

Staged configuration (``staged``): the route as it will be once a change is written, without
writing it. ``staged["params"]`` are main.cf parameters laid over the file (None: removed, so
the default applies, as ``postconf -X``); ``staged["tables"]`` maps ``TYPE:PATH`` or ``PATH`` to
the entries that table will hold: the keys are folded as postmap(1)/postalias(1) fold them
for indexed types (DICT_FLAG_FOLD_FIX: lowercase, casefold for UTF-8 with SMTPUTF8) and so is
every query; a list value is written ``a, b`` as lookup_table and aliases write it. A table
named in ``staged["merge"]`` keeps its file's entries under the staged ones (a None value
removes a key), like a non-exclusive write. Only indexed types (hash, cdb, lmdb) can be
staged; a ``PATH`` matches a main.cf reference of any indexed type to that source. A regexp,
pcre, cidr or texthash table that a staged configuration names and that does not exist yet is
looked up as empty (named in ``limits``).

Not modelled: smtpd(8)'s RCPT checks (local_recipient_maps' "User unknown in local recipient
table" is an SMTP-time answer, not what local(8) or ``sendmail -bv`` say), .forward files,
luser_relay, sender-dependent transports and relayhosts, masquerading, address
verification of SMTP destinations (those get no ``rejected``, the answer is the remote
server's).
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import time

from ansible_collections.mailops.postfix.plugins.module_utils import _aliasfile, _db, _mapbuild, _mastercf
from ansible_collections.mailops.postfix.plugins.module_utils import _maincf, _tablefile
from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import entries_from_text, fold_key, to_bytes
from ansible_collections.mailops.postfix.plugins.module_utils import _postfix
from ansible_collections.mailops.postfix.plugins.module_utils._address_classes import class_domains
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

CLASSES = ("local", "virtual_alias", "virtual_mailbox", "relay", "default")
_CLASS_OF_PARAM = {
    "mydestination": "local",
    "virtual_alias_domains": "virtual_alias",
    "virtual_mailbox_domains": "virtual_mailbox",
    "relay_domains": "relay",
}
# Table types whose keys are patterns: mail_addr_find and transport_lookup give them the
# full address only (DICT_FLAG_FIXED lookups skip them; virtual(5), transport(5)).
PATTERN_TYPES = ("regexp", "pcre")
# Tables read from a source file by postmap -q (not indexed, cannot be staged), and those
# whose name is a client file (the data in a database, pgsql_table(5) ...).
FILE_TYPES = ("regexp", "pcre", "cidr", "texthash")
CLIENT_TYPES = ("pgsql", "mysql", "ldap", "sqlite")
# cleanup_map11.c MAX_RECURSION.
CANONICAL_RECURSION = 10
# local/alias.c: "if (state.level > 100) ... alias database loop for %s".
LOCAL_ALIAS_LEVEL = 100
# A guard of this engine (not Postfix's): local alias expansion steps per address.
LOCAL_WORK_LIMIT = 20000
# What the address must look like here: no blanks, brackets, commas or quotes (sendmail
# would split "a b" into two recipients; tok822 would parse "<a>" as a route address).
_ADDRESS_RE = re.compile(r'\A[^\s<>(),;"\\@]+(@(\[[0-9A-Fa-f:.]+\]|[^\s<>(),;:"\\@\[\]]+))?\Z')
_DSN_RE = re.compile(r"\A[245]\.\d{1,3}\.\d{1,3}\s+")


class RouteError(PostfixError):
    """Why one address (or the whole call) cannot be followed."""


def _bool(value, default):
    value = (value or "").strip().lower()
    if not value:
        return default
    return value in ("yes", "true", "1", "on")


def _int(value, default):
    try:
        return int((value or "").strip())
    except ValueError:
        return default


# -- tables ----------------------------------------------------------------------------------
class _Tables(object):
    """Lookups in ``type:name`` tables: our readers for hash/cdb/lmdb, the host's postmap -q
    for the rest; results cached for one call."""

    def __init__(self, config_dir, default_type, smtputf8, hostname):
        self.config_dir = config_dir
        self.default_type = default_type or "hash"
        self.smtputf8 = smtputf8
        self.hostname = hostname
        self.used = []          # the tables asked through postmap -q (for one address)
        self._cache = {}
        self._tables = {}
        self._postmap = None
        self.staged = []        # [(type or None, path, {folded key: value}, merge)]
        self.staging = False    # routing a staged configuration
        self.absent = []        # file tables of a staged configuration not on the host yet
        self.alias_refs = set()  # refs of alias_maps: staged values rendered as aliases(5)

    def stage(self, tables, merge=()):
        """Tables as they will be (see the module docstring): ``{TYPE:PATH or PATH: {key: value}}``,
        or the entries as text, "KEY<TAB>VALUE" per line."""
        merge = set(merge or ())
        for spec, entries in (tables or {}).items():
            typ, sep, path = str(spec).partition(":")
            if not sep:
                typ, path = None, spec
            else:
                typ = typ.lower()
                if typ not in _db.INDEXED_TYPES:
                    raise RouteError("staged table %s: only indexed tables (%s) can be staged"
                                     % (spec, ", ".join(sorted(_db.INDEXED_TYPES))))
            if not path.startswith("/"):
                raise RouteError("staged table %s: give the absolute path of the table's source" % spec)
            if entries is None:
                entries = {}
            if isinstance(entries, str):
                try:
                    entries = entries_from_text(entries, "staged table %s" % spec)
                except PostfixError as e:
                    raise RouteError(str(e))
            if not isinstance(entries, dict):
                raise RouteError("staged table %s: entries must be a dict of key: value, or text" % spec)
            folded = {}
            for key, value in entries.items():
                try:
                    folded[fold_key(to_bytes(str(key), "key"), True, self.smtputf8)] = value
                except PostfixError as e:
                    raise RouteError("staged table %s: %s" % (spec, e))
            self.staged.append((typ, os.path.normpath(path), folded, spec in merge))
        unknown = merge - set(tables or {})
        if unknown:
            raise RouteError("staged merge names tables that are not staged: %s" % ", ".join(sorted(unknown)))

    def _staged_for(self, ref):
        _inner, typ, name = self._unproxied(ref)
        if typ not in _db.INDEXED_TYPES or not name.startswith("/"):
            return None
        name = os.path.normpath(name)
        for s_typ, path, entries, merge in self.staged:
            if path == name and s_typ in (None, typ):
                return entries, merge
        return None

    def _staged_lookup(self, ref, key, entries):
        """(found, value) of a staged table: found False when the key is not there."""
        folded = fold_key(to_bytes(key, "key"), True, self.smtputf8)
        if folded not in entries:
            return False, None
        value = entries[folded]
        if value is None:
            return True, None
        try:
            if ref in self.alias_refs:
                raw = _aliasfile.render_value(value)
            else:
                raw = _tablefile.render_value(value if isinstance(value, (list, tuple)) else str(value))
        except PostfixError as e:
            raise RouteError("staged table %s: key %s: %s" % (ref, key, e))
        return True, raw.decode("utf-8", "surrogateescape").strip()

    def split(self, value):
        """The table references of a main.cf ``*_maps`` value."""
        refs = []
        for token in _mastercf.tokenize(value.replace(",", " ")) if value.strip() else []:
            refs.append(token if ":" in token else "%s:%s" % (self.default_type, token))
        return refs

    @staticmethod
    def kind(ref):
        typ = ref.split(":", 1)[0].lower()
        if typ == "proxy":
            return _Tables.kind(ref.split(":", 1)[1])
        return typ

    def find(self, refs, key, partial):
        """(value, ref) of the first table of ``refs`` holding ``key`` (maps_find), or None.
        ``partial``: a key derived from the address, which pattern tables are not asked."""
        for ref in refs:
            if partial and self.kind(ref) in PATTERN_TYPES:
                continue
            value = self.lookup(ref, key)
            if value is not None:
                return value, ref
        return None

    def lookup(self, ref, key):
        if not self.indexed(ref) and ref not in self.used:
            self.used.append(ref)
        cache_key = (ref, key)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._lookup(ref, key)
        return self._cache[cache_key]

    @staticmethod
    def _unproxied(ref):
        inner = ref
        while inner.lower().startswith("proxy:"):
            inner = inner[len("proxy:"):]
        typ, _sep, name = inner.partition(":")
        return inner, typ.lower(), name

    def indexed(self, ref):
        """Read by this collection's readers (hash, cdb, lmdb files), not by postmap -q."""
        _inner, typ, name = self._unproxied(ref)
        return typ in _db.INDEXED_TYPES and name.startswith("/")

    def _lookup(self, ref, key):
        inner, typ, name = self._unproxied(ref)
        staged = self._staged_for(ref)
        if staged is not None:
            entries, merge = staged
            found, value = self._staged_lookup(ref, key, entries)
            if found or not merge:
                return value
            if not os.path.exists(_db.index_path(name, typ)):
                return None     # merged over a table that has no index yet
        if self.indexed(ref):
            table = self._tables.get(inner)
            try:
                if table is None:
                    table = self._tables[inner] = _mapbuild.Table(name, typ, smtputf8=self.smtputf8,
                                                                  hostname=self.hostname)
                return table.query([key])[key]
            except (PostfixError, OSError) as e:
                raise RouteError("%s: table lookup problem: %s" % (ref, e))
        return self._host_query(ref, key)

    def _host_query(self, ref, key):
        _inner, typ, name = self._unproxied(ref)
        if self.staging and typ in FILE_TYPES + CLIENT_TYPES and name.startswith("/") and not os.path.exists(name):
            # A table the change will create but that cannot be staged (a database's client file
            # not written yet, too): empty for now.
            if ref not in self.absent:
                self.absent.append(ref)
            return None
        if self._postmap is None:
            self._postmap = _postfix.which("postmap") or ""
        if not self._postmap:
            raise RouteError("%s: postmap not found: a %s table is looked up by the host's postmap -q"
                             % (ref, self.kind(ref)))
        argv = [self._postmap, "-c", self.config_dir, "-q", key, ref]
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                                  check=False)
        except OSError as e:
            raise RouteError("%s: %s" % (self._postmap, e))
        out = proc.stdout.decode("utf-8", "surrogateescape")
        err = proc.stderr.decode("utf-8", "replace")
        problems = [ln.split(": ", 1)[-1] for ln in err.splitlines() if re.search(r": (fatal|panic|error): ", ln)]
        if proc.returncode == 0:
            return out[:-1] if out.endswith("\n") else out
        if proc.returncode == 1 and not problems:
            return None
        raise RouteError("%s: table lookup problem (postmap -q): %s" % (ref, "; ".join(problems) or err.strip()))


# -- the router ------------------------------------------------------------------------------
class Router(object):
    """Static routing for one configuration directory."""

    def __init__(self, config_dir, binary=None, staged=None):
        self.config_dir = config_dir
        main_cf = _postfix.main_cf_path(config_dir)
        if not os.path.isfile(main_cf):
            raise RouteError("%s: no such file (config_dir must hold Postfix's main.cf)" % main_cf)
        try:
            _maincf_doc, self.config = _postfix.load(config_dir, binary=binary)
        except PostfixError as e:
            raise RouteError(str(e))
        staged = staged or {}
        if staged.get("params"):
            # main.cf as it will be: the staged parameters over the file's (None: removed).
            explicit = dict(self.config.explicit)
            for name, value in staged["params"].items():
                try:
                    _maincf.check_name(name)
                except PostfixError as e:
                    raise RouteError("staged params: %s" % e)
                if value is None:
                    explicit.pop(name, None)
                    continue
                try:
                    explicit[name] = _maincf.normalize_value(value, name)
                except PostfixError as e:
                    raise RouteError("staged params: %s" % e)
            self.config.explicit = explicit
        cfg = self.config
        self.myhostname = cfg.value("myhostname") or _fqdn()
        self.mydomain = cfg.value("mydomain") or self.myhostname.partition(".")[2] or "localdomain"
        self.myorigin = cfg.value("myorigin") or self.myhostname
        self.smtputf8 = _mapbuild.smtputf8_enabled(cfg)
        self.delim = cfg.value("recipient_delimiter")
        self.propagate = set(w.lower() for w in _split(cfg.value("propagate_unmatched_extensions")))
        if cfg.raw("propagate_unmatched_extensions") is None:
            self.propagate = {"canonical", "virtual"}
        self.tables = _Tables(config_dir, cfg.value("default_database_type"), self.smtputf8, self.myhostname)
        self.recursion_limit = _int(cfg.value("virtual_alias_recursion_limit"), 1000)
        self.expansion_limit = _int(cfg.value("virtual_alias_expansion_limit"), 1000)
        lists, self.unchecked = class_domains(cfg)
        self.domains = dict((_CLASS_OF_PARAM[p], set(names)) for p, names in lists.items())
        self.local_literals = self._literals()
        self.services = self._services()
        self.maps = {}
        for param in ("canonical_maps", "recipient_canonical_maps", "virtual_alias_maps", "virtual_mailbox_maps",
                      "transport_maps", "relocated_maps", "alias_maps"):
            self.maps[param] = self.tables.split(cfg.value(param))
        self.tables.alias_refs = set(self.maps["alias_maps"])
        self.tables.stage(staged.get("tables"), staged.get("merge"))
        self.tables.staging = bool(staged)
        pdms = [w.lower() for w in _split(cfg.value("parent_domain_matches_subdomains"))]
        self.transport_parent_style = "transport_maps" in pdms

    # -- configuration helpers ------------------------------------------------------------
    def _literals(self):
        """``[ip]`` forms that resolve_local() takes as local (inet_interfaces,
        proxy_interfaces; "all" and "loopback-only" stand for the loopback addresses here)."""
        out = set()
        for param in ("inet_interfaces", "proxy_interfaces"):
            for word in _split(self.config.value(param)):
                word = word.lower()
                if word in ("all", "loopback-only", "localhost"):
                    out.update(("127.0.0.1", "::1"))
                else:
                    out.add(word.strip("[]"))
        return out

    def _services(self):
        """master.cf service name -> command (local, virtual, error, discard, smtp, ...)."""
        path = _postfix.master_cf_path(self.config_dir)
        try:
            master = _mastercf.MasterCf.load(path)
        except PostfixError:
            return {}
        out = {}
        for item in master.items:
            if isinstance(item, _mastercf.Entry) and not item.commented and item.fields[1] == "unix" and item.argv:
                out[item.fields[0]] = item.argv[0]
        return out

    def command(self, transport):
        """The daemon a transport (master.cf service) runs; the name itself when unknown."""
        return self.services.get(transport, transport)

    # -- addresses ----------------------------------------------------------------------
    def canonicalize(self, address):
        """trivial-rewrite rewrite (local context): @$myorigin for a bare name
        (append_at_myorigin), .$mydomain for a dotless host (append_dot_mydomain), no trailing
        dot (rewrite.c)."""
        local, at, domain = address.rpartition("@")
        if not at:
            if not _bool(self.config.value("append_at_myorigin"), True):
                return address
            return "%s@%s" % (address, self.myorigin)
        if domain.endswith("."):
            domain = domain[:-1]
        if (domain and "." not in domain and not domain.startswith("[")
                and _bool(self.config.value("append_dot_mydomain"), False)):
            domain = "%s.%s" % (domain, self.mydomain)
        return "%s@%s" % (local, domain)

    def split_extension(self, local):
        """(user, extension incl. delimiter) like split_addr.c, or (local, "")."""
        if not self.delim or local.lower() in ("postmaster", "mailer-daemon"):
            return local, ""
        if "-" in self.delim and (local.lower().startswith("owner-") or local.lower().endswith("-request")):
            return local, ""
        for i, ch in enumerate(local):
            if ch in self.delim:
                if i == 0:
                    return local, ""
                return local[:i], local[i:]
        return local, ""

    def is_local_domain(self, domain):
        """resolve_local(): mydestination, or an [ip] of inet_interfaces/proxy_interfaces."""
        domain = domain.lower().rstrip(".")
        if domain.startswith("[") and domain.endswith("]"):
            ip = domain[1:-1]
            if ip.startswith("ipv6:"):
                ip = ip[5:]
            return ip in self.local_literals
        return domain in self.domains.get("local", ())

    def addr_find(self, param, address):
        """mail_addr_find(): (value, key, table, extension) or None (see module docstring)."""
        refs = self.maps.get(param) or self.tables.split(self.config.value(param))
        if not refs:
            return None
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        user, ext = self.split_extension(local)
        tries = [(address, False, "")]
        if ext and at:
            tries.append(("%s@%s" % (user, domain), True, ext))
        if at and (domain.lower() == self.myorigin.lower() or self.is_local_domain(domain)):
            tries.append((local, True, ""))
            if ext:
                tries.append((user, True, ext))
        if at:
            tries.append(("@" + domain, True, ""))
        for key, partial, unmatched in tries:
            found = self.tables.find(refs, key, partial)
            if found is not None:
                return found[0], key, found[1], unmatched
        return None

    def addr_map(self, param, address, propagate_class):
        """mail_addr_map(): the addresses a table maps ``address`` to (canonicalised, with the
        unmatched extension when propagated), and the via step; None when not found."""
        found = self.addr_find(param, address)
        if found is None:
            return None
        value, key, ref, ext = found
        text = value
        if text.startswith("@"):
            # "Prepend the original user to @otherdomain" (mail_addr_map.c), no extension.
            local = address.rpartition("@")[0] if "@" in address else address
            if ext and local.endswith(ext):
                local = local[:-len(ext)]
            text = local + text
        results = []
        for target in _aliasfile.targets(text):
            addr = _unquote(target.text)
            if not addr:
                continue
            addr = self.canonicalize(addr)
            if ext and propagate_class in self.propagate:
                lp, at, dom = addr.rpartition("@")
                addr = "%s%s@%s" % (lp, ext, dom) if at else addr + ext
            results.append(addr)
        return results, {"table": ref, "key": key, "result": value}

    # -- one address ----------------------------------------------------------------------
    def route(self, address):
        """The route of one address: dict(address, recipients, loops, limits, error)."""
        out = dict(address=None, recipients=[], loops=[], limits=[], error=None, lookups_via_postmap=[])
        self.tables.used = []
        self.tables.absent = []
        try:
            if not isinstance(address, str) or not _ADDRESS_RE.match(address.strip()):
                raise RouteError("not an address: %r (want user or user@domain, without blanks, brackets, "
                                 "commas or quotes)" % (address,))
            self._route(address.strip(), out)
        except RouteError as e:
            out["error"] = str(e)
            out["recipients"] = []
        out["lookups_via_postmap"] = list(self.tables.used)
        for ref in self.tables.absent:
            out["limits"].append("%s does not exist yet and cannot be staged: looked up as empty" % ref)
        return out

    def _route(self, asked, out):
        address = self.canonicalize(asked)
        out["address"] = address
        via = []
        if address != asked:
            via.append({"rewrite": "canonicalize", "key": asked, "result": address})
        # cleanup_addr.c: recipient_canonical_maps, then canonical_maps (canonical(5)).
        for param in ("recipient_canonical_maps", "canonical_maps"):
            address = self._map11(param, address, via, out)
        for addr, chain in self._virtual(address, via, out):
            for rcpt in self._deliver(addr, chain, out):
                key = (rcpt["address"].lower(), rcpt["transport"], rcpt["rejected"])
                if key not in [(r["address"].lower(), r["transport"], r["rejected"]) for r in out["recipients"]]:
                    out["recipients"].append(rcpt)

    def _map11(self, param, address, via, out):
        """cleanup_map11.c: one address in, one out, until it stops changing."""
        if not self.maps.get(param):
            return address
        for _count in range(CANONICAL_RECURSION):
            found = self.addr_map(param, address, "canonical")
            if found is None:
                return address
            results, step = found
            via.append(dict(step, parameter=param))
            if not results:
                return address
            if len(results) > 1:
                out["limits"].append("multi-valued %s entry for %s: only the first address is used" % (param, address))
            if results[0] == address:
                return address
            address = results[0]
        out["limits"].append("%s: more than %d rewrites of %s" % (param, CANONICAL_RECURSION, address))
        raise RouteError("unreasonable %s map nesting for %s -- message not accepted, try again later"
                         % (param, address))

    def _virtual(self, address, via, out):
        """cleanup_map1n.c: [(address, via chain)] after virtual alias expansion."""
        if not self.maps.get("virtual_alias_maps"):
            return [(address, via)]
        argv = [address]
        chains = [list(via)]
        fixed = set()           # been_here_fixed: addresses that expanded into themselves
        for arg in range(10 ** 9):
            if arg >= len(argv):
                break
            if len(argv) > self.expansion_limit:
                out["limits"].append("virtual_alias_expansion_limit (%d) exceeded for %s"
                                     % (self.expansion_limit, address))
                raise RouteError("unreasonable virtual_alias_maps map expansion size for %s -- message not accepted, "
                                 "try again later" % address)
            seen = [argv[arg].lower()]
            count = 0
            while True:
                if argv[arg].lower() in fixed:
                    break
                if count >= self.recursion_limit:
                    out["limits"].append("virtual_alias_recursion_limit (%d) reached for %s (expanding %s)"
                                         % (self.recursion_limit, argv[arg], address))
                    # cleanup_map1n.c names the address it was asked to expand.
                    raise RouteError("unreasonable virtual_alias_maps map nesting for %s -- message not accepted, "
                                     "try again later" % address)
                found = self.addr_map("virtual_alias_maps", argv[arg], "virtual")
                if found is None:
                    break
                results, step = found
                saved = argv[arg]
                chain = chains[arg] + [dict(step, parameter="virtual_alias_maps")]
                if not results:
                    break
                for i, res in enumerate(results):
                    if i == 0:
                        argv[arg] = res
                        chains[arg] = chain
                    else:
                        argv.append(res)
                        chains.append(list(chain))
                    # "Allow an address to expand into itself once."
                    if saved.lower() == res.lower():
                        fixed.add(saved.lower())
                count += 1
                here = argv[arg].lower()
                if seen is not None and here in seen and here not in fixed:
                    # The first cycle of this slot; Postfix goes on until the recursion limit.
                    loop = " -> ".join(seen[seen.index(here):] + [here])
                    if loop not in out["loops"]:
                        out["loops"].append(loop)
                    seen = None
                elif seen is not None:
                    seen.append(here)
        return list(zip(argv, chains))

    # -- resolve (trivial-rewrite) ------------------------------------------------------------
    def address_class(self, domain):
        if self.is_local_domain(domain):
            return "local"
        d = domain.lower().rstrip(".")
        for cls in ("virtual_alias", "virtual_mailbox", "relay"):
            if d in self.domains.get(cls, ()):
                return cls
        return "default"

    def resolve(self, address):
        """resolve.c: (class, transport, nexthop, error text or None, via steps)."""
        domain = address.rpartition("@")[2]
        cls = self.address_class(domain)
        cfg = self.config
        error = None
        if cls == "virtual_alias":
            channel, nexthop = "error", "5.1.1 User unknown in virtual alias table"
        elif cls == "local":
            channel, nexthop = cfg.value("local_transport") or "local:$myhostname", domain
        elif cls == "virtual_mailbox":
            channel, nexthop = cfg.value("virtual_transport") or "virtual", domain
        else:
            param = "relay_transport" if cls == "relay" else "default_transport"
            channel = cfg.value(param) or ("relay" if cls == "relay" else "smtp")
            nexthop = cfg.value("relayhost") or domain
        channel, sep, dest = channel.partition(":")
        if sep and dest:
            nexthop = dest
        steps = []
        if cls != "virtual_alias" and self.maps.get("transport_maps"):
            found = self._transport_lookup(address, domain)
            if found is not None:
                value, key, ref = found
                steps.append({"table": ref, "key": key, "result": value, "parameter": "transport_maps"})
                new_channel, _sep, new_nexthop = value.partition(":")
                # transport.c:update_entry()
                if not new_channel:
                    if new_nexthop:
                        nexthop = new_nexthop
                else:
                    channel = new_channel
                    if new_nexthop:
                        nexthop = new_nexthop
                    elif channel != "error":
                        nexthop = domain
                    else:
                        nexthop = "Address is undeliverable"
        if self.maps.get("relocated_maps"):
            found = self.addr_find("relocated_maps", address)
            if found is not None:
                steps.append({"table": found[2], "key": found[1], "result": found[0], "parameter": "relocated_maps"})
                channel, nexthop = "error", "5.1.6 User has moved to %s" % found[0]
        if self.command(channel) == "error":
            error = _DSN_RE.sub("", nexthop)
        return cls, channel, nexthop, error, steps

    def _transport_lookup(self, address, domain):
        """transport.c:transport_lookup(): full address (pattern tables too), the address
        without its extension, the domain and its parents (``.parent`` unless
        parent_domain_matches_subdomains lists transport_maps), then ``*``."""
        refs = self.maps["transport_maps"]
        found = self.tables.find(refs, address, False)
        if found is not None:
            return found[0], address, found[1]
        local = address.rpartition("@")[0]
        user, ext = self.split_extension(local)
        if ext:
            key = "%s@%s" % (user, domain)
            found = self.tables.find(refs, key, True)
            if found is not None:
                return found[0], key, found[1]
        name = domain
        while name:
            found = self.tables.find(refs, name, True)
            if found is not None:
                return found[0], name, found[1]
            nxt = name.find(".", 1)
            if nxt < 0:
                break
            name = name[nxt + 1:] if self.transport_parent_style else name[nxt:]
        found = self.tables.find(refs, "*", False)
        if found is not None:
            return found[0], "*", found[1]
        return None

    # -- delivery agents ------------------------------------------------------------------
    def _recipient(self, address, cls, channel, nexthop, via, rejected, forwarded=False):
        return {"address": address, "class": cls, "transport": channel, "nexthop": nexthop, "via": via,
                "rejected": rejected, "forwarded": forwarded}

    def _deliver(self, address, via, out):
        cls, channel, nexthop, error, steps = self.resolve(address)
        via = via + steps
        command = self.command(channel)
        if error is not None:
            return [self._recipient(address, cls, channel, nexthop, via, error)]
        if command == "local":
            state = {"work": 0, "dups": set()}
            return self._local(address, None, 0, via, cls, channel, nexthop, out, state)
        if command == "virtual":
            if self.addr_find("virtual_mailbox_maps", address) is None:
                # virtual(8) mailbox.c: "unknown user: \"%s\"" for the lower-cased recipient.
                return [self._recipient(address, cls, channel, nexthop, via,
                                        'unknown user: "%s"' % address.lower())]
        return [self._recipient(address, cls, channel, nexthop, via, None)]

    def _local(self, address, exp_from, level, via, cls, channel, nexthop, out, state):
        """local(8): alias_maps (aliases(5)) expansion within the agent, then the mailbox."""
        state["work"] += 1
        if state["work"] > LOCAL_WORK_LIMIT:
            out["limits"].append("local alias expansion of %s: more than %d steps (not followed further)"
                                 % (out["address"], LOCAL_WORK_LIMIT))
            raise RouteError("local alias expansion too large to follow")
        local = address.rpartition("@")[0].lower()     # local(8) folds the recipient
        user, ext = self.split_extension(local)
        found = None
        for name in ([local, user] if ext else [local]):
            if exp_from is not None and exp_from == name:
                # alias.c: "when an alias includes its own name, deliver to the user instead"
                found = None
                break
            if self.maps.get("alias_maps"):
                value = self.tables.find(self.maps["alias_maps"], name, False)
                if value is not None:
                    found = (name, value[0], value[1])
                    break
        if found is not None:
            name, value, ref = found
            if level > LOCAL_ALIAS_LEVEL:
                loop = "%s (alias_maps, more than %d levels)" % (name, LOCAL_ALIAS_LEVEL)
                if loop not in out["loops"]:
                    out["loops"].append(loop)
                return [self._recipient(address, cls, channel, nexthop, via, "alias database loop for %s" % name)]
            step = {"aliases": ref, "key": name, "result": value}
            result = []
            for target in _aliasfile.targets(value):
                if target.kind in ("command", "file", "include"):
                    dup = "%s %s" % (target.kind, target.text)
                    if dup not in state["dups"]:
                        state["dups"].add(dup)
                        result.append(self._recipient(target.text, cls, channel, nexthop, via + [step], None))
                    continue
                addr = self.canonicalize(_unquote(target.text))
                if ext and "alias" in self.propagate:
                    lp, _at, dom = addr.rpartition("@")
                    addr = "%s%s@%s" % (lp, ext, dom)
                t_cls, t_channel, t_nexthop, t_error, t_steps = self.resolve(addr)
                if t_channel == channel:
                    result.extend(self._local(addr, name, level + 1, via + [step] + t_steps, t_cls, t_channel,
                                              t_nexthop, out, state))
                else:
                    dup = "forward %s" % addr.lower()
                    if dup not in state["dups"]:
                        state["dups"].add(dup)
                        result.append(self._recipient(addr, cls, channel, nexthop, via + [step], None,
                                                      forwarded=True))
            return result
        dup = "mailbox %s" % address.lower()
        if dup in state["dups"]:
            return []
        state["dups"].add(dup)
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            if self.config.value("luser_relay"):
                note = "luser_relay is set: local(8) sends mail for unknown users there (not followed here)"
                if note not in out["limits"]:
                    out["limits"].append(note)
            return [self._recipient(address.lower(), cls, channel, nexthop, via, 'unknown user: "%s"' % user)]
        forward = os.path.join(entry.pw_dir or "/", ".forward")
        if self.config.value("forward_path") and os.path.exists(forward):
            out["limits"].append("%s exists: local(8) may forward %s there (not followed here)" % (forward, user))
        return [self._recipient(address.lower(), cls, channel, nexthop, via, None)]


def _split(value):
    return [w for w in re.split(r"[\s,]+", value or "") if w]


def _unquote(text):
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if text.startswith('"') and '"@' in text:
        local, _sep, domain = text[1:].partition('"@')
        return "%s@%s" % (local, domain)
    return text


def _fqdn():
    import socket  # pylint: disable=import-outside-toplevel
    return socket.getfqdn()


def static_routes(config_dir, addresses, binary=None, staged=None):
    """{address: route} for ``addresses`` (RouteError for the call: no main.cf, a bad
    ``staged``)."""
    router = Router(config_dir, binary=binary, staged=staged)
    return dict((a, router.route(a)) for a in addresses), router


def summary(route):
    """One line for a route, what route diffs compare: the final recipients (sorted, with
    Postfix's rejection text, "forwarded" for what local(8) forwards), the loops, or the
    error that stops the message."""
    if route is None:
        return "(no route)"
    if route.get("error"):
        return "error: %s" % route["error"]
    parts = []
    for rcpt in sorted(route["recipients"], key=lambda r: (r["address"].lower(), r["rejected"] or "")):
        text = rcpt["address"]
        if rcpt.get("rejected"):
            text += " (rejected: %s)" % rcpt["rejected"]
        elif rcpt.get("forwarded"):
            text += " (forwarded)"
        parts.append(text)
    parts += ["loop %s" % loop for loop in route.get("loops") or []]
    return ", ".join(parts) or "(no recipient)"


def route_changes(before, after):
    """{address: {"before": summary, "after": summary}} of the addresses whose route differs."""
    out = {}
    for address in after:
        b, a = summary(before.get(address)), summary(after[address])
        if b != a:
            out[address] = {"before": b, "after": a}
    return out


def problems(routes):
    """``address: what is wrong`` for each route with a rejected recipient, a loop or an error."""
    out = []
    for address in sorted(routes):
        route = routes[address]
        if route.get("error"):
            out.append("%s: %s" % (address, route["error"]))
            continue
        for loop in route.get("loops") or []:
            out.append("%s: alias loop %s" % (address, loop))
        for rcpt in route["recipients"]:
            if rcpt.get("rejected"):
                out.append("%s: recipient %s rejected: %s" % (address, rcpt["address"], rcpt["rejected"]))
    return out


# -- live: sendmail -bv ------------------------------------------------------------------------
_DELIVERY_RE = re.compile(
    r"postfix(?:-[\w.-]+)?/(?P<daemon>[\w.-]+)\[\d+\]: (?P<qid>[0-9A-Za-z]+): to=<(?P<to>[^>]*)>,"
    r"(?: orig_to=<(?P<orig>[^>]*)>,)? relay=(?P<relay>[^,]*),.* status=(?P<status>\w+) \((?P<text>.*)\)$")
_PICKUP_RE = re.compile(r"/pickup\[\d+\]: (?P<qid>[0-9A-Za-z]+): uid=(?P<uid>\d+) from=<(?P<sender>[^>]*)>")
_REMOVED_RE = re.compile(r"/qmgr\[\d+\]: (?P<qid>[0-9A-Za-z]+): removed$")
_NOT_ACCEPTED_RE = re.compile(r"/cleanup\[\d+\]: warning: (?P<qid>[0-9A-Za-z]+): (?P<text>.* -- message not accepted.*)$")


def _log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _read_from(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as e:
        raise RouteError("%s: cannot read the mail log: %s" % (path, e.strerror))
    # Only whole lines.
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8", "replace").splitlines(), offset + end


def live_routes(config_dir, addresses, timeout=30.0, sender="double-bounce", log_path=None):
    """Ask the running Postfix with ``sendmail -bv`` and read the verdicts from its log.

    Each address is submitted on its own (``sendmail -C DIR -bv -f SENDER ADDRESS``); its
    queue id is the pickup line ``QID: uid=UID from=<SENDER>`` that appears after the
    submission; its recipients are the delivery agents' ``QID: to=<..>, orig_to=<..>,
    relay=.., status=deliverable|undeliverable (text)`` lines up to qmgr's ``QID: removed``,
    or cleanup's ``QID: ... -- message not accepted`` warning. The whole call waits at most
    ``timeout`` seconds. With the default sender ``double-bounce`` the report is discarded
    by Postfix (bounce: "not sending trace/success notification for double-bounce message")."""
    main_cf = _postfix.main_cf_path(config_dir)
    if not os.path.isfile(main_cf):
        raise RouteError("%s: no such file (config_dir must hold Postfix's main.cf)" % main_cf)
    _maincf_doc, config = _postfix.load(config_dir)
    queue_dir = _postfix.queue_directory(config)
    status = _postfix.master_status(queue_dir)
    if not status.get("running"):
        raise RouteError("Postfix is not running (config_dir %s, queue_directory %s): live mode needs it; "
                         "use mode=static" % (config_dir, queue_dir))
    log_path = log_path or config.value("maillog_file")
    if not log_path or log_path.startswith("/dev/"):
        for cand in ("/var/log/mail.log", "/var/log/maillog"):
            if os.path.exists(cand):
                log_path = cand
                break
        else:
            raise RouteError("no mail log to read the verdicts from: maillog_file is not set and neither "
                             "/var/log/mail.log nor /var/log/maillog exists")
    sendmail = _postfix.which("sendmail")
    if not sendmail:
        raise RouteError("sendmail not found")
    uid = str(os.getuid())
    deadline = time.monotonic() + timeout
    routes = {}
    offset = _log_size(log_path)
    maildrop = os.path.join(queue_dir, "maildrop")
    for address in addresses:
        route = dict(address=None, recipients=[], loops=[], limits=[], error=None, lookups_via_postmap=[])
        routes[address] = route
        if not isinstance(address, str) or not _ADDRESS_RE.match(address.strip()):
            route["error"] = ("not an address: %r (want user or user@domain, without blanks, brackets, commas "
                              "or quotes)" % (address,))
            continue
        if time.monotonic() >= deadline:
            route["error"] = "not asked: the timeout of %ss was used up by the addresses before" % timeout
            continue
        offset = _probe(sendmail, config_dir, sender, uid, address.strip(), route, log_path, offset, maildrop,
                        deadline, timeout)
    return routes


def _probe(sendmail, config_dir, sender, uid, address, route, log_path, offset, maildrop, deadline, timeout):
    """One ``sendmail -bv``, waited for until its verdict is logged (one at a time, so the
    pickup line that follows the submission is this probe's)."""
    before = set(_listdir(maildrop))
    offset = _read_from(log_path, offset)[1]
    try:
        proc = subprocess.run([sendmail, "-C", config_dir, "-bv", "-f", sender, address],  # pylint: disable=ansible-bad-function
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                              timeout=max(1.0, deadline - time.monotonic()))
    except (OSError, subprocess.TimeoutExpired) as e:
        route["error"] = "sendmail -bv failed: %s" % e
        return offset
    if proc.returncode != 0:
        route["error"] = "sendmail -bv failed: %s" % proc.stderr.decode("utf-8", "replace").strip()
        return offset
    qid = None
    events = []
    while time.monotonic() < deadline:
        lines, offset = _read_from(log_path, offset)
        for line in lines:
            if qid is None:
                m = _PICKUP_RE.search(line)
                if m and m.group("uid") == uid and m.group("sender") == sender:
                    qid = m.group("qid")
                continue
            event = _event(line, qid)
            if event is not None:
                events.append(event)
        if _finished(events):
            break
        time.sleep(0.05)
    if qid is None:
        route["error"] = "no pickup of the probe in %s within %ss" % (log_path, timeout)
        return offset
    for kind, m in events:
        if kind == "delivery":
            status = m.group("status")
            relay = m.group("relay")
            route["recipients"].append({
                "address": m.group("to"), "class": None, "transport": m.group("daemon"),
                "nexthop": relay if relay not in ("none", "local", "virtual") else None,
                "via": [{"orig_to": m.group("orig")}] if m.group("orig") else [],
                "rejected": m.group("text") if status == "undeliverable" else None,
                "status": status, "text": m.group("text"),
                "forwarded": m.group("text").startswith("forwards to ")})
        elif kind == "not_accepted":
            route["error"] = m.group("text")
            # pickup(8) would retry the probe for ever: remove our own maildrop file.
            for name in sorted(set(_listdir(maildrop)) - before):
                try:
                    os.unlink(os.path.join(maildrop, name))
                except OSError as e:
                    route["limits"].append("could not remove the probe %s from the maildrop queue: %s"
                                           % (name, e.strerror))
    if not _finished(events):
        route["error"] = "no verdict in %s within %ss (queue id %s)" % (log_path, timeout, qid)
    return offset


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _event(line, qid):
    for kind, regex in (("delivery", _DELIVERY_RE), ("removed", _REMOVED_RE), ("not_accepted", _NOT_ACCEPTED_RE)):
        m = regex.search(line)
        if m and m.group("qid") == qid:
            return kind, m
    return None


def _finished(events):
    return any(kind in ("removed", "not_accepted") for kind, _m in events)
