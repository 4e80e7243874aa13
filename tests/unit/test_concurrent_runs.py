"""Many runs at once on one file lose nothing.

Each round starts one module call per worker process together (a barrier releases them
at once): eight of them add an entry of their own, one removes the entry an adder made the
round before, one changes a seeded entry, and for lookup tables one more compiles the
index as the postmap module. After every round the source is parsed and the index is read
by real Postfix (postmap/postalias -q -, -s; postconf), and no lock or temporary file may
be left in the directory. While the lock covered only the write of the index, runs that
read the same source text each wrote back only their own edit (on that code this test
fails in its first round: about half of the entries added at once are lost).

A run that cannot get the lock in ``lock_timeout`` seconds fails, naming the lock file and
its holder, and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _atomic
from module_runner import run_module
from parallel_runs import Crowd, lock_held_elsewhere

ADDERS = 8
ROUNDS = 15
TYPES = ["hash", "cdb", "lmdb"]


# -- what real Postfix sees --------------------------------------------------------------------
def query_all(tool, conf, spec, keys):
    """``postmap -q -`` (or postalias): the value of each key found, one run for all keys."""
    proc = subprocess.run([tool, "-c", conf, "-q", "-", spec], input="".join(k + "\n" for k in keys),
                          capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 1) and not proc.stderr, proc.stderr  # 1: some key not found
    found = {}
    for line in proc.stdout.splitlines():
        key, value = line.split("\t", 1)
        found[key[:-1] if tool == "postalias" and key.endswith(":") else key] = value
    return found


def dump(tool, conf, spec):
    """``postmap -s``: every record of the index (postalias's own records left out)."""
    out = subprocess.run([tool, "-c", conf, "-s", spec], capture_output=True, text=True, check=True).stdout
    records = dict(line.split("\t", 1) for line in out.splitlines())
    if tool == "postalias":
        records = {k[:-1] if k.endswith(":") else k: v for k, v in records.items()}
        for extra in ("@", "YP_LAST_MODIFIED", "YP_MASTER_NAME"):
            records.pop(extra, None)
    return records


def parse_source(path, aliases):
    """The entries of a source we wrote (one line each), and its first line."""
    with open(path) as f:
        lines = f.read().splitlines()
    entries = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert not line[0].isspace(), "unexpected continuation line %r" % line
        if aliases:
            key, sep, value = line.partition(":")
            assert sep, line
        else:
            key, value = line.split(None, 1)
        assert key not in entries, "duplicate entry %r" % key
        entries[key] = value.strip()
    return entries, lines[0]


def leftovers(directory):
    """Lock files (.NAME.lock) and temporary files (.NAME.XXXX.tmp) in ``directory``."""
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


def settle(path):
    """Date a just-written main.cf back: Postfix tools wait for it to settle otherwise."""
    old = time.time() - 60
    os.utime(path, (old, old))


def check_results(rnd, got, expect):
    """Every call succeeded with its own result, each in a process of its own; return how
    many of them were in progress at one moment."""
    for slot, (run, want) in enumerate(zip(got, expect)):
        result = run.result
        assert not result.get("failed"), "round %d slot %d: %s" % (rnd, slot, result.get("msg"))
        for field, value in want.items():
            assert result[field] == value, "round %d slot %d: %s is %r, not %r" % (
                rnd, slot, field, result[field], value)
    assert len({run.pid for run in got}) == len(got)
    return Crowd.in_flight(got)


def report(what, processes, checked, flights, started):
    """The runs of a round must have overlapped: most of them in progress at one moment."""
    print("%s: %d rounds x %d processes, %d entries checked in the file and by Postfix, most runs in "
          "progress at once per round %s, %.1f s"
          % (what, ROUNDS, processes, checked, flights, time.monotonic() - started))
    assert sorted(flights)[len(flights) // 2] >= processes // 2, flights


def compare(rnd, what, seen, expected):
    missing = sorted(set(expected) - set(seen))
    extra = sorted(set(seen) - set(expected))
    wrong = sorted(k for k in set(seen) & set(expected) if seen[k] != expected[k])
    assert not (missing or extra or wrong), (
        "round %d, %s: %d of %d entries missing %s, %d unexpected %s, %d with another value %s"
        % (rnd, what, len(missing), len(expected), missing, len(extra), extra, len(wrong),
           [(k, seen[k], expected[k]) for k in wrong]))


# -- lookup_table and aliases ------------------------------------------------------------------
@pytest.fixture
def conf(tmp_path):
    d = tmp_path / "etc"
    d.mkdir()
    (d / "main.cf").write_text("compatibility_level = 3.6\nmyhostname = mx.example.tld\n")
    settle(str(d / "main.cf"))
    return str(d)


def _table_case(kind):
    if kind == "aliases":
        return dict(module="aliases", tool="postalias", name="aliases",
                    seed="# seeded: this comment stays\npostmaster: root\ngone: nobody\ncounter: start\n",
                    seeded={"postmaster": "root", "gone": "nobody", "counter": "start"},
                    gone="gone", counter="counter",
                    key=lambda r, w: "r%02dw%d" % (r, w), value=lambda r, w: "user%02d-%d" % (r, w))
    return dict(module="lookup_table", tool="postmap", name="virtual",
                seed="# seeded: this comment stays\nkeep@x.tld\tkeep\ngone@x.tld\tgone\ncounter@x.tld\tstart\n",
                seeded={"keep@x.tld": "keep", "gone@x.tld": "gone", "counter@x.tld": "start"},
                gone="gone@x.tld", counter="counter@x.tld",
                key=lambda r, w: "r%02d-w%d@x.tld" % (r, w), value=lambda r, w: "v%02d-%d@y.tld" % (r, w))


@pytest.mark.parametrize("kind,type_name", [("lookup_table", t) for t in TYPES] + [("aliases", "hash")])
def test_parallel_entry_runs_lose_nothing(tmp_path, conf, kind, type_name):
    case = _table_case(kind)
    src = tmp_path / case["name"]
    src.write_text(case["seed"])
    path, spec, tool = str(src), "%s:%s" % (type_name, src), case["tool"]
    key, value = case["key"], case["value"]
    base = dict(path=path, config_dir=conf, type=type_name)

    def gone(r):
        """The key the remover removes in round ``r``: an adder's from the round before."""
        return key(r - 1, (r - 1) % ADDERS) if r else case["gone"]

    calls = [[(case["module"], dict(base, entries={key(r, w): value(r, w)})) for r in range(ROUNDS)]
             for w in range(ADDERS)]
    calls.append([(case["module"], dict(base, state="absent", entries={gone(r): None})) for r in range(ROUNDS)])
    calls.append([(case["module"], dict(base, entries={case["counter"]: "round-%02d" % r})) for r in range(ROUNDS)])
    expect = [dict(added=[key(0, w)], updated=[], removed=[]) for w in range(ADDERS)]
    expect += [dict(added=[], removed=[gone(0)]), dict(added=[], updated=[case["counter"]])]
    if kind == "lookup_table":  # a compile of the same table joins in
        calls.append([("postmap", dict(base)) for _r in range(ROUNDS)])
        expect.append({})

    expected = dict(case["seeded"])
    checked = 0
    flights = []
    started = time.monotonic()
    with Crowd(calls) as crowd:
        for rnd in range(ROUNDS):
            got = crowd.next_round()
            for w in range(ADDERS):
                expected[key(rnd, w)] = value(rnd, w)
                expect[w]["added"] = [key(rnd, w)]
            removed = gone(rnd)
            del expected[removed]
            expect[ADDERS]["removed"] = [removed]
            expected[case["counter"]] = "round-%02d" % rnd
            flights.append(check_results(rnd, got, expect))

            entries, first = parse_source(path, kind == "aliases")
            assert first == case["seed"].splitlines()[0]
            compare(rnd, "source %s" % path, entries, expected)
            compare(rnd, "index %s (%s -q)" % (spec, tool), query_all(tool, conf, spec, list(expected) + [removed]),
                    expected)
            if type_name != "cdb":  # Postfix 3.7's cdb has no sequence operation
                compare(rnd, "index %s (%s -s)" % (spec, tool), dump(tool, conf, spec), expected)
            assert leftovers(str(tmp_path)) == [], "round %d" % rnd
            checked += len(expected)
    report("%s %s" % (kind, type_name), len(calls), checked, flights, started)


# -- postconf ----------------------------------------------------------------------------------
def real_postconf(confdir):
    """(known, user-defined) parameters of main.cf as real ``postconf -n`` reads them: it
    prints the known ones and warns "unused parameter: name=value" for each other one."""
    main = os.path.join(confdir, "main.cf")
    settle(main)
    proc = subprocess.run(["postconf", "-c", confdir, "-n"], capture_output=True, text=True, check=True)
    known = dict(line.split(" = ", 1) for line in proc.stdout.splitlines())
    user, other = {}, []
    marker = "warning: %s: unused parameter: " % main
    for line in proc.stderr.splitlines():
        if marker in line:
            name, _eq, value = line.split(marker, 1)[1].partition("=")
            user[name] = value
        else:
            other.append(line)
    assert other == []
    return known, user


def parse_main_cf(path):
    params = {}
    with open(path) as f:
        for line in f.read().splitlines():
            if line.strip() and not line.startswith("#"):
                name, sep, value = line.partition(" = ")
                assert sep and not line[0].isspace(), line
                assert name not in params, "duplicate parameter %r" % name
                params[name] = value
    return params


def test_parallel_postconf_runs_lose_nothing(tmp_path):
    confdir = tmp_path / "etc"
    confdir.mkdir()
    main = confdir / "main.cf"
    main.write_text("# seeded: this comment stays\ncompatibility_level = 3.6\nmyhostname = mx.example.tld\n"
                    "mailops_test_gone = bye\nmessage_size_limit = 10240000\n")
    shutil.copy("/etc/postfix/master.cf", str(confdir / "master.cf"))
    d = str(confdir)

    def name(r, w):
        return "mailops_test_r%02d_w%d" % (r, w)

    def gone(r):
        return name(r - 1, (r - 1) % ADDERS) if r else "mailops_test_gone"

    calls = [[("postconf", dict(config_dir=d, params={name(r, w): "v%02d %d" % (r, w)})) for r in range(ROUNDS)]
             for w in range(ADDERS)]
    calls.append([("postconf", dict(config_dir=d, state="absent", params=[gone(r)])) for r in range(ROUNDS)])
    calls.append([("postconf", dict(config_dir=d, params={"message_size_limit": 20000000 + r}))
                  for r in range(ROUNDS)])
    expect = [dict(changed=True) for _i in calls]

    expected = {"mailops_test_gone": "bye"}
    checked = 0
    flights = []
    started = time.monotonic()
    with Crowd(calls) as crowd:
        for rnd in range(ROUNDS):
            got = crowd.next_round()
            for w in range(ADDERS):
                expected[name(rnd, w)] = "v%02d %d" % (rnd, w)
                expect[w]["changed_params"] = [name(rnd, w)]
            del expected[gone(rnd)]
            expect[ADDERS]["changed_params"] = [gone(rnd)]
            expect[ADDERS + 1]["changed_params"] = ["message_size_limit"]
            flights.append(check_results(rnd, got, expect))

            with open(str(main)) as f:
                assert f.readline() == "# seeded: this comment stays\n"
            params = parse_main_cf(str(main))
            assert params.pop("message_size_limit") == str(20000000 + rnd)
            compare(rnd, "main.cf", {k: v for k, v in params.items() if k.startswith("mailops_")}, expected)
            known, user = real_postconf(d)
            assert known["message_size_limit"] == str(20000000 + rnd)
            compare(rnd, "postconf -n", user, expected)
            assert leftovers(d) == [], "round %d" % rnd
            checked += len(expected) + 1
    report("postconf", len(calls), checked, flights, started)


# -- lock_timeout ------------------------------------------------------------------------------
def snapshot(directory):
    """Bytes, mtime and inode of every file in ``directory`` but lock files."""
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".lock"):
            continue
        path = os.path.join(directory, name)
        st = os.stat(path)
        with open(path, "rb") as f:
            out[name] = (f.read(), st.st_mtime_ns, st.st_ino)
    return out


def _timeout_case(tmp_path, module):
    """(directory, file whose lock the module takes, args of a run that would change it)."""
    d = tmp_path / "etc"
    d.mkdir()
    conf, main = str(d), str(d / "main.cf")
    with open(main, "w") as f:
        f.write("compatibility_level = 3.6\nmyhostname = mx.example.tld\n")
        if module == "newaliases":
            f.write("alias_database = hash:%s\n" % (d / "aliases"))
    settle(main)
    if module == "postconf":
        return conf, main, dict(config_dir=conf, params={"mailops_test": "v"})
    if module in ("aliases", "newaliases"):
        src = d / "aliases"
        src.write_text("postmaster: root\n")
        run_module("aliases", dict(path=str(src), config_dir=conf, type="hash"))
        if module == "newaliases":
            return conf, str(src), dict(config_dir=conf, force=True)
        return conf, str(src), dict(path=str(src), config_dir=conf, type="hash", entries={"new": "root"})
    src = d / "virtual"
    src.write_text("a@x.tld a\n")
    run_module("postmap", dict(path=str(src), config_dir=conf, type="hash"))
    if module == "postmap":
        return conf, str(src), dict(path=str(src), config_dir=conf, type="hash", force=True)
    return conf, str(src), dict(path=str(src), config_dir=conf, type="hash", entries={"new@x.tld": "n"})


@pytest.mark.parametrize("module", ["lookup_table", "aliases", "postconf", "postmap", "newaliases"])
def test_lock_timeout_fails_clearly_and_changes_nothing(tmp_path, module):
    directory, locked_file, args = _timeout_case(tmp_path, module)
    lock_file = _atomic.lock_path(locked_file)
    before = snapshot(directory)
    with lock_held_elsewhere(locked_file) as holder:
        started = time.monotonic()
        result = run_module(module, dict(args, lock_timeout=0.5), fail_ok=True)
        elapsed = time.monotonic() - started
        assert result.get("failed"), result
        assert 0.5 <= elapsed < 2.0, elapsed
        assert lock_file in result["msg"] and "held by pid %d" % holder in result["msg"], result["msg"]
        assert "Traceback" not in result["msg"]
        assert snapshot(directory) == before
        # Check mode takes no lock: it reports the change at once.
        if module != "newaliases":
            started = time.monotonic()
            check = run_module(module, dict(args, lock_timeout=0.5), check_mode=True)
            assert check["changed"] and time.monotonic() - started < 0.5
        assert snapshot(directory) == before
    assert leftovers(directory) == []
    # With the lock free, the same run goes through.
    assert run_module(module, dict(args, lock_timeout=0.5))["changed"]
    assert leftovers(directory) == []
