"""route static mode with ``staged``: the routes of a configuration before it is written equal
the routes after writing it (postconf, lookup_table, aliases), on the random configurations of
the sendmail -bv differential test; staged lookups fold keys as the real postmap -q does."""

import importlib.util
import os
import random

from module_runner import run_module

from ansible_collections.mailops.postfix.plugins.module_utils import _route

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("route_live_configs", os.path.join(HERE, "modules", "test_route_live.py"))
_live = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_live)

CONFIGS = 6
SEED = int(os.environ.get("ROUTE_SEED", "7013"))


def _paths(conf):
    return dict((n, os.path.join(conf, n)) for n in ("virtual", "aliases", "transport", "canonical", "relocated"))


def _comparable(route):
    return dict((k, route[k]) for k in ("address", "recipients", "loops", "limits", "error"))


def _mtimes(conf):
    return dict((f, os.stat(os.path.join(conf, f)).st_mtime_ns) for f in sorted(os.listdir(conf)))


def test_staged_routes_equal_routes_after_writing(postfix_instance):
    pf = postfix_instance
    conf = str(pf.config_dir)
    pf.add_mailboxes("u0", "u1", "u2", "u3")
    p = _paths(conf)
    pf.write_main(alias_maps="hash:%s" % p["aliases"], alias_database="hash:%s" % p["aliases"],
                  transport_maps="hash:%s" % p["transport"])
    rng = random.Random(SEED)
    compared = changed_seen = 0
    for n in range(CONFIGS):
        v, a, t, c, r, m, params, asked = _live._config(rng, n)
        params = dict((k, val.format(virtual=p["virtual"], canonical=p["canonical"], relocated=p["relocated"]))
                      for k, val in params.items())
        # regexp tables cannot be staged: written first, as they are.
        run_module("lookup_table", dict(path=p["virtual"] + ".re", config_dir=conf, entries=r, exclusive=True))
        staged = dict(params=params, tables={p["virtual"]: v, p["canonical"]: c, p["relocated"]: m,
                                             "hash:" + p["transport"]: t, p["aliases"]: a})
        stamps = _mtimes(conf)
        res = run_module("route", dict(config_dir=conf, addresses=asked, staged=staged), check_mode=True, diff=True)
        assert _mtimes(conf) == stamps, "staged routing wrote something"
        if n == 0:
            # Nothing written yet: every table is missing, so the current routes are errors.
            assert res["changed"] is True
        changed_seen += len(res["route_changes"])
        assert set(res["route_changes"]) == set(
            x for x in asked if _route.summary(res["routes_before"][x]) != _route.summary(res["routes"][x]))
        if res["route_changes"]:
            assert res["diff"]["before"].count("\n") == len(res["route_changes"])
        # Now write it, and route again.
        run_module("postconf", dict(config_dir=conf, params=params))
        run_module("lookup_table", dict(path=p["virtual"], config_dir=conf, entries=v, exclusive=True))
        run_module("lookup_table", dict(path=p["canonical"], config_dir=conf, entries=c, exclusive=True))
        run_module("lookup_table", dict(path=p["relocated"], config_dir=conf, entries=m, exclusive=True))
        run_module("lookup_table", dict(path=p["transport"], config_dir=conf, entries=t, exclusive=True))
        run_module("aliases", dict(path=p["aliases"], config_dir=conf, entries=a, exclusive=True))
        after = run_module("route", dict(config_dir=conf, addresses=asked))["routes"]
        for address in asked:
            context = "config %d (seed %d), %s" % (n, SEED, address)
            assert _comparable(res["routes"][address]) == _comparable(after[address]), context
            compared += 1
        # The same staging once written: no route changes, not changed.
        again = run_module("route", dict(config_dir=conf, addresses=asked, staged=staged), check_mode=True)
        assert again["changed"] is False and again["route_changes"] == {}
    print("staged routes: %d configurations, %d addresses compared, %d route changes previewed"
          % (CONFIGS, compared, changed_seen))
    assert compared >= CONFIGS * 25 and changed_seen > CONFIGS


