# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole tables compiled by us, every key checked by real Postfix (tests/table_matrix.py).

The shapes cross table size (1 to 50,000 entries), the share of long values (0, 0.5, 2,
10 %) and their size (1 KB to 64 KB), long keys (1-4 KB), Unicode keys that folding
changes, duplicates, continuation lines and comments, for hash, cdb and lmdb, for lookup
tables and aliases. A full cross product is far too large, so the rows are a covering
design:

- hash: every size with every share of long values (the hash writer's buckets and
  overflow pages are where size and long values meet);
- all types: every pair of values of any two factors in at least one row (greedy
  pairwise design, below), so every type sees every factor;
- the shapes that lost records before commit 1c94ebd: virtual maps of 6,000 / 8,000 /
  10,000 / 20,000 addresses where 2 % of the entries have 200-600 targets (5-15 KB), and
  aliases of 8,000 names with the same mix;
- boundaries: lmdb keys up to the 511 bytes liblmdb stores (real postmap refuses the
  table beyond: so must we), hash keys and values around ISBIG (1024 bytes), an lmdb
  table larger than Postfix's default 16 MiB map.

No table exceeds MAX_BYTES of source. ``pytest -s`` prints each row's timings.
"""

from __future__ import annotations

import itertools
import random

import pytest

from table_matrix import ALIASES, KINDS, TABLE, TYPES, Shape, check, generate, make_confdir

MAX_BYTES = 24 << 20
SIZES = (1, 2, 100, 1000, 6000, 8000, 10000, 20000, 50000)
LONG_SHARES = (0, 0.5, 2, 10)
LONG_SIZES = ((1024, 4096), (5000, 15000), (16384, 65536))
LONG_KEYS = (1024, 4096)
# lmdb cannot store a key of more than 511 bytes (NUL included): its long keys are as long
# as it can store. Longer ones are the refusal rows below.
LMDB_LONG_KEYS = (400, 510)

FACTORS = (
    ("type", TYPES),
    ("kind", KINDS),
    ("n", (1, 100, 1000, 8000, 20000, 50000)),
    ("long_share", LONG_SHARES),
    ("long_size", LONG_SIZES),
    ("long_keys", (False, True)),
    ("unicode", (False, True)),
    ("dups", (False, True)),
    ("cont", (False, True)),
    ("comments", (False, True)),
)
CHEAPEST = dict(type="hash", kind=TABLE, n=1, long_share=0, long_size=LONG_SIZES[0], long_keys=False,
                unicode=False, dups=False, cont=False, comments=False)


def shape_of(row, seed):
    """The Shape for a design row (a dict of factor -> value)."""
    return Shape(kind=row["kind"], n=row["n"], long_share=row["long_share"], long_size=row["long_size"],
                 long_key_share=1 if row["long_keys"] else 0,
                 long_key_size=LMDB_LONG_KEYS if row["type"] == "lmdb" else LONG_KEYS,
                 unicode_share=25 if row["unicode"] else 0, dup_share=3 if row["dups"] else 0,
                 cont_share=10 if row["cont"] else 0, comments=row["comments"], seed=seed)


def feasible(partial):
    row = dict(CHEAPEST, **partial)
    return shape_of(row, 0).estimated_bytes() <= MAX_BYTES


def pairs_of(row):
    """The factor-value pairs a row covers (a long-value size counts only with long values)."""
    out = set()
    for (i, (fi, _vi)), (j, (fj, _vj)) in itertools.combinations(enumerate(FACTORS), 2):
        if "long_size" in (fi, fj) and row["long_share"] == 0:
            continue
        out.add((i, row[fi], j, row[fj]))
    return out


def required_pairs():
    out = set()
    for (i, (fi, vi)), (j, (fj, vj)) in itertools.combinations(enumerate(FACTORS), 2):
        for a in vi:
            for b in vj:
                partial = {fi: a, fj: b}
                if "long_size" in partial and partial.get("long_share") == 0:
                    continue
                if feasible(dict(partial, long_share=partial.get("long_share", 0.5))
                            if "long_size" in partial else partial):
                    out.add((i, a, j, b))
    return out


def pairwise_rows():
    """Greedy all-pairs design: start each row from the first uncovered pair, then give
    each other factor the value that covers most uncovered pairs (within MAX_BYTES)."""
    uncovered = required_pairs()
    rows = []
    while uncovered:
        i, a, j, b = min(uncovered, key=repr)
        row = {FACTORS[i][0]: a, FACTORS[j][0]: b}
        if "long_size" in row and "long_share" not in row:
            row["long_share"] = next(s for s in LONG_SHARES if s and feasible(dict(row, long_share=s)))
        for name, values in FACTORS:
            if name in row:
                continue
            best, gain = None, -1
            for value in values:
                trial = dict(row, **{name: value})
                if not feasible(trial):
                    continue
                new = len(pairs_of(dict(CHEAPEST, **trial)) & uncovered)
                if new > gain:
                    best, gain = value, new
            row[name] = best
        rows.append(row)
        uncovered -= pairs_of(row)
    return rows


def design():
    """(type, Shape) rows, each with its own seed, in a fixed order."""
    rows = []
    seed = itertools.count(1)
    # hash: every size with every share of long values; the other factors rotate.
    for idx, (n, share) in enumerate(itertools.product(SIZES, LONG_SHARES)):
        rotation = random.Random(idx)
        flags = [rotation.random() < 0.5 for _i in range(5)]
        row = dict(type="hash", kind=rotation.choice(KINDS), n=n, long_share=share, long_keys=flags[0],
                   unicode=flags[1], dups=flags[2], cont=flags[3], comments=flags[4])
        for size in LONG_SIZES[rotation.randrange(3)::-1]:
            row["long_size"] = size
            if feasible(row):
                break
        rows.append(("hash", shape_of(row, next(seed))))
    for row in pairwise_rows():
        rows.append((row["type"], shape_of(row, next(seed))))
    # The shapes the hash writer lost records of before commit 1c94ebd, for every type.
    for type_name in TYPES:
        for kind, n in ((TABLE, 6000), (TABLE, 8000), (TABLE, 10000), (TABLE, 20000), (ALIASES, 8000)):
            rows.append((type_name, Shape(kind=kind, n=n, long_share=2, long_size=(5000, 15000), seed=next(seed))))
    # Boundaries.
    for kind in KINDS:
        rows.append(("lmdb", Shape(kind=kind, n=1000, long_key_share=1, long_key_size=LONG_KEYS,
                                   seed=next(seed))))                            # refused by both
    rows.append(("lmdb", Shape(n=1000, long_key_share=3, long_key_size=(500, 510), unicode_share=25,
                               seed=next(seed))))                                 # the longest stored
    rows.append(("lmdb", Shape(kind=ALIASES, n=1000, long_key_share=3, long_key_size=(511, 520),
                               seed=next(seed))))                                 # one byte too long
    for type_name in ("hash", "cdb"):
        rows.append((type_name, Shape(n=3000, long_share=5, long_size=(1018, 1030), long_key_share=5,
                                      long_key_size=(1018, 1030), dup_share=3, seed=next(seed))))
    rows.append(("lmdb", Shape(n=50000, long_share=10, long_size=(1024, 4096), unicode_share=25, dup_share=3,
                               cont_share=5, seed=next(seed))))                   # over lmdb_map_size
    return rows


DESIGN = design()
# The costliest rows first, so the two workers do not end on one long row (aliases with
# quoted or non-ASCII targets compile about ten times slower than tables per byte).
SCHEDULE = sorted(DESIGN, key=lambda row: -row[1].estimated_bytes() * (4 if row[1].kind == ALIASES else 1))


@pytest.fixture(scope="module")
def confdir(tmp_path_factory):
    return make_confdir(str(tmp_path_factory.mktemp("matrix-conf")))


@pytest.mark.parametrize("type_name,shape", SCHEDULE, ids=["%s-%s" % (t, s.id) for t, s in SCHEDULE])
def test_table(tmp_path, confdir, type_name, shape):
    generated = generate(shape)
    report = check(generated, type_name, str(tmp_path), confdir)
    print("\n%s %s: %d records, %.1f MB; %s%s" % (
        type_name, shape.id, report.records, report.bytes / 1e6, report.timing_line(),
        " (refused by both)" if report.refused else ""))
    assert report.ok, "%s\nshape: %r" % (report.summary(), shape.as_dict())


def test_design_covers_what_it_claims():
    ids = ["%s-%s" % (t, s.id) for t, s in DESIGN]
    assert len(set(ids)) == len(ids)
    assert all(s.estimated_bytes() <= MAX_BYTES for _t, s in DESIGN)
    hash_grid = set((s.n, s.long_share) for t, s in DESIGN if t == "hash")
    assert hash_grid >= set(itertools.product(SIZES, LONG_SHARES))
    rows = pairwise_rows()
    covered = set().union(*map(pairs_of, rows))
    assert covered >= required_pairs()
    for name, values in FACTORS[1:]:
        for type_name in TYPES:
            assert set(values) <= set(r[name] for r in rows if r["type"] == type_name), (name, type_name)
    for n in (6000, 8000, 10000, 20000):
        assert ("hash", Shape(n=n, long_share=2, long_size=(5000, 15000), seed=0)) in [
            (t, Shape.from_dict(dict(s.as_dict(), seed=0))) for t, s in DESIGN]
