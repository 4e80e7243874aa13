# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Virtual mailbox domains, proven with real SMTP on every mail server of the scenario.

mx1 (Debian 12) and mx2 (Debian 13) deliver with Postfix's virtual(8); mx3 (Debian 12) hands
mailbox mail to Dovecot over LMTP. Inventory: the example fleet's group_vars (example.tld
aliases, example.org mailboxes) and the scenario's inventory/hosts.yml (example.com with a
catch-all, more aliases). The removal tests come last: they converge again with a user
removed (tests run in file order)."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tests"))
import mailtest as mt  # noqa: E402

SCENARIO_INVENTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inventory", "hosts.yml")
FLEET_VARS = os.path.join(mt.EXAMPLES, "group_vars", "mail_servers.yml")

# The role's defaults the tests rely on (none of them is set in inventory).
BASE = "/var/mail/vhosts"
VMAIL_UID = VMAIL_GID = 5000

HOSTS = mt.group("mail_servers")
PROVIDER = mt.group("providers")[0]
# The user the removal tests take out of inventory (in example.org: no catch-all there).
REMOVED = ("example.org", "frank")


def host_vars(name):
    return (mt._load(SCENARIO_INVENTORY)["mail_servers"]["hosts"] or {}).get(name) or {}


def uses_lmtp(name):
    return host_vars(name).get("postfix_server_virtual_transport", "virtual").startswith("lmtp:")


def declared_users():
    """(domain, local part) -> mailbox path relative to the base, as inventory declares it."""
    group = mt._load(SCENARIO_INVENTORY)["mail_servers"]["vars"]
    domains = mt._load(FLEET_VARS).get("postfix_server_virtual_mailbox_domains", []) + \
        group.get("postfix_server_virtual_mailbox_domains_host", [])
    users = {}
    for d in domains:
        for local, spec in (d.get("users") or {}).items():
            spec = spec or {}
            if spec.get("state", "present") != "absent":
                users[(d["domain"], local)] = spec.get("mailbox") or "%s/%s/" % (d["domain"], local)
    return users


def maildir(name, domain, local):
    """Where the user's mail lands on this host: the inventory's mailbox path under the base for
    virtual(8); Dovecot's mail_location (BASE/DOMAIN/LOCAL) for LMTP."""
    if uses_lmtp(name):
        return "%s/%s/%s" % (BASE, domain, local)
    return os.path.join(BASE, declared_users()[(domain, local)]).rstrip("/")


