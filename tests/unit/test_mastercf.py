# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_mastercf: lossless round trip, bad lines, and edits compared with real postconf -M/-F/-P."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _mastercf
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError, PostfixError

DEBIAN = "/etc/postfix/master.cf"
DIST = "/usr/share/postfix/master.cf.dist"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"

HANDWRITTEN = (
    "# top comment\n"
    "\n"
    "smtp      inet  n       -       y       -       -       smtpd\n"
    "  -o smtpd_tls_security_level=may\n"
    "# a comment inside the entry\n"
    "\n"
    "\t-o { smtpd_client_restrictions = permit_mynetworks, reject }\n"
    "#smtps     inet  n       -       y       -       -       smtpd\n"
    "pickup    unix  n       -       y       60      1       pickup\n"
    "cleanup   unix  n       -       y       -       0       cleanup\n"
    "relay     unix  -       -       y       -       -       smtp -v\n"
    "        -o syslog_name=postfix/$service_name\n"
    "   -o { smtp_helo_name = relay.example }\n"
    "pipe1     unix  -       n       n       -       -       pipe\n"
    "  flags=R user=nobody argv=/bin/echo {a b} ${recipient}\n"
    "# trailing comment"
)


def _files():
    out = [("handwritten", HANDWRITTEN.encode())]
    for path in (DEBIAN, DIST):
        if os.path.exists(path):
            with open(path, "rb") as f:
                out.append((os.path.basename(path), f.read()))
    return out


@pytest.mark.parametrize("name,data", _files(), ids=[n for n, _d in _files()])
def test_round_trip_byte_identical(name, data):
    doc = _mastercf.MasterCf(data.decode("utf-8", "surrogateescape"), name)
    assert doc.render().encode("utf-8", "surrogateescape") == data
    assert doc.entries()


def test_parsed_fields_and_brace_options():
    doc = _mastercf.MasterCf(HANDWRITTEN)
    smtp = doc.find("smtp", "inet")
    assert smtp.fields == ["smtp", "inet", "n", "-", "y", "-", "-"]
    assert smtp.argv == ["smtpd", "-o", "smtpd_tls_security_level=may",
                         "-o", "smtpd_client_restrictions=permit_mynetworks, reject"]
    assert doc.find("pipe1", "unix").argv[-2:] == ["a b", "${recipient}"]
    assert doc.find("smtps", "inet") is None


@pytest.mark.parametrize("text,message", [
    ("smtp inet n - y - smtpd\n", "x.cf:1: too few fields"),
    ("# c\nsmtp tcp n - y - - smtpd\n", "x.cf:2: unknown service type 'tcp'"),
    ("smtp inet n - y - - smtpd\n  -o { a = b\n", "x.cf:1: unbalanced '{'"),
    ("  -o a=b\n", "x.cf:1: continuation line without an entry"),
])
def test_bad_lines(text, message):
    with pytest.raises(ParseError) as e:
        _mastercf.MasterCf(text, "x.cf")
    assert str(e.value).startswith(message)


def test_render_entry_layout_like_postconf():
    fields, argv = _mastercf.parse_entry_text(
        "submission inet n - y - - smtpd -o syslog_name=postfix/submission -o { a = b c } -v")
    assert _mastercf.render_entry(fields, argv) == (
        "submission inet  n       -       y       -       -       smtpd\n"
        "    -o syslog_name=postfix/submission\n"
        "    -o {a=b c}\n"
        "    -v\n")


def test_set_entry_unchanged_is_noop():
    doc = _mastercf.MasterCf(HANDWRITTEN)
    smtp = doc.find("smtp", "inet")
    assert not doc.set_entry("smtp", "inet", smtp.fields, smtp.argv)
    assert not doc.set_param("smtp", "inet", "smtpd_tls_security_level", "may")
    assert not doc.remove_param("smtp", "inet", "nothere")
    assert not doc.remove("nothere", "unix")
    assert doc.render() == HANDWRITTEN


def test_set_param_rejects_nothing_but_keeps_comments():
    doc = _mastercf.MasterCf(HANDWRITTEN)
    assert doc.set_param("smtp", "inet", "smtpd_tls_security_level", "encrypt")
    out = doc.render()
    assert "# a comment inside the entry\n" in out
    assert out.startswith("# top comment\n\nsmtp       inet  n")
    assert out.endswith("# trailing comment")


# -- differential: the same edits by real postconf and by the engine ------------------------

