# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-table differential checks: our compile against real Postfix, every key.

A ``Shape`` (kind, number of entries, shares of long values, long keys, Unicode keys,
duplicates, continuation lines, comments, seed) becomes a table or aliases source with
``generate()``; the generator records, independently of our parser, what every key must
map to (``Generated.expected()``: folded key -> value, as Postfix stores them, first
value of a duplicate key winning).  ``check()`` then

- compiles the source with real postmap/postalias (the reference) and checks that Postfix
  stores exactly the expected records, or refuses the source where expected (lmdb keys
  over 511 bytes): this checks the generator's model of Postfix, not our engine;
- compiles the same source with our engine (``Table.ensure(force=True)``);
- queries every key (and a few absent ones) with one ``postmap -q -`` / ``postalias -q -``
  run on our index; dumps it with ``postmap -s`` / ``postalias -s`` (hash, lmdb) or reads
  the cdb records back with the tests' own reader (Postfix 3.7 cannot dump cdb) and
  compares them, and the cdb hash tables, with the file real postmap wrote;
- runs ``db_verify -q`` on every hash file;
- compares the number of duplicate-entry warnings.

Our own reader is never the judge of our writer. Used by tests/unit/db/test_matrix.py
and by bench/soak.py (which puts tests/ and .build/collections on sys.path).
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import string
import struct
import subprocess
import time

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import ALIASES, TABLE, Table

from postfix_oracle import read_cdb

TYPES = ("hash", "cdb", "lmdb")
KINDS = (TABLE, ALIASES)
SUFFIX = {"hash": ".db", "cdb": ".cdb", "lmdb": ".lmdb"}
NUL = {"hash": True, "cdb": False, "lmdb": True}
HOSTNAME = "matrix.example"
# MDB_MAXKEYSIZE of the liblmdb Postfix links: a longer key (NUL included) is fatal to postmap.
LMDB_MAX_KEY = 511
# Postfix's whitespace (ISSPACE): what it trims from keys and values.
_WS = " \t\n\v\f\r"

ASCII_WORDS = ("anna", "bob", "chris", "dora", "eve", "frank", "gina", "hal", "ida", "jo", "kim", "lou", "max",
               "nia", "otto", "pam", "quinn", "rex", "sue", "tom", "info", "sales", "postmaster", "abuse")
# Mixed case so that folding matters, and characters whose full case folding changes their
# length or is not lower(): ß/ẞ -> ss, ﬁ -> fi, İ -> i + U+0307, final sigma, Cherokee
# small letters (fold to capitals), ŉ -> ʼn, Ǆ -> ǆ; and uncased scripts.
UNICODE_WORDS = ("jürgen", "STRASSEß", "MAẞE", "Ærøskøbing", "Ørsted", "ÉLODIE", "Ñandú", "Жанна", "Σοφία",
                 "ΌΣΟΣ", "İlkay", "ﬁona", "ꮳꮎꮿ", "中文", "日本語", "한국", "ŉeil", "Ǆemal", "Åsa", "ÇAĞLA")
ASCII_DOMAINS = ("example.com", "Mail.Example.NET", "lists.example.org", "EXAMPLE.IO", "d7.Example.test")
UNICODE_DOMAINS = ("bücher.example", "MÜNCHEN.example", "пример.испытание", "例え.テスト", "ΕΛΛΆΔΑ.example",
                   "Straße.example", "ÆRØ.example")
_SEPARATORS = ("-", ".", "_", "+")
_INDENTS = (" ", "\t", "   ", "\t  ", " \t")
_SKIPPED_LINES = ("# a comment\n", "\n", "   # an indented comment\n", " \t\n", "#\n")