def queue_empty(h, timeout=30):
    """True once the queue is empty: every delivery of what was sent has been attempted."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if h.run("postqueue -j").stdout.strip() == "":
            return True
        time.sleep(0.5)
    return False


def log(h):
    return mt.mail_log(h) + h.run("tail -n 20 /var/log/dovecot.log 2>/dev/null").stdout


@pytest.fixture(scope="module")
def provider():
    return mt.host(PROVIDER)


def deliver(provider, name, rcpt):
    """Send from the provider host to the MX over SMTP; returns the token after acceptance."""
    token, result = mt.send(provider, mt.platform(name)["ip"], rcpt)
    assert result == {"ok": True}, result
    return token


def assert_in_maildir(name, domain, local, token):
    h = mt.host(name)
    directory = maildir(name, domain, local)
    found = mt.wait_for_maildir(h, directory, token)
    assert found, "%s@%s: nothing in %s\n%s" % (local, domain, directory, log(h))
    assert len(found) == 1, found
    return found[0]


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTS)
def test_main_cf_separates_the_domain_classes(name):
    h = mt.host(name)

    def domains(param):
        return set(h.check_output("postconf -h %s", param).replace(",", " ").split())

    assert domains("virtual_mailbox_domains") == {"example.org", "example.com"}
    assert domains("virtual_alias_domains") == {"example.tld"}
    assert not domains("mydestination") & {"example.org", "example.com", "example.tld"}
    expected = host_vars(name).get("postfix_server_virtual_transport", "virtual")
    assert h.check_output("postconf -h virtual_transport") == expected


@pytest.mark.parametrize("name", HOSTS)
def test_vmail_account_owns_the_base(name):
    h = mt.host(name)
    assert h.check_output("id -u vmail") == str(VMAIL_UID)
    assert h.check_output("id -g vmail") == str(VMAIL_GID)
    assert h.check_output("stat -c '%%u %%g %%F' %s", BASE) == "%d %d directory" % (VMAIL_UID, VMAIL_GID)


# --- delivery ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTS)
def test_user_mail_lands_in_a_maildir_owned_by_vmail(name, provider):
    h = mt.host(name)
    token = deliver(provider, name, "erin@example.org")
    path = assert_in_maildir(name, "example.org", "erin", token)
    assert path.startswith(BASE + "/example.org/erin/new/"), path
    assert h.check_output("stat -c '%%u %%g' %s", path) == "%d %d" % (VMAIL_UID, VMAIL_GID)
    # Every directory from the domain down belongs to vmail too.
    for d in (BASE + "/example.org", BASE + "/example.org/erin", BASE + "/example.org/erin/new"):
        assert h.check_output("stat -c '%%u' %s", d) == str(VMAIL_UID), d


@pytest.mark.parametrize("name", HOSTS)
def test_delivery_agent_as_configured(name, provider):
    """The queue file's id, from the Received header, leads to the log line of the delivery."""
    h = mt.host(name)
    token = deliver(provider, name, "gina@example.com")
    path = assert_in_maildir(name, "example.com", "gina", token)
    # Postfix's own Received header (Dovecot adds one of its own above it).
    qid = re.search(r"by %s \(Postfix\) with ESMTP id (\w+)" % re.escape(name), h.file(path).content_string).group(1)
    relay = "%s[private/dovecot-lmtp]" % name if uses_lmtp(name) else "virtual"
    line = h.run("grep -h -- %s /var/log/postfix.log", "%s: to=<gina@example.com>," % qid).stdout
    assert "relay=%s," % relay in line and "status=sent" in line, line or log(h)


@pytest.mark.parametrize("name", [n for n in HOSTS if uses_lmtp(n)])
def test_dovecot_stored_the_message(name, provider):
    h = mt.host(name)
    token = deliver(provider, name, "erin@example.org")
    assert_in_maildir(name, "example.org", "erin", token)
    found = h.check_output("doveadm search -u erin@example.org header Subject %s", token)
    assert len(found.splitlines()) == 1, found
    assert "saved mail to INBOX" in h.check_output("grep -F 'lmtp(erin@example.org)' /var/log/dovecot.log")


@pytest.mark.parametrize("name", [n for n in HOSTS if not uses_lmtp(n)])
def test_mailbox_path_of_its_own(name, provider):
    token = deliver(provider, name, "hank@example.com")
    path = assert_in_maildir(name, "example.com", "hank", token)
    assert path.startswith(BASE + "/example.com/hank.h/new/"), path


@pytest.mark.parametrize("name", HOSTS)
def test_alias_fans_out_to_two_mailboxes(name, provider):
    token = deliver(provider, name, "team@example.com")
    assert_in_maildir(name, "example.com", "gina", token)
    assert_in_maildir(name, "example.com", "hank", token)


@pytest.mark.parametrize("name", HOSTS)
def test_alias_of_a_fleet_mailbox_domain(name, provider):
    token = deliver(provider, name, "info@example.org")
    assert_in_maildir(name, "example.org", "erin", token)


@pytest.mark.parametrize("name", HOSTS)
def test_alias_domain_into_both_mailbox_domains(name, provider):
    token = deliver(provider, name, "sales@example.tld")
    assert_in_maildir(name, "example.org", "erin", token)
    assert_in_maildir(name, "example.com", "gina", token)


@pytest.mark.parametrize("name", HOSTS)
def test_alias_domain_to_local_accounts_still_works(name, provider):
    h = mt.host(name)
    token = deliver(provider, name, "support@example.tld")
    for user in ("alice", "bob"):
        assert mt.wait_for_mail(h, user, token), log(h)


@pytest.mark.parametrize("name", HOSTS)
def test_mailbox_domain_postmaster_reaches_the_local_postmaster(name, provider):
    """postmaster@example.org -> postmaster@localhost -> /etc/aliases: postmaster -> root -> admin."""
    h = mt.host(name)
    token = deliver(provider, name, "postmaster@example.org")
    assert mt.wait_for_mail(h, "admin", token), log(h)


