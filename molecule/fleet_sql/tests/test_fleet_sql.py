# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Three MX hosts reading example.tld's aliases from one PostgreSQL host through proxy:pgsql:.

What the converge wrote is answered by every host's own postmap -q and routes real SMTP mail;
one sql_entries call on the database host changes what all three route, with no run on them;
alias_rollout's verification asks the database through each host's postmap -q.

The tests run in file order and build on each other (the database is changed once);
the last one stops the database for a while."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tests"))
import mailtest as mt  # noqa: E402

GROUP_VARS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inventory", "group_vars")
HOSTS = mt.group("mail_servers")
DB = mt.group("databases")[0]
# The role's default client file for the map virtual-sql (postfix_server_config_dir/NAME.cf).
REF = "proxy:pgsql:/etc/postfix/virtual-sql.cf"
CHANGED_KEY, NEW_TARGET = "sales@example.tld", "dave@localhost"


def _vars(name):
    with open(os.path.join(GROUP_VARS, name), encoding="utf-8") as f:
        return yaml.safe_load(f)


def written():
    """The rows the converge's sql_entries call wrote, as Postfix answers them: a list target
    is stored a,b (PostfixAdmin's goto) and pgsql_table(5) returns the column as stored."""
    return {k: v if isinstance(v, str) else ",".join(v) for k, v in _vars("all.yml")["fleet_sql_aliases"].items()}


def lookup(name, keys):
    """{key: value} for the keys real postmap -q - answers on the host (missing: not found)."""
    h = mt.host(name)
    # Exit status 1 only says that some key was not found; a failed lookup is fatal (exit 1
    # and stderr), never "not found".
    res = h.run("printf '%%s\\n' " + " ".join(["%s"] * len(keys)) + " | postmap -q - %s", *keys, REF)
    assert res.rc in (0, 1) and res.stderr == "", res
    return dict(line.split("\t", 1) for line in res.stdout.splitlines() if line)


def ip(name):
    return mt.platform(name)["ip"]


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"))
    return proc.returncode, proc.stdout + proc.stderr


def inventory():
    return os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])


def playbook(name, *args):
    return run(["ansible-playbook", "mailops.postfix." + name, "-i", inventory(), "-e", "target=mail_servers", *args])


def maps_with_expect(tmp_path, expect):
    """postfix_server_maps of the inventory with the network map's expect replaced (None: no expect)."""
    maps = copy.deepcopy(_vars("mail_servers.yml")["postfix_server_maps"])
    maps["virtual-sql"].pop("expect")
    if expect is not None:
        maps["virtual-sql"]["expect"] = expect
    path = tmp_path / "maps.yml"
    path.write_text(yaml.safe_dump({"postfix_server_maps": maps}))
    return "@" + str(path)


def deliver(mx, rcpt, users):
    """Send to rcpt from the database host over the test network, wait until every user's
    mailbox (/var/mail/USER, local(8)) holds it; the message's token."""
    token, result = mt.send(mt.host(DB), ip(mx), rcpt)
    assert result == {"ok": True}, (mx, result)
    h = mt.host(mx)
    for user in users:
        assert mt.wait_for_mail(h, user, token, timeout=30), (mx, user, mt.mail_log(h))
    return token


def config_snapshot(name):
    files = "/etc/postfix/main.cf /etc/postfix/master.cf /etc/postfix/virtual-sql.cf"
    return mt.host(name).check_output("ls -l --time-style=full-iso %s; md5sum %s" % (files, files))


@pytest.mark.parametrize("mx", HOSTS)
def test_virtual_alias_maps_is_the_network_table(mx):
    h = mt.host(mx)
    # No virtual alias declared in inventory: no file map, only the database.
    assert h.check_output("postconf -h virtual_alias_maps") == REF
    assert h.check_output("postconf -h virtual_alias_domains") == "example.tld"
    # The client file holds the password: 0640 root:postfix (read by proxymap as root).
    f = h.file(REF.split(":", 2)[2])
    assert (f.user, f.group, f.mode) == ("root", "postfix", 0o640)
    # proxymap(8) opens only tables named in proxy_read_maps ($names expanded).
    assert REF in h.check_output("postconf -x -h proxy_read_maps").replace(",", " ").split()


@pytest.mark.parametrize("mx", HOSTS)
def test_postmap_answers_every_alias_from_the_database(mx):
    want = written()
    assert lookup(mx, sorted(want) + ["nosuch@example.tld"]) == want


@pytest.mark.parametrize("mx", HOSTS)
def test_mail_to_an_sql_alias_is_delivered(mx):
    token = deliver(mx, "support@example.tld", ["alice", "bob"])
    h = mt.host(mx)
    # The queue ID of the message, then its deliveries in the log: both by the alias.
    qid = h.check_output("awk -v t=%s '/^From /{m=\"\"} {m=m $0 \"\\n\"} index($0, t){printf \"%%s\", m; exit}'"
                         " /var/mail/alice | grep -o -m1 'with ESMTP id [0-9A-F]*' | cut -d' ' -f4", token)
    assert qid
    log = h.check_output("grep -h -- '%s: to=' /var/log/postfix.log", qid)
    for user in ("alice", "bob"):
        assert "to=<%s@localhost>, orig_to=<support@example.tld>" % user in log, log
    assert log.count("status=sent (delivered to mailbox)") == 2, log


