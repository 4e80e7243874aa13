# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup-table sources (postmap(1) "INPUT FILE FORMAT"): parse, edit, render losslessly.

    doc = parse(data, "/etc/postfix/virtual")
    records, warnings = doc.records()      # what postmap stores, no NUL appended
    doc.set("info@example.com", ["alice", "bob"])
    doc.remove("old@example.com")
    new_data = doc.render()

Rules come from postmap.c:postmap(); the line grouping from readlline.c:readllines()
(see _logical_lines).  texthash: sources are the same format (dict_thash.c "duplicates the
parser in postmap.c").  regexp:, pcre: and cidr: sources (regexp_table(5), pcre_table(5),
cidr_table(5)) are PatternDocument: the key is the whole pattern, kept as written, and the
order of the entries matters (the first match wins).

A secret table (``secret=True``, smtp_sasl_password_maps) never puts a value in a message:
parse problems name the line only, edits name the key only; ``redacted()`` renders a source
for a diff with every value hidden.
"""

from __future__ import annotations

from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import (
    WHITESPACE, ERROR, EntryError, LineDocument, LineProblem, aligned_separator, c_string,
    check_single_line, printable, printable_except, split_fields, split_lines, to_bytes, without_crlf,
    without_skipped_lines,
)

# Table types whose source Postfix's daemons read themselves (no index), with the format of
# their entries; texthash is postmap's own input format (TableDocument).
PATTERN_TYPES = ("regexp", "pcre", "cidr")
HIDDEN = b"<hidden>"
HIDDEN_CHANGED = b"<hidden, changed>"

_SPACE = frozenset(WHITESPACE)
_BACKSLASH = 0x5C
_QUOTE = 0x22
# A line that starts with a blank or "#" (a continuation, comment or blank line).
_BAD_START = rb"\n[\t #]"


def _key_end(s):
    """postmap.c: index where the key ends (first unquoted whitespace), and whether a
    quote is left open.  A backslash protects the next byte; quotes stay in the key."""
    in_quotes = False
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == _BACKSLASH:
            i += 1
            if i >= n:
                break
        elif c in _SPACE:
            if not in_quotes:
                break
        elif c == _QUOTE:
            in_quotes = not in_quotes
        i += 1
    return min(i, n), in_quotes


def split_key_value(s):
    """(key, value) of a logical line as postmap splits it; LineProblem when unusable."""
    s = c_string(s)
    if b'"' not in s and b"\\" not in s:
        parts = s.split(None, 1)
        key = parts[0] if parts else b""
        value = parts[1].rstrip() if len(parts) > 1 else b""
    else:
        end, in_quotes = _key_end(s)
        if in_quotes:
            raise LineProblem("unbalanced '\"' in '%s' -- ignoring this line" % printable(s))
        key = s[:end]
        value = s[end + 1:].strip()
    if not key or not value:
        raise LineProblem("expected format: key whitespace value")
    return key, value


def render_value(value):
    """A value as bytes: a list of targets is written ``a, b``."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise EntryError("empty list of values")
        return b", ".join(to_bytes(v, "value").strip() for v in value)
    return to_bytes(value, "value")


def _plain_columns(text, nul):
    """TableDocument._split_plain() once the bytes are checked: (keys, keys joined by
    newlines or None, values) if every line is a record with no blank after the value and
    no key ending in ":", else None."""
    if len(text) < 2:
        return (), b"", ()     # no line left
    if b" \n" in text or b"\t\n" in text or text[-1] in (0x20, 0x09):
        return None
    columns = split_fields(text, _BAD_START, nul)
    if columns is None:
        return None
    keys, values = columns
    key_text = None
    if b":" in text:
        key_text = b"\n".join(keys)
        if b":\n" in key_text or key_text[-1] == 0x3A:
            return None     # postmap warns about a key ending in ":"
    return keys, key_text, values


