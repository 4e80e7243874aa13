# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailops.postfix.postconf: idempotence, check mode, diff, attributes, the crossing
check, restart_required, bad input; results compared with real ``postconf -e``."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess

import pytest

from module_runner import run_module

DEBIAN_MAIN = "/etc/postfix/main.cf"
MASTER = "/etc/postfix/master.cf"


@pytest.fixture
def confdir(tmp_path):
    d = tmp_path / "etc"
    d.mkdir()
    shutil.copy(DEBIAN_MAIN, str(d / "main.cf"))
    shutil.copy(MASTER, str(d / "master.cf"))
    return d


def state(path):
    st = os.stat(str(path))
    with open(str(path), "rb") as f:
        return f.read(), st.st_mtime_ns, st.st_ino, st.st_mode & 0o7777, st.st_uid, st.st_gid


def run(confdir, check_mode=False, **args):
    args.setdefault("config_dir", str(confdir))
    return run_module("postconf", args, check_mode=check_mode, fail_ok=True)


VIRTUAL = {"virtual_alias_domains": ["chrisbinnie.tld", "example.net"],
           "virtual_alias_maps": "hash:/etc/postfix/virtual", "relayhost": "[smtp.example]:587"}


def test_set_matches_postconf_e_then_idempotent(confdir, tmp_path):
    main = confdir / "main.cf"
    res = run(confdir, params=VIRTUAL)
    assert res["changed"] and not res.get("failed")
    assert sorted(res["changed_params"]) == sorted(VIRTUAL)
    assert res["restart_required"] is False
    assert res["diff"]["before_header"] == str(main)
    assert "virtual_alias_maps = hash:/etc/postfix/virtual\n" in res["diff"]["after"]
    # Same bytes as real postconf -e (relayhost replaced in place, the rest appended).
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(DEBIAN_MAIN, str(other / "main.cf"))
    subprocess.run(["postconf", "-c", str(other), "-e", "relayhost=[smtp.example]:587",
                    "virtual_alias_domains=chrisbinnie.tld, example.net",
                    "virtual_alias_maps=hash:/etc/postfix/virtual"], check=True)
    ours, theirs = main.read_bytes().split(b"\n"), (other / "main.cf").read_bytes().split(b"\n")
    assert ours[:-3] == theirs[:-3] and sorted(ours[-3:]) == sorted(theirs[-3:])
    before = state(main)
    again = run(confdir, params=VIRTUAL)
    assert again["changed"] is False and again["changed_params"] == []
    assert "diff" not in again
    assert state(main) == before


def test_check_mode_writes_nothing_but_reports_diff(confdir):
    main = confdir / "main.cf"
    before = state(main)
    res = run(confdir, check_mode=True, params={"inet_interfaces": "all", "biff": True})
    assert res["changed"] and res["changed_params"] == ["inet_interfaces", "biff"]
    assert res["restart_required"] is True and res["restart_params"] == ["inet_interfaces"]
    assert "inet_interfaces = all\n" in res["diff"]["after"]
    assert "biff = yes\n" in res["diff"]["after"]
    assert state(main) == before


def test_keeps_owner_and_mode_and_backs_up(confdir):
    main = confdir / "main.cf"
    nobody = pwd.getpwnam("nobody")
    os.chown(str(main), nobody.pw_uid, nobody.pw_gid)
    os.chmod(str(main), 0o640)
    original = main.read_bytes()
    res = run(confdir, params={"message_size_limit": 0}, backup=True)
    assert res["changed"]
    _data, _mtime, _ino, mode, uid, gid = state(main)
    assert (mode, uid, gid) == (0o640, nobody.pw_uid, nobody.pw_gid)
    assert b"\nmessage_size_limit = 0\n" in main.read_bytes()
    with open(res["backup_file"], "rb") as f:
        assert f.read() == original
    assert not [p for p in os.listdir(str(confdir)) if p.endswith(".tmp") or p.endswith(".lock")]


