# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`: every benchmark of bench/README.md in one run, one table at the end.

1. compile  bench/compile.py (our engine against C postmap/postalias), its lines as printed;
   lookup   bench/lookup.py (our index readers against C `postmap -q -`, and static routing);
2. e2e      a 10k-entry virtual map on a real Postfix host, three ways (bench/e2e/*.yml):
            first apply, change one alias, no-change run; the map is checked with real
            `postmap -s` / `postmap -q` in the container after every step;
3. fleet    `ansible-playbook mailops.postfix.alias_rollout` over 1, 4, 8 hosts, batches of one
            and whole-fleet batches with 1, 4, 8 forks; where the time goes, per task;
4. sqlfleet "change one alias on 8 MX hosts": (A) alias_rollout of the file maps (batches of one,
            one batch of 8 with 8 forks) against (B) ONE mailops.postfix.sql_entries run on a
            PostgreSQL container that the 8 MX hosts query through proxy:pgsql:, and the time
            until every host's real `postmap -q` answers the new value; ratio A/B per alias count.

Hosts are podman containers from the cached Debian 12 test image (scripts/build-image.sh; its
debian12-sql variant, with PostgreSQL and postfix-pgsql, when sqlfleet runs) on
a closed network this run creates; containers and network carry the label
mailops.postfix.bench=<run id> and are removed at the end, also on failure or Ctrl-C.
Nothing here is a test: no time makes it fail. It exits non-zero only when a benchmark could
not run or a map came out wrong.

    .venv/bin/python bench/run.py                       # all of it (~30 min on 2 cores)
    .venv/bin/python bench/run.py --only e2e --entries 1000 --lineinfile-entries 100
    .venv/bin/python bench/run.py --only fleet --fleet-sizes 1,4 --forks 1,4
    .venv/bin/python bench/run.py --only sqlfleet --sql-aliases 1000,10000 --sql-exclusive
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "lib"))

import sql_fleet  # noqa: E402  pylint: disable=wrong-import-position
import testbed  # noqa: E402  pylint: disable=wrong-import-position

DOMAINS = 50
PROFILE_DIR = None      # --profile: every ansible-playbook run under cProfile (slower)
_children = []


# --------------------------------------------------------------------------- environment

def ansible_env(tmp):
    """molecule/env.sh's environment (this checkout as mailops.postfix, containers.podman
    unpacked from the pinned wheel), plus the settings every benchmark run shares."""
    script = 'root="$1"; . "$root/molecule/env.sh" && mailops_podman_collection >&2 && env -0'
    out = subprocess.run(["bash", "-c", script, "bash", ROOT], capture_output=True, check=True).stdout
    env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    env.update({
        "ANSIBLE_PIPELINING": "true",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "lib", "callback"),
        "ANSIBLE_CALLBACKS_ENABLED": "bench_timer",
        "ANSIBLE_LOCAL_TEMP": os.path.join(tmp, "ansible-local"),
        "ANSIBLE_HOME": os.path.join(tmp, "ansible-home"),
    })
    return env


def versions(env):
    def first_line(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "?"
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    return {
        "date": datetime.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "ansible": first_line([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "--version"]),
        "python": platform.python_version(),
    }


def uptime():
    with open("/proc/loadavg") as f:
        return "load average " + ", ".join(f.read().split()[:3])


# --------------------------------------------------------------------------- playbook runs

class Run:
    """One ansible-playbook run: wall seconds, CPU seconds of the controller process tree
    (ansible-playbook, its forks and the podman CLI processes they start), per-task times."""

    def __init__(self, label, argv, env, tmp, timeout):
        self.label, self.argv = label, argv
        self.log = os.path.join(tmp, "log", label.replace(" ", "_").replace("/", "_") + ".log")
        self.timer_file = self.log[:-4] + ".json"
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        env = dict(env, MAILOPS_BENCH_TIMER_OUT=self.timer_file)
        with open(self.log, "w") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            _children.append(proc)
            timer = threading.Timer(timeout, _kill, [proc])
            timer.start()
            try:
                _pid, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                _kill(proc)      # interrupted (Ctrl-C, SIGTERM): the playbook's session goes too
                raise
            finally:
                timer.cancel()
                _children.remove(proc)
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.wall = time.perf_counter() - start
        self.cpu = usage.ru_utime + usage.ru_stime
        self.rc = proc.returncode
        self.timed_out = self.rc == -signal.SIGKILL
        self.tasks = []
        if os.path.exists(self.timer_file):
            with open(self.timer_file) as f:
                self.tasks = json.load(f)["tasks"]

    @property
    def changed(self):
        return sum(1 for t in self.tasks for h in t["hosts"].values() if h["status"] == "changed")

    def tail(self, lines=25):
        with open(self.log) as f:
            return "".join(f.readlines()[-lines:])


def _descendants(pid):
    """Processes below pid (Ansible's workers start sessions of their own)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


def _kill(proc):
    """The playbook this run started and every process below it, nothing else."""
    for pid in [proc.pid] + _descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def playbook(label, playbook_path, inventory, extra, env, tmp, timeout, forks=None, limit=None):
    argv = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), playbook_path, "-i", inventory]
    for e in extra:
        argv += ["-e", e]
    if forks:
        argv += ["--forks", str(forks)]
    if limit:
        argv += ["--limit", limit]
    if PROFILE_DIR:
        argv = [sys.executable, os.path.join(HERE, "lib", "profile_playbook.py"), "run",
                os.path.join(PROFILE_DIR, label.replace(" ", "_").replace("/", "_").replace("=", ""))] + argv[1:]
    run = Run(label, argv, env, tmp, timeout)
    state = "timeout" if run.timed_out else ("ok" if run.rc == 0 else "rc=%d" % run.rc)
    print("  %-44s %8.1f s wall %7.1f s cpu  %3d changed  %s" % (label, run.wall, run.cpu, run.changed, state),
          flush=True)
    if run.rc != 0 and not run.timed_out:
        print(run.tail(), file=sys.stderr)
    return run


def write_inventory(path, hosts, group):
    """hosts: {inventory name: container}; reached with podman exec."""
    lines = ["---", "%s:" % group, "  hosts:"]
    for name, container in hosts.items():
        lines += ["    %s:" % name,
                  "      ansible_connection: containers.podman.podman",
                  "      ansible_host: %s" % container,
                  "      ansible_python_interpreter: /usr/bin/python3"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def dump_yaml(path, data):
    """JSON is YAML: an inventory's host_vars/group_vars and ansible-playbook -e @file read it."""
    with open(path, "w") as f:
        json.dump(data, f)


# --------------------------------------------------------------------------- end to end

def entries(n, changed=False):
    """The same shape as bench/compile.py's maps: n addresses over 50 domains."""
    out = {}
    for i in range(n):
        targets = ["user%d@mbox.example" % i]
        if i % 3 == 0:
            targets.append("archive@mbox.example")
        out["alias%d@domain%d.example" % (i, i % DOMAINS)] = targets
    if changed:
        out[changed_key(n)] = ["changed@mbox.example"]
    return out


def changed_key(n):
    i = n // 2
    return "alias%d@domain%d.example" % (i, i % DOMAINS)


def role_vars(hostname, table):
    domains = collections.OrderedDict()
    for key, targets in table.items():
        local, domain = key.split("@")
        domains.setdefault(domain, {})[local] = targets
    return {
        "postfix_server_main_cf": {"myhostname": hostname, "maillog_file": "/var/log/postfix.log"},
        "postfix_server_virtual_alias_domains": [{"domain": d, "aliases": a} for d, a in domains.items()],
    }


def check_map(tb, container, expected):
    """Real postmap in the container: record count, a few keys, Postfix running."""
    keys = sorted(expected)
    probe = [keys[0], keys[len(keys) // 2], keys[-1]] + [k for k in expected if k.startswith("alias%d@" % (len(keys) // 2))]
    probe = list(dict.fromkeys(probe)) + ["nobody@domain0.example"]
    script = ("postmap -s hash:/etc/postfix/virtual | wc -l; echo --; "
              "postmap -q - hash:/etc/postfix/virtual; echo --; postfix status >/dev/null 2>&1 && echo running")
    out = tb.exec(container, script, stdin="\n".join(probe) + "\n", check=False).stdout
    parts = out.split("--\n")
    problems = []
    try:
        count = int(parts[0].strip())
    except ValueError:
        count = -1
    if count != len(expected):
        problems.append("%d records, expected %d" % (count, len(expected)))
    got = dict(line.split("\t", 1) for line in parts[1].splitlines() if "\t" in line) if len(parts) > 1 else {}
    for key in probe:
        want = ", ".join(expected[key]) if key in expected else None
        if got.get(key) != want:
            problems.append("%s -> %r, expected %r" % (key, got.get(key), want))
    if len(parts) < 3 or "running" not in parts[2]:
        problems.append("Postfix is not running")
    return problems


def e2e(args, tb, env, tmp):
    size = {"lineinfile": args.lineinfile_entries, "role": args.role_entries}
    plan = [(way, size.get(way, args.entries)) for way in args.ways]   # (way, entries)
    for n in sorted({n for _w, n in plan} - {args.entries}):
        # ours and the template at the smaller sizes too, for like-for-like ratios.
        plan += [(w, n) for w in ("ours", "template") if w in args.ways]
    rows = []
    for way, n in plan:
        hostname = "%s-%d.bench.example" % (way, n)
        container = tb.start(hostname)
        domains = " ".join("domain%d.example" % d for d in range(DOMAINS))
        setup = "postconf -e myhostname=%s maillog_file=/var/log/postfix.log" % hostname
        if way != "role":
            setup += " 'virtual_alias_domains=%s' virtual_alias_maps=hash:/etc/postfix/virtual" % domains
        tb.exec(container, setup + " && postfix start >/dev/null 2>&1")
        # The entries are inventory variables of the host (host_vars), where users declare them;
        # as -e @file they would cost every way more (ansible-playbook copies and tags extra vars
        # twice: 0.4-0.9 s more for an empty play at 10,000 aliases here).
        inv = os.path.join(tmp, "e2e-%s-%d" % (way, n))
        os.makedirs(os.path.join(inv, "host_vars"))
        write_inventory(os.path.join(inv, "hosts.yml"), {hostname: container}, "bench")
        host_vars = os.path.join(inv, "host_vars", hostname + ".json")
        print("e2e %s, %d entries (%s)" % (way, n, container), flush=True)
        for step, changed in (("first apply", False), ("change one", True), ("no change", True)):
            table = entries(n, changed)
            dump_yaml(host_vars, role_vars(hostname, table) if way == "role" else {"bench_entries": table})
            run = playbook("%s %d %s" % (way, n, step), os.path.join(HERE, "e2e", way + ".yml"), inv,
                           [], env, tmp, args.timeout)
            problems = check_map(tb, container, entries(n, changed)) if run.rc == 0 else ["playbook failed"]
            if problems:
                print("    map check: " + "; ".join(problems), flush=True)
            rows.append({"way": way, "n": n, "step": step, "wall": run.wall, "cpu": run.cpu, "rc": run.rc,
                         "timeout": run.timed_out, "changed": run.changed, "problems": problems,
                         "tasks": run.tasks})
            if run.rc != 0:
                break
        else:
            run = playbook("%s %d floor" % (way, n), os.path.join(HERE, "e2e", "floor.yml"), inv,
                           [], env, tmp, args.timeout)
            rows.append({"way": way, "n": n, "step": "floor", "wall": run.wall, "cpu": run.cpu, "rc": run.rc,
                         "timeout": run.timed_out, "changed": run.changed, "problems": [] if run.rc == 0 else
                         ["playbook failed"], "tasks": run.tasks})
        tb.remove(container)
    return rows


# --------------------------------------------------------------------------- fleet

def fleet_group_vars(counter, extra_aliases):
    # Remote targets: alias_rollout's route check rejects local users the containers lack.
    aliases = {"support": ["alice@example.net", "bob@example.net"], "chris": ["chris%d@example.net" % counter],
               "postmaster": ["postmaster"]}
    for i in range(extra_aliases):
        aliases["user%d" % i] = ["user%d@mbox.example" % i]
    return {
        "postfix_server_main_cf": {
            "inet_interfaces": "all", "default_transport": "smtp", "relay_transport": "relay",
            "myorigin": "$myhostname", "mydestination": ["$myhostname", "localhost.$mydomain", "localhost"],
            "maillog_file": "/var/log/postfix.log",
        },
        "postfix_server_aliases": {"postmaster": ["root"], "root": ["admin@example.net"]},
        "postfix_server_virtual_alias_domains": [{"domain": "example.tld", "aliases": aliases}],
    }


def fleet(args, tb, env, tmp, sizes=None, forks=None, aliases=None, nochange=True, prefix="", remove=False):
    """alias_rollout over mx1..mxN: a first apply, then per N a change in batches of one, a change
    in one batch at each number of forks and (nochange) a no-change run, then the role alone
    (mailops.postfix.site: no route preview or check) changing one alias and changing nothing.
    sqlfleet runs it for N=8 only, without the no-change and role-alone runs, with `aliases`
    extra aliases and removes the hosts."""
    role_alone = nochange
    sizes = sizes or args.fleet_sizes
    forks = forks or args.forks
    aliases = args.fleet_aliases if aliases is None else aliases
    nmax = max(sizes)
    hosts = collections.OrderedDict()
    for i in range(1, nmax + 1):
        name = "mx%d.example.tld" % i
        hosts[name] = tb.start(name)
    invdir = os.path.join(tmp, "fleet%s" % prefix.strip().replace(" ", "-"))
    os.makedirs(os.path.join(invdir, "group_vars"), exist_ok=True)
    os.makedirs(os.path.join(invdir, "host_vars"), exist_ok=True)
    write_inventory(os.path.join(invdir, "hosts.yml"), hosts, "mail_servers")
    for name in hosts:
        dump_yaml(os.path.join(invdir, "host_vars", name + ".yml"), {"postfix_server_main_cf_host": {"myhostname": name}})
    state = {"counter": 0}

    def rollout(label, names, batch, nforks, change, role_alone=False):
        if change:
            state["counter"] += 1
        label = prefix + label
        dump_yaml(os.path.join(invdir, "group_vars", "mail_servers.yml"),
                  fleet_group_vars(state["counter"], aliases))
        if role_alone:
            # The role alone (mailops.postfix.site), as a play applies it to every host at once.
            run = playbook(label, "mailops.postfix.site", invdir, [], env, tmp,
                           args.timeout, forks=nforks, limit=",".join(names))
        else:
            run = playbook(label, "mailops.postfix.alias_rollout", invdir, ["batch=%d" % batch], env, tmp,
                           args.timeout, forks=nforks, limit=",".join(names))
        want = "chris%d@example.net" % state["counter"]
        problems = []
        for name in names:
            out = tb.exec(hosts[name], "postmap -q chris@example.tld hash:/etc/postfix/virtual", check=False).stdout.strip()
            if out != want:
                problems.append("%s: chris@example.tld -> %r, expected %r" % (name, out, want))
        if problems:
            print("    map check: " + "; ".join(problems), flush=True)
        return {"label": label, "n": len(names), "batch": batch, "forks": nforks, "change": change,
                "aliases": aliases, "wall": run.wall, "cpu": run.cpu, "rc": run.rc, "timeout": run.timed_out,
                "changed": run.changed, "problems": problems, "tasks": run.tasks}

    print("%sfleet: alias_rollout over %d containers (%s...), %d extra aliases"
          % (prefix, nmax, next(iter(hosts.values())), aliases), flush=True)
    names = list(hosts)
    try:
        rows = [rollout("first apply N=%d batch=%d forks=%d" % (nmax, nmax, min(nmax, max(forks))),
                        names, nmax, min(nmax, max(forks)), False)]
        rows[-1]["kind"] = "first"
        for n in sizes:
            sub = names[:n]
            r = rollout("change N=%d batch=1" % n, sub, 1, 1, True)
            r["kind"] = "serial"
            rows.append(r)
            for f in sorted(set(min(f, n) for f in forks)) if n > 1 else []:
                r = rollout("change N=%d batch=%d forks=%d" % (n, n, f), sub, n, f, True)
                r["kind"] = "parallel"
                rows.append(r)
            if nochange:
                f = min(n, max(forks))
                r = rollout("no change N=%d batch=%d forks=%d" % (n, n, f), sub, n, f, False)
                r["kind"] = "nochange"
                rows.append(r)
                if role_alone:
                    for change in (True, False):
                        r = rollout("role alone, %s N=%d forks=%d" % ("change" if change else "no change", n, f),
                                    sub, n, f, change, role_alone=True)
                        r["kind"] = "role_change" if change else "role_nochange"
                        rows.append(r)
    finally:
        if remove:
            for container in hosts.values():
                tb.remove(container)
    return rows


# --------------------------------------------------------------------------- sql fleet

def sql_vars(db, domains):
    return {"bench_db_host": db.ip, "bench_db_name": sql_fleet.DB_NAME, "bench_db_query": sql_fleet.QUERY,
            "bench_db_reader": sql_fleet.READER, "bench_db_reader_password": db.reader_password,
            "bench_db_writer": sql_fleet.WRITER, "bench_db_writer_password": db.writer_password,
            "bench_domains": domains}


def sql_aliases(counter, extra):
    """The fleet inventory's aliases (fleet_group_vars) as rows: {address: [targets]}."""
    domain = fleet_group_vars(counter, extra)["postfix_server_virtual_alias_domains"][0]
    return {"%s@%s" % (local, domain["domain"]): targets for local, targets in domain["aliases"].items()}


def sqlfleet(args, tb, env, tmp, info):
    """Change one alias on N MX hosts: (A) alias_rollout of the file maps, in batches of one and
    in one batch with N forks, against (B) one sql_entries run on the database all N hosts query
    through proxy:pgsql:, and the time until every host's real `postmap -q` answers the new
    value. Per size of --sql-aliases, A then B, in the same run."""
    n = args.sql_hosts
    key = "chris@example.tld"
    domain = "example.tld"
    db_container = tb.start("db.example.tld")
    db = sql_fleet.Database(tb, db_container, tb.ips[db_container], tb.subnet).start([domain])
    info["postgresql"] = db.version
    mx = collections.OrderedDict()
    for i in range(1, n + 1):
        name = "sqlmx%d.example.tld" % i
        mx[name] = tb.start(name)
    inv = os.path.join(tmp, "sqlfleet.yml")
    write_inventory(inv, mx, "bench_mx")
    with open(inv, "a") as f:      # a second group, same layout as write_inventory's
        f.write("bench_db:\n  hosts:\n    db.example.tld:\n"
                "      ansible_connection: containers.podman.podman\n"
                "      ansible_host: %s\n      ansible_python_interpreter: /usr/bin/python3\n" % db_container)
    base_vars = os.path.join(tmp, "sqlfleet-vars.json")
    dump_yaml(base_vars, sql_vars(db, domain))
    print("sqlfleet: %s at %s (%s), %d MX hosts (%s...)" % (db_container, db.ip, db.version, n,
                                                            next(iter(mx.values()))), flush=True)
    rows = []
    sizes = args.sql_aliases
    db.load(sql_aliases(0, min(sizes)))
    setup = playbook("sql setup N=%d" % n, os.path.join(HERE, "sqlfleet", "setup_mx.yml"), inv, ["@" + base_vars],
                     env, tmp, args.timeout, forks=n)
    rows.append({"way": "setup", "label": "setup (lookup_client, postconf) N=%d" % n, "aliases": min(sizes),
                 "wall": setup.wall, "cpu": setup.cpu, "rc": setup.rc, "timeout": setup.timed_out,
                 "changed": setup.changed, "problems": [] if setup.rc == 0 else ["setup failed"], "tasks": setup.tasks})
    if setup.rc != 0:
        return rows
    # Postfix re-reads a client file modified in the last second until it settles
    # (dict_load_file_xt() in util/dict.c): date it back before Postfix first opens it.
    start = "touch -d '-1 min' %s && postfix start >/dev/null 2>&1" % sql_fleet.CLIENT_FILE
    for c in mx.values():
        tb.exec(c, start)
    counter = 0
    for size in sizes:
        counter += 1
        # Way A: the file rollout on its own hosts (the same aliases, inventory as `fleet`).
        a_rows = fleet(args, tb, env, tmp, sizes=[n], forks=[n], aliases=size, nochange=False,
                       prefix="A %d aliases: " % size, remove=True)
        for r in a_rows:
            r["way"] = "A"
            rows.append(r)
        # Way B: the same aliases in the database, then one sql_entries run per repeat.
        count = db.load(sql_aliases(counter * 1000, size))
        print("B %d aliases: %d rows in %s.alias" % (size, count, sql_fleet.DB_NAME), flush=True)
        for rep in range(args.sql_repeats):
            # (exclusive, pollers): the run without pollers times sql_entries alone, on a machine
            # without the pollers' postmap processes; its hosts are checked once afterwards.
            for exclusive, polled in [(False, True)] + [(True, True)] * args.sql_exclusive + [(False, False)]:
                counter += 1
                rows.append(sql_change(args, tb, env, tmp, db, mx, inv, base_vars, key, domain, size, counter,
                                       exclusive, rep, polled))
    return rows


def sql_change(args, tb, env, tmp, db, mx, inv, base_vars, key, domain, size, counter, exclusive, rep, polled=True):
    """One timed change: ONE sql_entries playbook run, then the time until every host's poller
    (real postmap -q every --sql-poll seconds) answered the new value. polled=False: no pollers,
    every host is asked once after the run (the playbook's time without the pollers' load)."""
    old = db.value(key)
    want = "chris%d@example.net" % counter
    if exclusive:
        entries = sql_aliases(counter, size)        # the whole domain declared, one value new
        extra = {"bench_entries": entries, "bench_exclusive": True, "bench_domain": domain}
        what = "whole domain (%d rows, exclusive)" % len(entries)
    else:
        extra = {"bench_entries": {key: [want]}}
        what = "one alias"
    assert extra["bench_entries"][key] == [want]
    vars_file = os.path.join(tmp, "sqlfleet-change-%d.json" % counter)
    dump_yaml(vars_file, extra)
    containers = list(mx.values())
    label = "B %d aliases: sql_entries %s %s#%d" % (size, what, "" if polled else "alone ", rep + 1)
    argv = (label, os.path.join(HERE, "sqlfleet", "change.yml"), inv, ["@" + base_vars, "@" + vars_file],
            env, tmp, args.timeout)
    problems = []
    if polled:
        sql_fleet.start_pollers(tb, containers, key, args.sql_poll)
        try:
            # Every poller answers the old value before the change (the table works on every host).
            before = sql_fleet.wait_routed(tb, containers, old, 0, 60)
            problems += ["%s: never answered %r before the change" % (c, old) for c, t in before.items() if t is None]
            t0 = time.time()
            run = playbook(*argv)
            routed = sql_fleet.wait_routed(tb, containers, want, t0, 60) if run.rc == 0 else {}
        finally:
            sql_fleet.stop_pollers(tb, containers)
    else:
        t0 = time.time()
        run = playbook(*argv)
        routed = {}
        for c in containers:
            out = tb.exec(c, "postmap -q %s %s" % (key, sql_fleet.TABLE_SPEC), check=False).stdout.strip()
            routed[c] = time.time() if out == want else None
    if run.rc != 0:
        problems.append("sql_entries playbook failed")
    problems += ["%s: not routed to %r%s" % (c, want, " within 60 s" if polled else "") for c, t in routed.items()
                 if t is None]
    got = db.value(key)
    if got != want:
        problems.append("database holds %r, expected %r" % (got, want))
    done = [t for t in routed.values() if t is not None]
    all_routed = (max(done) - t0) if polled and done and len(done) == len(containers) else None
    task = [t["wall"] for t in run.tasks if t["action"].endswith("sql_entries")]
    row = {"way": "B", "label": label, "aliases": size, "exclusive": exclusive, "polled": polled,
           "n": len(containers), "wall": run.wall, "cpu": run.cpu, "rc": run.rc, "timeout": run.timed_out,
           "changed": run.changed, "task": task[0] if task else None, "all_routed": all_routed,
           "first_routed": (min(done) - t0) if polled and done else None,
           "routed_after_end": (max(done) - t0 - run.wall) if polled and done else None,
           "routed": {c: (t - t0 if t else None) for c, t in routed.items()}, "problems": problems,
           "tasks": run.tasks}
    print("    module task %s s; %s" % (
        "%.2f" % row["task"] if row["task"] else "-",
        ("to all %d routed %s s" % (len(containers), "%.2f" % all_routed if all_routed is not None else "-"))
        if polled else "checked after the run: %d of %d routed" % (len(done), len(containers))), flush=True)
    if problems:
        print("    check: " + "; ".join(problems), flush=True)
    return row


# --------------------------------------------------------------------------- report

def where_time_goes(rows, top=8):
    """Seconds per task, summed over the given runs (task wall, as profile_tasks counts)."""
    total = collections.Counter()
    calls = collections.Counter()
    for r in rows:
        for t in r["tasks"]:
            name = t["name"] + (" [handler]" if t["handler"] else "")
            total[name] += t["wall"]
            calls[name] += sum(1 for h in t["hosts"].values() if h["status"] != "skipped")
    whole = sum(r["wall"] for r in rows) or 1
    lines = []
    for name, secs in total.most_common(top):
        lines.append("    %6.1f s %5.1f%%  %4d host-runs  %s" % (secs, 100 * secs / whole, calls[name], name))
    return lines


def _median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def sql_summary(rows):
    """Per alias count: A (serial, batch N) walls, B medians, ratios A/B (same run)."""
    out = []
    for size in dict.fromkeys(r["aliases"] for r in rows if r["way"] in ("A", "B")):
        a = {r.get("kind"): r for r in rows if r["way"] == "A" and r["aliases"] == size}
        summary = {"aliases": size}
        for kind in ("serial", "parallel"):
            if kind in a and a[kind]["rc"] == 0 and not a[kind]["problems"]:
                summary["A_" + kind] = a[kind]["wall"]
        for exclusive in (False, True):
            b = [r for r in rows if r["way"] == "B" and r["aliases"] == size and r["exclusive"] == exclusive
                 and r.get("polled", True) and not r["problems"]]
            if not b:
                continue
            tag = "B_exclusive" if exclusive else "B"
            summary[tag] = {"runs": len(b), "wall": _median(r["wall"] for r in b),
                            "task": _median(r["task"] for r in b), "all_routed": _median(r["all_routed"] for r in b),
                            "walls": [round(r["wall"], 2) for r in b],
                            "all_routed_runs": [round(r["all_routed"], 2) for r in b if r["all_routed"] is not None]}
        alone = [r for r in rows if r["way"] == "B" and r["aliases"] == size and not r.get("polled", True)
                 and not r["problems"]]
        if alone:
            summary["B_alone"] = {"runs": len(alone), "wall": _median(r["wall"] for r in alone),
                                  "task": _median(r["task"] for r in alone),
                                  "walls": [round(r["wall"], 2) for r in alone]}
        if "B" in summary and summary["B"]["all_routed"]:
            for kind in ("serial", "parallel"):
                if "A_" + kind in summary:
                    summary["ratio_" + kind] = summary["A_" + kind] / summary["B"]["all_routed"]
        out.append(summary)
    return out


# The standalone benchmarks run.py runs first, and their headings in the report.
SCRIPTS = (("compile", "Compile (bench/compile.py: ours vs C postmap/postalias, median, ratio ours/C)"),
           ("lookup", "Lookups (bench/lookup.py: every key, ours vs C postmap -q -, median, ratio ours/C)"))


def report(info, script_lines, e2e_rows, fleet_rows, sql_rows=()):
    out = ["", "=" * 100,
           "mailops.postfix benchmarks, %s; %s CPUs, %s GiB; %s; %s" % (
               info["date"], info["cpus"], info["memory_gib"], info["os"], info["ansible"]),
           "=" * 100]
    for name, heading in SCRIPTS:
        if script_lines.get(name):
            out += ["", heading]
            out += ["  " + line for line in script_lines[name]]
    if e2e_rows:
        out += ["", "End to end: virtual map on one real Postfix host (wall s; ratio = way / ours, same size and step)",
                "  %-11s %7s  %-12s %9s %9s %8s  %s" % ("way", "entries", "step", "wall s", "ratio", "changed", "map")]
        ours = {(r["n"], r["step"]): r["wall"] for r in e2e_rows if r["way"] == "ours" and r["rc"] == 0}
        for r in e2e_rows:
            base = ours.get((r["n"], r["step"]))
            ratio = "%8.2fx" % (r["wall"] / base) if base and r["rc"] == 0 else "       -"
            state = "timeout" if r["timeout"] else ("ok" if not r["problems"] else "WRONG: " + "; ".join(r["problems"]))
            row = (r["way"], r["n"], r["step"], r["wall"], ratio, r["changed"], state)
            out.append("  %-11s %7d  %-12s %9.1f %9s %8d  %s" % row)
        floor = {(r["way"], r["n"]): r["wall"] for r in e2e_rows if r["step"] == "floor" and r["rc"] == 0}
        if floor:
            out.append("  own cost = wall - floor (bench/e2e/floor.yml: ansible-playbook with the same inventory, one "
                       "ping, on the same host):")
            for r in e2e_rows:
                if r["step"] == "no change" and (r["way"], r["n"]) in floor and r["rc"] == 0:
                    out.append("    %-11s %7d  no change %.1f s - floor %.1f s = %.1f s" % (
                        r["way"], r["n"], r["wall"], floor[(r["way"], r["n"])], r["wall"] - floor[(r["way"], r["n"])]))
        for way in dict.fromkeys(r["way"] for r in e2e_rows):
            rows = [r for r in e2e_rows if r["way"] == way and r["step"] != "floor"
                    and r["n"] == max(x["n"] for x in e2e_rows if x["way"] == way)]
            out += ["  where the time goes, %s (%d entries, all steps):" % (way, rows[0]["n"])] + where_time_goes(rows, 6)
    if fleet_rows:
        out += ["", "Fleet: ansible-playbook mailops.postfix.alias_rollout, and mailops.postfix.site for the role alone "
                "(wall s; per host = wall / N)",
                "  %-36s %9s %9s %9s %8s  %s" % ("run", "wall s", "per host", "cpu s", "changed", "map")]
        for r in fleet_rows:
            state = "timeout" if r["timeout"] else ("ok" if r["rc"] == 0 and not r["problems"] else
                                                    "rc=%d %s" % (r["rc"], "; ".join(r["problems"])))
            out.append("  %-36s %9.1f %9.1f %9.1f %8d  %s" % (r["label"], r["wall"], r["wall"] / r["n"], r["cpu"],
                                                              r["changed"], state))
        serial = [r for r in fleet_rows if r.get("kind") == "serial"]
        if serial:
            out += ["  where the time goes, change runs in batches of one (all N):"] + where_time_goes(serial, 10)
    if sql_rows:
        n = max(r.get("n", 0) for r in sql_rows)
        out += ["", "SQL fleet: change one alias on %d MX hosts: (A) alias_rollout of the file maps, (B) one "
                "sql_entries run on the" % n,
                "  database they query through %s (B: median of the runs; to all routed = from the playbook's "
                "start to the last" % sql_fleet.TABLE_SPEC,
                "  host's real postmap -q answering the new value)",
                "  %-66s %9s %9s %9s %8s  %s" % ("run", "wall s", "task s", "routed s", "changed", "check")]
        for r in sql_rows:
            state = "timeout" if r["timeout"] else ("ok" if r["rc"] == 0 and not r["problems"] else
                                                    "rc=%d %s" % (r["rc"], "; ".join(r["problems"])))
            task = "%9.2f" % r["task"] if r.get("task") is not None else "%9s" % "-"
            routed = "%9.2f" % r["all_routed"] if r.get("all_routed") is not None else "%9s" % "-"
            out.append("  %-66s %9.1f %s %s %8d  %s" % (r["label"], r["wall"], task, routed, r["changed"], state))
        for s in sql_summary(sql_rows):
            line = "  %d aliases:" % s["aliases"]
            if "B" in s:
                line += " B one alias: playbook %.2f s, module task %.2f s, all routed %.2f s;" % (
                    s["B"]["wall"], s["B"]["task"] or 0, s["B"]["all_routed"] or 0)
            if "B_alone" in s:
                line += " B alone: playbook %.2f s, task %.2f s;" % (s["B_alone"]["wall"], s["B_alone"]["task"] or 0)
            for kind, name in (("serial", "batches of one"), ("parallel", "batch %d forks %d" % (n, n))):
                if "A_" + kind in s:
                    line += " A %s %.1f s" % (name, s["A_" + kind])
                    if "ratio_" + kind in s:
                        line += " (A/B %.0fx)" % s["ratio_" + kind]
                    line += ";"
            out.append(line.rstrip(";"))
    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["compile", "lookup", "e2e", "fleet", "sqlfleet"], action="append",
                    help="run only these parts (repeatable); default: all")
    ap.add_argument("--compile-args", default="", help="arguments for bench/compile.py, e.g. '--runs 1'")
    ap.add_argument("--lookup-args", default="", help="arguments for bench/lookup.py, e.g. '--sizes 10000'")
    ap.add_argument("--entries", type=int, default=10000, help="virtual map size, end to end")
    ap.add_argument("--lineinfile-entries", type=int, default=200,
                    help="map size for the lineinfile way (one module run per entry: ~0.35 s each here)")
    ap.add_argument("--role-entries", type=int, default=1000,
                    help="map size for the role way (its inventory checks grow with the square of the aliases)")
    ap.add_argument("--ways", default="ours,template,lineinfile,role", help="e2e ways (bench/e2e/WAY.yml)")
    ap.add_argument("--fleet-sizes", default="1,4,8")
    ap.add_argument("--forks", default="1,4,8")
    ap.add_argument("--fleet-aliases", type=int, default=0, help="extra virtual aliases in the fleet inventory")
    ap.add_argument("--sql-aliases", default="1000,10000",
                    help="sqlfleet: alias counts (extra aliases of the fleet inventory, the same rows in the database)")
    ap.add_argument("--sql-hosts", type=int, default=0, help="sqlfleet: MX hosts (default: the largest --fleet-sizes, 8)")
    ap.add_argument("--sql-repeats", type=int, default=3, help="sqlfleet: timed sql_entries runs per alias count")
    ap.add_argument("--sql-exclusive", action="store_true",
                    help="sqlfleet: also time sql_entries with the whole domain declared (exclusive), one value new")
    ap.add_argument("--sql-poll", type=float, default=0.2,
                    help="sqlfleet: seconds between two postmap -q of a host's poller")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per ansible-playbook run")
    ap.add_argument("--profile", metavar="DIR",
                    help="run every playbook under cProfile (bench/lib/profile_playbook.py), files in DIR/<run>/")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "out", "results.json"))
    args = ap.parse_args()
    args.ways = args.ways.split(",")
    args.fleet_sizes = [int(x) for x in args.fleet_sizes.split(",")]
    args.forks = [int(x) for x in args.forks.split(",")]
    args.sql_aliases = [int(x) for x in args.sql_aliases.split(",")]
    args.sql_hosts = args.sql_hosts or max(args.fleet_sizes)
    parts = args.only or ["compile", "lookup", "e2e", "fleet", "sqlfleet"]
    global PROFILE_DIR  # pylint: disable=global-statement
    PROFILE_DIR = os.path.abspath(args.profile) if args.profile else None

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = tempfile.mkdtemp(prefix="mailops-bench-")
    tb = None
    script_lines, e2e_rows, fleet_rows, sql_rows = {}, [], [], []
    try:
        env = ansible_env(tmp)
        info = versions(env)
        for name, _heading in SCRIPTS:
            if name not in parts:
                continue
            extra = getattr(args, name + "_args")
            print("%s: bench/%s.py %s" % (name, name, extra), flush=True)
            proc = subprocess.Popen([sys.executable, os.path.join(HERE, name + ".py")] + extra.split(),
                                    cwd=ROOT, stdout=subprocess.PIPE, text=True)
            lines = script_lines[name] = []
            for line in proc.stdout:
                print("  " + line.rstrip(), flush=True)
                lines.append(line.rstrip())
            if proc.wait() != 0:
                lines.append("(bench/%s.py exited %d)" % (name, proc.returncode))
        if "e2e" in parts or "fleet" in parts or "sqlfleet" in parts:
            # sqlfleet needs PostgreSQL and postfix-pgsql: the debian12-sql variant (all parts then use it).
            image = testbed.build_image("debian12-sql" if "sqlfleet" in parts else "debian12")
            tb = testbed.Testbed(image).open()
            probe = tb.start("probe.bench.example")
            info["postfix"] = tb.exec(probe, "postconf -h mail_version").stdout.strip()
            tb.remove(probe)
            print("hosts: %s, Postfix %s, network %s %s" % (tb.image, info["postfix"], tb.network, tb.subnet), flush=True)
        if "e2e" in parts:
            e2e_rows = e2e(args, tb, env, tmp)
        if "fleet" in parts:
            fleet_rows = fleet(args, tb, env, tmp)
        if "sqlfleet" in parts:
            info["uptime_before_sqlfleet"] = uptime()
            sql_rows = sqlfleet(args, tb, env, tmp, info)
            info["uptime_after_sqlfleet"] = uptime()
        print(report(info, script_lines, e2e_rows, fleet_rows, sql_rows))
        if sql_rows:
            print("load: %s (before sqlfleet), %s (after)" % (info["uptime_before_sqlfleet"], info["uptime_after_sqlfleet"]))
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": info, "compile": script_lines.get("compile", []),
                       "lookup": script_lines.get("lookup", []), "e2e": e2e_rows, "fleet": fleet_rows,
                       "sqlfleet": sql_rows, "sqlfleet_summary": sql_summary(sql_rows)}, f, indent=1)
        print("details (per task, per host): %s" % os.path.relpath(args.json, ROOT))
        wrong = [r for r in e2e_rows + fleet_rows + sql_rows if r["problems"] and not r["timeout"]]
        return 1 if wrong else 0
    finally:
        for proc in list(_children):
            _kill(proc)
        if tb is not None:
            tb.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
