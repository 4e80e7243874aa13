# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup-table source engine: lossless round trip, edits, errors, and real postmap as oracle.

The oracle compiles each source with ``postmap -c CONFIG cdb:FILE`` and reads the cdb
records directly (postmap 3.7 cannot dump cdb with -s); cdb stores no NUL, so records
compare byte for byte, in order.
"""

import os
import random
import re
import shutil

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.mailops.postfix.plugins.module_utils import _tablefile
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError, PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import EntryError
from compile_check import assert_compile_matches_document, assert_compile_mixes_paths
from postfix_oracle import Oracle, warning_kind

POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def oracles(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("postmap"))
    return {True: Oracle(os.path.join(root, "utf8"), POSTMAP, True),
            False: Oracle(os.path.join(root, "ascii"), POSTMAP, False)}


def _ascii(text):
    """Postfix prints non-ASCII bytes as '?' when SMTPUTF8 is off: compare that way."""
    text = re.sub(r"\\x[0-9a-f]{2}", "?", text)
    return bytes(c if c < 0x80 else 0x3F for c in text.encode("utf-8", "surrogateescape"))


def assert_same_as_postmap(oracle, data, smtputf8, fold=True):
    doc = _tablefile.parse(data, "src", fold=fold, smtputf8=smtputf8, strict=False)
    ours, warnings = doc.records()
    theirs, line_warnings, other = oracle.compile(data, options=() if fold else ("-f",))
    assert ours == theirs
    keys, values, compiled_warnings = _tablefile.TableDocument.compile(
        data, "src", fold=fold, smtputf8=smtputf8, strict=False)
    assert list(zip(keys, values)) == ours and compiled_warnings == warnings
    our_lines = sorted((w.line, warning_kind(w.message)) for w in warnings
                       if "duplicate entry" not in w.message and "must not start" not in w.message)
    assert our_lines == sorted((n, warning_kind(m)) for n, m in line_warnings)
    assert sorted(_ascii(w.message) for w in warnings if "duplicate entry" in w.message) == sorted(
        _ascii('duplicate entry: "%s"' % t.split('duplicate entry: "', 1)[1][:-1]) for t in other
        if "duplicate entry" in t)
    assert len([w for w in warnings if "must not start" in w.message]) == len(
        [t for t in other if "must not start" in t])
    assert len(other) == len([w for w in warnings if "duplicate entry" in w.message or "must not start" in w.message])
    assert doc.render() == data
    return doc


# -- generated sources ---------------------------------------------------------------------
KEYS = st.sampled_from([
    "user@example.com", "User@Example.COM", "a.b+c@x.org", "@example.net", "example.com", "STRASSEß@X",
    "strasse@x", "Ärger@büro.de", "ÄRGER@BÜRO.DE", "İstanbul@x", "ǅx@y", "ﬁle@x", '"a b"@x', '"quoted"',
    "back\\ slash", "key:", "x", "X", "dup", "DUP", "192.168.1.0", "ΣΊΣΥΦΟΣ@x",
])
WORDS = st.sampled_from(["local", "a@b.c", "smtp:[relay]:587", "OK", "REJECT go away", "x,y", "ümlaut",
                         "error:5.1.1 nope", "dup", "\tTab"])


@st.composite
def value_lines(draw):
    """A value, possibly spread over continuation lines (with comments and blanks between)."""
    words = draw(st.lists(WORDS, min_size=1, max_size=4))
    if draw(st.integers(0, 9)) == 0:
        words.append("v" * draw(st.integers(300, 5000)))
    first, rest = words[0], words[1:]
    out = [first + draw(st.sampled_from(["", " ", "\t "]))]
    for w in rest:
        if draw(st.booleans()):
            out.append(draw(st.sampled_from(["# comment", "  # indented comment", "", "   "])))
        out.append(draw(st.sampled_from([" ", "\t", "    "])) + w)
    return out


@st.composite
def table_sources(draw):
    lines = []
    if draw(st.integers(0, 9)) == 0:
        lines.append(draw(st.sampled_from(["  orphan text", "\tlone continuation", " a b"])))
    for _step in range(draw(st.integers(0, 14))):
        kind = draw(st.integers(0, 19))
        if kind < 11:
            key = draw(KEYS)
            sep = draw(st.sampled_from([" ", "\t", "\t\t", "        ", " \t"]))
            vals = draw(value_lines())
            lines.append(key + sep + vals[0])
            lines.extend(vals[1:])
        elif kind < 13:
            lines.append(draw(st.sampled_from(["# comment", "#", "  # indented", "#user@x value"])))
        elif kind < 15:
            lines.append(draw(st.sampled_from(["", "   ", "\t"])))
        elif kind == 15:
            lines.append(draw(st.sampled_from(["novalue", "novalue   ", '"unbalanced key value', "trailing\\"])))
        elif kind == 16:
            lines.append(draw(st.sampled_from(["\udcff\udcfe@x value", "key \udce9t\udce9", "k\udcc3 v"])))
        elif kind == 17:
            lines.append(draw(st.sampled_from(["nul\0in key v", "k v\0after", "\0lead v"])))
        elif kind == 18:
            lines.append(draw(st.sampled_from(["\x0bvt v", "k\x0cv v2", "k\x7fdel v"])))
        else:
            lines.append(draw(KEYS) + ": " + draw(WORDS))
    eol = draw(st.sampled_from(["\n", "\r\n", "mixed"]))
    out = []
    for line in lines:
        e = eol if eol != "mixed" else draw(st.sampled_from(["\n", "\r\n"]))
        out.append(line.encode("utf-8", "surrogateescape") + e.encode())
    data = b"".join(out)
    if data and draw(st.booleans()):
        data = data.rstrip(b"\r\n")
    return data


@settings(max_examples=150, **SETTINGS)
@given(data=table_sources(), smtputf8=st.booleans())
def test_records_match_real_postmap(oracles, data, smtputf8):
    assert_same_as_postmap(oracles[smtputf8], data, smtputf8)


@settings(max_examples=25, **SETTINGS)
@given(data=table_sources())
def test_no_folding_matches_postmap_f(oracles, data):
    assert_same_as_postmap(oracles[True], data, True, fold=False)


def test_documented_examples_against_postmap(oracles):
    data = (b"a b\n#c\n  d\n\n e\n   # x\n\tf\nA dup\nSTRASSE\xc3\x9f@X v\nk:  v2\nnoval\n"
            b'"q k" v v  \r\n\xff\xfe z\n')
    doc = assert_same_as_postmap(oracles[True], data, True)
    records, warnings = doc.records()
    assert records == [(b"a", b"b  d e\tf"), (b"strassess@x", b"v"), (b"k:", b"v2"), (b'"q k"', b"v v")]
    assert [str(w) for w in warnings] == [
        'src:10: record is in "key: value" format; is this an alias file?',
        "src:11: expected format: key whitespace value",
        'src:13: non-UTF-8 input "\\xff\\xfe z" -- ignoring this line',
        'src:8: duplicate entry: "a"',
    ]


def test_large_table_with_long_values_against_postmap(oracles):
    lines = [b"# generated\n"]
    for i in range(20000):
        lines.append(b"User%d+Tag@Example%d.COM\tlocal%d, %s\n" % (i, i % 50, i, b"x" * (i % 7 * 300)))
        if i % 997 == 0:
            lines.append(b"user%d+tag@example%d.com\tduplicate\n" % (i, i % 50))
    assert_same_as_postmap(oracles[True], b"".join(lines), True)


# -- lossless and robust -------------------------------------------------------------------
PHYSICAL = st.one_of(
    st.sampled_from([b"key value", b"Key\tValue  ", b"# comment", b"  # c", b"", b"  ", b"\tcont inued",
                     b" x", b"novalue", b'"q x" v', b"k\\ ey v", b"\xff\xfe", b"k \xc3\xa9", b"a\0b c",
                     b"\x0b", b"#", b"k: v", b"\r"]),
    st.binary(max_size=20),
)


@settings(max_examples=400, **SETTINGS)
@given(lines=st.lists(PHYSICAL, max_size=12),
       eols=st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=12, max_size=12),
       final=st.booleans())
def test_round_trip_is_byte_identical(lines, eols, final):
    data = b"".join(line + eol for line, eol in zip(lines, eols))
    if final:
        data = data.rstrip(b"\n")
    doc = _tablefile.parse(data, "t", strict=False)
    assert doc.render() == data
    doc.records()
    doc.entries()


@settings(max_examples=400, **SETTINGS)
@given(data=st.binary(max_size=300), strict=st.booleans(), smtputf8=st.booleans())
def test_garbage_gives_parse_error_or_a_document(data, strict, smtputf8):
    try:
        doc = _tablefile.parse(data, "g", strict=strict, smtputf8=smtputf8)
    except ParseError as e:
        assert str(e).startswith("g:%d: " % e.line)
        return
    assert doc.render() == data
    doc.records()


# -- compile-only path ---------------------------------------------------------------------
COMMON = st.sampled_from([
    b"user@example.com\tlocal", b"User@Example.COM  a@b.c, d@e.f  ", b"key value\r", b"k:x v", b"a v:",
    b'a\tv"q\\', b"k\tv \t", b"#c", b"", b"  ", b"k: v", b":k v", b"#k v", b"dup x", b"DUP y", b"x\ty", b"X z",
    b"~!$%&'()*+,-./;<=>?@[]^_`{|}~ v", b"k \x7f", b"k\x0bv", b"k v\rw", b"\tcont", b" # c", b"noval",
]) | st.text(alphabet=' \t!#:"\\aZ0@.,', max_size=12).map(lambda t: t.encode())


@settings(max_examples=400, **SETTINGS)
@given(lines=st.lists(st.one_of(COMMON, COMMON, COMMON, PHYSICAL), max_size=40),
       eol=st.sampled_from([b"\n", b"\r\n"]), final=st.booleans(), chunk=st.integers(1, 120),
       strict=st.booleans(), smtputf8=st.booleans(), fold=st.booleans(), nul=st.booleans(),
       duplicates=st.sampled_from(["warn", "ignore", "replace"]))
def test_compile_gives_the_document_records(lines, eol, final, chunk, strict, smtputf8, fold, nul, duplicates):
    data = b"".join(line + eol for line in lines)
    if final:
        data = data.rstrip(b"\r\n")
    assert_compile_matches_document(_tablefile.TableDocument, data, chunk, nul=nul, duplicates=duplicates,
                                    strict=strict, smtputf8=smtputf8, fold=fold)


@settings(max_examples=100, **SETTINGS)
@given(data=table_sources(), chunk=st.integers(1, 200), smtputf8=st.booleans())
def test_compile_gives_the_document_records_generated_sources(data, chunk, smtputf8):
    assert_compile_matches_document(_tablefile.TableDocument, data, chunk, strict=False, smtputf8=smtputf8)


def test_compile_big_table_with_duplicates_and_odd_lines():
    lines = [b"# generated"]
    for i in range(30000):
        lines.append(b"User%d@Example%d.COM\tlocal%d, x@y" % (i, i % 50, i))
        if i % 1000 == 7:
            lines.extend([b"user%d@example%d.com dup" % (i - 3, (i - 3) % 50), b'"q %d" v' % i, b"  cont %d" % i, b"",
                          b"no-value%d" % i, b"k%d\xc3\xa9 v" % i, b"# note"])
    data = b"\n".join(lines) + b"\n"
    keys, values, warnings = _tablefile.TableDocument.compile(data, "src", strict=False, nul=True)
    assert len(keys) == 30000 + 30 + 30
    assert sum("duplicate entry" in w for w in warnings) == 30
    for chunk in (1 << 16, 4096, 100):
        assert_compile_matches_document(_tablefile.TableDocument, data, chunk, nul=True, strict=False)


# Sources the bulk split (_split_plain) takes, and the near misses it must hand on: plain
# records with various blanks, duplicates, comment and blank lines, CRLF, and lines that
# need the line parser (continuations, quotes, keys ending in ":", no value, trailing
# blanks, control and non-ASCII bytes).
PLAIN_KEYS = st.sampled_from([b"dup", b"DUP", b"Dup@X.org", b"dup@x.org", b"a", b"a:b", b":k"]) | st.text(
    alphabet="abXY09.-_@+=~!#:", min_size=1, max_size=6).map(str.encode)
PLAIN_WORDS = st.text(alphabet="abXY09.-_@+=~!#:,[]", min_size=1, max_size=6).map(str.encode)
PLAIN_RECORDS = st.tuples(PLAIN_KEYS, st.sampled_from([b" ", b"\t", b"\t\t", b"  ", b" \t"]),
                          st.lists(PLAIN_WORDS, min_size=1, max_size=3),
                          st.sampled_from([b", ", b" ", b"\t", b","])).map(lambda r: r[0] + r[1] + r[3].join(r[2]))
ODD_TABLE_LINES = st.sampled_from([
    b"# comment", b"#", b"", b"  ", b"\t", b"  # indented", b"\tcontinued", b" more, values", b"novalue", b"novalue ",
    b"key: value", b"key:\tvalue", b"k v ", b"k v\t", b'"q k" v', b"k\\ x v", b"k \xc3\xa9", b"k\x0bv", b"k v\x0c",
    b"k\x01 v\x7f", b"k v\rx", b"nul\0 v", b"\r",
])
PLAIN_TABLE_LINES = st.one_of(PLAIN_RECORDS, PLAIN_RECORDS, PLAIN_RECORDS, ODD_TABLE_LINES)


@settings(max_examples=400, **SETTINGS)
@given(lines=st.lists(PLAIN_TABLE_LINES, max_size=50), eol=st.sampled_from([b"\n", b"\r\n"]), final=st.booleans(),
       chunk=st.integers(1, 400), strict=st.booleans(), smtputf8=st.booleans(), fold=st.booleans(),
       nul=st.booleans(), duplicates=st.sampled_from(["warn", "ignore", "replace"]))
def test_compile_bulk_split_gives_the_document_records(lines, eol, final, chunk, strict, smtputf8, fold, nul,
                                                       duplicates):
    data = b"".join(line + eol for line in lines)
    if final:
        data = data.rstrip(b"\r\n")
    assert_compile_matches_document(_tablefile.TableDocument, data, chunk, nul=nul, duplicates=duplicates,
                                    strict=strict, smtputf8=smtputf8, fold=fold)


def test_bulk_split_takes_plain_pieces_only():
    split = _tablefile.TableDocument._split_plain
    keys, key_text, values, skipped = split(b"\nuser@example.com\tlocal\nKey:x  a@b.c, d@e.f\n", False)
    assert (list(keys), list(values), skipped) == ([b"user@example.com", b"Key:x"], [b"local", b"a@b.c, d@e.f"], 0)
    assert key_text in (None, b"user@example.com\nKey:x")
    assert list(split(b"\n# c\n\nk\tv\r\n  \r\nK  w x\r\n", True)[2]) == [b"v\0", b"w x\0"]
    assert split(b"\n# c\n\n", False)[2:] == ((), 2)
    for piece in (b"\nk v\n  cont\n", b"\nk: v\n", b"\nk v \n", b"\nk\n", b'\n"k" v\n', b"\nk v\rw\n",
                  b"\nk \xc3\xa9\n", b"\nk\x0bv\n"):
        assert split(piece, False) is None, piece


def _big_table(rnd, eol):
    """About 300 KB: runs of plain records (some keys repeated far apart) and, here and
    there, lines the bulk split refuses, so that 64 KiB pieces take every path."""
    lines = [b"# generated table", b""]
    odd = (b"# section", b"", b"   ", b"  # note", b"\tcontinued", b'"q k" v', b"k:x: v", b"trailing v ",
           b"k \xc3\xa9", b"no-value")
    for i in range(10000):
        key = b"user%d@example%d.COM" % (rnd.randrange(12000) if rnd.random() < 0.05 else i, i % 7)
        lines.append(key + rnd.choice((b"\t", b" ", b"\t\t")) + b"box%d@mail.example, archive" % i)
        if rnd.random() < 0.002:
            lines.extend(rnd.choices(odd, k=rnd.randrange(1, 4)))
    return eol.join(lines) + eol


@settings(max_examples=12, **SETTINGS)
@given(seed=st.integers(0, 2 ** 32 - 1), eol=st.sampled_from([b"\n", b"\r\n"]), nul=st.booleans(),
       duplicates=st.sampled_from(["warn", "ignore", "replace"]))
def test_compile_big_table_mixing_bulk_split_and_line_parsing(seed, eol, nul, duplicates):
    data = _big_table(random.Random(seed), eol)
    assert_compile_mixes_paths(_tablefile.TableDocument, data, nul, duplicates, b"late-no-value" + eol)


# -- edits ---------------------------------------------------------------------------------
EDIT_KEYS = st.sampled_from(["user@example.com", "USER@example.com", "new@x", "STRASSEß@X", "dup", "x", "k"])
EDIT_VALUES = st.one_of(st.sampled_from(["v1", "local, other@x", "smtp:[h]:25", "ümlaut"]),
                        st.lists(st.sampled_from(["a", "b@c", "d e"]), min_size=1, max_size=3))


@settings(max_examples=150, **SETTINGS)
@given(data=table_sources(), ops=st.lists(st.tuples(st.sampled_from(["set", "remove"]), EDIT_KEYS, EDIT_VALUES),
                                          max_size=6))
def test_edits_give_expected_entries_and_keep_other_lines(data, ops):
    doc = _tablefile.parse(data, "t", strict=False)
    lines = data.split(b"\n")
    before = doc.records()[0]
    model = dict(before)
    touched = set()
    fold = doc.fold_key
    for op, key, value in ops:
        k = fold(key.encode())
        touched.update(i for i in doc.lines_of(key) if i < len(lines))
        if op == "set":
            doc.set(key, value)
            model[k] = _tablefile.render_value(value)
        else:
            assert doc.remove(key) == (k in model)
            model.pop(k, None)
    out = doc.render()
    again = _tablefile.parse(out, "t", strict=False)
    records = again.records()[0]
    assert records == list(model.items())
    # Every untouched physical line is still there, in order.
    kept = [line for i, line in enumerate(lines) if i not in touched]
    it = iter(out.split(b"\n"))
    for line in kept[:-1]:
        assert any(line == other for other in it)
    assert again.records()[0] == records


def _layout_reference_by_scan(doc):
    """_last_record() as a full scan: the last original record left, else the last appended."""
    live = [r for r, key in enumerate(doc._keys) if key is not None]
    original = [r for r in live if doc._starts[r] < doc._nlines]
    return (original or live or [None])[-1]


@settings(max_examples=150, **SETTINGS)
@given(data=table_sources(), ops=st.lists(st.tuples(st.sampled_from(["set", "set", "remove", "keep_only"]),
                                                    EDIT_KEYS, EDIT_VALUES), max_size=12))
def test_remembered_layout_reference_equals_a_full_scan(data, ops):
    """New entries copy the layout of _last_record(), which is remembered across appends
    (appending n entries must not rescan n records each time) and forgotten on deletion."""
    doc = _tablefile.parse(data, "t", strict=False)
    for op, key, value in ops:
        if op == "set":
            doc.set(key, value)
        elif op == "remove":
            doc.remove(key)
        else:
            doc.keep_only([key])
        assert doc._last_record() == _layout_reference_by_scan(doc)


def test_set_keeps_layout_case_and_comments():
    data = (b"# virtual\n"
            b"Info@Example.com        alice\n"
            b"sales@example.com       bob,\n"
            b"  # who else\n"
            b"    carol\n"
            b"other@example.com\tdave\r\n")
    doc = _tablefile.parse(data, "v")
    assert doc.set("info@example.com", "alice") is False          # same value: untouched
    assert doc.set("SALES@example.com", ["bob", "erin"]) is True
    assert doc.set("other@example.com", "frank") is True
    assert doc.set("new@example.com", "gina") is True
    assert doc.render() == (b"# virtual\n"
                            b"Info@Example.com        alice\n"
                            b"sales@example.com       bob, erin\n"
                            b"  # who else\n"
                            b"other@example.com\tfrank\r\n"
                            b"new@example.com\tgina\r\n")
    doc = _tablefile.parse(b"a@x             1\nbb@x            2", "v")
    doc.set("longer-key@example.com", "3")
    doc.set("c@x", "4")
    assert doc.render() == (b"a@x             1\nbb@x            2\n"
                            b"longer-key@example.com 3\nc@x             4\n")
    doc = _tablefile.parse(b"a@x\t\t1\n", "v")
    doc.set("verylongkey@x", "2")
    doc.set("b@x", "3")
    assert doc.render() == b"a@x\t\t1\nverylongkey@x\t2\nb@x\t\t3\n"


def test_remove_duplicates_and_exclusive_mode_keep_comments():
    data = b"# head\na 1\n# mid\nb 2\n  b2\n\nA 3\nc 4\n# tail\n"
    doc = _tablefile.parse(data, "t")
    assert doc.keys() == [b"a", b"b", b"c"]
    assert doc.remove("b") is True
    assert doc.remove("b") is False
    assert doc.render() == b"# head\na 1\n# mid\n\nA 3\nc 4\n# tail\n"
    assert doc.keep_only(["C"]) == [b"a"]
    assert doc.render() == b"# head\n# mid\n\nc 4\n# tail\n"
    doc = _tablefile.parse(data, "t")
    assert doc.set("a", "9") is True                # first replaced, duplicate removed
    assert doc.render() == b"# head\na 9\n# mid\nb 2\n  b2\n\nc 4\n# tail\n"
    doc = _tablefile.parse(b"a 1\nb 2", "t")
    doc.remove("b")
    assert doc.render() == b"a 1\n"
    doc = _tablefile.parse(b"a 1\nb 2", "t")
    doc.set("c", "3")
    assert doc.render() == b"a 1\nb 2\nc 3\n"
    doc = _tablefile.parse(b"", "t")
    doc.set("c", "3")
    assert doc.render() == b"c\t3\n"


@pytest.mark.parametrize("key,value", [
    ("a\nb", "v"), ("a", "v\nw"), ("a", "v\rw"), ("a\0", "v"), ("a b", "v"), ("#a", "v"), (" a", "v"),
    ('"a', "v"), ("a\\", "v"), ("", "v"), ("a", ""), ("a", "   "), ("a", []), (b"\xff\xfe", "v"),
    ("a", b"\xc3"), ("a", ["x\ny"]), (5, "v"),
])
def test_refuses_injection(key, value):
    doc = _tablefile.parse(b"x 1\n", "t")
    with pytest.raises(EntryError) as e:
        doc.set(key, value)
    assert isinstance(e.value, PostfixError) and isinstance(e.value, ValueError)
    assert doc.render() == b"x 1\n"


def test_quoted_keys_can_be_set():
    doc = _tablefile.parse(b"", "t")
    doc.set('"a b"@x', "v")
    doc.set("a\\ b", "w")
    assert _tablefile.parse(doc.render(), "t").records()[0] == [(b'"a b"@x', b"v"), (b"a\\ b", b"w")]


@pytest.mark.parametrize("data,line,message", [
    (b"# c\n\nok v\nnovalue\nx y\n", 4, "expected format: key whitespace value"),
    (b"ok v\n  cont\n# c\nnovalue   \r\n", 4, "expected format: key whitespace value"),
    (b'ok v\n"a b\n', 2, "unbalanced '\"' in '\"a b' -- ignoring this line"),
    (b"# c\n  orphan\nok v\n", 2, 'logical line must not start with whitespace: "orphan"'),
])
def test_errors_name_the_line(data, line, message):
    with pytest.raises(ParseError) as e:
        _tablefile.parse(data, "/p/virtual")
    assert str(e.value) == "/p/virtual:%d: %s" % (line, message)
    doc = _tablefile.parse(data, "/p/virtual", strict=False)
    assert [(w.line, w.message) for w in doc.warnings] == [(line, message)]


def test_hundred_thousand_lines_parse_and_edit():
    data = b"".join(b"user%d@example%d.com\tlocal%d, other@x.org\n" % (i, i % 100, i) for i in range(100000))
    doc = _tablefile.parse(data, "v")
    records, warnings = doc.records()
    assert len(records) == 100000 and not warnings
    for i in range(0, 100000, 5000):
        doc.set("user%d@example%d.com" % (i, i % 100), "changed")
    doc.remove("user1@example1.com")
    out = doc.render()
    assert out.count(b"changed") == 20 and len(out.split(b"\n")) == 100000
    assert len(doc.keep_only([b"user2@example2.com"])) == 99998