@pytest.mark.parametrize("state_,flag,expect", [
    ("absent", "-X", b"mydestination"),
    ("commented", "-#", b"#mydestination = "),
])
def test_absent_and_commented_like_postconf(confdir, tmp_path, state_, flag, expect):
    main = confdir / "main.cf"
    res = run(confdir, params=["mydestination", "relayhost", "not_there"], state=state_)
    assert res["changed"] and res["changed_params"] == ["mydestination", "relayhost"]
    other = tmp_path / "o"
    other.mkdir()
    shutil.copy(DEBIAN_MAIN, str(other / "main.cf"))
    subprocess.run(["postconf", "-c", str(other), flag, "mydestination", "relayhost", "not_there"], check=True)
    assert main.read_bytes() == (other / "main.cf").read_bytes()
    assert (expect in main.read_bytes()) == (state_ == "commented")
    before = state(main)
    assert run(confdir, params={"mydestination": None}, state=state_)["changed"] is False
    assert state(main) == before


def test_refuses_crossing_the_streams(confdir):
    main = confdir / "main.cf"
    before = state(main)
    # mydestination is "$myhostname, vm, localhost..." with myhostname = vm.
    res = run(confdir, params={"virtual_alias_domains": "chrisbinnie.tld, VM"})
    assert res["failed"]
    assert "vm" in res["msg"] and "crossing the streams" in res["msg"]
    assert "never add a \u201cvirtual_alias_domain\u201d as a entry to \u201cmydestination\u201d" in res["msg"]
    res = run(confdir, params={"virtual_alias_domains": "chrisbinnie.tld"})
    assert res["changed"]
    # ... and from the other side, through $name expansion.
    after_ok = state(main)
    res = run(confdir, params={"mydestination": "localhost, ${virtual_alias_domains}"})
    assert res["failed"] and "chrisbinnie.tld" in res["msg"]
    assert state(main) == after_ok
    assert before != after_ok


@pytest.mark.parametrize("params,message", [
    ({"virtual_mailbox_domains": "example.org", "virtual_alias_domains": "Example.org"},
     "refusing: example.org would be in both virtual_alias_domains and virtual_mailbox_domains: "),
    ({"virtual_mailbox_domains": "$myhostname"},
     "refusing: vm would be in both mydestination and virtual_mailbox_domains: "),
    # Debian's main.cf is at compatibility_level 3.6: relay_domains is empty by default.
    ({"relay_domains": "localhost"}, "refusing: localhost would be in both mydestination and relay_domains: "),
    ({"relay_domains": "x.example", "virtual_alias_domains": "${relay_domains}"},
     "refusing: x.example would be in both virtual_alias_domains and relay_domains: "),
])
def test_refuses_a_domain_in_two_address_classes(confdir, params, message):
    main = confdir / "main.cf"
    before = state(main)
    res = run(confdir, params=params)
    assert res["failed"] and res["msg"].startswith(message), res["msg"]
    assert "a domain belongs to exactly one address class (ADDRESS_CLASS_README)" in res["msg"]
    assert state(main) == before
    # Check mode refuses it the same way.
    assert run(confdir, check_mode=True, params=params)["msg"] == res["msg"]


def test_refuses_a_crossing_through_a_table_and_reports_unread_lists(confdir, tmp_path):
    main = confdir / "main.cf"
    vdomains = tmp_path / "vdomains"
    vdomains.write_text("shared.example OK\n")
    subprocess.run(["postmap", "-c", str(confdir), "cdb:%s" % vdomains], check=True)
    res = run(confdir, params={"virtual_mailbox_domains": "cdb:%s" % vdomains,
                               "relay_domains": "ldap:/etc/postfix/ldap-relay.cf"})
    assert res["changed"] and res["domain_lists_not_checked"] == [
        "relay_domains: ldap:/etc/postfix/ldap-relay.cf (ldap tables are not read here)"]
    before = state(main)
    res = run(confdir, params={"virtual_alias_domains": "Shared.Example"})
    assert res["failed"] and res["msg"].startswith(
        "refusing: shared.example would be in both virtual_alias_domains and virtual_mailbox_domains (cdb:%s): "
        % vdomains)
    assert res["msg"].endswith("(not checked: relay_domains: ldap:/etc/postfix/ldap-relay.cf (ldap tables are not "
                               "read here))")
    assert state(main) == before


