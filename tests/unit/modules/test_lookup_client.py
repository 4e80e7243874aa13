"""lookup_client: pgsql:/sqlite: client files that real Postfix reads.

Oracles: real ``postmap -q`` against a private PostgreSQL cluster (tests/postgres_instance.py)
and a sqlite3 database file, ``proxy:pgsql:`` through a running private Postfix's proxymap(8),
and SMTP delivery through an SQL-backed virtual alias into a Maildir.
"""

from __future__ import annotations

import json
import os
import smtplib
import stat
import subprocess
import sys

import pytest

from module_runner import run_module
from sqlite_db import alias_database
from postfix_instance import MAILBOX_DOMAIN

SQL_DOMAIN = "sql.test"
PASSWORD_MARK = "Pw-Never-Shown-7f3a"


def client(path, type_name="pgsql", params=None, secret_params=None, **kw):
    args = dict(path=str(path), type=type_name, params=params or {}, **kw)
    if secret_params is not None:
        args["secret_params"] = secret_params
    return args


def pgsql_params(pg):
    return {"hosts": pg.hostport, "user": pg.user, "dbname": pg.dbname,
            "query": "SELECT destination FROM virtual WHERE source = '%s'"}


def settle(path):
    """Date a just-written client file back: Postfix reads it with dict_load_file_xt()
    (util/dict.c), which re-reads a file modified in the last second until it settles,
    sleeping 1 s each time."""
    os.utime(path, (os.stat(path).st_atime, os.stat(path).st_mtime - 10))


