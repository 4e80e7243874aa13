# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Soak the index writers: random table shapes for a given number of minutes, each compiled
by our engine and checked, every key and the whole index, by real Postfix
(tests/table_matrix.py: the generator and the checker of tests/unit/db/test_matrix.py).

Shapes: 1 to 50,000 entries, long values (1-64 KB) in 0-10 % of them, long keys (1-4 KB;
for lmdb mostly up to the 511 bytes it can store), Unicode keys, duplicates, continuation
lines and comments, tables and aliases, each checked as hash, cdb and lmdb. A running
tally goes to stdout. At the first difference the table is shrunk (entries removed by
bisection while the same check still fails) and a reproducer is written; then it stops
with exit status 1. Otherwise it stops by itself once the minutes are up (the table being
checked is finished first) with exit status 0.

    python3 bench/soak.py --minutes 30
    python3 bench/soak.py --replay bench/out/soak/<dir>/shape.json --type hash
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")


def _import_checker():
    link = os.path.join(COLLECTIONS, "ansible_collections", "mailops", "postfix")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(ROOT, link)
        except FileExistsError:
            pass
    for path in (os.path.join(ROOT, "tests"), COLLECTIONS):
        if path not in sys.path:
            sys.path.insert(0, path)
    import table_matrix  # pylint: disable=import-outside-toplevel
    return table_matrix


tm = _import_checker()

MAX_BYTES = 24 << 20


