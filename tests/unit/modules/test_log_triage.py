# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailops.postfix.log_triage on the real log of a running Postfix with injected problems."""

from __future__ import annotations

import os
import sys
import time

from module_runner import run_module
from postfix_instance import free_port

from ansible_collections.mailops.postfix.plugins.module_utils._maillog import normalize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # playbook_runner beside this file
from playbook_runner import run_playbook  # noqa: E402


def triage(pf, _check=False, **args):
    return run_module("log_triage", dict(args, config_dir=str(pf.config_dir)), check_mode=_check, fail_ok=True)


def test_triage_real_log_with_injected_warnings(postfix_instance):
    pf = postfix_instance
    pf.add_mailboxes("alice")
    pf.write_main(default_transport="smtp", relay_transport="smtp", relayhost="[127.0.0.1]:%d" % free_port())
    # A table older than its source: Postfix warns when a daemon opens it (dict_db.c: the source
    # must also be more than 100 s old).
    now = time.time()
    os.utime(pf.config_dir / "vmailbox", (now - 200, now - 200))
    os.utime(pf.config_dir / "vmailbox.db", (now - 3600, now - 3600))
    pf.start()
    pf.send("alice@mbox.test")
    pf.send("bob@remote.example")
    pf.wait_for_log("is older than source file")
    pf.wait_for_log("status=deferred")

    res = triage(pf)  # maillog_file found through postconf -c
    assert not res.get("failed"), res
    assert res["changed"] is False and res["healthy"] is True
    assert res["sources"] == [str(pf.log_path)]
    assert res["counts"]["warning"] >= 2 and res["counts"]["fatal"] == 0
    older = [g for g in res["groups"] if "is older than source file" in g["message"]]
    assert older and older[0]["severity"] == "warning"
    assert older[0]["message"] == normalize("database %s/vmailbox.db is older than source file %s/vmailbox" % (
        pf.config_dir, pf.config_dir))  # digits in the temporary path are masked too
    assert sum(g["count"] for g in older) == res["counts"]["warning"]
    time.sleep(1.1)  # log timestamps have one-second resolution
    mark = time.time()

    # A bad queue id (warning) and a real fatal, both through postlogd into maillog_file.
    pf.run("postsuper", "-d", "-", input="bad/id\n", check=False)
    pf.run("postqueue", "-s", "remote.example", check=False)
    pf.wait_for_log("Flush service is not configured")
    res = triage(pf)
    assert res["healthy"] is False and res["counts"]["fatal"] == 1
    assert res["groups"][0]["severity"] == "fatal" and res["groups"][0]["program"] == "postfix/postqueue"
    assert res["groups"][0]["message"] == 'Flush service is not configured for destination "remote.example"'
    bad = [g for g in res["groups"] if g["program"] == "postfix/postsuper"]
    assert bad[0]["message"] == "invalid mail queue id: bad/id" and bad[0]["count"] == 1

    # since / lines / severities / check mode
    recent = triage(pf, since=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(mark)))
    assert recent["counts"]["fatal"] == 1 and not any("older than" in g["message"] for g in recent["groups"])
    tail = triage(pf, lines=2)
    assert tail["lines_read"] == 2
    only_warn = triage(pf, severities=["warning"], _check=True)
    assert set(g["severity"] for g in only_warn["groups"]) == {"warning"} and only_warn["healthy"] is False
    assert triage(pf, since="1h")["counts"] == res["counts"]


def test_triage_failures(postfix_instance, tmp_path):
    pf = postfix_instance
    # maillog_file set but Postfix never started: no file yet
    res = triage(pf)
    assert res["failed"] and "does not exist" in res["msg"] and str(pf.log_path) in res["msg"]
    res = triage(pf, path=str(tmp_path / "missing.log"))
    assert res["failed"] and "missing.log does not exist" in res["msg"]
    res = triage(pf, path=str(tmp_path), since="whenever")
    assert res["failed"] and "invalid since" in res["msg"]
    res = triage(pf, source="journald", include_rotated=True)
    assert res["failed"] and "journald" in res["msg"]


def test_triage_playbook(postfix_instance):
    pf = postfix_instance
    pf.start()
    pf.run("postsuper", "-d", "-", input="bad/id\n", check=False)
    pf.run("postqueue", "-s", "remote.example", check=False)
    pf.wait_for_log("Flush service is not configured")
    rc, out = run_playbook(pf, "triage", "-e", "since=1h")
    assert rc == 0, out
    assert "localhost: NOT HEALTHY -- warning 1, error 0, fatal 1, panic 0" in out
    assert "invalid mail queue id: bad/id" in out and "postfix/postqueue" in out
    rc, out = run_playbook(pf, "triage", "-e", "fail_unhealthy=true")
    assert rc != 0 and "1 fatal and 0 panic line(s)" in out