def fold(text):
    """A key as postmap stores it with SMTPUTF8 on (FORMATS.md 2): ASCII lowercase, else
    full Unicode case folding (ICU ucasemap_utf8FoldCase, which str.casefold() follows)."""
    if text.isascii():
        return text.lower().encode("ascii")
    return text.casefold().encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Shape(object):
    """What a generated source looks like. Shares are percent of ``n`` (the number of
    distinct keys); sizes are byte ranges (long keys: folded length, NUL excluded)."""

    kind: str = TABLE
    n: int = 100
    long_share: float = 0.0
    long_size: tuple = (1024, 4096)
    long_key_share: float = 0.0
    long_key_size: tuple = (1024, 4096)
    unicode_share: float = 0.0
    dup_share: float = 0.0
    cont_share: float = 0.0
    comments: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError("kind must be table or aliases, not %r" % (self.kind,))

    @property
    def id(self):
        """A readable test id: table-n8000-long2%5-15K-lkey1%1-4K-uni20-dup2-cont5-cmt-s1."""
        parts = ["%s-n%d" % ("alias" if self.kind == ALIASES else "table", self.n)]
        if self.long_share:
            parts.append("long%s%%%s" % (_num(self.long_share), _range(self.long_size)))
        if self.long_key_share:
            parts.append("lkey%s%%%s" % (_num(self.long_key_share), _range(self.long_key_size)))
        for name, share in (("uni", self.unicode_share), ("dup", self.dup_share), ("cont", self.cont_share)):
            if share:
                parts.append("%s%s" % (name, _num(share)))
        if self.comments:
            parts.append("cmt")
        parts.append("s%d" % self.seed)
        return "-".join(parts)

    def estimated_bytes(self):
        """About how large the source will be."""
        short = 50 if self.kind == ALIASES else 60
        dups = count_of(self.n, self.dup_share)
        total = (self.n + dups) * short
        total += (count_of(self.n, self.long_share) + dups * self.long_share / 100.0) * sum(self.long_size) / 2.0
        total += count_of(self.n, self.long_key_share) * sum(self.long_key_size) / 2.0
        return int(total)

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        for name in ("long_size", "long_key_size"):
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data)


def _num(x):
    return ("%g" % x).replace(".", "_")


def _range(sizes):
    def unit(b):
        return "%gK" % (b / 1024.0) if b % 1024 == 0 else "%dB" % b
    lo, hi = sizes
    if lo % 1024 == 0 and hi % 1024 == 0:
        return "%g-%gK" % (lo / 1024.0, hi / 1024.0)
    if lo % 1000 == 0 and hi % 1000 == 0:
        return "%g-%gk" % (lo / 1000.0, hi / 1000.0)
    return "%s-%s" % (unit(lo), unit(hi))


@dataclasses.dataclass
class Entry(object):
    """One logical line of a source (with the comment lines around or inside it), or only
    comment/blank lines when ``key`` is None.  ``key`` is the folded key, ``value`` what
    Postfix stores for it (both without NUL), ``query`` the key as declared."""

    text: bytes
    key: bytes = None
    value: bytes = None
    query: bytes = None
    duplicate: bool = False


@dataclasses.dataclass
class Generated(object):
    kind: str
    entries: list
    absent: list
    duplicates: int = 0

    def source(self):
        return b"".join(e.text for e in self.entries)

    def expected(self):
        """folded key -> stored value (no NULs), first occurrence wins, in source order."""
        out = {}
        for e in self.entries:
            if e.key is not None and e.key not in out:
                out[e.key] = e.value
        return out

    def queries(self):
        """(declared key, folded key) of every distinct key, in source order."""
        seen, out = set(), []
        for e in self.entries:
            if e.key is not None and e.key not in seen:
                seen.add(e.key)
                out.append((e.query, e.key))
        return out

    def duplicate_lines(self):
        seen, count = set(), 0
        for e in self.entries:
            if e.key is not None:
                count += e.key in seen
                seen.add(e.key)
        return count

    def subset(self, entries):
        return Generated(self.kind, list(entries), list(self.absent))


def count_of(n, share, rng=None):
    """How many of ``n`` entries get a feature of ``share`` percent: at least one when the
    share is not 0 (a shape that asks for a feature has it), the fraction by chance."""
    if not n or not share:
        return 0
    exact = n * share / 100.0
    whole = int(exact)
    if rng is not None and rng.random() < exact - whole:
        whole += 1
    return min(n, max(1, whole))


