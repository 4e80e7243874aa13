# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailops.postfix.reload against a real running Postfix (the postfix_instance fixture):
broken configurations are refused before any signal, a good one is picked up (proved over
SMTP and by the master's "reload -- version" log line), a pid file naming another process
is refused, and a stopped Postfix is reported or started."""

from __future__ import annotations

import fcntl
import os
import pwd
import subprocess
import sys
import time

import pytest

from module_runner import run_module

RELOAD_LINE = "reload -- version"


def postmap(path):
    subprocess.run(["postmap", "hash:%s" % path], check=True)


def reload(pf, check_mode=False, **args):
    args.setdefault("config_dir", str(pf.config_dir))
    return run_module("reload", args, check_mode=check_mode, fail_ok=True)


def postconf(pf, **params):
    res = run_module("postconf", {"config_dir": str(pf.config_dir), "params": params}, fail_ok=True)
    assert not res.get("failed"), res["msg"]
    return res


def rcpt_until(pf, rcpt, code, timeout=20.0):
    """RCPT replies until ``code`` (idle smtpd processes of the old generation may answer
    first); return the last reply."""
    deadline = time.monotonic() + timeout
    while True:
        reply = pf.rcpt_code(rcpt)
        if reply[0] == code or time.monotonic() > deadline:
            return reply
        time.sleep(0.3)


def test_reload_refuses_broken_config_then_applies_good_one(postfix_instance):
    pf = postfix_instance
    pf.add_mailboxes("alice")
    empty = pf.config_dir / "virtual-empty"
    empty.write_text("")
    postmap(empty)
    pf.write_main(virtual_alias_domains="alias.test", virtual_alias_maps="hash:%s" % empty)
    pf.start()
    pid = pf.master_pid()
    code, reply = pf.rcpt_code("bob@alias.test")
    assert code == 550 and "User unknown in virtual alias table" in reply

    # The change: a new virtual map, written by our postconf module.
    virtual = pf.config_dir / "virtual"
    virtual.write_text("bob@alias.test alice@mbox.test\n")
    postmap(virtual)
    res = postconf(pf, virtual_alias_maps="hash:%s" % virtual)
    assert res["changed"] and res["restart_required"] is False

    # Broken 1: the source is newer than its index (stale map).
    index = "%s.db" % virtual
    os.utime(index, (time.time() - 60, time.time() - 60))
    res = reload(pf)
    assert res["failed"] and res["stale_tables"] == ["%s.db" % virtual]
    assert "older than its source" in res["msg"]
    postmap(virtual)

    # Broken 2: the alias domain also in mydestination (written behind the module's back).
    pf.main_cf.write_text(pf.main_cf.read_text().replace(
        "mydestination = $myhostname, localhost", "mydestination = $myhostname, localhost, Alias.Test"))
    res = reload(pf)
    assert res["failed"] and "crossing the streams" in res["msg"] and "alias.test" in res["msg"]
    postconf(pf, mydestination="$myhostname, localhost")

    # Check mode: would reload, signals nothing.
    res = reload(pf, check_mode=True)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] and res["reloaded"] and res["pid"] == pid

    # Nothing so far reached the master: same pid, no reload line in its log.
    assert pf.master_pid() == pid
    assert RELOAD_LINE not in pf.log()

    res = reload(pf)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] and res["reloaded"] and res["running"] and res["pid"] == pid
    assert str(virtual) in res["tables_checked"]
    pf.wait_for_log(RELOAD_LINE)
    assert pf.master_pid() == pid

    code, reply = rcpt_until(pf, "bob@alias.test", 250)
    assert code == 250, reply
    msgid = pf.send("bob@alias.test")
    assert "hello" in pf.wait_for_delivery("alice", msgid)

    info = run_module("postfix_info", {"config_dir": str(pf.config_dir)})
    assert info["running"] is True and info["master_pid"] == pid
    assert info["pid_file"] == str(pf.pid_file)
    tables = {t["path"]: t for t in info["tables"]}
    assert tables[str(virtual)]["stale"] is False
    assert tables[str(virtual)]["parameters"] == ["virtual_alias_maps"]


def test_preflight_refuses_a_domain_in_two_address_classes(postfix_instance):
    """The instance serves the virtual mailbox domain mbox.test; any other class listing it,
    however (literal, $name, a table), fails the pre-flight check before any signal."""
    pf = postfix_instance
    relay = pf.config_dir / "relay"
    relay.write_text("MBOX.test OK\n")
    postmap(relay)
    for extra, pair in [
            ({"virtual_alias_domains": "mbox.test"}, "virtual_alias_domains and virtual_mailbox_domains"),
            ({"mydestination": "$myhostname, localhost, $virtual_mailbox_domains"},
             "mydestination and virtual_mailbox_domains"),
            ({"relay_domains": "hash:%s" % relay}, "virtual_mailbox_domains and relay_domains (hash:%s)" % relay)]:
        saved = dict(pf.main)
        pf.write_main(**extra)
        res = reload(pf, start_if_stopped=True)
        assert res["failed"] and not res.get("started")
        problem = "mbox.test is in both %s: a domain belongs to exactly one address class" % pair
        assert [p for p in res["problems"] if p.startswith(problem)], res["problems"]
        pf.main = saved
        pf.write_main()
    assert pf.master_pid() is None
    (pf.config_dir / "ldap-relay.cf").write_text("server_host = ldap.example\n")
    pf.write_main(relay_domains="ldap:%s" % (pf.config_dir / "ldap-relay.cf"))
    res = reload(pf, check_mode=True)
    assert not res.get("failed"), res.get("msg")
    assert res["domain_lists_not_checked"] == [
        "relay_domains: ldap:%s (ldap tables are not read here)" % (pf.config_dir / "ldap-relay.cf")]


def test_not_running_then_start_if_stopped(postfix_instance):
    pf = postfix_instance
    res = reload(pf)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] is False and res["running"] is False and res["reloaded"] is False
    res = reload(pf, check_mode=True, start_if_stopped=True)
    assert res["changed"] and res["started"] and pf.master_pid() is None
    res = reload(pf, start_if_stopped=True)
    # Let the fixture stop what this module started.
    pf.mark_started()
    assert res["changed"] and res["started"] and res["start_method"] == "postfix start"
    assert res["running"] and res["pid"] == pf.master_pid()
    pf.wait_for_port()
    pf.wait_for_log("daemon started -- version")


LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"%32d\\n" % os.getpid())
print("locked", flush=True)
time.sleep(120)
"""


def test_pid_file_of_another_process_is_refused(tmp_path):
    conf = tmp_path / "etc"
    queue = tmp_path / "spool"
    (queue / "pid").mkdir(parents=True)
    conf.mkdir()
    (conf / "main.cf").write_text("queue_directory = %s\nalias_maps =\nalias_database =\n" % queue)
    (conf / "master.cf").write_text("")
    pid_file = queue / "pid" / "master.pid"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(pid_file)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        res = run_module("reload", {"config_dir": str(conf)}, fail_ok=True)
        assert res["failed"] and "not Postfix's master" in res["msg"] and str(holder.pid) in res["msg"]
        assert holder.poll() is None  # not signalled
        info = run_module("postfix_info", {"config_dir": str(conf)})
        assert info["running"] is False
        assert any("not Postfix's master" in w for w in info["warnings_main_cf"])
    finally:
        holder.kill()
        holder.wait()
    # Lock released: a leftover pid file just means "not running".
    res = run_module("reload", {"config_dir": str(conf)})
    assert res["running"] is False and res["changed"] is False


@pytest.mark.parametrize("main_cf,needle", [
    (b"queue_directory = /nonexistent\nbad line\n", ":2: missing '=' after attribute name"),
    (b"alias_maps = hash:/nonexistent/aliases\nalias_database =\n", "index /nonexistent/aliases.db is missing"),
    (b"alias_maps =\nalias_database =\nsmtpd_banner = ${myhostname\n", "truncated macro reference"),
    (b"alias_maps =\nalias_database =\nheader_checks = regexp:/nonexistent/h\n", "regexp:/nonexistent/h (header_checks): file not found"),
])
def test_preflight_failures(tmp_path, main_cf, needle):
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "main.cf").write_bytes(main_cf)
    (conf / "master.cf").write_text("")
    res = run_module("reload", {"config_dir": str(conf)}, fail_ok=True)
    assert res["failed"] and needle in res["msg"], res["msg"]
    assert res["msg"].startswith("pre-flight check failed, nothing signalled") or needle.startswith(":")


