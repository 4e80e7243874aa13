# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""main.cf engine: lossless round trip, edits compared byte for byte with real
``postconf -e/-X/-#``, parsing compared with ``postconf -n``, expansion with ``postconf -x``.

Intentional differences from postconf (each has a test below):
- an edit that changes nothing rewrites nothing (postconf rewrites the file, and
  re-spells ``name=value`` as ``name = value`` on a no-op -e);
- new names are appended in strcmp order, as postconf does since 3.11; 3.7-3.10 append
  them in hash-table order, so the tests compare the appended block as a sorted set;
- a replaced line keeps its CRLF ending (postconf writes ``\\n``);
- appending to a file whose last line has no newline ends that line first (postconf
  glues the new parameter onto it).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from ansible_collections.mailops.postfix.plugins.module_utils import _maincf as m
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError, PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._postfix import Binary

DIST = "/usr/share/postfix/main.cf.dist"
DEBIAN_MAIN = "/etc/postfix/main.cf"
MASTER = "/etc/postfix/master.cf"

CRAFTED = (
    b"# header comment\n"
    b"myhostname = mx.example.com\n"
    b"mydestination = $myhostname,\n"
    b"    localhost.$mydomain,\n"
    b"# a comment inside the value\n"
    b"\n"
    b"    localhost\n"
    b"  # indented comment\n"
    b"relayhost =\n"
    b"virtual_alias_domains = a.example, b.example\n"
    b"smtpd_recipient_restrictions =\n"
    b"\tpermit_mynetworks,\n"
    b"\treject_unauth_destination\n"
    b"alias_maps = hash:/etc/aliases\n"
    b"mydestination = dup.example\n"
    b"message_size_limit=10240000\n"
    b"smtpd_banner = $myhostname ESMTP  two  spaces   \n"
)

SOURCES = {
    "dist": lambda: open(DIST, "rb").read(),
    "debian": lambda: open(DEBIAN_MAIN, "rb").read(),
    "crafted": lambda: CRAFTED,
}


def make_dir(root, name, data):
    d = os.path.join(str(root), name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "main.cf"), "wb") as f:
        f.write(data)
    shutil.copy(MASTER, os.path.join(d, "master.cf"))
    return d


def postconf(d, *args):
    proc = subprocess.run(["postconf", "-c", d] + list(args), capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def postconf_n(d):
    """``postconf -n`` minus the config_directory line that -c adds."""
    out = postconf(d, "-n").stdout.decode()
    return [line for line in out.splitlines() if not line.startswith("config_directory = ")]


def postconf_n_any(d):
    """(exit status, ``postconf -n`` lines without config_directory): the settings Postfix reads.
    Its warnings are not compared: they name lines, and duplicates or stray lines the edit kept
    in place sit elsewhere in the file postconf rewrote."""
    proc = subprocess.run(["postconf", "-c", d, "-n"], capture_output=True, check=False)
    lines = [line for line in proc.stdout.decode().splitlines() if not line.startswith("config_directory = ")]
    return proc.returncode, lines


def read(d):
    with open(os.path.join(d, "main.cf"), "rb") as f:
        return f.read()


# -- round trip ---------------------------------------------------------------------

@pytest.mark.parametrize("source", sorted(SOURCES))
def test_untouched_file_renders_byte_identical(source):
    data = SOURCES[source]()
    assert m.MainCf(data).render() == data


def test_crlf_and_no_final_newline_round_trip():
    data = b"a_b = 1\r\nmyhostname = x\r\n  continued\r\n# c\r\nlast = v"
    cf = m.MainCf(data)
    assert cf.render() == data
    # readllines drops only the \n: the \r stays inside, split_nameval trims the ends.
    assert cf.params() == {"a_b": "1", "myhostname": "x\r  continued", "last": "v"}


_name = st.sampled_from(["myhostname", "mydestination", "relayhost", "alias_maps", "biff", "x_1", "mynetworks"])
_word = st.text(alphabet="abc$.{}:?,=#_ \t/\\é", min_size=0, max_size=12)
_line = st.one_of(
    st.builds(lambda n, sp1, sp2, v: "%s%s=%s%s" % (n, sp1, sp2, v), _name,
              st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " ", "  "]), _word),
    st.builds(lambda ws, v: ws + v, st.sampled_from([" ", "\t", "   "]), _word),
    st.builds(lambda ws, v: ws + "#" + v, st.sampled_from(["", " ", "\t"]), _word),
    st.sampled_from(["", " ", "\t \t"]),
)
_file = st.builds(
    lambda lines, eol, final: (eol.join(lines) + (eol if final and lines else "")).encode("utf-8"),
    st.lists(_line, max_size=14), st.sampled_from(["\n", "\r\n"]), st.booleans())