def _case(rng, text):
    roll = rng.random()
    if roll < 0.3:
        return text
    if roll < 0.5:
        return text.upper()
    if roll < 0.7:
        return text.title()
    if roll < 0.85:
        return text.swapcase()
    return text.lower()


def _recase(rng, text):
    """Another spelling of ``text`` with the same folded form (the text itself if none)."""
    for variant in (_case(rng, text), text.swapcase(), text.upper(), text.lower()):
        if variant != text and fold(variant) == fold(text):
            return variant
    return text


class _Generator(object):

    def __init__(self, shape):
        self.shape = shape
        self.rng = random.Random("table-matrix-%d" % shape.seed)
        rng = self.rng
        self.aliases = shape.kind == ALIASES
        # Targets values are made of: ASCII, Unicode (if the shape has Unicode keys) and,
        # for aliases, the other kinds of targets in postalias's own spelling.
        pool = []
        for j in range(400):
            word = rng.choice(ASCII_WORDS)
            if self.aliases:
                pool.append(rng.choice(("%s%d" % (word, j), "%s.%d@%s" % (word, j, rng.choice(ASCII_DOMAINS)),
                                        "%s%d@mbox.Example.com" % (word.title(), j))))
            else:
                pool.append("%s.%d@%s" % (word, j, rng.choice(ASCII_DOMAINS)))
        if shape.unicode_share:
            for j in range(100):
                pool.append("%s.%d@%s" % (rng.choice(UNICODE_WORDS), j, rng.choice(UNICODE_DOMAINS)))
        if self.aliases:
            for j in range(20):
                pool += [":include:/etc/postfix/lists/l%d" % j, '"|/usr/bin/procmail -a x%d"' % j,
                         "/var/mail/archive%d" % j, "|/usr/local/bin/filter%d" % j]
        self.pool = pool
        self.avg_target = sum(map(len, pool)) / float(len(pool)) + 2

    def pick(self, n, share):
        return set(self.rng.sample(range(n), count_of(n, share, self.rng)))

    def generate(self):
        shape, rng = self.shape, self.rng
        n = shape.n
        long_values = self.pick(n, shape.long_share)
        long_keys = self.pick(n, shape.long_key_share)
        unicode_keys = self.pick(n, shape.unicode_share)
        continued = self.pick(n, shape.cont_share)
        entries = []
        if shape.comments:
            entries.append(Entry(b"# generated: %s\n\n" % shape.id.encode()))
        for i in range(n):
            declared = self.key(i, i in unicode_keys, i in long_keys)
            value = self.value(i in long_values)
            entries.append(self.entry(declared, value, i in continued))
            if shape.comments and rng.random() < 0.03:
                entries.append(Entry(rng.choice(_SKIPPED_LINES).encode()))
        dups = count_of(n, shape.dup_share, rng)
        originals = [e for e in entries if e.key is not None]
        later = {}
        for d in range(dups):
            pos = rng.randrange(len(originals))
            original = originals[pos]
            declared = _recase(rng, original.query.decode("utf-8"))
            value = "shadowed-%d@dup.example" % d
            if rng.random() < shape.long_share / 100.0:     # the same mix as the first values
                value = self.value(True)
            dup = self.entry(declared, value, rng.random() < 0.2)
            dup.duplicate = True
            later.setdefault(rng.randrange(pos, len(originals)), []).append(dup)
        if later:
            merged, k = [], 0
            for e in entries:
                merged.append(e)
                if e.key is not None:
                    merged.extend(later.get(k, ()))
                    k += 1
            entries = merged
        return Generated(shape.kind, entries, self.absent(entries), dups)

    def key(self, i, uni, long_key):
        rng = self.rng
        word = rng.choice(UNICODE_WORDS if uni else ASCII_WORDS)
        sep = rng.choice(_SEPARATORS[:3] if self.aliases else _SEPARATORS)
        local = _case(rng, word) + sep + str(i)
        domain = "" if self.aliases else "@" + _case(rng, rng.choice(UNICODE_DOMAINS if uni else ASCII_DOMAINS))
        if long_key:
            lo, hi = self.shape.long_key_size
            size = rng.randint(lo, hi)
            head = local + sep
            pad = size - len(fold(head)) - len(fold(domain))
            local = head + "".join(rng.choices(string.ascii_letters, k=max(1, pad)))
        return local + domain

    def value(self, long_value):
        rng = self.rng
        if long_value:
            lo, hi = self.shape.long_size
            size = rng.randint(lo, hi)
            value = ", ".join(rng.choices(self.pool, k=max(1, int(size / self.avg_target))))
            return value
        roll = rng.random()
        if roll < 0.6:
            return rng.choice(self.pool)
        if roll < 0.9 or self.aliases:
            return ", ".join(rng.choices(self.pool, k=rng.randint(2, 5)))
        # Table values are stored verbatim: inner whitespace and '#' stay.
        return rng.choice(("%s,\t%s", "%s   %s", "%s # not a comment %s")) % tuple(rng.choices(self.pool, k=2))

    def entry(self, declared, value, continued):
        """The source lines for ``declared`` -> ``value`` and what Postfix stores for them."""
        rng = self.rng
        comments = self.shape.comments
        key = fold(declared)
        stored = value      # aliases: already in postalias's spelling
        if self.aliases:
            head = declared + rng.choice((":", ":", ": ", ":\t", " : "))
            pieces = self.alias_pieces(value) if continued else [value]
        else:
            head = declared + rng.choice((" ", " ", "\t", " \t ", "\t\t"))
            pieces = self.table_pieces(value) if continued else [value]
        lines = [head + pieces[0]]
        for piece in pieces[1:]:
            if comments and rng.random() < 0.3:
                lines.append(rng.choice(_SKIPPED_LINES)[:-1])
            lines.append(rng.choice(_INDENTS) + piece)
        if rng.random() < 0.1:
            lines[-1] += rng.choice((" ", "\t", " \t "))
        if not self.aliases:
            # postmap: the logical line is the physical ones joined without their newlines
            # (comment and blank lines skipped); the value is what follows the key,
            # trimmed at both ends.
            logical = "".join(line for line in lines if line.strip(_WS) and not line.lstrip(_WS).startswith("#"))
            stored = logical[len(declared):].strip(_WS)
        text = ("\n".join(lines) + "\n").encode("utf-8")
        return Entry(text, key, stored.encode("utf-8"), declared.encode("utf-8"))

    def table_pieces(self, value):
        """``value`` cut into 2-3 pieces anywhere (the whitespace at the cuts is kept)."""
        rng = self.rng
        if rng.random() < 0.15:
            return [""] + [value]           # the whole value on the continuation line
        cuts = sorted(set(rng.randint(1, max(1, len(value) - 1)) for _i in range(rng.randint(1, 2))))
        bounds = [0] + [c for c in cuts if 0 < c < len(value)] + [len(value)]
        pieces = [value[a:b] for a, b in zip(bounds, bounds[1:])]
        return pieces if all(p.strip(_WS) for p in pieces[:1]) else [value]

    def alias_pieces(self, value):
        """``value`` cut after commas: postalias re-spells the joined line as ``a, b, c``."""
        rng = self.rng
        if rng.random() < 0.15:
            return ["", value]
        targets = value.split(", ")
        if len(targets) < 2:
            return [value]
        cuts = sorted(set(rng.randint(1, len(targets) - 1) for _i in range(rng.randint(1, 2))))
        bounds = [0] + cuts + [len(targets)]
        return [", ".join(targets[a:b]) + ("," if b < len(targets) else "") for a, b in zip(bounds, bounds[1:])]

    def absent(self, entries):
        keys = [e for e in entries if e.key is not None]
        out = ["absent-%d-%d@nowhere.example" % (self.shape.seed, k) for k in range(3)]
        if keys:
            first = keys[0].query.decode("utf-8")
            out += [first + "x", first[:-1] or "x", "x" + first]
            longest = max(keys, key=lambda e: len(e.key)).query.decode("utf-8")
            out.append(longest[:-1] + "Q")
        known = set(e.key for e in keys)
        return [q.encode("utf-8") for q in out if fold(q) not in known]


