# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real mail through the converged MX: the seed tutorial's setup, proven end to end."""

from __future__ import annotations

import os

import pytest

import mailtest as mt

MX = mt.group("mail_servers")[0]
PROVIDER = mt.group("providers")[0]


@pytest.fixture(scope="module")
def mx():
    return mt.host(MX)


@pytest.fixture(scope="module")
def provider():
    return mt.host(PROVIDER)


@pytest.fixture(scope="module")
def mx_ip():
    return mt.platform(MX)["ip"]


def test_postmap_agrees_with_inventory(mx):
    virtual, aliases = mt.declared(MX)
    ref = mt.map_ref(mx, "virtual_alias_maps")
    for key, targets in virtual.items():
        got = mx.check_output("postmap -q %s %s", key, ref)
        assert [t.strip() for t in got.split(",")] == targets, key
    ref = mt.map_ref(mx, "alias_maps")
    for key, targets in aliases.items():
        got = mx.check_output("postalias -q %s %s", key, ref)
        assert [t.strip() for t in got.split(",")] == targets, key


def test_table_type_as_configured(mx):
    ref = mt.map_ref(mx, "virtual_alias_maps")
    expected = "lmdb" if mt.inventory_table_type() == "lmdb" else mx.check_output("postconf -h default_database_type")
    assert ref.split(":")[0] == expected
    assert mt.map_ref(mx, "alias_maps").split(":")[0] == expected


def test_no_virtual_domain_in_mydestination(mx):
    domains = set(mx.check_output("postconf -h virtual_alias_domains").replace(",", " ").split())
    assert domains >= {"example.tld"}
    mydest = set(mx.check_output("postconf -h mydestination").replace(",", " ").split())
    assert not domains & mydest


def test_alias_delivered_to_each_local_target(mx, provider, mx_ip):
    token, result = mt.send(provider, mx_ip, "support@example.tld")
    assert result == {"ok": True}
    for user in ("alice", "bob"):
        assert mt.wait_for_mail(mx, user, token), mt.mail_log(mx)


def test_external_forward_reaches_the_provider(mx, provider, mx_ip):
    token, result = mt.send(provider, mx_ip, "chris@example.tld")
    assert result == {"ok": True}
    assert mt.wait_for_mail(provider, "chris", token), mt.mail_log(mx) + mt.mail_log(provider)


def test_root_mail_reaches_admin_through_etc_aliases(mx, provider, mx_ip):
    token, result = mt.send(provider, mx_ip, "root@" + MX)
    assert result == {"ok": True}
    assert mt.wait_for_mail(mx, "admin", token), mt.mail_log(mx)


def test_host_domain_and_catch_all(mx, provider, mx_ip):
    virtual = mt.declared(MX)[0]
    if "@shop.example.tld" not in virtual:
        pytest.skip("inventory of %s declares no shop.example.tld catch-all" % MX)
    token, result = mt.send(provider, mx_ip, "anything@shop.example.tld")
    assert result == {"ok": True}
    assert mt.wait_for_mail(mx, "bob", token), mt.mail_log(mx)
    token, result = mt.send(provider, mx_ip, "orders@shop.example.tld")
    assert result == {"ok": True}
    assert mt.wait_for_mail(mx, "alice", token), mt.mail_log(mx)


def test_unknown_address_in_virtual_domain_rejected(provider, mx_ip):
    result = mt.send(provider, mx_ip, "nobody-here@example.tld")[1]
    code, text = result["refused"]["nobody-here@example.tld"]
    assert code == 550, text


def test_virtual_mailbox_user_gets_a_maildir_owned_by_vmail(mx, provider, mx_ip):
    domains = mt._load(os.path.join(mt.EXAMPLES, "group_vars", "mail_servers.yml")).get("postfix_server_virtual_mailbox_domains")
    if not domains:
        pytest.skip("the example inventory declares no virtual mailbox domain")
    domain = domains[0]["domain"]
    user = sorted(domains[0]["users"])[0]
    token, result = mt.send(provider, mx_ip, "%s@%s" % (user, domain))
    assert result == {"ok": True}
    # The role's default mailbox path (DOMAIN/USER/ under /var/mail/vhosts) and vmail ids.
    found = mt.wait_for_maildir(mx, "/var/mail/vhosts/%s/%s" % (domain, user), token)
    assert found, mt.mail_log(mx)
    assert mx.check_output("stat -c '%%u %%g' %s", found[0]) == "5000 5000"
    result = mt.send(provider, mx_ip, "nobody-here@" + domain)[1]
    code, text = result["refused"]["nobody-here@" + domain]
    assert code == 550 and "User unknown in virtual mailbox table" in text, text