@settings(max_examples=300, deadline=None)
@given(_file)
def test_property_round_trip(data):
    try:
        cf = m.MainCf(data)
    except ParseError as e:
        assert e.line >= 1
        return
    assert cf.render() == data


@settings(max_examples=200, deadline=None)
@given(_file, st.dictionaries(_name, _word.map(lambda s: s.replace("\t", " ")), min_size=1, max_size=3))
def test_property_set_then_read_back_and_idempotent(data, params):
    try:
        cf = m.MainCf(data)
    except ParseError:
        return
    before = cf.params()
    cf.set_many(params)
    after = m.MainCf(cf.render()).params()
    for k, v in params.items():
        assert after[k] == v.strip(" \t")
    for k, v in before.items():
        if k not in params:
            assert after[k] == v
    rendered = cf.render()
    assert cf.set_many(params) == []
    assert cf.render() == rendered


# -- differential against real postconf -e / -X / -# --------------------------------

EDITS = [
    ("-e", {"myhostname": "mail.example.org"}),
    ("-e", {"mydestination": "one.example, two.example"}),
    ("-e", {"smtpd_recipient_restrictions": "permit_mynetworks, reject"}),
    ("-e", {"zz_last": "1", "aa_first": "2", "virtual_alias_maps": "hash:/etc/postfix/virtual",
            "Mixed_Case": "3", "relayhost": ""}),
    ("-e", {"relayhost": "[smtp.example]:587", "message_size_limit": "0"}),
    ("-e", {"inet_interfaces": ""}),
    ("-X", ["mydestination"]),
    ("-X", ["smtpd_recipient_restrictions", "relayhost", "absent_name"]),
    ("-X", ["inet_protocols", "myhostname"]),
    ("-#", ["mydestination"]),
    ("-#", ["smtpd_recipient_restrictions", "alias_maps", "absent_name"]),
    ("-#", ["inet_protocols", "mynetworks"]),
]


def same_bytes(ours, theirs, appended):
    """Equal, except that new names are appended in strcmp order (postconf_edit.c in
    Postfix 3.11+) where 3.7-3.10 append them in hash-table order."""
    if not appended:
        return ours == theirs
    ol, tl = m.split_lines(ours), m.split_lines(theirs)
    n = len(appended)
    return ol[:-n] == tl[:-n] and ol[-n:] == sorted(tl[-n:])


def appended_names(data, mode, edit):
    if mode != "-e":
        return []
    present = m.MainCf(data).params()
    return [k for k in edit if k not in present]


def apply_ours(data, mode, edit):
    cf = m.MainCf(data)
    if mode == "-e":
        changed = cf.set_many(edit)
    elif mode == "-X":
        changed = cf.remove_many(edit)
    else:
        changed = cf.comment_many(edit)
    return cf.render(), changed


