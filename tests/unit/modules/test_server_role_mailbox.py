# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server role's virtual mailbox tasks run by ansible-playbook against a private Postfix.

The role's validate, install (nothing installed) and configure tasks and its handlers run on
localhost with every path pointed into the instance, so the system Postfix and its service are
never touched. The role creates a vmail account of a name and uid reserved for this test; the
test removes it (and only it) at the end.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess

import pytest

from role_runner import ROLE_TASKS_PLAYBOOK, VERIFY_PLAYBOOK, role_paths, run_playbooks

ACCOUNT = "mailopstest-vmail"  # reserved for this test
UID = GID = 5999
GECOS = "Postfix virtual mailboxes"  # what the role writes

INVENTORY = {
    "postfix_server_install": False,
    "postfix_server_table_type": "hash",
    "postfix_server_vmail_user": ACCOUNT,
    "postfix_server_vmail_group": ACCOUNT,
    "postfix_server_vmail_uid": UID,
    "postfix_server_vmail_gid": GID,
    "postfix_server_virtual_alias_domains": [{"domain": "alias.test", "aliases": {"info": ["alice@shop.test"]}}],
    "postfix_server_virtual_mailbox_domains": [
        {"domain": "shop.test", "users": {"alice": None, "bob": {"mailbox": "shop.test/robert/"}},
         "aliases": {"team": ["alice", "bob"]}, "catch_all": ["alice"]}],
}


def _ours(name):
    """The account or group of this test: exists with the reserved id (a run that died left it)."""
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        user = None
    try:
        group = grp.getgrnam(name)
    except KeyError:
        group = None
    return user, group


@pytest.fixture
def vmail_account():
    """The reserved name and ids must be free, or a leftover of this test; removed afterwards."""
    user, group = _ours(ACCOUNT)
    for taken, ident in ((user, UID), (group, GID)):
        if taken is not None and (taken[2] != ident or (taken is user and user.pw_gecos != GECOS)):
            pytest.skip("%s exists and is not this test's" % ACCOUNT)
    for lookup, ident in ((pwd.getpwuid, UID), (grp.getgrgid, GID)):
        try:
            other = lookup(ident)
        except KeyError:
            continue
        if other[0] != ACCOUNT:
            pytest.skip("id %d belongs to %s" % (ident, other[0]))
    try:
        yield
    finally:
        user, group = _ours(ACCOUNT)
        if user is not None and user.pw_uid == UID and user.pw_gecos == GECOS:
            subprocess.run(["userdel", ACCOUNT], check=False)
        user, group = _ours(ACCOUNT)
        if user is None and group is not None and group.gr_gid == GID:
            subprocess.run(["groupdel", ACCOUNT], check=False)


def run_role(pf, inventory, *extra, verify=False):
    """ansible-playbook with the role's tasks; returns (rc, output, number changed, tasks that changed)."""
    base = dict(INVENTORY, **inventory)
    base.update(role_paths(pf), postfix_server_virtual_mailbox_base=str(pf.root / "vhosts"))
    plays = [ROLE_TASKS_PLAYBOOK] + ([VERIFY_PLAYBOOK] if verify else [])
    run = run_playbooks(pf, base, plays, *extra)
    assert run.changed is not None, run.out
    return run.rc, run.out, run.changed, run.changed_tasks


