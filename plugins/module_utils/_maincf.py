# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""main.cf: lossless parse / edit / render, and ``$name`` expansion.

The file is kept as its physical lines (bytes, each with its own line ending), so an
untouched file renders back byte for byte. Edits follow ``postconf -e``, ``-X`` and ``-#``
(postconf_edit.c:pcf_edit_main) with two deliberate differences: an edit that changes
nothing rewrites nothing, and a replaced line keeps a CRLF ending where it had one.
Reading follows mail_conf.c:mail_conf_suck -> dict.c:dict_load_fp -> readlline.c:readllines.
"""

from __future__ import annotations

import re

from ansible_collections.mailops.postfix.plugins.module_utils import _atomic
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError, PostfixError

# ISSPACE in Postfix is ASCII isspace().
_SPACE = b" \t\n\v\f\r"
_SPACE_STR = " \t\n\v\f\r"
NAME_RE = re.compile(r"^[A-Za-z0-9_]+\Z")
ENCODING = "utf-8"
ERRORS = "surrogateescape"


class ExpansionError(PostfixError):
    """A ``$`` expression Postfix would refuse (postconf: "macro processing error")."""


def _decode(data):
    return data.decode(ENCODING, ERRORS)


def _encode(text):
    return text.encode(ENCODING, ERRORS)


def split_lines(data):
    """Physical lines, each keeping its ``\\n`` (the last one may have none)."""
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _strip_eol(line):
    return line[:-1] if line.endswith(b"\n") else line


def _eol(line):
    if line.endswith(b"\r\n"):
        return b"\r\n"
    return b"\n"


# Line kinds, as postconf_edit.c:pcf_find_cf_info sees them.
BLANK = "blank"        # empty, whitespace only, or a (possibly indented) comment
START = "start"        # first line of a logical line
CONT = "cont"          # starts with whitespace and has text: continues the logical line


def line_kind(line):
    body = line.lstrip(_SPACE)
    if not body or body.startswith(b"#"):
        return BLANK
    if len(body) < len(line):
        return CONT
    return START


def line_key(line):
    """The name ``postconf -e`` matches on: ``strcspn(line, CHARS_SPACE "=")``."""
    m = re.match(b"[^ \t\n\v\f\r=]*", line)
    return _decode(m.group(0))


class Entry(object):
    """One logical line ``name = value``: its start line index and continuation indexes."""

    __slots__ = ("name", "value", "start", "conts", "lineno")

    def __init__(self, name, value, start, conts, lineno):
        self.name = name
        self.value = value
        self.start = start
        self.conts = conts
        self.lineno = lineno

    def __repr__(self):
        return "Entry(%r, %r, line %d)" % (self.name, self.value, self.lineno)


def split_nameval(text):
    """util/split_nameval.c: ``(name, value)`` or raise ValueError with Postfix's message."""
    s = text.lstrip(_SPACE_STR)
    if not s or s[0] == "=":
        raise ValueError("missing attribute name")
    m = re.match(r"[^ \t\n\v\f\r=]+", s)
    name = m.group(0)
    rest = s[m.end():].lstrip(_SPACE_STR)
    if not rest.startswith("="):
        raise ValueError("missing '=' after attribute name")
    return name, rest[1:].strip(_SPACE_STR)