def apply_postconf(tmp_path, data, mode, edit, tag):
    d = make_dir(tmp_path, tag, data)
    args = ["%s=%s" % kv for kv in edit.items()] if mode == "-e" else list(edit)
    postconf(d, mode, *args)
    return d


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("case", range(len(EDITS)))
def test_edits_match_postconf_bytes_and_n_output(tmp_path, source, case):
    mode, edit = EDITS[case]
    data = SOURCES[source]()
    ours, changed = apply_ours(data, mode, edit)
    full_dir = apply_postconf(tmp_path, data, mode, edit, "full")
    if mode == "-e":
        # Bytes: postconf given only the names we changed (it rewrites no-op names too).
        edit_changed = dict((k, v) for k, v in edit.items() if k in changed)
    else:
        edit_changed = [k for k in edit if k in changed]
    if not changed:
        assert ours == data
    else:
        theirs = read(apply_postconf(tmp_path, data, mode, edit_changed, "changed"))
        assert same_bytes(ours, theirs, appended_names(data, mode, edit_changed))
    # Meaning: the same settings as postconf given the whole request (when the bytes
    # differ, i.e. a no-op name that postconf re-spelled or the append order).
    if ours != read(full_dir):
        assert postconf_n(make_dir(tmp_path, "ours", ours)) == postconf_n(full_dir)


def test_noop_edit_leaves_spelling_where_postconf_canonicalises(tmp_path):
    data = b"message_size_limit=10240000\nbiff = no"
    ours, changed = apply_ours(data, "-e", {"message_size_limit": "10240000", "biff": "no"})
    assert changed == [] and ours == data
    theirs = read(apply_postconf(tmp_path, data, "-e", {"message_size_limit": "10240000", "biff": "no"}, "t"))
    assert theirs == b"message_size_limit = 10240000\nbiff = no\n"


def test_missing_final_newline(tmp_path):
    data = b"biff = no\nrelayhost = x"
    ours = apply_ours(data, "-e", {"biff": "yes"})[0]
    theirs = read(apply_postconf(tmp_path, data, "-e", {"biff": "yes"}, "a"))
    assert ours == theirs == b"biff = yes\nrelayhost = x"
    # Appending: postconf glues the new line onto the unterminated last one, changing
    # relayhost to "xmyhostname = h"; we end that line first.
    ours = apply_ours(data, "-e", {"myhostname": "h"})[0]
    theirs = read(apply_postconf(tmp_path, data, "-e", {"myhostname": "h"}, "b"))
    assert theirs == b"biff = no\nrelayhost = xmyhostname = h\n"
    assert ours == b"biff = no\nrelayhost = x\nmyhostname = h\n"


def test_crlf_line_keeps_its_ending(tmp_path):
    data = b"biff = no\r\nrelayhost = x\r\n"
    ours = apply_ours(data, "-e", {"biff": "yes", "myhostname": "h"})[0]
    assert ours == b"biff = yes\r\nrelayhost = x\r\nmyhostname = h\r\n"
    theirs = read(apply_postconf(tmp_path, data, "-e", {"biff": "yes", "myhostname": "h"}, "a"))
    assert theirs == b"biff = yes\nrelayhost = x\r\nmyhostname = h\n"
    assert postconf_n(make_dir(tmp_path, "o", ours)) == postconf_n(os.path.join(str(tmp_path), "a"))


_safe_value = st.text(alphabet="abcxyz.,$_ ", min_size=0, max_size=10).map(lambda s: s.strip(" "))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_file.filter(lambda d: b"\r" not in d and (not d or d.endswith(b"\n"))),
       st.sampled_from(["-e", "-X", "-#"]),
       st.dictionaries(_name, _safe_value, min_size=1, max_size=3))
# Found: postconf re-spells the no-op names; "$" makes postconf -n fail on both files alike.
@example(b"", "-e", {"myhostname": "", "mydestination": "$", "relayhost": ""})
@example(b"myhostname=\n", "-e", {"myhostname": "", "mydestination": ""})
@example(b" ::::::::\n", "-e", {"myhostname": "", "mydestination": ""})
@example(b"myhostname=\nmyhostname=:::\n", "-e", {"mydestination": "", "relayhost": ""})
def test_property_random_edits_match_postconf(tmp_path_factory, data, mode, params):
    try:
        m.MainCf(data)
    except ParseError:
        return
    edit = params if mode == "-e" else sorted(params)
    ours, changed = apply_ours(data, mode, edit)
    tmp = tmp_path_factory.mktemp("pc")
    if changed:
        # Bytes: postconf given only the names we changed; it also re-spells a no-op name of the
        # request (myhostname= -> "myhostname = "), which we leave as written.
        edit_changed = dict((k, v) for k, v in edit.items() if k in changed) if mode == "-e" else changed
        theirs = read(apply_postconf(tmp, data, mode, edit_changed, "t"))
        assert same_bytes(ours, theirs, appended_names(data, mode, edit_changed))
        # Meaning: what postconf -n makes of both files is the same (also when it refuses a random
        # value such as "$" in both: the same exit and output).
        full_dir = apply_postconf(tmp, data, mode, edit, "full")
        if ours != read(full_dir):
            assert postconf_n_any(make_dir(tmp, "ours", ours)) == postconf_n_any(full_dir)
    else:
        assert ours == data


