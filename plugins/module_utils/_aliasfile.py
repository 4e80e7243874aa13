# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""aliases(5) sources: parse, edit, render losslessly, with postalias(1) semantics.

    doc = parse(data, "/etc/aliases")
    records, warnings = doc.records()      # what postalias stores, no NUL appended
    records += extra_records(nul, myhostname, int(time.time()))
    doc.set("postmaster", ["root", "ops@example.com"])
    targets(doc.get("postmaster"))         # [Target(text, kind), ...]

A logical line (readlline.c:readllines, see _logical_lines) is tokenised as RFC 822
(tok822_parse.c:tok822_scan); the first ``:`` token splits the name, stored in internal
(unquoted) form and folded, from the value, stored in external form
(tok822_externalize), so ``a , b,c   (x)`` is stored as ``a, b, c (x)``.
"""

from __future__ import annotations

import collections
import re

from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import (
    WHITESPACE, EntryError, LineDocument, LineProblem, aligned_separator, c_string,
    check_single_line, printable, printable_except, split_fields, to_bytes, without_crlf,
    without_skipped_lines,
)

# tok822.h token types; operators are their own character code.
ATOM = 256
QSTRING = 257
COMMENT = 258
DOMLIT = 259
_NON_OPERATOR = frozenset((ATOM, QSTRING, COMMENT, DOMLIT))

# tok822_parse.c: tok822_opchar = "|%!" LEX_822_SPECIALS
_OPCHARS = frozenset(b'|%!()<>@,;:\\".[]')
_SPACE_TAB_CR_LF = frozenset(b" \t\r\n")      # lex_822.h IS_SPACE_TAB_CR_LF
_COMMA = 0x2C
_COLON = 0x3A
_LT = 0x3C
_GT = 0x3E

# Lines with none of these bytes hold only atoms and operators (the common case).
_NEEDS_SCANNER = re.compile(rb'["(\[\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')
_SIMPLE_TOKEN = re.compile(rb'[^ \t\r\n|%!()<>@,;:\\".\[\]]+|[|%!)<>@,;:.\]]')

Target = collections.namedtuple("Target", "text kind")
TARGET_KINDS = ("address", "local", "command", "file", "include")


def _collect(s, i, n, stop):
    """tok822_parse.c COLLECT(): bytes up to ``stop`` (None: any space or operator), a
    backslash taking the next byte literally, whitespace stored as a space."""
    out = bytearray()
    while i < n:
        c = s[i]
        if c == 0x5C:
            i += 1
            if i >= n:
                break
            c = s[i]
        elif (c == stop) if stop is not None else (c in _SPACE_TAB_CR_LF or c in _OPCHARS):
            break
        out.append(0x20 if c in _SPACE_TAB_CR_LF else c)
        i += 1
    return bytes(out), i


def scan(s):
    """tok822_scan(): RFC 822 tokens of ``s`` (up to its first NUL) as (type, bytes)."""
    s = c_string(s)
    if _NEEDS_SCANNER.search(s) is None:
        return [(m[0] if len(m) == 1 and m[0] in _OPCHARS else ATOM, m) for m in _SIMPLE_TOKEN.findall(s)]
    tokens = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        i += 1
        if c in _SPACE_TAB_CR_LF:
            continue
        if c == 0x28:                       # tok822_comment(): nested, kept in external form
            out = bytearray(b"(")
            level = 1
            while i < n:
                ch = s[i]
                out.append(ch)
                i += 1
                if ch == 0x28:
                    level += 1
                elif ch == 0x29:
                    level -= 1
                    if level == 0:
                        break
                elif ch == 0x5C:
                    if i >= n:
                        break
                    out.append(s[i])
                    i += 1
            tokens.append((COMMENT, bytes(out)))
        elif c == 0x5B or c == 0x22:        # COLLECT_SKIP_LAST up to ] or "
            text, i = _collect(s, i, n, 0x5D if c == 0x5B else 0x22)
            if i < n:
                i += 1
            tokens.append((DOMLIT if c == 0x5B else QSTRING, text))
        elif c != 0x5C and c in _OPCHARS:
            tokens.append((c, bytes((c,))))
        else:
            text, i = _collect(s, i - 1, n, None)
            # tok822_quote_atom(): an atom holding a space, control or operator byte
            # (possible through backslashes) is written back quoted.
            kind = ATOM
            for ch in text:
                if ch == 0x20 or ch < 0x20 or ch == 0x7F or ch in _OPCHARS:
                    kind = QSTRING
                    break
            tokens.append((kind, text))
    return tokens


def _space_after(tokens, j):
    """tok822_append_space() (scan-level tokens have no owner)."""
    if j + 1 >= len(tokens):
        return False
    kind = tokens[j][0]
    nxt = tokens[j + 1][0]
    return kind == _COMMA or nxt == _LT or (kind in _NON_OPERATOR and nxt in _NON_OPERATOR)


def _quote(text, specials):
    for ch in specials:
        text = text.replace(bytes((ch,)), b"\\" + bytes((ch,)))
    return text


def externalize(tokens):
    """tok822_externalize(TOK822_STR_DEFL): tokens back to a string, quoted form."""
    out = []
    for j, (kind, text) in enumerate(tokens):
        if kind == _COMMA:
            out.append(b", ")
            continue
        if kind == QSTRING:
            # the backslash first, so the escapes it adds are not escaped again
            out.append(b'"' + _quote(text, b'\\"\r\n') + b'"')
        elif kind == DOMLIT:
            out.append(b"[" + _quote(text, b"\\\r\n") + b"]")
        else:
            out.append(text)
        if _space_after(tokens, j):
            out.append(b" ")
    return b"".join(out)


def internalize(tokens):
    """tok822_internalize(TOK822_STR_DEFL): tokens to a string, quotes removed."""
    out = []
    for j, (kind, text) in enumerate(tokens):
        out.append(b"[" + text + b"]" if kind == DOMLIT else text)
        if _space_after(tokens, j):
            out.append(b" ")
    return b"".join(out)


def split_name_value(text):
    """postalias.c:postalias(): (name in internal form, value in external form) of a
    logical line, (None, None) when it holds no token; LineProblem when malformed."""
    tokens = scan(text)
    if not tokens:
        return None, None
    colon = -1
    for j, tok in enumerate(tokens):
        if tok[0] == _COLON:
            colon = j
            break
    if colon <= 0 or colon == len(tokens) - 1:
        raise LineProblem("need name:value pair")
    name = tokens[:colon]
    kinds = set(tok[0] for tok in name)
    if _COMMA in kinds:
        raise LineProblem("need name:value pair")
    if 0x40 in kinds or 0x25 in kinds:
        raise LineProblem("name must be local")
    return internalize(name), externalize(tokens[colon + 1:])


def _target_kind(address):
    # local/token.c:deliver_token(): how local(8) treats one expanded address.
    if address[:1] == b"|":
        return "command"
    if address[:1] in (b"/", b"~"):
        return "file"
    if address[:9].lower() == b":include:":
        return "include"
    return "address" if b"@" in address else "local"


def targets(value):
    """The targets of an alias value: [Target(text, kind)], kind in TARGET_KINDS.

    ``text`` is the target as stored (external form); the kind is decided on its address
    (the part in ``<>`` if any, comments left out) in internal form, as local(8) does.
    """
    value = to_bytes(value, "value")
    result = []
    group = []
    for tok in scan(value) + [(_COMMA, b",")]:
        if tok[0] != _COMMA:
            group.append(tok)
            continue
        if group:
            address = [t for t in group if t[0] != COMMENT]
            lts = [j for j, t in enumerate(group) if t[0] == _LT]
            if lts:
                inner = group[lts[-1] + 1:]
                ends = [j for j, t in enumerate(inner) if t[0] == _GT]
                address = [t for t in inner[:ends[0] if ends else len(inner)] if t[0] != COMMENT]
            result.append(Target(externalize(group).decode("utf-8", "surrogateescape"),
                                 _target_kind(internalize(address))))
        group = []
    return result


def _quoted(text):
    return b'"' + _quote(text, b'\\"') + b'"'


_QUOTE_IN_TARGET = frozenset(b' \t,"()<>;[]\\@')


def render_target(target):
    """One target as it must be written: commands, files and includes that hold spaces or
    RFC 822 specials are quoted (aliases(5): "|command" with whitespace needs quotes)."""
    raw = to_bytes(target, "target").strip(WHITESPACE)
    check_single_line(raw, "target")
    if not raw:
        raise EntryError("empty alias target")
    if raw[:1] != b'"' and _target_kind(raw) in ("command", "file", "include"):
        if any(c in _QUOTE_IN_TARGET for c in raw):
            return _quoted(raw)
    if any(tok[0] == _COMMA for tok in scan(raw)):
        raise EntryError("alias target %r holds a ',': give each target separately" % printable(raw))
    return raw


def render_value(value):
    """A value as written: a list of targets joined ``a, b``, then normalised as stored."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise EntryError("empty list of alias targets")
        raw = b", ".join(render_target(t) for t in value)
    else:
        raw = to_bytes(value, "value")
    check_single_line(raw, "value")
    stored = externalize(scan(raw))
    if not stored:
        raise EntryError('empty alias value (write "" for an empty one)')
    return stored


