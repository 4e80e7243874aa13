"""The private PostgreSQL fixture (tests/postgres_instance.py) and the lookup_client engine."""

from __future__ import annotations

import glob
import gzip
import os
import re
import shutil
import subprocess
import time

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _lookupclient
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError


def test_postgres_fixture_roundtrip(postgres_instance):
    pg = postgres_instance
    pg.psql("CREATE TABLE virtual (source text PRIMARY KEY, destination text NOT NULL);\n"
            "INSERT INTO virtual VALUES ('a@example.test', 'b@example.test');\n"
            "ALTER TABLE virtual OWNER TO %s;" % pg.user)
    assert pg.psql("SELECT source, destination FROM virtual;") == "a@example.test|b@example.test\n"
    # The test role over TCP with its password; a wrong password is refused (scram-sha-256).
    ok = pg.psql_as_user("SELECT destination FROM virtual WHERE source = 'a@example.test';")
    assert ok.stdout == "b@example.test\n"
    bad = pg._run(["psql", "-X", "-At", "-c", "SELECT 1",
                   pg.dsn.replace(pg.password, "wrong")], check=False)
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr
    # Private: not the system cluster's port nor its socket directory.
    assert pg.port != 5432 and str(pg.socket_dir).startswith(str(pg.root))
    pid = pg.postmaster_pid()
    assert pid and os.path.exists("/proc/%d" % pid)
    pg.stop()
    assert not pg.is_running()
    deadline = time.time() + 5
    while os.path.exists("/proc/%d" % pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % pid)
    pg.stop()  # idempotent


def test_postgres_fixture_restart_keeps_data(postgres_instance):
    pg = postgres_instance
    pg.psql("CREATE TABLE t (k text); INSERT INTO t VALUES ('kept');")
    pg.stop()
    assert not pg.is_running()
    pg.restart()
    assert pg.psql("SELECT k FROM t;") == "kept\n"


# -- the engine: parameter names and secrets -------------------------------------------------

SECRET_MARK = "S3cret-Value-91c2"


def _man_names(table_type):
    """Parameter names of the installed <type>_table(5): the ``.IP "\\fBname (default...)"``
    headings (``user, password`` is one heading)."""
    page = "/usr/share/man/man5/%s_table.5.gz" % table_type
    if not os.path.exists(page):
        pytest.skip("%s not installed" % page)
    with gzip.open(page, "rt", errors="replace") as f:
        text = f.read()
    names = set()
    for heading in re.findall(r'^\.IP "(?:\\fB)?([^"(\\]+)', text, re.M):
        for name in heading.split(","):
            name = name.strip()
            if re.match(r"^[A-Za-z_]+$", name):
                names.add(name)
    return names


def _plugin_strings(table_type):
    """The strings of the installed client plugin (cfg_get_str(parser, "name", ...) literals)."""
    found = glob.glob("/usr/lib/postfix/postfix-%s.so*" % table_type)
    if not found:
        pytest.skip("postfix-%s not installed" % table_type)
    data = open(found[0], "rb").read()
    return set(m.decode() for m in re.findall(rb"[A-Za-z_]{3,}", data))


@pytest.mark.parametrize("table_type", _lookupclient.TYPES)
def test_known_names_match_man_page_and_plugin(table_type):
    documented = _man_names(table_type)
    known = _lookupclient.KNOWN[table_type]
    ignored = set(_lookupclient.IGNORED.get(table_type, {}))
    # Every parameter the man page documents is known (or refused as ignored by Postfix) ...
    assert documented - known - ignored == set()
    # ... and every known name is documented or read by the plugin itself (undocumented or
    # obsolete names such as mysql's tls_ciphers and ldap's result_filter).
    assert known - documented - _plugin_strings(table_type) == set()
    assert _lookupclient.SECRET[table_type] <= known


