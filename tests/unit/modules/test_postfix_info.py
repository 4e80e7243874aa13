# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailops.postfix.postfix_info: facts compared with real postconf -n/-d/-m, referenced
tables with their index and staleness, and nothing changed. (Running-master facts are
checked in test_reload.py against a started instance.)"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from module_runner import run_module
from postfix_instance import free_port

from ansible_collections.mailops.postfix.plugins.module_utils import _postfix
from ansible_collections.mailops.postfix.plugins.module_utils._postfix import host_facts


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


# -- master.cf: services and the tables their -o overrides reference ------------------------

MASTER_HANDWRITTEN = (
    "# hand-written, with continuations, comments inside entries and { } overrides\n"
    "smtp      inet  n       -       y       -       -       smtpd\n"
    "  -o smtpd_tls_security_level=may\n"
    "# a comment inside the entry\n"
    "\n"
    "\t-o { smtpd_client_restrictions = permit_mynetworks, reject }\n"
    "#smtps     inet  n       -       y       -       -       smtpd\n"
    "#  -o smtpd_tls_wrappermode=yes\n"
    "submission inet n - y - 20 smtpd -v\n"
    "   -o syslog_name=postfix/$service_name\n"
    "   -o {smtpd_sasl_auth_enable=yes} -o { milter_macro_daemon_name = ORIGINATING }\n"
    "   -o { smtpd_recipient_restrictions = permit_sasl_authenticated , reject }\n"
    "   -o smtpd_sasl_auth_enable=no\n"
    "   -o { empty = }\n"
    "pickup    unix  n       -       y       60      1       pickup\n"
    "flush     unix  n       -       y       1000?   0       flush\n"
    "maildrop  unix  -       n       n       -       -       pipe\n"
    "  flags=DRhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n"
    "pipe1     unix  -       n       n       -       -       pipe\n"
    "  flags=R user=nobody argv=/bin/echo {a b} { c }\n"
    "postlog   unix-dgram n  -       n       -       1       postlogd\n"
)


