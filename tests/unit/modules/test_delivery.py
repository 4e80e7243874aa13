"""A running Postfix delivers mail through virtual alias maps and aliases written by our
modules (hash and lmdb), and rejects an unknown address in the virtual domain."""

import os

import pytest

from module_runner import run_module


@pytest.mark.parametrize("type_name", ["hash", "lmdb"])
def test_running_postfix_routes_mail_through_python_written_maps(postfix_instance, type_name):
    pf = postfix_instance
    conf = str(pf.config_dir)
    virtual = os.path.join(conf, "virtual")
    aliases = os.path.join(conf, "aliases")
    pf.add_mailboxes("alice", "bob", "admin")
    pf.write_main(virtual_alias_domains="chrisbinnie.tld",
                  virtual_alias_maps="%s:%s" % (type_name, virtual),
                  alias_maps="%s:%s" % (type_name, aliases),
                  alias_database="%s:%s" % (type_name, aliases),
                  local_recipient_maps="$alias_maps")
    result = run_module("lookup_table", dict(path=virtual, config_dir=conf, entries={
        "support@chrisbinnie.tld": ["alice@mbox.test", "bob@mbox.test"],
        "Chris@ChrisBinnie.tld": "admin@mbox.test",
    }))
    assert result["type"] == type_name and result["compiled"]
    run_module("aliases", dict(path=aliases, config_dir=conf, entries={"root": "admin@mbox.test"}, compile=False))
    assert run_module("newaliases", dict(config_dir=conf))["rebuilt"] == ["%s:%s" % (type_name, aliases)]
    pf.start()

    msgid = pf.send("support@chrisbinnie.tld")
    pf.wait_for_delivery("alice", msgid)
    pf.wait_for_delivery("bob", msgid)
    msgid = pf.send("CHRIS@chrisbinnie.tld")
    pf.wait_for_delivery("admin", msgid)
    # root@ the local domain goes through alias_maps (local(8)) to the admin.
    msgid = pf.send("root@%s" % pf.myhostname)
    pf.wait_for_delivery("admin", msgid)
    code, reply = pf.rcpt_code("nobody@chrisbinnie.tld")
    assert code == 550 and "Recipient address rejected" in reply

    # A changed map is picked up without a reload: Postfix notices the replaced index.
    run_module("lookup_table", dict(path=virtual, config_dir=conf,
                                    entries={"new@chrisbinnie.tld": "bob@mbox.test"}))
    msgid = pf.send("new@chrisbinnie.tld")
    pf.wait_for_delivery("bob", msgid)