def generate(shape):
    """The source for ``shape`` and what Postfix stores for it: deterministic in ``shape``."""
    return _Generator(shape).generate()


# -- real Postfix -------------------------------------------------------------------------

def make_confdir(directory, hostname=HOSTNAME, extra=""):
    """A config dir for ``postmap -c``: SMTPUTF8 on (compatibility level 3.6), our
    myhostname (postalias stores it as YP_MASTER_NAME); main.cf dated back so Postfix
    does not wait for it to settle."""
    os.makedirs(directory, exist_ok=True)
    main_cf = os.path.join(directory, "main.cf")
    with open(main_cf, "w") as f:
        f.write("compatibility_level = 3.6\nmyhostname = %s\nsmtputf8_enable = yes\n%s" % (hostname, extra))
    os.utime(main_cf, (1000000000, 1000000000))
    return directory


def reference_confdir(confdir, type_name):
    """The config dir real Postfix compiles the reference with. For lmdb, a map that
    holds any table we make: Postfix 3.7 stores every key of an lmdb table unfolded when
    the bulk load outgrows lmdb_map_size (16 MiB) and is restarted with a doubled map
    (dict_utf8_update() clears the fold flags around the update that longjmps out on
    MDB_MAP_FULL, so they are never restored); its own postmap -q then finds no key that
    was declared in upper case. The reference must not take that path."""
    if type_name != "lmdb":
        return confdir
    bigmap = os.path.join(confdir, "lmdb-bigmap")
    if not os.path.exists(os.path.join(bigmap, "main.cf")):
        with open(os.path.join(confdir, "main.cf")) as f:
            hostname = re.search(r"^myhostname = (.*)$", f.read(), re.M).group(1)
        make_confdir(bigmap + ".tmp%d" % os.getpid(), hostname, "lmdb_map_size = 1073741824\n")
        try:
            os.rename(bigmap + ".tmp%d" % os.getpid(), bigmap)
        except OSError:     # made by another process meanwhile
            pass
    return bigmap


