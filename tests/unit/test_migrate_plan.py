# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate_tables plan without Postfix: which references move, to what, how tables and
caches are told apart, what is refused. Old indexes are written with our hash writer;
``postconf -d`` and ``postconf -m`` are stand-ins (Postfix 3.7's values that matter here)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _mapbuild, _migrate

DEFAULTS_37 = {
    "address_verify_map": "btree:$data_directory/verify_cache",
    "postscreen_cache_map": "btree:$data_directory/postscreen_cache",
    "alias_maps": "hash:/nonexistent/aliases, nis:mail.aliases",
    "alias_database": "hash:/nonexistent/aliases",
    "default_database_type": "hash",
    "data_directory": "/var/lib/postfix",
    "myhostname": "mx.example",
    "smtputf8_enable": "yes",
    "proxy_read_maps": "$virtual_alias_maps $transport_maps",
    "proxy_write_maps": "$smtp_sasl_auth_cache_name $lmtp_sasl_auth_cache_name $address_verify_map $postscreen_cache_map",
}
TYPES = ["btree", "cdb", "hash", "lmdb", "pcre", "proxy", "regexp", "texthash", "unionmap"]


class Binary(object):
    """postconf -d stand-in; ``cache_type`` adds Postfix 3.11's default_cache_db_type."""

    postconf = "/nonexistent/postconf"

    def __init__(self, extra=None):
        self._d = dict(DEFAULTS_37, **(extra or {}))

    def __bool__(self):
        return True

    def defaults(self, config_dir=None):
        return self._d


@pytest.fixture
def host(tmp_path, monkeypatch):
    monkeypatch.setattr(_migrate.Migration, "map_types", lambda self: list(TYPES))
    etc = tmp_path / "etc"
    etc.mkdir()

    def table(name, text, kind=_mapbuild.TABLE, typ="hash"):
        (etc / name).write_text(text)
        _mapbuild.Table(str(etc / name), typ, kind=kind, hostname="mx.example").ensure()
        return "%s:%s" % (typ, etc / name)

    return etc, table


def write(etc, main, master=""):
    (etc / "main.cf").write_text(main)
    (etc / "master.cf").write_text(master)


def plan(etc, binary=None, **kw):
    return _migrate.Migration(str(etc), binary=binary or Binary(), **kw).plan()


@pytest.mark.parametrize("raw, new, want", [
    ("hash:/etc/postfix/virtual", "lmdb", "lmdb:/etc/postfix/virtual"),
    ("proxy:hash:/a, btree:$data_directory/x", "cdb", "proxy:cdb:/a, cdb:$data_directory/x"),
    ("unionmap:{hash:/a,btree:/b} pipemap:{ hash:/c, texthash:/d }", "lmdb",
     "unionmap:{lmdb:/a,lmdb:/b} pipemap:{ lmdb:/c, texthash:/d }"),
    ("check_recipient_access hash:/a, permit", "lmdb", "check_recipient_access lmdb:/a, permit"),
    ("HASH:/a", "lmdb", "lmdb:/a"),
    ("texthash:/a mysql:/etc/x.cf rehash:/a", "lmdb", "texthash:/a mysql:/etc/x.cf rehash:/a"),
    ("inline:{ hash:x=y }, hash:relative", "lmdb", "inline:{ hash:x=y }, hash:relative"),
    ("$default_database_type:/etc/aliases", "lmdb", "$default_database_type:/etc/aliases"),
])
def test_retype_raw(raw, new, want):
    assert _migrate.retype_raw(raw, new) == want


def test_plan_tables_aliases_caches_overrides_defaults(host):
    etc, table = host
    virtual = table("virtual", "a@x.test b@y.test\n")
    transport = table("transport", "x.test smtp:[h]\n")
    access = table("access", "bad@x.test REJECT\n")
    aliases = table("aliases", "info: root\n", kind=_mapbuild.ALIASES)
    write(etc, "default_database_type = hash\n"
               "vmaps = %s\n"
               "virtual_alias_maps = $vmaps, unionmap:{%s, texthash:%s/t}\n"
               "transport_maps = proxy:%s\n"
               "proxy_read_maps = proxy:%s $virtual_alias_maps\n"
               "alias_maps = %s\n"
               "alias_database = %s\n"
               "smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache\n"
               % (virtual, virtual, etc, transport, transport, aliases, aliases),
          "smtp inet n - n - - smtpd\n  -o smtpd_recipient_restrictions=check_recipient_access,%s,permit\n" % access)
    p = plan(etc)
    refs = dict(((r["parameter"], r["service"]), r) for r in p["references"])
    # $vmaps is rewritten where it is defined; virtual_alias_maps names the table again in a unionmap.
    assert p["main_cf_params"] == sorted([
        "address_verify_map", "alias_database", "alias_maps", "default_database_type",
        "postscreen_cache_map", "proxy_read_maps", "smtp_tls_session_cache_database", "transport_maps",
        "virtual_alias_maps", "vmaps"])
    assert refs[("vmaps", None)]["new"] == "lmdb:%s/virtual" % etc
    assert refs[("transport_maps", None)]["old_index"] == "%s/transport.db" % etc
    assert refs[("alias_maps", None)]["kind"] == "aliases" and refs[("alias_maps", None)]["action"] == "compile"
    o = refs[("smtpd_recipient_restrictions", "smtp/inet")]
    assert (o["origin"], o["new"], o["kind"]) == ("master.cf:1", "lmdb:%s/access" % etc, "table")
    c = refs[("smtp_tls_session_cache_database", None)]
    assert (c["kind"], c["source"], c["action"]) == ("cache", None, "retype")
    assert c["new"] == "lmdb:/var/lib/postfix/smtp_scache"
    assert refs[("address_verify_map", None)]["origin"] == "default"
    assert p["default_types"] == {"default_database_type": {"before": "hash", "after": "lmdb"}}
    # proxy_write_maps names the two caches: it follows them once they are set (nothing skipped).
    assert p["skipped"] == [] and "proxy_write_maps" not in p["main_cf_params"]
    # Defaults naming tables that exist nowhere are left as they are (noted).
    assert not any(r["parameter"] == "alias_maps" and r["origin"] == "default" for r in p["references"])
    after = p["main_cf"]["after"].decode()
    assert "vmaps = lmdb:%s/virtual\n" % etc in after
    assert "virtual_alias_maps = $vmaps, unionmap:{lmdb:%s/virtual, texthash:%s/t}\n" % (etc, etc) in after
    assert "transport_maps = proxy:lmdb:%s/transport\n" % etc in after
    assert "smtp_tls_session_cache_database = lmdb:${data_directory}/smtp_scache\n" in after
    assert "address_verify_map = lmdb:$data_directory/verify_cache\n" in after
    assert "default_database_type = lmdb\n" in after
    assert "check_recipient_access,lmdb:%s/access,permit" % etc in p["master_cf"]["after"]
    tables = dict((t["path"].rsplit("/", 1)[1], t) for t in p["tables"])
    assert tables["virtual"]["keys"] == 1 and tables["aliases"]["keys"] == 1 + 3  # @, YP_*
    assert sorted(tables["virtual"]["parameters"]) == ["proxy_read_maps", "virtual_alias_maps", "vmaps"]

    # The same configuration, migrated, plans nothing.
    (etc / "main.cf").write_bytes(p["main_cf"]["after"])
    (etc / "master.cf").write_text(p["master_cf"]["after"])
    again = plan(etc)
    assert again["references"] == [] and again["main_cf"]["after"] == again["main_cf"]["before"]
    assert again["master_cf"]["after"] == again["master_cf"]["before"] and again["remove_old"] == []
    # keep_old=False: the .db files of what is now lmdb, and nothing else.
    (etc / "unrelated.db").write_bytes(b"")
    gone = plan(etc, keep_old=False)["remove_old"]
    assert gone == sorted("%s/%s.db" % (etc, n) for n in ("access", "aliases", "transport", "virtual"))


def test_postfix_311_default_cache_db_type(host):
    etc, table = host
    binary = Binary({"default_cache_db_type": "btree", "address_verify_map": "$default_cache_db_type:$data_directory/v",
                     "postscreen_cache_map": "$default_cache_db_type:$data_directory/p"})
    write(etc, "compatibility_level = 3.11\n")
    p = plan(etc, binary=binary, cache_type="lmdb")
    assert p["default_types"] == {"default_database_type": {"before": "hash", "after": "lmdb"},
                                  "default_cache_db_type": {"before": "btree", "after": "lmdb"}}
    # The defaults follow $default_cache_db_type: nothing else to set.
    assert p["main_cf_params"] == ["default_cache_db_type", "default_database_type"]


def test_postfix_311_debian_defaults_left_as_they_are(host):
    """Debian 14: default_database_type = cdb and default_cache_db_type = lmdb are not Berkeley
    DB; with to: lmdb they stay (a cdb table that follows $default_database_type stays cdb)."""
    etc, table = host
    binary = Binary({"default_cache_db_type": "lmdb", "address_verify_map": "$default_cache_db_type:$data_directory/v",
                     "postscreen_cache_map": "$default_cache_db_type:$data_directory/p",
                     "alias_maps": "$default_database_type:/nonexistent/aliases, nis:mail.aliases",
                     "alias_database": "$default_database_type:/nonexistent/aliases"})
    table("aliases", "info: root\n", kind=_mapbuild.ALIASES, typ="cdb")
    spec = table("virtual", "a@x.test b@y.test\n")
    write(etc, "default_database_type = cdb\ndefault_cache_db_type = lmdb\nalias_database = $default_database_type:%s"
               "/aliases\nalias_maps = $alias_database\nvirtual_alias_maps = %s\n" % (etc, spec))
    p = plan(etc, binary=binary, to="lmdb", cache_type="lmdb")
    assert p["default_types"] == {}
    assert p["main_cf_params"] == ["virtual_alias_maps"]
    after = p["main_cf"]["after"].decode()
    assert "default_database_type = cdb\n" in after and "default_cache_db_type = lmdb\n" in after
    assert [t["path"] for t in p["tables"]] == [str(etc / "virtual")]
    # to: cdb is the same: nothing to set.
    assert plan(etc, binary=binary, to="cdb")["default_types"] == {}


@pytest.mark.parametrize("case, needle", [
    ("index missing", "index %(etc)s/virtual.db is missing; run postmap first"),
    ("nothing", "neither the source nor the index %(etc)s/virtual.db exists"),
    ("corrupt", "old index unreadable"),
    ("syntax", "%(etc)s/virtual:2: expected format: key whitespace value"),
])
def test_refused_naming_the_table(host, case, needle):
    etc, table = host
    spec = table("virtual", "a@x.test b@y.test\n")
    path = etc / "virtual"
    if case == "index missing":
        (etc / "virtual.db").unlink()
    elif case == "nothing":
        path.unlink()
        (etc / "virtual.db").unlink()
    elif case == "corrupt":
        (etc / "virtual.db").write_bytes(b"\0" * 4096)
    else:
        path.write_text("a@x.test b@y.test\nnovalue\n")
    write(etc, "virtual_alias_maps = %s\n" % spec)
    with pytest.raises(_migrate.Refused) as info:
        plan(etc)
    want = "hash:%s (virtual_alias_maps): " % path + needle % dict(etc=etc)
    assert any(p.startswith(want) for p in info.value.problems), info.value.problems
    # The plan comes along with the refusal (check mode shows it).
    assert info.value.plan["references"][0]["old"] == spec


def test_source_missing_left_alone(host):
    """Issue 14: a table with only its index is reported and left alone; the others move."""
    etc, table = host
    virt = table("virtual", "a@x.test b@y.test\n")
    trans = table("transport", "x.test smtp:[relay.test]\n")
    (etc / "virtual").unlink()
    write(etc, "virtual_alias_maps = %s\ntransport_maps = %s\n"
               "sender_dependent_relayhost_maps = unionmap:{hash:$config_directory/virtual, %s}\n"
               "config_directory = %s\n" % (virt, trans, trans, etc),
          "submission inet n - n - - smtpd\n  -o smtpd_sender_login_maps=%s\n" % virt)
    p = plan(etc)
    assert p["left_alone"] == [dict(
        reference=virt, parameters=["sender_dependent_relayhost_maps", "virtual_alias_maps", "proxy_read_maps",
                                    "submission/inet -o smtpd_sender_login_maps"],
        reason="source %s/virtual is missing (only the index %s/virtual.db exists); set dump_missing_sources=true "
               "to write the source from the index and migrate it" % (etc, etc))]
    after = p["main_cf"]["after"].decode()
    assert "virtual_alias_maps = %s\n" % virt in after
    assert "transport_maps = lmdb:%s/transport\n" % etc in after
    # Inside one value: the table left alone keeps its type, the other one moves.
    assert "unionmap:{hash:$config_directory/virtual, lmdb:%s/transport}" % etc in after
    assert p["master_cf"]["after"] == p["master_cf"]["before"]
    assert [t["path"] for t in p["tables"] if t["kind"] != "cache"] == [str(etc / "transport")]
    assert str(etc / "virtual") not in [r["source"] for r in p["references"]]
    # Postfix 3.11 with the redirect on does not read the .db left alone: the reason says so.
    with open(etc / "main.cf", "a") as f:
        f.write("non_bdb_migration_level = enable-redirect\n")
    assert plan(etc)["left_alone"][0]["reason"].endswith(
        "; with non_bdb_migration_level = enable-redirect Postfix does not read this .db: it opens the table as "
        "another type")
    # With dump_missing_sources it is migrated like the others.
    p = plan(etc, dump_missing_sources=True)
    assert p["left_alone"] == []
    assert "virtual_alias_maps = lmdb:%s/virtual\n" % etc in p["main_cf"]["after"].decode()
    assert dict((t["path"], t["action"]) for t in p["tables"])[str(etc / "virtual")] == "dump source, compile"


def test_left_alone_behind_default_database_type_refused(host):
    """$default_database_type:PATH would follow the new default type to an index nobody built."""
    etc, table = host
    table("virtual", "a@x.test b@y.test\n")
    (etc / "virtual").unlink()
    write(etc, "virtual_alias_maps = $default_database_type:%s/virtual\n" % etc)
    with pytest.raises(_migrate.Refused) as info:
        plan(etc)
    assert "%s/main.cf: parameter virtual_alias_maps would name lmdb:%s/virtual, whose source is missing (the table " \
           "is left alone): write hash:%s/virtual there, or restore the source" % (etc, etc, etc) \
        in info.value.problems, info.value.problems


def test_untyped_alias_database_without_source_refused(host):
    etc, table = host
    table("aliases", "info: root\n", kind=_mapbuild.ALIASES)
    (etc / "aliases").unlink()
    write(etc, "alias_database = %s/aliases\nalias_maps =\n" % etc)
    with pytest.raises(_migrate.Refused) as info:
        plan(etc)
    assert any("alias_database entry %s/aliases has no type and follows default_database_type (hash -> lmdb)"
               % etc in pr for pr in info.value.problems), info.value.problems


def test_refused_types_the_host_lacks(host, monkeypatch):
    etc, table = host
    write(etc, "virtual_alias_maps = %s\n" % table("virtual", "a@x.test b\n"))
    monkeypatch.setattr(_migrate.Migration, "map_types", lambda self: ["hash", "btree", "cdb"])
    with pytest.raises(_migrate.Refused) as info:
        plan(etc)
    assert any("to=lmdb: this Postfix has no lmdb table type" in p for p in info.value.problems)
    assert any("cache_type=lmdb" in p for p in info.value.problems)
    assert plan(etc, to="cdb", cache_type="cdb")["references"][0]["new"] == "cdb:%s/virtual" % etc


def test_untyped_alias_database_follows_default_database_type(host):
    etc, table = host
    table("aliases", "info: root\n", kind=_mapbuild.ALIASES)
    write(etc, "alias_database = %s/aliases\nalias_maps = $default_database_type:%s/aliases\n" % (etc, etc))
    p = plan(etc, to="cdb")
    origins = sorted((r["parameter"], r["origin"]) for r in p["references"] if r["kind"] != "cache")
    assert origins == [("alias_database", "default_database_type"), ("alias_maps", "main.cf")]
    # Nothing to rewrite but the default type: both follow it (alias_maps is set to its own value).
    assert p["main_cf_params"] == ["address_verify_map", "alias_maps", "default_database_type",
                                   "postscreen_cache_map"]
    assert "\ndefault_database_type = cdb\n" in p["main_cf"]["after"].decode()
    assert "alias_maps = $default_database_type:" in p["main_cf"]["after"].decode()


def test_compare_names_keys():
    old = {b"a": b"1", b"b": b"2", b"YP_LAST_MODIFIED": b"1"}
    assert _migrate.compare(old, {b"a": b"1", b"b": b"2", b"YP_LAST_MODIFIED": b"9"}, "t") is None
    msg = _migrate.compare(old, {b"a": b"x", b"c": b"3", b"YP_LAST_MODIFIED": b"1"}, "t")
    assert msg == "t: 1 not found (b); 1 with another value (a); 1 not in the old index (c)"


def test_check_log_reads_only_this_instance_since_the_mark(tmp_path):
    log = tmp_path / "mail.log"
    old = "Dec  2 03:00:00 mx postfix/smtpd[1]: fatal: an old problem, before the reload\n"
    log.write_text(old)
    (tmp_path / "main.cf").write_text("syslog_name = postfix-out\n")
    m = _migrate.Migration(str(tmp_path), binary=Binary(), log_file=str(log), log_wait=0)
    mark = m._log_mark()
    assert mark == ("file", str(log), len(old))
    with open(log, "a") as f:
        f.write("Dec  2 03:01:00 mx postfix-out/master[7]: reload -- version 3.7.11, configuration %s\n" % tmp_path
                + "Dec  2 03:01:01 mx postfix/smtpd[8]: fatal: another instance's problem\n"
                + "Dec  2 03:01:01 mx postfix-out/trivial-rewrite[9]: fatal: unsupported dictionary type: lmdb\n"
                + "Dec  2 03:01:01 mx postfix-out/smtpd[10]: error: open database /etc/postfix/x.lmdb: No such file\n"
                + "Dec  2 03:01:01 mx postfix-out/smtpd[10]: connect from localhost[127.0.0.1]\n")
    problems = m.check_log(mark, 0)
    assert [p.split("]: ", 1)[1] for p in problems] == [
        "fatal: unsupported dictionary type: lmdb", "error: open database /etc/postfix/x.lmdb: No such file"]


def test_check_log_without_a_reload_line_is_a_problem(tmp_path, monkeypatch):
    log = tmp_path / "mail.log"
    log.write_text("")
    (tmp_path / "main.cf").write_text("")
    m = _migrate.Migration(str(tmp_path), binary=Binary(), log_file=str(log), log_wait=0)
    ticks = iter(range(0, 1000, 5))
    monkeypatch.setattr(_migrate.time, "time", lambda: next(ticks))
    monkeypatch.setattr(_migrate.time, "sleep", lambda s: None)
    # Another instance's reload (same syslog_name, other configuration directory) is not ours.
    log.write_text("Dec  2 03:01:00 mx postfix/master[7]: reload -- version 3.7.11, configuration /etc/postfix\n")
    mark = ("file", str(log), 0)
    assert m.check_log(mark, 0) == ["%s: no reload line for %s logged within 10 s" % (log, tmp_path)]
    assert m.log_checked == {"log": str(log), "lines": 1, "reload_logged": False}


def test_log_reader_follows_a_rotated_log_and_waits_for_whole_lines(tmp_path):
    log = tmp_path / "mail.log"
    log.write_text("one\ntwo")
    reader = _migrate._LogReader(("file", str(log), 0), 0)
    assert reader.new_lines() == ["one"]
    with open(log, "a") as f:
        f.write(" halves\nthree\n")
    assert reader.new_lines() == ["two halves", "three"]
    assert reader.new_lines() == []
    log.write_text("after rotation\n")
    assert reader.new_lines() == ["after rotation"]


def test_old_index_older_than_its_source_is_refused(host):
    etc, table = host
    spec = table("virtual", "a@x.test b@y.test\n")
    os.utime(etc / "virtual.db", (1, 1))
    write(etc, "virtual_alias_maps = %s\n" % spec)
    with pytest.raises(_migrate.Refused) as info:
        plan(etc)
    assert info.value.problems == ["%s (virtual_alias_maps): index %s/virtual.db is older than its source; "
                                   "run postmap first" % (spec, etc)]


def test_master_cf_override_with_spaces_and_braces(host):
    from ansible_collections.mailops.postfix.plugins.module_utils import _mastercf

    etc, table = host
    a, b = table("a", "x.test OK\n"), table("b", "y.test REJECT\n")
    write(etc, "",
          "# a comment kept\n"
          "submission inet n - n - - smtpd\n"
          "  -o { smtpd_recipient_restrictions = check_recipient_access unionmap:{%s, %s}, permit }\n"
          "  -o syslog_name=postfix/submission\n"
          "smtp inet n - n - - smtpd\n" % (a, b))
    p = plan(etc)
    assert p["master_cf_overrides"] == ["submission/inet -o smtpd_recipient_restrictions"]
    after = _mastercf.MasterCf(p["master_cf"]["after"], "master.cf")
    assert p["master_cf"]["after"].startswith("# a comment kept\n")
    assert p["master_cf"]["after"].endswith("smtp inet n - n - - smtpd\n")
    sub = after.find("submission", "inet")
    assert _mastercf.overrides(sub.argv) == {
        "smtpd_recipient_restrictions": "check_recipient_access unionmap:{lmdb:%s/a, lmdb:%s/b}, permit" % (etc, etc),
        "syslog_name": "postfix/submission"}