EDITS = [
    ("-M", "submission/inet=submission inet n - y - - smtpd -o syslog_name=postfix/submission "
           "-o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes"),
    ("-M", "smtp/inet=smtp inet n - n - 10 smtpd -o smtpd_tls_security_level=may"),
    ("-F", "pickup/unix/wakeup=30"),
    ("-F", "cleanup/unix/process_limit=5"),
    ("-F", "relay/unix/command=smtp -o smtp_fallback_relay="),
    ("-P", "relay/unix/syslog_name=postfix/relay2"),
    ("-P", "pickup/unix/content_filter=scan:127.0.0.1:10025"),
    ("-PX", "relay/unix/smtp_helo_name"),
    ("-M#", "cleanup/unix"),
    ("-MX", "pipe1/unix"),
    ("-MX", "uucp/unix"),
    ("-M#", "maildrop/unix"),
]


def apply_ours(doc, flag, arg):
    if flag == "-M":
        key, text = arg.split("=", 1)
        name, type_ = key.split("/")
        fields, argv = _mastercf.parse_entry_text(text)
        return doc.set_entry(name, type_, fields, argv)
    if flag == "-MX":
        return doc.remove(*arg.split("/"))
    if flag == "-M#":
        return doc.comment(*arg.split("/"))
    key, value = arg.split("=", 1) if "=" in arg else (arg, None)
    name, type_, what = key.split("/")
    if flag == "-F":
        return doc.set_field(name, type_, what, value)
    if flag == "-P":
        return doc.set_param(name, type_, what, value)
    return doc.remove_param(name, type_, what)


def postconf(confdir, *args):
    res = subprocess.run([POSTCONF, "-c", str(confdir)] + list(args), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, check=True)
    return res.stdout


def make_dir(path, data):
    path.mkdir()
    (path / "main.cf").write_text("compatibility_level = 3.6\n")
    os.utime(str(path / "main.cf"), (1e9, 1e9))
    (path / "master.cf").write_bytes(data)
    return path


needs_postconf = pytest.mark.skipif(not os.path.exists(POSTCONF), reason="postconf not installed")


@needs_postconf
@pytest.mark.parametrize("name,data", _files(), ids=[n for n, _d in _files()])
def test_differential_against_postconf(tmp_path, name, data):
    # postconf 3.7 appends a new entry to a last line that has no newline (here a comment,
    # which then swallows the entry); the engine adds the newline first.  Compare on files
    # that end with one.
    data = data if data.endswith(b"\n") else data + b"\n"
    theirs = make_dir(tmp_path / "theirs", data)
    ours = make_dir(tmp_path / "ours", data)
    assert postconf(theirs, "-M") == postconf(ours, "-M")
    doc = _mastercf.MasterCf(data.decode("utf-8", "surrogateescape"), name)
    for flag, arg in EDITS:
        postconf(theirs, flag, arg)
        apply_ours(doc, flag, arg)
    (ours / "master.cf").write_bytes(doc.render().encode("utf-8", "surrogateescape"))
    for flag in ("-M", "-P", "-Mf"):
        assert postconf(ours, flag).decode() == postconf(theirs, flag).decode()
    # Our file parses back to the same entries.
    again = _mastercf.MasterCf(doc.render())
    assert [(e.fields, e.argv) for e in again.entries()] == [(e.fields, e.argv) for e in doc.entries()]


@needs_postconf
def test_new_entry_bytes_match_postconf(tmp_path):
    theirs = make_dir(tmp_path / "theirs", b"")
    arg = ("submission/inet=submission inet n - y - - smtpd -o syslog_name=postfix/submission "
           "-o { smtpd_client_restrictions = permit_sasl_authenticated, reject } "
           "-o smtpd_tls_security_level=encrypt")
    postconf(theirs, "-M", arg)
    doc = _mastercf.MasterCf("")
    apply_ours(doc, "-M", arg)
    assert doc.render() == (theirs / "master.cf").read_text()


def test_unknown_field_is_an_error():
    doc = _mastercf.MasterCf(HANDWRITTEN)
    with pytest.raises(PostfixError):
        doc.set_field("smtp", "inet", "bogus", "1")


DUPLICATES = (
    "a unix - - n - 1 smtpd\n"
    "  -o x=1\n"
    "a unix - - n - 2 smtpd\n"
    "# c\n"
    "  -o y=1\n"
    "b unix - - n - 1 smtpd\n"
)


@needs_postconf
@pytest.mark.parametrize("flag,arg", [
    ("-P", "a/unix/z=2"), ("-PX", "a/unix/x"), ("-F", "a/unix/wakeup=9"), ("-M", "a/unix=a unix - - n - 3 smtpd"),
    ("-M#", "a/unix"), ("-MX", "a/unix"),
])
def test_duplicate_entries_like_postconf(tmp_path, flag, arg):
    theirs = make_dir(tmp_path / "theirs", DUPLICATES.encode())
    ours = make_dir(tmp_path / "ours", DUPLICATES.encode())
    postconf(theirs, flag, arg)
    doc = _mastercf.MasterCf(DUPLICATES)
    assert apply_ours(doc, flag, arg)
    (ours / "master.cf").write_text(doc.render())
    for what in ("-M", "-P", "-Mf"):
        assert postconf(ours, what) == postconf(theirs, what)