def tool_for(kind):
    return "postalias" if kind == ALIASES else "postmap"


def _run(args, data=None):
    return subprocess.run(args, input=data, stdin=None if data is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, timeout=1800)


def _pairs(output, kind):
    """Lines of ``postmap -q -``/``-s`` (key TAB value) or postalias (key: TAB value)."""
    sep = b":\t" if kind == ALIASES else b"\t"
    out = []
    for line in output.split(b"\n"):
        if line:
            key, found, value = line.partition(sep)
            out.append((key, value) if found else (line, None))
    return out


@dataclasses.dataclass
class Problem(object):
    check: str
    message: str
    examples: list = dataclasses.field(default_factory=list)

    def __str__(self):
        text = "%s: %s" % (self.check, self.message)
        for example in self.examples:
            text += "\n    " + example
        return text


@dataclasses.dataclass
class Report(object):
    type: str
    kind: str
    records: int = 0
    lines: int = 0
    bytes: int = 0
    refused: bool = False
    problems: list = dataclasses.field(default_factory=list)
    timings: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    @property
    def model_problems(self):
        """Problems of the reference (real Postfix vs the generator), not of our engine."""
        return [p for p in self.problems if p.check.startswith("reference")]

    def summary(self):
        head = "%s %s: %d records, %d bytes%s" % (
            self.kind, self.type, self.records, self.bytes, ", refused by both" if self.refused else "")
        return "\n".join([head] + ["  " + str(p) for p in self.problems])

    def timing_line(self):
        return " ".join("%s %.2fs" % item for item in self.timings.items())