def test_relay_domains_default_is_no_crossing_and_a_crossing_blocks_other_edits(confdir):
    main = confdir / "main.cf"
    # Below compatibility_level 2 relay_domains defaults to $mydestination: Postfix's own
    # default, not a crossing; nor is the old "relay_domains = $mydestination, ..." idiom.
    res = run(confdir, params={"compatibility_level": "0"})
    assert res["changed"] and not res.get("failed")
    assert run(confdir, params={"relay_domains": "$mydestination, relay.example"})["changed"]
    # A crossing already in the file (written behind the module's back) blocks any change
    # until it is fixed; a call that changes nothing still passes.
    main.write_bytes(main.read_bytes() + b"virtual_alias_domains = localhost\n")
    before = state(main)
    res = run(confdir, params={"message_size_limit": 0})
    assert res["failed"] and "localhost would be in both mydestination and virtual_alias_domains" in res["msg"]
    assert state(main) == before
    assert run(confdir, params={"relay_domains": "$mydestination, relay.example"})["changed"] is False
    assert run(confdir, params={"virtual_alias_domains": "alias.example", "message_size_limit": 0})["changed"]


def test_new_main_cf_is_created(tmp_path):
    res = run(tmp_path, params={"biff": "no"})
    assert res["changed"]
    assert (tmp_path / "main.cf").read_bytes() == b"biff = no\n"
    assert os.stat(str(tmp_path / "main.cf")).st_mode & 0o777 == 0o644


@pytest.mark.parametrize("args,needle", [
    ({"params": {"bad name": "x"}}, "invalid main.cf parameter name 'bad name'"),
    ({"params": {"smtp/inet": "x"}}, "master.cf"),
    ({"params": {"smtpd_banner": "a\nrelayhost = evil"}}, "value contains a newline"),
    ({"params": {"smtpd_banner": "a\rb"}}, "carriage return"),
    ({"params": {"mydestination": ["a", "b\nc"]}}, "value contains a newline"),
    ({"params": {"smtpd_banner": {"nested": 1}}}, "unsupported value type dict"),
    ({"params": "relayhost"}, "params must be a dictionary"),
    ({"params": {}}, "params is empty"),
    ({"params": [1], "state": "absent"}, "invalid main.cf parameter name 1"),
])
def test_bad_input_fails_cleanly_writes_nothing(confdir, args, needle):
    main = confdir / "main.cf"
    before = state(main)
    res = run(confdir, **args)
    assert res["failed"] and needle in res["msg"], res["msg"]
    assert "Traceback" not in res["msg"]
    assert state(main) == before


def test_malformed_main_cf_reports_path_and_line(confdir):
    main = confdir / "main.cf"
    main.write_bytes(main.read_bytes() + b"this is not a setting\n")
    lines = main.read_bytes().count(b"\n")
    before = state(main)
    res = run(confdir, params={"biff": "yes"})
    assert res["failed"]
    assert res["msg"].startswith("%s:%d: missing '=' after attribute name" % (main, lines))
    assert state(main) == before


def test_missing_config_dir_and_unreadable_file(tmp_path, confdir):
    res = run(tmp_path / "nope", params={"biff": "yes"})
    assert res["failed"] and "no such directory" in res["msg"]
    main = confdir / "main.cf"
    main.unlink()
    main.mkdir()
    res = run(confdir, params={"biff": "yes"})
    assert res["failed"] and "cannot read" in res["msg"]
