# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""After migrate_tables on Debian 12, 13 and 14: no Berkeley DB table left anywhere Postfix
looks, real Postfix answers every key of every table as it did from the old hash index
(recorded by prepare.yml), and real SMTP mail through the migrated maps is delivered."""

from __future__ import annotations

import json
import re

import pytest

import mailtest as mt

STATE = "/var/lib/mailops-migrate-test"
BDB = re.compile(r"\b(hash|btree):")


@pytest.fixture(scope="module", params=mt.group("migrate_hosts"))
def mx(request):
    return mt.host(request.param)


def tables(mx):
    return json.loads(mx.file(STATE + "/tables.json").content_string)


def reference(mx, where):
    """The value of a main.cf parameter, or of a master.cf -o override (service/type/name)."""
    if where.count("/") == 2:
        return mx.check_output("postconf -Ph %s", where)
    return mx.check_output("postconf -h %s", where)


def answers(text, tool):
    """{key: value} from `postmap -s`/`-q -` (key TAB value) or `postalias` (key: TAB value)
    output; the NIS bookkeeping records of postalias (YP_*) carry no lookup data."""
    got = {}
    for line in text.splitlines():
        key, _tab, value = line.partition("\t")
        if tool == "postalias" and key.endswith(":"):
            key = key[:-1]
        if not key.startswith("YP_"):
            got[key] = value
    return got


def test_no_berkeley_db_table_left(mx):
    # `postconf` without -n: the compiled-in defaults of Postfix < 3.11 (alias_maps,
    # address_verify_map, postscreen_cache_map) name hash:/btree: too.
    for cmd in ("postconf -n", "postconf", "postconf -P"):
        left = [line for line in mx.check_output(cmd).splitlines() if BDB.search(line)]
        assert left == [], "%s still names Berkeley DB tables: %s" % (cmd, left)
    for param in ("default_database_type", "default_cache_db_type"):  # the latter since 3.11
        assert mx.run("postconf -h %s", param).stdout.strip() not in ("hash", "btree"), param


def test_default_types(mx):
    # A Berkeley DB default type becomes `to` (lmdb); Debian 14's default_database_type = cdb
    # (not Berkeley DB, followed by its /etc/aliases.cdb) and default_cache_db_type = lmdb stay;
    # non_bdb_migration_level is not set (docs/postfix-3.11.md).
    version = tuple(int(n) for n in mx.check_output("postconf -h mail_version").split(".")[:2])
    ddt = mx.check_output("postconf -h default_database_type")
    if version >= (3, 11):
        assert ddt == "cdb"
        assert mx.check_output("postconf -h default_cache_db_type") == "lmdb"
        assert mx.check_output("postconf -h non_bdb_migration_level") == "disable"
        assert "non_bdb_migration_level" not in mx.check_output("postconf -n")
    else:
        assert ddt == "lmdb"


NAMES = ["virtual", "aliases", "transport", "canonical", "sender_login"]


@pytest.mark.parametrize("name", NAMES)
def test_table_named_as_lmdb(mx, name):
    table = next(t for t in tables(mx) if t["name"] == name)
    ref = reference(mx, table["where"])
    # Same file, new type, the proxy: (or any) wrapper kept: proxy:lmdb:/etc/postfix/canonical.
    assert ref.endswith(":" + table["path"]) and ref.split(":")[-2] == "lmdb", ref
    assert mx.file(table["path"] + ".lmdb").is_file


@pytest.mark.parametrize("name", NAMES)
def test_every_key_answers_as_before(mx, name):
    table = next(t for t in tables(mx) if t["name"] == name)
    before = answers(mx.file("%s/%s.before" % (STATE, name)).content_string, table["tool"])
    assert len(before) >= 2, "prepare recorded no answers for %s" % name
    ref = reference(mx, table["where"])
    # Every recorded key through real postmap/postalias -q - on the reference as configured
    # (through proxymap(8) for the proxy: one).
    keys = "sed -e 's/\t.*//' -e 's/:$//' %s/%s.before | grep -v '^YP_'" % (STATE, name)
    out = mx.check_output("%s | %s -q - %s" % (keys, table["tool"], ref))
    assert answers(out, table["tool"]) == before


def test_mail_through_migrated_maps_is_delivered(mx):
    myhostname = mx.check_output("postconf -h myhostname")
    # virtual (user41 -> alice); proxy canonical then virtual (former -> user7 -> alice);
    # aliases (staff -> alice, bob).
    for rcpt, users in (("user41@example.tld", ["alice"]), ("former@example.tld", ["alice"]),
                        ("staff@" + myhostname, ["alice", "bob"])):
        token, result = mt.send(mx, "127.0.0.1", rcpt)
        assert result == {"ok": True}, (rcpt, result)
        for user in users:
            assert mt.wait_for_mail(mx, user, token), (rcpt, user, mt.mail_log(mx))
    problems = mx.run("grep -E 'open database|unsupported dictionary type|fatal:|panic:' "
                      "/var/log/postfix.log").stdout
    assert problems == ""
