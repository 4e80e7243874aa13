"""postmap module: ``query`` of a network table (``table``) and ``compare`` of a local file table
with a network table.

Oracles: a private real PostgreSQL cluster (tests/postgres_instance.py) read by the host's real
postmap with the pgsql client plugin, a sqlite3 database file, and the same keys asked with real
``postmap -q`` one by one.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from module_runner import run_module
from sqlite_db import alias_database

PASSWORD_MARK = "Pw-Never-Shown-5c1e"


def settle(path):
    """Date a just-written file back: Postfix re-reads a client file (dict_load_file_xt(),
    util/dict.c) or main.cf modified in the last second until it settles, 1 s each time."""
    st = os.stat(path)
    os.utime(path, (st.st_atime, st.st_mtime - 10))


def write_client(path, lines):
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    settle(path)


def postmap_q(conf, key, spec):
    proc = subprocess.run(["postmap", "-c", conf, "-q", key, spec], capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def local_hash(tmp_path, conf, text):
    src = tmp_path / "virtual"
    src.write_text(text)
    settle(src)
    res = run_module("postmap", dict(path=str(src), config_dir=conf, type="hash"))
    assert res["changed"] and res["count"] == len(text.splitlines()), res
    return src


@pytest.fixture
def pgsql_table(postgres_instance, conf):
    """A two-column alias table in PostgreSQL and a pgsql_table(5) client file for it."""
    pg = postgres_instance
    if "pgsql" not in subprocess.run(["postconf", "-m"], capture_output=True, text=True, check=False).stdout.split():
        pytest.skip("postfix-pgsql not installed")
    pg.psql("CREATE TABLE virtual (source text PRIMARY KEY, destination text NOT NULL);\n"
            "INSERT INTO virtual VALUES ('info@net.test', 'bob@mbox.test'), ('sales@net.test', 'carol@mbox.test'),"
            " ('upper@net.test', 'dave@mbox.test'), ('dbonly@net.test', 'erin@mbox.test');\n"
            "ALTER TABLE virtual OWNER TO %s;" % pg.user)
    path = os.path.join(conf, "pgsql-virtual.cf")
    write_client(path, ["hosts = %s" % pg.hostport, "user = %s" % pg.user, "password = %s" % pg.password,
                        "dbname = %s" % pg.dbname, "query = SELECT destination FROM virtual WHERE source = '%s'"])
    return pg, path, "pgsql:" + path


def test_pgsql_query_compare_and_database_down(pgsql_table, conf, tmp_path):
    pg, path, spec = pgsql_table

    # query: one postmap -q - run for all keys; found keys as given (folded by postmap), null
    # for an unknown one; the same answers as real postmap -q key by key.
    keys = ["info@net.test", "SALES@Net.Test", "nobody@net.test"]
    res = run_module("postmap", dict(table=spec, config_dir=conf, query=keys))
    assert res["changed"] is False and res["table"] == spec and res["type"] == "pgsql", res
    assert res["lookups"] == {"info@net.test": "bob@mbox.test", "SALES@Net.Test": "carol@mbox.test",
                              "nobody@net.test": None}, res
    for key in keys:
        rc, out, _err = postmap_q(conf, key, spec)
        assert (out[:-1] if rc == 0 else None) == res["lookups"][key]
    assert pg.password not in json.dumps(res)
    assert run_module("postmap", dict(table=spec, config_dir=conf, query=keys), check_mode=True) == res

    # compare: a local hash table with the same entries plus one differing value and one key
    # the database lacks; an upper-case source key is stored folded and asked folded.
    src = local_hash(tmp_path, conf, "info@net.test bob@mbox.test\n"
                                     "sales@net.test zed@mbox.test\n"
                                     "Upper@net.test dave@mbox.test\n"
                                     "fileonly@net.test frank@mbox.test\n")
    index = str(src) + ".db"
    before = [os.stat(p).st_mtime_ns for p in (src, index, path)]
    res = run_module("postmap", dict(path=str(src), config_dir=conf, compare=spec))
    assert res["changed"] is False and res["compared"] == 4, res
    assert res["differences"] == [
        {"key": "fileonly@net.test", "expected": "frank@mbox.test", "got": None},
        {"key": "sales@net.test", "expected": "zed@mbox.test", "got": "carol@mbox.test"},
    ], res
    assert run_module("postmap", dict(path=str(src), config_dir=conf, compare=spec), check_mode=True) == res
    assert [os.stat(p).st_mtime_ns for p in (src, index, path)] == before
    assert pg.password not in json.dumps(res)
    # The database catches up: no differences.
    pg.psql("UPDATE virtual SET destination = 'zed@mbox.test' WHERE source = 'sales@net.test';\n"
            "INSERT INTO virtual VALUES ('fileonly@net.test', 'frank@mbox.test');")
    res = run_module("postmap", dict(path=str(src), config_dir=conf, compare=spec))
    assert res["differences"] == [] and res["compared"] == 4, res

    # A wrong password: Postfix's error, not "not found", and no password in it.
    write_client(path, ["hosts = %s" % pg.hostport, "user = %s" % pg.user, "password = wrong-%s" % PASSWORD_MARK,
                        "dbname = %s" % pg.dbname, "query = SELECT destination FROM virtual WHERE source = '%s'"])
    res = run_module("postmap", dict(table=spec, config_dir=conf, query=keys), fail_ok=True)
    assert res["failed"] and "fatal: table %s: query error" % spec in res["msg"], res
    assert PASSWORD_MARK not in json.dumps(res)
    write_client(path, ["hosts = %s" % pg.hostport, "user = %s" % pg.user, "password = %s" % pg.password,
                        "dbname = %s" % pg.dbname, "query = SELECT destination FROM virtual WHERE source = '%s'"])

    # The database stopped: the lookup fails with Postfix's message (dict_pgsql.c: every host
    # down -> DICT_ERR_RETRY; postmap_queries(): "table ...: query error"), for query and compare.
    pg.stop()
    rc, _out, err = postmap_q(conf, "info@net.test", spec)
    assert rc == 1 and "query error" in err
    for args in (dict(table=spec, config_dir=conf, query=keys), dict(path=str(src), config_dir=conf, compare=spec)):
        for check_mode in (False, True):
            res = run_module("postmap", args, check_mode=check_mode, fail_ok=True)
            assert res["failed"] and "lookups" not in res and "differences" not in res, res
            assert res["msg"].startswith(spec + ": postmap -q failed: ") and "fatal: table %s: query error" % spec \
                in res["msg"], res
            assert pg.password not in json.dumps(res)


def test_sqlite_query_compare(conf, tmp_path):
    db = alias_database(tmp_path / "aliases.sqlite", [("info@lite.test", "bob@mbox.test"), ("tab@lite.test", "a\tb")])
    path = os.path.join(conf, "sqlite-virtual.cf")
    write_client(path, ["dbpath = %s" % db, "query = SELECT destination FROM virtual WHERE source='%s'"])
    spec = "sqlite:" + path
    res = run_module("postmap", dict(table=spec, config_dir=conf,
                                     query=["INFO@lite.test", "tab@lite.test", "x@lite.test", "info@lite.test"]))
    assert res["lookups"] == {"INFO@lite.test": "bob@mbox.test", "tab@lite.test": "a\tb", "x@lite.test": None,
                              "info@lite.test": "bob@mbox.test"}, res
    src = local_hash(tmp_path, conf, "info@lite.test bob@mbox.test\nother@lite.test x@mbox.test\n")
    res = run_module("postmap", dict(path=str(src), config_dir=conf, compare=spec))
    assert res["differences"] == [{"key": "other@lite.test", "expected": "x@mbox.test", "got": None}], res


@pytest.mark.parametrize("args, message", [
    (dict(table="pgsql:/etc/postfix/x.cf", query=["a\nb"]), "line break"),
    (dict(table="pgsql:/etc/postfix/x.cf", query=[""]), "empty key"),
    (dict(table="no-type-here", query=["a"]), "not a Postfix table"),
    (dict(table="nosuchtype:/etc/postfix/x.cf", query=["a"]), "has no nosuchtype table type"),
    (dict(table="pgsql:/etc/postfix/x.cf"), "missing parameter(s) required by 'table': query"),
    (dict(table="pgsql:/etc/postfix/x.cf", type="hash", query=["a"]), "mutually exclusive"),
])
def test_refused_arguments(conf, args, message):
    res = run_module("postmap", dict(args, config_dir=conf), fail_ok=True)
    assert res["failed"] and message in res["msg"], res


def test_missing_client_file_fails_with_postfix_text(conf):
    spec = "sqlite:%s/none.cf" % conf
    res = run_module("postmap", dict(table=spec, config_dir=conf, query=["a"]), fail_ok=True)
    assert res["failed"] and "fatal: open %s/none.cf: No such file or directory" % conf in res["msg"], res


def test_proxy_pgsql_compare_through_a_running_postfix(postgres_instance, postfix_instance, tmp_path):
    """The tutorial's question as an MX host asks it: proxy:pgsql: answered by proxymap(8)."""
    pg, pf = postgres_instance, postfix_instance
    conf = str(pf.config_dir)
    pg.psql("CREATE TABLE virtual (source text PRIMARY KEY, destination text NOT NULL);\n"
            "INSERT INTO virtual VALUES ('info@net.test', 'bob@mbox.test');\n"
            "ALTER TABLE virtual OWNER TO %s;" % pg.user)
    path = os.path.join(conf, "pgsql-virtual.cf")
    # hosts as a URI holding the password (pgsql_table(5); Postfix 3.7 still wants dbname):
    # dict_pgsql.c's connection warning prints the URI, password included; never shown here.
    write_client(path, ["hosts = postgresql://%s:%s@%s/%s" % (pg.user, pg.password, pg.hostport, pg.dbname),
                        "dbname = %s" % pg.dbname, "query = SELECT destination FROM virtual WHERE source = '%s'"])
    proxied = "proxy:pgsql:" + path
    # A client file proxymap(8) cannot use (no dbname): proxymap dies on it, postmap retries.
    broken = os.path.join(conf, "pgsql-broken.cf")
    write_client(broken, ["hosts = %s" % pg.hostport, "query = SELECT 1"])
    default_read_maps = pf.postconf("-dh", "proxy_read_maps").strip()
    pf.write_main(proxy_read_maps="%s %s proxy:pgsql:%s" % (default_read_maps, proxied, broken))
    settle(pf.config_dir / "main.cf")

    # No running Postfix: refused at once, not after postmap's retries of the proxymap socket.
    res = run_module("postmap", dict(table=proxied, config_dir=conf, query=["info@net.test"]), fail_ok=True)
    assert res["failed"] and "needs a running Postfix (proxymap(8))" in res["msg"], res

    pf.start()
    src = local_hash(tmp_path, conf, "info@net.test bob@mbox.test\nsales@net.test carol@mbox.test\n")
    res = run_module("postmap", dict(path=str(src), config_dir=conf, compare=proxied))
    assert res["differences"] == [{"key": "sales@net.test", "expected": "carol@mbox.test", "got": None}], res
    res = run_module("postmap", dict(table=proxied, config_dir=conf, query=["info@net.test", "x@net.test"]))
    assert res["type"] == "proxy:pgsql" and res["lookups"] == {"info@net.test": "bob@mbox.test",
                                                               "x@net.test": None}, res

    # The database stopped: proxymap's lookup fails; postmap reports it, with no password.
    pg.stop()
    res = run_module("postmap", dict(table="pgsql:" + path, config_dir=conf, query=["info@net.test"]), fail_ok=True)
    assert res["failed"] and "query error" in res["msg"] and "Connection refused" in res["msg"], res
    assert pg.password not in json.dumps(res), res
    assert "postgresql://%s:<hidden>@%s/%s" % (pg.user, pg.hostport, pg.dbname) in res["msg"], res
    res = run_module("postmap", dict(path=str(src), config_dir=conf, compare=proxied), fail_ok=True)
    assert res["failed"] and "query error" in res["msg"] and "differences" not in res, res
    assert pg.password not in json.dumps(res), res

    # Last (master(8) then throttles proxymap for a minute): a client file proxymap dies on.
    res = run_module("postmap", dict(table="proxy:pgsql:" + broken, config_dir=conf, query=["a"], timeout=3),
                     fail_ok=True)
    assert res["failed"] and "did not answer within 3 seconds; proxymap(8) did not answer" in res["msg"], res
    assert "proxymap" in pf.wait_for_log("bad string length 0 < 1: dbname")
