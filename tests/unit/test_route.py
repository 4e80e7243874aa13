"""route static mode: lookup orders, limits and bad input, each checked against the running
Postfix's own answer (sendmail -bv) where Postfix has one."""

import os

import pytest

from module_runner import run_module

from ansible_collections.mailops.postfix.plugins.module_utils import _route


def _write(pf, name, text, postmap=True):
    path = os.path.join(str(pf.config_dir), name)
    with open(path, "w") as f:
        f.write(text)
    if postmap:
        pf.run("postmap", "hash:%s" % path)
    return path


def _key(router, rcpt, live):
    return (rcpt["address"].lower(), rcpt["transport"] if live else router.command(rcpt["transport"]),
            rcpt["rejected"], (rcpt["text"] if live else rcpt["nexthop"]) if rcpt["transport"] == "discard" else None)


def _static_equals_live(pf, addresses):
    """Static routes of ``addresses``, after checking them against sendmail -bv."""
    conf = str(pf.config_dir)
    static = run_module("route", dict(config_dir=conf, addresses=addresses))["routes"]
    pf.start()
    live = run_module("route", dict(config_dir=conf, addresses=addresses, mode="live"))["routes"]
    router = _route.Router(conf)
    for address in addresses:
        s, lv = static[address], live[address]
        assert s["error"] == lv["error"], (address, s, lv)
        assert ({_key(router, r, False) for r in s["recipients"]}
                == {_key(router, r, True) for r in lv["recipients"]}), (address, s, lv)
    return static


def _finals(route):
    return sorted((r["address"], r["rejected"]) for r in route["recipients"])


def test_virtual_lookup_order_user_form_only_for_local_domains(postfix_instance):
    """virtual(5): "user" matches user@site only when site is $myorigin or local; @domain last;
    an extension is stripped to find user@domain and propagated (canonical, virtual)."""
    pf = postfix_instance
    pf.add_mailboxes("alice", "bob", "carol", "dave")
    virtual = _write(pf, "virtual", "info alice@mbox.test\n"
                                    "sales@va.test bob@mbox.test\n"
                                    "@va.test carol@mbox.test\n"
                                    "sales+vip@va.test dave@mbox.test\n")
    pf.write_main(virtual_alias_domains="va.test", virtual_alias_maps="hash:%s" % virtual,
                  recipient_delimiter="+")
    routes = _static_equals_live(pf, ["info@mx.test.example", "info@va.test", "info", "sales+x@va.test",
                                      "sales+vip@va.test", "SALES@VA.test", "other+x@va.test"])
    assert _finals(routes["info@mx.test.example"]) == [("alice@mbox.test", None)]
    assert _finals(routes["info"]) == [("alice@mbox.test", None)]
    assert routes["info"]["address"] == "info@mx.test.example"
    assert _finals(routes["info@va.test"]) == [("carol@mbox.test", None)]      # catch-all, not "info"
    assert _finals(routes["sales+x@va.test"]) == [("bob+x@mbox.test", None)]   # propagated
    assert _finals(routes["sales+vip@va.test"]) == [("dave@mbox.test", None)]  # full key first
    assert _finals(routes["other+x@va.test"]) == [("carol@mbox.test", None)]   # @domain: no extension
    via = routes["sales+x@va.test"]["recipients"][0]["via"]
    assert via == [{"table": "hash:%s" % virtual, "key": "sales@va.test", "result": "bob@mbox.test",
                    "parameter": "virtual_alias_maps"}]
    rcpt = routes["sales+x@va.test"]["recipients"][0]
    assert (rcpt["class"], rcpt["transport"], rcpt["nexthop"]) == ("virtual_mailbox", "virtual", "mbox.test")


def test_self_reference_kept_and_rejected_next_to_delivered(postfix_instance):
    pf = postfix_instance
    pf.add_mailboxes("alice")
    virtual = _write(pf, "virtual", "team@va.test team@va.test, alice@mbox.test\n")
    pf.write_main(virtual_alias_domains="va.test", virtual_alias_maps="hash:%s" % virtual)
    routes = _static_equals_live(pf, ["team@va.test"])
    assert _finals(routes["team@va.test"]) == [("alice@mbox.test", None),
                                               ("team@va.test", "User unknown in virtual alias table")]
    rejected = [r for r in routes["team@va.test"]["recipients"] if r["rejected"]][0]
    assert (rejected["class"], rejected["transport"]) == ("virtual_alias", "error")
    assert routes["team@va.test"]["loops"] == []