class TableDocument(LineDocument):
    """A postmap(1) source file."""

    # Values are never quoted in messages (see module docstring).
    secret = False

    def __init__(self, data, path, fold=True, smtputf8=True, strict=True, secret=False):
        self.secret = secret
        LineDocument.__init__(self, data, path, fold=fold, smtputf8=smtputf8, strict=strict)

    # One physical line split by postmap() with no warning and no special case: a printable
    # ASCII key without quotes or backslashes (so the first whitespace ends it) that does
    # not end in ":" and does not start with "#", blanks, a printable ASCII value; trailing
    # blanks and a CR are trimmed as split_key_value() trims them.
    SIMPLE = (b"\\n(" + printable_except(b'"#:\\') + printable_except(b'"\\') + b"*)(?<!:)"
              rb"[ \t]+([!-~][ -~\t]*)(?<![ \t])[ \t]*\r?(?=\n|\Z)")

    @staticmethod
    def _split_plain(text, nul):
        # split_key_value() on a line of ASCII bytes without quote, backslash, NUL, VT, FF
        # or CR (a CR before the newline is trimmed like the blanks after the value) is
        # bytes.split(None, 1), the value then right-stripped: nothing to strip when no
        # line ends in a blank.  Other control bytes are part of the key or value there.
        if (not text.isascii() or b'"' in text or b"\\" in text or b"\0" in text or b"\x0b" in text
                or b"\x0c" in text):
            return None
        if b"\r" in text:
            text = without_crlf(text)
            if text is None:
                return None
        if b"#" in text:
            # Comment lines, maybe.
            text, skipped = without_skipped_lines(text)
            plain = _plain_columns(text, nul)
        else:
            skipped = 0
            plain = _plain_columns(text, nul)
            if plain is None:
                # Blank lines, maybe.
                text, skipped = without_skipped_lines(text)
                if not skipped:
                    return None
                plain = _plain_columns(text, nul)
        return None if plain is None else plain + (skipped,)

    def _parse_logical(self, text):
        key, value = split_key_value(text)
        if key[-1] == 0x3A:
            self._note('record is in "key: value" format; is this an alias file?')
        return key, value

    def _check_key(self, raw_key):
        check_single_line(raw_key, "key")
        if not raw_key:
            raise EntryError("empty key")
        if raw_key[0] in _SPACE or raw_key[:1] == b"#":
            raise EntryError("key %r must not start with whitespace or '#'" % printable(raw_key))
        end, in_quotes = _key_end(raw_key + b" x")
        if in_quotes or end != len(raw_key):
            raise EntryError("key %r contains unquoted whitespace, an unbalanced quote or a "
                             "trailing backslash" % printable(raw_key))
        return raw_key

    def _stored_value(self, value):
        try:
            stored = render_value(value)
            check_single_line(stored, "value")
        except EntryError:
            if self.secret:
                raise EntryError("a value is not one line of text (not shown: secret table)")
            raise
        stored = stored.strip()
        if not stored:
            raise EntryError("empty value: postmap needs key whitespace value")
        return stored

    def _problem(self, line, message, kind):
        if self.secret:
            message = _secret_message(message)
        LineDocument._problem(self, line, message, kind)

    def _verify(self, content, key, value):
        try:
            LineDocument._verify(self, content, key, value)
        except EntryError:
            if self.secret:
                raise EntryError("%s %r: its value cannot be written as one entry (not shown: secret table)"
                                 % (self.KEY_WORD, printable(key)))
            raise

    def _key_end_of(self, start):
        """(end of the key in a start line, whether it is unusable)."""
        end, in_quotes = _key_end(start)
        return end, in_quotes

    def _layout(self, r):
        """(key as written, whitespace before the value) of a record's start line, or None."""
        start = c_string(self._start_line(r))
        end, bad = self._key_end_of(start)
        if bad:
            return None
        rest = start[end:]
        return start[:end], rest[:len(rest) - len(rest.lstrip(WHITESPACE))]

    def _render_existing(self, r, raw_key, stored):
        layout = self._layout(r)
        if layout is None or self.fold_key(layout[0]) != self._keys[r]:
            return raw_key + b"\t" + stored
        written, sep = layout
        return written + (sep or b"\t") + stored

    def _render_new(self, raw_key, stored, ref):
        sep = b"\t"
        layout = self._layout(ref) if ref is not None else None
        if layout is not None:
            sep = aligned_separator(raw_key, layout[0], layout[1], b"\t")
        return raw_key + sep + stored


