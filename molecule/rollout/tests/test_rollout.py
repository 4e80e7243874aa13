# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""alias_rollout over three hosts: preview, roll out, verify, and stop at a failing host.

The tests run in file order and build on each other (one fleet, changed step by step)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tests"))
import mailtest as mt  # noqa: E402

HOSTS = mt.group("mail_servers")
KEY = "support@example.tld"


def fleet_with_support(targets):
    """The example fleet's domains with support@example.tld pointing at `targets`."""
    group_vars = mt._load(os.path.join(mt.EXAMPLES, "group_vars", "mail_servers.yml"))
    domains = copy.deepcopy(group_vars["postfix_server_virtual_alias_domains"])
    next(d for d in domains if d["domain"] == "example.tld")["aliases"]["support"] = list(targets)
    return {"postfix_server_virtual_alias_domains": domains}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def playbook(name, *args):
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    cmd = ["ansible-playbook", "mailops.postfix." + name, "-i", inventory, "-e", "target=mail_servers", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"))
    return proc.returncode, proc.stdout + proc.stderr


def route(name):
    h = mt.host(name)
    return h.check_output("postmap -q %s %s", KEY, mt.map_ref(h, "virtual_alias_maps"))


def test_fleet_starts_as_declared():
    expected = ", ".join(mt.declared(HOSTS[0])[0][KEY])
    assert [route(h) for h in HOSTS] == [expected] * len(HOSTS)


def test_check_mode_previews_the_change_and_touches_nothing(tmp_path):
    before = {h: route(h) for h in HOSTS}
    rc, out = playbook("site", "--check", "--diff", "-e", "@" + write(tmp_path, "c.yml", fleet_with_support(["alice", "carol"])))
    assert rc == 0, out
    assert "-support@example.tld\talice, bob" in out, out
    assert "+support@example.tld\talice, carol" in out, out
    assert {h: route(h) for h in HOSTS} == before


def test_rollout_reaches_every_host_without_reload(tmp_path):
    rc, out = playbook("alias_rollout", "-e", "@" + write(tmp_path, "c.yml", fleet_with_support(["alice", "carol"])))
    assert rc == 0, out
    assert [route(h) for h in HOSTS] == ["alice, carol"] * len(HOSTS)
    # Only the map changed: it was written and compiled, Postfix was not reloaded.
    assert "TASK [mailops.postfix.server : Write the tables, /etc/aliases, main.cf and master.cf]" in out
    assert "RUNNING HANDLER [mailops.postfix.server : Reload Postfix]" not in out, out
    # ...and the running Postfix already routes by the new map.
    mx = mt.host(HOSTS[-1])
    token, result = mt.send(mx, "127.0.0.1", KEY)
    assert result == {"ok": True}
    assert mt.wait_for_mail(mx, "carol", token), mt.mail_log(mx)


def files_snapshot(name):
    files = "/etc/postfix/main.cf /etc/postfix/virtual* /etc/aliases*"
    return mt.host(name).check_output("ls -l --time-style=full-iso %s; md5sum %s" % (files, files))


def test_rollout_check_mode_shows_route_diff_per_host(tmp_path):
    # support@ is alice, carol everywhere now; preview alice, dave.
    before = {h: files_snapshot(h) for h in HOSTS}
    rc, out = playbook("alias_rollout", "--check", "--diff",
                       "-e", "@" + write(tmp_path, "p.yml", fleet_with_support(["alice", "dave"])))
    assert rc == 0, out
    for h in HOSTS:
        # Bare targets are local users: @$myorigin ($myhostname), delivered by local(8).
        old, new = "alice@%s, carol@%s" % (h, h), "alice@%s, dave@%s" % (h, h)
        assert "-%s: %s\n" % (KEY, old) in out, out
        assert "+%s: %s\n" % (KEY, new) in out, out
        assert "%s: %s -> %s" % (KEY, old, new) in out, out
    assert {h: files_snapshot(h) for h in HOSTS} == before
    assert [route(h) for h in HOSTS] == ["alice, carol"] * len(HOSTS)


def test_rejected_route_stops_the_rollout_before_the_first_host_changes(tmp_path):
    # A target in the virtual alias domain with no entry of its own: Postfix would bounce it.
    before = {h: files_snapshot(h) for h in HOSTS}
    rc, out = playbook("alias_rollout",
                       "-e", "@" + write(tmp_path, "r.yml", fleet_with_support(["alice", "nosuch@example.tld"])))
    assert rc != 0, out
    assert ("%s: recipient nosuch@example.tld rejected: User unknown in virtual alias table" % KEY) in out, out
    assert {h: files_snapshot(h) for h in HOSTS} == before
    assert [route(h) for h in HOSTS] == ["alice, carol"] * len(HOSTS)
    # The first batch failed in its pre_tasks: later batches never started.
    assert HOSTS[1] not in out and HOSTS[2] not in out, out


def test_failing_host_stops_the_rollout(tmp_path):
    # The second host gets a broken host_vars layer (an alias with no target).
    broken = {"all": {"hosts": {HOSTS[1]: {"postfix_server_aliases_host": {"broken": []}}}}}
    rc, out = playbook("alias_rollout", "-i", write(tmp_path, "broken.yml", broken),
                       "-e", "@" + write(tmp_path, "d.yml", fleet_with_support(["alice", "dave"])))
    assert rc != 0, out
    assert "postfix_server_aliases_host.broken has no target" in out, out
    # First batch done, the failing host refused before changing anything, the rest untouched.
    assert route(HOSTS[0]) == "alice, dave"
    assert [route(h) for h in HOSTS[1:]] == ["alice, carol"] * (len(HOSTS) - 1)
    # Later batches never started: the last host is not even mentioned.
    assert HOSTS[2] not in out, out


BAD_INVENTORY = [
    pytest.param({"postfix_server_virtual_alias_domains_host": [{"domain": "mx1.example.tld", "aliases": {"a": ["alice"]}}]},
                 "postfix_server_virtual_alias_domains_host[0].domain: mx1.example.tld is also in mydestination", id="domain-in-mydestination"),
    pytest.param({"postfix_server_aliases_host": {"nobody": []}},
                 "postfix_server_aliases_host.nobody has no target", id="alias-without-target"),
    pytest.param({"postfix_server_aliases_host": {"prog": ["|/usr/bin/logger"]}},
                 "postfix_server_aliases_host.prog: |/usr/bin/logger runs a command", id="unsafe-target"),
    pytest.param({"postfix_server_table_type": "btree"},
                 "value of postfix_server_table_type must be one of: hash, cdb, lmdb, got: btree", id="bad-type"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_INVENTORY)
def test_bad_inventory_fails_before_anything_changes(tmp_path, bad, message):
    h = mt.host(HOSTS[0])
    files = "/etc/postfix/main.cf /etc/postfix/virtual* /etc/aliases*"
    before = h.check_output("ls -l --time-style=full-iso %s; md5sum %s" % (files, files))
    rc, out = playbook("site", "-e", "@" + write(tmp_path, "bad.yml", bad), "-l", HOSTS[0])
    assert rc != 0, out
    assert message in out, out
    assert h.check_output("ls -l --time-style=full-iso %s; md5sum %s" % (files, files)) == before


@pytest.fixture(scope="module", autouse=True)
def _order_guard():
    assert len(HOSTS) >= 3, "the rollout scenario needs at least three mail servers"
