# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The address classes and their "one domain, one class" rule, in one place.

ADDRESS_CLASS_README: Postfix sorts every recipient domain into one class, each with its
own domain list (postconf(5)):

==================  ===========================  ========================================
class               domain list                  default (Postfix 3.7, mail_params.h)
==================  ===========================  ========================================
local               ``mydestination``            ``$myhostname, localhost.$mydomain,
                                                 localhost``
virtual alias       ``virtual_alias_domains``    ``$virtual_alias_maps``
virtual mailbox     ``virtual_mailbox_domains``  ``$virtual_mailbox_maps``
relay               ``relay_domains``            ``${{$compatibility_level} <level {2} ?
                                                 {$mydestination} : {}}``
==================  ===========================  ========================================

The local class also takes ``user@[ip]`` for the addresses of ``inet_interfaces`` and
``proxy_interfaces``; those are address literals, not domain names, and are left out here.

trivial-rewrite (resolve.c:resolve_addr) tries the classes in that order and the first
that lists the domain wins: local, then virtual alias, virtual mailbox, relay. A domain in
two lists is therefore silently served by one class only; Postfix logs "do not list domain
X in BOTH A and B" for every pair except mydestination and relay_domains, and VIRTUAL_README
says "NEVER list a virtual alias domain name as a mydestination domain!" (and the same of
virtual MAILBOX domains against mydestination and virtual ALIAS domains).

How a list is read (postconf(5) ``mydestination``; util/match_list.c:match_list_parse):
names separated by commas and/or whitespace (``{...}`` kept whole), compared case-folded;
``/file/name`` is replaced by the file's lines (a line starting with ``#`` is skipped, and
a word starting with ``#`` ends a line); ``type:table`` matches a name that is one of its
keys, the value being ignored; ``!pattern`` excludes, the first pattern matching a name
deciding. Tables are read here through their index (``_db``: hash, cdb, lmdb), or their
source (``_tablefile``) when the index is missing or cannot be read; texthash from its
source, ``inline:{...}`` from the text, ``proxy:`` and ``unionmap:{...}`` through the tables
they name. Keys holding an ``@`` are addresses, never domain names, and are skipped. Any
other table (ldap:, mysql:, pcre:, ...) is not read and is reported as not checked.

Names are compared exactly: ``.example.com`` patterns and relay_domains' parent-domain
matching (parent_domain_matches_subdomains) are not widened to subdomains.

