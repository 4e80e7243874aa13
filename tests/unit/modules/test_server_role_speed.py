# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guarantees the server role's fast path keeps, run by ansible-playbook against a private
Postfix instance: the inventory is checked and resolved once into a fact (no_log), so a bad
inventory must still fail at the check, with its messages shown, before anything changes; the
Postfix facts decide whether the package manager is asked; the vmail account is looked up in one
round trip and its conflicts are still reported.
"""

from __future__ import annotations

import json
import os
import re

from role_runner import ROOT, ROLE_TASKS_PLAYBOOK, entry_point_playbook, role_paths, run_playbooks

PLAYBOOK = """\
---
- name: The whole server role against a private Postfix instance
  hosts: localhost
  gather_facts: false
  roles:
    - role: mailops.postfix.server
"""


def run_role(pf, inv, playbook, *extra):
    """ansible-playbook; returns (rc, output, the names of the tasks that ran, in order)."""
    run = run_playbooks(pf, dict(inv, **role_paths(pf)), [playbook], *extra)
    return run.rc, run.out, run.tasks


def tasks_run(out):
    """The tasks of the run that ran (ok or changed, not skipped), in order."""
    ran, task = [], None
    for line in out.splitlines():
        m = re.match(r"TASK \[(?:mailops\.postfix\.server : )?(.*)\] \**$", line)
        if m:
            task = m.group(1)
        elif re.match(r"(ok|changed): \[", line) and task and task not in ran:
            ran.append(task)
    return ran


def module_runs(out):
    """The tasks of the run that reached the host: those of tasks_run() but the role's tasks that
    run on the controller only (resolve, checks, set_fact, include_vars, debug)."""
    controller = ("Validating arguments", "Resolve ", "Check ", "Choose ", "Keep ", "Load ", "Reload Postfix for",
                  "Restart Postfix for", "Say why")
    return [task for task in tasks_run(out) if not task.startswith(controller)]


def snapshot(conf):
    """Every file of the config dir: name -> (mtime_ns, bytes)."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(conf.iterdir()) if p.is_file()}


def aliases(n, bad_at=None):
    """n aliases over 10 domains; the alias at bad_at pipes to a command (refused in virtual maps)."""
    domains = {}
    for i in range(n):
        domains.setdefault("d%d.test" % (i % 10), {})["a%d" % i] = ["|/bin/sh -c true" if i == bad_at else "u%d@x.test" % i]
    return [{"domain": d, "aliases": a} for d, a in domains.items()]


def test_bad_inventory_fails_at_the_check_messages_shown_nothing_changed(postfix_instance):
    """The whole role (argument spec, resolve, check): two mistakes in 5000 aliases stop the play at
    the check, both named (the no_log resolve task hides no message), before the Postfix facts are
    even read; main.cf, the maps and /etc/aliases are as they were. The same inventory with the
    mistakes fixed gets through (the check is what stopped it)."""
    pf = postfix_instance
    inv = {"postfix_server_install": False, "postfix_server_table_type": "hash",
           "postfix_server_virtual_alias_domains": aliases(5000, bad_at=4321),
           "postfix_server_aliases_host": {"bad one": ["root"], "ops": ["root"]}}
    before = snapshot(pf.config_dir)
    rc, out, tasks = run_role(pf, inv, PLAYBOOK)
    assert rc != 0, out
    assert "postfix_server_virtual_alias_domains[1].aliases: a4321: |/bin/sh -c true is a command" in out, out
    assert "postfix_server_aliases_host: bad one is not a local alias name" in out, out
    assert "censored" not in out
    assert tasks[-1] == "Check the inventory (domains, mailboxes, aliases, targets, main.cf)", tasks
    assert "Resolve the inventory (domains, mailboxes, aliases, targets, main.cf)" in tasks
    assert snapshot(pf.config_dir) == before

    # Check mode too: the same failure at the same task.
    rc, out, tasks = run_role(pf, inv, PLAYBOOK, "--check", "--diff")
    assert rc != 0 and tasks[-1].startswith("Check the inventory"), out
    assert snapshot(pf.config_dir) == before

    good = dict(inv, postfix_server_virtual_alias_domains=aliases(5000), postfix_server_aliases_host={"ops": ["root"]})
    rc, out, tasks = run_role(pf, good, ROLE_TASKS_PLAYBOOK)
    assert rc == 0, out
    assert re.search(r"10 virtual alias domain\(s\),\s+0 virtual mailbox domain\(s\)\s+with 0 mailbox\(es\),"
                     r"\s+5000 virtual alias\(es\),\s+2 local alias\(es\)", out), out
    got = pf.run("postmap", "-q", "a4321@d1.test", "hash:%s/virtual" % pf.config_dir, check=False)
    assert got.stdout.strip() == "u4321@x.test", got
    # The host is ready (Postfix answers with every table type the packages bring, the type is
    # hash): one module run, the write, which reads the facts itself; neither the package manager
    # (it would fail here: this is not the system's Postfix) nor postfix_info is asked.
    rc, out, tasks = run_role(pf, dict(good, postfix_server_install=True), ROLE_TASKS_PLAYBOOK)
    assert rc == 0, out
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0 ", out), out
    assert module_runs(out) == ["Write the tables, /etc/aliases, main.cf and master.cf"], out
    # And four tasks in all (apply.yml; the argument spec and the service step are main.yml's):
    # neither the facts kept as a variable nor the variables of the operating system are needed.
    assert tasks_run(out) == [
        "Resolve the inventory (domains, mailboxes, aliases, targets, main.cf)",
        "Check the inventory (domains, mailboxes, aliases, targets, main.cf)",
        "Choose the table type and resolve the lookup tables",
        "Write the tables, /etc/aliases, main.cf and master.cf"], tasks_run(out)


