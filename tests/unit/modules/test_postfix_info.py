# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailops.postfix.postfix_info: facts compared with real postconf -n/-d/-m, referenced
tables with their index and staleness, and nothing changed. (Running-master facts are
checked in test_reload.py against a started instance.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from module_runner import run_module

from ansible_collections.mailops.postfix.plugins.module_utils import _postfix


def snapshot(d):
    out = {}
    for root, _dirs, files in os.walk(str(d)):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[p] = (st.st_mtime_ns, st.st_size, st.st_mode)
    return out


def build(tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    shutil.copy("/etc/postfix/master.cf", str(conf / "master.cf"))
    t = tmp_path / "tables"
    t.mkdir()
    for name in ("virtual", "transport", "relocated", "aliases", "sasl"):
        (t / name).write_text("a@b.example c\n" if name != "aliases" else "root: alice\n")
    (t / "checks.regexp").write_text("/^Subject: spam/ REJECT\n")
    subprocess.run(["postmap", "hash:%s" % (t / "virtual")], check=True)
    subprocess.run(["postmap", "cdb:%s" % (t / "transport")], check=True)
    subprocess.run(["postmap", "hash:%s" % (t / "sasl")], check=True)
    subprocess.run(["postalias", "hash:%s" % (t / "aliases")], check=True)
    old = time.time() - 100
    os.utime(str(t / "sasl.db"), (old, old))          # stale: older than its source
    (conf / "main.cf").write_text(
        "# facts test\n"
        "compatibility_level = 3.6\n"
        "myhostname = mx.example.com\n"
        "tables = %(t)s\n"
        "virtual_alias_maps = hash:$tables/virtual\n"
        "transport_maps = proxy:cdb:%(t)s/transport\n"
        "relocated_maps = unionmap:{lmdb:%(t)s/relocated, inline:{a=b}}\n"
        "header_checks = regexp:%(t)s/checks.regexp\n"
        "smtp_sasl_password_maps = hash:%(t)s/sasl\n"
        "alias_maps = hash:%(t)s/aliases\n"
        "alias_database = %(t)s/aliases\n"
        "smtpd_recipient_restrictions = permit_mynetworks,\n"
        "    check_recipient_access hash:%(t)s/virtual, reject\n"
        "mydestination = $myhostname,\n"
        "  localhost\n"
        "mydestination = $myhostname, localhost\n" % {"t": t})
    return conf, t


def test_facts_match_postconf_and_change_nothing(tmp_path):
    conf, t = build(tmp_path)
    before = snapshot(tmp_path)
    info = run_module("postfix_info", {"config_dir": str(conf)})
    assert snapshot(tmp_path) == before
    assert info["changed"] is False

    n = subprocess.run(["postconf", "-c", str(conf), "-n"], capture_output=True, text=True, check=True).stdout
    theirs = dict(line.split(" = ", 1) for line in n.splitlines() if " = " in line)
    theirs.pop("config_directory")
    ours = {k: " ".join(v.split()) for k, v in info["parameters"].items()}
    assert {k: ours[k] for k in theirs} == theirs
    assert any("overriding earlier entry: mydestination=" in w for w in info["warnings_main_cf"])

    d = subprocess.run(["postconf", "-d"], capture_output=True, text=True, check=True).stdout
    assert info["defaults"]["myorigin"] == "$myhostname"
    assert len(info["defaults"]) == len(d.splitlines())
    m = subprocess.run(["postconf", "-m"], capture_output=True, text=True, check=True).stdout.split()
    assert info["map_types"] == sorted(m)
    assert info["mail_version"] == subprocess.run(
        ["postconf", "-dh", "mail_version"], capture_output=True, text=True, check=True).stdout.strip()
    assert info["default_database_type"] == "hash"
    assert info["queue_directory"] == "/var/spool/postfix"
    assert info["pid_file"] == "/var/spool/postfix/pid/master.pid"

    tables = {(x["type"], x["path"]): x for x in info["tables"]}
    tt = str(t)
    assert sorted(tables) == sorted([
        ("hash", tt + "/virtual"), ("cdb", tt + "/transport"), ("lmdb", tt + "/relocated"),
        ("regexp", tt + "/checks.regexp"), ("hash", tt + "/sasl"), ("hash", tt + "/aliases")])
    v = tables[("hash", tt + "/virtual")]
    assert v["index"] == tt + "/virtual.db" and v["stale"] is False and v["index_exists"]
    assert v["parameters"] == ["smtpd_recipient_restrictions", "virtual_alias_maps"]
    assert tables[("cdb", tt + "/transport")]["index"] == tt + "/transport.cdb"
    assert tables[("cdb", tt + "/transport")]["stale"] is False
    r = tables[("lmdb", tt + "/relocated")]
    assert r["stale"] is True and r["index_exists"] is False and r["index"] == tt + "/relocated.lmdb"
    x = tables[("regexp", tt + "/checks.regexp")]
    assert x["index"] is None and x["stale"] is False and x["source_exists"] is True
    assert tables[("hash", tt + "/sasl")]["stale"] is True
    assert tables[("hash", tt + "/aliases")]["parameters"] == ["alias_maps", "alias_database"]
    assert sorted(info["stale_tables"]) == sorted([tt + "/relocated", tt + "/sasl"])
    assert "inet_interfaces" in info["restart_params"]
    assert info["notes"] == []


def test_without_postfix_binary(tmp_path):
    conf, t = build(tmp_path)
    info = _postfix.facts(str(conf), binary=_postfix.Binary(postconf=""))
    assert info["defaults"] == {} and info["map_types"] == [] and info["mail_version"] is None
    assert info["notes"] and "postconf not found" in info["notes"][0]
    assert info["queue_directory"] == "/var/spool/postfix"
    assert ("hash", str(t) + "/virtual") in {(x["type"], x["path"]) for x in info["tables"]}


def test_errors_fail_cleanly(tmp_path):
    res = run_module("postfix_info", {"config_dir": str(tmp_path)}, fail_ok=True)
    assert res["failed"] and res["msg"] == "%s/main.cf: file not found" % tmp_path
    (tmp_path / "main.cf").write_text("ok = 1\n  cont\nbroken\n")
    res = run_module("postfix_info", {"config_dir": str(tmp_path)}, fail_ok=True)
    assert res["failed"] and res["msg"].startswith("%s/main.cf:3: missing '='" % tmp_path)


def test_table_refs_parsing():
    refs = _postfix.table_refs(
        "hash:/a, proxy:lmdb:/b {cdb:/c} unionmap:{texthash:/d, pipemap:{regexp:/e, static:x}} "
        "lmtp:unix:/var/run/x ldap:/etc/postfix/ldap.cf inline:{x=/y} tcp:host:1 hash:relative")
    assert refs == [("hash", "/a"), ("lmdb", "/b"), ("cdb", "/c"), ("texthash", "/d"),
                    ("regexp", "/e"), ("ldap", "/etc/postfix/ldap.cf")]
