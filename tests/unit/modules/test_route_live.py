"""route: static mode against real Postfix's own answer (sendmail -bv on a private running
instance), on random configurations written with this collection's modules.

Every configuration has: virtual alias chains 1-5 deep, one-to-many fan-out, a catch-all,
address extensions with and without propagate_unmatched_extensions, self-references, a
virtual alias loop, a regexp virtual alias table (looked up through postmap -q), recipient
canonical maps, relocated maps, hash, cdb or lmdb tables, local aliases (with a self-reference and a loop), transport maps
(discard:/error: next hops, parent domains), unknown users in each class. Nothing is delivered
(verify mode, reports to double-bounce) and no next hop leaves the host (discard, error,
local, virtual)."""

import os
import random
import time

from module_runner import run_module

from ansible_collections.mailops.postfix.plugins.module_utils import _route

CONFIGS = 5
SEED = int(os.environ.get("ROUTE_SEED", "7013"))


def _config(rng, n):
    """Tables and main.cf parameters of configuration ``n``; the addresses to ask."""
    mbox = ["u%d@mbox.test" % i for i in range(4)]
    finals = mbox + ["nosuch%d@mbox.test" % n, "nobody", "root", "x@tr.test", "y@sub.tr.test", "z@err.test",
                     "la0", "w@other.example"]
    virtual = {}
    asked = []
    # Chains 1-5 deep, the last link one or more finals (fan-out).
    for c in range(4):
        depth = rng.randint(1, 5)
        names = ["c%d_%d_%d@va.test" % (n, c, d) for d in range(depth)]
        for a, b in zip(names, names[1:]):
            virtual[a] = b
        virtual[names[-1]] = rng.sample(finals, rng.randint(1, 3))
        asked.append(names[0])
    # Self-reference: the address stays and is rejected in its virtual alias domain.
    virtual["self%d@va.test" % n] = ["self%d@va.test" % n, rng.choice(mbox)]
    asked.append("self%d@va.test" % n)
    # A loop: cleanup refuses the message at virtual_alias_recursion_limit.
    cycle = ["loop%d@va.test" % i for i in range(rng.randint(2, 3))]
    for a, b in zip(cycle, cycle[1:] + cycle[:1]):
        virtual[a] = b
    # The loop reached from a fan-out slot refuses the whole message too.
    virtual["fan%d@va.test" % n] = [rng.choice(mbox), cycle[-1]]
    asked += [cycle[0], "fan%d@va.test" % n]
    # Catch-all next to an exact entry; extensions on both.
    virtual["@cat.test"] = rng.choice(mbox)
    virtual["exact@cat.test"] = rng.sample(mbox, 2)
    asked += ["any@cat.test", "exact+tag@cat.test", "any+tag@cat.test"]
    # Extensions: stripped to find user@domain, propagated or not.
    virtual["ext@va.test"] = rng.choice(mbox)
    asked += ["ext+foo@va.test", "c%d_0_0+bar@va.test" % n]
    asked += ["unknown@va.test", "nosuch@%s" % "mx.test.example", "u1+x@mbox.test", "nosuch%d@mbox.test" % n,
              "special@mbox.test", "v@tr.test", "deep@a.sub.tr.test", "q@err.test", "root", "la0", "LA1",
              "nobody+q", "u0@MBOX.test", "w@other.example",
              "la1+t", "moved@mbox.test"]
    aliases = {
        "root": ["root", rng.choice(mbox)],
        "la0": rng.sample(mbox, rng.randint(1, 2)) + ["la1"],
        "la1": [rng.choice(mbox), "nobody"],
        "la2": ["la3"],
        "la3": ["la2", rng.choice(mbox)],
    }
    asked.append("la2")
    transport = {
        "tr.test": "discard:hop-%d" % rng.randint(0, 99),
        ".tr.test": "discard:parent-%d" % rng.randint(0, 99),
        "err.test": "error:5.1.2 gone %d" % n,
        "special@mbox.test": "discard:special-%d" % n,
    }
    canonical = {
        "old%d@va.test" % n: "ext+old@va.test",
        "@oldcat.test": "@cat.test",
    }
    asked += ["old%d@va.test" % n, "exact@oldcat.test", "re-%d@va.test" % n]
    table_type = rng.choice(["hash", "cdb", "lmdb"])
    params = {
        "virtual_alias_maps": "%s:{virtual} regexp:{virtual}.re" % table_type,
        "recipient_canonical_maps": "%s:{canonical}" % table_type,
        "virtual_alias_domains": "va.test, cat.test",
        "relay_domains": "tr.test, sub.tr.test, a.sub.tr.test, err.test",
        "recipient_delimiter": "+",
        "propagate_unmatched_extensions": rng.choice(["canonical, virtual", "canonical", "",
                                                     "canonical, virtual, alias"]),
        "relocated_maps": "%s:{relocated}" % table_type,
    }
    regexp = {"/^re-([0-9]+)@va\\.test$/": rng.choice(mbox)}
    relocated = {"moved@mbox.test": "new-%d@example.org" % n}
    return virtual, aliases, transport, canonical, regexp, relocated, params, asked