def test_transport_parent_domain_styles(postfix_instance):
    """transport(5): domain, then .parent (or parent with parent_domain_matches_subdomains), then *."""
    pf = postfix_instance
    transport = _write(pf, "transport", "tr.test discard:exact\n.tr.test discard:dot-parent\n"
                                        "user+x@tr.test discard:address\n* discard:wildcard\n")
    pf.write_main(relay_domains="tr.test, a.tr.test, b.c.tr.test", transport_maps="hash:%s" % transport,
                  recipient_delimiter="+")
    addresses = ["u@tr.test", "u@a.tr.test", "u@b.c.tr.test", "user+x@tr.test", "user+y@tr.test", "u@else.test"]
    routes = _static_equals_live(pf, addresses)
    hops = dict((a, routes[a]["recipients"][0]["nexthop"]) for a in addresses)
    assert hops == {"u@tr.test": "exact", "u@a.tr.test": "dot-parent", "u@b.c.tr.test": "dot-parent",
                    "user+x@tr.test": "address", "user+y@tr.test": "exact", "u@else.test": "wildcard"}
    assert routes["u@a.tr.test"]["recipients"][0]["class"] == "relay"
    assert routes["u@else.test"]["recipients"][0]["class"] == "default"
    pf.stop()
    pf.write_main(parent_domain_matches_subdomains="transport_maps")
    routes = _static_equals_live(pf, ["u@a.tr.test"])
    assert routes["u@a.tr.test"]["recipients"][0]["nexthop"] == "exact"


def test_expansion_and_recursion_limits(postfix_instance):
    pf = postfix_instance
    pf.add_mailboxes("a", "b", "c", "d")
    virtual = _write(pf, "virtual", "wide@va.test a@mbox.test, b@mbox.test, c@mbox.test, d@mbox.test\n"
                                    "x@va.test y@va.test\ny@va.test z@va.test\nz@va.test x@va.test\n")
    pf.write_main(virtual_alias_domains="va.test", virtual_alias_maps="hash:%s" % virtual,
                  virtual_alias_expansion_limit="3", virtual_alias_recursion_limit="50")
    routes = _static_equals_live(pf, ["wide@va.test", "x@va.test"])
    assert routes["wide@va.test"]["error"].startswith("unreasonable virtual_alias_maps map expansion size")
    assert routes["wide@va.test"]["limits"] == ["virtual_alias_expansion_limit (3) exceeded for wide@va.test"]
    assert routes["x@va.test"]["loops"] == ["x@va.test -> y@va.test -> z@va.test -> x@va.test"]
    assert "virtual_alias_recursion_limit (50)" in routes["x@va.test"]["limits"][0]
    # The refused probe does not stay in the maildrop queue for pickup to retry.
    assert os.listdir(str(pf.queue_dir / "maildrop")) == []


def test_local_aliases_forward_and_unknown_users(postfix_instance):
    pf = postfix_instance
    aliases = _write(pf, "aliases", "staff: nobody, ops, ext@mbox.test\nops: ops, nosuchuser\n", postmap=False)
    pf.run("postalias", "hash:%s" % aliases)
    pf.write_main(alias_maps="hash:%s" % aliases, alias_database="hash:%s" % aliases)
    routes = _static_equals_live(pf, ["staff", "ghost"])
    assert _finals(routes["staff"]) == [("ext@mbox.test", None), ("nobody@mx.test.example", None),
                                        ("nosuchuser@mx.test.example", 'unknown user: "nosuchuser"'),
                                        ("ops@mx.test.example", 'unknown user: "ops"')]
    forwarded = [r for r in routes["staff"]["recipients"] if r["forwarded"]]
    assert [r["address"] for r in forwarded] == ["ext@mbox.test"]
    assert forwarded[0]["via"][-1] == {"aliases": "hash:%s" % aliases, "key": "staff",
                                       "result": "nobody, ops, ext@mbox.test"}
    assert _finals(routes["ghost"]) == [("ghost@mx.test.example", 'unknown user: "ghost"')]