def _show(key, value=None):
    def short(b):
        if b is None:
            return "(none)"
        text = b.decode("utf-8", "backslashreplace")
        return repr(text) if len(text) <= 70 else "%r...(%d bytes)" % (text[:60], len(b))
    return short(key) if value is None else "%s -> %s" % (short(key), short(value))


def compare(found, expected, check_name, report, examples=3, volatile=()):
    """Problems of ``found`` (a list of (key, value) pairs) against ``expected`` (dict):
    keys missing, values wrong, keys not expected, keys found twice."""
    seen, dups, extra, wrong = {}, [], [], []
    for key, value in found:
        if key in seen:
            dups.append(key)
            continue
        seen[key] = value
        if key not in expected:
            extra.append(key)
        elif expected[key] != value and not (key in volatile and re.match(rb"^\d{10}$", value or b"")):
            wrong.append(key)
    missing = [k for k in expected if k not in seen]
    for what, keys, show in (("missing", missing, lambda k: _show(k, expected[k])),
                             ("wrong value", wrong, lambda k: "%s, expected %s" % (_show(k, seen[k]),
                                                                                   _show(expected[k]))),
                             ("not expected", extra, lambda k: _show(k, seen[k])),
                             ("listed twice", dups, _show)):
        if keys:
            report.problems.append(Problem(check_name, "%d of %d keys %s" % (len(keys), len(expected), what),
                                           [show(k) for k in keys[:examples]]))


def _alias_extras(expected):
    out = dict(expected)
    out[b"@"] = b"@"
    out[b"YP_LAST_MODIFIED"] = b"0000000000"    # any 10 digits (volatile)
    out[b"YP_MASTER_NAME"] = HOSTNAME.encode()
    return out


def _cdb_tables(path):
    """The cdb file without its records: header and hash tables (positions and hashes)."""
    with open(path, "rb") as f:
        data = f.read()
    end = min(struct.unpack_from("<256I", data)[::2])
    return data[:2048] + data[end:]


def _cdb_normalised(records):
    return [(k, b"0000000000" if k == b"YP_LAST_MODIFIED" else v) for k, v in records]


def _duplicate_warnings(lines):
    return sum(1 for line in lines if "duplicate entry" in line)