def _key(router, rcpt, live):
    """What both modes must agree on for one recipient."""
    if live:
        transport = rcpt["transport"]
        hop = rcpt["text"] if transport == "discard" else None
    else:
        transport = router.command(rcpt["transport"])
        hop = rcpt["nexthop"] if transport == "discard" else None
    return rcpt["address"].lower(), transport, rcpt["rejected"], hop


def test_static_routes_match_sendmail_bv(postfix_instance):
    pf = postfix_instance
    conf = str(pf.config_dir)
    pf.add_mailboxes("u0", "u1", "u2", "u3")
    virtual, aliases, transport, canonical, relocated = (
        os.path.join(conf, n) for n in ("virtual", "aliases", "transport", "canonical", "relocated"))
    pf.write_main(alias_maps="hash:%s" % aliases,
                  alias_database="hash:%s" % aliases, transport_maps="hash:%s" % transport)
    rng = random.Random(SEED)
    compared = addresses = 0
    started = time.monotonic()
    for n in range(CONFIGS):
        v_entries, a_entries, t_entries, c_entries, r_entries, m_entries, params, asked = _config(rng, n)
        params = dict((k, v.format(virtual=virtual, canonical=canonical, relocated=relocated))
                      for k, v in params.items())
        run_module("postconf", dict(config_dir=conf, params=params))
        run_module("lookup_table", dict(path=virtual, config_dir=conf, entries=v_entries, exclusive=True))
        run_module("lookup_table", dict(path=canonical, config_dir=conf, entries=c_entries, exclusive=True))
        run_module("lookup_table", dict(path=virtual + ".re", config_dir=conf, entries=r_entries, exclusive=True))
        run_module("lookup_table", dict(path=relocated, config_dir=conf, entries=m_entries, exclusive=True))
        run_module("lookup_table", dict(path=transport, config_dir=conf, entries=t_entries, exclusive=True))
        run_module("aliases", dict(path=aliases, config_dir=conf, entries=a_entries, exclusive=True))
        old = time.time() - 60
        os.utime(pf.main_cf, (old, old))
        if n == 0:
            pf.start()
        else:
            pf.run("postfix", "reload")
            time.sleep(1)
        static = run_module("route", dict(config_dir=conf, addresses=asked), check_mode=True)
        assert static["changed"] is False
        live = run_module("route", dict(config_dir=conf, addresses=asked, mode="live", timeout=60))
        router = _route.Router(conf)
        for address in asked:
            s, lv = static["routes"][address], live["routes"][address]
            context = "config %d (seed %d), %s:\nstatic %r\nlive %r" % (n, SEED, address, s, lv)
            if lv["error"] and "message not accepted" in lv["error"]:
                assert s["error"] == lv["error"], context
                assert s["loops"] and s["limits"], context
            else:
                assert lv["error"] is None and s["error"] is None, context
                assert lv["recipients"], context
                if address.startswith("re-"):
                    assert s["lookups_via_postmap"] == ["regexp:%s.re" % virtual], context
                # Sets: local(8) logs one line per delivery request, so a mailbox reached by two
                # branches of one expansion appears twice in the log; static lists it once.
                assert ({_key(router, r, False) for r in s["recipients"]}
                        == {_key(router, r, True) for r in lv["recipients"]}), context
                assert len(s["recipients"]) == len({_key(router, r, False) for r in s["recipients"]}), context
                compared += len(lv["recipients"])
            addresses += 1
    elapsed = time.monotonic() - started
    print("route differential: %d configurations, %d addresses, %d final recipients compared in %.1fs"
          % (CONFIGS, addresses, compared, elapsed))
    assert addresses >= CONFIGS * 25
    # Nothing was delivered: no Maildir got a message, no report was mailed.
    for user in ("u0", "u1", "u2", "u3"):
        assert pf.mailbox(user) == []
    assert "status=sent" not in pf.log()


def test_live_with_postfix_stopped_fails_for_the_call(postfix_instance):
    res = run_module("route", dict(config_dir=str(postfix_instance.config_dir), addresses=["root"], mode="live"),
                     fail_ok=True)
    assert res["failed"] and "Postfix is not running" in res["msg"] and "Traceback" not in res["msg"]
