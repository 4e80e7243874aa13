# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mail log triage engine on recorded samples (maillog_file, syslog, RFC 3339, rotated)."""

from __future__ import annotations

import bz2
import gzip
import os
import shutil
import time

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _maillog as ml
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "maillog")
POSTLOGD = os.path.join(DATA, "postlogd.log")    # recorded from a real Postfix 3.7 maillog_file
SYSLOG = os.path.join(DATA, "syslog.log")        # traditional syslog format, non-Postfix lines mixed in
RFC3339 = os.path.join(DATA, "rfc3339.log")      # rsyslog's RFC 3339 timestamps, mixed offsets


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


NOW = 1795543200.0  # 2026-11-24T18:00:00Z


def tri(path, **kw):
    kw.setdefault("now", NOW)
    return ml.triage(path=path, **kw)


def group(res, needle, program=None):
    found = [g for g in res["groups"] if needle in g["message"] and (program is None or g["program"] == program)]
    assert len(found) == 1, (needle, res["groups"])
    return found[0]


def test_postlogd_maillog_file_recorded():
    res = tri(POSTLOGD)
    assert res["counts"] == {"warning": 6, "error": 0, "fatal": 2, "panic": 0}
    assert res["healthy"] is False
    assert res["lines_read"] == 30 and res["postfix_lines"] == 30
    assert res["sources"] == [POSTLOGD]
    # fatal first, then warnings by count
    assert [g["severity"] for g in res["groups"]] == ["fatal", "fatal"] + ["warning"] * 5
    g = group(res, "is older than source file", "postfix/smtpd")
    assert g["message"] == "database /srv/pf/etc/vmailbox.db is older than source file /srv/pf/etc/vmailbox"
    assert g["count"] == 2
    assert g["first_seen"] == "2026-11-24T16:06:10+00:00" and g["last_seen"] == "2026-11-24T16:06:10+00:00"
    assert "postfix/smtpd[1658]" in g["examples"][0] and "postfix/smtpd[1654]" in g["examples"][1]
    assert group(res, "is older than source file", "postfix/virtual")["count"] == 1
    g = group(res, "exit status")
    assert g["message"] == "process /usr/lib/postfix/sbin/smtpd pid N exit status N" and g["program"] == "postfix/master"
    g = group(res, "Flush service")
    assert g["severity"] == "fatal" and g["program"] == "postfix/postqueue"
    assert group(res, "bad numerical configuration")["message"] == \
        "bad numerical configuration: smtpd_recipient_limit = lots"


def test_syslog_format_and_severities():
    res = tri(SYSLOG)
    assert res["counts"] == {"warning": 8, "error": 1, "fatal": 1, "panic": 1}
    assert res["healthy"] is False
    assert res["postfix_lines"] == 14  # CRON and dovecot lines ignored
    assert [g["severity"] for g in res["groups"][:3]] == ["panic", "fatal", "error"]
    g = group(res, "defer service failure")
    assert g["message"] == "QUEUEID: defer service failure" and g["count"] == 2
    assert g["examples"][0].startswith("Nov  4 00:05:12") and "4A1B2C3D4E" in g["examples"][0]
    assert g["first_seen"] == "2026-11-04T00:05:11+00:00" and g["last_seen"] == "2026-11-04T00:05:12+00:00"
    assert group(res, "TLS library problem")["program"] == "postfix-out/smtp"
    assert group(res, "mydestination")["message"].startswith("do not list domain chrisbinnie.tld in BOTH")
    assert "does not resolve to address IP" in group(res, "spam.example does not resolve to address IP: ")["message"]

    only = tri(SYSLOG, severities=["warning"])
    assert set(g["severity"] for g in only["groups"]) == {"warning"}
    assert only["healthy"] is False and only["counts"]["panic"] == 1  # health covers every severity
    assert tri(SYSLOG, examples=1)["groups"][0]["examples"] == [
        "Nov  4 00:07:00 mail postfix/qmgr[4140]: panic: myfree: corrupt or unallocated memory block"]