class MainCf(object):
    """A parsed main.cf. ``lines`` is the source of truth; entries are derived from it."""

    def __init__(self, data=b"", path="main.cf"):
        if isinstance(data, str):
            data = _encode(data)
        self.path = path
        self.lines = split_lines(data)
        self.entries = []
        self.warnings = []
        self._parse()

    @classmethod
    def load(cls, path, missing_ok=False):
        return cls(_atomic.read_bytes(path, missing_ok, missing="%s: file not found"), path)

    def render(self):
        return b"".join(self.lines)

    # -- reading ------------------------------------------------------------------
    def _parse(self):
        """readllines + split_nameval over the physical lines; duplicates: last wins."""
        entries = []
        self.warnings = []
        current = None
        orphan = None
        for idx, line in enumerate(self.lines):
            kind = line_kind(line)
            if kind == BLANK:
                continue
            if kind == CONT:
                if current is not None:
                    current[1].append(idx)
                elif orphan is None:
                    orphan = idx
                    self.warnings.append(
                        "%s:%d: logical line must not start with whitespace: %r"
                        % (self.path, idx + 1, _decode(_strip_eol(line)).strip()[:30]))
                continue
            orphan = None
            if current is not None:
                entries.append(self._entry(*current))
            current = (idx, [])
        if current is not None:
            entries.append(self._entry(*current))
        seen = {}
        for e in entries:
            old = seen.get(e.name)
            if old is not None and old != e.value:
                self.warnings.append("%s:%d: overriding earlier entry: %s=%s" % (self.path, e.lineno, e.name, old))
            seen[e.name] = e.value
        self.entries = entries

    def _entry(self, start, conts):
        text = b"".join(_strip_eol(self.lines[i]) for i in [start] + conts)
        try:
            name, value = split_nameval(_decode(text))
        except ValueError as e:
            raise ParseError(self.path, start + 1, "%s: %s" % (e, _decode(text)[:60]))
        return Entry(name, value, start, conts, start + 1)

    def params(self):
        """Explicit settings, the last definition of each name winning (dict_load_fp)."""
        out = {}
        for e in self.entries:
            out[e.name] = e.value
        return out

    def get(self, name, default=None):
        return self.params().get(name, default)

    def definitions(self, name):
        return [e for e in self.entries if e.name == name]

    # -- editing ------------------------------------------------------------------
    def _default_eol(self):
        return b"\r\n" if self.lines and self.lines[0].endswith(b"\r\n") else b"\n"

    def set_many(self, params):
        """``postconf -e`` for every ``name: value`` in one pass. Returns the names changed.

        Every definition of a name is replaced in place by ``name = value`` (its
        continuation lines dropped, comment lines between them kept); names not in the
        file are appended at the end in strcmp order. A name whose every definition
        already has the value is left alone.
        """
        wanted = {}
        for name, value in params.items():
            check_name(name)
            wanted[name] = normalize_value(value, name)
        changed = []
        present = {}
        for e in self.entries:
            present.setdefault(e.name, []).append(e)
        for name, value in wanted.items():
            defs = present.get(name)
            if not defs:
                changed.append(name)
            elif any(not values_equal(e.value, value, params[name]) for e in defs):
                changed.append(name)
        if not changed:
            return []
        todo = set(changed)
        new = []
        drop = set()
        for e in self.entries:
            if e.name in todo:
                drop.update(e.conts)
        for idx, line in enumerate(self.lines):
            if idx in drop:
                continue
            kind = line_kind(line)
            if kind == START:
                key = line_key(line)
                if key in todo:
                    new.append(_encode("%s = %s" % (key, wanted[key])) + _eol(line))
                    continue
            new.append(line)
        found = set(e.name for e in self.entries)
        appended = sorted((n for n in changed if n not in found), key=_encode)
        if appended:
            eol = self._default_eol()
            if new and not new[-1].endswith(b"\n"):
                new[-1] += eol
            for name in appended:
                new.append(_encode("%s = %s" % (name, wanted[name])) + eol)
        self._replace(new)
        return changed

    def set(self, name, value):
        return bool(self.set_many({name: value}))

    def remove_many(self, names):
        """``postconf -X``: drop every definition (start and continuation lines)."""
        return self._drop(names, comment=False)

    def comment_many(self, names):
        """``postconf -#``: ``#`` before the start line and each continuation line."""
        return self._drop(names, comment=True)

    def remove(self, name):
        return bool(self.remove_many([name]))

    def comment(self, name):
        return bool(self.comment_many([name]))

    def _drop(self, names, comment):
        for name in names:
            check_name(name)
        todo = set(names)
        hit = [e for e in self.entries if e.name in todo]
        if not hit:
            return []
        idxs = set()
        for e in hit:
            idxs.add(e.start)
            idxs.update(e.conts)
        new = []
        for idx, line in enumerate(self.lines):
            if idx in idxs:
                if comment:
                    new.append(b"#" + line)
                continue
            new.append(line)
        self._replace(new)
        changed = []
        for e in hit:
            if e.name not in changed:
                changed.append(e.name)
        return changed

    def _replace(self, lines):
        self.lines = lines
        self._parse()