# -- property: random files round-trip, and random -P/-PX/-F edits agree with postconf -------

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_WORD = st.sampled_from(["a", "smtpd", "x_y", "$name", "10", "-", "n", "y", "{}", "{ a b }", "flags=R", "-v"])
_OPT = st.tuples(st.sampled_from(["p", "q", "syslog_name"]), st.sampled_from(["1", "b c", "postfix/$service_name"]))
_COMMENT = st.sampled_from(["# c\n", "\n", "   \n", "  # indented\n", "#x unix - - - - - y\n"])


@st.composite
def _entry(draw):
    name = draw(st.sampled_from(["s1", "s2", "s3", "127.0.0.1:25"]))
    type_ = draw(st.sampled_from(["unix", "inet"]))
    fields = ([name, type_] + [draw(st.sampled_from(["-", "n", "y"])) for _i in range(3)]
              + [draw(st.sampled_from(["-", "0", "60"])) for _i in range(2)])
    sep = draw(st.sampled_from([" ", "\t", "   "]))
    text = sep.join(fields + [draw(st.sampled_from(["smtpd", "pipe", "pickup"]))])
    for opt_name, opt_value in draw(st.lists(_OPT, max_size=3)):
        cont = draw(st.sampled_from([" ", "\n  ", "\n\t", "\n" + draw(_COMMENT) + "  "]))
        if " " in opt_value or draw(st.booleans()):
            text += "%s-o { %s = %s }" % (cont, opt_name, opt_value)
        else:
            text += "%s-o %s=%s" % (cont, opt_name, opt_value)
    for word in draw(st.lists(_WORD, max_size=3)):
        text += draw(st.sampled_from([" ", "\n    "])) + (word if word != "-v" else "arg")
    return text + "\n"


_FILE = st.lists(st.one_of(_entry(), _COMMENT), max_size=8).map("".join)


@settings(max_examples=200, deadline=None)
@given(_FILE, st.booleans())
def test_property_round_trip(text, drop_newline):
    if drop_newline:
        text = text.rstrip("\n")
    assert _mastercf.MasterCf(text).render() == text


@needs_postconf
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_FILE, st.lists(st.tuples(st.sampled_from(["-P", "-PX", "-F"]), st.sampled_from(["s1/unix", "s2/inet"]),
                                 st.sampled_from(["p", "q", "wakeup", "process_limit"])), min_size=1, max_size=3))
def test_property_edits_agree_with_postconf(tmp_path_factory, text, edits):
    # An empty argument ({}) is dropped by postconf when it rewrites the entry (it prints
    # nothing for it); the engine keeps it as {} (test_empty_argument_kept).
    assume("{}" not in text)
    base = tmp_path_factory.mktemp("prop")
    theirs = make_dir(base / "theirs", text.encode())
    ours = make_dir(base / "ours", text.encode())
    doc = _mastercf.MasterCf(text)
    for flag, key, what in edits:
        if flag == "-F":
            what = what if what in ("wakeup", "process_limit") else "chroot"
            arg = "%s/%s=7" % (key, what) if what != "chroot" else "%s/chroot=n" % key
        elif flag == "-P":
            arg = "%s/%s=v1" % (key, what)
        else:
            arg = "%s/%s" % (key, what)
        postconf(theirs, flag, arg)
        apply_ours(doc, flag, arg)
    # postconf 3.7 -P on several entries of one name/type sometimes writes heap garbage
    # into the file (seen: "    - \xff\xff\xff\xff"): no comparison with that.
    assume(all(b < 0x80 for b in (theirs / "master.cf").read_bytes()))
    (ours / "master.cf").write_text(doc.render())
    for what in ("-M", "-P"):
        assert postconf(ours, what) == postconf(theirs, what)


def test_empty_argument_kept():
    doc = _mastercf.MasterCf("s1 unix - - - - - pipe {} argv=/bin/true\n")
    assert doc.set_param("s1", "unix", "p", "1")
    assert doc.render() == "s1         unix  -       -       -       -       -       pipe\n    -o p=1\n    {} argv=/bin/true\n"
    assert _mastercf.MasterCf(doc.render()).find("s1", "unix").argv == ["pipe", "-o", "p=1", "", "argv=/bin/true"]