@pytest.mark.parametrize("mx", HOSTS)
def test_unknown_address_is_refused_with_550(mx):
    _code, result = mt.send(mt.host(DB), ip(mx), "nosuch@example.tld")
    code, text = result["refused"]["nosuch@example.tld"]
    assert code == 550 and "User unknown in virtual alias table" in text, result


def test_one_sql_entries_call_reroutes_every_mx_at_once():
    before = {h: config_snapshot(h) for h in HOSTS}
    assert {h: lookup(h, [CHANGED_KEY]) for h in HOSTS} == {h: {CHANGED_KEY: written()[CHANGED_KEY]} for h in HOSTS}
    # One module call against the database host; nothing runs on the MX hosts.
    rc, out = run(["ansible", "databases", "-i", inventory(), "-m", "mailops.postfix.sql_entries", "--diff", "-a",
                   "layout=postfixadmin login_host={{ fleet_sql_db_host }} login_user={{ fleet_sql_writer }}"
                   " login_password={{ fleet_sql_writer_password }} login_db={{ fleet_sql_db_name }}"
                   ' entries={"%s":"%s"}' % (CHANGED_KEY, NEW_TARGET)])
    assert rc == 0, out
    assert "CHANGED" in out and "+%s %s" % (CHANGED_KEY, NEW_TARGET) in out, out
    assert "writer-secret" not in out, out
    changed_at = time.monotonic()
    # Right after: every MX answers the new value through proxymap(8), and routes mail by it.
    assert {h: lookup(h, [CHANGED_KEY]) for h in HOSTS} == {h: {CHANGED_KEY: NEW_TARGET} for h in HOSTS}
    print("all %d MX hosts answered the new value %.2f s after the call" % (len(HOSTS), time.monotonic() - changed_at))
    for mx in HOSTS:
        token = deliver(mx, CHANGED_KEY, ["dave"])
        assert mt.host(mx).run("grep -qs -- %s /var/mail/carol", token).rc != 0
    assert {h: config_snapshot(h) for h in HOSTS} == before


def test_alias_rollout_verifies_the_network_table(tmp_path):
    before = {h: config_snapshot(h) for h in HOSTS}
    expect = {"info@example.tld": "alice@localhost", CHANGED_KEY: NEW_TARGET}
    # All three in one batch (batches and stopping are the rollout scenario's subject).
    rc, out = playbook("alias_rollout", "-e", "batch=3", "-e", maps_with_expect(tmp_path, expect))
    assert rc == 0, out
    # Every host went through its batch; only expect changed, which is never written anywhere.
    for h in HOSTS:
        assert re.search(r"^%s +: ok=[1-9][0-9]* +changed=0 +unreachable=0 +failed=0 " % re.escape(h), out, re.M), out
    assert {h: config_snapshot(h) for h in HOSTS} == before


def test_alias_rollout_fails_on_a_wrong_expect_naming_the_key(tmp_path):
    # The value from before the database change: the first host's check fails, naming the map
    # and the key; later batches never start.
    expect = {"info@example.tld": "alice@localhost", CHANGED_KEY: written()[CHANGED_KEY]}
    rc, out = playbook("alias_rollout", "-e", maps_with_expect(tmp_path, expect))
    assert rc != 0, out
    # e.g. "postfix_server_maps.virtual-sql (proxy:pgsql:...): sales@example.tld resolves to
    # dave@localhost (expected carol@localhost)": map, key, what the database says, the expect.
    lines = [line for line in out.splitlines() if "virtual-sql" in line and CHANGED_KEY in line]
    assert any(NEW_TARGET in line and expect[CHANGED_KEY] in line for line in lines), out
    assert "info@example.tld" not in "\n".join(lines), out
    assert HOSTS[1] not in out and HOSTS[2] not in out, out


def test_database_down_defers_mail_and_fails_the_rollout_of_a_map_without_expect(tmp_path):
    # Last: every Postfix process that saw the server down stays away from it for 60 s after
    # it is back (RETRY_CONN_INTV, plpgsql_down_host() in dict_pgsql.c).
    db = mt.host(DB)
    version = db.check_output("pg_lsclusters --no-header").split()[0]
    db.check_output("pg_ctlcluster %s main stop", version)
    try:
        # A temporary error at RCPT time: the sender keeps the message, nothing bounces.
        _code, result = mt.send(db, ip(HOSTS[1]), CHANGED_KEY)
        code, text = result["refused"][CHANGED_KEY]
        assert code == 451 and "Temporary lookup failure" in text, result
        assert mt.host(HOSTS[1]).check_output("postqueue -j") == ""
        # Without expect the verification asks one key that cannot exist: not found would do,
        # an unreachable server fails the first host with Postfix's reason; later batches
        # never start.
        rc, out = playbook("alias_rollout", "-e", maps_with_expect(tmp_path, None))
        assert rc != 0, out
        failure = [line for line in out.splitlines() if re.match(r"(fatal|failed): \[%s\]" % re.escape(HOSTS[0]), line)]
        assert failure, out
        assert "postfix_server_maps.virtual-sql (%s): %s: postmap -q failed" % (REF, REF) in failure[0], out
        assert "connect to pgsql server %s" % _vars("all.yml")["fleet_sql_db_host"] in failure[0], out
        assert HOSTS[1] not in out and HOSTS[2] not in out, out
    finally:
        db.check_output("pg_ctlcluster %s main start", version)


@pytest.fixture(scope="module", autouse=True)
def _order_guard():
    assert len(HOSTS) == 3 and DB, "the fleet_sql scenario has one database host and three MX hosts"