def test_engine_result_never_holds_secrets(tmp_path):
    """The engine itself, without Ansible's no_log masking, keeps every secret out of its result."""
    path = str(tmp_path / "ldap.cf")
    with open(path, "w") as f:
        f.write("server_host = ldap.test\nbind_pw = old-%s\n  continued-%s\nbind_dn = cn=x\n"
                % (SECRET_MARK, SECRET_MARK))
    res = _lookupclient.edit(path, "ldap", params={"search_base": "dc=test"},
                             secret_params={"bind_pw": "new-" + SECRET_MARK})
    assert res["changed"] and res["changed_params"] == ["bind_pw", "search_base"]
    assert SECRET_MARK not in repr(res)
    assert res["before"] == "server_host = ldap.test\nbind_pw = <hidden>\nbind_dn = cn=x\n"
    assert res["after"] == ("server_host = ldap.test\nbind_pw = <hidden, changed>\nbind_dn = cn=x\n"
                            "search_base = dc=test\n")
    assert open(path).read() == ("server_host = ldap.test\nbind_pw = new-%s\nbind_dn = cn=x\n"
                                 "search_base = dc=test\n" % SECRET_MARK)
    # A bind_pw already in the file stays hidden when only other names are edited.
    res = _lookupclient.edit(path, "ldap", params={"bind_dn": "cn=y"})
    assert SECRET_MARK not in repr(res) and "bind_pw = <hidden>\n" in res["after"]
    # Errors about values name the parameter, never the value.
    for bad in ("x\n" + SECRET_MARK, "x\r" + SECRET_MARK, "x\0" + SECRET_MARK):
        with pytest.raises(PostfixError) as exc:
            _lookupclient.edit(path, "ldap", secret_params={"bind_pw": bad})
        assert SECRET_MARK not in str(exc.value) and str(exc.value).startswith("parameter bind_pw: value contains")


def test_file_problems_never_show_secrets(tmp_path):
    """Messages about lines already in the file name the line and the problem, not a value."""
    path = str(tmp_path / "pgsql.cf")
    with open(path, "w") as f:
        f.write("hosts = db\npassword %s\n" % SECRET_MARK)  # '=' missing: Postfix refuses it
    with pytest.raises(PostfixError) as exc:
        _lookupclient.edit(path, "pgsql", params={"user": "x"})
    assert str(exc.value) == ("%s:2: missing '=' after attribute name (the line is not shown: it may "
                              "hold a password)" % path)
    # A password defined twice (the last one wins, dict_load_fp) and a stray continuation line.
    with open(path, "w") as f:
        f.write("  orphan-%s\npassword = one-%s\nuser = a\npassword = two-%s\nuser = b\n"
                % (SECRET_MARK, SECRET_MARK, SECRET_MARK))
    res = _lookupclient.edit(path, "pgsql", params={"dbname": "mail"})
    assert SECRET_MARK not in repr(res)
    assert res["warnings"] == [
        "%s:1: logical line must not start with whitespace" % path,
        "%s:4: overriding earlier entry: password=<hidden>" % path,
        "%s:5: overriding earlier entry: user=a" % path,
    ]


def test_check_name_suggestions():
    with pytest.raises(PostfixError, match=r"did you mean query_filter\?"):
        _lookupclient.check_name("ldap", "query_filtre")
    with pytest.raises(PostfixError, match=r"unknown table type 'oracle'"):
        _lookupclient.check_name("oracle", "hosts")
    for table_type, names in _lookupclient.KNOWN.items():
        for name in names:
            _lookupclient.check_name(table_type, name)


def test_client_file_read_by_postfix_as_written(tmp_path):
    """A comment, a continuation line and a value with '=' and '#' reach the client as
    written: real postmap reads the sqlite client file the engine edited."""
    if not shutil.which("sqlite3"):
        pytest.skip("sqlite3 not installed")
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "main.cf").write_text("compatibility_level = 3.6\n")
    os.utime(conf / "main.cf", (1, 1))
    db = tmp_path / "t.sqlite"
    subprocess.run(["sqlite3", str(db), "CREATE TABLE t (k TEXT, v TEXT); INSERT INTO t VALUES ('a#=b', 'v=1#2');"],
                   check=True)
    path = str(conf / "sqlite.cf")
    with open(path, "w") as f:
        f.write("# sqlite_table(5)\nquery = SELECT v FROM t\n    WHERE k = 'unused'\n")
    _lookupclient.edit(path, "sqlite", params={"dbpath": str(db)})
    res = _lookupclient.edit(path, "sqlite", params={"result_format": "<%s>"})
    assert res["changed_params"] == ["result_format"]
    _lookupclient.edit(path, "sqlite", params={"query": "SELECT v FROM t WHERE k = '%s' -- # comment"})
    text = open(path).read()
    assert text.startswith("# sqlite_table(5)\nquery = SELECT v FROM t WHERE k = '%s' -- # comment\n")
    old = time.time() - 10
    os.utime(path, (old, old))  # dict_load_file_xt() (util/dict.c) waits for a file changed this second
    out = subprocess.run(["postmap", "-c", str(conf), "-q", "a#=b", "sqlite:" + path],
                         capture_output=True, text=True, check=False)
    assert (out.returncode, out.stdout) == (0, "<v=1#2>\n"), out