def test_vmail_conflicts_are_reported_from_one_lookup(postfix_instance):
    """A vmail user that exists with another uid, and a gid that is another group's: both named, in
    check mode, before any account or directory is made (system accounts daemon, uid and gid 1)."""
    pf = postfix_instance
    inv = {"postfix_server_install": False, "postfix_server_table_type": "hash",
           "postfix_server_virtual_minimum_uid": 1,
           "postfix_server_vmail_user": "daemon", "postfix_server_vmail_uid": 5000,
           "postfix_server_vmail_group": "mailops-no-such-group", "postfix_server_vmail_gid": 1,
           "postfix_server_virtual_mailbox_base": str(pf.root / "vhosts"),
           "postfix_server_virtual_mailbox_domains": [{"domain": "mbox.test", "users": {"alice": None}}]}
    rc, out, tasks = run_role(pf, inv, ROLE_TASKS_PLAYBOOK, "--check")
    assert rc != 0, out
    assert tasks[-1] == "Check that the vmail account and ids are free or already vmail's", tasks
    assert ("user daemon exists with id 1, postfix_server_vmail_uid is 5000; mailboxes keep their numeric owner,"
            " so the role does not renumber: set postfix_server_vmail_uid to 1 or renumber by hand") in out, out
    assert ("postfix_server_vmail_gid: 1 is the id of group daemon, not of mailops-no-such-group"
            " (postfix_server_vmail_group); choose a free id") in out, out
    assert not (pf.root / "vhosts").exists()


def test_inventory_templates_are_rendered_on_the_controller(postfix_instance):
    """The inventory is read by an action on the controller that renders only the strings holding
    a template: a target given as a template, a whole layer given as one, and a path built from
    another variable all arrive rendered (real postmap and postalias answer them); keys are not
    templates, as in Ansible's own templating."""
    pf = postfix_instance
    inv = dict(role_paths(pf), postfix_server_install=False, postfix_server_table_type="hash",
               ops_target="team@x.test", host_aliases={"ops": ["{{ 'ro' ~ 'ot' }}"]},
               postfix_server_virtual_alias_domains=[{"domain": "t.test", "aliases": {
                   "ops": ["{{ ops_target }}", "plain@x.test"], "sales": "{{ 's' }}@x.test"}}],
               postfix_server_aliases_host="{{ host_aliases }}")
    inv["postfix_server_virtual_alias_map"] = "{{ postfix_server_config_dir }}/virtual"
    run = run_playbooks(pf, inv, [ROLE_TASKS_PLAYBOOK])
    assert run.rc == 0, run.out
    virtual = "hash:%s/virtual" % pf.config_dir
    assert pf.run("postmap", "-q", "ops@t.test", virtual).stdout.strip() == "team@x.test, plain@x.test"
    assert pf.run("postmap", "-q", "sales@t.test", virtual).stdout.strip() == "s@x.test"
    got = pf.run("postalias", "-q", "ops", "hash:%s/aliases" % pf.config_dir)
    assert got.stdout.strip() == "root", got


INVENTORY_PLAYBOOK = entry_point_playbook("inventory")


