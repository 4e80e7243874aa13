# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lossless physical/logical line model shared by lookup-table and aliases sources.

The grouping follows readlline.c:readllines(): a physical line whose first byte is not
whitespace and not ``#`` starts a logical line; every following line that starts with
whitespace or ``#`` or is empty belongs to it.  Among those, comment lines (first non-space
byte ``#``) and blank lines are skipped by Postfix and do not end the logical line; the
other ones are continuations, appended without their newline (leading whitespace kept).

A :class:`LineDocument` keeps the original bytes, the logical records a format engine
extracted from them, and edits made since (replaced, deleted and appended lines), so that
``render()`` returns the input unchanged when nothing was edited and touches only the lines
of the edited entries otherwise.  Format engines (``_tablefile``, ``_aliasfile``) subclass
it and provide how one logical line becomes a (key, value) pair and how an entry is written.
"""

from __future__ import annotations

import array
import collections
import itertools
import re

from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError, PostfixError

# ISSPACE() in sys_defs.h is ASCII isspace(): the set bytes.strip()/split() use.
WHITESPACE = b" \t\n\r\x0b\x0c"
_NOT_START = frozenset(WHITESPACE + b"#")
# Not yet worked out (LineDocument._layout_ref).
_UNKNOWN = object()

# Compile-only parsing (LineDocument.compile) works on chunks of about this many bytes,
# cut where a logical line starts: a newline followed by a byte that is not whitespace or
# "#" (readllines() never joins such a line to the previous one).  Patterns here are
# compiled on first use (re.compile() caches them), like the formats' SIMPLE patterns.
_CHUNK = 1 << 16
_CUT = rb"\n(?=[^\s#])"
# A physical line Postfix does not skip (a logical line's first line or a continuation),
# with the newline before it: patterns that start with a newline search much faster.
_NOT_SKIPPED = rb"\n[ \t\x0b\x0c\r]*[^\s#]"
# A line of blanks or an indented comment, with the newline before it, in a piece with no
# CR, VT or FF (see without_skipped_lines).
_BLANK_LINE = rb"\n[ \t]+(?:#[^\n]*)?(?=\n|\Z)"


def printable_except(excluded):
    """A regular expression class (bytes) of the printable ASCII bytes but space and
    ``excluded``: listed one by one, which the engine matches faster than a negated class."""
    return b"[" + re.escape(bytes(c for c in range(0x21, 0x7F) if c not in excluded)) + b"]"


# Kinds of problems a logical line can have; strict parsing raises on ERROR, never on WARN.
ERROR = "error"
WARN = "warning"

Entry = collections.namedtuple("Entry", "key value line")


class EntryError(PostfixError, ValueError):
    """A key or value given to an edit that cannot be written as one entry."""


class SourceWarning(str):
    """A warning about a source line, rendered ``path:line: message`` (a str for modules)."""

    def __new__(cls, path, line, message):
        text = "%s:%s: %s" % (path, line, message) if line else "%s: %s" % (path, message)
        self = str.__new__(cls, text)
        self.path = path
        self.line = line
        self.message = message
        return self


class LineProblem(Exception):
    """Raised by a format's ``_parse_logical`` for a line Postfix skips (with a warning)."""

    def __init__(self, message, kind=ERROR):
        Exception.__init__(self, message)
        self.message = message
        self.kind = kind


_CONTROLS = dict.fromkeys(list(range(0x20)) + [0x7F], "?")


def printable(data):
    """Bytes shown in a message: UTF-8 where valid, escapes otherwise, and control
    characters as '?' (as printable.c does)."""
    return data.decode("utf-8", "backslashreplace").translate(_CONTROLS)


def utf8_line_ok(line):
    """postmap.c/postalias.c: skip a line when !allascii(STR) && !valid_utf8_string(STR, LEN).

    allascii() stops at the first NUL and is false for an empty string, while
    valid_utf8_string() looks at the whole buffer, NULs included.
    """
    if line.isascii():
        return True
    nul = line.find(b"\0")
    if nul > 0 and line[:nul].isascii():
        return True
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def c_string(line):
    """What the C code sees of a logical line: everything up to the first NUL."""
    nul = line.find(b"\0")
    return line if nul < 0 else line[:nul]