Derived membership: until ``compatibility_level = 2`` Postfix's own default makes
relay_domains ``$mydestination``, and ``relay_domains = $mydestination, ...`` is the
documented idiom of older releases; Postfix does not warn about that pair, and local
delivery wins anyway. So a name that reaches relay_domains only through ``$mydestination``
(at any depth of expansion) is not counted there; a name written into relay_domains itself
(literally, through another parameter, a file or a table) that mydestination also lists is a
crossing (postconf(5) mydestination: "Do not specify the names of domains that this machine
is backup MX host for"). Every other pair counts however the name got there: Postfix warns
about those even when one list is ``$`` another.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, List, Mapping, NamedTuple, Tuple

from ansible_collections.mailops.postfix.plugins.module_utils import _db, _maincf, _tablefile
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

# resolve.c:resolve_addr order: the first class listing a domain wins.
CLASS_PARAMS = ("mydestination", "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains")
CLASS_NAMES = {
    "mydestination": "local",
    "virtual_alias_domains": "virtual alias",
    "virtual_mailbox_domains": "virtual mailbox",
    "relay_domains": "relay",
}

# Postfix 3.7 compiled-in defaults (global/mail_params.h DEF_MYDEST, DEF_VIRT_ALIAS_DOMS,
# DEF_VIRT_ALIAS_MAPS, DEF_VIRT_MAILBOX_DOMS, DEF_VIRT_MAILBOX_MAPS, DEF_RELAY_DOMAINS,
# DEF_COMPAT_LEVEL), for hosts where ``postconf -d`` cannot be asked.
DEFAULTS = {
    "mydestination": "$myhostname, localhost.$mydomain, localhost",
    "virtual_alias_domains": "$virtual_alias_maps",
    "virtual_alias_maps": "$virtual_maps",     # virtual_maps: undefined, so empty
    "virtual_mailbox_domains": "$virtual_mailbox_maps",
    "virtual_mailbox_maps": "",
    "relay_domains": "${{$compatibility_level} <level {2} ? {$mydestination} : {}}",
    "compatibility_level": "0",
}

# Class parameters whose references to another class parameter do not count (see above).
DERIVED_FROM = {"relay_domains": ("mydestination",)}

# The seed tutorial's warning, quoted when virtual_alias_domains and mydestination overlap.
CROSSING_WARNING = (
    "it\u2019s important to never add a \u201cvirtual_alias_domain\u201d as a entry to "
    "\u201cmydestination\u201d or (very) bad things, think along the lines of Ghostbusters "
    "crossing the streams, will happen.")

# What Postfix does with a domain in both lists of a pair (the first wins), and who says not to.
_WHY = {
    ("mydestination", "virtual_alias_domains"):
        "Postfix reads a domain in mydestination as local and never consults the virtual alias domain "
        "(VIRTUAL_README: \"NEVER list a virtual alias domain name as a mydestination domain!\"); as the "
        "virtual domains tutorial puts it: \"%s\"" % CROSSING_WARNING,
    ("mydestination", "virtual_mailbox_domains"):
        "Postfix reads a domain in mydestination as local and never delivers to its virtual mailboxes "
        "(VIRTUAL_README: \"NEVER list a virtual MAILBOX domain name as a mydestination domain!\")",
    ("mydestination", "relay_domains"):
        "Postfix reads a domain in mydestination as local and never relays it (postconf(5) mydestination: "
        "\"Do not specify the names of domains that this machine is backup MX host for\")",
    ("virtual_alias_domains", "virtual_mailbox_domains"):
        "Postfix resolves a virtual alias domain first and never delivers to its virtual mailboxes "
        "(VIRTUAL_README: \"NEVER list a virtual MAILBOX domain name as a virtual ALIAS domain!\")",
    ("virtual_alias_domains", "relay_domains"):
        "Postfix resolves a virtual alias domain first and never relays it (trivial-rewrite logs \"do not "
        "list domain ... in BOTH virtual_alias_domains and relay_domains\")",
    ("virtual_mailbox_domains", "relay_domains"):
        "Postfix resolves a virtual mailbox domain first and never relays it (trivial-rewrite logs \"do not "
        "list domain ... in BOTH virtual_mailbox_domains and relay_domains\")",
}

# Stands for a non-empty $mydestination while relay_domains is expanded: no name holds a NUL.
_DERIVED = "\0derived\0"
_TABLE_RE = re.compile(r"([A-Za-z0-9_]+):(.*)\Z", re.S)
_MAX_DEPTH = 20


class Crossing(NamedTuple):
    """A domain listed by more than one class.

    ``params`` are its class parameters in resolve order (the first one wins in Postfix);
    ``origins[i]`` tells where ``params[i]`` lists it: "" when written in the value (after
    ``$name`` expansion), else the ``type:table`` or ``/file/name`` holding it."""
    domain: str
    params: Tuple[str, ...]
    origins: Tuple[str, ...]


class Report(NamedTuple):
    """``crossings`` sorted by domain; ``unchecked``: "PARAM: REF (why)" for each table or file
    of a class list this engine could not read, so a name in it was not compared."""
    crossings: List[Crossing]
    unchecked: List[str]


def _fold(name: str) -> str:
    # match_list.c casefolds string patterns and the name looked up (casefold.c).
    return name.casefold()


class _NotRead(Exception):
    """Why the keys of a table are not known here."""


class _ClassList:
    """The names one class parameter lists (match_list_parse + first-match semantics)."""

    def __init__(self, config: _maincf.Config, param: str, smtputf8: bool) -> None:
        self.param = param
        self.smtputf8 = smtputf8
        self.members = {}       # type: dict[str, str]   name -> origin
        self.decided = set()    # type: set[str]         names an earlier pattern decided
        self.unchecked = []     # type: list[str]
        self._files = []        # type: list[str]        /file/name nesting
        self._parse(_expanded(config, param), True, "")

    def _note(self, ref: str, why: str) -> None:
        text = "%s: %s (%s)" % (self.param, ref, why)
        if text not in self.unchecked:
            self.unchecked.append(text)

    def _decide(self, names: Iterable[str], positive: bool, origin: str) -> None:
        for name in names:
            if name not in self.decided:
                self.decided.add(name)
                if positive:
                    self.members[name] = origin

    def _parse(self, text: str, init: bool, origin: str) -> None:
        for token in _maincf.split_braced(text):
            if token.startswith("#"):
                break       # "comment at end of line is not supported": the rest is ignored
            positive = init
            item = token
            while item.startswith("!"):
                positive = not positive
                item = item[1:]
            if not item or _DERIVED in item:
                continue
            if item.startswith("/"):
                self._file(item, positive)
            elif not item.startswith("[") and ":" in item:     # MATCH_DICTIONARY
                self._decide(self._table(item), positive, item)
            else:
                self._decide([_fold(item)], positive, origin)

    def _file(self, path: str, positive: bool) -> None:
        if path in self._files or len(self._files) >= _MAX_DEPTH:
            self._note(path, "includes itself" if path in self._files else "nested too deeply")
            return
        try:
            with open(path, "rb") as f:
                # vstring_fgets: lines end at "\n" only.
                lines = f.read().decode("utf-8", "surrogateescape").split("\n")
        except OSError as e:
            self._note(path, "cannot read: %s" % (e.strerror or e))
            return
        self._files.append(path)
        try:
            for line in lines:
                if not line.startswith("#"):
                    self._parse(line, positive, path)
        finally:
            self._files.pop()

    def _table(self, ref: str) -> List[str]:
        """The domain names among the keys of ``type:name`` (none, noted, when not read)."""
        try:
            return self._table_names(ref)
        except _NotRead as e:
            self._note(ref, str(e))
            return []

    def _table_names(self, ref: str) -> List[str]:
        m = _TABLE_RE.match(ref)
        if not m:
            raise _NotRead("not a type:table")
        typ, name = m.group(1).lower(), m.group(2)
        if typ == "proxy":
            return self._table_names(name)
        if typ in ("inline", "unionmap"):
            if not (name.startswith("{") and name.endswith("}")):
                raise _NotRead("expected {...}")
            if typ == "unionmap":
                return [k for t in _maincf.split_braced(name[1:-1]) for k in self._table(t)]
            try:
                return _domains(_inline_keys(name[1:-1]))
            except ValueError as e:
                raise _NotRead("%s; need inline:{name=value...}" % e) from None
        if typ not in _db.INDEXED_TYPES and typ != "texthash":
            raise _NotRead("%s tables are not read here" % typ)
        if not name.startswith("/"):
            raise _NotRead("not an absolute path")
        if typ != "texthash":
            try:
                return _domains(_db.get_format(typ).read(_db.index_path(name, typ)), nul=True)
            except (PostfixError, OSError) as e:
                # No index yet (or no lmdb binding here): what postmap will build from the source.
                if not os.path.exists(name):
                    raise _NotRead("no readable index and no source: %s" % e) from None
        try:
            with open(name, "rb") as f:
                keys, _values, _warnings = _tablefile.TableDocument.compile(
                    f, name, smtputf8=self.smtputf8, strict=False, duplicates="ignore")
        except (PostfixError, OSError) as e:
            raise _NotRead("cannot read the source: %s" % e) from None
        return _domains((k, b"") for k in keys)


def _domains(records: Iterable[Tuple[bytes, bytes]], nul: bool = False) -> List[str]:
    """Keys that can equal a domain name looked up in a list: no ``@``, already folded
    (match_list.c folds the name looked up, not the key; postmap folds keys when it builds)."""
    out = []
    for key, _value in records:
        if nul and key.endswith(b"\0"):
            key = key[:-1]
        if b"@" in key or not key:
            continue
        name = key.decode("utf-8", "surrogateescape")
        if name == _fold(name):
            out.append(name)
    return out


def _inline_keys(text: str) -> List[Tuple[bytes, bytes]]:
    """dict_inline.c: ``{key=value, { key = text }}``, keys folded like postmap's; ValueError
    for a malformed element (Postfix then fails to open the whole table)."""
    out = []
    for token in _maincf.split_braced(text):
        if token.startswith("{") and token.endswith("}"):
            token = token[1:-1]
        key, _value = _maincf.split_nameval(token)
        out.append((_fold(key).encode("utf-8", "surrogateescape"), b""))
    return out


def _expanded(config: _maincf.Config, param: str) -> str:
    """The value of ``param`` after ``$name`` expansion; for relay_domains, a non-empty
    ``$mydestination`` stands as a marker the parser skips (derived membership)."""
    derived = DERIVED_FROM.get(param, ())
    live = [name for name in derived if config.value(name).strip()]
    if not live:
        return config.value(param)

    def lookup(name):
        return _DERIVED if name in live else config.raw(name)
    raw = config.raw(param)
    return _maincf.Expander(lookup, strict=False).expand(raw) if raw else ""


def _smtputf8(config: _maincf.Config) -> bool:
    # Like _mapbuild.smtputf8_enabled: on by default (compatibility_level >= 1), or an expression.
    return config.value("smtputf8_enable").strip().lower() in ("yes", "true", "1", "")


def _cross(lists: Mapping[str, Mapping[str, str]]) -> List[Crossing]:
    where = {}  # type: dict[str, list[str]]
    for param in CLASS_PARAMS:
        for name in lists.get(param, {}):
            where.setdefault(name, []).append(param)
    return [Crossing(name, tuple(params), tuple(lists[p][name] for p in params))
            for name, params in sorted(where.items()) if len(params) > 1]


def class_domains(config: _maincf.Config) -> Tuple[dict, List[str]]:
    """``({param: {name: origin}}, unchecked)`` for the four class parameters of ``config``
    (a ``_maincf.Config``: main.cf over ``postconf -d`` or DEFAULTS)."""
    smtputf8 = _smtputf8(config)
    lists = {}
    unchecked = []  # type: list[str]
    for param in CLASS_PARAMS:
        found = _ClassList(config, param, smtputf8)
        lists[param] = found.members
        unchecked.extend(found.unchecked)
    return lists, unchecked


def find_crossings(config: _maincf.Config) -> Report:
    """Every domain that more than one address class of ``config`` lists (see the module
    docstring for how lists, files and tables are read, and relay_domains' derived names)."""
    lists, unchecked = class_domains(config)
    return Report(_cross(lists), unchecked)


def crossings(domain_sets: Mapping[str, Iterable[str]]) -> List[Tuple[str, List[str]]]:
    """The domains found in more than one of ``domain_sets``, for inventory checks.

    ``domain_sets`` maps class parameter names (any of "mydestination",
    "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains"; missing ones are
    empty) to the domain names declared for that class: an iterable of strings, or one string
    split on commas and whitespace like a main.cf list. Names are stripped and case-folded;
    no ``$name``, file or table is resolved (give the names themselves, and leave out names a
    class only inherits, e.g. relay_domains' ``$mydestination``). Raises ValueError for
    another key.

    Returns ``[(domain, [param, ...]), ...]`` sorted by domain, each with the parameters
    listing it in resolve order (mydestination, virtual_alias_domains,
    virtual_mailbox_domains, relay_domains); empty when every domain is in one class only.
    ``message(result)`` words it."""
    lists = {}
    for param, names in domain_sets.items():
        if param not in CLASS_PARAMS:
            raise ValueError("%r is not an address class parameter (%s)" % (param, ", ".join(CLASS_PARAMS)))
        if isinstance(names, str):
            names = _maincf.split_list(names)
        members = lists.setdefault(param, {})
        for name in names:
            name = _fold(str(name).strip())
            if name:
                members[name] = ""
    return [(c.domain, list(c.params)) for c in _cross(lists)]


def _join(items: List[str]) -> str:
    return items[0] if len(items) == 1 else "%s and %s" % (", ".join(items[:-1]), items[-1])


def message(found: Iterable[tuple], refusing: bool = True, unchecked: Iterable[str] = ()) -> str:
    """Words for crossings: ``found`` holds ``Crossing`` items or ``(domain, params)`` pairs.

    ``refusing`` (an edit that is refused): "refusing: X would be in both A and B: ...";
    otherwise (a check of what is there): "X is in both A and B: ...". Each pair gets what
    Postfix does with such a domain; ``unchecked`` (Report.unchecked) is mentioned last."""
    groups = {}  # type: dict[tuple, list[str]]
    for item in found:
        origins = item[2] if len(item) > 2 else ("",) * len(item[1])
        pairs_in_order = sorted(zip(item[1], origins), key=lambda po: CLASS_PARAMS.index(po[0]))
        params = tuple(p for p, _o in pairs_in_order)
        groups.setdefault((params, tuple(o for _p, o in pairs_in_order)), []).append(item[0])
    parts = []
    pairs = []
    for (params, origins), names in groups.items():
        where = [p + (" (%s)" % o if o else "") for p, o in zip(params, origins)]
        verb = "would be in" if refusing else ("is in" if len(names) == 1 else "are in")
        parts.append("%s %s %s%s" % (", ".join(names), verb, "both " if len(params) == 2 else "", _join(where)))
        for i, first in enumerate(params):
            for second in params[i + 1:]:
                if (first, second) not in pairs:
                    pairs.append((first, second))
    text = "%s%s: a domain belongs to exactly one address class (ADDRESS_CLASS_README); %s" % (
        "refusing: " if refusing else "", "; ".join(parts), "; ".join(_WHY[p] for p in pairs))
    unchecked = list(unchecked)
    if unchecked:
        text += " (not checked: %s)" % "; ".join(unchecked)
    return text