# Problems whose Postfix wording quotes the line (postmap.c, readlline.c): in a secret
# table only the part before the quote is kept.
_QUOTING = ("unbalanced '\"'", "logical line must not start with whitespace", "non-UTF-8 input",
            "no closing", "expected format")


def _secret_message(message):
    for start in _QUOTING:
        if message.startswith(start):
            return start + " (line not shown: secret table)"
    if message.startswith("duplicate entry") or message.startswith("record is in"):
        return message      # the key only (dict_db_update(), postmap.c)
    return "line not accepted (not shown: secret table)"


# -- regexp:, pcre:, cidr: ---------------------------------------------------------------------
def _is_alnum(c):
    return 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _statement(s):
    """b"if" or b"endif" when the logical line ``s`` is one (case-insensitive, not followed by
    an alphanumeric: dict_regexp_parseline(), dict_pcre_parse_rule(), dict_cidr_parse_rule()),
    else None."""
    for word in (b"if", b"endif"):
        n = len(word)
        if s[:n].lower() == word and (len(s) == n or not _is_alnum(s[n])):
            return word
    return None


def pattern_end(s, type_name):
    """Where the pattern of a regexp or pcre rule ``s`` ends (its flags included):
    dict_regexp_get_pat()/dict_pcre_get_pattern(): leading "!"s and blanks, a delimiter,
    text up to the same delimiter not after a backslash, then flags up to white space.  A
    regexp rule may have a second pattern ("/a/!/b/"): flags stop at "!" or "/" there.
    LineProblem (Postfix's wording) when the delimiters do not close."""
    i, n = 0, len(s)
    while True:
        while i < n and (s[i] == 0x21 or s[i] in _SPACE):
            i += 1
        if i >= n:
            raise LineProblem("no %s: skipping this rule" % ("regexp" if type_name == "regexp" else "pattern"))
        delim = s[i]
        i += 1
        while i < n:
            if s[i] == _BACKSLASH:
                if i + 1 >= n:
                    break
                i += 1
            elif s[i] == delim:
                break
            i += 1
        if i >= n:
            raise LineProblem('no closing %s delimiter "%s": skipping this rule'
                              % ("regexp" if type_name == "regexp" else "pattern", chr(delim)))
        i += 1
        if type_name == "regexp":
            while i < n and s[i] not in _SPACE and s[i] not in (0x21, 0x2F):
                i += 1
            if i < n and s[i] in (0x21, 0x2F):
                continue
        else:
            while i < n and s[i] not in _SPACE:
                i += 1
        return i