def test_role_builds_virtual_mailboxes_previews_them_and_changes_nothing_twice(postfix_instance, vmail_account):
    pf = postfix_instance
    base = pf.root / "vhosts"
    aliases = pf.config_dir / "aliases"
    aliases.write_text("postmaster: root\n")  # every Debian host has one
    pf.write_main(alias_maps="hash:%s" % aliases, alias_database="hash:%s" % aliases)
    pf.run("postalias", "hash:%s" % aliases)
    main_before = pf.main_cf.read_bytes()

    # Check mode with --diff: the map, main.cf and the account are previewed, nothing is made.
    rc, out, changed, tasks = run_role(pf, {}, "--check", "--diff")
    assert rc == 0, out
    assert changed > 0 and "Create the vmail user" in tasks
    assert "+alice@shop.test\tshop.test/alice/" in out
    assert "+virtual_mailbox_domains = shop.test" in out
    assert "+@shop.test\talice@shop.test" in out and "+alice@shop.test\talice@shop.test" in out
    assert _ours(ACCOUNT) == (None, None)
    assert not base.exists() and not (pf.config_dir / "vmailbox-role").exists()
    assert pf.main_cf.read_bytes() == main_before

    pf.start()
    before_reload = pf.children()
    rc, out, changed, tasks = run_role(pf, {})
    assert rc == 0, out
    assert "Write the tables, /etc/aliases, main.cf and master.cf" in tasks and "Reload Postfix" in tasks
    user = pwd.getpwnam(ACCOUNT)
    assert (user.pw_uid, user.pw_gid, user.pw_dir, user.pw_shell) == (UID, GID, str(base), "/usr/sbin/nologin")
    for d in (base, base / "shop.test"):
        st = os.stat(d)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o700), d
    postconf = pf.postconf("-n")
    for line in ("virtual_mailbox_domains = shop.test",
                 "virtual_mailbox_maps = hash:%s/vmailbox-role" % pf.config_dir,
                 "virtual_mailbox_base = %s" % base, "virtual_uid_maps = static:%d" % UID,
                 "virtual_gid_maps = static:%d" % GID, "virtual_minimum_uid = 100", "virtual_transport = virtual"):
        assert line in postconf.splitlines(), postconf
    pf.wait_for_log("reload -- version")
    pf.wait_for_exit(before_reload)

    # Real mail: a user, the alias of both, the catch-all, and an alias domain into a mailbox.
    msgid = pf.send("alice@shop.test")
    message = pf.wait_for_maildir(base / "shop.test" / "alice", msgid)
    assert os.stat(message).st_uid == UID
    msgid = pf.send("team@shop.test")
    pf.wait_for_maildir(base / "shop.test" / "alice", msgid)
    pf.wait_for_maildir(base / "shop.test" / "robert", msgid)
    msgid = pf.send("bob@shop.test")
    pf.wait_for_maildir(base / "shop.test" / "robert", msgid)
    msgid = pf.send("info@alias.test")
    pf.wait_for_maildir(base / "shop.test" / "alice", msgid)

    # Second run: nothing changes; the verify entry point finds every alias and mailbox.
    rc, out, changed, tasks = run_role(pf, {}, verify=True)
    assert rc == 0, out
    assert changed == 0, tasks
    assert "%s/vmailbox-role: 2" % pf.config_dir in out and "key(s) answer as declared" in out, out

    # The last mailbox domain goes: main.cf loses the class, mail and account stay.
    kept = pf.maildir(base / "shop.test" / "alice")
    rc, out, changed, tasks = run_role(pf, {"postfix_server_virtual_mailbox_domains": [],
                                            "postfix_server_virtual_alias_domains": []})
    assert rc == 0, out
    assert "Write the tables, /etc/aliases, main.cf and master.cf" in tasks
    assert not [line for line in pf.postconf("-n").splitlines()
                if line.split(" =")[0] in ("virtual_mailbox_domains", "virtual_mailbox_maps", "virtual_mailbox_base",
                                           "virtual_uid_maps", "virtual_gid_maps", "virtual_minimum_uid",
                                           "virtual_transport")]
    assert pf.maildir(base / "shop.test" / "alice") == kept and len(kept) == 3
    assert pwd.getpwnam(ACCOUNT).pw_uid == UID
    rc, out, changed, tasks = run_role(pf, {"postfix_server_virtual_mailbox_domains": [],
                                            "postfix_server_virtual_alias_domains": []})
    assert rc == 0 and changed == 0, tasks