def render_name(name):
    """A name as written before the ``:``: plain when it is one atom, quoted otherwise."""
    tokens = scan(name)
    if len(tokens) == 1 and tokens[0] == (ATOM, name) and name[:1] != b"#":
        return name
    return _quoted(name)


# A start line "name:" written simply: one atom or one quoted string, then the colon.
# The patterns below the scanner's are compiled on first use (re.compile() caches them).
_LAYOUT = rb'((?:[^ \t\r\n:"\\(\[,@%<>;]+|"(?:[^"\\\r\n]|\\.)*")[ \t]*:)([ \t]*)'


_SIMPLE_TARGET = printable_except(b'"(,<[\\')
# Bytes of plain pieces (see AliasDocument._split_plain) but colons and newlines:
# printable ASCII without quotes, comments, domain literals, backslashes and "<", and tabs.
_PLAIN_BYTES = bytes(c for c in range(0x20, 0x7F) if c not in b'"(<[\\:') + b"\t"
# A line that starts with a blank, "#" (not a logical line of its own) or ":" (no name).
_BAD_START = rb"\n[\t #:]"


def _checked(name_text, values, nul):
    """_plain_columns(): whether the names (joined by newlines, no blank in them) are local,
    not empty and not comments, and every value (ending with a NUL when ``nul``) is targets
    without blanks or commas separated by ", " exactly."""
    if (not name_text or name_text[0] == 0x0A or name_text[-1] == 0x0A or b"\n\n" in name_text
            or b"@" in name_text or b"%" in name_text or b"," in name_text):
        return False    # no name, not a local one, or a list before the colon
    if b"#" in name_text and (name_text[0] == 0x23 or b"\n#" in name_text):
        return False    # a comment line
    targets = b"\n".join(values).replace(b", ", b"\n")
    return not (not targets or b" " in targets or b"," in targets or b"\t" in targets or b"\n\n" in targets
                or targets[0] == 0x0A or (b"\n\0" in targets or targets[0] == 0 if nul else targets[-1] == 0x0A))