class PatternDocument(TableDocument):
    """A regexp_table(5), pcre_table(5) or cidr_table(5) source.

    Keys are the patterns as written (delimiters and flags for regexp/pcre, the network for
    cidr), never case-folded.  ``if PATTERN`` ... ``endif`` blocks are parsed (their nesting
    checked) but their entries are not records: they are kept byte for byte and refused as
    edits (``guarded``).  Lines Postfix would skip with a warning are errors when strict.
    """

    KEY_WORD = "pattern"

    def __init__(self, data, path, type_name, smtputf8=True, strict=True, secret=False):
        if type_name not in PATTERN_TYPES:
            raise ValueError(type_name)
        self.type_name = type_name
        self.guarded = {}       # pattern inside if..endif -> its 1-based line
        self.if_lines = []      # 1-based lines of every "if" statement
        self._open_ifs = []
        # No UTF-8 screening of the lines (postmap.c does it for indexed tables only).
        TableDocument.__init__(self, data, path, fold=False, smtputf8=False, strict=strict, secret=secret)
        for line in self._open_ifs:
            self._problem(line, "IF has no matching ENDIF", ERROR)

    @staticmethod
    def _split_plain(text, nul):
        return None

    def _key_end_of(self, start):
        if self.type_name == "cidr":
            parts = start.split(None, 1)
            return (len(parts[0]) if parts else 0), False
        try:
            return pattern_end(start, self.type_name), False
        except LineProblem:
            return 0, True

    def _parse_logical(self, text):
        s = c_string(text).rstrip(WHITESPACE)     # trimblanks()
        if not s:
            return None, None
        statement = _statement(s)
        if statement == b"if":
            rest = s[2:].lstrip(WHITESPACE)
            end, bad = self._key_end_of(rest)
            if bad or not rest:
                raise LineProblem("if statement without a pattern")
            if rest[end:].strip(WHITESPACE):
                raise LineProblem("ignoring extra text after IF statement")
            self._open_ifs.append(self._lineno)
            self.if_lines.append(self._lineno)
            return None, None
        if statement == b"endif":
            if not self._open_ifs:
                raise LineProblem("ignoring ENDIF without matching IF")
            if s[5:].strip(WHITESPACE):
                raise LineProblem("ignoring extra text after ENDIF")
            self._open_ifs.pop()
            return None, None
        if self.type_name == "cidr":
            parts = s.split(None, 1)
            key = parts[0]
        else:
            if _is_alnum(s[0]):
                raise LineProblem("ignoring unrecognized request")
            key = s[:pattern_end(s, self.type_name)]
        value = s[len(key):].strip(WHITESPACE)
        if not value:
            raise LineProblem("no replacement text" if self.type_name != "cidr" else "no lookup result")
        if self._open_ifs and self._lineno:
            self.guarded.setdefault(key, self._lineno)
            return None, None
        return key, value

    def _check_key(self, raw_key):
        check_single_line(raw_key, self.KEY_WORD)
        if not raw_key or raw_key[0] in _SPACE or raw_key[:1] == b"#" or _statement(raw_key):
            raise EntryError("%s %r must not be empty, start with whitespace or '#', or be if/endif"
                             % (self.KEY_WORD, printable(raw_key)))
        if self.type_name == "cidr":
            if any(c in _SPACE for c in raw_key):
                raise EntryError("cidr pattern %r contains white space" % printable(raw_key))
        else:
            if _is_alnum(raw_key[0]):
                raise EntryError("%s pattern %r must start with its delimiter (for example /^x$/)"
                                 % (self.type_name, printable(raw_key)))
            try:
                end = pattern_end(raw_key, self.type_name)
            except LineProblem as e:
                raise EntryError("%s pattern %r: %s" % (self.type_name, printable(raw_key), e.message))
            if end != len(raw_key):
                raise EntryError("%s pattern %r has text after its flags" % (self.type_name, printable(raw_key)))
        if raw_key in self.guarded:
            raise EntryError("%s:%d: %s %r is inside an if/endif block; entries there are not edited"
                             % (self.path, self.guarded[raw_key], self.KEY_WORD, printable(raw_key)))
        return raw_key

    def remove(self, key):
        raw = to_bytes(key, self.KEY_WORD)
        if raw in self.guarded:
            raise EntryError("%s:%d: %s %r is inside an if/endif block; entries there are not edited"
                             % (self.path, self.guarded[raw], self.KEY_WORD, printable(raw)))
        return TableDocument.remove(self, key)

    def keep_only(self, keys):
        if self.if_lines:
            raise EntryError("%s:%d: exclusive cannot manage a %s table with if/endif blocks"
                             % (self.path, self.if_lines[0], self.type_name))
        return TableDocument.keep_only(self, keys)

    def ordered(self, keys):
        """The rendered text with its entries in the order of ``keys`` (the first match
        wins in these tables); entries not in ``keys`` come after them, in their order.  An
        entry moves with its continuation lines and the comment lines directly above it (not
        those that open the file); blank lines and other comments stay where they are.  The
        text is returned unchanged when the order is already right."""
        data = self.render()
        doc = PatternDocument(data, self.path, self.type_name, strict=False)
        rank = dict((to_bytes(k, self.KEY_WORD), i) for i, k in enumerate(keys))
        records = [(doc._starts[r], max(doc._conts.get(r, ()) or (doc._starts[r],)), k)
                   for r, k in enumerate(doc._keys)]
        order = sorted(range(len(records)), key=lambda r: (rank.get(records[r][2], len(rank)), r))
        if order == list(range(len(records))) or doc.if_lines:
            return data
        lines, terminated = split_lines(data)
        lines = [line + b"\n" for line in lines]
        if not terminated:
            lines[-1] = lines[-1][:-1]
        spans = []
        previous_end = -1
        for start, end, _key in records:
            first = start
            while first - 1 > previous_end and lines[first - 1].lstrip(WHITESPACE)[:1] == b"#":
                first -= 1
            if first == 0 and previous_end < 0:
                first = start       # comments that open the file are its header: they stay
            spans.append((first, end))
            previous_end = end
        out = []
        pos = 0
        for slot, r in enumerate(order):
            first, end = spans[slot]
            out.extend(lines[pos:first])
            block = lines[spans[r][0]:spans[r][1] + 1]
            if not block[-1].endswith(b"\n"):
                block[-1] += b"\n"
            out.extend(block)
            pos = end + 1
        out.extend(lines[pos:])
        return b"".join(out)