def test_inventory_entry_point_checks_without_touching_the_host(postfix_instance):
    """An unknown option of a domain, which the main entry point's argument spec no longer sees,
    fails the role's own check with the nearest known option named (and the `inventory` entry
    point's argument spec, which documents these variables, refuses it too); a good inventory
    passes the `inventory` entry point, whose tasks read no host; no file changes."""
    pf = postfix_instance
    before = snapshot(pf.config_dir)
    bad = dict(role_paths(pf), postfix_server_virtual_alias_domains=[{"domain": "a.test", "alias": {"x": ["y@b.test"]}}])
    run = run_playbooks(pf, bad, [ROLE_TASKS_PLAYBOOK])
    assert run.rc != 0 and run.tasks[-1].startswith("Check the inventory"), run.out
    assert ("postfix_server_virtual_alias_domains[0]: unknown option alias (known: domain, aliases, catch_all);"
            " did you mean aliases?") in run.out, run.out
    run = run_playbooks(pf, bad, [INVENTORY_PLAYBOOK])
    assert run.rc != 0 and "postfix_server_virtual_alias_domains.alias" in run.out, run.out
    good = dict(bad, postfix_server_virtual_alias_domains=[{"domain": "a.test", "aliases": {"x": ["y@b.test"]}}])
    run = run_playbooks(pf, good, [INVENTORY_PLAYBOOK])
    assert run.rc == 0, run.out
    assert "1 virtual alias domain(s)" in run.out
    assert run.tasks[-2:] == ["Resolve the inventory (domains, mailboxes, aliases, targets, main.cf)",
                              "Check the inventory (domains, mailboxes, aliases, targets, main.cf)"], run.tasks
    assert snapshot(pf.config_dir) == before


ROLE_DEFAULTS = os.path.join(ROOT, "roles", "server", "defaults", "main.yml")
RETURN_ENTRIES_PLAYBOOK = """\
---
- name: server_inventory with and without the entries as dictionaries
  hosts: localhost
  gather_facts: false
  vars_files:
    - "{{ role_defaults }}"
  tasks:
    - name: Resolve, entries returned
      mailops.postfix.server_inventory:
        base_aliases: {postmaster: [root]}
      register: with_entries
    - name: Resolve, texts only
      mailops.postfix.server_inventory:
        base_aliases: {postmaster: [root]}
        return_entries: false
      register: texts_only
    - name: Keep both
      ansible.builtin.copy:
        content: "{{ {'with': with_entries, 'without': texts_only} | to_json }}"
        dest: "{{ out_path }}"
        mode: "0600"
"""


def test_return_entries_false_keeps_texts_counts_and_problems(postfix_instance):
    """return_entries: false (what the role passes) empties the three entry dictionaries only: the
    texts the role writes and checks from, the counts, the addresses and the problems are those of
    the full result, for a good inventory and for a bad one (its problems still named)."""
    pf = postfix_instance
    out_path = pf.root / "resolved.json"
    for n, bad_at in ((1000, None), (200, 77)):
        inv = dict(role_paths(pf), out_path=str(out_path), role_defaults=ROLE_DEFAULTS,
                   postfix_server_virtual_alias_domains=aliases(n, bad_at),
                   postfix_server_aliases={"ops": ["root"]},
                   postfix_server_virtual_mailbox_domains=[{"domain": "mbox.test", "users": {"alice": None}}])
        run = run_playbooks(pf, inv, [RETURN_ENTRIES_PLAYBOOK])
        assert run.rc == 0, run.out
        got = json.loads(out_path.read_text())
        full, lean = got["with"], got["without"]
        dicts = ("virtual_entries", "alias_entries", "mailbox_entries")
        for key in set(full) - {"changed"} - set(dicts):
            assert lean[key] == full[key], key
        assert all(lean[k] == {} for k in dicts), lean
        if bad_at is None:
            assert len(full["virtual_entries"]) == full["counts"]["virtual_entries"] == n, full["counts"]
            assert full["counts"]["mailbox_entries"] == 1 and full["counts"]["alias_entries"] == 2, full["counts"]
            assert lean["virtual_text"].count("\n") == n and lean["alias_text"].count("\n") == 2
            assert len(lean["addresses"]) == n + 1 and "alice@mbox.test" in lean["addresses"]
        else:
            assert any("a77: |/bin/sh -c true is a command" in p for p in lean["problems"]), lean["problems"]