def check(generated, type_name, workdir, confdir, examples=3):
    """Compile ``generated`` with our engine and with real Postfix in ``workdir`` and
    return a Report of every difference (``report.ok`` when there is none)."""
    kind = generated.kind
    tool = tool_for(kind)
    source = generated.source()
    expected = generated.expected()
    report = Report(type_name, kind, records=len(expected), lines=source.count(b"\n"), bytes=len(source))
    os.makedirs(workdir, exist_ok=True)
    ours, ref = os.path.join(workdir, "ours"), os.path.join(workdir, "ref")
    for path in (ours, ref):
        for stale in (path + SUFFIX[type_name], path):
            if os.path.exists(stale):
                os.unlink(stale)
        with open(path, "wb") as f:
            f.write(source)
    must_refuse = type_name == "lmdb" and any(len(k) + 1 > LMDB_MAX_KEY for k in expected)
    dump_expected = _alias_extras(expected) if kind == ALIASES else expected
    volatile = (b"YP_LAST_MODIFIED",) if kind == ALIASES else ()

    # The reference: real postmap/postalias on the same source.
    t = time.perf_counter()
    proc = _run([tool, "-c", reference_confdir(confdir, type_name), "%s:%s" % (type_name, ref)])
    report.timings["postfix compile"] = time.perf_counter() - t
    ref_err = proc.stderr.decode("utf-8", "backslashreplace").splitlines()
    ref_refused = proc.returncode != 0
    if ref_refused != must_refuse:
        report.problems.append(Problem("reference compile", "%s %s (exit %d), expected it to %s" % (
            tool, "refused the source" if ref_refused else "compiled the source", proc.returncode,
            "refuse it" if must_refuse else "compile it"), ref_err[:examples]))
    other = [line for line in ref_err if "duplicate entry" not in line]
    if other and not ref_refused:
        report.problems.append(Problem("reference warnings", "%s warned %d times" % (tool, len(other)),
                                       other[:examples]))
    if not ref_refused and _duplicate_warnings(ref_err) != generated.duplicate_lines():
        report.problems.append(Problem("reference warnings", "%d duplicate-entry warnings, %d duplicate lines"
                                       % (_duplicate_warnings(ref_err), generated.duplicate_lines())))

    # Ours.
    t = time.perf_counter()
    try:
        result = Table(ours, type_name, kind=kind, hostname=HOSTNAME, smtputf8=True).ensure(force=True)
        ours_error = None
    except PostfixError as e:
        result, ours_error = None, str(e)
    report.timings["ours compile"] = time.perf_counter() - t
    if ref_refused or ours_error is not None:
        report.refused = ref_refused and ours_error is not None
        if ours_error is not None and not ref_refused:
            report.problems.append(Problem("compile", "our engine refused a source %s compiles: %s"
                                           % (tool, ours_error[:300])))
        elif ours_error is None:
            report.problems.append(Problem("compile", "our engine compiled a source %s refuses" % tool,
                                           ref_err[:examples]))
        else:
            report.notes.append("both refused: %s | ours: %s" % ("; ".join(ref_err)[:200], ours_error[:200]))
        return report
    ours_dups = _duplicate_warnings(str(w) for w in result["source_warnings"])
    ours_other = [str(w) for w in result["source_warnings"] if "duplicate entry" not in str(w)]
    if ours_dups != _duplicate_warnings(ref_err) or ours_other:
        report.problems.append(Problem("warnings", "ours: %d duplicate-entry warnings and %d others, %s: %d"
                                       % (ours_dups, len(ours_other), tool, _duplicate_warnings(ref_err)),
                                       ours_other[:examples]))
    if result["count"] != len(expected):
        report.problems.append(Problem("compile", "our engine counted %d records, the source has %d"
                                       % (result["count"], len(expected))))
    index = ours + SUFFIX[type_name]

    # libdb's own check of every hash file.
    if type_name == "hash":
        t = time.perf_counter()
        for which, path in (("ours", index), ("reference", ref + ".db")):
            proc = _run(["db_verify", "-q", path])
            if proc.returncode != 0:
                report.problems.append(Problem("db_verify" if which == "ours" else "reference db_verify",
                                               "db_verify -q %s exited %d" % (path, proc.returncode),
                                               (proc.stderr + proc.stdout).decode("utf-8", "replace")
                                               .splitlines()[:examples]))
        report.timings["db_verify"] = time.perf_counter() - t

    # Every key (and a few absent ones) in one postmap -q - run.
    t = time.perf_counter()
    queries = generated.queries()
    if kind == ALIASES:
        queries.append((b"@", b"@"))
    spelled = dict(queries)
    proc = _run([tool, "-c", confdir, "-q", "-", "%s:%s" % (type_name, ours)],
                b"".join(q + b"\n" for q, _k in queries) + b"".join(a + b"\n" for a in generated.absent))
    report.timings["query"] = time.perf_counter() - t
    if proc.returncode not in (0, 1) or proc.stderr:
        report.problems.append(Problem("query", "%s -q - exited %d" % (tool, proc.returncode),
                                       proc.stderr.decode("utf-8", "replace").splitlines()[:examples]))
    found = []
    for q, value in _pairs(proc.stdout, kind):
        found.append((spelled.get(q, q), value))
    want = dict(expected)
    if kind == ALIASES:
        want[b"@"] = b"@"
    compare(found, want, "query %s -q -" % tool, report, examples)

    # The whole index: dumped by Postfix, or (cdb) read back with the tests' reader.
    t = time.perf_counter()
    if type_name == "cdb":
        ours_records, ref_records = read_cdb(index), read_cdb(ref + ".cdb")
        compare(ours_records, dump_expected, "cdb records (tests' reader)", report, examples, volatile)
        compare(ref_records, dump_expected, "reference cdb records", report, examples, volatile)
        if _cdb_normalised(ours_records) != _cdb_normalised(ref_records):
            report.problems.append(Problem("cdb bytes", "records differ from postmap's cdb in content or order"))
        elif _cdb_tables(index) != _cdb_tables(ref + ".cdb"):
            report.problems.append(Problem("cdb bytes", "header or hash tables differ from postmap's cdb"))
    else:
        for which, path in (("ours", ours), ("reference", ref)):
            proc = _run([tool, "-c", confdir if which == "ours" else reference_confdir(confdir, type_name),
                         "-s", "%s:%s" % (type_name, path)])
            check_name = "dump %s -s" % tool if which == "ours" else "reference dump"
            if proc.returncode != 0 or proc.stderr:
                report.problems.append(Problem(check_name, "%s -s exited %d" % (tool, proc.returncode),
                                               proc.stderr.decode("utf-8", "replace").splitlines()[:examples]))
            compare(_pairs(proc.stdout, kind), dump_expected, check_name, report, examples, volatile)
    report.timings["dump"] = time.perf_counter() - t
    return report