def test_bad_input(postfix_instance, tmp_path):
    pf = postfix_instance
    conf = str(pf.config_dir)
    pf.write_main(virtual_alias_domains="va.test", virtual_alias_maps="hash:%s" % (pf.config_dir / "missing"))
    res = run_module("route", dict(config_dir=conf, addresses=["a b", "<x@va.test>", "", "x@va.test"]))
    assert res["changed"] is False
    for bad in ("a b", "<x@va.test>", ""):
        assert res["routes"][bad]["error"].startswith("not an address: "), res["routes"][bad]
        assert res["routes"][bad]["recipients"] == []
    err = res["routes"]["x@va.test"]["error"]
    assert err.startswith("hash:%s: table lookup problem: " % (pf.config_dir / "missing")), err
    assert "index does not exist" in err
    # An index that is not one: the lookup problem for each address that needs it.
    (pf.config_dir / "transport.cdb").write_bytes(b"garbage")
    pf.write_main(virtual_alias_maps="", transport_maps="cdb:%s" % (pf.config_dir / "transport"))
    res = run_module("route", dict(config_dir=conf, addresses=["x@else.test"]))
    assert res["routes"]["x@else.test"]["error"] == (
        "cdb:%s: table lookup problem: %s.cdb: not a cdb file (7 bytes, shorter than the 2048-byte header)"
        % ((pf.config_dir / "transport",) * 2))
    # No main.cf: one message for the call.
    res = run_module("route", dict(config_dir=str(tmp_path), addresses=["x"]), fail_ok=True)
    assert res["failed"] and res["msg"] == "%s/main.cf: no such file (config_dir must hold Postfix's main.cf)" % tmp_path


def test_changes_nothing(postfix_instance):
    pf = postfix_instance
    virtual = _write(pf, "virtual", "a@va.test nobody\n")
    pf.write_main(virtual_alias_domains="va.test", virtual_alias_maps="hash:%s" % virtual)
    files = sorted(os.listdir(str(pf.config_dir)))
    stamps = dict((f, os.stat(os.path.join(str(pf.config_dir), f)).st_mtime_ns) for f in files)
    for check_mode in (False, True):
        res = run_module("route", dict(config_dir=str(pf.config_dir), addresses=["a@va.test"]),
                         check_mode=check_mode)
        assert res["changed"] is False
        assert _finals(res["routes"]["a@va.test"]) == [("nobody@mx.test.example", None)]
    assert sorted(os.listdir(str(pf.config_dir))) == files
    assert stamps == dict((f, os.stat(os.path.join(str(pf.config_dir), f)).st_mtime_ns) for f in files)


@pytest.mark.parametrize("address,expected", [
    ("root", "root@mx.test.example"),
    ("u@host.", "u@host"),
    ("u@[127.0.0.1]", "u@[127.0.0.1]"),
])
def test_canonical_form(postfix_instance, address, expected):
    router = _route.Router(str(postfix_instance.config_dir))
    assert router.canonicalize(address) == expected
    assert router.address_class("[127.0.0.1]") == "local"      # inet_interfaces literal


def test_myorigin_bare_names_and_user_form(postfix_instance):
    """A bare name gets @$myorigin; virtual(5) "user" keys match user@$myorigin even when
    $myorigin is not a local domain; append_dot_mydomain adds .$mydomain to a dotless host."""
    pf = postfix_instance
    pf.add_mailboxes("alice")
    virtual = _write(pf, "virtual", "info alice@mbox.test\n")
    pf.write_main(myorigin="origin.test", mydomain="test.example", append_dot_mydomain="yes",
                  virtual_alias_maps="hash:%s" % virtual)
    routes = _static_equals_live(pf, ["info", "info@origin.test", "bob", "carol@mbox"])
    assert routes["info"]["address"] == "info@origin.test"
    assert _finals(routes["info"]) == [("alice@mbox.test", None)]
    assert _finals(routes["bob"]) == [("bob@origin.test", "outside mail disabled in tests")]
    assert routes["bob"]["recipients"][0]["class"] == "default"
    assert routes["carol@mbox"]["address"] == "carol@mbox.test.example"
