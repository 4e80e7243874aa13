# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""alias_rollout's route preview and route check (the server role's `routes` entry point)
run by ansible-playbook against a private Postfix instance.

The play is playbooks/alias_rollout.yml with its pre_tasks and post_tasks as they are; only
the role's main entry point is replaced by its validate, install (nothing installed) and
configure tasks, so the service task never touches the system Postfix. Real Postfix is the
oracle for the applied configuration: postmap -q and sendmail -bv (route live mode)."""

from __future__ import annotations

import os

import yaml

from module_runner import run_module
from role_runner import ROOT, run_playbooks

UNKNOWN = "User unknown in virtual alias table"


def _play(pf):
    with open(os.path.join(ROOT, "playbooks", "alias_rollout.yml")) as f:
        play = yaml.safe_load(f)[0]
    assert play["roles"] == [{"role": "mailops.postfix.server"}]
    del play["roles"]
    play["hosts"] = "localhost"
    # The role's work but the service state (not this Postfix's to set), as main.yml runs it.
    play["tasks"] = [{"name": "Role", "ansible.builtin.import_role": {
        "name": "mailops.postfix.server", "tasks_from": "apply"}}]
    path = pf.root / "rollout.yml"
    path.write_text(yaml.safe_dump([play], sort_keys=False))
    return str(path)


def _inventory(pf, support, extra=None):
    conf = str(pf.config_dir)
    aliases = {"support": support, "info": ["support@va.test"]}
    aliases.update(extra or {})
    return {
        "postfix_server_install": False,
        "postfix_server_table_type": "hash",
        "postfix_server_config_dir": conf,
        "postfix_server_virtual_alias_map": conf + "/virtual",
        "postfix_server_virtual_mailbox_map": conf + "/vmailbox-role",
        "postfix_server_aliases_file": conf + "/aliases",
        "postfix_server_virtual_alias_domains": [{"domain": "va.test", "aliases": aliases}],
        "postfix_server_maps": {"transport": {"parameter": "transport_maps",
                                              "entries": {"hop.test": "discard:kept"}}},
    }


def _run(pf, inv, *extra, play=None):
    run = run_playbooks(pf, inv, [play or _play(pf)], *extra)
    return run.rc, run.out, run.changed_tasks


def _snapshot(conf):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(conf.iterdir()) if p.is_file()}


def _query(pf, key):
    proc = pf.run("postmap", "-q", key, "hash:%s" % (pf.config_dir / "virtual"), check=False)
    return proc.stdout.rstrip("\n") if proc.returncode == 0 else None


ROUTE_TASK = "Route every declared address (static mode; staged configuration unless postfix_server_routes_staged is false)"


def test_rollout_previews_route_changes_and_stops_on_rejected_routes(postfix_instance):
    pf = postfix_instance
    conf = pf.config_dir
    (conf / "aliases").write_text("postmaster: root\n")
    pf.write_main(alias_maps="hash:%s/aliases" % conf, alias_database="hash:%s/aliases" % conf)
    pf.run("postalias", "hash:%s/aliases" % conf)

    # 1. First rollout: va.test is new, its addresses routed nowhere before (default class).
    rc, out, tasks = _run(pf, _inventory(pf, ["nobody@localhost", "rcpt@hop.test"]))
    assert rc == 0, out
    assert ROUTE_TASK in tasks, out
    assert ("support@va.test: support@va.test (rejected: outside mail disabled in tests) -> "
            "nobody@localhost, rcpt@hop.test") in out, out
    assert _query(pf, "support@va.test") == "nobody@localhost, rcpt@hop.test"
    # The applied check ran on the written configuration (post_tasks) and passed.
    assert out.count("TASK [mailops.postfix.server : %s]" % ROUTE_TASK) == 2, out
    # The preview, the role and the check share one resolved inventory and one read of the
    # Postfix facts per host (__postfix_server_facts_reuse in the playbook).
    for once in ("Resolve the inventory (domains, mailboxes, aliases, targets, main.cf)",
                 "Read the Postfix facts (default table type, table types, system, service)"):
        assert out.count("TASK [mailops.postfix.server : %s]" % once) == 1, out
    # Real Postfix routes as the preview said.
    pf.start()
    live = run_module("route", dict(config_dir=str(conf), addresses=["support@va.test", "info@va.test"],
                                    mode="live", timeout=60))["routes"]
    for address in ("support@va.test", "info@va.test"):
        assert sorted(r["address"] for r in live[address]["recipients"]) == ["nobody@localhost", "rcpt@hop.test"]
        assert [r["rejected"] for r in live[address]["recipients"]] == [None, None]
    pf.stop()

    # 2. The same inventory again: no route changes, the route tasks are not changed.
    rc, out, tasks = _run(pf, _inventory(pf, ["nobody@localhost", "rcpt@hop.test"]))
    assert rc == 0, out
    assert ROUTE_TASK not in tasks, out
    assert "@va.test: " not in out, out

    # 3. --check --diff with a changed alias: the route diff per address, nothing written.
    before = _snapshot(conf)
    rc, out, tasks = _run(pf, _inventory(pf, ["root@localhost", "rcpt@hop.test"]), "--check", "--diff")
    assert rc == 0, out
    assert ROUTE_TASK in tasks, out
    for address in ("info@va.test", "support@va.test"):
        assert "-%s: nobody@localhost, rcpt@hop.test\n" % address in out, out
        assert "+%s: rcpt@hop.test, root@localhost\n" % address in out, out
        assert "%s: nobody@localhost, rcpt@hop.test -> rcpt@hop.test, root@localhost" % address in out, out
    assert _snapshot(conf) == before

    # 4. A target in the virtual alias domain with no entry, and a loop: the host fails in the
    # pre_tasks, naming the address, the recipient and Postfix's text; nothing written.
    bad = _inventory(pf, ["nobody@localhost", "ghost@va.test"], {"l1": ["l2@va.test"], "l2": ["l1@va.test"]})
    rc, out, tasks = _run(pf, bad)
    assert rc != 0, out
    assert "support@va.test: recipient ghost@va.test rejected: %s" % UNKNOWN in out, out
    assert "info@va.test: recipient ghost@va.test rejected: %s" % UNKNOWN in out, out
    assert "l1@va.test: unreasonable virtual_alias_maps map nesting for l1@va.test" in out, out
    assert "TASK [mailops.postfix.server : Write the tables, /etc/aliases, main.cf and master.cf]" not in out, out
    assert _snapshot(conf) == before

    # 5. The routes entry point on the applied configuration (as in post_tasks) catches a route
    # that broke outside the role: a transport map entry that now bounces. The staged check
    # (the role's transport entries) would not.
    (conf / "transport").write_text("hop.test error:5.1.1 hop is gone\n")
    pf.run("postmap", "hash:%s/transport" % conf)
    good = _inventory(pf, ["nobody@localhost", "rcpt@hop.test"])
    rc, out, _tasks = _run(pf, good, "-e", "postfix_server_routes_staged=false", play=_routes_only_play(pf))
    assert rc != 0, out
    assert "support@va.test: recipient rcpt@hop.test rejected: hop is gone" in out, out
    rc, out, _tasks = _run(pf, good, play=_routes_only_play(pf))
    assert rc == 0, out
    assert ("support@va.test: nobody@localhost, rcpt@hop.test (rejected: hop is gone) -> "
            "nobody@localhost, rcpt@hop.test") in out, out


def _routes_only_play(pf):
    path = pf.root / "routes.yml"
    task = {"name": "Routes", "ansible.builtin.include_role": {"name": "mailops.postfix.server", "tasks_from": "routes"}}
    path.write_text(yaml.safe_dump([{"name": "Routes", "hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
    return str(path)