# -- parsing compared with postconf -n ------------------------------------------------

@pytest.mark.parametrize("source", sorted(SOURCES))
def test_parsed_values_match_postconf_n(tmp_path, source):
    data = SOURCES[source]()
    d = make_dir(tmp_path, "d", data)
    theirs = {}
    for line in postconf_n(d):
        k, _sep, v = line.partition(" =")
        theirs[k] = v.strip()
    ours = {k: " ".join(v.split()) for k, v in m.MainCf(data).params().items()}
    assert {k: ours[k] for k in theirs} == theirs


def test_duplicates_last_wins_with_warning():
    cf = m.MainCf(CRAFTED, "/x/main.cf")
    assert cf.params()["mydestination"] == "dup.example"
    assert any("/x/main.cf:15: overriding earlier entry: mydestination=" in w for w in cf.warnings)


def test_orphan_continuation_warns_and_is_ignored():
    cf = m.MainCf(b"  stray text\nbiff = no\n")
    assert cf.params() == {"biff": "no"}
    assert "must not start with whitespace" in cf.warnings[0]


# -- bad input ----------------------------------------------------------------------

@pytest.mark.parametrize("data,line,msg", [
    (b"# ok\nbiff = no\nthis line has no equals\n", 3, "missing '=' after attribute name"),
    (b"= value\n", 1, "missing attribute name"),
    (b"a = 1\nname\n  = continued ok\nbad line\n", 4, "missing '=' after attribute name"),
])
def test_malformed_reports_path_and_line(data, line, msg):
    with pytest.raises(ParseError) as e:
        m.MainCf(data, "/etc/postfix/main.cf")
    assert str(e.value).startswith("/etc/postfix/main.cf:%d: %s" % (line, msg))


def test_postfix_agrees_those_are_fatal(tmp_path):
    d = make_dir(tmp_path, "d", b"# ok\nbiff = no\nthis line has no equals\n")
    proc = subprocess.run(["postconf", "-c", d, "-n"], capture_output=True, check=False)
    assert proc.returncode != 0
    assert b"line 3: missing '=' after attribute name" in proc.stderr


@pytest.mark.parametrize("name", ["", "bad name", "smtp/inet", "a-b", "a=b", "#x", "é"])
def test_invalid_names_refused(name):
    cf = m.MainCf(b"biff = no\n")
    with pytest.raises(PostfixError) as e:
        cf.set(name, "x")
    assert "invalid main.cf parameter name" in str(e.value)
    if "/" in name:
        assert "master.cf" in str(e.value)
    assert cf.render() == b"biff = no\n"


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b", ["ok", "b\nc"]])
def test_injected_newlines_refused(value):
    cf = m.MainCf(b"biff = no\n")
    with pytest.raises(PostfixError) as e:
        cf.set("biff", value)
    assert "value contains" in str(e.value)
    assert cf.render() == b"biff = no\n"


def test_values_lists_ints_bools():
    cf = m.MainCf(b"")
    cf.set_many({"mydestination": ["a.example", "b.example"], "message_size_limit": 0,
                 "biff": False, "relayhost": "", "mynetworks": []})
    assert cf.render() == (b"biff = no\nmessage_size_limit = 0\nmydestination = a.example, b.example\n"
                           b"mynetworks = \nrelayhost = \n")


def test_list_matches_multiline_spelling_without_rewrite():
    data = b"mydestination = a.example,\n    b.example\n"
    cf = m.MainCf(data)
    assert cf.set_many({"mydestination": ["a.example", "b.example"]}) == []
    assert cf.render() == data
    assert cf.set_many({"mydestination": "a.example, b.example"}) == ["mydestination"]


