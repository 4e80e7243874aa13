"""sql_entries against a real PostgreSQL (private cluster), with real Postfix reading the rows
through a pgsql: client file (postmap -q)."""

import grp
import os
import subprocess
import sys
import time

import pytest

from module_runner import run_module

pgi = pytest.importorskip("postgres_instance")
pytest.importorskip("psycopg2")

PAIRS = "CREATE TABLE virtual (source varchar(255) PRIMARY KEY, destination text NOT NULL);"

# PostfixAdmin 3.3's PostgreSQL tables (tests/postfixadmin.sql) and two domains.
with open(os.path.join(os.path.dirname(__file__), "..", "..", "postfixadmin.sql")) as _schema:
    POSTFIXADMIN = _schema.read() + "INSERT INTO domain (domain) VALUES ('example.com'), ('example.org');\n"

PFA_QUERY = "SELECT goto FROM alias WHERE address='%s' AND active = '1'"


@pytest.fixture(scope="module")
def cluster():
    if not pgi.available():
        pytest.skip("PostgreSQL server or root not available (scripts/install-system-deps.sh)")
    with pgi.postgres_cluster() as pg:
        pg.psql("ALTER ROLE %s SET client_min_messages = warning;" % pg.user, db="postgres")
        yield pg


_counter = [0]


@pytest.fixture
def pg(cluster):
    """The cluster with a fresh schema of its own (owned by the test role) on the search path."""
    _counter[0] += 1
    schema = "t%d" % _counter[0]
    cluster.psql("CREATE SCHEMA %s AUTHORIZATION %s;" % (schema, cluster.user))
    cluster.schema = schema
    return cluster


def sql(pg, text):
    """Run SQL as the test role (who then owns what it creates) in the test's schema."""
    return pg.psql("SET ROLE %s;\nSET search_path = %s;\n%s" % (pg.user, pg.schema, text))


def login(pg, **kw):
    args = dict(login_host=pg.host, login_port=pg.port, login_user=pg.user, login_password=pg.password,
                login_db=pg.dbname, schema=pg.schema)
    args.update(kw)
    return args


def pairs(pg, entries, **kw):
    args = dict(table="virtual", columns={"key": "source", "value": "destination"}, entries=entries)
    args.update(kw)
    return login(pg, **args)


def client_file(directory, pg, query):
    """A pgsql_table(5) client file as a Postfix host would have it (0640 root:postfix)."""
    path = directory / ("pgsql-%d.cf" % len(list(directory.glob("pgsql-*.cf"))))
    path.write_text("hosts = %s\nuser = %s\npassword = %s\ndbname = %s\nquery = %s\n" % (
        pg.hostport, pg.user, pg.password, pg.dbname, query.replace("FROM ", "FROM %s." % pg.schema)))
    os.chown(path, 0, grp.getgrnam("postfix").gr_gid)
    os.chmod(path, 0o640)
    return "pgsql:%s" % path


