# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server role's lookup tables (postfix_server_maps) and master.cf services run by
ansible-playbook against a private, running Postfix.

The role's validate, install (nothing installed) and configure tasks and its handlers run on
localhost with every path pointed into the instance, so the system Postfix is never touched.
Real Postfix is the oracle: postconf -n / -M, postmap -q on every key (regexp: tables too),
SMTP answers of the access map and of the new submission listener.
"""

from __future__ import annotations

import json
import os
import smtplib
import stat
import time

from postfix_instance import free_port
from role_runner import ROLE_TASKS_PLAYBOOK, VERIFY_PLAYBOOK, role_paths, run_playbooks

PASSWORD = "Tr0ub4dor-and-3-horses"  # must never reach the playbook output

WRITE_TASK = "Write the tables, /etc/aliases, main.cf and master.cf"
RELOAD_TASK = "Reload Postfix for changed main.cf, master.cf or tables read at start"


def inventory(conf, submission_port):
    return {
        "postfix_server_install": False,
        "postfix_server_table_type": "hash",
        "postfix_server_main_cf": {
            "relayhost": "[smarthost.test]:587",
            "smtp_sasl_auth_enable": "yes",
            "smtp_sasl_security_options": "noanonymous",
            # The access map is named here: it has no parameter of its own.
            "smtpd_recipient_restrictions": ["check_recipient_access hash:%s/access" % conf,
                                             "permit_mynetworks", "reject_unauth_destination"],
        },
        "postfix_server_virtual_alias_domains": [{"domain": "alias.test", "aliases": {"info": ["open@shop.test"]}}],
        "postfix_server_maps": {
            "transport": {"parameter": "transport_maps",
                          "entries": {"example.net": "smtp:[smarthost.test]:587",
                                      ".example.net": "smtp:[smarthost.test]:587"}},
            "canonical": {"parameter": "sender_canonical_maps",
                          "entries": {"alice": "alice.smith@shop.test", "bob@old.test": "bob@shop.test"}},
            "header_checks": {"type": "regexp", "parameter": "header_checks",
                              "entries": {"/^Subject:.*viagra/": "REJECT no spam here",
                                          "/^X-Mailer: BadMailer/i": "DISCARD"}},
            "sasl_passwd": {"parameter": "smtp_sasl_password_maps",
                            "entries": {"[smarthost.test]:587": "relayuser:" + PASSWORD}},
            "access": {"mode": "0640", "entries": {"blocked@shop.test": "REJECT this address takes no mail",
                                                   "open@shop.test": "OK"}},
        },
        "postfix_server_maps_host": {
            "canonical": {"entries": {"bob@old.test": None, "carol": "carol@shop.test"}},
        },
        "postfix_server_master_cf": [
            {"name": "127.0.0.1:%d" % submission_port, "type": "inet", "private": "n", "unpriv": "-",
             "chroot": "n", "command": "smtpd",
             "options": {"syslog_name": "postfix/submission", "smtpd_tls_security_level": "none",
                         "smtpd_client_restrictions": "permit_mynetworks,reject"}},
        ],
    }


def run_role(pf, inv, *extra, verify=False):
    """ansible-playbook with the role's tasks (or only its verify entry point); returns (rc, output,
    number changed, tasks that changed, seconds)."""
    run = run_playbooks(pf, dict(inv, **role_paths(pf)), [VERIFY_PLAYBOOK if verify else ROLE_TASKS_PLAYBOOK], *extra)
    assert run.changed is not None, run.out
    return run.rc, run.out, run.changed, run.changed_tasks, run.seconds


def query(pf, reference, key):
    """Real postmap -q: the value, or None when the key is not found (exit 1)."""
    proc = pf.run("postmap", "-q", key, reference, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.rstrip("\n") if proc.returncode == 0 else None


def banner(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                return smtp.noop()[0]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def snapshot(conf):
    """Every file of the config dir: name -> (mtime_ns, bytes)."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(conf.iterdir()) if p.is_file()}