def check_name(name):
    if not isinstance(name, str) or not NAME_RE.match(name):
        if isinstance(name, str) and "/" in name:
            raise PostfixError(
                "invalid main.cf parameter name %r: service/type names belong to master.cf, "
                "not main.cf" % (name,))
        raise PostfixError(
            "invalid main.cf parameter name %r: a name is letters, digits and underscores" % (name,))


def _scalar(value, name):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise PostfixError("parameter %s: a float value is ambiguous, give a string" % name)
    if isinstance(value, bytes):
        value = _decode(value)
    if not isinstance(value, str):
        raise PostfixError("parameter %s: unsupported value type %s" % (name, type(value).__name__))
    return value


def normalize_value(value, name="value"):
    """What ``name = value`` will carry: lists joined ``a, b``, ints as digits, trimmed."""
    if value is None:
        text = ""
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_scalar(v, name).strip(_SPACE_STR) for v in value)
    else:
        text = _scalar(value, name)
    for bad, what in (("\n", "a newline"), ("\r", "a carriage return"), ("\0", "a NUL byte")):
        if bad in text:
            raise PostfixError(
                "parameter %s: value contains %s; main.cf values are one logical line" % (name, what))
    return text.strip(_SPACE_STR)


_LIST_SEP = re.compile(r"[, \t\r\n\v\f]+")


def split_list(value):
    """Postfix list values (mystrtok with CHARS_COMMA_SP)."""
    return [t for t in _LIST_SEP.split(value) if t]


_BRACED_SEP = " \t\r\n\v\f,"


def split_braced(value):
    """Split on commas and whitespace, keeping ``{...}`` groups whole: the lists of
    lookup tables and domains (mystrtokq with CHARS_BRACE, match_list.c, maps.c)."""
    out = []
    cur = []
    level = 0
    for c in value:
        if level == 0 and c in _BRACED_SEP:
            if cur:
                out.append("".join(cur))
                cur = []
            continue
        if c == "{":
            level += 1
        elif c == "}" and level > 0:
            level -= 1
        cur.append(c)
    if cur:
        out.append("".join(cur))
    return out


def values_equal(current, wanted, given=None):
    """Whether setting ``wanted`` would change nothing. A list given by the user matches
    the same items however the file spells the separators or continuation lines."""
    if current == wanted:
        return True
    if isinstance(given, (list, tuple)):
        return split_list(current) == split_list(wanted)
    return False


# -- $name expansion (mac_parse.c, mac_expand.c, compat_level.c) ---------------------

_RELOPS = ("==", "!=", "<", "<=", ">=", ">")
_OPCHARS = "<>!=?+-*/~&|%"
_MAX_LEVEL = 100


def _compat_level(text):
    """compat_level.c:compat_level_from_string: major[.minor[.patch]] -> comparable tuple."""
    parts = text.split(".")
    if len(parts) > 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ExpansionError('malformed compatibility level syntax: "%s"' % text)
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return tuple(nums)


def _compare(delta, op):
    return {
        "==": delta == 0, "!=": delta != 0, "<": delta < 0,
        "<=": delta <= 0, ">=": delta >= 0, ">": delta > 0,
    }[op]