def fold_key(key, fold=True, smtputf8=True):
    """Fold a key as dict_utf8.c/casefold.c do for postmap/postalias (DICT_FLAG_FOLD_FIX).

    ASCII-only keys, or any key without SMTPUTF8: lowercase() (ASCII letters only).
    Non-ASCII keys with SMTPUTF8: ICU full case folding, which str.casefold() implements.
    """
    if not fold:
        return key
    if smtputf8 and not key.isascii():
        return key.decode("utf-8", "surrogateescape").casefold().encode("utf-8", "surrogateescape")
    return key.lower()


def to_bytes(value, what):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise EntryError("%s %r is not valid Unicode text" % (what, value))
    raise EntryError("%s must be a string, not %s" % (what, type(value).__name__))


def check_single_line(data, what):
    """Refuse bytes that would end the line or be cut by the C string functions."""
    for bad, name in ((b"\n", "a newline"), (b"\r", "a carriage return"), (b"\0", "a NUL byte")):
        if bad in data:
            raise EntryError("%s %r contains %s" % (what, printable(data), name))


def split_lines(data):
    """Physical lines without their ``\\n`` (a final unterminated line included)."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
        return parts, True
    return parts, False


def _visual_width(text):
    col = 0
    for ch in text.decode("utf-8", "replace"):
        col = (col // 8 + 1) * 8 if ch == "\t" else col + 1
    return col


def aligned_separator(prefix, ref_prefix, ref_sep, default):
    """Whitespace after ``prefix`` that reproduces the layout of a reference line.

    One space or one tab is reused as is; a run of spaces or of tabs aligns the value
    to the column where the reference line's value starts.
    """
    if not ref_sep:
        return default
    if ref_sep in (b" ", b"\t"):
        return ref_sep
    target = _visual_width(ref_prefix + ref_sep)
    if ref_sep.strip(b" ") == b"":
        return b" " * max(1, target - _visual_width(prefix))
    if ref_sep.strip(b"\t") == b"":
        width = _visual_width(prefix)
        tabs = 1
        while (width // 8 + tabs) * 8 < target:
            tabs += 1
        return b"\t" * tabs
    return default


def _check_duplicates(duplicates):
    if duplicates not in ("warn", "ignore", "replace"):
        raise ValueError("duplicates must be warn, ignore or replace")


def _first_of_each(keys, values, duplicates):
    """(keys, values, dropped): every key once, in order of first appearance, with its first
    value, or its last one when ``duplicates`` is "replace"; ``dropped`` lists the
    (record number, key) of the later duplicates (not for "replace").  None keys (removed
    records) are left out."""
    if duplicates == "replace":
        last = dict(zip(keys, values))
        last.pop(None, None)
        return list(last), list(last.values()), []
    seen = set()
    add = seen.add
    out_keys, out_values, dropped = [], [], []
    for r, key in enumerate(keys):
        if key is None:
            continue
        if key in seen:
            dropped.append((r, key))
            continue
        add(key)
        out_keys.append(key)
        out_values.append(values[r])
    return out_keys, out_values, dropped


def _column(items, lower, nul):
    """``items`` (bytes without newlines) as a list, ASCII-lowercased (lowercase()) and/or
    NUL-terminated, transformed in bulk."""
    if not items or not (lower or nul):
        return items
    text = (b"\0\n" if nul else b"\n").join(items)
    if lower:
        text = text.lower()
    return (text + b"\0" if nul else text).split(b"\n")


def _pieces(source):
    """The text of ``source`` (bytes, or a binary file read a block at a time) in pieces of
    whole logical lines of about _CHUNK bytes, each preceded by the newline that ends the
    line before it (the first piece gets one)."""
    if isinstance(source, bytes):
        pos, size = 0, len(source)
        while pos < size:
            cut = re.compile(_CUT).search(source, pos + _CHUNK) if pos + _CHUNK < size else None
            end = cut.end() if cut else size
            yield source[pos - 1:end] if pos else b"\n" + source[:end]
            pos = end
        return
    rest = b"\n"           # read, not yet given: the newline before a line, and the text after
    while True:
        block = source.read(_CHUNK)
        if not block:
            if len(rest) > 1:
                yield rest
            return
        # The last newline of the block before a logical line's start (the byte after it
        # must be known): up to it, everything read is whole lines.
        end = len(block) - 1
        cut = block.rfind(b"\n", 0, end)
        while cut >= 0 and block[cut + 1] in _NOT_START:
            end = cut
            cut = block.rfind(b"\n", 0, end)
        if cut >= 0:
            yield rest + memoryview(block)[:cut + 1]
            rest = block[cut:]
        elif len(rest) > 1 and rest[-1] == 0x0A and block[0] not in _NOT_START:
            yield rest
            rest = b"\n" + block
        else:
            rest += block


def _match_lines(pattern, text, line):
    """0-based line numbers of the matches of ``pattern`` (each starting with the newline
    before its line) in ``text``, a piece whose first line is ``line``."""
    out = []
    pos = 0
    for m in pattern.finditer(text):
        line += text.count(b"\n", pos, m.start())
        pos = m.start()
        out.append(line)
    return out


def without_crlf(text):
    """``text`` with its CRLF line ends made LF, or None when a CR is left elsewhere."""
    text = text.replace(b"\r\n", b"\n")
    return None if b"\r" in text else text


def without_skipped_lines(text):
    """(``text`` without the lines Postfix skips, how many went) for a piece (see _pieces)
    with no CR, VT or FF: comment lines and blank lines.  In a piece with no continuation
    line (one starting with a blank once these are gone) they are all that is skipped."""
    removed = 0
    find = text.find
    start = find(b"\n#")
    if start >= 0:
        kept = []
        pos = 0
        while start >= 0:
            kept.append(text[pos:start])
            removed += 1
            pos = find(b"\n", start + 1)
            if pos < 0:
                pos = len(text)
                break
            start = find(b"\n#", pos)
        kept.append(text[pos:])
        text = b"".join(kept)
        del kept
    while b"\n\n" in text:
        size = len(text)
        text = text.replace(b"\n\n", b"\n")
        removed += size - len(text)
    if b"\n " in text or b"\n\t" in text:
        text, count = re.compile(_BLANK_LINE).subn(b"", text)
        removed += count
    return text, removed


def split_fields(text, bad_start, nul):
    """(first fields, rests) of the lines of ``text``, a piece (see _pieces) with no CR, VT
    or FF, each line split as bytes.split(None, 1) splits it, a NUL appended to the rests
    when ``nul``; None unless every line gives two fields and none starts with what
    ``bad_start`` (a pattern starting with a newline, that must find the lines starting
    with a blank) finds."""
    if re.compile(bad_start).search(text) is not None:
        return None
    lines = text[1:-1] if text[-1] == 0x0A else text[1:]
    if nul:
        # NUL is not whitespace: the line's last field gets it.
        lines = lines.replace(b"\n", b"\0\n") + b"\0"
    columns = tuple(zip(*map(bytes.split, lines.split(b"\n"), itertools.repeat(None), itertools.repeat(1))))
    return columns if len(columns) == 2 else None


class LineDocument(object):
    """A source file as physical lines plus the logical entries found in them.

    Memory stays close to the input: the text is kept once, with the line offsets in an
    array; records are parallel sequences (start line, folded key, stored value), with
    continuation line numbers only for the records that have some.
    """

    # What a format calls its entries' keys in messages ("key" for tables, "name" for aliases).
    KEY_WORD = "key"
    # A pattern (bytes, compiled on first use) matching, with groups (raw key, stored value),
    # a newline and the physical line after it when that line is a whole logical line on its
    # own that _parse_logical() would split into exactly that key and value, with no warning;
    # None if a format has none.
    SIMPLE = None
    # Number of the first parsed line minus one (compile() parses chunks of a file).
    _base = 0

    def __init__(self, data, path, fold=True, smtputf8=True, strict=True):
        if not isinstance(data, bytes):
            raise TypeError("source data must be bytes")
        self.path = path
        self.fold = fold
        self.smtputf8 = smtputf8
        self.strict = strict
        self._data = data
        self._starts = array.array("q")     # record number -> first physical line
        self._keys = []                     # record number -> folded key, None once removed
        self._values = []                   # record number -> stored value
        self._conts = {}                    # record number -> continuation line numbers
        self._warnings = []
        self._edits = {}        # physical line number -> new content, or None when deleted
        self._appended = []     # new physical lines (content, no terminator), None when deleted
        self._index = None      # folded key -> record numbers, built on the first edit
        self._layout_ref = _UNKNOWN     # _last_record(), kept while entries are appended
        self._lineno = 0        # line being parsed, for _note(); 0 when verifying an edit
        lines, self._terminated = split_lines(data)
        self._nlines = len(lines)
        # _offsets[i] + i is where line i starts (lengths accumulated, newlines added back).
        self._offsets = array.array("q", [0])
        self._offsets.extend(itertools.accumulate(map(len, lines)))
        # New lines end like the last terminated line.
        last = self._nlines - (1 if self._terminated else 2)
        self._crlf = last >= 0 and lines[last].endswith(b"\r")
        self._parse(lines)

    # -- parsing ---------------------------------------------------------------------
    def _problem(self, line, message, kind):
        if kind == ERROR and self.strict:
            raise ParseError(self.path, line, message)
        self._warnings.append(SourceWarning(self.path, line, message))

    def _parse(self, lines):
        not_start = _NOT_START
        orphan = None
        pending = -1            # start line of the logical line being collected
        cont = None
        for i, text in enumerate(lines):
            if text and text[0] not in not_start:
                if pending >= 0:
                    self._finish(lines, pending, cont)
                elif orphan is not None:
                    self._orphan(lines, orphan)
                pending = i
                cont = None
                continue
            rest = text.lstrip(WHITESPACE)
            if not rest or rest[0] == 0x23:     # blank or comment line: skipped
                continue
            if pending < 0:
                if orphan is None:
                    orphan = i
            elif cont is None:
                cont = [i]
            else:
                cont.append(i)
        if pending >= 0:
            self._finish(lines, pending, cont)
        elif orphan is not None:
            self._orphan(lines, orphan)

    def _orphan(self, lines, i):
        # readllines(): text before any logical line is dropped with this warning.
        self._problem(self._base + i + 1, 'logical line must not start with whitespace: "%s"'
                      % printable(c_string(lines[i]).lstrip(WHITESPACE)[:30]), ERROR)

    def _finish(self, lines, start, cont):
        text = lines[start]
        if cont is not None:
            text = text + b"".join([lines[c] for c in cont])
        base = self._base
        if self.smtputf8 and not text.isascii() and not utf8_line_ok(text):
            self._problem(base + start + 1, 'non-UTF-8 input "%s" -- ignoring this line'
                          % printable(c_string(text)), WARN)
            return
        self._lineno = base + start + 1
        try:
            key, value = self._parse_logical(text)
        except LineProblem as e:
            self._problem(base + start + 1, e.message, e.kind)
            return
        if key is None:
            return
        if self.fold:
            key = key.lower() if (not self.smtputf8 or key.isascii()) else fold_key(key, True, True)
        if cont is not None:
            self._conts[len(self._keys)] = tuple(base + c for c in cont)
        self._starts.append(base + start)
        self._keys.append(key)
        self._values.append(value)

    @staticmethod
    def _split_plain(text, nul):
        """(raw keys, the same joined by newlines, stored values, skipped) of a piece of text
        (see _pieces) in which every physical line is a comment or blank line or a logical
        line of its own that _parse_logical() would split with no warning into a key and
        that value, when checks in bulk prove it; else None (the piece is then parsed
        another way).  One of the two forms of the keys may be None; the values end with a
        NUL when ``nul``; ``skipped`` is the number of comment and blank lines."""
        return None

    def _parse_logical(self, text):
        """(raw key, stored value) of one logical line; (None, None) to skip it silently.

        Raise LineProblem for a line Postfix reports and skips; call self._note(message)
        for a warning about a line that is still stored.
        """
        raise NotImplementedError

    def _note(self, message):
        if self._lineno:
            self._warnings.append(SourceWarning(self.path, self._lineno, message))

    # -- reading -----------------------------------------------------------------------
    @property
    def warnings(self):
        """Warnings found while parsing (problems skipped when strict=False included)."""
        return list(self._warnings)

    def entries(self):
        """Every valid logical record in order, duplicates included: Entry(key, value, line).

        ``key`` is folded as Postfix stores it; ``line`` is the 1-based line of its first
        physical line (entries added by edits are numbered after the original end).
        """
        return [Entry(k, v, s + 1) for s, k, v in zip(self._starts, self._keys, self._values) if k is not None]

    def records(self, duplicates="warn"):
        """(records, warnings): the (key, value) bytes pairs postmap/postalias store, in order.

        ``duplicates``: "warn" keeps the first value and warns (the default, like postmap),
        "ignore" keeps the first silently (-w), "replace" keeps the last (-r).  No NUL is
        appended here; the index format decides that.  ``warnings`` includes the parse
        warnings.
        """
        _check_duplicates(duplicates)
        warnings = list(self._warnings)
        keys, values, dups = _first_of_each(self._keys, self._values, duplicates)
        if duplicates == "warn":
            # dict_db_update()/dict_cdbm_update()/dict_lmdb_update() wording
            warnings.extend(SourceWarning(self.path, self._starts[r] + 1, 'duplicate entry: "%s"' % printable(key))
                            for r, key in dups)
        return list(zip(keys, values)), warnings

    @classmethod
    def compile(cls, source, path, fold=True, smtputf8=True, strict=True, nul=False, duplicates="warn"):
        """(keys, values, warnings): what ``cls(data, ...).records(duplicates)`` gives, as two
        lists, without building the document (postmap and postalias only need the records).

        ``source`` is the text (bytes) or a binary file to read it from, a piece at a time.
        ``nul`` appends a NUL to every key and value (the hash and lmdb convention).  Pieces
        that ``_split_plain`` proves to hold one plain record per line are split by bytes
        methods, keys folded in bulk; pieces whose every logical line is a single physical
        line matching ``SIMPLE`` are split by the regular expression engine; any other piece
        (continuation lines, quotes, non-ASCII bytes, NULs, bad lines...) goes through
        ``_parse`` line by line, so the result is the same as the document's, warnings
        included.
        """
        _check_duplicates(duplicates)
        # A document with no text: its parsing state serves the pieces that need _parse.
        self = cls.__new__(cls)
        self.path, self.fold, self.smtputf8, self.strict = path, fold, smtputf8, strict
        self._warnings = []
        self._lineno = 0
        split_plain = cls._split_plain
        keys, values = [], []
        seen = set()            # the keys kept (not for "replace")
        unique = True           # no duplicate found yet
        duplicate_warnings = []
        line = 0                # 0-based number of the piece's first line
        for text in _pieces(source):
            plain = split_plain(text, nul)
            if plain is not None:
                # One record per line not skipped; keys folded and NULs appended in bulk.
                ks, key_text, vs, skipped = plain
                del plain
                if not vs:
                    ks = vs = []
                elif nul:
                    if ks is not None:
                        key_text = b"\0\n".join(ks)
                    else:
                        key_text = key_text.replace(b"\n", b"\0\n")
                    ks = ((key_text.lower() if fold else key_text) + b"\0").split(b"\n")
                    del key_text
                elif fold or ks is None:
                    if key_text is None:
                        key_text = b"\n".join(ks)
                    folded = key_text.lower() if fold else key_text
                    if ks is None or folded != key_text:
                        ks = folded.split(b"\n")
                    del key_text, folded
                starts = None if skipped else range(line, line + len(vs))
                newlines = len(vs) + skipped + (text[-1] == 0x0A)
            else:
                ks, vs, starts, newlines = self._split_piece(text, line, fold, nul)
            if duplicates == "replace":
                keys.extend(ks)
                values.extend(vs)
            else:
                # dict_db_update()/dict_cdbm_update()/dict_lmdb_update(): the first one wins.
                size = len(seen)
                if unique:
                    # No duplicate so far: add the keys, then see whether they all were new.
                    seen.update(ks)
                    if len(seen) - size != len(ks):
                        unique = False
                        seen = set(keys)    # as it was before this piece
                elif seen.isdisjoint(ks):
                    seen.update(ks)
                    if len(seen) - size != len(ks):
                        seen.difference_update(ks)
                if len(seen) - size == len(ks):
                    keys.extend(ks)
                    values.extend(vs)
                else:
                    if starts is None:
                        # One record per line Postfix does not skip.
                        starts = _match_lines(re.compile(_NOT_SKIPPED), text, line)
                    for r, key in enumerate(ks):
                        if key in seen:
                            if duplicates == "warn":
                                duplicate_warnings.append(SourceWarning(
                                    path, starts[r] + 1, 'duplicate entry: "%s"' % printable(key[:-1] if nul else key)))
                            continue
                        seen.add(key)
                        keys.append(key)
                        values.append(vs[r])
            line += newlines - 1
        del seen
        if duplicates == "replace":
            keys, values = _first_of_each(keys, values, duplicates)[:2]
        return keys, values, self._warnings + duplicate_warnings

    def _split_piece(self, text, line, fold, nul):
        """compile(): (keys, values, start lines or None, newline count) of a piece that is
        not plain, split by SIMPLE when every line Postfix does not skip matches it (one
        record a line: the start lines are left to _match_lines), else by _parse."""
        newlines = text.count(b"\n")
        pairs = re.compile(self.SIMPLE).findall(text) if self.SIMPLE is not None else None
        # One match per physical line (the last one has no newline after it), or one per
        # line Postfix does not skip.
        if pairs is not None and (len(pairs) == newlines - (text[-1] == 0x0A)
                                  or len(pairs) == len(re.compile(_NOT_SKIPPED).findall(text))):
            ks, vs = zip(*pairs) if pairs else ((), ())
            del pairs
            return _column(ks, fold, nul), _column(vs, False, nul), None, newlines
        del pairs
        lines = text.split(b"\n")
        del lines[0]
        if not lines[-1]:
            lines.pop()
        self._base = line
        self._starts = array.array("q")
        self._keys = []
        self._values = []
        self._conts = {}
        self._parse(lines)
        ks = [k + b"\0" for k in self._keys] if nul else self._keys
        vs = [v + b"\0" for v in self._values] if nul else self._values
        return ks, vs, self._starts, newlines

    def keys(self):
        """The folded keys present, each once, in order of first appearance."""
        return list(self._get_index())

    def get(self, key):
        """The value Postfix would use for ``key`` (first of duplicates), or None."""
        rids = self._get_index().get(self.fold_key(to_bytes(key, self.KEY_WORD)))
        return self._values[rids[0]] if rids else None

    def lines_of(self, key):
        """0-based physical line numbers of ``key``'s entries (start and continuations)."""
        out = []
        for r in self._get_index().get(self.fold_key(to_bytes(key, self.KEY_WORD)), ()):
            out.append(self._starts[r])
            out.extend(self._conts.get(r, ()))
        return out

    def fold_key(self, key):
        """``key`` (bytes) folded the way this document folds its keys."""
        return fold_key(key, self.fold, self.smtputf8)

    # -- editing -----------------------------------------------------------------------
    def _get_index(self):
        if self._index is None:
            index = {}
            for r, key in enumerate(self._keys):
                if key is not None:
                    index.setdefault(key, []).append(r)
            self._index = index
        return self._index

    def _span(self, i):
        """(offset, length) of original line ``i`` in the text, newline excluded."""
        off = self._offsets
        return off[i] + i, off[i + 1] - off[i]

    def _content(self, i):
        if i >= self._nlines:
            return self._appended[i - self._nlines]
        if i in self._edits:
            return self._edits[i]
        pos, length = self._span(i)
        return self._data[pos:pos + length]

    def _put_line(self, i, content):
        if i < self._nlines:
            self._edits[i] = content
        else:
            self._appended[i - self._nlines] = content

    def _start_line(self, r):
        """The first physical line of record ``r``, without its CR."""
        text = self._content(self._starts[r])
        return text[:-1] if text.endswith(b"\r") else text

    def _last_record(self):
        """The record whose layout new entries copy: the last one of the original text
        (entries appended earlier may have had to give up the alignment), else the last
        appended one.  Remembered, so that appending n entries costs O(n), not O(n**2)."""
        if self._layout_ref is _UNKNOWN:
            fallback = None
            for r in range(len(self._keys) - 1, -1, -1):
                if self._keys[r] is not None:
                    if self._starts[r] < self._nlines:
                        fallback = r
                        break
                    if fallback is None:
                        fallback = r
            self._layout_ref = fallback
        return self._layout_ref

    def _eol(self, i=None):
        if i is not None and i < self._nlines:
            return b"\r" if self._content(i).endswith(b"\r") else b""
        return b"\r" if self._crlf else b""

    def _verify(self, content, key, value):
        """The new line must parse back to exactly (key, value): no injected entries."""
        self._lineno = 0
        check_single_line(content, "line")
        if not content or content[0] in _NOT_START:
            raise EntryError("%s %r would not start a new entry" % (self.KEY_WORD, printable(content)))
        if self.smtputf8 and not utf8_line_ok(content):
            raise EntryError("entry %r is not valid UTF-8" % printable(content))
        try:
            got_key, got_value = self._parse_logical(content)
        except LineProblem as e:
            raise EntryError("entry %r is invalid: %s" % (printable(content), e.message))
        if got_key is None or self.fold_key(got_key) != key or got_value != value:
            raise EntryError("%s %r with value %r cannot be written as one entry"
                             % (self.KEY_WORD, printable(key), printable(value)))

    def set(self, key, value):
        """Make ``key`` have exactly one entry with ``value``; True when the text changed.

        An existing entry is rewritten in place (its start line replaced, its continuation
        lines dropped, comment lines kept); later duplicates are removed.  A new entry is
        appended at the end.  An entry that already holds the value is left untouched.
        """
        raw_key = self._check_key(to_bytes(key, self.KEY_WORD))
        folded = self.fold_key(raw_key)
        stored = self._stored_value(value)
        index = self._get_index()
        rids = index.get(folded)
        changed = False
        if rids:
            first = rids[0]
            if self._values[first] != stored:
                content = self._render_existing(first, raw_key, stored)
                self._verify(content, folded, stored)
                start = self._starts[first]
                self._put_line(start, content + self._eol(start))
                for c in self._conts.pop(first, ()):
                    self._put_line(c, None)
                self._values[first] = stored
                changed = True
            for r in rids[1:]:
                self._delete_record(r)
                changed = True
            index[folded] = [first]
            return changed
        ref = self._last_record()
        content = self._render_new(raw_key, stored, ref)
        self._verify(content, folded, stored)
        self._appended.append(content + self._eol())
        self._starts.append(self._nlines + len(self._appended) - 1)
        self._keys.append(folded)
        self._values.append(stored)
        index[folded] = [len(self._keys) - 1]
        if ref is None or self._starts[ref] >= self._nlines:
            self._layout_ref = len(self._keys) - 1      # the new last appended entry
        return True

    def _delete_record(self, r):
        if r == self._layout_ref:
            self._layout_ref = _UNKNOWN
        self._put_line(self._starts[r], None)
        for c in self._conts.pop(r, ()):
            self._put_line(c, None)
        self._keys[r] = None
        self._values[r] = None

    def remove(self, key):
        """Delete every entry of ``key`` (start and continuation lines; comments stay)."""
        folded = self.fold_key(to_bytes(key, self.KEY_WORD))
        rids = self._get_index().pop(folded, None)
        for r in rids or ():
            self._delete_record(r)
        return bool(rids)

    def keep_only(self, keys):
        """Exclusive mode: delete every entry whose key is not in ``keys``; the removed keys.

        Comments, blank lines and lines Postfix skips are kept.
        """
        wanted = set(self.fold_key(to_bytes(k, self.KEY_WORD)) for k in keys)
        index = self._get_index()
        removed = [k for k in index if k not in wanted]
        for k in removed:
            for r in index.pop(k):
                self._delete_record(r)
        return removed

    @property
    def changed(self):
        """Whether any edit changed the text."""
        return bool(self._edits) or bool(self._appended)

    def render(self):
        """The document as bytes: the exact input when nothing was edited.

        Untouched lines are copied from the input as they are; the cost is one copy of
        the text plus the edited lines.
        """
        if not self._edits and not self._appended:
            return self._data
        data = self._data
        pieces = []
        pos = 0
        for i in sorted(self._edits):
            start, length = self._span(i)
            pieces.append(data[pos:start])
            content = self._edits[i]
            if content is not None:
                pieces.append(content + b"\n")
            pos = start + length + 1
        pieces.append(data[pos:])
        body = b"".join(pieces)
        appended = [x for x in self._appended if x is not None]
        if appended:
            # The original last line keeps its missing newline unless something follows
            # it; then it gets a bare "\n": a "\r" could land inside an unterminated quote.
            if body and not body.endswith(b"\n"):
                body += b"\n"
            body += b"\n".join(appended) + b"\n"
        return body

    # -- hooks -------------------------------------------------------------------------
    def _check_key(self, raw_key):
        raise NotImplementedError

    def _stored_value(self, value):
        raise NotImplementedError

    def _render_existing(self, r, raw_key, stored):
        raise NotImplementedError

    def _render_new(self, raw_key, stored, ref):
        raise NotImplementedError


def entries_from_text(text, where):
    """Entries given as one string, "KEY<TAB>VALUE" per line (the config module's entries_text, the
    route module's staged tables): the same dictionary as ``entries``, in a form Ansible templates
    and sends at once (a dictionary of thousands of keys is walked item by item). Every entry is
    then checked as one given as a dictionary."""
    out = {}
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        key, tab, value = line.partition("\t")
        if not tab:
            raise PostfixError("%s: entries as text, line %d: expected KEY<TAB>VALUE" % (where, number))
        if key in out:
            raise PostfixError("%s: entries as text, line %d: %s given twice" % (where, number, key))
        out[key] = value
    return out