def test_syslog_year_is_inferred_from_now():
    jan = time.mktime((2027, 1, 2, 0, 0, 0, 0, 0, -1))
    res = tri(SYSLOG, now=jan)
    assert res["oldest"].startswith("2026-11-04")


def test_rfc3339_offsets_and_since():
    res = tri(RFC3339)
    assert res["counts"] == {"warning": 7, "error": 0, "fatal": 1, "panic": 0}
    g = group(res, "does not resolve")
    assert g["count"] == 3 and g["message"] == "hostname mxN.example.net does not resolve to address IP"
    # 12:11:13.5+01:00 is 11:11:13.5Z: newest of the three, so the first example
    assert "mx3.example.net" in g["examples"][0]
    assert g["last_seen"] == "2026-11-24T11:11:13+00:00"
    assert group(res, "defer service")["message"] == "QUEUEID: defer service failure"

    late = tri(RFC3339, since="2026-11-24T11:15:00Z")
    assert late["counts"] == {"warning": 4, "error": 0, "fatal": 1, "panic": 0}
    assert late["since"] == "2026-11-24T11:15:00+00:00"
    after_fatal = tri(RFC3339, since="2026-11-24 11:30:01")
    assert after_fatal["healthy"] is True and after_fatal["counts"]["warning"] == 3
    assert tri(RFC3339, since="1d", now=time.mktime((2026, 11, 25, 11, 30, 0, 0, 0, -1)))["counts"]["warning"] == 3


def test_lines_reads_the_end():
    res = tri(SYSLOG, lines=3)
    assert res["lines_read"] == 3
    assert res["counts"] == {"warning": 2, "error": 0, "fatal": 1, "panic": 0}
    both = tri(SYSLOG, lines=3, since="2026-11-04T00:08:30")
    assert both["counts"] == {"warning": 1, "error": 0, "fatal": 1, "panic": 0}


def test_tail_lines_in_blocks(tmp_path):
    big = tmp_path / "big.log"
    with open(big, "w") as f:
        for i in range(200000):
            f.write("Nov 24 10:00:00 mail postfix/smtpd[%d]: line %d\n" % (i, i))
    assert ml.tail_lines(str(big), 2) == ["Nov 24 10:00:00 mail postfix/smtpd[199998]: line 199998",
                                          "Nov 24 10:00:00 mail postfix/smtpd[199999]: line 199999"]
    tail = ml.tail_lines(str(big), 5000)
    assert len(tail) == 5000 and tail[0].endswith("line 195000")
    small = tmp_path / "small.log"
    small.write_bytes(b"a\nb\nc")  # no final newline
    assert ml.tail_lines(str(small), 2) == ["b", "c"]
    assert ml.tail_lines(str(small), 10) == ["a", "b", "c"]
    (tmp_path / "empty.log").write_bytes(b"")
    assert ml.tail_lines(str(tmp_path / "empty.log"), 3) == []
    (tmp_path / "blank.log").write_bytes(b"\n\n")
    assert ml.tail_lines(str(tmp_path / "blank.log"), 3) == ["", ""]


