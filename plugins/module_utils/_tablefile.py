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
(see _logical_lines).
"""

from __future__ import annotations

from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import (
    WHITESPACE, ERROR, EntryError, LineDocument, LineProblem, aligned_separator, c_string,
    check_single_line, printable, printable_except, split_fields, to_bytes, without_crlf,
    without_skipped_lines,
)

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
        stored = render_value(value)
        check_single_line(stored, "value")
        stored = stored.strip()
        if not stored:
            raise EntryError("empty value: postmap needs key whitespace value")
        return stored

    def _layout(self, r):
        """(key as written, whitespace before the value) of a record's start line, or None."""
        start = c_string(self._start_line(r))
        end, in_quotes = _key_end(start)
        if in_quotes:
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


def parse(data, path, fold=True, smtputf8=True, strict=True):
    """Parse postmap(1) source ``data`` (bytes) read from ``path`` (used in messages).

    ``fold=False`` keeps key case (postmap -f).  ``smtputf8`` as smtputf8_enable: non-UTF-8
    lines are skipped with a warning, non-ASCII keys fully case-folded.  ``strict`` (the
    default) raises ParseError ``path:line: message`` for lines postmap would skip as
    malformed (no value, unbalanced quote, text before the first entry that starts with
    whitespace); ``strict=False`` reports them as warnings, like postmap.
    """
    return TableDocument(data, path, fold=fold, smtputf8=smtputf8, strict=strict)


__all__ = ["parse", "TableDocument", "split_key_value", "render_value", "EntryError", "ERROR"]
