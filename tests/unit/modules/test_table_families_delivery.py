# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transport, canonical and access maps written and compiled by lookup_table, main.cf set by
postconf, Postfix started by reload: two real Postfix instances on 127.0.0.1 prove them.

Instance A (the ``postfix_instance`` fixture) relays ``relay.test`` through its transport map
to instance B on B's port; B takes the domain as a virtual alias domain and delivers into a
Maildir. A rewrites the sender through canonical_maps and refuses recipients through an
access map in smtpd_recipient_restrictions. Every key of every table is also looked up with
the real ``postmap -q``.
"""

from __future__ import annotations

import re

import pytest

from module_runner import run_module
from postfix_instance import MAILBOX_DOMAIN, private_instance

RELAY_DOMAIN = "relay.test"


@pytest.fixture
def peer_instance():
    """Instance B: a second private Postfix (own root, port and name), stopped by its PID."""
    with private_instance(myhostname="peer.test.example") as instance:
        yield instance


def table(pf, name, type_name, entries):
    """Write and compile ``<config_dir>/<name>`` with lookup_table; check each key with postmap -q.

    Returns the map's ``type:path`` for main.cf.
    """
    path = str(pf.config_dir / name)
    res = run_module("lookup_table", dict(path=path, config_dir=str(pf.config_dir), type=type_name,
                                          entries=entries, exclusive=True))
    assert res["type"] == type_name and res["compiled"] and res["count"] == len(entries), res
    spec = "%s:%s" % (type_name, path)
    for key, value in entries.items():
        # postmap(1) -q: the value real Postfix finds, exactly as written.
        found = pf.run("postmap", "-q", key, spec, check=False)
        assert (found.returncode, found.stdout) == (0, value + "\n"), (spec, key, found)
    # A key not in the table is not found (exit status 1, postmap(1)).
    assert pf.run("postmap", "-q", "absent-key.invalid", spec, check=False).returncode == 1
    return spec


def configure(pf, **params):
    res = run_module("postconf", dict(config_dir=str(pf.config_dir), params=params))
    assert res["changed"], res
    return res


def start(pf, *tables):
    """Start the instance through the reload module, whose pre-flight check looked at ``tables``."""
    res = run_module("reload", dict(config_dir=str(pf.config_dir), start_if_stopped=True))
    pf.mark_started()
    assert res["started"] and res["running"], res
    assert set(spec.split(":", 1)[1] for spec in tables) <= set(res["tables_checked"]), res
    pf.wait_for_port()


@pytest.mark.parametrize("type_name", ["hash", "lmdb", "cdb"])
def test_transport_canonical_access_between_two_instances(postfix_instance, peer_instance, type_name):
    a, b = postfix_instance, peer_instance
    assert a.port != b.port and a.myhostname != b.myhostname

    # B: relay.test is a virtual alias domain; carol@ and sales@ land in carol's Maildir.
    vmailbox = table(b, "vmailbox", type_name, {"carol@%s" % MAILBOX_DOMAIN: "carol/"})
    virtual = table(b, "virtual", type_name, {
        "carol@%s" % RELAY_DOMAIN: "carol@%s" % MAILBOX_DOMAIN,
        "sales@%s" % RELAY_DOMAIN: "carol@%s" % MAILBOX_DOMAIN,
    })
    configure(b, virtual_alias_domains=RELAY_DOMAIN, virtual_alias_maps=virtual, virtual_mailbox_maps=vmailbox)
    start(b, vmailbox, virtual)

    # A: relays relay.test (relay_domains) to B through transport_maps; rewrites senders;
    # refuses some recipients before the relay check (smtpd_recipient_restrictions).
    transport = table(a, "transport", type_name, {RELAY_DOMAIN: "smtp:[127.0.0.1]:%d" % b.port})
    canonical = table(a, "canonical", type_name, {
        "tester@client.test": "sales@%s" % RELAY_DOMAIN,  # user@domain -> address (canonical(5))
        "@old-client.test": "carol@%s" % RELAY_DOMAIN,  # @domain -> address
    })
    access = table(a, "access", type_name, {
        "blocked@%s" % RELAY_DOMAIN: "REJECT no mail for this address here",
        "closed.test": "550 5.1.2 this domain is closed",  # a domain key: any user of it
        "carol@%s" % RELAY_DOMAIN: "OK",
    })
    configure(a, relay_domains=RELAY_DOMAIN, transport_maps=transport, canonical_maps=canonical,
              smtpd_recipient_restrictions="check_recipient_access %s, permit_mynetworks, "
                                           "reject_unauth_destination" % access)
    start(a, transport, canonical, access)

    # Access map: the reply text is the map's (access(5): REJECT gives access_map_reject_code
    # 554 and 5.7.1; "NNN text" its own code; smtpd_check.c adds "Recipient address rejected").
    code, reply = a.rcpt_code("blocked@%s" % RELAY_DOMAIN)
    assert (code, reply) == (554, "5.7.1 <blocked@%s>: Recipient address rejected: "
                                  "no mail for this address here" % RELAY_DOMAIN)
    code, reply = a.rcpt_code("anyone@closed.test")
    assert (code, reply) == (550, "5.1.2 <anyone@closed.test>: Recipient address rejected: "
                                  "this domain is closed")
    assert a.rcpt_code("carol@%s" % RELAY_DOMAIN)[0] == 250
    assert a.rcpt_code("sales@%s" % RELAY_DOMAIN)[0] == 250

    # Transport map: A hands the message to B over SMTP; B delivers it; canonical map: the
    # envelope sender (Return-Path, added by B's virtual(8)) and the From: header rewritten.
    msgid = a.send("carol@%s" % RELAY_DOMAIN, sender="tester@client.test")
    headers = b.headers(b.wait_for_delivery("carol", msgid))
    assert headers["Return-Path"] == "<sales@%s>" % RELAY_DOMAIN
    assert headers["From"] == "sales@%s" % RELAY_DOMAIN
    assert headers["Delivered-To"] == "carol@%s" % MAILBOX_DOMAIN
    assert any("from %s" % a.myhostname in r and "by %s" % b.myhostname in r for r in headers.get_all("Received"))
    log = a.wait_for_log("relay=127.0.0.1[127.0.0.1]:%d" % b.port)
    sent = [line for line in log.splitlines()
            if "to=<carol@%s>" % RELAY_DOMAIN in line and "relay=127.0.0.1[127.0.0.1]:%d," % b.port in line]
    assert len(sent) == 1 and "status=sent (250 " in sent[0], log

    # The @domain canonical key rewrites any user of the domain.
    msgid = a.send("sales@%s" % RELAY_DOMAIN, sender="someone@Old-Client.test")
    headers = b.headers(b.wait_for_delivery("carol", msgid))
    assert (headers["Return-Path"], headers["From"]) == ("<carol@%s>" % RELAY_DOMAIN, "carol@%s" % RELAY_DOMAIN)
    # B's queue manager saw only the rewritten envelope senders.
    senders = re.findall(r"qmgr\[\d+\]: \w+: from=<([^>]*)>", b.log())
    assert senders == ["sales@%s" % RELAY_DOMAIN, "carol@%s" % RELAY_DOMAIN], b.log()

    # An entry added to the access map while A runs: lookup_table recompiles the index and
    # the next SMTP session refuses the address, with no reload (smtpd restarts when a table
    # it opened has changed: "table ... has changed -- restarting", smtpd.c pre_accept()).
    res = run_module("lookup_table", dict(path=access.split(":", 1)[1], config_dir=str(a.config_dir),
                                          type=type_name, entries={"sales@%s" % RELAY_DOMAIN: "REJECT sales moved"}))
    assert res["added"] == ["sales@%s" % RELAY_DOMAIN] and res["compiled"], res
    assert a.run("postmap", "-q", "sales@%s" % RELAY_DOMAIN, access).stdout == "REJECT sales moved\n"
    code, reply = a.rcpt_code("sales@%s" % RELAY_DOMAIN)
    assert (code, reply) == (554, "5.7.1 <sales@%s>: Recipient address rejected: sales moved" % RELAY_DOMAIN)
    needle = "table %s(" % access
    restarts = [line for line in a.wait_for_log(needle).splitlines() if needle in line]
    assert all("postfix/smtpd[" in line and line.endswith(") has changed -- restarting") for line in restarts), restarts