@pytest.mark.parametrize("name", HOSTS)
def test_catch_all_takes_unknown_local_parts(name, provider):
    token = deliver(provider, name, "nobody-listed@example.com")
    assert_in_maildir(name, "example.com", "gina", token)


@pytest.mark.parametrize("name", HOSTS)
def test_catch_all_never_takes_a_listed_user(name, provider):
    h = mt.host(name)
    token = deliver(provider, name, "hank@example.com")
    assert_in_maildir(name, "example.com", "hank", token)
    assert queue_empty(h), log(h)
    assert mt.maildir_files(h, maildir(name, "example.com", "gina"), token) == []


@pytest.mark.parametrize("rcpt", ["chris@example.com", "chris@example.tld"])
@pytest.mark.parametrize("name", HOSTS)
def test_external_forward_reaches_the_provider(name, rcpt, provider):
    h = mt.host(name)
    token = deliver(provider, name, rcpt)
    assert mt.wait_for_mail(provider, "chris", token), log(h) + mt.mail_log(provider)
    assert queue_empty(h), log(h)
    assert mt.maildir_files(h, maildir(name, "example.com", "gina"), token) == []


@pytest.mark.parametrize("name", HOSTS)
def test_unknown_user_without_catch_all_rejected(name, provider):
    result = mt.send(provider, mt.platform(name)["ip"], "nobody-listed@example.org")[1]
    code, text = result["refused"]["nobody-listed@example.org"]
    assert code == 550 and "5.1.1" in text and "User unknown in virtual mailbox table" in text, text


# --- a user removed from inventory -------------------------------------------------------


def site(tmp_path, extra):
    path = tmp_path / "extra.yml"
    path.write_text(yaml.safe_dump(extra))
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    cmd = ["ansible-playbook", "mailops.postfix.site", "-i", inventory, "-e", "target=mail_servers", "-e", "@%s" % path]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"))
    return proc.returncode, proc.stdout + proc.stderr


def fleet_without(domain, local):
    """The fleet's mailbox domains with one user marked absent."""
    domains = copy.deepcopy(mt._load(FLEET_VARS)["postfix_server_virtual_mailbox_domains"])
    next(d for d in domains if d["domain"] == domain)["users"][local] = {"state": "absent"}
    return {"postfix_server_virtual_mailbox_domains": domains}


@pytest.fixture(scope="module")
def before_removal(provider):
    """Mail the user receives while still in inventory: host -> (token, file)."""
    domain, local = REMOVED
    sent = {name: deliver(provider, name, "%s@%s" % (local, domain)) for name in HOSTS}
    return {name: (token, assert_in_maildir(name, domain, local, token)) for name, token in sent.items()}


@pytest.fixture(scope="module")
def removal(before_removal, tmp_path_factory):
    rc, out = site(tmp_path_factory.mktemp("removal"), fleet_without(*REMOVED))
    assert rc == 0, out
    return out


def test_removed_user_gets_550_user_unknown(removal, provider):
    domain, local = REMOVED
    rcpt = "%s@%s" % (local, domain)
    for name in HOSTS:
        result = mt.send(provider, mt.platform(name)["ip"], rcpt)[1]
        assert "refused" in result, "%s still accepts %s" % (name, rcpt)
        code, text = result["refused"][rcpt]
        assert code == 550 and "5.1.1" in text and "User unknown in virtual mailbox table" in text, text
        h = mt.host(name)
        ref = h.check_output("postconf -h virtual_mailbox_maps").replace(",", " ").split()[0]
        assert h.run("postmap -q %s %s", rcpt, ref).rc == 1, name


def test_removed_user_keeps_old_mail(removal, before_removal):
    for name, (token, path) in before_removal.items():
        h = mt.host(name)
        assert h.file(path).contains(token), "%s: %s is gone" % (name, path)
        assert h.check_output("stat -c '%%u' %s", path) == str(VMAIL_UID)


def test_other_users_unaffected_by_the_removal(removal, provider):
    for name in HOSTS:
        token = deliver(provider, name, "erin@example.org")
        assert_in_maildir(name, "example.org", "erin", token)
