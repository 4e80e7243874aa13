# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile the same virtual-map (or aliases) sources with C postmap/postalias and with our
engine, in the same run, and print time ratios (median of several runs) and peak RSS.

Each compile runs in a fresh child process so that its peak RSS (ru_maxrss) is its own.
Our engine runs on the target interpreter (default: /usr/bin/python3, what a Debian host
runs modules with), from byte-compiled module_utils, as an installed package is (C postmap
is compiled ahead too); ``--no-bytecode`` leaves them to be compiled by every run, as an
AnsiballZ module run does.

    python3 bench/compile.py --sizes 1000,100000 --types hash,cdb,lmdb --runs 3
    python3 bench/compile.py --sizes 1000000 --types hash --runs 1 --ours-only
    python3 bench/compile.py --sizes 100000 --long-share 2 --check

``--check`` also times a run that finds the index current (parse the source and look every
key up the way Postfix does: what a no-change run costs). ``--long-share P`` gives P % of the
entries 200-600 targets (values of 5-15 KB), the shape of big distribution lists.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
SUFFIX = {"hash": ".db", "cdb": ".cdb", "lmdb": ".lmdb"}

OURS = r"""
import sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import Table, TABLE, ALIASES
kind, type_name, source = sys.argv[2:5]
check = sys.argv[5] == "check"
result = Table(source, type_name, kind=TABLE if kind == "table" else ALIASES,
               hostname="bench.example").ensure(force=not check)
if check and result["changed"]:
    raise SystemExit("a no-change check rebuilt the index: %s" % result["rebuild_reason"])
"""


def ensure_collection_link():
    link = os.path.join(COLLECTIONS, "ansible_collections", "mailops", "postfix")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)


def _long_list(i, rng):
    return ", ".join("member%d.%d@lists.example" % (i, j) for j in range(rng.randint(200, 600)))


def make_virtual(path, n, long_share=0.0):
    """A virtual alias map like a hosting provider's: n addresses over 50 domains, the
    share ``long_share`` (%) of them distribution lists."""
    rng = random.Random(n)
    with open(path, "w") as f:
        f.write("# benchmark virtual alias map\n")
        for i in range(n):
            if long_share and rng.random() * 100 < long_share:
                targets = _long_list(i, rng)
            else:
                targets = "user%d@mbox.example" % i if i % 3 else "user%d@mbox.example, archive@mbox.example" % i
            f.write("alias%d@domain%d.example\t%s\n" % (i, i % 50, targets))


def make_aliases(path, n, long_share=0.0):
    rng = random.Random(n)
    with open(path, "w") as f:
        f.write("# benchmark aliases\n")
        for i in range(n):
            if long_share and rng.random() * 100 < long_share:
                f.write("alias%d: %s\n" % (i, _long_list(i, rng)))
            else:
                f.write("alias%d: user%d, archive\n" % (i, i))


def timed(cmd, cwd):
    """Run cmd in a child; return its wall-clock seconds."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit("%s failed: %s%s" % (" ".join(cmd), proc.stdout, proc.stderr))
    return elapsed


def child_rss(cmd, cwd):
    """Peak RSS (MiB) of one run of cmd, from wait4()'s rusage of that child alone."""
    pid = os.fork()
    if pid == 0:
        os.chdir(cwd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    status, usage = os.wait4(pid, 0)[1:]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("%s failed" % " ".join(cmd))
    return usage.ru_maxrss / 1024.0


def bench(kind, type_name, n, runs, python, workdir, ours_only, long_share=0.0, check=False):
    src = os.path.join(workdir, "%s-%d" % (kind, n))
    (make_aliases if kind == "aliases" else make_virtual)(src, n, long_share)
    conf = os.path.join(workdir, "etc")
    os.makedirs(conf, exist_ok=True)
    if not os.path.exists(os.path.join(conf, "main.cf")):
        with open(os.path.join(conf, "main.cf"), "w") as f:
            f.write("compatibility_level = 3.6\nmyhostname = bench.example\n")
        # Postfix tools wait until main.cf is a few seconds old (a file still being edited).
        old = time.time() - 3600
        os.utime(os.path.join(conf, "main.cf"), (old, old))
    tool = "postalias" if kind == "aliases" else "postmap"
    c_cmd = [tool, "-c", conf, "%s:%s" % (type_name, src)]
    our_cmd = [python, "-c", OURS, COLLECTIONS, "table" if kind == "table" else "aliases", type_name, src, "build"]
    check_cmd = our_cmd[:-1] + ["check"]
    c_times, our_times, check_times = [], [], []
    for _run in range(runs):
        if not ours_only:
            c_times.append(timed(c_cmd, workdir))
        our_times.append(timed(our_cmd, workdir))
        if check:
            check_times.append(timed(check_cmd, workdir))
    c_rss = None if ours_only else child_rss(c_cmd, workdir)
    our_rss = child_rss(our_cmd, workdir)
    check_rss = child_rss(check_cmd, workdir) if check else None
    for path in (src, src + SUFFIX[type_name]):
        if os.path.exists(path):
            os.unlink(path)
    return dict(kind=kind, type=type_name, n=n,
                c=statistics.median(c_times) if c_times else None, ours=statistics.median(our_times),
                c_rss=c_rss, our_rss=our_rss, check=statistics.median(check_times) if check_times else None,
                check_rss=check_rss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--types", default="hash,cdb,lmdb")
    ap.add_argument("--kinds", default="table", help="table,aliases")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default="/usr/bin/python3", help="target interpreter for our engine")
    ap.add_argument("--ours-only", action="store_true", help="skip the C tools (e.g. for 1M-entry RSS)")
    ap.add_argument("--no-bytecode", action="store_true", help="do not byte-compile our module_utils first")
    ap.add_argument("--long-share", type=float, default=0.0, help="%% of entries with 200-600 targets")
    ap.add_argument("--check", action="store_true", help="also time a no-change run (index found current)")
    args = ap.parse_args()
    ensure_collection_link()
    if not args.no_bytecode:
        subprocess.run([args.python, "-m", "compileall", "-q", os.path.join(ROOT, "plugins", "module_utils")], check=True)
    for tool in ("postmap", "postalias"):
        if not shutil.which(tool):
            raise SystemExit("%s not found: install postfix (make deps)" % tool)
    workdir = tempfile.mkdtemp(prefix="mailops-bench-")
    rows = []
    try:
        for kind in args.kinds.split(","):
            for type_name in args.types.split(","):
                for n in [int(s) for s in args.sizes.split(",")]:
                    rows.append(bench(kind, type_name, n, args.runs, args.python, workdir, args.ours_only,
                                      args.long_share, args.check))
                    r = rows[-1]
                    line = "%-7s %-5s %8d  C %s  ours %7.3fs  ratio %s  RSS C %s ours %6.1f MiB%s" % (
                        r["kind"], r["type"], r["n"],
                        "%7.3fs" % r["c"] if r["c"] else "    -   ", r["ours"],
                        "%5.2f" % (r["ours"] / r["c"]) if r["c"] else "  -  ",
                        "%6.1f" % r["c_rss"] if r["c_rss"] else "   -  ", r["our_rss"],
                        "  no-change check %7.3fs %6.1f MiB" % (r["check"], r["check_rss"]) if args.check else "")
                    print(line, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