def _plain_columns(text, skeleton, nul):
    """AliasDocument._split_plain() once the bytes are checked and the lines Postfix skips
    removed: (names or None, names joined by newlines, values) or None.  ``skeleton`` is
    the colons and newlines of ``text``, ending with a newline."""
    colons = skeleton.count(b":")
    lines = len(skeleton) - 1 - colons
    if colons < lines:
        return None     # a line without a colon
    if colons == lines and skeleton == b"\n" + b":\n" * lines:
        # One colon a line: if a space follows each one, "name: value" lines split there.
        body = text[1:-1] if text[-1] == 0x0A else text[1:]
        if nul:
            body = body.replace(b"\n", b"\0\n") + b"\0"
        fields = body.replace(b": ", b"\n").split(b"\n")
        del body
        if len(fields) == 2 * lines:
            names = fields[0::2]
            values = fields[1::2]
            del fields
            name_text = b"\n".join(names)
            if b" " not in name_text and b"\t" not in name_text and _checked(name_text, values, nul):
                return names, name_text, values
            del names, values, name_text
        # Only more blanks after a colon can make the general case below do better.
        if b":\t" not in text and b":  " not in text and b": \t" not in text:
            return None
    # The general case: bytes.split(None, 1) cuts each line into "name:" and the value.
    columns = split_fields(text, _BAD_START, nul)
    if columns is None:
        return None
    names, values = columns
    del columns
    # Every first field is a name and one colon: the colons (one a line) all end one.
    name_text = b"\n".join(names)
    if name_text[-1] != 0x3A:
        return None
    size = len(name_text)
    name_text = name_text[:-1].replace(b":\n", b"\n")
    if len(name_text) != size - len(names) or b":" in name_text or not _checked(name_text, values, nul):
        return None
    return None, name_text, values