def write_reproducer(generated, type_name, prefix, confdir, root=None):
    """Write ``prefix`` (the source), ``prefix.queries`` (every key as declared, then the
    absent ones), ``prefix.expected-query`` (what ``-q -`` must print for them) and
    ``prefix.expected-dump`` (what a sorted ``-s`` must print); return the shell lines
    that compile the source with our engine and check it with real Postfix."""
    kind = generated.kind
    tool = tool_for(kind)
    sep = b":\t" if kind == ALIASES else b"\t"
    expected = generated.expected()
    queries = generated.queries()
    with open(prefix, "wb") as f:
        f.write(generated.source())
    with open(prefix + ".queries", "wb") as f:
        f.write(b"".join(q + b"\n" for q, _k in queries) + b"".join(a + b"\n" for a in generated.absent))
    with open(prefix + ".expected-query", "wb") as f:
        f.write(b"".join(q + sep + expected[k] + b"\n" for q, k in queries))
    dump = _alias_extras(expected) if kind == ALIASES else expected
    with open(prefix + ".expected-dump", "wb") as f:
        f.write(b"".join(sorted(k + sep + v + b"\n" for k, v in dump.items())))
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    snippet = ("import sys; sys.path.insert(0, %r); "
               "from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import Table; "
               "Table(%r, %r, kind=%r, hostname=%r, smtputf8=True).ensure(force=True)"
               % (os.path.join(root, ".build", "collections"), prefix, type_name, kind, HOSTNAME))
    spec = "%s:%s" % (type_name, prefix)
    lines = ["# our engine compiles the source:", "python3 -c %s" % _quote(snippet)]
    if type_name == "hash":
        lines.append("db_verify -q %s.db" % prefix)
    lines += ["# every key, one query run (no output from diff: all found with the right value):",
              "%s -c %s -q - %s < %s.queries | diff - %s.expected-query" % (tool, confdir, spec, prefix, prefix)]
    if type_name != "cdb":
        lines += ["# the whole index%s:" % (" (YP_LAST_MODIFIED is a time stamp)" if kind == ALIASES else ""),
                  "LC_ALL=C %s -c %s -s %s | LC_ALL=C sort | diff - %s.expected-dump"
                  % (tool, confdir, spec, prefix)]
    ref_conf = reference_confdir(confdir, type_name)
    lines += ["# real %s on the same source, for comparison:" % tool,
              "cp %s %s.ref && %s -c %s %s:%s.ref && %s -c %s -q - %s:%s.ref < %s.queries | diff - %s.expected-query"
              % (prefix, prefix, tool, ref_conf, type_name, prefix, tool, ref_conf, type_name, prefix, prefix, prefix)]
    return lines


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"
