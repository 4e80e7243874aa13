# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""migrate_tables against a real, private Postfix 3.7: hash/btree -> lmdb (and cdb), proven by
real postmap -q on every key, postconf -n/-P, and SMTP delivery through every migrated map.

The instance (tests/postfix_instance.py) gets virtual_alias_maps, alias_maps/alias_database,
transport_maps, canonical_maps, virtual_mailbox_maps through proxy:hash: (listed in
proxy_read_maps), an access table named only in a master.cf -o override, a btree TLS session
cache and default_database_type = hash; the old indexes are built by the real postmap and
postalias.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ansible.module_utils.common import warnings as _warnings
from module_runner import run_module
from postfix_instance import MAILBOX_DOMAIN, private_instance

from ansible_collections.mailops.postfix.plugins.module_utils import _migrate
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # playbook_runner beside this file
from playbook_runner import ROOT, run_playbook  # noqa: E402

VIRT = "virt.test"
TRANS = "trans.test"

TABLES = {
    "virtual": {"alice@%s" % VIRT: "alice@%s" % MAILBOX_DOMAIN, "bob@%s" % VIRT: "bob@%s" % MAILBOX_DOMAIN,
                "@%s" % VIRT: "carol@%s" % MAILBOX_DOMAIN},
    "transport": {TRANS: "virtual:", ".sub.%s" % TRANS: "virtual:"},
    "canonical": {"tester@client.test": "renamed@client.test", "@old.test": "alice@%s" % VIRT},
    "access": {"blocked@%s" % VIRT: "REJECT no mail here", "closed.test": "550 5.1.2 closed domain"},
}
ALIASES = "info: carol@%s\nteam: alice@%s, dave@%s\n" % (MAILBOX_DOMAIN, VIRT, TRANS)


def setup_host(pf, start=True):
    """The configuration described in the module docstring, old indexes by real postmap/postalias."""
    etc = pf.config_dir
    pf.add_mailboxes("alice", "bob", "carol")
    with open(etc / "vmailbox", "a") as f:
        f.write("dave@%s dave/\n" % TRANS)
    pf.run("postmap", "hash:%s" % (etc / "vmailbox"))
    for name, entries in TABLES.items():
        (etc / name).write_text("".join("%s %s\n" % kv for kv in entries.items()))
        pf.run("postmap", "hash:%s" % (etc / name))
    (etc / "aliases").write_text(ALIASES)
    pf.run("postalias", "hash:%s" % (etc / "aliases"))
    pf.write_main(
        default_database_type="hash",
        virtual_alias_domains=VIRT,
        virtual_alias_maps="hash:%s" % (etc / "virtual"),
        virtual_mailbox_maps="proxy:hash:%s" % (etc / "vmailbox"),
        proxy_read_maps="$local_recipient_maps proxy:hash:%s $virtual_alias_maps" % (etc / "vmailbox"),
        alias_maps="hash:%s" % (etc / "aliases"),
        alias_database="hash:%s" % (etc / "aliases"),
        relay_domains=TRANS,
        transport_maps="hash:%s" % (etc / "transport"),
        canonical_maps="hash:%s" % (etc / "canonical"),
        smtp_tls_session_cache_database="btree:${data_directory}/smtp_scache",
    )
    master = (etc / "master.cf").read_text()
    listen = "127.0.0.1:%d inet n - n - - smtpd" % pf.port
    assert listen in master
    (etc / "master.cf").write_text(master.replace(
        listen, listen + "\n  -o smtpd_recipient_restrictions=check_recipient_access,hash:%s,"
                         "permit_mynetworks,reject_unauth_destination" % (etc / "access")))
    if start:
        pf.start()


def all_keys(pf):
    """{spec-less table name: {key: value}} as the real postmap -s / postalias -s dump them."""
    etc = pf.config_dir
    out = {}
    for name in list(TABLES) + ["vmailbox"]:
        out[name] = dict(line.split("\t", 1) for line in pf.run("postmap", "-s", "hash:%s" % (etc / name)).stdout
                         .splitlines())
    out["aliases"] = dict(line.split(":\t", 1) for line in pf.run("postalias", "-s", "hash:%s" % (etc / "aliases"))
                          .stdout.splitlines())
    return out