class AliasDocument(LineDocument):
    """An aliases(5) source file."""

    KEY_WORD = "name"
    # One physical line that postalias() splits with no warning into a name and a value
    # that are their own internal and external forms: printable ASCII with no quote,
    # backslash, comment, domain literal, "<" (tok822_externalize puts a space before
    # it), and no blanks inside a name or a target, so that no two atoms are adjacent;
    # the name is local (no "@" or "%") and not a comment; targets are separated by
    # exactly ", " as tok822_externalize() writes commas.
    SIMPLE = (b"\\n(" + printable_except(b'"#%(,:<@[\\') + printable_except(b'"%(,:<@[\\') + b"*)"
              b"[ \\t]*:[ \\t]*(%s+(?:, %s+)*)" % (_SIMPLE_TARGET, _SIMPLE_TARGET)
              + rb"[ \t]*\r?(?=\n|\Z)")

    @staticmethod
    def _split_plain(text, nul):
        # Lines SIMPLE matches, restricted to those whose name is followed by the colon
        # right away and whose value ends the line, without blanks before the newline.
        if b"\r" in text:
            text = without_crlf(text)
            if text is None:
                return None
        # Colons, newlines, and the bytes a plain piece must not hold.
        skeleton = text.translate(None, _PLAIN_BYTES)
        if skeleton.translate(None, b":\n"):
            return None
        if text[-1] != 0x0A:
            skeleton += b"\n"
        skipped = 0
        if b"#" in text or b"\n\n" in skeleton:
            # Lines without a colon, or a "#": maybe lines Postfix skips.
            text, skipped = without_skipped_lines(text)
            if len(text) < 2:
                return (), b"", (), skipped
            if skipped:
                skeleton = text.translate(None, _PLAIN_BYTES) + (b"" if text[-1] == 0x0A else b"\n")
        plain = _plain_columns(text, skeleton, nul)
        return None if plain is None else plain + (skipped,)

    def _parse_logical(self, text):
        return split_name_value(text)

    def _check_key(self, raw_key):
        check_single_line(raw_key, "name")
        if not raw_key.strip(WHITESPACE):
            raise EntryError("empty alias name")
        if b"@" in raw_key or b"%" in raw_key:
            raise EntryError("alias name %r: name must be local" % printable(raw_key))
        return raw_key

    def _stored_value(self, value):
        return render_value(value)

    def _layout(self, r):
        m = re.compile(_LAYOUT).match(self._start_line(r))
        if m is None:
            return None
        name = m.group(1)[:-1].rstrip(b" \t")
        if self.fold_key(internalize(scan(name))) != self._keys[r]:
            return None
        return m.group(1), m.group(2)

    def _render_existing(self, r, raw_key, stored):
        layout = self._layout(r)
        if layout is None:
            return render_name(raw_key) + b": " + stored
        return layout[0] + (layout[1] or b" ") + stored

    def _render_new(self, raw_key, stored, ref):
        prefix = render_name(raw_key) + b":"
        layout = self._layout(ref) if ref is not None else None
        if layout is None:
            return prefix + b" " + stored
        return prefix + aligned_separator(prefix, layout[0], layout[1], b" ") + stored

    def targets(self, key):
        """Targets of ``key``'s value (see :func:`targets`); [] when absent."""
        value = self.get(key)
        return targets(value) if value is not None else []


def parse(data, path, fold=True, smtputf8=True, strict=True):
    """Parse aliases(5) source ``data`` (bytes) read from ``path`` (used in messages).

    Options as for _tablefile.parse(); ``strict`` raises ParseError for ``need name:value
    pair``, ``name must be local`` and continuation text before the first entry.
    """
    return AliasDocument(data, path, fold=fold, smtputf8=smtputf8, strict=strict)


def extra_records(nul, hostname, now, nis=True):
    """postalias.c: records appended after the source's, exactly as stored.

    ``@`` -> ``@`` with the table's NUL convention (``nul``: hash/lmdb yes, cdb no); with
    NIS support (Debian builds have it) ``YP_LAST_MODIFIED`` -> the time as ``%010ld`` and
    ``YP_MASTER_NAME`` -> ``hostname``, never NUL-terminated and never folded.  A source
    entry with the same stored key keeps its value (first one wins).
    """
    z = b"\0" if nul else b""
    records = [(b"@" + z, b"@" + z)]
    if nis:
        records.append((b"YP_LAST_MODIFIED", b"%010d" % int(now)))
        records.append((b"YP_MASTER_NAME", to_bytes(hostname or "", "hostname")))
    return records


__all__ = ["parse", "AliasDocument", "extra_records", "targets", "Target", "TARGET_KINDS",
           "scan", "externalize", "internalize", "split_name_value", "render_value",
           "render_name", "render_target", "EntryError"]
