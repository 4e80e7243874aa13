# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Look every key of an index real postmap built up with C ``postmap -q -`` and with our
readers, in the same run; print time ratios (median of several runs) and route the same
addresses statically through a main.cf that names the map.

Many lookups in one index are what the route module does (three keys per address through
virtual_alias_maps: the address, user@, @domain) and what a postmap ``query`` of many keys
does. Both sides run as fresh processes on the target interpreter, start-up included; our
answers must equal postmap's for every key asked (every key of the map, and as many that it
does not hold), or the run fails.

    python3 bench/lookup.py --sizes 10000,100000 --types hash,cdb,lmdb --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compile import COLLECTIONS, ensure_collection_link, make_virtual  # noqa: E402  pylint: disable=wrong-import-position

# Our side: every key of stdin (one a line) through Table.query (the reader the route module
# uses), answers printed as postmap -q - prints them; or the same keys routed statically.
OURS = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
mode, config_dir, type_name, source = sys.argv[2:6]
keys = sys.stdin.read().splitlines()
if mode == "query":
    from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import Table
    found = Table(source, type_name, hostname="bench.example").query(keys)
    sys.stdout.write("".join("%s\t%s\n" % (k, v) for k, v in found.items() if v is not None))
else:
    from ansible_collections.mailops.postfix.plugins.module_utils import _route
    routes, _router = _route.static_routes(config_dir, keys)
    bad = [k for k in keys if _route.summary(routes[k]).startswith("error")]
    if bad:
        raise SystemExit("%d addresses not routed, e.g. %s: %s" % (len(bad), bad[0], _route.summary(routes[bad[0]])))
"""


def timed(cmd, stdin):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or "fatal" in proc.stderr:
        raise SystemExit("%s failed (%d): %s" % (cmd[0], proc.returncode, proc.stderr.strip()[-500:]))
    return wall, proc.stdout


def bench(type_name, n, runs, python, workdir):
    config_dir = os.path.join(workdir, "%s-%d" % (type_name, n))
    os.makedirs(config_dir)
    source = os.path.join(config_dir, "virtual")
    make_virtual(source, n)
    with open(os.path.join(config_dir, "main.cf"), "w") as f:
        f.write("compatibility_level = 3.6\nmyhostname = bench.example\nmydestination = localhost\n"
                "alias_maps =\nalias_database =\nvirtual_alias_domains = %s\nvirtual_alias_maps = %s:%s\n"
                % (" ".join("domain%d.example" % d for d in range(50)), type_name, source))
    subprocess.run(["postmap", "-c", config_dir, "%s:%s" % (type_name, source)], check=True)
    with open(source) as f:
        keys = [line.split("\t", 1)[0] for line in f if not line.startswith("#")]
    asked = "".join(k + "\n" for k in keys + ["absent%d@domain%d.example" % (i, i % 50) for i in range(n)])
    c_cmd = ["postmap", "-c", config_dir, "-q", "-", "%s:%s" % (type_name, source)]
    ours_cmd = [python, "-c", OURS, COLLECTIONS]
    c_times, our_times, route_times = [], [], []
    for _run in range(runs):
        wall, c_out = timed(c_cmd, asked)
        c_times.append(wall)
        wall, our_out = timed(ours_cmd + ["query", config_dir, type_name, source], asked)
        our_times.append(wall)
        if sorted(our_out.splitlines()) != sorted(c_out.splitlines()):
            raise SystemExit("%s %d: our answers differ from postmap -q's" % (type_name, n))
        wall, _out = timed(ours_cmd + ["route", config_dir, type_name, source], "".join(k + "\n" for k in keys))
        route_times.append(wall)
    c, ours, route = (statistics.median(t) for t in (c_times, our_times, route_times))
    row = {"type": type_name, "entries": n, "asked": 2 * n, "found": len(c_out.splitlines()),
           "postmap_q": round(c, 3), "ours": round(ours, 3), "ratio": round(ours / c, 2), "route": round(route, 3)}
    print("%-5s %8d keys asked %8d: postmap -q - %7.3f s, ours %7.3f s (x%.2f); routing the %d addresses %7.3f s"
          % (type_name, n, 2 * n, c, ours, ours / c, n, route), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--types", default="hash,cdb,lmdb")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default="/usr/bin/python3", help="target interpreter for our readers")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    ensure_collection_link()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mailops-lookup-") as workdir:
        for n in map(int, args.sizes.split(",")):
            for type_name in args.types.split(","):
                rows.append(bench(type_name, n, args.runs, args.python, workdir))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
