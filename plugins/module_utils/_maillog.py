# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Triage of the Postfix mail log: warning, error, fatal and panic lines, grouped and counted.

Reads syslog files (``Nov 24 11:11:11 host postfix/smtpd[123]: ...`` and the RFC 3339 form
``2026-11-24T11:11:11.123456+00:00 host ...``), Postfix's own ``maillog_file`` (postlogd(8)
writes the first form), rotated copies (``.1``, ``.2.gz``, ``-20261124``...) and journald.
Files are streamed, and ``lines`` reads only the end of a file, block by block, so a huge
log is never held in memory.
"""

from __future__ import annotations

import bz2
import collections
import datetime
import glob
import gzip
import io
import lzma
import os
import re
import shutil
import subprocess
import time

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._queue import find_tool, parse_duration

SEVERITIES = ("warning", "error", "fatal", "panic")
DEFAULT_LOGS = ("/var/log/mail.log", "/var/log/maillog")
_BLOCK = 65536

_MONTHS = dict((m, i) for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1))
_TAIL = r" (?P<host>\S+) (?P<tag>[^\s\[\]:]+)(?:\[(?P<pid>\d+)\])?: (?P<text>.*)$"
_BSD = re.compile(r"^(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?:\.\d+)?" + _TAIL)
_ISO = re.compile(r"^(?P<date>\d{4}-\d\d-\d\d)[T ](?P<hms>\d\d:\d\d:\d\d)(?P<frac>\.\d+)?"
                  r"(?P<tz>Z|[+-]\d\d:?\d\d)?" + _TAIL)
_SEVERITY = re.compile(r"^(warning|error|fatal|panic): (.*)$")
_ROTATED = re.compile(r"^(?:\.\d+|-\d{8}(?:\d\d)?)(?:\.(?:gz|bz2|xz))?$")

# Masks for grouping: queue ids (mail_queue.h, short and long), IP addresses, then numbers.
_MASKS = (
    (re.compile(r"\b[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+\b"), "QUEUEID"),
    (re.compile(r"\b[0-9A-F]{6,}\b"), "QUEUEID"),
    (re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])"), None),  # IPv6, see _ip6
    (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)(?!\w)"), "IP"),
    (re.compile(r"\d+"), "N"),
)


def _ip6(m):
    s = m.group(0)
    return "IP" if "::" in s or s.count(":") >= 5 else s


def normalize(text: str) -> str:
    """The message with queue ids, IPs and numbers masked, for grouping similar lines."""
    for rx, repl in _MASKS:
        text = rx.sub(repl if repl is not None else _ip6, text)
    return text


def _is_postfix(tag: str) -> bool:
    # Postfix programs log as syslog_name/program (postfix/smtpd, postfix-out/qmgr).
    return "/" in tag or tag.startswith("postfix")


class Record:
    __slots__ = ("ts", "host", "program", "pid", "severity", "text", "line")

    def __init__(self, ts, host, program, pid, severity, text, line):
        self.ts, self.host, self.program, self.pid = ts, host, program, pid
        self.severity, self.text, self.line = severity, text, line


class LineParser:
    """Parses one log line; BSD syslog lines have no year, so it is inferred from ``now``."""

    def __init__(self, now=None):
        self.now = now if now is not None else time.time()
        self._year = time.localtime(self.now).tm_year
        self._cache = {}

    def _bsd_time(self, mon, day, hms):
        key = (mon, day, hms)
        ts = self._cache.get(key)
        if ts is None:
            h, mi, s = (int(x) for x in hms.split(":"))
            ts = time.mktime((self._year, _MONTHS[mon], int(day), h, mi, s, 0, 0, -1))
            if ts > self.now + 2 * 86400:  # "Dec 31" read in January: last year
                ts = time.mktime((self._year - 1, _MONTHS[mon], int(day), h, mi, s, 0, 0, -1))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = ts
        return ts

    def parse(self, line: str):
        """A Record for any Postfix line (severity None when it has none), else None."""
        m = _BSD.match(line)
        try:
            if m:
                if m.group("mon") not in _MONTHS:
                    return None
                ts = self._bsd_time(m.group("mon"), m.group("day"), m.group("hms"))
            else:
                m = _ISO.match(line)
                if not m:
                    return None
                ts = _iso_time(m.group("date"), m.group("hms"), m.group("frac"), m.group("tz"))
        except (ValueError, OverflowError):
            return None
        tag = m.group("tag")
        if not _is_postfix(tag):
            return None
        sev = _SEVERITY.match(m.group("text"))
        return Record(ts, m.group("host"), tag, m.group("pid"), sev.group(1) if sev else None,
                      sev.group(2) if sev else m.group("text"), line)


def _iso_time(date, hms, frac, tz):
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi, s = (int(x) for x in hms.split(":"))
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    if not tz:
        naive = datetime.datetime(y, mo, d, h, mi, s)  # validates the fields
        return time.mktime(naive.timetuple()) + micro / 1e6
    if tz == "Z":
        offset = datetime.timedelta(0)
    else:
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    dt = datetime.datetime(y, mo, d, h, mi, s, micro, tzinfo=datetime.timezone(offset))
    return dt.timestamp()


def parse_since(value, now=None):
    """Epoch seconds from ``2026-11-24T10:00:00[+01:00]``, ``2026-11-24 10:00``, ``2026-11-24``,
    an epoch number, or a duration back from now (``2h``, ``30m``, ``1d``)."""
    now = now if now is not None else time.time()
    if value is None or value == "":
        return None
    s = str(value).strip()
    if re.match(r"^\d+(\.\d+)?$", s) and len(s.split(".", 1)[0]) >= 9:
        return float(s)
    m = re.match(r"^(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d)(:\d\d)?(\.\d+)?(Z|[+-]\d\d:?\d\d)?)?$", s)
    if m:
        try:
            return _iso_time(m.group(1), (m.group(2) or "00:00") + (m.group(3) or ":00"), m.group(4), m.group(5))
        except (ValueError, OverflowError) as exc:
            raise PostfixError("invalid since %r: %s" % (value, exc))
    try:
        return now - parse_duration(s)
    except PostfixError:
        raise PostfixError("invalid since %r: give a time such as 2026-11-24T10:00:00, 2026-11-24 10:00, "
                           "epoch seconds, or a duration back from now such as 2h or 1d" % (value,))


def iso(ts) -> str:
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


# -- reading files ---------------------------------------------------------------------
def _open_text(path):
    if path.endswith(".gz"):
        raw = gzip.open(path, "rb")
    elif path.endswith(".bz2"):
        raw = bz2.open(path, "rb")
    elif path.endswith(".xz"):
        raw = lzma.open(path, "rb")
    else:
        raw = open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="\n")


def read_lines(path):
    """Every line of a (possibly compressed) file, streamed."""
    with _open_text(path) as f:
        for line in f:
            yield line.rstrip("\r\n")


def tail_lines(path, n):
    """The last ``n`` lines: read backwards in blocks for plain files, streamed for compressed ones."""
    if n <= 0:
        return []
    if path.endswith((".gz", ".bz2", ".xz")):
        return list(collections.deque(read_lines(path), maxlen=n))
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        chunks, newlines = [], 0
        while pos > 0 and newlines <= n:
            size = min(_BLOCK, pos)
            pos -= size
            f.seek(pos)
            chunk = f.read(size)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
        data = b"".join(reversed(chunks))
    if not data:
        return []
    if data.endswith(b"\n"):
        data = data[:-1]
    lines = data.split(b"\n")
    if pos > 0:
        lines = lines[1:]  # first piece may be a partial line
    return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines[-n:]]


def rotated_files(path):
    """Rotated copies of ``path`` (``.1``, ``.2.gz``, ``-20261124``, ...), oldest first."""
    found = []
    for cand in glob.glob(glob.escape(path) + ".*") + glob.glob(glob.escape(path) + "-*"):
        if _ROTATED.match(cand[len(path):]) and os.path.isfile(cand):
            found.append(cand)

    def key(p):
        m = re.match(r"^\.(\d+)", p[len(path):])
        return (0, -int(m.group(1)), "") if m else (1, 0, p)  # .N: higher N is older

    kinds = set(key(p)[0] for p in found)
    return sorted(found, key=key if len(kinds) < 2 else os.path.getmtime)


# -- triage ------------------------------------------------------------------------------
class Triage:
    def __init__(self, severities=SEVERITIES, examples=3):
        self.severities = tuple(severities)
        self.examples = examples
        self.counts = dict((s, 0) for s in SEVERITIES)
        self.groups = {}
        self.lines_read = 0
        self.postfix_lines = 0
        self.oldest = None
        self.newest = None

    def add(self, rec):
        self.postfix_lines += 1
        if self.oldest is None or rec.ts < self.oldest:
            self.oldest = rec.ts
        if self.newest is None or rec.ts > self.newest:
            self.newest = rec.ts
        if rec.severity is None:
            return
        self.counts[rec.severity] += 1
        if rec.severity not in self.severities:
            return
        program = rec.program
        key = (rec.severity, program, normalize(rec.text))
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = {"count": 0, "first": rec.ts, "last": rec.ts,
                                    "examples": collections.deque(maxlen=self.examples)}
        g["count"] += 1
        g["first"] = min(g["first"], rec.ts)
        if rec.ts >= g["last"]:
            g["last"] = rec.ts
            g["examples"].appendleft(rec.line)
        elif len(g["examples"]) < self.examples:
            g["examples"].append(rec.line)

    def result(self):
        rank = dict((s, i) for i, s in enumerate(reversed(SEVERITIES)))
        groups = []
        for (sev, program, message), g in self.groups.items():
            groups.append({
                "severity": sev,
                "program": program,
                "message": message,
                "count": g["count"],
                "first_seen": iso(g["first"]),
                "last_seen": iso(g["last"]),
                "examples": list(g["examples"]),
            })
        groups.sort(key=lambda x: (rank[x["severity"]], -x["count"], x["message"]))
        return {
            "healthy": self.counts["fatal"] == 0 and self.counts["panic"] == 0,
            "counts": dict(self.counts),
            "groups": groups,
            "lines_read": self.lines_read,
            "postfix_lines": self.postfix_lines,
            "oldest": iso(self.oldest) if self.oldest is not None else None,
            "newest": iso(self.newest) if self.newest is not None else None,
        }


def maillog_file(config_dir):
    """``postconf -c DIR -h maillog_file`` (empty when unset, or when postconf cannot tell)."""
    try:
        postconf = find_tool("postconf")
    except PostfixError:
        return "", "postconf not found: maillog_file not consulted"
    proc = subprocess.run(  # pylint: disable=ansible-bad-function
        [postconf, "-c", config_dir, "-h", "maillog_file"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if proc.returncode != 0:
        return "", "postconf -c %s -h maillog_file failed: %s" % (config_dir, proc.stderr.strip())
    return proc.stdout.strip(), None


def resolve(path=None, config_dir="/etc/postfix", source="auto"):
    """``("file", path, warnings)`` or ``("journald", None, warnings)``."""
    warnings = []
    if source == "journald":
        return "journald", None, warnings
    if path:
        return "file", path, warnings
    configured, why = maillog_file(config_dir)
    if why:
        warnings.append(why)
    if configured:
        if configured.startswith("/dev/"):
            warnings.append("maillog_file is %s (not a file): looking elsewhere" % configured)
        elif os.path.exists(configured) or source == "file":
            return "file", configured, warnings
        else:
            raise PostfixError("maillog_file is %s (postconf -c %s), but that file does not exist: "
                               "has Postfix logged anything yet?" % (configured, config_dir))
    for cand in DEFAULT_LOGS:
        if os.path.exists(cand):
            return "file", cand, warnings
    if source == "auto" and shutil.which("journalctl"):
        return "journald", None, warnings
    raise PostfixError("no mail log found: maillog_file is not set, %s do not exist%s; give path"
                       % (" and ".join(DEFAULT_LOGS),
                          ", and journalctl is not installed" if source == "auto" else ""))


def _journal_lines(since, lines):
    journalctl = shutil.which("journalctl")
    if not journalctl:
        raise PostfixError("journalctl not found")
    # short-iso: the short format plus year and UTC offset (short has no year).
    argv = [journalctl, "--no-pager", "-q", "-o", "short-iso", "-u", "postfix*"]
    if since is not None:
        argv += ["--since", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))]
    if lines:
        argv += ["-n", str(lines)]
    # Streamed line by line: run_command would hold the whole journal in memory.
    proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(os.environ, LC_ALL="C", SYSTEMD_COLORS="0"))
    try:
        for raw in io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace"):
            yield raw.rstrip("\r\n")
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        rc = proc.wait()
        if rc != 0:
            raise PostfixError("journalctl failed (exit %d): %s" % (rc, err or "no error output"))


def _check_readable(path):
    if not os.path.exists(path):
        raise PostfixError("log file %s does not exist" % path)
    if os.path.isdir(path):
        raise PostfixError("log file %s is a directory" % path)
    if not os.access(path, os.R_OK):
        raise PostfixError("log file %s is not readable (permission denied)" % path)


def triage(path=None, config_dir="/etc/postfix", source="auto", severities=SEVERITIES, since=None,
           lines=None, include_rotated=False, examples=3, now=None) -> dict:
    now = now if now is not None else time.time()
    severities = list(severities or SEVERITIES)
    bad = [s for s in severities if s not in SEVERITIES]
    if bad:
        raise PostfixError("unknown severity: %s (use %s)" % (", ".join(bad), ", ".join(SEVERITIES)))
    if lines is not None and lines < 1:
        raise PostfixError("lines must be at least 1")
    since_ts = parse_since(since, now)
    kind, where, warnings = resolve(path, config_dir, source)
    parser = LineParser(now)
    tri = Triage(severities, examples)

    def feed(stream):
        for line in stream:
            tri.lines_read += 1
            rec = parser.parse(line)
            if rec is None or (since_ts is not None and rec.ts < since_ts):
                continue
            tri.add(rec)

    if kind == "journald":
        sources = ["journald"]
        feed(_journal_lines(since_ts, lines))
    else:
        _check_readable(where)
        files = (rotated_files(where) if include_rotated else []) + [where]
        for f in files:
            _check_readable(f)
        try:
            if lines:
                # Newest file first, backwards, until enough lines; then oldest to newest.
                chunks, need = [], lines
                used = []
                for f in reversed(files):
                    got = tail_lines(f, need)
                    chunks.append(got)
                    used.append(f)
                    need -= len(got)
                    if need <= 0:
                        break
                sources = list(reversed(used))
                for chunk in reversed(chunks):
                    feed(chunk)
            else:
                sources = []
                for f in files:
                    if since_ts is not None and f != where and os.path.getmtime(f) < since_ts:
                        continue  # last written before `since`: nothing new in it
                    sources.append(f)
                    feed(read_lines(f))
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise PostfixError("cannot read the mail log: %s" % exc)
    result = tri.result()
    result.update({
        "sources": sources,
        "since": iso(since_ts) if since_ts is not None else None,
        "warnings": warnings,
    })
    return result