def random_shape(rng, kinds, max_bytes):
    """A random Shape within ``max_bytes`` of source (sizes log-uniform up to 50,000)."""
    n = rng.choice((1, 2, 3)) if rng.random() < 0.05 else int(math.exp(rng.uniform(math.log(4), math.log(50000))))
    lo = int(math.exp(rng.uniform(math.log(1024), math.log(65536))))
    long_size = (lo, rng.randint(lo, 65536))
    if rng.random() < 0.7:
        key_lo = rng.randint(1024, 4096)
        long_key_size = (key_lo, rng.randint(key_lo, 4096))
    else:
        long_key_size = rng.choice(((400, 510), (500, 510), (505, 520), (1018, 1030)))
    shape = tm.Shape(kind=rng.choice(kinds), n=n,
                     long_share=rng.choice((0, 0.5, 1, 2, 2, 5, 10)), long_size=long_size,
                     long_key_share=rng.choice((0, 0, 0.5, 1, 2)), long_key_size=long_key_size,
                     unicode_share=rng.choice((0, 10, 25, 50)), dup_share=rng.choice((0, 1, 3, 10)),
                     cont_share=rng.choice((0, 5, 20)), comments=rng.random() < 0.5,
                     seed=rng.randrange(1 << 31))
    # Within the byte budget: fewer long values first, then shorter ones, then fewer entries.
    while shape.estimated_bytes() > max_bytes:
        if shape.long_share > 0.5:
            shape = tm.Shape.from_dict(dict(shape.as_dict(), long_share=shape.long_share / 2))
        elif shape.long_size[1] > 2048:
            lo, hi = shape.long_size
            shape = tm.Shape.from_dict(dict(shape.as_dict(), long_size=(max(1024, lo // 2), hi // 2)))
        else:
            shape = tm.Shape.from_dict(dict(shape.as_dict(), n=shape.n // 2))
    return shape


def types_for(shape, types):
    """lmdb refuses keys over 511 bytes: a shape with longer keys is still checked as lmdb
    (both must refuse), but only now and then."""
    out = list(types)
    if "lmdb" in out and shape.long_key_share and shape.long_key_size[0] > 510 and shape.seed % 4:
        out.remove("lmdb")
    return out


class Tally(object):

    def __init__(self):
        self.start = time.time()
        self.tables = 0
        self.records = 0
        self.bytes = 0
        self.refused = 0
        self.by_type = {}
        self.by_kind = {}

    def add(self, type_name, kind, report):
        self.tables += 1
        self.records += report.records
        self.bytes += report.bytes
        self.refused += report.refused
        self.by_type[type_name] = self.by_type.get(type_name, 0) + 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    def line(self):
        return "%5.1f min: %d tables (%s; %s; %d refused by both), %d records, %.1f MB tried" % (
            (time.time() - self.start) / 60.0, self.tables,
            " ".join("%s %d" % item for item in sorted(self.by_type.items())),
            " ".join("%s %d" % item for item in sorted(self.by_kind.items())),
            self.refused, self.records, self.bytes / 1e6)


def failing_checks(report):
    """The checks a shrunk table must still fail: our engine's, or else the reference's."""
    ours = set(p.check for p in report.problems) - set(p.check for p in report.model_problems)
    return ours or set(p.check for p in report.problems)


def shrink(generated, type_name, workdir, confdir, checks, deadline, say):
    """Remove entries (halves, then quarters, ...) while the table still fails one of
    ``checks``; stop at single entries or at ``deadline``. Returns (generated, report)."""
    entries = list(generated.entries)
    best = tm.check(generated, type_name, workdir, confdir)

    def fails(candidate):
        sub = generated.subset(candidate)
        if not sub.expected():
            return None
        report = tm.check(sub, type_name, workdir, confdir)
        return report if set(p.check for p in report.problems) & checks else None

    chunk = max(1, len(entries) // 2)
    tries = 0
    while chunk >= 1 and time.time() < deadline:
        i = 0
        while i < len(entries) and time.time() < deadline:
            candidate = entries[:i] + entries[i + chunk:]
            tries += 1
            report = fails(candidate)
            if report is not None:
                entries, best = candidate, report
                say("  shrink: %d entries still fail (%d tries)" % (len(entries), tries))
            else:
                i += chunk
        if chunk == 1:
            break
        chunk = max(1, chunk // 2)
    return generated.subset(entries), best


def write_reproducer(out_dir, shape, type_name, generated, original, shrunk, shrunk_report):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "shape.json"), "w") as f:
        json.dump(dict(shape=shape.as_dict(), type=type_name), f, indent=1)
    conf = os.path.join(out_dir, "conf")
    tm.make_confdir(conf)
    prefix = os.path.join(out_dir, "aliases" if shape.kind == tm.ALIASES else "virtual")
    lines = tm.write_reproducer(shrunk, type_name, prefix, conf, ROOT)
    with open(os.path.join(out_dir, "README.txt"), "w") as f:
        f.write("%s:%s: our engine and real Postfix differ.\n\n" % (type_name, prefix))
        f.write("Shape (%d entries before shrinking, %d after): %s\n" % (
            len([e for e in generated.entries if e.key is not None]),
            len([e for e in shrunk.entries if e.key is not None]), shape.id))
        f.write("Regenerate and check the whole table:\n  python3 %s --replay %s\n\n"
                % (os.path.relpath(os.path.abspath(__file__), os.getcwd()), os.path.join(out_dir, "shape.json")))
        f.write("As found:\n%s\n\nShrunk:\n%s\n\n" % (original.summary(), shrunk_report.summary()))
        f.write("Reproduce (config dir %s, main.cf as the checker writes it):\n" % conf)
        f.write("".join("  %s\n" % line for line in lines))
    with open(os.path.join(out_dir, "reproduce.sh"), "w") as f:
        f.write("#!/bin/bash\n# %s %s\nset -x\n" % (type_name, shape.id))
        f.write("".join(line + "\n" for line in lines))
    os.chmod(os.path.join(out_dir, "reproduce.sh"), 0o755)
    return out_dir


def replay(path, type_override, confdir, workdir):
    with open(path) as f:
        data = json.load(f)
    shape = tm.Shape.from_dict(data["shape"])
    type_name = type_override or data["type"]
    report = tm.check(tm.generate(shape), type_name, workdir, confdir)
    print("%s %s: %s" % (type_name, shape.id, "OK" if report.ok else "DIFFERENT"))
    print(report.summary())
    return 0 if report.ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seed", type=int, help="of the shape sequence (default: from the clock, printed)")
    ap.add_argument("--types", default="hash,cdb,lmdb")
    ap.add_argument("--kinds", default="table,aliases")
    ap.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="source bytes per table")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "soak"), help="reproducers go here")
    ap.add_argument("--shrink-minutes", type=float, default=15.0)
    ap.add_argument("--replay", metavar="SHAPE_JSON", help="check one shape written with a reproducer")
    ap.add_argument("--type", help="with --replay: the table type (default: the one recorded)")
    args = ap.parse_args()
    for tool in ("postmap", "postalias", "db_verify"):
        if not shutil.which(tool):
            raise SystemExit("%s not found: install postfix, postfix-cdb, postfix-lmdb and db-util (make deps)" % tool)
    workroot = tempfile.mkdtemp(prefix="mailops-soak-")
    try:
        confdir = tm.make_confdir(os.path.join(workroot, "conf"))
        workdir = os.path.join(workroot, "work")
        if args.replay:
            return replay(args.replay, args.type, confdir, workdir)
        return soak(args, confdir, workdir)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)


def log(text):
    print(time.strftime("%H:%M:%S ") + text, flush=True)


def soak(args, confdir, workdir):
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    types, kinds = args.types.split(","), args.kinds.split(",")
    deadline = time.time() + args.minutes * 60
    log("soak: %.1f minutes, seed %d, types %s, kinds %s, at most %.1f MB per table"
        % (args.minutes, seed, ",".join(types), ",".join(kinds), args.max_bytes / 1e6))
    tally = Tally()
    while time.time() < deadline:
        shape = random_shape(rng, kinds, args.max_bytes)
        generated = tm.generate(shape)
        for type_name in types_for(shape, types):
            if time.time() >= deadline:
                break
            started = time.time()
            report = tm.check(generated, type_name, workdir, confdir)
            tally.add(type_name, shape.kind, report)
            if not report.ok:
                log("DIFFERENCE: %s %s\n%s" % (type_name, shape.id, report.summary()))
                log("shrinking (at most %.0f minutes)..." % args.shrink_minutes)
                checks = failing_checks(report)
                shrunk, shrunk_report = shrink(generated, type_name, workdir, confdir, checks,
                                               time.time() + args.shrink_minutes * 60, log)
                out_dir = os.path.join(os.path.abspath(args.out), "%s-%s-%s-s%d" % (
                    time.strftime("%Y%m%d-%H%M%S"), type_name, shape.kind, shape.seed))
                write_reproducer(out_dir, shape, type_name, generated, report, shrunk, shrunk_report)
                log(tally.line())
                log("reproducer written to %s (README.txt, reproduce.sh)" % out_dir)
                return 1
            log("%s | %s %s %.1fs%s" % (tally.line(), type_name, shape.id, time.time() - started,
                                        " refused by both" if report.refused else ""))
    log("done, no difference. " + tally.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