def test_staged_keys_fold_like_postmap(postfix_instance):
    """A staged table answers every query as the real postmap -q answers the written table."""
    pf = postfix_instance
    conf = str(pf.config_dir)
    path = os.path.join(conf, "virtual")
    entries = {"Alice@Example.TLD": ["Bob@x.test", "carol"], "ÉTÉ@exemple.test": "été@x.test", "@CATCH.test": "z"}
    router = _route.Router(conf, staged=dict(tables={path: entries}))
    # The same entries as text (KEY<TAB>VALUE lines, how the server role stages its maps).
    text = "".join("%s\t%s\n" % (k, ", ".join(v) if isinstance(v, list) else v) for k, v in entries.items())
    router_text = _route.Router(conf, staged=dict(tables={path: text}))
    run_module("lookup_table", dict(path=path, config_dir=conf, entries=entries, exclusive=True))
    for query in ("alice@example.tld", "ALICE@EXAMPLE.TLD", "été@exemple.test", "ÉTÉ@EXEMPLE.TEST",
                  "@catch.test", "nobody@example.tld"):
        proc = pf.run("postmap", "-q", query, "hash:%s" % path, check=False)
        real = proc.stdout.rstrip("\n") if proc.returncode == 0 else None
        assert router.tables.lookup("hash:%s" % path, query) == real, query
        assert router_text.tables.lookup("hash:%s" % path, query) == real, query


def test_merge_lays_staged_entries_over_the_table(postfix_instance):
    pf = postfix_instance
    conf = str(pf.config_dir)
    pf.add_mailboxes("u0", "u1")
    virtual = os.path.join(conf, "virtual")
    run_module("lookup_table", dict(path=virtual, config_dir=conf, exclusive=True,
                                    entries={"a@va.test": "u0@mbox.test", "b@va.test": "u1@mbox.test",
                                             "c@va.test": "u0@mbox.test"}))
    pf.write_main(virtual_alias_domains="va.test", virtual_alias_maps="hash:%s" % virtual)
    staged = dict(tables={virtual: {"b@va.test": "u0@mbox.test", "d@va.test": ["u1@mbox.test", "c@va.test"],
                                    "c@va.test": None}}, merge=[virtual])
    addresses = ["a@va.test", "b@va.test", "c@va.test", "d@va.test"]
    res = run_module("route", dict(config_dir=conf, addresses=addresses, staged=staged), check_mode=True)
    assert res["route_changes"] == {
        "b@va.test": {"before": "u1@mbox.test", "after": "u0@mbox.test"},
        "c@va.test": {"before": "u0@mbox.test", "after": "c@va.test (rejected: User unknown in virtual alias table)"},
        "d@va.test": {"before": "d@va.test (rejected: User unknown in virtual alias table)",
                      "after": "c@va.test (rejected: User unknown in virtual alias table), u1@mbox.test"},
    }
    # The same change written (c removed, b and d set, a kept): the same routes.
    run_module("lookup_table", dict(path=virtual, config_dir=conf, entries={"c@va.test": "x"}, state="absent"))
    run_module("lookup_table", dict(path=virtual, config_dir=conf, entries={
        "b@va.test": "u0@mbox.test", "d@va.test": ["u1@mbox.test", "c@va.test"]}))
    after = run_module("route", dict(config_dir=conf, addresses=addresses))["routes"]
    assert dict((x, _comparable(after[x])) for x in addresses) == dict(
        (x, _comparable(res["routes"][x])) for x in addresses)


