# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time the hash writer against C postmap on one generated virtual map, and profile it.

    .venv/bin/python bench/hash_profile.py [ENTRIES] [--profile] [--rss]

Prints the wall and CPU time (best of 5) of ``postmap hash:SRC`` and of write() on the
same records, their ratios, the file sizes and the time read() takes; --profile adds a
cProfile of write(), --rss the RSS of a fresh process once the records are built and
its peak while write() runs.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
# tests/conftest.py makes ansible_collections.mailops.postfix importable from the checkout.
import conftest  # noqa: E402,F401  pylint: disable=unused-import

from ansible_collections.mailops.postfix.plugins.module_utils._db import hash as dbhash  # noqa: E402


def records(count):
    return [(b"user%d.x@dom%d.example.com\0" % (i, i % 500), b"target%d@mail%d.example.net\0" % (i, i % 37))
            for i in range(count)]


def cpu(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def best(func, times=5):
    """Least wall and CPU time (ours, or the children's) over ``times`` runs."""
    walls, cpus = [], []
    for dummy in range(times):
        wall, mine, kids = time.perf_counter(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
        func()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu(resource.RUSAGE_SELF) - mine + cpu(resource.RUSAGE_CHILDREN) - kids)
    return min(walls), min(cpus)


def child_rss(count):
    """(RSS with the records built, peak RSS while write() runs) in MiB, in a fresh process."""
    code = """
import sys
sys.path.insert(0, sys.argv[2])
import conftest, hash_profile
def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024
records = hash_profile.records(int(sys.argv[3]))
before = status()[0]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
hash_profile.dbhash.write(sys.argv[1], records)
print(before, status()[1])
"""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, os.path.join(tmp, "t.db"), os.path.join(ROOT, "tests"),
                              str(count)], stdout=subprocess.PIPE, check=True, env=env).stdout
    before, peak = out.split()
    return int(before), int(peak)


def main():
    args = sys.argv[1:]
    count = int(args[0]) if args and args[0].isdigit() else 100000
    recs = records(count)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "cfg")
        os.mkdir(cfg)
        with open(os.path.join(cfg, "main.cf"), "w") as f:
            f.write("compatibility_level = 3.6\n")
        os.utime(os.path.join(cfg, "main.cf"), (1000000000, 1000000000))
        src = os.path.join(tmp, "virtual")
        with open(src, "wb") as f:
            f.writelines(k[:-1] + b" " + v[:-1] + b"\n" for k, v in recs)
        theirs = best(lambda: subprocess.run(["postmap", "-c", cfg, "hash:" + src], check=True))
        ours = best(lambda: dbhash.write(os.path.join(tmp, "ours.db"), recs))
        print("%d entries: postmap %.3f s (cpu %.3f), write() %.3f s (cpu %.3f), ratio %.2f (cpu %.2f)"
              % (count, theirs[0], theirs[1], ours[0], ours[1], ours[0] / theirs[0], ours[1] / theirs[1]))
        print("sizes: postmap %d bytes, ours %d bytes"
              % (os.path.getsize(src + ".db"), os.path.getsize(os.path.join(tmp, "ours.db"))))
        start = time.perf_counter()
        n = sum(1 for dummy in dbhash.read(os.path.join(tmp, "ours.db")))
        print("read() of %d pairs: %.3f s" % (n, time.perf_counter() - start))
        if "--profile" in args:
            prof = cProfile.Profile()
            prof.runcall(dbhash.write, os.path.join(tmp, "ours.db"), recs)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(15)
    if "--rss" in args:
        del recs
        before, peak = child_rss(count)
        print("RSS: %d MiB with the records built, %d MiB peak during write() (+%d MiB)"
              % (before, peak, peak - before))


if __name__ == "__main__":
    main()