def postmap_q(conf, key, spec):
    proc = subprocess.run(["postmap", "-c", conf, "-q", key, spec], capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.rstrip("\n") if proc.returncode == 0 else None


def test_pairs_present_check_mode_diff_idempotent_and_postfix_reads_rows(pg, conf, tmp_path):
    sql(pg, PAIRS + "INSERT INTO virtual VALUES ('old@example.com', 'x@example.net');")
    entries = {"Sales@Example.com": ["alice@example.com", "bob@example.com"], "info@example.com": "carol@example.net"}
    # Check mode: the result and the diff of a real run, nothing written.
    r = run_module("sql_entries", pairs(pg, entries, domain="example.com", exclusive=True), check_mode=True)
    assert r["changed"] and r["added"] == ["info@example.com", "sales@example.com"] and r["removed"] == ["old@example.com"]
    assert sql(pg, "SELECT source FROM virtual;") == "old@example.com\n"
    assert r["diff"]["before"] == "old@example.com x@example.net\n"
    assert r["diff"]["after"] == ("info@example.com carol@example.net\n"
                                  "sales@example.com alice@example.com,bob@example.com\n")
    r = run_module("sql_entries", pairs(pg, entries, domain="example.com", exclusive=True))
    assert r["changed"] and r["count"] == 2
    assert sql(pg, "SELECT source, destination FROM virtual ORDER BY 1;") == (
        "info@example.com|carol@example.net\nsales@example.com|alice@example.com,bob@example.com\n")
    # Real Postfix through a pgsql: table: folded query key finds the folded row.
    spec = client_file(tmp_path, pg, "SELECT destination FROM virtual WHERE source='%s'")
    assert postmap_q(conf, "SALES@example.com", spec) == "alice@example.com,bob@example.com"
    assert postmap_q(conf, "old@example.com", spec) is None
    # Second identical run: nothing changes, not even a row version (xmin).
    xmin = sql(pg, "SELECT xmin FROM virtual ORDER BY source;")
    r = run_module("sql_entries", pairs(pg, entries, domain="example.com", exclusive=True))
    assert not r["changed"] and r["added"] == r["updated"] == r["removed"] == []
    assert r["diff"]["before"] == r["diff"]["after"]
    assert sql(pg, "SELECT xmin FROM virtual ORDER BY source;") == xmin
    # One change, then absent.
    r = run_module("sql_entries", pairs(pg, {"info@example.com": "dave@example.net"}))
    assert r["updated"] == ["info@example.com"] and r["diff"]["after"] == "info@example.com dave@example.net\n"
    assert postmap_q(conf, "info@example.com", spec) == "dave@example.net"
    r = run_module("sql_entries", pairs(pg, {"info@example.com": None, "nobody@example.com": None}, state="absent"))
    assert r["changed"] and r["removed"] == ["info@example.com"]
    assert postmap_q(conf, "info@example.com", spec) is None
    assert postmap_q(conf, "sales@example.com", spec) == "alice@example.com,bob@example.com"


def test_exclusive_is_per_domain_and_table_scope_is_explicit(pg):
    sql(pg, PAIRS + "INSERT INTO virtual VALUES ('a@example.com', '1'), ('Stale@EXAMPLE.com', '2'),"
                    " ('a@example.org', '3'), ('a@sub.example.com', '4'), ('a@example_com', '5');")
    r = run_module("sql_entries", pairs(pg, {"b@example.com": "9"}, exclusive=True), fail_ok=True)
    assert r["failed"] and "exclusive_scope=table" in r["msg"]
    r = run_module("sql_entries", pairs(pg, {"b@example.com": "9"}, domain="example.com", exclusive=True))
    assert r["removed"] == ["Stale@EXAMPLE.com", "a@example.com"] and r["added"] == ["b@example.com"]
    assert sql(pg, "SELECT source FROM virtual ORDER BY 1;").split() == [
        "a@example.org", "a@example_com", "a@sub.example.com", "b@example.com"]
    r = run_module("sql_entries", pairs(pg, {"z@example.net": "1"}, exclusive=True, exclusive_scope="table"))
    assert len(r["removed"]) == 4 and sql(pg, "SELECT source FROM virtual;") == "z@example.net\n"


def test_postfixadmin_alias_table_read_by_postfix(pg, conf, tmp_path):
    sql(pg, POSTFIXADMIN + "INSERT INTO alias (address, goto, domain, active) VALUES"
                           " ('off@example.com', 'x@example.net', 'example.com', false),"
                           " ('keep@example.org', 'y@example.net', 'example.org', true);")
    args = login(pg, layout="postfixadmin", domain="example.com", exclusive=True,
                 entries={"@example.com": "catchall@example.net", "off@example.com": "x@example.net",
                          "team@example.com": ["a@example.com", "b@example.com"]})
    r = run_module("sql_entries", args)
    assert r["added"] == ["@example.com", "team@example.com"] and r["updated"] == ["off@example.com"]
    assert r["diff"]["before"] == "off@example.com x@example.net  # inactive\n"
    assert sql(pg, "SELECT address, goto, domain, active, created IS NOT NULL, modified > created"
                   " FROM alias ORDER BY 1;") == (
        "@example.com|catchall@example.net|example.com|t|t|f\n"
        "keep@example.org|y@example.net|example.org|t|t|f\n"
        "off@example.com|x@example.net|example.com|t|t|t\n"
        "team@example.com|a@example.com,b@example.com|example.com|t|t|f\n")
    assert not run_module("sql_entries", args)["changed"]
    spec = client_file(tmp_path, pg, PFA_QUERY)
    assert postmap_q(conf, "Team@Example.com", spec) == "a@example.com,b@example.com"
    assert postmap_q(conf, "off@example.com", spec) == "x@example.net"
    assert postmap_q(conf, "@example.com", spec) == "catchall@example.net"
    # A domain PostfixAdmin does not know: the foreign key refuses it, nothing of the call written.
    r = run_module("sql_entries", login(pg, layout="postfixadmin",
                                        entries={"n@example.com": "z@x", "a@unknown.test": "z@x"}), fail_ok=True)
    assert r["failed"] and "alias" in r["msg"] and "unknown.test" in r["msg"]
    assert pg.password not in r["msg"]
    assert sql(pg, "SELECT count(*) FROM alias WHERE address = 'n@example.com';") == "0\n"


def test_exclusive_keeps_postfixadmin_mailbox_aliases(pg):
    sql(pg, POSTFIXADMIN + "INSERT INTO mailbox (username, domain) VALUES ('box@example.com', 'example.com');"
                           "INSERT INTO alias (address, goto, domain) VALUES"
                           " ('box@example.com', 'box@example.com', 'example.com'),"
                           " ('old@example.com', 'box@example.com', 'example.com');")
    args = login(pg, layout="postfixadmin", domain="example.com", exclusive=True,
                 entries={"@example.com": "box@example.com"})
    r = run_module("sql_entries", args)
    assert r["removed"] == ["old@example.com"] and r["added"] == ["@example.com"]
    assert r["diff"]["after"] == "@example.com box@example.com\nbox@example.com box@example.com\n"
    r = run_module("sql_entries", dict(args, keep_mailbox_aliases=False), check_mode=True)
    assert r["changed"] and r["removed"] == ["box@example.com"]
    assert sql(pg, "SELECT address FROM alias ORDER BY 1;") == "@example.com\nbox@example.com\n"


def test_smtp_delivery_through_sql_aliases_changed_without_reload(pg, postfix_instance):
    pf = postfix_instance
    sql(pg, POSTFIXADMIN)
    pf.add_mailboxes("alice", "bob")
    spec = client_file(pf.config_dir, pg, PFA_QUERY)
    # proxymap(8) holds the connection, as an MX fleet would (proxy_read_maps has
    # $virtual_alias_maps by default).
    pf.write_main(virtual_alias_domains="example.com", virtual_alias_maps="proxy:" + spec)
    args = login(pg, layout="postfixadmin", domain="example.com", exclusive=True,
                 entries={"team@example.com": ["alice@mbox.test", "bob@mbox.test"]})
    assert run_module("sql_entries", args)["changed"]
    pf.start()
    msgid = pf.send("Team@example.com")
    pf.wait_for_delivery("alice", msgid)
    pf.wait_for_delivery("bob", msgid)
    code, reply = pf.rcpt_code("nobody@example.com")
    assert code == 550 and "Recipient address rejected" in reply
    # One database write re-routes at once: no postmap, no reload.
    args["entries"]["team@example.com"] = "bob@mbox.test"
    assert run_module("sql_entries", args)["updated"] == ["team@example.com"]
    msgid = pf.send("team@example.com")
    pf.wait_for_delivery("bob", msgid)
    assert not [m for m in pf.mailbox("alice") if msgid in m]


def test_bad_input_refused_before_connecting_and_unreachable_database(pg):
    sql(pg, PAIRS)
    # Port 1 (nothing listens): would fail to connect; the newline is refused first.
    r = run_module("sql_entries", pairs(pg, {"a@example.com": "b@example.com\nc@example.com"}, login_port=1),
                   fail_ok=True)
    assert r["failed"] and "contains a line break" in r["msg"] and "connect" not in r["msg"]
    start = time.monotonic()
    r = run_module("sql_entries", pairs(pg, {"a@example.com": "b"}, login_port=1), fail_ok=True)
    assert r["failed"] and "cannot connect" in r["msg"] and ":1/" in r["msg"] and time.monotonic() - start < 5
    assert pg.password not in str(r)
    r = run_module("sql_entries", pairs(pg, {"a@example.com": "b"}, login_password="wrong"), fail_ok=True)
    assert r["failed"] and "password authentication failed" in r["msg"]
    r = run_module("sql_entries", pairs(pg, {"a@example.com": "b"}, table="nosuch"), fail_ok=True)
    assert r["failed"] and "nosuch" in r["msg"] and "does not exist" in r["msg"]
    assert sql(pg, "SELECT count(*) FROM virtual;") == "0\n"


def test_concurrent_writer_waits_for_the_transaction(pg):
    """Rows in scope are locked FOR UPDATE: a sync touching them waits for the other
    transaction, then sees its committed value (no lost update)."""
    import threading
    import psycopg2
    sql(pg, PAIRS + "INSERT INTO virtual VALUES ('a@example.com', '1');")
    other = psycopg2.connect(pg.dsn)
    cur = other.cursor()
    cur.execute("SET search_path = %s; SELECT * FROM virtual FOR UPDATE; UPDATE virtual SET destination = '2';"
                % pg.schema)
    # With lock_timeout (libpq options) it gives up instead, nothing written.
    r = run_module("sql_entries", pairs(pg, {"a@example.com": "9", "c@example.com": "3"},
                                        connect_params={"options": "-c lock_timeout=200"}), fail_ok=True)
    assert r["failed"] and "lock timeout" in r["msg"]
    results = []
    worker = threading.Thread(target=lambda: results.append(
        run_module("sql_entries", pairs(pg, {"a@example.com": "2", "b@example.com": "3"}))))
    worker.start()
    worker.join(1.0)
    assert worker.is_alive() and not results
    other.commit()
    other.close()
    worker.join(20)
    assert results[0]["added"] == ["b@example.com"] and results[0]["updated"] == []
    assert sql(pg, "SELECT source, destination FROM virtual ORDER BY 1;") == "a@example.com|2\nb@example.com|3\n"


def test_non_ascii_warned_as_postfix_3_7_reads_latin1(pg, conf, tmp_path):
    sql(pg, PAIRS)
    r = run_module("sql_entries", pairs(pg, {"a@example.com": "jörg@example.net", "b@example.com": "c@example.net"}))
    text = str(r["warnings"])  # strings, or Ansible 2.19+'s warning summaries
    assert r["changed"] and len(r["warnings"]) == 1 and "LATIN1" in text and "first: a@example.com" in text
    # What the warning says, seen through the host's Postfix: the lookup fails (temporary).
    spec = client_file(tmp_path, pg, "SELECT destination FROM virtual WHERE source='%s'")
    proc = subprocess.run(["postmap", "-c", conf, "-q", "a@example.com", spec], capture_output=True, text=True,
                          check=False)
    if proc.returncode == 0:
        assert proc.stdout.strip() == "jörg@example.net"  # a Postfix that reads UTF8
    else:
        assert "query error" in proc.stderr and postmap_q(conf, "b@example.com", spec) == "c@example.net"


def test_missing_driver_named(monkeypatch):
    """Without psycopg2 on the target: the package to install, and no traceback."""
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    r = run_module("sql_entries", dict(table="virtual", entries={"a@example.com": "b"}), fail_ok=True)
    assert r["failed"] and "python3-psycopg2" in r["msg"] and "psycopg2" in r["msg"]


def test_100k_rows_sync_in_seconds(pg, conf, tmp_path):
    sql(pg, POSTFIXADMIN)
    entries = dict(("user%06d@example.com" % i, "box%06d@example.net" % i) for i in range(100000))
    args = login(pg, layout="postfixadmin", domain="example.com", exclusive=True, entries=entries)
    times = {}
    for name in ("first insert", "one change", "no change"):
        if name == "one change":
            entries["user050000@example.com"] = "moved@example.net"
        start = time.monotonic()
        r = run_module("sql_entries", args, diff=False)
        times[name] = time.monotonic() - start
        assert r["changed"] == (name != "no change")
    assert r["count"] == 100000 and r["updated"] == []
    print("100k sync: " + ", ".join("%s %.2f s" % kv for kv in times.items()))
    assert sql(pg, "SELECT count(*) FROM alias;") == "100000\n"
    spec = client_file(tmp_path, pg, PFA_QUERY)
    assert postmap_q(conf, "user050000@example.com", spec) == "moved@example.net"
    assert postmap_q(conf, "user099999@example.com", spec) == "box099999@example.net"
    assert max(times.values()) < 15, times


def test_password_never_in_verbose_output(pg, tmp_path):
    """A playbook run with -vvv: the login password is in no line Ansible prints."""
    sql(pg, PAIRS)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    book = tmp_path / "book.yml"
    book.write_text("""- hosts: localhost
  gather_facts: false
  tasks:
    - mailops.postfix.sql_entries:
        login_host: %s
        login_port: %d
        login_user: %s
        login_password: %s
        login_db: %s
        schema: %s
        table: virtual
        columns: {key: source, value: destination}
        entries: {a@example.com: b@example.net}
""" % (pg.host, pg.port, pg.user, pg.password, pg.dbname, pg.schema))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(root, ".build", "collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-vvv", "--diff",
                           "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
                           str(book)], env=env, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "changed=1" in out and "a@example.com b@example.net" in out
    assert pg.password not in out
    assert sql(pg, "SELECT destination FROM virtual;") == "b@example.net\n"