def query_all(pf, typ, name, keys):
    """The real postmap -q answer for every key, one process per key (the oracle)."""
    spec = "%s:%s" % (typ, pf.config_dir / name)
    got = {}
    for key in keys:
        proc = pf.run("postmap", "-f", "-q", key, spec, check=False)  # -f: YP_* as stored
        got[key] = proc.stdout[:-1] if proc.returncode == 0 else None
    return got


def mtimes(pf):
    return dict((p.name, p.stat().st_mtime_ns) for p in pf.config_dir.iterdir())


def migrate(pf, check_mode=False, fail_ok=False, **args):
    # The warnings of a module run in-process stay in ansible's module-level list: each run
    # reports only its own.
    _warnings._global_warnings.clear()  # pylint: disable=protected-access
    return run_module("migrate_tables", dict(dict(config_dir=str(pf.config_dir), log_wait=1.0), **args),
                      check_mode=check_mode, fail_ok=fail_ok)


def warnings(res):
    """The module's warning texts (ansible-core >= 2.19 returns each as a WarningSummary)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in res.get("warnings", [])]


def old_types_left(text):
    return [ln for ln in text.splitlines() if re.search(r"\b(hash|btree):", ln)]


def test_migrate_live_host_to_lmdb(postfix_instance):
    pf = postfix_instance
    setup_host(pf)
    etc = pf.config_dir
    before = all_keys(pf)
    assert len(before["aliases"]) == 2 + 3  # postalias adds @, YP_LAST_MODIFIED, YP_MASTER_NAME
    # Check mode: the plan, the diff, nothing written.
    times = mtimes(pf)
    res = migrate(pf, check_mode=True)
    assert res["changed"] and not res["reloaded"], res
    # Check mode proves every table too (compiled into a scratch directory).
    assert sorted((v["table"].rsplit("/", 1)[1], v["keys"]) for v in res["verified"]) == \
        sorted((name, len(v)) for name, v in before.items()), res["verified"]
    plan = res["plan"]
    refs = dict(((r["parameter"], r["service"]), r) for r in plan["references"])
    assert refs[("virtual_alias_maps", None)]["new"] == "lmdb:%s/virtual" % etc
    assert refs[("virtual_alias_maps", None)]["kind"] == "table"
    assert refs[("alias_maps", None)]["kind"] == refs[("alias_database", None)]["kind"] == "aliases"
    assert refs[("virtual_mailbox_maps", None)]["old"] == "hash:%s/vmailbox" % etc
    assert ("proxy_read_maps", None) in refs
    access = refs[("smtpd_recipient_restrictions", "127.0.0.1:%d/inet" % pf.port)]
    assert access["origin"].startswith("master.cf:") and access["new_index"] == "%s/access.lmdb" % etc
    cache = refs[("smtp_tls_session_cache_database", None)]
    assert (cache["kind"], cache["action"], cache["source"]) == ("cache", "retype", None)
    assert cache["new"] == "lmdb:%s/smtp_scache" % pf.data_dir
    # The compiled-in btree default of address_verify_map (3.7) is set explicitly.
    assert refs[("address_verify_map", None)]["origin"] == "default"
    assert plan["default_types"] == {"default_database_type": {"before": "hash", "after": "lmdb"}}
    keys = dict((t["path"].rsplit("/", 1)[1], t["keys"]) for t in plan["tables"] if t["kind"] != "cache")
    assert keys == dict((name, len(v)) for name, v in before.items()), keys
    diffs = dict((d["before_header"].rsplit("/", 1)[1], d) for d in res["diff"])
    assert "lmdb:${data_directory}/smtp_scache" in diffs["main.cf"]["after"]
    assert "hash:%s/access" % etc in diffs["master.cf"]["before"]
    assert "lmdb:%s/access" % etc in diffs["master.cf"]["after"]
    assert mtimes(pf) == times
    assert not list(etc.glob("*.lmdb"))

    # Apply.
    res = migrate(pf)
    assert res["changed"] and res["reloaded"] and not res["rolled_back"] and res["log_problems"] == [], res
    assert res["log_checked"]["log"] == str(pf.log_path) and res["log_checked"]["reload_logged"], res
    assert sorted(v["table"].rsplit("/", 1)[1] for v in res["verified"]) == sorted(before)
    assert old_types_left(pf.postconf("-n")) == []
    assert old_types_left(pf.postconf("-P")) == []
    assert "lmdb:" in pf.postconf("-P")
    assert pf.postconf("-h", "default_database_type").strip() == "lmdb"
    assert pf.postconf("-xh", "smtp_tls_session_cache_database").strip() == "lmdb:%s/smtp_scache" % pf.data_dir
    # Real postmap -q answers every key exactly as before (volatile postalias records aside).
    for name, records in before.items():
        got = query_all(pf, "lmdb", name, records)
        want = dict(records)
        if name == "aliases":
            for k in ("YP_LAST_MODIFIED", "YP_MASTER_NAME"):
                assert got.pop(k) is not None
                want.pop(k)
        assert got == want, name
    # The old indexes are kept (keep_old defaults to true).
    assert sorted(p.name for p in etc.glob("*.db")) == sorted("%s.db" % n for n in before)

    # SMTP through each migrated map.
    # virtual_alias_maps, then virtual_mailbox_maps through proxy:lmdb:
    msgid = pf.send("alice@%s" % VIRT)
    pf.wait_for_delivery("alice", msgid)
    # transport_maps: trans.test (a relay domain) goes to virtual(8) by the transport map;
    # canonical_maps: the envelope sender is rewritten.
    msgid = pf.send("dave@%s" % TRANS, sender="tester@client.test")
    got = pf.headers(pf.wait_for_maildir(pf.vmail_dir / "dave", msgid).read_text())
    assert got["Return-Path"] == "<renamed@client.test>"
    # alias_maps: info@localhost expands to carol (local(8) reads the aliases map).
    msgid = pf.send("info@localhost")
    pf.wait_for_delivery("carol", msgid)
    # The access table of the master.cf -o override.
    code, reply = pf.rcpt_code("blocked@%s" % VIRT)
    assert (code, reply) == (554, "5.7.1 <blocked@%s>: Recipient address rejected: no mail here" % VIRT)
    assert "unsupported dictionary type" not in pf.log() and "open database" not in pf.log()

    # Second run: nothing to do, nothing written.
    times = mtimes(pf)
    res = migrate(pf)
    assert not res["changed"] and not res["reloaded"] and res["plan"]["references"] == [], res
    assert mtimes(pf) == times

    # keep_old: false removes the old .db files of the migrated tables only.
    (etc / "unrelated.db").write_bytes(b"x")
    res = migrate(pf, keep_old=False)
    assert res["changed"] and not res["reloaded"], res
    assert sorted(os.path.basename(p) for p in res["removed"]) == sorted("%s.db" % n for n in before)
    assert sorted(p.name for p in etc.glob("*.db")) == ["unrelated.db"]
    res = migrate(pf, keep_old=False)
    assert not res["changed"], res
    msgid = pf.send("team@localhost")
    pf.wait_for_delivery("alice", msgid)
    pf.wait_for_maildir(pf.vmail_dir / "dave", msgid)


def test_source_with_syntax_error_is_refused(postfix_instance):
    pf = postfix_instance
    setup_host(pf, start=False)
    etc = pf.config_dir
    with open(etc / "transport", "a") as f:
        f.write("lonely-key-without-value\n")
    times = mtimes(pf)
    res = migrate(pf, fail_ok=True)
    assert res["failed"] and not res["rolled_back"], res
    assert any(p.startswith("hash:%s/transport (transport_maps): %s/transport:3: expected format"
                            % (etc, etc)) for p in res["problems"]), res["problems"]
    assert mtimes(pf) == times
    assert not list(etc.glob("*.lmdb"))


def test_host_without_lmdb_is_refused(postfix_instance, tmp_path):
    pf = postfix_instance
    setup_host(pf, start=False)
    # postconf -m lists the dynamic types of $meta_directory/dynamicmaps.cf: an instance whose
    # meta_directory has no lmdb line has no lmdb type (postmap: "unsupported dictionary type").
    meta = tmp_path / "meta"
    meta.mkdir()
    with open("/etc/postfix/dynamicmaps.cf") as f:
        (meta / "dynamicmaps.cf").write_text("".join(ln for ln in f if not ln.startswith("lmdb")))
    pf.write_main(meta_directory=str(meta))
    assert "lmdb" not in pf.postconf("-m").split()
    times = mtimes(pf)
    res = migrate(pf, fail_ok=True)
    assert res["failed"] and any("to=lmdb: this Postfix has no lmdb table type" in p for p in res["problems"]), res
    assert mtimes(pf) == times
    assert not list(etc_lmdb(pf))
    # cdb is there: the plan goes through (check mode).
    res = migrate(pf, check_mode=True, to="cdb", cache_type="lmdb", fail_ok=True)
    assert any("cache_type=lmdb" in p for p in res["problems"]), res
    res = migrate(pf, check_mode=True, to="cdb", cache_type="cdb")
    assert res["changed"] and mtimes(pf) == times


def etc_lmdb(pf):
    return pf.config_dir.glob("*.lmdb")


def test_fault_after_rewrite_restores_and_postfix_still_delivers(postfix_instance, monkeypatch):
    pf = postfix_instance
    setup_host(pf)
    etc = pf.config_dir
    main_before = (etc / "main.cf").read_bytes()
    master_before = (etc / "master.cf").read_bytes()
    seen = {}

    def failing_check(self, mark, since):
        seen["main.cf"] = (etc / "main.cf").read_text()
        return ["postfix/smtpd[1]: fatal: simulated failure"]

    monkeypatch.setattr(_migrate.Migration, "check_log", failing_check)
    with pytest.raises(_migrate.RolledBack) as info:
        _migrate.migrate(str(etc), to="cdb", log_wait=0.5)
    result = info.value.result
    assert result["rolled_back"] and "simulated failure" in result["rollback_reason"], result
    assert result["reloaded_after_rollback"] is True
    # The rewrite had happened, then was undone byte for byte; the new indexes are gone.
    assert "cdb:%s/virtual" % etc in seen["main.cf"]
    assert (etc / "main.cf").read_bytes() == main_before
    assert (etc / "master.cf").read_bytes() == master_before
    assert not list(etc.glob("*.cdb"))
    assert "simulated failure" in str(info.value)
    # Postfix runs on the old tables.
    msgid = pf.send("bob@%s" % VIRT)
    pf.wait_for_delivery("bob", msgid)
    assert pf.rcpt_code("blocked@%s" % VIRT)[0] == 554


def test_host_without_a_mail_log_migrates_and_says_the_log_was_not_checked(postfix_instance, monkeypatch):
    """A bare container has no maillog_file, no syslog file and no journald: the migration, proven
    key by key before the rewrite, goes ahead and says the log was not read; nothing is rolled back."""
    pf = postfix_instance
    setup_host(pf)

    def no_log(log_file, config_dir):
        raise PostfixError("no mail log found: maillog_file is not set (test)")

    monkeypatch.setattr(_migrate._maillog, "resolve", no_log)  # pylint: disable=protected-access
    monkeypatch.setattr(_migrate._maillog, "maillog_file", lambda config_dir: ("", None))  # pylint: disable=protected-access
    res = migrate(pf, to="cdb")
    assert res["changed"] and not res["rolled_back"], res
    assert res["log_checked"]["skipped"].startswith("no mail log found")
    assert any("the Postfix log was not checked after the reload" in w for w in warnings(res))
    assert not old_types_left(pf.postconf("-n"))
    msgid = pf.send("bob@%s" % VIRT)
    pf.wait_for_delivery("bob", msgid)


def test_btree_table_and_lost_source_to_cdb(postfix_instance):
    """A btree: table (read through the host's postmap -s) and a hash: table whose source is
    gone (dump_missing_sources), to cdb, on a stopped instance (no reload)."""
    pf = postfix_instance
    etc = pf.config_dir
    (etc / "transport").write_text("".join("%s %s\n" % kv for kv in TABLES["transport"].items()))
    pf.run("postmap", "btree:%s" % (etc / "transport"))
    (etc / "virtual").write_text("".join("%s %s\n" % kv for kv in TABLES["virtual"].items()))
    pf.run("postmap", "hash:%s" % (etc / "virtual"))
    (etc / "virtual").unlink()
    os.chmod(etc / "virtual.db", 0o600)
    pf.write_main(transport_maps="btree:%s" % (etc / "transport"), virtual_alias_maps="hash:%s" % (etc / "virtual"),
                  virtual_alias_domains=VIRT)
    main_before = (etc / "main.cf").read_text()
    reason = ("source %s/virtual is missing (only the index %s/virtual.db exists); set dump_missing_sources=true to "
              "write the source from the index and migrate it" % (etc, etc))
    left = [dict(reference="hash:%s/virtual" % etc, parameters=["virtual_alias_maps", "proxy_read_maps"],
                 reason=reason)]
    # Without dump_missing_sources: that table is reported and left alone, the others move.
    res = migrate(pf, to="cdb", check_mode=True)
    assert res["changed"] and res["left_alone"] == left, res
    assert [w for w in warnings(res) if "hash:%s/virtual" % etc in w and reason in w], res
    assert (etc / "main.cf").read_text() == main_before and not list(etc.glob("*.cdb"))
    res = migrate(pf, to="cdb")
    assert res["changed"] and res["left_alone"] == left, res
    assert [w for w in warnings(res) if "left alone" in w and reason in w], res
    assert sorted(v["table"] for v in res["verified"]) == ["cdb:%s/transport" % etc, "cdb:%s/vmailbox" % etc], res
    assert pf.postconf("-h", "virtual_alias_maps").strip() == "hash:%s/virtual" % etc
    assert pf.postconf("-h", "transport_maps").strip() == "cdb:%s/transport" % etc
    assert not (etc / "virtual").exists() and not (etc / "virtual.cdb").exists()
    assert (etc / "virtual.db").exists()
    # Real Postfix still answers from the old index, and from the new one for the others.
    assert query_all(pf, "hash", "virtual", TABLES["virtual"]) == TABLES["virtual"]
    assert query_all(pf, "cdb", "transport", TABLES["transport"]) == TABLES["transport"]
    # Idempotent: still reported, nothing written.
    times = mtimes(pf)
    res = migrate(pf, to="cdb")
    assert res["changed"] is False and res["left_alone"] == left, res
    assert [w for w in warnings(res) if reason in w], res
    assert mtimes(pf) == times
    res = migrate(pf, to="cdb", dump_missing_sources=True, check_mode=True)
    assert "cdb:%s/virtual" % etc in [v["table"] for v in res["verified"]], res
    assert not (etc / "virtual").exists() and not (etc / "virtual.cdb").exists()
    res = migrate(pf, to="cdb", dump_missing_sources=True)
    assert res["changed"] and not res["reloaded"], res
    actions = dict((t["path"].rsplit("/", 1)[1], t["action"]) for t in res["plan"]["tables"])
    assert actions == {"virtual": "dump source, compile"}, actions
    assert res["left_alone"] == [] and not warnings(res), res
    # The source written from the index, then compiled; real postmap -q answers every key.
    assert (etc / "virtual").stat().st_mode & 0o777 == 0o600  # as the old index: a secret stays one
    assert sorted((etc / "virtual").read_text().splitlines()) == sorted("%s %s" % kv for kv in TABLES["virtual"].items())
    for name in ("transport", "virtual"):
        assert query_all(pf, "cdb", name, TABLES[name]) == TABLES[name]
    assert old_types_left(pf.postconf("-n")) == []
    assert migrate(pf, to="cdb")["changed"] is False


def test_playbook_check_mode_prints_the_plan_then_migrates(postfix_instance):
    pf = postfix_instance
    setup_host(pf, start=False)
    etc = pf.config_dir
    times = mtimes(pf)
    rc, out = run_playbook(pf, "migrate_tables", "--check", "-e", "target=all")
    assert rc == 0, out
    assert "hash:%s/virtual -> lmdb:%s/virtual" % (etc, etc) in out, out
    assert "btree:%s/smtp_scache -> lmdb:%s/smtp_scache" % (pf.data_dir, pf.data_dir) in out, out
    assert mtimes(pf) == times
    rc, out = run_playbook(pf, "migrate_tables", "-e", "target=all", "-e", "to=cdb")
    assert rc == 0 and "changed=1" in out, out
    assert "cdb:%s/virtual: keys 3" % etc in out, out
    assert old_types_left(pf.postconf("-n") + pf.postconf("-P")) == []
    # A migrated host: nothing to do, nothing to show (every `when:` a boolean).
    rc, out = run_playbook(pf, "migrate_tables", "-e", "target=all", "-e", "to=cdb")
    assert rc == 0 and "changed=0" in out and "failed=0" in out, out


def test_playbook_stops_at_the_first_failing_host(postfix_instance, tmp_path):
    """Two hosts (two instances on localhost), serial 1: the first one's broken source refuses
    its migration, and the second host is never touched."""
    first = postfix_instance
    setup_host(first, start=False)
    with open(first.config_dir / "virtual", "a") as f:
        f.write("no-value-here\n")
    with private_instance(myhostname="second.test.example") as second:
        setup_host(second, start=False)
        times = mtimes(second)
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(
            "mail_servers:\n  hosts:\n"
            + "".join("    %s:\n      ansible_connection: local\n      ansible_python_interpreter: %s\n"
                      "      config_dir: %s\n" % (name, sys.executable, pf.config_dir)
                      for name, pf in (("mx1", first), ("mx2", second))))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".build", "collections"),
                   ANSIBLE_NOCOLOR="1")
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
                               "-e", "ansible_become=false", os.path.join(ROOT, "playbooks", "migrate_tables.yml")],
                              env=env, capture_output=True, text=True, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert "%s/virtual:4: expected format" % first.config_dir in out, out
        assert "mx2" not in out.split("PLAY RECAP")[0], out
        assert mtimes(second) == times
        assert not list(first.config_dir.glob("*.lmdb"))


def test_a_host_the_reload_preflight_refuses_is_refused_before_any_change(postfix_instance):
    pf = postfix_instance
    setup_host(pf, start=False)
    # virt.test in two address classes: the reload after the rewrite would be refused.
    pf.write_main(mydestination="$myhostname, localhost, %s" % VIRT)
    times = mtimes(pf)
    res = migrate(pf, fail_ok=True)
    assert res["failed"] and not res["rolled_back"], res
    assert any(p.startswith("the reload pre-flight fails before the migration: ") and VIRT in p
               for p in res["problems"]), res["problems"]
    assert mtimes(pf) == times and not list(pf.config_dir.glob("*.lmdb"))
    # Without a reload the rewrite does not depend on it.
    res = migrate(pf, reload=False, check_mode=True)
    assert res["changed"], res


def test_new_index_that_answers_otherwise_is_refused_and_removed(postfix_instance):
    """An old index built with real `postmap -f` keeps a key's upper case; our compile folds
    it as postmap does by default: the new index would not hold the same records. Refused
    after compiling, before the rewrite: the new index is removed, nothing else changed."""
    pf = postfix_instance
    etc = pf.config_dir
    (etc / "virtual").write_text("Alice@%s alice@%s\nbob@%s bob@%s\n" % (VIRT, MAILBOX_DOMAIN, VIRT, MAILBOX_DOMAIN))
    pf.run("postmap", "-f", "hash:%s" % (etc / "virtual"))
    pf.write_main(virtual_alias_maps="hash:%s" % (etc / "virtual"), virtual_alias_domains=VIRT)
    times = mtimes(pf)
    # Check mode finds it already (the table compiled into a scratch directory).
    res = migrate(pf, check_mode=True, fail_ok=True)
    assert res["failed"] and "(new index records): 1 not found (Alice@%s)" % VIRT in res["problems"][0], res
    assert mtimes(pf) == times
    res = migrate(pf, fail_ok=True)
    assert res["failed"] and not res["rolled_back"], res
    assert res["problems"] == ["hash:%s/virtual -> lmdb:%s/virtual (new index records): 1 not found (Alice@%s); "
                               "1 not in the old index (alice@%s)" % (etc, etc, VIRT, VIRT)], res["problems"]
    assert not list(etc.glob("*.lmdb"))
    assert dict((k, v) for k, v in mtimes(pf).items() if not k.endswith(".lock")) == times