def redacted(data, path, type_name=None, changed=()):
    """``data`` (a source) as text for a diff of a secret table: each entry's first line as
    ``KEY <hidden>`` (``KEY <hidden, changed>`` when its folded key is in ``changed``, so that
    a new value shows in the diff), continuation lines and comments as ``<hidden>`` lines (a
    comment may be an old entry), blank lines kept."""
    if type_name in PATTERN_TYPES:
        doc = PatternDocument(data, path, type_name, strict=False, secret=True)
    else:
        doc = TableDocument(data, path, smtputf8=True, strict=False, secret=True)
    starts = dict((start, r) for r, start in enumerate(doc._starts))
    lines, _terminated = split_lines(data)
    out = []
    for i, line in enumerate(lines):
        r = starts.get(i)
        if r is not None:
            start = c_string(line[:-1] if line.endswith(b"\r") else line)
            end, _bad = doc._key_end_of(start)
            out.append(start[:end] + b" " + (HIDDEN_CHANGED if doc._keys[r] in changed else HIDDEN))
        elif not line.strip(WHITESPACE):
            out.append(line)
        elif line.lstrip(WHITESPACE)[:1] == b"#":
            out.append(b"# " + HIDDEN)
        else:
            out.append(b"  " + HIDDEN)
    return b"".join(x + b"\n" for x in out).decode("utf-8", "replace")


def parse(data, path, fold=True, smtputf8=True, strict=True, type_name=None, secret=False):
    """Parse postmap(1) source ``data`` (bytes) read from ``path`` (used in messages).

    ``fold=False`` keeps key case (postmap -f).  ``smtputf8`` as smtputf8_enable: non-UTF-8
    lines are skipped with a warning, non-ASCII keys fully case-folded.  ``strict`` (the
    default) raises ParseError ``path:line: message`` for lines postmap would skip as
    malformed (no value, unbalanced quote, text before the first entry that starts with
    whitespace); ``strict=False`` reports them as warnings, like postmap.  ``type_name``
    regexp, pcre or cidr gives a PatternDocument.  ``secret`` keeps values out of messages.
    """
    if type_name in PATTERN_TYPES:
        return PatternDocument(data, path, type_name, smtputf8=smtputf8, strict=strict, secret=secret)
    return TableDocument(data, path, fold=fold, smtputf8=smtputf8, strict=strict, secret=secret)


__all__ = ["parse", "redacted", "TableDocument", "PatternDocument", "PATTERN_TYPES", "pattern_end",
           "split_key_value", "render_value", "EntryError", "ERROR"]