def test_role_writes_maps_and_services_postfix_answers_and_nothing_changes_twice(postfix_instance):
    pf = postfix_instance
    conf = pf.config_dir
    aliases = conf / "aliases"
    aliases.write_text("postmaster: root\n")
    pf.write_main(alias_maps="hash:%s" % aliases, alias_database="hash:%s" % aliases)
    pf.run("postalias", "hash:%s" % aliases)
    port = free_port()
    inv = inventory(str(conf), port)

    # A bad inventory fails in validate, before anything changes.
    before = snapshot(conf)
    bad = json.loads(json.dumps(inv))
    bad["postfix_server_maps"]["transport"]["typ"] = "hash"
    bad["postfix_server_maps"]["header_checks"]["entries"]["^Subject: no delimiters"] = "REJECT"
    rc, out, changed, tasks, _took = run_role(pf, bad)
    assert rc != 0 and changed == 0, out
    assert "postfix_server_maps.transport: unknown key typ" in out
    assert ("postfix_server_maps.header_checks.entries: ^Subject: no delimiters is not a pattern of the form"
            " /pattern/flags (regexp_table(5))") in out
    assert snapshot(conf) == before

    # A type this Postfix lacks (postconf -m, asked once): refused before any file changes.
    if "pcre" not in pf.postconf("-m").split():
        lacking = json.loads(json.dumps(inv))
        lacking["postfix_server_maps"]["header_checks"]["type"] = "pcre"
        rc, out, changed, tasks, _took = run_role(pf, lacking)
        assert rc != 0 and changed == 0, out
        assert "postfix_server_maps.header_checks.type: this Postfix has no pcre tables" in out
        assert snapshot(conf) == before

    pf.start()
    rc, out, changed, tasks, first = run_role(pf, inv, "-v", "--diff")
    assert rc == 0, out
    assert PASSWORD not in out
    assert "[smarthost.test]:587" in out  # the secret map's keys are shown, its values never
    # One module run writes and compiles every table and sets main.cf and master.cf; the pattern
    # tables, main.cf and master.cf changed: one reload.
    assert tasks == [WRITE_TASK, RELOAD_TASK, "Reload Postfix"], tasks

    # main.cf as Postfix reads it.
    postconf = pf.postconf("-n").splitlines()
    for line in ("transport_maps = hash:%s/transport" % conf,
                 "sender_canonical_maps = hash:%s/canonical" % conf,
                 "header_checks = regexp:%s/header_checks" % conf,
                 "smtp_sasl_password_maps = hash:%s/sasl_passwd" % conf,
                 "relayhost = [smarthost.test]:587",
                 "smtpd_recipient_restrictions = check_recipient_access hash:%s/access, permit_mynetworks,"
                 " reject_unauth_destination" % conf):
        assert line in postconf, (line, postconf)

    # Every key, as real postmap -q finds it; the host layer dropped one canonical entry and added one.
    expected = {
        "hash:%s/transport" % conf: {"example.net": "smtp:[smarthost.test]:587",
                                     ".example.net": "smtp:[smarthost.test]:587"},
        "hash:%s/canonical" % conf: {"alice": "alice.smith@shop.test", "carol": "carol@shop.test",
                                     "bob@old.test": None},
        "hash:%s/sasl_passwd" % conf: {"[smarthost.test]:587": "relayuser:" + PASSWORD},
        "hash:%s/access" % conf: {"blocked@shop.test": "REJECT this address takes no mail", "open@shop.test": "OK"},
        "regexp:%s/header_checks" % conf: {"Subject: buy viagra now": "REJECT no spam here",
                                           "Subject: hello": None,
                                           # i toggles regexp_table(5)'s default case-insensitivity
                                           "X-Mailer: BadMailer 2.0": "DISCARD", "X-Mailer: badmailer 2.0": None},
    }
    for reference, answers in expected.items():
        for key, value in answers.items():
            assert query(pf, reference, key) == value, (reference, key)

    # The secret map: source and index 0600; a mode asked for: source and index.
    for name, mode in (("sasl_passwd", 0o600), ("sasl_passwd.db", 0o600), ("access", 0o640), ("access.db", 0o640)):
        assert stat.S_IMODE(os.stat(conf / name).st_mode) == mode, name

    # master.cf: the service as postconf -M reads it, and the listener answers after the reload.
    services = pf.postconf("-M").splitlines()
    assert [s for s in services if s.startswith("127.0.0.1:%d " % port)], services
    assert "127.0.0.1:%d/inet/syslog_name = postfix/submission" % port in pf.postconf("-P").splitlines()
    pf.wait_for_log("reload -- version")
    assert banner(port) == 250

    # The access map, named only in smtpd_recipient_restrictions, answers over SMTP.
    code, msg = pf.rcpt_code("blocked@shop.test")
    assert code == 554 and "this address takes no mail" in msg, (code, msg)

    # Second identical run: nothing changes, no file is rewritten.
    before = snapshot(conf)
    rc, out, changed, tasks, second = run_role(pf, inv)
    assert rc == 0, out
    assert changed == 0, tasks
    assert snapshot(conf) == before
    print("converge: first %.1fs, second (no change) %.1fs" % (first, second))

    # verify (a play of its own, the maps merged there): every key answers as declared; after the
    # index is rebuilt by hand from an edited source, the edited key is named, a secret one
    # without its value.
    rc, out, changed, tasks, _took = run_role(pf, inv, "-v", verify=True)
    assert rc == 0 and changed == 0, out
    assert ("9 key(s) answer as declared ({c}/virtual: 1, {c}/aliases: 1, postfix_server_maps.access ({c}/access): 2,"
            " postfix_server_maps_host.canonical ({c}/canonical): 2, postfix_server_maps.sasl_passwd ({c}/sasl_passwd): 1,"
            " postfix_server_maps.transport ({c}/transport): 2)".format(c=conf)) in out, out
    assert PASSWORD not in out
    transport, sasl = (conf / "transport").read_text(), (conf / "sasl_passwd").read_text()
    (conf / "transport").write_text(transport.replace("smtp:[smarthost.test]:587", "smtp:[elsewhere.test]", 1))
    (conf / "sasl_passwd").write_text(sasl.replace(PASSWORD, "an0ther-pw"))
    pf.run("postmap", "hash:%s/transport" % conf)
    pf.run("postmap", "hash:%s/sasl_passwd" % conf)
    rc, out, changed, tasks, _took = run_role(pf, inv, "-v", verify=True)
    assert rc != 0, out
    assert ("postfix_server_maps.transport (%s/transport): example.net resolves to smtp:[elsewhere.test]"
            " (expected smtp:[smarthost.test]:587)" % conf) in out
    assert ("postfix_server_maps.sasl_passwd (%s/sasl_passwd): [smarthost.test]:587 resolves to another value"
            " (secret map)" % conf) in out
    assert PASSWORD not in out and "an0ther-pw" not in out
    rc, out, changed, tasks, _took = run_role(pf, inv)
    assert rc == 0 and WRITE_TASK in tasks, out
    before = snapshot(conf)

    # Check mode with --diff: a new regexp entry and a changed transport are previewed, nothing written.
    changed_inv = json.loads(json.dumps(inv))
    changed_inv["postfix_server_maps"]["header_checks"]["entries"]["/^Subject:.*lottery/"] = "REJECT"
    changed_inv["postfix_server_maps"]["transport"]["entries"]["example.net"] = "smtp:[other.test]:25"
    rc, out, changed, tasks, _took = run_role(pf, changed_inv, "--check", "--diff")
    assert rc == 0 and changed > 0, out
    assert "/^Subject:.*lottery/" in out and "smtp:[other.test]:25" in out
    assert snapshot(conf) == before

    # An indexed map changes: written and compiled, no reload (its daemons notice the new index).
    reloads = pf.log().count("reload -- version")
    inv["postfix_server_maps"]["transport"]["entries"]["example.net"] = "smtp:[other.test]:25"
    rc, out, changed, tasks, _took = run_role(pf, inv)
    assert rc == 0, out
    assert tasks == [WRITE_TASK], tasks
    assert query(pf, "hash:%s/transport" % conf, "example.net") == "smtp:[other.test]:25"
    # A regexp map changes: no index to build, Postfix reloads.
    inv["postfix_server_maps"]["header_checks"]["entries"]["/^Subject:.*lottery/"] = "REJECT"
    rc, out, changed, tasks, _took = run_role(pf, inv)
    assert rc == 0, out
    assert tasks == [WRITE_TASK, RELOAD_TASK, "Reload Postfix"], tasks
    assert query(pf, "regexp:%s/header_checks" % conf, "Subject: you won the lottery") == "REJECT"
    pf.wait_for_log("reload -- version")
    deadline = time.monotonic() + 20
    while pf.log().count("reload -- version") < reloads + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pf.log().count("reload -- version") == reloads + 1

    # A pattern of the right form that the host's regexp library refuses: the host's postmap reads
    # the new source before it replaces the old one, the play fails, the live table stays.
    live = (conf / "header_checks").read_bytes()
    broken = json.loads(json.dumps(inv))
    broken["postfix_server_maps"]["header_checks"]["entries"]["/^Subject: (unclosed/"] = "REJECT"
    rc, out, changed, tasks, _took = run_role(pf, broken)
    assert rc != 0 and "header_checks" in out, out
    assert (conf / "header_checks").read_bytes() == live
    assert "Reload Postfix" not in tasks

    # A map set absent: its parameter leaves main.cf, its files go.
    gone = json.loads(json.dumps(inv))
    gone["postfix_server_maps"]["canonical"]["state"] = "absent"
    rc, out, changed, tasks, _took = run_role(pf, gone)
    assert rc == 0, out
    assert not [line for line in pf.postconf("-n").splitlines() if line.startswith("sender_canonical_maps")]
    assert not (conf / "canonical").exists() and not (conf / "canonical.db").exists()
    rc, out, changed, tasks, _took = run_role(pf, gone)
    assert rc == 0 and changed == 0, tasks


