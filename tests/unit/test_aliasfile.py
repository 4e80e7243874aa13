# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""aliases(5) source engine: lossless round trip, edits, errors, and real postalias as oracle.

The oracle compiles each source with ``postalias -c CONFIG cdb:FILE`` and reads the cdb
records directly (no NUL in cdb, so byte for byte and in order).
"""

import os
import random
import re
import shutil

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.mailops.postfix.plugins.module_utils import _aliasfile
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError, PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import EntryError
from compile_check import assert_compile_matches_document, assert_compile_mixes_paths
from postfix_oracle import Oracle, warning_kind

POSTALIAS = shutil.which("postalias") or "/usr/sbin/postalias"
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
YP = (b"YP_LAST_MODIFIED", b"YP_MASTER_NAME")


@pytest.fixture(scope="module")
def oracles(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("postalias"))
    return {True: Oracle(os.path.join(root, "utf8"), POSTALIAS, True),
            False: Oracle(os.path.join(root, "ascii"), POSTALIAS, False)}


def assert_same_as_postalias(oracle, data, smtputf8=True):
    doc = _aliasfile.parse(data, "aliases", smtputf8=smtputf8, strict=False)
    ours, warnings = doc.records()
    keys, values, compiled_warnings = _aliasfile.AliasDocument.compile(
        data, "aliases", smtputf8=smtputf8, strict=False)
    assert list(zip(keys, values)) == ours and compiled_warnings == warnings
    theirs, line_warnings, other = oracle.compile(data)
    yp = dict(r for r in theirs if r[0] in YP)
    assert yp[b"YP_MASTER_NAME"] == b"oracle.example"
    assert re.match(rb"^\d{10}$", yp[b"YP_LAST_MODIFIED"])
    expected = list(ours)
    extra = _aliasfile.extra_records(False, "oracle.example", int(yp[b"YP_LAST_MODIFIED"]))
    keys = set(k for k, v in ours)
    expected += [r for r in extra if r[0] not in keys]
    assert theirs == expected
    assert sorted((w.line, warning_kind(w.message)) for w in warnings
                  if "duplicate entry" not in w.message and "must not start" not in w.message) == sorted(
        (n, warning_kind(m)) for n, m in line_warnings)
    dups = len([w for w in warnings if "duplicate entry" in w.message]) + (b"@" in keys)
    assert dups == len([t for t in other if "duplicate entry" in t])
    assert len([w for w in warnings if "must not start" in w.message]) == len(
        [t for t in other if "must not start" in t])
    assert doc.render() == data
    return doc


NAMES = st.sampled_from([
    "root", "Postmaster", '"quoted name"', '"Quoted.Name"', "first.last", "a-b_c", "ÄRGER", "STRASSEß",
    "|x", "x y", "(c) name", "name@host", "a,b", "", '"a@b"', "a%b", "mailer-daemon", "MAILER-DAEMON",
    '"@"', "[lit]", "a\\ b", "ǅx",
])
TARGETS = st.sampled_from([
    "root", "a@b.c", ":include:/etc/x", '"|cmd arg"', "|cmd", "/var/mail/x", '"quoted target"', "J D <j@x>",
    "<a@b>", "(comment)", "a . b", "[1.2.3.4]", "x\\,y", '""', "ümlaut@x", "name (comment)", 'unterminated "q',
    "a\x0bb", "x:y", "a;b", "<>", "(nested (c) x)", "\\", "a\\\"b", '"tab\there"', "~/file", "Root",
])
SEPARATORS = st.sampled_from([",", ", ", " , ", ",\t", " "])


@st.composite
def alias_sources(draw):
    lines = []
    if draw(st.integers(0, 9)) == 0:
        lines.append(draw(st.sampled_from(["  orphan: text", "\tlone"])))
    for _step in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 15))
        if kind < 9:
            name = draw(NAMES)
            colon = draw(st.sampled_from([":", ": ", " : ", ":\t\t", ":  "]))
            targets = draw(st.lists(TARGETS, min_size=1, max_size=4))
            line = name + colon + targets[0]
            for t in targets[1:]:
                sep = draw(SEPARATORS)
                if draw(st.integers(0, 3)) == 0:
                    lines.append(line + sep.rstrip())
                    if draw(st.booleans()):
                        lines.append(draw(st.sampled_from(["# comment", "", "  # x"])))
                    line = draw(st.sampled_from(["  ", "\t"])) + t
                else:
                    line += sep + t
            if draw(st.integers(0, 5)) == 0:
                line += draw(st.sampled_from([",", " ", ", "]))
            lines.append(line)
        elif kind < 11:
            lines.append(draw(st.sampled_from(["# comment", "#", "  # indented", ""])))
        elif kind == 11:
            lines.append(draw(st.sampled_from(["nocolon", "name:", ":value", "x: ", "a, b: c"])))
        elif kind == 12:
            lines.append(draw(st.sampled_from(["\udcff: x", "k: \udce9t\udce9", "\udcc3k: v"])))
        elif kind == 13:
            lines.append(draw(st.sampled_from(["nul\0: x", "k: v\0after", "\0lead: v", "k\x7f: v"])))
        else:
            lines.append(draw(NAMES) + ": " + draw(TARGETS))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    data = b"".join(line.encode("utf-8", "surrogateescape") + eol.encode() for line in lines)
    if data and draw(st.booleans()):
        data = data.rstrip(b"\r\n")
    return data


@settings(max_examples=150, **SETTINGS)
@given(data=alias_sources(), smtputf8=st.booleans())
def test_records_match_real_postalias(oracles, data, smtputf8):
    assert_same_as_postalias(oracles[smtputf8], data, smtputf8)


def test_documented_examples_against_postalias(oracles):
    data = (b'a: b , c,d   (x)\n"Q N": x\nb: :include:/f, "|cmd arg", |cmd, /file,\n'
            b'c: t1\tt2\ne: <a@b>, J D <j@x>, a.b . c\nf@x: y\ng\n'
            b"STRASSE\xc3\x9f:\tx\n  # comment inside\n  y\n")
    doc = assert_same_as_postalias(oracles[True], data)
    records, warnings = doc.records()
    assert records == [
        (b"a", b"b, c, d (x)"), (b"q n", b"x"), (b"b", b':include:/f, "|cmd arg", |cmd, /file, '),
        (b"c", b"t1 t2"), (b"e", b"<a@b>, J D <j@x>, a.b.c"), (b"strassess", b"x y"),
    ]
    assert [str(w) for w in warnings] == ["aliases:6: name must be local", "aliases:7: need name:value pair"]
    assert _aliasfile.targets(doc.get("b")) == [
        (":include:/f", "include"), ('"|cmd arg"', "command"), ("|cmd", "command"), ("/file", "file")]
    assert _aliasfile.targets(doc.get("e")) == [
        ("<a@b>", "address"), ("J D <j@x>", "address"), ("a.b.c", "local")]
    assert doc.targets("STRASSEß") == [("x y", "local")]


def test_extra_records():
    assert _aliasfile.extra_records(True, "mx.example", 1700000000) == [
        (b"@\0", b"@\0"), (b"YP_LAST_MODIFIED", b"1700000000"), (b"YP_MASTER_NAME", b"mx.example")]
    assert _aliasfile.extra_records(False, "mx.example", 5) == [
        (b"@", b"@"), (b"YP_LAST_MODIFIED", b"0000000005"), (b"YP_MASTER_NAME", b"mx.example")]
    assert _aliasfile.extra_records(False, "h", 5, nis=False) == [(b"@", b"@")]


# -- lossless and robust -------------------------------------------------------------------
PHYSICAL = st.one_of(
    st.sampled_from([b"root: a, b", b"Name:\tx", b"# comment", b"  # c", b"", b"  ", b"\tcont, inued",
                     b" x", b"nocolon", b'"q x": v', b"k\\ ey: v", b"\xff\xfe", b"k: \xc3\xa9", b"a\0b: c",
                     b"(c", b'"', b"[x", b"x: (", b"x: \"", b"\r", b"a@b: c"]),
    st.binary(max_size=20),
)


@settings(max_examples=400, **SETTINGS)
@given(lines=st.lists(PHYSICAL, max_size=12), eol=st.sampled_from([b"\n", b"\r\n"]), final=st.booleans())
def test_round_trip_is_byte_identical(lines, eol, final):
    data = b"".join(line + eol for line in lines)
    if final:
        data = data.rstrip(b"\n")
    doc = _aliasfile.parse(data, "a", strict=False)
    assert doc.render() == data
    for value in (v for k, v in doc.records()[0]):
        _aliasfile.targets(value)


@settings(max_examples=400, **SETTINGS)
@given(data=st.binary(max_size=300), strict=st.booleans(), smtputf8=st.booleans())
def test_garbage_gives_parse_error_or_a_document(data, strict, smtputf8):
    try:
        doc = _aliasfile.parse(data, "g", strict=strict, smtputf8=smtputf8)
    except ParseError as e:
        assert str(e).startswith("g:%d: " % e.line)
        return
    assert doc.render() == data
    for value in (v for k, v in doc.records()[0]):
        _aliasfile.targets(value)


# -- compile-only path ---------------------------------------------------------------------
ASCII_SOUP = st.text(alphabet=' \t!#$%&()*+,-./:;<=>?@[\\]^_`{|}~aZ0"', max_size=16).map(lambda t: t.encode())
COMMON = st.one_of(
    st.sampled_from([b"root: a, b", b"Alias1: user1, archive", b"x:y", b"x : y ,z", b"a.b: c.d@e.f, |cmd, /f",
                     b"k: :include:/etc/x", b"k: a,  b", b"k: a,", b"k: a, ", b"k: a b", b"dup: x", b"DUP: y",
                     b"k: v\r", b"k:\tv\t", b"#c: d", b"", b"  ", b"\tcont", b"x: a>b;c)d]e|f!g%h#i"]),
    st.tuples(ASCII_SOUP, st.sampled_from([b":", b": ", b" : ", b""]), ASCII_SOUP).map(b"".join),
)


@settings(max_examples=500, **SETTINGS)
@given(lines=st.lists(st.one_of(COMMON, COMMON, PHYSICAL), max_size=40), eol=st.sampled_from([b"\n", b"\r\n"]),
       final=st.booleans(), chunk=st.integers(1, 120), strict=st.booleans(), smtputf8=st.booleans(),
       fold=st.booleans(), nul=st.booleans(), duplicates=st.sampled_from(["warn", "ignore", "replace"]))
def test_compile_gives_the_document_records(lines, eol, final, chunk, strict, smtputf8, fold, nul, duplicates):
    data = b"".join(line + eol for line in lines)
    if final:
        data = data.rstrip(b"\r\n")
    assert_compile_matches_document(_aliasfile.AliasDocument, data, chunk, nul=nul, duplicates=duplicates, strict=strict, smtputf8=smtputf8,
                                    fold=fold)


# Sources the bulk split (_split_plain) takes, and the near misses it must hand on: names
# and targets written plainly with various blanks and commas, duplicates, comment and blank
# lines, CRLF, and lines that need the tokenizer or the line parser.
PLAIN_NAMES = st.one_of(
    st.sampled_from([b"dup", b"DUP", b"Dup.x", b"a"]), st.text(alphabet="abXY09.-_+=~!|)>];#", min_size=1, max_size=6).map(
        str.encode), st.sampled_from([b"#x", b"a b", b"a@b", b"a%b", b"a,b", b""]))
PLAIN_TARGETS = st.sampled_from([b":include:/etc/x", b"|cmd", b"/var/x", b"a@b.c", b"x:y", b"a>b;c)d]e", b"#t"]) | st.text(
    alphabet="abXY09.-_@%+=~!|/:;#", min_size=1, max_size=6).map(str.encode)
PLAIN_ALIASES = st.tuples(PLAIN_NAMES, st.sampled_from([b": ", b": ", b": ", b":\t", b":  ", b":", b" : ", b": \t"]),
                          st.lists(PLAIN_TARGETS, min_size=1, max_size=3),
                          st.sampled_from([b", ", b", ", b", ", b",", b" , ", b",  ", b" "]),
                          st.sampled_from([b"", b"", b"", b"", b"", b" ", b"\t", b",", b", "])).map(
    lambda r: r[0] + r[1] + r[3].join(r[2]) + r[4])
ODD_ALIAS_LINES = st.sampled_from([
    b"# comment", b"#", b"# a: b", b"", b"  ", b"\t", b"  # indented", b"\tcontinued", b" more, targets", b"nocolon",
    b"name:", b": value", b"a, b: c", b'"q n": v', b"k: (c)", b"k: <a@b>", b"k: [1.2.3.4]", b"k\\ x: v",
    b"k: \xc3\xa9", b"k:\x0bv", b"k: v\x7f", b"k: v\rx", b"nul\0: v", b"\r",
])
PLAIN_ALIAS_LINES = st.one_of(PLAIN_ALIASES, PLAIN_ALIASES, PLAIN_ALIASES, ODD_ALIAS_LINES)


@settings(max_examples=400, **SETTINGS)
@given(lines=st.lists(PLAIN_ALIAS_LINES, max_size=50), eol=st.sampled_from([b"\n", b"\r\n"]), final=st.booleans(),
       chunk=st.integers(1, 400), strict=st.booleans(), fold=st.booleans(), nul=st.booleans(),
       duplicates=st.sampled_from(["warn", "ignore", "replace"]))
def test_compile_bulk_split_gives_the_document_records(lines, eol, final, chunk, strict, fold, nul, duplicates):
    data = b"".join(line + eol for line in lines)
    if final:
        data = data.rstrip(b"\r\n")
    assert_compile_matches_document(_aliasfile.AliasDocument, data, chunk, nul=nul, duplicates=duplicates, strict=strict, fold=fold)


def test_bulk_split_takes_plain_pieces_only():
    split = _aliasfile.AliasDocument._split_plain
    names, name_text, values, skipped = split(b"\nroot: a, b@c\nPostmaster: root\n", False)
    assert (name_text, list(values), skipped) == (b"root\nPostmaster", [b"a, b@c", b"root"], 0)
    assert names in (None, [b"root", b"Postmaster"])
    plain = split(b"\n# c\n\nx:\t:include:/x\r\n  \r\nK:  |cmd, y\r\n", True)
    assert (plain[1], list(plain[2]), plain[3]) == (b"x\nK", [b":include:/x\0", b"|cmd, y\0"], 3)
    assert split(b"\n# c\n\n", False)[2:] == ((), 2)
    for piece in (b"\nk: v\n  cont\n", b"\nk : v\n", b"\nk: v \n", b"\nk:\n", b"\nk: a,b\n", b"\nk: a , b\n",
                  b"\nk:v\n", b"\na@b: v\n", b"\nk: (c)\n", b"\nk: \xc3\xa9\n", b"\nk: v\rw\n"):
        assert split(piece, False) is None, piece


def _big_aliases(rnd, eol):
    """About 300 KB: runs of plain aliases (some names repeated far apart) and, here and
    there, lines the bulk split refuses, so that 64 KiB pieces take every path."""
    lines = [b"# generated aliases", b""]
    odd = (b"# team", b"", b"   ", b"  # note", b"\tcontinued", b'"q n": v', b"k: a,b", b"trailing: v ",
           b"k: \xc3\xa9", b"no-colon", b"k: <x@y>")
    for i in range(12000):
        name = b"Alias%d" % (rnd.randrange(15000) if rnd.random() < 0.05 else i)
        lines.append(name + rnd.choice((b": ", b":\t", b":  ")) + b"user%d, archive@mail.example" % i)
        if rnd.random() < 0.002:
            lines.extend(rnd.choices(odd, k=rnd.randrange(1, 4)))
    return eol.join(lines) + eol


@settings(max_examples=12, **SETTINGS)
@given(seed=st.integers(0, 2 ** 32 - 1), eol=st.sampled_from([b"\n", b"\r\n"]), nul=st.booleans(),
       duplicates=st.sampled_from(["warn", "ignore", "replace"]))
def test_compile_big_aliases_mixing_bulk_split_and_line_parsing(seed, eol, nul, duplicates):
    data = _big_aliases(random.Random(seed), eol)
    assert_compile_mixes_paths(_aliasfile.AliasDocument, data, nul, duplicates, b"late-no-colon" + eol)


@settings(max_examples=200, **SETTINGS)
@given(text=st.text(max_size=40))
def test_tokenizer_never_fails_and_externalize_is_stable(text):
    raw = text.encode("utf-8")
    value = _aliasfile.externalize(_aliasfile.scan(raw))
    _aliasfile.targets(value)
    _aliasfile.internalize(_aliasfile.scan(raw))


# -- edits ---------------------------------------------------------------------------------
EDIT_NAMES = st.sampled_from(["root", "Postmaster", "new", "quoted name", "ÄRGER", "x.y", "#hash", "a:b"])
EDIT_VALUES = st.one_of(
    st.sampled_from(["root", "a , b,c", ":include:/etc/mail/list", '"|/usr/bin/cmd arg"', "J D <j@x>"]),
    st.lists(st.sampled_from(["root", "ops@example.com", "|/usr/bin/procmail -a x", "/var/mail/a b",
                              ":include:/etc/x", "Bob <b@x>"]), min_size=1, max_size=3))


@settings(max_examples=150, **SETTINGS)
@given(data=alias_sources(), ops=st.lists(st.tuples(st.sampled_from(["set", "remove"]), EDIT_NAMES, EDIT_VALUES),
                                          max_size=6))
def test_edits_give_expected_entries_and_keep_other_lines(data, ops):
    doc = _aliasfile.parse(data, "a", strict=False)
    lines = data.split(b"\n")
    model = dict(doc.records()[0])
    touched = set()
    for op, name, value in ops:
        k = doc.fold_key(name.encode())
        touched.update(i for i in doc.lines_of(name) if i < len(lines))
        if op == "set":
            doc.set(name, value)
            model[k] = _aliasfile.render_value(value)
        else:
            assert doc.remove(name) == (k in model)
            model.pop(k, None)
    out = doc.render()
    records = _aliasfile.parse(out, "a", strict=False).records()[0]
    assert records == list(model.items())
    kept = [line for i, line in enumerate(lines) if i not in touched]
    it = iter(out.split(b"\n"))
    for line in kept[:-1]:
        assert any(line == other for other in it)


def test_edits_against_postalias(oracles):
    data = b"# aliases\nroot:\t\tadmin\npostmaster:\troot\nlist:\t\ta,\n\t\tb\n"
    doc = _aliasfile.parse(data, "a")
    assert doc.set("Root", "admin") is False
    doc.set("list", ["a", "b", "c"])
    doc.set("cmd", ["|/usr/bin/procmail -a x", "/var/mail/a b", ":include:/etc/x y"])
    doc.set("quoted name", "root")
    out = doc.render()
    assert out == (b"# aliases\nroot:\t\tadmin\npostmaster:\troot\nlist:\t\ta, b, c\n"
                   b'cmd:\t\t"|/usr/bin/procmail -a x", "/var/mail/a b", ":include:/etc/x y"\n'
                   b'"quoted name":\troot\n')
    after = assert_same_as_postalias(oracles[True], out)
    assert [t.kind for t in after.targets("cmd")] == ["command", "file", "include"]
    assert after.get("quoted name") == b"root"


def test_remove_and_exclusive_keep_comments():
    data = b"# head\nroot: a\n# mid\nlist: a,\n  # c\n  b\n\nRoot: dup\n"
    doc = _aliasfile.parse(data, "a")
    assert doc.keys() == [b"root", b"list"]
    assert doc.keep_only(["list"]) == [b"root"]
    assert doc.render() == b"# head\n# mid\nlist: a,\n  # c\n  b\n\n"
    doc.set("LIST", "x")
    assert doc.render() == b"# head\n# mid\nlist: x\n  # c\n\n"


@pytest.mark.parametrize("name,value", [
    ("a\nb", "v"), ("a", "v\nw"), ("a", "v\rw"), ("a\0", "v"), ("user@host", "v"), ("a%b", "v"), ("", "v"),
    ("  ", "v"), ("a", ""), ("a", []), ("a", ["b, c"]), ("a", ["x\ny"]), (b"\xff", "v"), ("a", None),
])
def test_refuses_injection(name, value):
    doc = _aliasfile.parse(b"x: 1\n", "a")
    with pytest.raises(EntryError) as e:
        doc.set(name, value)
    assert isinstance(e.value, PostfixError) and isinstance(e.value, ValueError)
    assert doc.render() == b"x: 1\n"


@pytest.mark.parametrize("data,line,message", [
    (b"# c\nroot: a\nnocolon\n", 3, "need name:value pair"),
    (b"root: a,\n  b\n\nuser@example.com: x\n", 4, "name must be local"),
    (b"root: a\n: x\n", 2, "need name:value pair"),
    (b"root:\r\n", 1, "need name:value pair"),
    (b"a, b: c\n", 1, "need name:value pair"),
    (b"a%b: c\n", 1, "name must be local"),
    (b"\n  orphan: x\nroot: a\n", 2, 'logical line must not start with whitespace: "orphan: x"'),
])
def test_errors_name_the_line(data, line, message):
    with pytest.raises(ParseError) as e:
        _aliasfile.parse(data, "/etc/aliases")
    assert str(e.value) == "/etc/aliases:%d: %s" % (line, message)


def test_large_aliases_file():
    data = b"".join(b"user%d: first%d , second%d@example.com,third\n" % (i, i, i) for i in range(50000))
    doc = _aliasfile.parse(data, "a")
    records, warnings = doc.records()
    assert len(records) == 50000 and not warnings
    assert records[7] == (b"user7", b"first7, second7@example.com, third")
    doc.set("user5", ["x"])
    assert doc.render().count(b"\n") == 50000
