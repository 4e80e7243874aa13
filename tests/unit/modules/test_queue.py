# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailops.postfix.queue against a real running Postfix whose outbound mail defers."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from module_runner import run_module
from postfix_instance import free_port

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._queue import (
    _clean_ids, parse_duration, valid_queue_id)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # playbook_runner beside this file
from playbook_runner import run_playbook  # noqa: E402


def _queue(pf):
    """The queue as Postfix itself reports it: {id: queue_name}."""
    out = pf.run("postqueue", "-j").stdout
    return dict((m["queue_id"], m["queue_name"]) for m in map(json.loads, out.splitlines()))


def _wait(pf, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = _queue(pf)
        if predicate(q):
            return q
        time.sleep(0.2)
    raise AssertionError("queue never reached the wanted state: %r\n%s" % (_queue(pf), pf.log()))


def _deferring(pf, n=3, **main):
    """Start Postfix relaying everything to a closed local port, queue ``n`` messages, wait until deferred."""
    closed = free_port()
    pf.write_main(default_transport="smtp", relay_transport="smtp",
                  relayhost="[127.0.0.1]:%d" % closed, **main)
    pf.start()
    for i in range(n):
        pf.send("user%d@remote.example" % i, sender="sender%d@client.test" % i)
    q = _wait(pf, lambda q: len(q) == n and set(q.values()) == {"deferred"})
    return closed, q


def mod(pf, _check=False, **args):
    return run_module("queue", dict(args, config_dir=str(pf.config_dir)), check_mode=_check, fail_ok=True)


def test_list_filters_hold_release_delete_one(postfix_instance):
    pf = postfix_instance
    closed, q = _deferring(pf, 3)

    res = mod(pf)
    assert not res.get("failed"), res
    assert res["changed"] is False and res["postfix_running"] is True
    assert sorted(m["id"] for m in res["messages"]) == sorted(q)
    m = [m for m in res["messages"] if m["sender"] == "sender1@client.test"][0]
    assert m["queue"] == "deferred" and m["size"] > 0 and 0 <= m["age"] < 120
    reason = "connect to 127.0.0.1[127.0.0.1]:%d: Connection refused" % closed
    assert m["recipients"] == [{"address": "user1@remote.example", "delay_reason": reason}]
    assert res["summary"]["by_queue"]["deferred"] == 3 and res["summary"]["by_queue"]["hold"] == 0
    assert res["summary"]["by_reason"] == {reason: 3}
    assert res["summary"]["messages"] == 3 and res["count"] == 3

    # filters
    assert [x["id"] for x in mod(pf, sender="SENDER1@client.test")["messages"]] == [m["id"]]
    assert len(mod(pf, recipient="@remote.example")["messages"]) == 3
    assert len(mod(pf, recipient="user[02]@*")["messages"]) == 2
    assert mod(pf, older_than="1h")["messages"] == []
    assert len(mod(pf, older_than="0s")["messages"]) == 3
    assert mod(pf, queue=["hold"])["messages"] == []

    # hold one, by id as postqueue -p prints it (status mark ignored)
    target = m["id"]
    res = mod(pf, state="held", ids=[target + "*"])
    assert res["changed"] is True and res["ids"] == [target] and res["count"] == 1, res
    assert _queue(pf)[target] == "hold"
    listed = mod(pf, queue=["hold"])
    assert [x["id"] for x in listed["messages"]] == [target] and listed["summary"]["by_queue"]["hold"] == 1
    again = mod(pf, state="held", ids=[target])
    assert again["changed"] is False and again["ids"] == [] and again["skipped_ids"] == [target]

    res = mod(pf, state="released", ids=[target])
    assert res["changed"] is True and res["ids"] == [target]
    assert _queue(pf)[target] in ("deferred", "active", "incoming")

    # delete one id: exactly that one goes, the others remain
    others = sorted(set(q) - {target})
    res = mod(pf, state="deleted", ids=[target])
    assert res["changed"] is True and res["ids"] == [target] and res["count"] == 1
    assert sorted(_queue(pf)) == others

    # unknown (well-formed) ids are reported, not fatal
    res = mod(pf, state="deleted", ids=[target, "ABCDEF12345"])
    assert not res.get("failed") and res["changed"] is False
    assert res["missing_ids"] == [target, "ABCDEF12345"] and res["count"] == 0
    assert sorted(_queue(pf)) == others
    assert mod(pf, ids=[target, others[0]])["missing_ids"] == [target]


def test_delete_all_needs_confirmation_and_check_mode_touches_nothing(postfix_instance):
    pf = postfix_instance
    q = _deferring(pf, 3)[1]

    res = mod(pf, state="deleted", ids=["ALL"])
    assert res["failed"] and "confirm_all" in res["msg"]
    assert sorted(_queue(pf)) == sorted(q)

    for bad in (["bad/id"], ["../../etc/passwd"], ["3ED1624E13;rm"], ["abcdef1234"], ["12345"], ["ALL", sorted(q)[0]]):
        res = mod(pf, state="deleted", ids=bad, confirm_all=True)
        assert res["failed"] and ("malformed queue id" in res["msg"] or "ALL cannot" in res["msg"]), res
        assert sorted(_queue(pf)) == sorted(q)

    res = mod(pf, state="deleted", sender="nobody@nowhere.test")
    assert res["changed"] is False and res["ids"] == []
    res = mod(pf, state="deleted")
    assert res["failed"] and "needs ids" in res["msg"]

    for state in ("deleted", "held", "requeued"):
        res = mod(pf, state=state, ids=["ALL"], confirm_all=True, _check=True)
        assert res["changed"] is True and sorted(res["ids"]) == sorted(q), (state, res)
        assert _queue(pf) == q
    res = mod(pf, state="deleted", ids=[sorted(q)[0]], _check=True)
    assert res["changed"] is True and res["ids"] == [sorted(q)[0]]
    res = mod(pf, state="released", ids=["ALL"], confirm_all=True, _check=True)
    assert res["changed"] is False and res["ids"] == []
    assert _queue(pf) == q
    assert "postsuper" not in pf.log()

    # by filter: sender0's message only
    res = mod(pf, state="deleted", sender="sender0@client.test")
    assert res["changed"] is True and res["count"] == 1
    assert len(_queue(pf)) == 2

    res = mod(pf, state="deleted", ids=["ALL"], confirm_all=True)
    assert res["changed"] is True and res["count"] == 2 and len(res["ids"]) == 2
    assert _queue(pf) == {}
    assert "Deleted: 2 messages" in pf.wait_for_log("Deleted: 2 messages")
    res = mod(pf, state="deleted", ids=["ALL"], confirm_all=True)
    assert res["changed"] is False and res["count"] == 0


def test_flush_requeue_and_long_queue_ids(postfix_instance):
    pf = postfix_instance
    q = _deferring(pf, 2, enable_long_queue_ids="yes")[1]
    for qid in q:
        assert valid_queue_id(qid) and "z" in qid and len(qid) > 11, qid

    first, second = sorted(q)
    res = mod(pf, state="flushed", ids=[first], _check=True)
    assert res["changed"] is True and res["ids"] == [first]
    attempts = pf.log().count("%s: to=<" % first)
    res = mod(pf, state="flushed", ids=[first])
    assert res["changed"] is True and res["ids"] == [first]
    deadline = time.monotonic() + 20
    while pf.log().count("%s: to=<" % first) <= attempts and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pf.log().count("%s: to=<" % first) > attempts, pf.log()  # one more delivery attempt

    res = mod(pf, state="flushed")
    assert res["changed"] is True and sorted(res["ids"]) == sorted(q)

    # postqueue -s needs fast_flush_domains: a clear failure, not a traceback
    res = mod(pf, state="flushed", site="remote.example")
    assert res["failed"] and "Flush service is not configured" in res["msg"]

    res = mod(pf, state="held", ids=["ALL"])
    assert res["failed"] and "confirm_all" in res["msg"]
    res = mod(pf, state="held", ids=["ALL"], confirm_all=True)
    assert res["changed"] is True and res["count"] == 2
    assert set(_queue(pf).values()) == {"hold"}
    res = mod(pf, state="flushed")
    assert res["changed"] is False  # held mail is not flushed
    res = mod(pf, state="released", ids=["ALL"], confirm_all=True)
    assert res["changed"] is True and res["count"] == 2 and sorted(res["ids"]) == sorted(q)
    _wait(pf, lambda q: set(q.values()) == {"deferred"})

    # requeue: back through pickup/cleanup (the message leaves the deferred queue)
    res = mod(pf, state="requeued", ids=[second])
    assert res["changed"] is True and res["ids"] == [second]
    assert _queue(pf).get(second) != "deferred"
    assert _queue(pf)[first] == "deferred"


def test_postfix_not_running(postfix_instance):
    pf = postfix_instance
    q = _deferring(pf, 2)[1]
    pf.stop()
    res = mod(pf)
    assert not res.get("failed"), res
    assert res["postfix_running"] is False and sorted(m["id"] for m in res["messages"]) == sorted(q)
    assert "not running" in json.dumps(res.get("warnings"))
    res = mod(pf, state="flushed")
    assert res["failed"] and "not running" in res["msg"]
    # check mode still answers exactly
    res = mod(pf, state="deleted", ids=sorted(q), _check=True)
    assert res["changed"] is True and sorted(res["ids"]) == sorted(q)
    assert sorted(_queue(pf)) == sorted(q)
    # postsuper works on a stopped Postfix, but with maillog_file set it cannot open the log
    # without postlogd and stops after the first message: reported, with what was done.
    res = mod(pf, state="deleted", ids=sorted(q))
    left = _queue(pf)
    if res.get("failed"):
        assert "postsuper -d failed" in res["msg"] and "not running" in res["msg"], res
        assert sorted(res["ids"] + list(left)) == sorted(q) and res["changed"] is bool(res["ids"])
    else:
        assert res["changed"] is True and left == {}


def test_no_postfix_config(tmp_path):
    res = run_module("queue", dict(config_dir=str(tmp_path / "nowhere")), fail_ok=True)
    assert res["failed"] and "postqueue" in res["msg"]


def test_queue_ids_and_durations():
    for good in ("3ED1624E13", "B0C5C2126F8", "ABCDEF", "4dZxQw5Jyzz6n", "4dZxQw5Jy0zB", "4jYndr6F12zJMfN"):
        assert valid_queue_id(good), good
    for bad in ("3ed1624e13", "ABCDE", "3ED1624E1G", "4dZxQw5Jyz", "4dZaQw5JyzB", "4dZxQw5Jyzz", "",
                "AB CDEF", "ABCDEF\n", "ALL", "-d", "../ABCDEF"):
        assert not valid_queue_id(bad), bad
    assert _clean_ids(["3ED1624E13!", " 3ED1624E13 "]) == ["3ED1624E13"]
    assert _clean_ids("ALL") == "ALL"
    with pytest.raises(PostfixError):
        _clean_ids(["ABCDEF", "nope"])
    assert parse_duration("2h") == 7200 and parse_duration("30m") == 1800 and parse_duration("1d") == 86400
    assert parse_duration("1h30m") == 5400 and parse_duration("90") == 90 and parse_duration("1w") == 604800
    for bad in ("", "h", "2x", "-1h", "1.5h"):
        with pytest.raises(PostfixError):
            parse_duration(bad)


def test_queue_playbook(postfix_instance):
    pf = postfix_instance
    q = _deferring(pf, 3)[1]
    rc, out = run_playbook(pf, "queue")
    assert rc == 0, out
    assert "localhost: 3 message(s) (3 deferred)" in out and all(i in out for i in q)
    rc, out = run_playbook(pf, "queue", "-e", "queue_action=hold", "-e", "recipient=user1@remote.example")
    assert rc == 0 and "hold: 1 message(s)" in out and "(1 hold, 2 deferred)" in out, out
    assert sorted(_queue(pf).values()) == ["deferred", "deferred", "hold"]
    rc, out = run_playbook(pf, "queue", "-e", "action=delete", "-e", "ids=ALL")
    assert rc != 0 and "confirm_all" in out and len(_queue(pf)) == 3
    rc, out = run_playbook(pf, "queue", "-e", "action=delete", "-e", "ids=ALL", "-e", "confirm_all=true", "--check")
    assert rc == 0 and "would touch 3 message(s)" in out and len(_queue(pf)) == 3, out
    rc, out = run_playbook(pf, "queue", "-e", "action=delete", "-e", "ids=ALL", "-e", "confirm_all=true")
    assert rc == 0 and "delete: 3 message(s)" in out and _queue(pf) == {}, out