def _rotated_set(tmp_path):
    """mail.log.3.gz (postlogd), mail.log.2.bz2... oldest first: syslog < postlogd < rfc3339."""
    base = tmp_path / "mail.log"
    with open(SYSLOG, "rb") as src, gzip.open(str(base) + ".2.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(POSTLOGD, str(base) + ".1")
    shutil.copy(RFC3339, str(base))
    os.utime(str(base) + ".2.gz", (NOW - 86400 * 20, NOW - 86400 * 20))
    os.utime(str(base) + ".1", (time.mktime((2026, 11, 24, 16, 7, 0, 0, 0, -1)),) * 2)
    (tmp_path / "mail.log.bak").write_text("not a rotation\n")
    return str(base)


def test_rotated_logs(tmp_path):
    base = _rotated_set(tmp_path)
    assert ml.rotated_files(base) == [base + ".2.gz", base + ".1"]
    cur = tri(base)
    assert cur["sources"] == [base] and cur["counts"]["warning"] == 7
    every = tri(base, include_rotated=True)
    assert every["sources"] == [base + ".2.gz", base + ".1", base]
    assert every["counts"] == {"warning": 7 + 6 + 8, "error": 1, "fatal": 1 + 2 + 1, "panic": 1}
    assert every["oldest"].startswith("2026-11-04")
    # since: the .2.gz copy was last written weeks ago and is skipped unread
    recent = tri(base, include_rotated=True, since="2026-11-20")
    assert recent["sources"] == [base + ".1", base] and recent["counts"]["panic"] == 0
    # lines: the end of the current file, then backwards into the rotated ones
    last = tri(base, include_rotated=True, lines=11 + 30 + 2)
    assert last["sources"] == [base + ".2.gz", base + ".1", base] and last["lines_read"] == 43
    assert last["counts"]["warning"] == 7 + 6 + 1
    assert tri(base, include_rotated=True, lines=5)["sources"] == [base]


def test_compressed_and_dated_rotations(tmp_path):
    base = str(tmp_path / "maillog")
    shutil.copy(RFC3339, base)
    with open(SYSLOG, "rb") as src, bz2.open(base + "-20261110.bz2", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(POSTLOGD, base + "-20261124")
    assert ml.rotated_files(base) == [base + "-20261110.bz2", base + "-20261124"]
    assert tri(base, include_rotated=True)["counts"]["panic"] == 1


def test_normalize():
    n = ml.normalize
    assert n("3ED1624E13: to=<a@b>, relay=mx1.example.com[192.0.2.1]:25, delay=1.5") == \
        "QUEUEID: to=<a@b>, relay=mxN.example.com[IP]:N, delay=N.N"
    assert n("4jYndr6F12zJMfN: removed") == "QUEUEID: removed"
    assert n("connect to x[2607:f8b0:4002:c03::1b]:25: timed out") == "connect to x[IP]:N: timed out"
    assert n("lost connection at 11:11:11 from [fe80::1%eth0]") == "lost connection at N:N:N from [IP]"
    assert n("warning: hostname does not resolve") == "warning: hostname does not resolve"


def test_parse_since():
    assert ml.parse_since("2026-11-24T18:00:00Z") == NOW
    assert ml.parse_since("2026-11-24T19:00:00+01:00") == NOW
    assert ml.parse_since("2026-11-24 18:00") == NOW
    assert ml.parse_since("2026-11-24") == NOW - 18 * 3600
    assert ml.parse_since("1795543200") == NOW
    assert ml.parse_since("2h", now=NOW) == NOW - 7200
    assert ml.parse_since(None) is None
    for bad in ("yesterday", "2026-13-01", "24/11/2026"):
        with pytest.raises(PostfixError):
            ml.parse_since(bad)


def test_bad_input(tmp_path):
    with pytest.raises(PostfixError, match="does not exist"):
        tri(str(tmp_path / "nope.log"))
    with pytest.raises(PostfixError, match="is a directory"):
        tri(str(tmp_path))
    with pytest.raises(PostfixError, match="unknown severity"):
        tri(SYSLOG, severities=["notice"])
    with pytest.raises(PostfixError, match="lines must be"):
        tri(SYSLOG, lines=0)
    broken = tmp_path / "mail.log.1.gz"
    broken.write_bytes(b"\x1f\x8b\x08garbage")
    shutil.copy(SYSLOG, str(tmp_path / "mail.log"))
    with pytest.raises(PostfixError, match="cannot read the mail log"):
        tri(str(tmp_path / "mail.log"), include_rotated=True)