def _words(text):
    """Split postconf's output like master(5): blanks separate words, { } groups one
    (outer braces and the blanks just inside them dropped)."""
    words, cur, depth = [], "", 0
    for ch in text + " ":
        if ch in " \t" and depth == 0:
            if cur:
                words.append(cur[1:-1].strip() if cur.startswith("{") and cur.endswith("}") else cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    return words


def _postconf(conf, *args):
    return subprocess.run(["postconf", "-c", str(conf)] + list(args), capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("source", ["debian", "handwritten"])
def test_services_match_postconf_M_F_P(tmp_path, source):
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "main.cf").write_text("compatibility_level = 3.6\nalias_maps =\nalias_database =\n")
    if source == "debian":
        shutil.copy("/etc/postfix/master.cf", str(conf / "master.cf"))
    else:
        (conf / "master.cf").write_text(MASTER_HANDWRITTEN)
    info = run_module("postfix_info", {"config_dir": str(conf)})
    services = info["services"]
    assert info["master_cf"] == str(conf / "master.cf")

    # Same services in the same order as postconf -M.
    listed = [line.split()[:2] for line in _postconf(conf, "-M").splitlines()]
    assert [[s["name"], s["type"]] for s in services] == listed
    # Same fields and command line as postconf -F (8 lines per entry, in order).
    f_lines = _postconf(conf, "-F").splitlines()
    assert len(f_lines) == 8 * len(services)
    for k, svc in enumerate(services):
        got = dict(line.split("/", 2)[2].split(" = ", 1) if " = " in line else (line.split("/", 2)[2][:-2], "")
                   for line in f_lines[8 * k:8 * k + 8])
        assert [got[f] for f in ("service", "type", "private", "unprivileged", "chroot", "wakeup",
                                 "process_limit")] == [svc[f] for f in ("name", "type", "private", "unpriv",
                                                                        "chroot", "wakeup", "maxproc")]
        words = _words(got["command"])
        assert words[0] == svc["command"]
        rest, i = [], 1
        while i < len(words):
            if words[i] == "-o" and i + 1 < len(words) and "=" in words[i + 1]:
                i += 2
                continue
            rest.append(words[i])
            i += 1
        assert rest == svc["args"], (svc["name"], got["command"])
    # Same overrides as postconf -P (which applies a repeated name's later value).
    theirs = {}
    for line in _postconf(conf, "-P").splitlines():
        key, _sep, value = line.partition(" =")
        name, type_, param = key.rsplit("/", 2)
        theirs.setdefault("%s/%s" % (name, type_), {})[param] = value[1:]
    ours = {"%s/%s" % (s["name"], s["type"]): s["options"] for s in services if s["options"]}
    assert ours == theirs
    if source == "handwritten":
        by = {s["name"]: s for s in services}
        assert "smtps" not in by
        assert by["submission"]["args"] == ["-v"]
        assert by["submission"]["options"]["smtpd_sasl_auth_enable"] == "no"
        assert by["submission"]["options"]["empty"] == ""
        assert by["submission"]["options"]["smtpd_recipient_restrictions"] == "permit_sasl_authenticated , reject"
        assert by["pipe1"]["args"] == ["flags=R", "user=nobody", "argv=/bin/echo", "a b", "c"]
        assert by["flush"]["wakeup"] == "1000?" and by["postlog"]["type"] == "unix-dgram"
    else:
        assert len(services) >= 20 and all(s["args"] or s["command"] != "pipe" for s in services)


def test_master_cf_missing_is_a_note(tmp_path):
    (tmp_path / "main.cf").write_text("alias_maps =\nalias_database =\n")
    info = run_module("postfix_info", {"config_dir": str(tmp_path)})
    assert info["services"] == [] and info["notes"] == ["%s/master.cf: file not found" % tmp_path]
    (tmp_path / "master.cf").write_text("smtp inet n - y - smtpd\n")
    res = run_module("postfix_info", {"config_dir": str(tmp_path)}, fail_ok=True)
    assert res["failed"] and res["msg"].startswith("%s/master.cf:1: too few fields" % tmp_path)


def test_tables_referenced_by_master_cf_overrides(tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    t = tmp_path / "tables"
    t.mkdir()
    for name in ("access", "virtual", "sub", "logins", "body.pcre", "clients.cidr", "helo.regexp", "plain"):
        (t / name).write_text("a@b.example OK\n" if "." not in name else "/x/ OK\n")
    (t / "clients.cidr").write_text("192.0.2.0/24 OK\n")
    for spec in ("hash:%s/access", "hash:%s/virtual", "hash:%s/sub"):
        subprocess.run(["postmap", spec % t], check=True)
    old = time.time() - 100
    os.utime(str(t / "sub.db"), (old, old))          # stale, named only through $service_name
    (conf / "main.cf").write_text(
        "compatibility_level = 3.6\nalias_maps =\nalias_database =\n"
        "tables = %(t)s\n"
        "virtual_alias_maps = hash:$tables/virtual\n"
        "mua_sender_maps = proxy:lmdb:$tables/logins\n" % {"t": t})
    (conf / "master.cf").write_text(
        "smtp inet n - y - - smtpd\n"
        "  -o { smtpd_recipient_restrictions = check_recipient_access hash:%(t)s/access,\n"
        "       check_client_access cidr:%(t)s/clients.cidr, reject }\n"
        "#off inet n - y - - smtpd -o x=hash:%(t)s/never\n"
        "sub inet n - y - - smtpd\n"
        "  -o smtpd_sender_login_maps=$mua_sender_maps\n"
        "  -o { smtpd_helo_restrictions = check_helo_access regexp:$tables/helo.regexp,"
        " check_helo_access pcre:$tables/body.pcre }\n"
        "  -o { x_maps = hash:$tables/$service_name, texthash:$tables/plain, inline:{a=b}, static:OK,"
        " $own }\n"
        "  -o own=hash:%(t)s/virtual\n"
        "  -o smtp_tls_session_cache_database=btree:%(t)s/cache\n" % {"t": t})
    info = run_module("postfix_info", {"config_dir": str(conf)})
    tables = {(x["type"], x["path"]): x for x in info["tables"]}
    tt = str(t)

    # Where each table is referenced, as real postconf -Px expands the overrides.
    expected = {}
    for line in _postconf(conf, "-Px").splitlines():
        key, _sep, value = line.partition(" = ")
        name, type_, param = key.rsplit("/", 2)
        for ref in _postfix.table_refs(value):
            expected.setdefault(ref, []).append(("%s/%s" % (name, type_), param))
    ours = {ref: [(s["service"], s["parameter"]) for s in x["overrides"]] for ref, x in tables.items() if x["overrides"]}
    assert {k: sorted(v) for k, v in ours.items()} == {k: sorted(v) for k, v in expected.items()}
    assert sorted(ours) == sorted([
        ("hash", tt + "/access"), ("cidr", tt + "/clients.cidr"), ("lmdb", tt + "/logins"),
        ("regexp", tt + "/helo.regexp"), ("pcre", tt + "/body.pcre"), ("hash", tt + "/sub"),
        ("texthash", tt + "/plain"), ("hash", tt + "/virtual"), ("btree", tt + "/cache")])
    assert tables[("hash", tt + "/access")]["overrides"] == [
        {"service": "smtp/inet", "parameter": "smtpd_recipient_restrictions", "line": 1}]
    assert tables[("hash", tt + "/access")]["parameters"] == []
    v = tables[("hash", tt + "/virtual")]
    assert v["parameters"] == ["virtual_alias_maps"] and v["overrides"][0]["line"] == 5
    assert sorted(s["parameter"] for s in v["overrides"]) == ["own", "x_maps"]
    # The lmdb map is named in main.cf too (an unused parameter there).
    assert tables[("lmdb", tt + "/logins")]["parameters"] == ["mua_sender_maps"]
    assert tables[("btree", tt + "/cache")]["cache"] is True
    for typ, name in (("cidr", "clients.cidr"), ("regexp", "helo.regexp"), ("pcre", "body.pcre"),
                      ("texthash", "plain")):
        x = tables[(typ, tt + "/" + name)]
        assert x["stale"] is False and x["index"] is None
    assert sorted(info["stale_tables"]) == [tt + "/logins", tt + "/sub"]
    # Real postmap -q agrees: the stale index does not have what the source says.
    (t / "sub").write_text("a@b.example OK\nnew@b.example OK\n")
    os.utime(str(t / "sub.db"), (old, old))
    assert subprocess.run(["postmap", "-q", "new@b.example", "hash:%s/sub" % t], check=False).returncode == 1


def test_combined_option_words_are_what_the_daemon_reads(postfix_instance):
    """``-vo name=value`` and ``-oname=value`` are read by smtpd's getopt() as -o overrides;
    postfix_info says so (postconf 3.7 -P mis-splits ``-osmtpd_proxy_timeout=...`` at its
    second 'o')."""
    pf = postfix_instance
    other = free_port()
    master = pf.config_dir / "master.cf"
    first, rest = master.read_text().split("\n", 1)
    master.write_text(first + " -vo { smtpd_banner = $myhostname bannerTWO }\n"
                      "127.0.0.1:%d inet n - n - - smtpd -osmtpd_proxy_timeout=bogus\n" % other + rest)
    info = run_module("postfix_info", {"config_dir": str(pf.config_dir)})
    by = {s["name"]: s for s in info["services"]}
    assert by["127.0.0.1:%d" % pf.port]["options"] == {"smtpd_banner": "$myhostname bannerTWO"}
    assert by["127.0.0.1:%d" % pf.port]["args"] == ["-v"]
    assert by["127.0.0.1:%d" % other]["options"] == {"smtpd_proxy_timeout": "bogus"}
    assert "smtpd_proxy_timeout" not in _postconf(pf.config_dir, "-P")
    pf.start()
    with socket.create_connection(("127.0.0.1", pf.port), timeout=10) as s:
        assert s.recv(512).startswith(b"220 %s bannerTWO" % pf.myhostname.encode())
    # The connection makes master start that smtpd, which exits before it answers.
    with socket.create_connection(("127.0.0.1", other), timeout=10):
        pf.wait_for_log("fatal: parameter smtpd_proxy_timeout: bad time value or unit: bogus")


def test_host_and_service_facts_agree_with_ansible(tmp_path):
    """os_family and the major version as Ansible's setup module reports them on this host; the
    service's boot state as systemctl or the sysv start links tell it."""
    conf, _t = build(tmp_path)
    info = run_module("postfix_info", {"config_dir": str(conf)})
    setup = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local",
                            "-m", "ansible.builtin.setup", "-a", "gather_subset=min", "-o"],
                           capture_output=True, text=True, check=True).stdout
    facts = json.loads(setup.split("=>", 1)[1])["ansible_facts"]
    assert info["host"]["os_family"] == facts["ansible_os_family"]
    assert info["host"]["distribution_major_version"] == facts["ansible_distribution_major_version"]
    service = info["service"]
    if os.path.isdir("/run/systemd/system"):
        rc = subprocess.run(["systemctl", "is-enabled", "postfix.service"], capture_output=True,
                            check=False).returncode
        assert service["manager"] == "systemd" and service["enabled"] == (rc == 0)
    else:
        assert service["manager"] == "sysv"
        assert service["enabled"] == bool(glob.glob("/etc/rc?.d/S??postfix"))
    try:
        import lmdb  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
        importable = True
    except ImportError:
        importable = False
    assert info["python_lmdb"] is importable
    # A service the init system does not know.
    other = run_module("postfix_info", {"config_dir": str(conf), "service_name": "no-such-service"})
    assert other["service"]["enabled"] in (False, None)


def test_host_facts_of_other_systems(tmp_path):
    cases = {
        'ID=rocky\nID_LIKE="rhel centos fedora"\nVERSION_ID="10.0"\n': ("RedHat", "rocky", "10"),
        'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n': ("Debian", "ubuntu", "24"),
        'PRETTY_NAME="Debian GNU/Linux forky/sid"\nID=debian\n': ("Debian", "debian", ""),
        'ID="opensuse-leap"\nID_LIKE="suse opensuse"\nVERSION_ID="15.6"\n': ("Suse", "opensuse-leap", "15"),
        'ID=alpine\nVERSION_ID=3.20.1\n': ("Alpine", "alpine", "3"),
    }
    for text, want in cases.items():
        path = tmp_path / "os-release"
        path.write_text(text)
        got = host_facts(str(path))
        assert (got["os_family"], got["distribution"], got["distribution_major_version"]) == want, text
    assert host_facts(str(tmp_path / "missing")) == {
        "os_family": "", "distribution": "", "distribution_major_version": ""}