def postmap_q(pf, key, spec):
    settle(spec.rsplit(":", 1)[1])
    proc = pf.run("postmap", "-q", key, spec, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_pgsql_client_postmap_proxy_and_smtp_delivery(postgres_instance, postfix_instance):
    pg, pf = postgres_instance, postfix_instance
    # The data: a two-column alias table owned by the role Postfix logs in as.
    pg.psql("CREATE TABLE virtual (source text PRIMARY KEY, destination text NOT NULL);\n"
            "INSERT INTO virtual VALUES ('info@%s', 'bob@%s'), ('sales@%s', 'bob@%s,carol@%s');\n"
            "ALTER TABLE virtual OWNER TO %s;"
            % (SQL_DOMAIN, MAILBOX_DOMAIN, SQL_DOMAIN, MAILBOX_DOMAIN, MAILBOX_DOMAIN, pg.user))
    path = pf.config_dir / "pgsql-virtual.cf"
    spec = "pgsql:%s" % path

    res = run_module("lookup_client", client(path, params=pgsql_params(pg),
                                             secret_params={"password": pg.password}))
    assert res["changed"] and res["created"], res
    assert sorted(res["changed_params"]) == ["dbname", "hosts", "password", "query", "user"]
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
    assert st.st_gid == __import__("grp").getgrnam("postfix").gr_gid
    assert pg.password not in json.dumps(res)
    assert "password = <hidden, changed>" in res["diff"]["after"]

    # Real postmap(1) with the pgsql client plugin: the values the database holds.
    assert postmap_q(pf, "info@%s" % SQL_DOMAIN, spec)[:2] == (0, "bob@%s\n" % MAILBOX_DOMAIN)
    assert postmap_q(pf, "sales@%s" % SQL_DOMAIN, spec)[:2] == (0, "bob@%s,carol@%s\n" % (
        MAILBOX_DOMAIN, MAILBOX_DOMAIN))
    assert postmap_q(pf, "nobody@%s" % SQL_DOMAIN, spec)[0] == 1

    # The password really is used: a wrong one (given as a secret) makes the lookup fail.
    res = run_module("lookup_client", client(path, secret_params={"password": "wrong-" + PASSWORD_MARK}))
    assert res["changed"] and res["changed_params"] == ["password"], res
    rc, out, err = postmap_q(pf, "info@%s" % SQL_DOMAIN, spec)
    # dict_pgsql.c: every host failed -> "query error", postmap exits with fatal (status 1).
    assert out == "" and "password authentication failed" in err and "fatal: table %s: query error" % spec in err, err
    assert "password authentication failed for user \"%s\"" % pg.user in pg.log()
    res = run_module("lookup_client", client(path, secret_params={"password": pg.password}))
    assert res["changed"]
    assert postmap_q(pf, "info@%s" % SQL_DOMAIN, spec)[:2] == (0, "bob@%s\n" % MAILBOX_DOMAIN)

    # A private Postfix reading the aliases through proxymap(8) (proxy_read_maps), delivering
    # into Maildirs.
    proxied = "proxy:" + spec
    pf.add_mailboxes("bob", "carol")
    default_read_maps = pf.postconf("-dh", "proxy_read_maps").strip()
    pf.write_main(virtual_alias_domains=SQL_DOMAIN, virtual_alias_maps=proxied,
                  proxy_read_maps="%s %s" % (default_read_maps, proxied))
    pf.start()
    assert postmap_q(pf, "info@%s" % SQL_DOMAIN, proxied)[:2] == (0, "bob@%s\n" % MAILBOX_DOMAIN)
    # An unknown address of the SQL-backed domain is refused at RCPT time (virtual(5)).
    code, reply = pf.rcpt_code("nobody@%s" % SQL_DOMAIN)
    assert code == 550 and "User unknown in virtual alias table" in reply, (code, reply)
    msgid = pf.send("sales@%s" % SQL_DOMAIN)
    for user in ("bob", "carol"):
        headers = pf.headers(pf.wait_for_delivery(user, msgid))
        assert headers["Delivered-To"] == "%s@%s" % (user, MAILBOX_DOMAIN)
    assert "proxymap" not in pf.log() or "fatal" not in pf.log(), pf.log()

    # A row added in the database routes at once (no reload, no file change).
    pg.psql("INSERT INTO virtual VALUES ('new@%s', 'carol@%s');" % (SQL_DOMAIN, MAILBOX_DOMAIN))
    msgid = pf.send("new@%s" % SQL_DOMAIN)
    pf.wait_for_delivery("carol", msgid)

    # Fault: the database stops while mail arrives. proxymap's lookup fails (DICT_ERR_RETRY,
    # dict_pgsql.c) and smtpd answers 4xx: the client keeps the message, nothing is bounced.
    pg.stop()
    code, reply = pf.rcpt_code("info@%s" % SQL_DOMAIN)
    assert (code, reply) == (451, "4.3.0 <info@%s>: Temporary lookup failure" % SQL_DOMAIN), (code, reply)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        pf.send("info@%s" % SQL_DOMAIN)
    assert refused.value.recipients["info@%s" % SQL_DOMAIN][0] == 451
    assert "status=bounced" not in pf.log()
    # The database is back. A process that saw it down stays away from that host for 60 s
    # (plpgsql_down_host(): RETRY_CONN_INTV in dict_pgsql.c); a reload starts fresh proxymap
    # and smtpd processes, and the retried message is delivered.
    pg.restart()
    before = pf.children()
    pf.run("postfix", "reload")
    pf.wait_for_exit(before)
    msgid = pf.send("info@%s" % SQL_DOMAIN)
    pf.wait_for_delivery("bob", msgid)


def test_sqlite_client_postmap(conf, tmp_path):
    db = alias_database(tmp_path / "aliases.sqlite", [("info@lite.test", "bob@mbox.test")])
    path = os.path.join(conf, "sqlite-virtual.cf")
    res = run_module("lookup_client", client(path, "sqlite", params={
        "dbpath": str(db), "query": "SELECT destination FROM virtual WHERE source='%s'"}))
    assert res["changed"] and res["diff"]["before"] == "", res

    def q(key):
        settle(path)
        proc = subprocess.run(["postmap", "-c", conf, "-q", key, "sqlite:" + path],
                              capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout

    assert q("info@lite.test") == (0, "bob@mbox.test\n")
    assert q("other@lite.test")[0] == 1
    # result_format (db_common.c) changes what Postfix returns: proves the edited file is read.
    res = run_module("lookup_client", client(path, "sqlite", params={"result_format": "%s, archive@mbox.test"}))
    assert res["changed_params"] == ["result_format"]
    assert q("info@lite.test") == (0, "bob@mbox.test, archive@mbox.test\n")
    res = run_module("lookup_client", client(path, "sqlite", params=["result_format"], state="absent"))
    assert res["changed_params"] == ["result_format"]
    assert q("info@lite.test") == (0, "bob@mbox.test\n")


def test_check_mode_diff_idempotence_lossless(tmp_path):
    path = tmp_path / "pgsql-virtual.cf"
    args = client(path, params={"hosts": "db1.example.test db2.example.test", "user": "postfix",
                                "dbname": "mail", "query": "SELECT goto FROM alias WHERE address='%s'"},
                  secret_params={"password": PASSWORD_MARK})
    res = run_module("lookup_client", args, check_mode=True)
    assert res["changed"] and res["created"] and not path.exists(), res
    assert PASSWORD_MARK not in json.dumps(res)
    res = run_module("lookup_client", args)
    assert res["changed"] and path.read_text().count(PASSWORD_MARK) == 1
    mtime = os.stat(path).st_mtime_ns
    res = run_module("lookup_client", args)
    assert not res["changed"] and res["changed_params"] == [] and "diff" not in res, res
    assert os.stat(path).st_mtime_ns == mtime
    res = run_module("lookup_client", args, check_mode=True)
    assert not res["changed"]

    # Lossless: comments, a continuation line and unknown order survive an edit elsewhere.
    text = ("# virtual aliases, see pgsql_table(5)\n"
            "hosts = db1.example.test\n"
            "\tdb2.example.test\n"
            "user = postfix\n"
            "\n"
            "password = %s\n"
            "dbname = mail\n"
            "query = SELECT goto FROM alias\n"
            "    WHERE address='%%s' AND active\n" % PASSWORD_MARK)
    path.write_text(text)
    os.chmod(path, 0o644)
    res = run_module("lookup_client", client(path, params={"dbname": "mail2"}), check_mode=True)
    assert res["changed"] and path.read_text() == text
    assert res["attributes_changed"] == ["mode 0644 -> 0640"]
    res = run_module("lookup_client", client(path, params={"dbname": "mail2"}))
    assert path.read_text() == text.replace("dbname = mail\n", "dbname = mail2\n")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert res["diff"]["before"] == text.replace(PASSWORD_MARK, "<hidden>")
    assert "password = <hidden>\n" in res["diff"]["after"]
    # A postgresql:// URI in hosts can be a secret too: hidden in the diff, with its continuation.
    res = run_module("lookup_client", client(path, secret_params={"hosts": "postgresql://u:%s@db/mail" % PASSWORD_MARK}))
    assert res["changed_params"] == ["hosts"]
    assert "hosts = <hidden, changed>\nuser = postfix\n" in res["diff"]["after"]
    assert "hosts = <hidden>\nuser = postfix\n" in res["diff"]["before"]
    assert PASSWORD_MARK not in json.dumps(res)
    # The mode alone: fixed, reported, nothing rewritten.
    os.chmod(path, 0o600)
    mtime = os.stat(path).st_mtime_ns
    res = run_module("lookup_client", client(path, params={"dbname": "mail2"}))
    assert res["changed"] and res["changed_params"] == [] and res["attributes_changed"] == ["mode 0600 -> 0640"]
    assert os.stat(path).st_mtime_ns == mtime and stat.S_IMODE(os.stat(path).st_mode) == 0o640
    # absent
    res = run_module("lookup_client", client(path, params=["dbname", "user"], state="absent", backup=True))
    assert sorted(res["changed_params"]) == ["dbname", "user"] and os.path.exists(res["backup_file"])
    assert "dbname" not in path.read_text() and "user" not in path.read_text()
    res = run_module("lookup_client", client(path, params=["dbname"], state="absent"))
    assert not res["changed"]


@pytest.mark.parametrize("type_name, args, message", [
    ("pgsql", {"params": {"dbnmae": "mail"}}, "unknown pgsql_table(5) parameter 'dbnmae'; did you mean dbname?"),
    ("ldap", {"params": {"serach_base": "dc=x"}}, "did you mean search_base?"),
    ("pgsql", {"params": {"bind_dn": "cn=x"}}, "it is a parameter of ldap tables"),
    ("ldap", {"params": {"cache": "yes"}}, "ignored by Postfix"),
    ("pgsql", {"params": {"password": PASSWORD_MARK}}, "give it in secret_params, not params"),
    ("mysql", {"params": {"password": PASSWORD_MARK}}, "give it in secret_params, not params"),
    ("ldap", {"params": {"bind_pw": PASSWORD_MARK}}, "give it in secret_params, not params"),
    ("pgsql", {"params": {"query": "SELECT 1\nFROM x"}}, "parameter query: value contains a newline"),
    ("pgsql", {"secret_params": {"password": "a\nb" + PASSWORD_MARK}}, "parameter password: value contains a newline"),
    ("pgsql", {"params": {"query": "x\0y"}}, "contains a NUL byte"),
    ("pgsql", {"params": {"user": "pg-user-a"}, "secret_params": {"user": "pg-user-b"}}, "given in both"),
    ("pgsql", {"params": {}}, "empty"),
    ("sqlite", {"params": {"hosts": "x"}}, "unknown sqlite_table(5) parameter 'hosts'"),
])
def test_bad_input_refused(tmp_path, type_name, args, message):
    path = tmp_path / "client.cf"
    path.write_text("# kept\n")
    res = run_module("lookup_client", dict(path=str(path), type=type_name, **args), fail_ok=True)
    assert res.get("failed") and message in res["msg"], res
    assert PASSWORD_MARK not in json.dumps(res)
    assert path.read_text() == "# kept\n"


def test_bad_file_and_path(tmp_path):
    path = tmp_path / "client.cf"
    path.write_text("hosts = db\n= orphan value\n")
    res = run_module("lookup_client", client(path, params={"user": "x"}), fail_ok=True)
    assert res["msg"] == "%s:2: missing attribute name (the line is not shown: it may hold a password)" % path
    res = run_module("lookup_client", client("relative.cf", params={"user": "x"}), fail_ok=True)
    assert "must be an absolute file name" in res["msg"]
    res = run_module("lookup_client", client(tmp_path / "no" / "x.cf", params={"user": "x"}), fail_ok=True)
    assert "no such directory" in res["msg"]
    # Names the client does not know that are already in the file: reported, kept.
    path.write_text("hosts = db\ndbnmae = mail\n")
    res = run_module("lookup_client", client(path, params={"user": "x"}))
    assert res["warnings_file"] == ["%s:2: unknown pgsql_table(5) parameter 'dbnmae'; did you mean dbname?" % path]
    assert path.read_text() == "hosts = db\ndbnmae = mail\nuser = x\n"


def test_playbook_verbose_diff_never_shows_password(tmp_path):
    path = tmp_path / "ldap-aliases.cf"
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: LDAP client\n"
        "      mailops.postfix.lookup_client:\n"
        "        path: %s\n"
        "        type: ldap\n"
        "        params:\n"
        "          server_host: [ldap://ldap1.test, ldap://ldap2.test]\n"
        "          search_base: dc=example,dc=test\n"
        "          query_filter: (mail=%%s)\n"
        "          result_attribute: maildrop\n"
        "          bind_dn: cn=postfix,dc=example,dc=test\n"
        "        secret_params:\n"
        "          bind_pw: \"{{ pw }}\"\n" % path)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(root, ".build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    outputs = []
    for pw, verbosity in (("first-" + PASSWORD_MARK, "-v"), ("second-" + PASSWORD_MARK, "-vvv")):
        proc = subprocess.run([ansible_playbook, "-i", "localhost,", "-c", "local", verbosity, "--diff",
                               "-e", "ansible_python_interpreter=%s" % sys.executable,
                               "-e", "pw=%s" % pw, str(playbook)],
                              env=env, capture_output=True, text=True, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert "changed=1" in out and "bind_pw = <hidden, changed>" in out, out
        assert PASSWORD_MARK not in out.replace("-e pw=%s" % pw, ""), out
        assert "bind_pw = %s\n" % pw in path.read_text()
        outputs.append(out)
    assert "server_host = ldap://ldap1.test, ldap://ldap2.test" in outputs[0]