# -- expansion compared with postconf -x ----------------------------------------------

TRICKY = [
    "$myhostname",
    "${myhostname}",
    "$(myhostname)",
    "$$myhostname costs $$5",
    "x${myhostname}y$mydomain.z",
    "${relayhost?relay:$relayhost}",
    "${relayhost:none}",
    "${myhostname?{has {braces} $myorigin}}",
    "${myhostname:{empty}}",
    "${relayhost?{set}:{unset}}",
    "${myhostname?{set}:{unset}}",
    "${{$compatibility_level} <level {3.6} ? {old} : {new}}",
    "${{$compatibility_level} >=level {3} ? {three+} : {older}}",
    "${{10} < {9} ? {num-lt} : {num-ge}}",
    "${{abc} < {abd} ? {str-lt} : {str-ge}}",
    "${{$myhostname} == {mx.example.com} ? {same} : {different}}",
    "${{a}!={b}}",
    "${ myhostname ? {spaced} }",
    "$my_own_param and ${my_own_param}",
    "$nested_param",
    "${undefined_param_xyz:fallback}",
    "$smtputf8_enable",
    "${myhostname??foo:{b}ar}",
]


def _expansion_dir(tmp_path, value, level="3.6", extra=""):
    data = ("compatibility_level = %s\nmyhostname = mx.example.com\nmydomain = example.com\n"
            "relayhost =\nmy_own_param = own\nnested_param = [$my_own_param/${myhostname}]\n"
            "smtpd_banner = %s\n%s" % (level, value, extra)).encode()
    return data, make_dir(tmp_path, "x", data)


@pytest.fixture(scope="module")
def defaults():
    return Binary().defaults()


@pytest.mark.parametrize("level", ["0", "3.6"])
def test_expansion_matches_postconf_x(tmp_path, defaults, level):
    # Each value in a user-defined parameter t<N>, made "used" by a reference from a known
    # one, so one ``postconf -xh t0 t1 ...`` prints them all.
    names = ["t%d" % i for i in range(len(TRICKY))]
    extra = "".join("%s = %s\n" % (n, v) for n, v in zip(names, TRICKY))
    data, d = _expansion_dir(tmp_path, " ".join("$" + n for n in names), level, extra)
    out = postconf(d, "-xh", *names).stdout.decode().split("\n")
    cfg = m.Config(m.MainCf(data), defaults)
    for i, name in enumerate(names):
        assert (TRICKY[i], cfg.value(name, strict=True)) == (TRICKY[i], out[i])


ERRORS = [
    ("${myhostname", "truncated macro reference"),
    ("${}", "empty macro name"),
    ("${{a} ~ {b}}", "expected at"),
    ("${{a} == {b}", "truncated macro reference"),
    ("${{a} == {b} x}", '"?" or ":" expected'),
    ("${my-name}", "attribute name syntax error"),
    ("${{a} ==level {b}}", "malformed compatibility level"),
]


@pytest.mark.parametrize("value,error", ERRORS)
def test_expansion_errors_like_postconf(tmp_path, value, error):
    data, d = _expansion_dir(tmp_path, value)
    if value in ("${}", "${{a} ==level {b}}"):
        proc = subprocess.run(["postconf", "-c", d, "-xh", "smtpd_banner"], capture_output=True, check=False)
        assert proc.returncode != 0 and error.encode() in proc.stderr
    cfg = m.Config(m.MainCf(data), {})
    with pytest.raises(m.ExpansionError) as e:
        cfg.value("smtpd_banner", strict=True)
    assert error in str(e.value)
    warnings = []
    cfg.value("smtpd_banner", warnings=warnings)
    assert warnings


def test_expansion_loop_is_bounded():
    cfg = m.Config(m.MainCf(b"a = $b\nb = $a\n"), {})
    with pytest.raises(m.ExpansionError) as e:
        cfg.value("a", strict=True)
    assert "nesting" in str(e.value)
