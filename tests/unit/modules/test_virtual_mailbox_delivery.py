# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Virtual mailbox domains as the server role builds them, delivered by a real Postfix.

The mailbox map and the virtual alias entries come from the role's filters and are compiled
by the lookup_table module (our engine, not postmap); main.cf gets the parameters the role
sets. virtual(8) writes as the numeric uid/gid of virtual_uid_maps/virtual_gid_maps and needs
no account of that id, so the test uses the role's default ids and creates no account.
"""

import os
import stat

import pytest

from module_runner import run_module

from ansible_collections.mailops.postfix.plugins.filter.server_inventory import (
    server_mailbox_domains, server_mailbox_entries, server_mailbox_virtual_entries, server_problems)

VMAIL_UID = VMAIL_GID = 5000  # the role's defaults
FLEET = [
    {"domain": "shop.test",
     "users": {"alice": None, "bob": {}, "carol": {"mailbox": "shop.test/carol/Maildir/"}},
     "aliases": {"team": ["alice", "bob"], "to-dave": ["dave@other.test"]},
     "catch_all": ["carol"]},
    {"domain": "other.test", "users": {"dave": None, "erin": None}, "aliases": {"both": ["dave", "alice@shop.test"]}},
]


def compile_maps(pf, type_name, fleet, host=()):
    """What the role writes: the mailbox map and the alias map, compiled by lookup_table."""
    assert server_problems({"postfix_server_virtual_mailbox_domains": fleet,
                            "postfix_server_virtual_mailbox_domains_host": list(host)}) == []
    domains = server_mailbox_domains(fleet, list(host))
    for name, entries in (("vmailbox", server_mailbox_entries(domains)),
                          ("virtual", server_mailbox_virtual_entries(domains))):
        result = run_module("lookup_table", dict(path=str(pf.config_dir / name), config_dir=str(pf.config_dir),
                                                 type=type_name, entries=entries, exclusive=True))
        assert result["type"] == type_name
    return domains


@pytest.mark.parametrize("type_name", ["hash", "lmdb"])
def test_virtual_mailboxes_delivered_by_real_postfix(postfix_instance, type_name):
    pf = postfix_instance
    base = pf.root / "vhosts"
    domains = compile_maps(pf, type_name, FLEET)
    # The role's directories: the base and one per domain, vmail's, 0700.
    for d in [base] + [base / d["domain"] for d in domains]:
        d.mkdir()
        os.chown(d, VMAIL_UID, VMAIL_GID)
        os.chmod(d, 0o700)
    pf.write_main(virtual_mailbox_domains=", ".join(d["domain"] for d in domains),
                  virtual_mailbox_maps="%s:%s" % (type_name, pf.config_dir / "vmailbox"),
                  virtual_mailbox_base=str(base),
                  virtual_uid_maps="static:%d" % VMAIL_UID, virtual_gid_maps="static:%d" % VMAIL_GID,
                  virtual_minimum_uid="100", virtual_transport="virtual",
                  virtual_alias_domains="", virtual_alias_maps="%s:%s" % (type_name, pf.config_dir / "virtual"))
    pf.start()

    # A user: a Maildir DOMAIN/LOCAL/ made by virtual(8), vmail's, 0700, the message 0600.
    msgid = pf.send("Alice@shop.test")
    alice = base / "shop.test" / "alice"
    message = pf.wait_for_maildir(alice, msgid)
    for path, mode in ((message, 0o600), (alice, 0o700), (alice / "new", 0o700), (alice / "cur", 0o700)):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (VMAIL_UID, VMAIL_GID, mode), path
    assert "Delivered-To: alice@shop.test" in message.read_text()

    # An alias of a mailbox domain: two mailboxes. Bare names were users of the domain.
    msgid = pf.send("team@shop.test")
    pf.wait_for_maildir(alice, msgid)
    pf.wait_for_maildir(base / "shop.test" / "bob", msgid)
    # To a user of another mailbox domain, and from one domain's alias into both.
    msgid = pf.send("to-dave@shop.test")
    pf.wait_for_maildir(base / "other.test" / "dave", msgid)
    msgid = pf.send("both@other.test")
    pf.wait_for_maildir(base / "other.test" / "dave", msgid)
    pf.wait_for_maildir(alice, msgid)
    # A mailbox of its own path.
    msgid = pf.send("carol@shop.test")
    pf.wait_for_maildir(base / "shop.test" / "carol" / "Maildir", msgid)

    # Unknown user of a domain without catch-all.
    code, reply = pf.rcpt_code("nobody@other.test")
    assert (code, reply) == (550, "5.1.1 <nobody@other.test>: Recipient address rejected:"
                                  " User unknown in virtual mailbox table")

    # The catch-all takes unknown addresses, and not the users' mail (identity entries).
    msgid = pf.send("whoever@shop.test")
    pf.wait_for_maildir(base / "shop.test" / "carol" / "Maildir", msgid)
    msgid = pf.send("bob@shop.test")
    pf.wait_for_maildir(base / "shop.test" / "bob", msgid)
    assert not any(msgid in text for text in pf.maildir(base / "shop.test" / "carol" / "Maildir").values())

    # Without the identity entries Postfix gives the catch-all the users' mail too: that is
    # why the filter adds them.
    virtual = server_mailbox_virtual_entries(domains)
    bare = {k: v for k, v in virtual.items() if [k] != v}
    assert len(virtual) - len(bare) == 3
    run_module("lookup_table", dict(path=str(pf.config_dir / "virtual"), config_dir=str(pf.config_dir),
                                    type=type_name, entries=bare, exclusive=True))
    msgid = pf.send("bob@shop.test")
    pf.wait_for_maildir(base / "shop.test" / "carol" / "Maildir", msgid)

    # A user removed on this host leaves the map: refused at RCPT, its mail stays on disk.
    dave = pf.maildir(base / "other.test" / "dave")
    compile_maps(pf, type_name, FLEET, [{"domain": "other.test", "users": {"dave": {"state": "absent"}},
                                         "aliases": {"both": ["alice@shop.test"]}}])
    code, reply = pf.rcpt_code("dave@other.test")
    assert code == 550 and "User unknown in virtual mailbox table" in reply
    assert pf.maildir(base / "other.test" / "dave") == dave and len(dave) == 2