def _relop(left, op, right, suffix):
    if suffix == "level":
        lv, rv = _compat_level(left), _compat_level(right)
        delta = (lv > rv) - (lv < rv)
    elif left.isdigit() and right.isdigit() and left.isascii() and right.isascii():
        delta = int(left) - int(right)
    else:
        lb, rb = _encode(left), _encode(right)
        delta = (lb > rb) - (lb < rb)
    return _compare(delta, op)


class Expander(object):
    """Recursive ``$name`` expansion as daemons and ``postconf -x`` do it.

    ``lookup(name)`` returns the raw value or None when undefined. ``strict`` raises
    ExpansionError where Postfix reports a macro error; otherwise the error is recorded in
    ``warnings`` and the partial result returned (mac_expand returns what it has so far).
    """

    def __init__(self, lookup, strict=True):
        self.lookup = lookup
        self.strict = strict
        self.warnings = []
        self.undefined = set()

    def expand(self, value):
        out = []
        self._error = None
        self._level = 0
        self._parse(value, out)
        if self._error is not None:
            if self.strict:
                raise ExpansionError(self._error)
            self.warnings.append(self._error)
        return "".join(out)

    def _fail(self, msg):
        if self._error is None:
            self._error = msg
        return False

    # mac_parse.c:mac_parse
    def _parse(self, value, out):
        i, n = 0, len(value)
        lit = []
        while i < n:
            c = value[i]
            if c != "$":
                lit.append(c)
                i += 1
            elif i + 1 < n and value[i + 1] == "$":
                lit.append("$")
                i += 2
            else:
                if lit:
                    self._literal("".join(lit), out)
                    lit = []
                i += 1
                if i < n and value[i] in "({":
                    opn = value[i]
                    cls = ")" if opn == "(" else "}"
                    level = 1
                    j = i + 1
                    while level > 0:
                        if j >= n:
                            return self._fail('truncated macro reference: "%s"' % value)
                        if value[j] == opn:
                            level += 1
                        elif value[j] == cls:
                            level -= 1
                        j += 1
                    expr = value[i + 1:j - 1]
                    i = j
                else:
                    j = i
                    while j < n and (value[j].isalnum() and value[j].isascii() or value[j] == "_"):
                        j += 1
                    expr = value[i:j]
                    i = j
                if not expr:
                    return self._fail('empty macro name: "%s"' % value)
                self._callback(expr, out)
        if lit and self._error is None:
            self._literal("".join(lit), out)
        return self._error is None

    def _literal(self, text, out):
        if self._error is None:
            out.append(text)

    @staticmethod
    def _skip_ws(s, i):
        while i < len(s) and s[i] in _SPACE_STR:
            i += 1
        return i

    def _curly(self, s, i):
        """mac_exp_extract_curly_payload: s[i] == '{'; returns (payload, next index)."""
        level = 1
        j = i + 1
        while True:
            if j >= len(s):
                self._fail('unbalanced {} in attribute expression: "%s"' % s[i:])
                return None, j
            if s[j] == "{":
                level += 1
            elif s[j] == "}":
                level -= 1
                if level <= 0:
                    break
            j += 1
        return s[i + 1:j], self._skip_ws(s, j + 1)

    def _sub_expand(self, text):
        sub = Expander(self.lookup, strict=True)
        sub.undefined = self.undefined
        try:
            return sub.expand(text)
        except ExpansionError as e:
            self._fail(str(e))
            return None

    # mac_expand.c:mac_expand_callback
    def _callback(self, expr, out):
        self._level += 1
        if self._level > _MAX_LEVEL:
            self._fail('unreasonable macro call nesting: "%s"' % expr)
        if self._error is not None:
            return
        s = expr
        i = self._skip_ws(s, 0)
        ch = ""
        if i < len(s) and s[i] == "{":
            left, i = self._curly(s, i)
            if left is None:
                return
            k = i
            while k < len(s) and s[k] in _OPCHARS:
                k += 1
            op = s[i:k]
            if op not in _RELOPS:
                self._fail('"==" or "!=" or "<" or "<=" or ">=" or ">" expected at: "...%s}>>>%s"' % (left, s[i:i + 20]))
                return
            i = k
            suffix = ""
            if i < len(s) and s[i].isalnum() and s[i].isascii():
                k = i
                while k < len(s) and s[k].isalnum() and s[k].isascii():
                    k += 1
                suffix = s[i:k]
                if suffix != "level":
                    self._fail('bad operator suffix at: "...%s>>>%s"' % (op, suffix))
                    return
                i = k
            i2 = self._skip_ws(s, i)
            if i2 >= len(s) or s[i2] != "{":
                self._fail('"{expression}" expected at: "...{%s} %s>>>%s"' % (left, op, s[i:i + 20]))
                return
            right, i = self._curly(s, i2)
            if right is None:
                return
            lval = self._sub_expand(left)
            rval = self._sub_expand(right)
            if lval is None or rval is None:
                return
            try:
                lookup = "true" if _relop(lval, op, rval, suffix) else ""
            except ExpansionError as e:
                self._fail(str(e))
                return
            if i < len(s):
                ch = s[i]
                if ch not in "?:":
                    self._fail('"?" or ":" expected at: "...}>>>%s"' % s[i:i + 20])
                    return
                i += 1
        else:
            start = i
            while True:
                k = self._skip_ws(s, i)
                if k >= len(s):
                    name = s[start:i]
                    i = k
                    break
                if s[k] in "?:":
                    name = s[start:i]
                    ch = s[k]
                    i = k + 1
                    break
                c = s[i]
                if not ((c.isalnum() and c.isascii()) or c == "_"):
                    self._fail('attribute name syntax error at: "...%s>>>%s"' % (s[:i], s[i:i + 20]))
                    return
                i += 1
            lookup = self.lookup(name)
            if lookup is None:
                self.undefined.add(name)
        if ch == "?":
            j = self._skip_ws(s, i)
            if j < len(s) and s[j] == "{":
                iftrue, i = self._curly(s, j)
                if iftrue is None:
                    return
            else:
                iftrue, i = s[i:], len(s)
            if lookup:
                self._parse(iftrue, out)
            if i >= len(s):
                self._level -= 1
                return
            if s[i] != ":":
                self._fail('":" expected at: "...%s}>>>%s"' % (iftrue, s[i:i + 20]))
                return
            i += 1
            ch = ":"
        if ch == ":":
            j = self._skip_ws(s, i)
            if j < len(s) and s[j] == "{":
                iffalse, i = self._curly(s, j)
                if iffalse is None:
                    return
            else:
                iffalse, i = s[i:], len(s)
            if not lookup:
                self._parse(iffalse, out)
            if i < len(s):
                self._fail('unexpected input at: "...%s}>>>%s"' % (iffalse, s[i:i + 20]))
                return
        elif ch == "":
            if lookup:
                self._parse(lookup, out)
        self._level -= 1


class Config(object):
    """main.cf values layered over defaults, with expansion, for facts and checks."""

    def __init__(self, maincf, defaults=None):
        self.maincf = maincf
        self.explicit = maincf.params()
        self.defaults = dict(defaults or {})

    def raw(self, name):
        if name in self.explicit:
            return self.explicit[name]
        return self.defaults.get(name)

    def expand(self, value, strict=False, warnings=None):
        exp = Expander(self.raw, strict=strict)
        result = exp.expand(value)
        if warnings is not None:
            warnings.extend(exp.warnings)
        return result

    def value(self, name, strict=False, warnings=None):
        """The expanded value of ``name`` ('' when undefined), as a daemon sees it."""
        raw = self.raw(name)
        if raw is None:
            return ""
        return self.expand(raw, strict=strict, warnings=warnings)

    def list(self, name, warnings=None):
        return split_list(self.value(name, warnings=warnings))