def test_world_writable_or_foreign_config_is_refused(tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    table = tmp_path / "virtual"
    table.write_text("a@b.example c\n")
    subprocess.run(["postmap", "hash:%s" % table], check=True)
    (conf / "main.cf").write_text("alias_maps =\nalias_database =\nvirtual_alias_maps = hash:%s\n" % table)
    (conf / "master.cf").write_text("")
    nobody = pwd.getpwnam("nobody")
    # A table owned by another user is fine (e.g. Mailman's maps).
    os.chown(str(table), nobody.pw_uid, nobody.pw_gid)
    assert not run_module("reload", {"config_dir": str(conf)}, fail_ok=True).get("failed")
    os.chmod(str(conf / "main.cf"), 0o666)
    res = run_module("reload", {"config_dir": str(conf)}, fail_ok=True)
    assert res["failed"] and "world-writable" in res["msg"]
    os.chmod(str(conf / "main.cf"), 0o644)
    os.chown(str(conf / "master.cf"), nobody.pw_uid, nobody.pw_gid)
    res = run_module("reload", {"config_dir": str(conf)}, fail_ok=True)
    assert res["failed"] and "master.cf (configuration) is owned by uid %d" % nobody.pw_uid in res["msg"]


def test_alias_database_must_be_built(tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    aliases = tmp_path / "aliases"
    aliases.write_text("root: alice\n")
    (conf / "main.cf").write_text("alias_maps = hash:%s\nalias_database = %s\n" % (aliases, aliases))
    (conf / "master.cf").write_text("")
    res = run_module("reload", {"config_dir": str(conf)}, fail_ok=True)
    assert res["failed"] and "index %s.db is missing" % aliases in res["msg"]
    subprocess.run(["postalias", "hash:%s" % aliases], check=True)
    res = run_module("reload", {"config_dir": str(conf)}, fail_ok=True)
    assert not res.get("failed"), res["msg"]
    assert res["tables_checked"] == [str(aliases)]


def test_lock_probe_does_not_disturb_a_lock(tmp_path):
    # The flock probe must not take the lock away from the holder.
    from ansible_collections.mailops.postfix.plugins.module_utils import _postfix
    path = tmp_path / "master.pid"
    path.write_text("%32d\n" % os.getpid())
    fd = os.open(str(path), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert _postfix.is_locked(str(path)) is True
    finally:
        os.close(fd)
    assert _postfix.is_locked(str(path)) is False


def test_stale_table_named_only_in_master_cf_blocks_the_reload(postfix_instance):
    """A table only a master.cf -o override references: a stale index refuses the reload
    (nothing signalled), a fresh one lets it through, and smtpd uses the table."""
    pf = postfix_instance
    access = pf.config_dir / "access"
    access.write_text("blocked@mbox.test REJECT first list\n")
    postmap(access)
    listen = "127.0.0.1:%d" % pf.port
    res = run_module("master_cf", {"config_dir": str(pf.config_dir), "services": [{
        "name": listen, "type": "inet", "options_exclusive": False, "options": {
            "smtpd_recipient_restrictions": "check_recipient_access hash:%s, permit_mynetworks, "
                                            "reject_unauth_destination" % access}}]})
    assert res["changed"]
    assert str(access) not in pf.main_cf.read_text()
    pf.start()
    pid = pf.master_pid()
    code, reply = pf.rcpt_code("blocked@mbox.test")
    assert code == 554 and "first list" in reply

    access.write_text("blocked@mbox.test 550 second list\n")
    old = time.time() - 60
    os.utime("%s.db" % access, (old, old))
    res = reload(pf)
    assert res["failed"] and res["stale_tables"] == ["%s.db" % access]
    assert res["problems"] == [
        "%s:1: %s/inet -o smtpd_recipient_restrictions: hash:%s: index %s.db is older than its source; "
        "run postmap/postalias" % (pf.config_dir / "master.cf", listen, access, access)]
    info = run_module("postfix_info", {"config_dir": str(pf.config_dir)})
    assert info["stale_tables"] == [str(access)]
    assert {t["path"]: t for t in info["tables"]}[str(access)]["overrides"] == [
        {"service": "%s/inet" % listen, "parameter": "smtpd_recipient_restrictions", "line": 1}]
    # Nothing reached the master.
    assert pf.master_pid() == pid and RELOAD_LINE not in pf.log()

    postmap(access)
    res = reload(pf)
    assert not res.get("failed"), res.get("msg")
    assert res["reloaded"] and str(access) in res["tables_checked"]
    pf.wait_for_log(RELOAD_LINE)
    code, reply = rcpt_until(pf, "blocked@mbox.test", 550)
    assert code == 550 and "second list" in reply, reply


@pytest.mark.parametrize("override,needle", [
    # Indexed types referenced from master.cf: missing or stale indexes are refused.
    ("-o smtpd_sender_login_maps=proxy:lmdb:{d}/logins",
     "master.cf:2: sub/inet -o smtpd_sender_login_maps: lmdb:{d}/logins: index {d}/logins.lmdb is missing"),
    ("-o { smtpd_client_restrictions = check_client_access cdb:$tables/clients }",
     "master.cf:2: sub/inet -o smtpd_client_restrictions: cdb:{d}/clients: index {d}/clients.cdb is missing"),
    ("-o x_maps=hash:{d}/$service_name",
     "master.cf:2: sub/inet -o x_maps: hash:{d}/sub: index {d}/sub.db is missing"),
    # Not indexed: only the file must exist.
    ("-o header_checks=pcre:{d}/nothere", "master.cf:2: sub/inet -o header_checks: pcre:{d}/nothere: file not found"),
    # Postfix would fail on these.
    ("-o smtpd_banner=$(myhostname", "master.cf:2: sub/inet -o smtpd_banner: truncated macro reference"),
    ("-o { a = b", "master.cf:2: unbalanced '{'"),
])
def test_preflight_master_cf_problems(tmp_path, override, needle):
    conf = tmp_path / "etc"
    conf.mkdir()
    d = str(tmp_path)
    (conf / "main.cf").write_text("alias_maps =\nalias_database =\ntables = %s\n" % d)
    (conf / "master.cf").write_text("smtp inet n - n - - smtpd\nsub inet n - n - - smtpd\n  %s\n"
                                    % override.replace("{d}", d))
    for name in ("logins", "clients", "sub"):
        (tmp_path / name).write_text("a@b.example OK\n")
    res = run_module("reload", {"config_dir": str(conf)}, fail_ok=True)
    assert res["failed"] and needle.replace("{d}", d) in res["msg"], res["msg"]
    assert res["msg"].startswith("pre-flight check failed, nothing signalled")


def test_preflight_tables_without_index_are_never_stale(tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    for name in ("h.regexp", "h.pcre", "c.cidr", "t.text", "access"):
        (tmp_path / name).write_text("192.0.2.0/24 OK\n" if name == "c.cidr" else "/x/ OK\n")
    subprocess.run(["postmap", "hash:%s" % (tmp_path / "access")], check=True)
    (conf / "main.cf").write_text("alias_maps =\nalias_database =\n")
    (conf / "master.cf").write_text(
        "sub inet n - n - - smtpd\n"
        "  -o { smtpd_client_restrictions = check_client_access cidr:%(d)s/c.cidr,\n"
        "       check_helo_access regexp:%(d)s/h.regexp, check_sender_access pcre:%(d)s/h.pcre,\n"
        "       check_recipient_access texthash:%(d)s/t.text, check_client_access inline:{{ 1.2.3.4=OK }},\n"
        "       check_client_access static:OK, check_recipient_access proxy:hash:%(d)s/access }\n"
        % {"d": tmp_path})
    # Sources newer than anything: no index, nothing stale.
    future = time.time() + 3600
    for name in ("h.regexp", "h.pcre", "c.cidr", "t.text"):
        os.utime(str(tmp_path / name), (future, future))
    res = run_module("reload", {"config_dir": str(conf)}, fail_ok=True)
    assert not res.get("failed"), res.get("msg")
    assert sorted(res["tables_checked"]) == sorted(str(tmp_path / n) for n in
                                                   ("h.regexp", "h.pcre", "c.cidr", "t.text", "access"))
    # The one indexed table is checked: its source newer than the index is refused.
    os.utime(str(tmp_path / "access"), (future, future))
    res = run_module("reload", {"config_dir": str(conf)}, fail_ok=True)
    assert res["failed"] and res["stale_tables"] == [str(tmp_path / "access.db")]
    assert "sub/inet -o smtpd_client_restrictions: hash:%s/access: index" % tmp_path in res["msg"]


def test_reload_returns_once_the_daemons_from_before_are_gone(postfix_instance):
    """An idle daemon from before the signal may answer one more request with the old
    configuration: reload waits (at most `wait` seconds) until the master's children from
    before the signal have exited, so a query right after it reaches the new configuration."""
    pf = postfix_instance
    pf.write_main()
    pf.start()
    assert pf.rcpt_code("postmaster@localhost")[0] in (250, 550)   # an smtpd now runs, idle
    before = pf.children()
    assert before
    res = run_module("reload", dict(config_dir=str(pf.config_dir)))
    assert res["reloaded"] and res["old_processes"] == []
    assert not [p for p in before if os.path.exists("/proc/%d" % p)]
    res = run_module("reload", dict(config_dir=str(pf.config_dir), wait=0))
    assert res["reloaded"] and isinstance(res["old_processes"], list)