def test_fail_on_reject_names_address_recipient_and_text(postfix_instance):
    pf = postfix_instance
    conf = str(pf.config_dir)
    pf.add_mailboxes("u0")
    virtual = os.path.join(conf, "virtual")
    run_module("lookup_table", dict(path=virtual, config_dir=conf, entries={"ok@va.test": "u0@mbox.test"}))
    pf.write_main(virtual_alias_domains="va.test", virtual_alias_maps="hash:%s" % virtual,
                  virtual_alias_recursion_limit="20")
    stamps = _mtimes(conf)
    staged = dict(tables={virtual: {"ok@va.test": "u0@mbox.test", "bad@va.test": "nosuch@va.test",
                                    "l1@va.test": "l2@va.test", "l2@va.test": "l1@va.test"}})
    res = run_module("route", dict(config_dir=conf, addresses=["ok@va.test", "bad@va.test", "l1@va.test"],
                                   staged=staged, fail_on_reject=True), check_mode=True, fail_ok=True)
    assert res["failed"] and "Traceback" not in res["msg"]
    assert "bad@va.test: recipient nosuch@va.test rejected: User unknown in virtual alias table" in res["msg"], res
    assert "l1@va.test: unreasonable virtual_alias_maps map nesting for l1@va.test" in res["msg"], res
    assert "ok@va.test" not in res["msg"]
    assert _mtimes(conf) == stamps
    # The current configuration passes: only ok@ is declared there.
    res = run_module("route", dict(config_dir=conf, addresses=["ok@va.test"], fail_on_reject=True))
    assert res["changed"] is False and "failed" not in res
    # return_routes false (the role, thousands of addresses): the changes and the problems only.
    res = run_module("route", dict(config_dir=conf, addresses=["ok@va.test", "bad@va.test", "l1@va.test"],
                                   staged=staged, fail_on_reject=True, return_routes=False), check_mode=True,
                     fail_ok=True)
    assert res["failed"] and len(res["problems"]) == 2 and res["routed"] == 3
    assert "routes" not in res and "routes_before" not in res
    assert sorted(res["route_changes"]) == ["bad@va.test", "l1@va.test"]


def test_bad_staged_input(postfix_instance):
    conf = str(postfix_instance.config_dir)
    for staged, message in (
            (dict(tables={"regexp:/etc/x": {}}), "staged table regexp:/etc/x: only indexed tables"),
            (dict(tables={"virtual": {}}), "staged table virtual: give the absolute path"),
            (dict(tables={"/etc/x": {}}, merge=["/etc/y"]), "staged merge names tables that are not staged: /etc/y"),
            (dict(tables={"/etc/x": "a@x.test\tb\nc@x.test d\n"}),
             "staged table /etc/x: entries as text, line 2: expected KEY<TAB>VALUE"),
            (dict(params={"bad name": "x"}), "staged params: invalid main.cf parameter name")):
        res = run_module("route", dict(config_dir=conf, addresses=["x"], staged=staged), fail_ok=True)
        assert res["failed"] and res["msg"].startswith(message), (staged, res["msg"])
    res = run_module("route", dict(config_dir=conf, addresses=["x"], staged={}, mode="live"), fail_ok=True)
    assert res["failed"] and res["msg"] == "staged needs mode=static: live mode asks the running Postfix"


def test_file_table_of_a_staged_configuration_not_there_yet(postfix_instance):
    """A regexp table the change will create cannot be staged: empty, and said so; without
    staging the missing table is an error, as postmap -q says."""
    pf = postfix_instance
    conf = str(pf.config_dir)
    virtual, regexp = os.path.join(conf, "virtual"), os.path.join(conf, "virtual.re")
    params = dict(virtual_alias_domains="va.test", virtual_alias_maps="hash:%s regexp:%s" % (virtual, regexp))
    res = run_module("route", dict(config_dir=conf, addresses=["a@va.test", "b@va.test"],
                                   staged=dict(params=params, tables={virtual: {"a@va.test": "root@localhost"}})))
    assert _route.summary(res["routes"]["a@va.test"]) == "root@localhost"
    assert _route.summary(res["routes"]["b@va.test"]) == "b@va.test (rejected: User unknown in virtual alias table)"
    assert res["routes"]["b@va.test"]["limits"] == [
        "regexp:%s does not exist yet and cannot be staged: looked up as empty" % regexp]
    pf.write_main(**params)
    run_module("lookup_table", dict(path=virtual, config_dir=conf, entries={"a@va.test": "root@localhost"}))
    res = run_module("route", dict(config_dir=conf, addresses=["b@va.test"]))
    assert res["routes"]["b@va.test"]["error"].startswith("regexp:%s: table lookup problem (postmap -q)" % regexp)
