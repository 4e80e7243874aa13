"""regexp:, pcre: and cidr: sources in the table engine (_tablefile.PatternDocument) and the
redacted view of secret tables, with real postmap as the oracle: the value we parse for a
rule is what Postfix answers for a string only that rule matches, and the lines we report
are the lines Postfix warns about."""

import os
import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.mailops.postfix.plugins.module_utils import _tablefile
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError
from ansible_collections.mailops.postfix.plugins.module_utils._logical_lines import EntryError

POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"
SETTINGS = dict(deadline=None, max_examples=40,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TYPES = ["regexp", "pcre"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("patterns")
    (d / "main.cf").write_text("compatibility_level = 3.6\n")
    os.utime(d / "main.cf", (1, 1))
    return d


def postfix_answers(workdir, type_name, data, probes):
    """(answers of postmap -q - for each probe, line numbers Postfix warned about)."""
    src = workdir / "src"
    src.write_bytes(data)
    os.utime(src, (1, 1))
    proc = subprocess.run([POSTMAP, "-c", str(workdir), "-q", "-", "%s:%s" % (type_name, src)],
                          input="".join(p + "\n" for p in probes), capture_output=True, text=True, check=False)
    answers = {}
    for line in proc.stdout.splitlines():
        key, _tab, value = line.partition("\t")
        answers[key] = value
    lines = sorted(set(int(n) for n in re.findall(r", line (\d+): ", proc.stderr)))
    return answers, lines


@st.composite
def rule(draw, n, type_name):
    """A rule that matches the probe "wN" and nothing another rule's probe is, with its value;
    white space inside the pattern, escaped delimiters, flags, continuation lines."""
    # "#" is a delimiter too once "!" starts the line; "|" would end a pattern early.
    delim = draw(st.sampled_from(["/", ",", "%", "#"]))
    body = "^w%d" % n + draw(st.sampled_from(["", "( a b)?", "(\\%s)?" % delim, "( |x)?", "[ ]?"])) + "$"
    flags = draw(st.sampled_from(["", "i"]))
    key = ("!!" if delim == "#" else draw(st.sampled_from(["", "!!"]))) + delim + body + delim + flags
    value = "v%d" % n + draw(st.sampled_from(["", " more words", "\tv2", ",x"]))
    sep = draw(st.sampled_from([" ", "\t", "  \t"]))
    line = key + sep + value + draw(st.sampled_from(["", " ", "\t"]))
    cont = draw(st.sampled_from(["", "\n  cont", "\n# inner comment\n\tcont2"]))
    expected = value + ("  cont" if cont == "\n  cont" else "\tcont2" if cont else "")
    return key, line + cont, expected


@st.composite
def pattern_file(draw, type_name):
    count = draw(st.integers(1, 8))
    rules = [draw(rule(n, type_name)) for n in range(count)]
    lines = []
    for _key, text, _value in rules:
        lines.extend(draw(st.lists(st.sampled_from(["", "# c", "   ", "  # indented"]), max_size=2)))
        lines.append(text)
    eol = draw(st.sampled_from(["\n", ""]))
    return rules, "\n".join(lines) + eol


@pytest.mark.parametrize("type_name", TYPES)
@settings(**SETTINGS)
@given(data=st.data())
def test_values_are_what_postfix_answers(workdir, type_name, data):
    rules, text = data.draw(pattern_file(type_name))
    raw = text.encode()
    doc = _tablefile.parse(raw, "src", type_name=type_name)
    assert doc.render() == raw
    records, warnings = doc.records()
    assert warnings == []
    assert [k.decode() for k, _v in records] == [k for k, _t, _v in rules]
    answers, warned = postfix_answers(workdir, type_name, raw, ["w%d" % n for n in range(len(rules))])
    assert warned == []
    # "!!" is two negations: a plain match.
    assert answers == dict(("w%d" % n, v.decode()) for n, (_k, v) in enumerate(records))
    # Continuation lines are joined as readllines() joins them.
    assert [v.decode().replace("\t", " ").split() for _k, v in records] == [
        v.replace("\t", " ").split() for _k, _t, v in rules]


BAD_LINES = [
    "/unclosed value",          # no closing delimiter
    "/p/",                      # no replacement text (Postfix: uses an empty string)
    "word value",               # unrecognized request
    "endif",                    # ENDIF without IF
    "!",                        # no pattern
]


@pytest.mark.parametrize("type_name", TYPES)
@settings(**SETTINGS)
@given(data=st.data())
def test_lines_refused_are_the_lines_postfix_warns_about(workdir, type_name, data):
    lines = data.draw(st.lists(st.sampled_from(BAD_LINES + ["/^ok$/ fine", "# comment", ""]), min_size=1,
                               max_size=8))
    raw = ("\n".join(lines) + "\n").encode()
    doc = _tablefile.parse(raw, "src", type_name=type_name, strict=False)
    assert doc.render() == raw
    ours = sorted(w.line for w in doc.warnings)
    _answers, theirs = postfix_answers(workdir, type_name, raw, ["x"])
    assert ours == theirs
    if ours:
        with pytest.raises(ParseError) as info:
            _tablefile.parse(raw, "src", type_name=type_name)
        assert str(info.value).startswith("src:%d: " % ours[0])


def test_regexp_two_patterns_in_one_key(workdir):
    raw = b"/^a/!/^ab/ first-not-second\n/^ab/ second\n"
    doc = _tablefile.parse(raw, "src", type_name="regexp")
    assert doc.records()[0] == [(b"/^a/!/^ab/", b"first-not-second"), (b"/^ab/", b"second")]
    answers, warned = postfix_answers(workdir, "regexp", raw, ["ax", "abx"])
    assert warned == [] and answers == {"ax": "first-not-second", "abx": "second"}


def test_if_endif_entries_are_guarded(workdir):
    raw = b"/^a/ A\nIF /^b/\n/^bb/ BB\nif !/^bbb/\n/^bb/ again\nendif\nEndIf\n/^c/ C\n"
    doc = _tablefile.parse(raw, "src", type_name="regexp")
    assert doc.records()[0] == [(b"/^a/", b"A"), (b"/^c/", b"C")]
    assert doc.guarded == {b"/^bb/": 3} and doc.if_lines == [2, 4]
    with pytest.raises(EntryError, match="src:3: pattern '/\\^bb/' is inside an if/endif block"):
        doc.set("/^bb/", "x")
    with pytest.raises(EntryError, match="inside an if/endif block"):
        doc.remove("/^bb/")
    with pytest.raises(EntryError, match="exclusive cannot manage"):
        doc.keep_only(["/^a/"])
    assert doc.set("/^c/", "C2") and doc.set("/^d/", "D")
    assert doc.render() == raw.replace(b"/^c/ C", b"/^c/ C2") + b"/^d/ D\n"
    answers, warned = postfix_answers(workdir, "regexp", doc.render(), ["bbx", "c", "d"])
    assert warned == [] and answers == {"bbx": "BB", "c": "C2", "d": "D"}
    # IF without ENDIF: Postfix warns at the IF line.
    with pytest.raises(ParseError, match="^src:1: IF has no matching ENDIF"):
        _tablefile.parse(b"if /x/\n/y/ z\n", "src", type_name="regexp")
    assert postfix_answers(workdir, "regexp", b"if /x/\n/y/ z\n", ["y"])[1] == [1]


def test_keys_are_checked_before_writing():
    doc = _tablefile.parse(b"", "src", type_name="regexp")
    for bad, message in [("noslash", "must start with its delimiter"), ("/open", "no closing regexp delimiter"),
                         ("/a/ b", "has text after its flags"), ("if", "be if/endif"), ("#/a/", "start with")]:
        with pytest.raises(EntryError, match=message):
            doc.set(bad, "v")
    cidr = _tablefile.parse(b"", "src", type_name="cidr")
    with pytest.raises(EntryError, match="white space"):
        cidr.set("10.0.0.0/8 x", "v")
    # Case is kept: these are two entries.
    doc.set("/^A/", "1")
    doc.set("/^a/", "2")
    assert doc.render() == b"/^A/\t1\n/^a/\t2\n"


def test_cidr_entries(workdir):
    raw = b"192.0.2.0/24\tnet\n# host\n198.51.100.7 host\n!10.0.0.0/8  not-ten\n"
    doc = _tablefile.parse(raw, "src", type_name="cidr")
    assert doc.records()[0] == [(b"192.0.2.0/24", b"net"), (b"198.51.100.7", b"host"), (b"!10.0.0.0/8", b"not-ten")]
    answers, warned = postfix_answers(workdir, "cidr", raw, ["192.0.2.9", "198.51.100.7", "172.16.0.1"])
    assert warned == [] and answers == {"192.0.2.9": "net", "198.51.100.7": "host", "172.16.0.1": "not-ten"}


@pytest.mark.parametrize("data,keys,expected", [
    # The comment directly above an entry moves with it; blank lines and the header stay.
    (b"# header\n/a/ 1\n\n# about b\n/b/ 2\n/c/ 3\n", ["/c/", "/b/", "/a/"],
     b"# header\n/c/ 3\n\n# about b\n/b/ 2\n/a/ 1\n"),
    # Continuation lines move with their entry; a last line without a newline gets one.
    (b"/a/ 1\n  more\n/b/ 2", ["/b/", "/a/"], b"/b/ 2\n/a/ 1\n  more\n"),
    # Entries not named keep their place after the named ones.
    (b"/x/ 0\n/a/ 1\n/b/ 2\n", ["/b/", "/a/"], b"/b/ 2\n/a/ 1\n/x/ 0\n"),
    # Already in order: the same bytes.
    (b"/a/ 1\r\n/b/ 2", ["/a/", "/b/"], b"/a/ 1\r\n/b/ 2"),
])
def test_ordered(data, keys, expected):
    doc = _tablefile.parse(data, "src", type_name="regexp")
    assert doc.ordered(keys) == expected


def test_redacted_hides_every_value():
    data = b"# old: [a]:25 u:OldPw\n[a]:25\tu:Pw1\n\n[B]:587 u:Pw2\n  continued-Pw3\n\"bad x:Pw4\n"
    text = _tablefile.redacted(data, "src", changed={b"[b]:587"})
    assert text == "# <hidden>\n[a]:25 <hidden>\n\n[B]:587 <hidden, changed>\n  <hidden>\n  <hidden>\n"
    pattern = _tablefile.redacted(b"/^a b/ Pw1\n", "src", "regexp")
    assert pattern == "/^a b/ <hidden>\n"


def test_secret_parse_messages_hold_no_value():
    with pytest.raises(ParseError) as info:
        _tablefile.parse(b'"key u:Secret-1\n', "src", secret=True)
    assert "Secret-1" not in str(info.value) and str(info.value).startswith("src:1: unbalanced")
    doc = _tablefile.parse(b"k v\n", "src", secret=True)
    with pytest.raises(EntryError) as info:
        doc.set("k", "a\nSecret-2")
    assert "Secret-2" not in str(info.value)
    warnings = _tablefile.parse(b" orphan-Secret-3\nk v\n", "src", secret=True, strict=False).warnings
    assert warnings and "Secret-3" not in str(warnings)


@pytest.mark.parametrize("type_name", TYPES)
@settings(**SETTINGS)
@given(data=st.data())
def test_edits_keep_first_match_semantics(workdir, type_name, data):
    """Random files, then random set/remove and an ordering: the text Postfix reads answers
    every probe with the value of the first rule (in the model's order) that matches it, and
    untouched lines stay byte for byte."""
    rules, text = data.draw(pattern_file(type_name))
    raw = text.encode()
    doc = _tablefile.parse(raw, "src", type_name=type_name)
    model = [(k.decode(), v.decode()) for k, v in doc.records()[0]]
    edits = data.draw(st.lists(st.tuples(st.sampled_from(["set", "remove"]), st.integers(0, 9),
                                         st.sampled_from(["new", "other value"])), max_size=6))
    for op, n, value in edits:
        key = "/^w%d$/" % n
        if op == "set":
            doc.set(key, value)
            if any(k == key for k, _v in model):
                model = [(k, value if k == key else v) for k, v in model]
            else:
                model.append((key, value))
        else:
            doc.remove(key)
            model = [(k, v) for k, v in model if k != key]
    order = data.draw(st.permutations([k for k, _v in model]))
    out = doc.ordered(order)
    model = sorted(model, key=lambda kv: order.index(kv[0]))
    again = _tablefile.parse(out, "src", type_name=type_name)
    assert [(k.decode(), v.decode()) for k, v in again.records()[0]] == model
    # Every comment line of the original text is still there.
    assert sorted(x for x in raw.split(b"\n") if x.lstrip().startswith(b"#")) == sorted(
        x for x in out.split(b"\n") if x.lstrip().startswith(b"#"))
    probes = ["w%d" % n for n in range(10)]
    answers, warned = postfix_answers(workdir, type_name, out, probes)
    assert warned == []
    expected = {}
    for probe in probes:
        for k, v in model:
            # Every generated pattern "^wN...$" matches exactly its own probe.
            if re.match(r"^(?:!!)?.\^%s\b" % probe, k) and not re.match(r"^(?:!!)?.\^%s\d" % probe, k):
                expected[probe] = v
                break
    assert answers == expected