def test_secret_map_keys_only_in_check_mode_and_on_a_host_without_virtual_aliases(postfix_instance):
    """The secret map's preview (check mode, --diff, -v) never shows the password; then applied on
    a host that declares no virtual alias (the role makes an empty virtual map for main.cf)."""
    pf = postfix_instance
    conf = pf.config_dir
    inv = {"postfix_server_install": False, "postfix_server_table_type": "hash",
           "postfix_server_maps": {"sasl_passwd": {"parameter": "smtp_sasl_password_maps",
                                                   "entries": {"[relay.test]:587": "u:" + PASSWORD}}}}
    (conf / "aliases").write_text("postmaster: root\n")
    rc, out, changed, tasks, _took = run_role(pf, inv, "--check", "--diff", "-v")
    assert rc == 0, out
    assert "[relay.test]:587" in out and PASSWORD not in out
    assert not (conf / "sasl_passwd").exists()

    rc, out, changed, tasks, _took = run_role(pf, inv, "--diff", "-v")
    assert rc == 0, out
    assert PASSWORD not in out
    assert (conf / "virtual").read_text() == "" and (conf / "virtual.db").exists()
    assert stat.S_IMODE(os.stat(conf / "sasl_passwd").st_mode) == 0o600
    assert query(pf, "hash:%s/sasl_passwd" % conf, "[relay.test]:587") == "u:" + PASSWORD
    rc, out, changed, tasks, _took = run_role(pf, inv)
    assert rc == 0 and changed == 0, tasks
