# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server role's virtual mailbox filters: layering, the mailbox map, the alias entries of
mailbox domains (catch-all identity entries), every problem message, size."""

from __future__ import annotations

import copy

import re

import pytest

from ansible_collections.mailops.postfix.plugins.filter.server_inventory import (
    server_mailbox_domains, server_mailbox_entries, server_mailbox_virtual_entries, server_problems)

CLASS_NOTE = ": a domain belongs to exactly one address class (ADDRESS_CLASS_README); "
WHY_ALIAS_MAILBOX = ("Postfix resolves a virtual alias domain first and never delivers to its virtual mailboxes"
                     ' (VIRTUAL_README: "NEVER list a virtual MAILBOX domain name as a virtual ALIAS domain!")')
WHY_MAILBOX_RELAY = ('Postfix resolves a virtual mailbox domain first and never relays it (trivial-rewrite logs "do not'
                     ' list domain ... in BOTH virtual_mailbox_domains and relay_domains")')
WHY_LOCAL_MAILBOX = ("Postfix reads a domain in mydestination as local and never delivers to its virtual mailboxes"
                     ' (VIRTUAL_README: "NEVER list a virtual MAILBOX domain name as a mydestination domain!")')
FLEET = "postfix_server_virtual_mailbox_domains"
HOST = "postfix_server_virtual_mailbox_domains_host"
# The role's defaults, as vars/main.yml hands them to server_problems.
DEFAULTS = {"vmail_user": "vmail", "vmail_group": "vmail", "vmail_uid": 5000, "vmail_gid": 5000,
            "virtual_minimum_uid": 100, "virtual_mailbox_base": "/var/mail/vhosts",
            "virtual_mailbox_map": "/etc/postfix/vmailbox", "virtual_transport": "virtual"}


def problems(**inventory):
    return server_problems({"postfix_server_" + k: v for k, v in dict(DEFAULTS, **inventory).items()})


def entries(fleet, *host):
    domains = server_mailbox_domains(fleet, *host)
    return server_mailbox_entries(domains), server_mailbox_virtual_entries(domains)


def mailbox_map(fleet, *host):
    return entries(fleet, *host)[0]


def alias_entries(fleet, *host):
    return entries(fleet, *host)[1]


# Layering


def test_mailbox_domains_merge_fleet_then_host_host_wins_per_user_and_alias():
    fleet = [{"domain": " Example.TLD ", "users": {"Alice": None, "bob": {"mailbox": "example.tld/robert/"},
                                                   "carol@example.tld": {}},
              "aliases": {"info": ["alice"]}, "catch_all": ["alice"]},
             {"domain": "other.tld", "users": {"x": {}}}]
    host = [{"domain": "example.tld", "users": {"BOB@Example.tld": {"state": "absent"}, "dave": None},
             "aliases": {"info": ["dave"], "sales": "carol"}, "catch_all": None},
            {"domain": "host.tld"}]
    before = copy.deepcopy(fleet)
    assert server_mailbox_domains(fleet, host) == [
        {"domain": "example.tld", "users": {"alice": {}, "bob": {"state": "absent"}, "carol": {}, "dave": {}},
         "aliases": {"info": ["dave"], "sales": "carol"}, "catch_all": ["alice"]},
        {"domain": "other.tld", "users": {"x": {}}, "aliases": {}},
        {"domain": "host.tld", "users": {}, "aliases": {}},
    ]
    assert fleet == before
    assert server_mailbox_domains(None, None) == server_mailbox_domains([], []) == []
    # Odd items and odd values are skipped here; server_problems reports them.
    assert server_mailbox_domains(["x", None, {"domain": "a.tld", "users": ["a"], "aliases": "b"}]) == [
        {"domain": "a.tld", "users": {}, "aliases": {}}]


def test_host_catch_all_replaces_the_fleet_one():
    got = server_mailbox_domains([{"domain": "a.tld", "catch_all": "x@b.tld"}], [{"domain": "A.tld", "catch_all": []}])
    assert got == [{"domain": "a.tld", "users": {}, "aliases": {}, "catch_all": []}]


# The mailbox map


def test_mailbox_entries_maildir_by_default_own_paths_absent_users_left_out():
    mailbox = mailbox_map([
        {"domain": "example.tld", "users": {"zed": None, "Alice": {}, "bob": {"mailbox": "example.tld/bob/Maildir/"},
                                            "mbox": {"mailbox": "example.tld/mbox"}, "gone": {"state": "absent"},
                                            "kept": {"state": "present"}}},
        {"domain": "b.tld", "users": {"alice": None}}])
    assert mailbox == {"alice@example.tld": "example.tld/alice/", "bob@example.tld": "example.tld/bob/Maildir/",
                       "kept@example.tld": "example.tld/kept/", "mbox@example.tld": "example.tld/mbox",
                       "zed@example.tld": "example.tld/zed/", "alice@b.tld": "b.tld/alice/"}
    assert list(mailbox)[:2] == ["alice@example.tld", "bob@example.tld"]


# Alias entries of mailbox domains


def test_aliases_bare_users_mean_the_domain_users_full_addresses_stay():
    virtual = alias_entries([
        {"domain": "example.tld", "users": {"alice": None, "bob": None},
         "aliases": {"Support": ["alice", "Bob"], "sales@example.tld": "alice, carol@other.tld",
                     "ext": ["someone@provider.tld"]}},
        {"domain": "other.tld", "users": {"carol": None}, "aliases": {"info": ["alice@example.tld", "carol"]}}])
    assert virtual == {
        "ext@example.tld": ["someone@provider.tld"],
        "sales@example.tld": ["alice@example.tld", "carol@other.tld"],
        "support@example.tld": ["alice@example.tld", "bob@example.tld"],
        "info@other.tld": ["alice@example.tld", "carol@other.tld"]}


def test_catch_all_gets_an_identity_entry_per_user_before_it():
    virtual = alias_entries([{"domain": "example.tld",
                              "users": {"bob": None, "alice": None, "gone": {"state": "absent"}, "fwd": None},
                              "aliases": {"fwd": ["fwd", "fwd@provider.tld"], "info": "bob"},
                              "catch_all": "alice"}])
    assert virtual == {
        "fwd@example.tld": ["fwd@example.tld", "fwd@provider.tld"],
        "info@example.tld": ["bob@example.tld"],
        "alice@example.tld": ["alice@example.tld"],
        "bob@example.tld": ["bob@example.tld"],
        "@example.tld": ["alice@example.tld"]}
    assert list(virtual)[-1] == "@example.tld"
    # No catch-all: no identity entries.
    virtual = alias_entries([{"domain": "example.tld", "users": {"bob": None}}])
    assert virtual == {}


# Problems


def test_no_problems_for_a_good_inventory():
    assert problems(
        main_cf={"myhostname": "mx1.example.tld", "mydestination": ["$myhostname", "localhost"],
                 "relay_domains": ["relay.tld"]},
        virtual_alias_domains=[{"domain": "alias.tld", "aliases": {"a": ["b@example.tld"]}}],
        virtual_mailbox_domains=[{"domain": "example.tld", "users": {
            # A mailbox user may also be a Unix account of the host: the classes are per domain.
            "root": None, "alice": {}, "bob": {"mailbox": "example.tld/bob/Maildir/"},
            "mbox": {"mailbox": "legacy/mbox", "state": "present"}},
            "aliases": {"info": ["alice", "bob"], "x@Example.TLD": "other@other.tld", "ext": "a@provider.tld"},
            "catch_all": "alice"}],
        virtual_mailbox_domains_host=[{"domain": "other.tld", "users": {"other": None}, "catch_all": ["other"]},
                                      {"domain": "example.tld", "users": {"carol": None}, "aliases": {"c": "carol"}}],
    ) == []
    assert problems() == [] and server_problems({}) == []


@pytest.mark.parametrize("param", [
    "virtual_mailbox_domains", "virtual_mailbox_maps", "virtual_mailbox_base", "virtual_uid_maps",
    "virtual_gid_maps", "virtual_minimum_uid", "virtual_transport"])
def test_mailbox_parameters_belong_to_the_role(param):
    got = problems(main_cf_host={param: "x"})
    assert len(got) == 1
    assert got[0].startswith("postfix_server_main_cf_host.%s: x is set by the role (from postfix_server_" % param)
    assert got[0].endswith("); remove it")


def test_a_domain_in_two_address_classes():
    """Through _address_classes.crossings: each mailbox domain item in another class is named, with
    where inventory puts the domain in each class and why Postfix cannot serve it."""
    got = problems(
        main_cf={"myhostname": "MX.example.tld", "mydestination": "$myhostname, localhost"},
        main_cf_host={"mydestination": "$myhostname, localhost, Local.tld",
                      # $mydestination is inherited (older releases' idiom), tables and files are not read.
                      "relay_domains": "$mydestination, relay.tld, hash:/etc/postfix/relay, /etc/postfix/relay.txt"},
        virtual_alias_domains=[{"domain": "other.tld"}, {"domain": "both.tld"}],
        virtual_mailbox_domains=[{"domain": "both.tld"}, {"domain": "relay.tld"}, {"domain": "fine.tld"}],
        virtual_mailbox_domains_host=[{"domain": "Local.TLD"}])
    assert got == [
        FLEET + "[0].domain: both.tld is in both virtual_alias_domains (postfix_server_virtual_alias_domains[1])"
        " and virtual_mailbox_domains (" + FLEET + "[0])" + CLASS_NOTE + WHY_ALIAS_MAILBOX,
        FLEET + "[1].domain: relay.tld is in both virtual_mailbox_domains (" + FLEET + "[1]) and relay_domains"
        " (postfix_server_main_cf_host.relay_domains)" + CLASS_NOTE + WHY_MAILBOX_RELAY,
        HOST + "[0].domain: local.tld is in both mydestination (postfix_server_main_cf_host.mydestination)"
        " and virtual_mailbox_domains (" + HOST + "[0])" + CLASS_NOTE + WHY_LOCAL_MAILBOX,
    ]


def test_crossings_without_mailbox_domains_are_named_on_their_own_variables():
    got = problems(main_cf={"mydestination": ["localhost", "backup.tld"], "relay_domains": ["backup.tld", "ar.tld"]},
                   virtual_alias_domains=[{"domain": "ar.tld"}])
    assert len(got) == 2
    assert got[0].startswith("postfix_server_main_cf.relay_domains: backup.tld is in both mydestination"
                             " (postfix_server_main_cf.mydestination) and relay_domains"
                             " (postfix_server_main_cf.relay_domains)" + CLASS_NOTE)
    assert got[1].startswith("postfix_server_virtual_alias_domains[0].domain: ar.tld is in both"
                             " virtual_alias_domains (postfix_server_virtual_alias_domains[0]) and relay_domains"
                             " (postfix_server_main_cf.relay_domains)" + CLASS_NOTE)


def test_users_without_local_part_bad_keys_and_duplicates():
    where = FLEET + "[0].users: "
    assert problems(virtual_mailbox_domains=[{"domain": "example.tld", "users": {
        "": None, "@example.tld": None, " @other.tld": {}, "a b": None, "a,b": None, "a:b": None,
        "x@other.tld": None, "Alice": None, "alice": {}, "alice@EXAMPLE.tld": None}}]) == [
        where + " has no local part",
        where + "@example.tld has no local part",
        where + "@other.tld has no local part",
        where + "a b is not a local part or an address",
        where + "a,b is not a local part or an address",
        where + "a:b is not a local part or an address",
        where + "x@other.tld is not an address in example.tld",
        where + "alice is a duplicate of user Alice (the same address, alice@example.tld)",
        where + "alice@EXAMPLE.tld is a duplicate of user Alice (the same address, alice@example.tld)",
    ]


def test_user_options():
    where = FLEET + "[0].users: "
    assert problems(virtual_mailbox_domains=[{"domain": "example.tld", "users": {
        "a": "example.tld/a/", "b": ["x"], "c": {"quota": 1, "mailbox": "c/"}, "d": {"state": "disabled"},
        "e": {"state": "ABSENT"}}}]) == [
        where + "a: example.tld/a/ is not a dictionary of options (mailbox, state)",
        where + "b: ['x'] is not a dictionary of options (mailbox, state)",
        where + "c: unknown option quota (known: mailbox, state)",
        where + "d: state disabled is not present or absent",
    ]
    # Reported, not raised (the role computes it in a no_log task).
    got = problems(virtual_mailbox_domains=[{"domain": "a.tld", "users": ["alice"]}])
    assert len(got) == 1 and re.search(r"postfix_server_virtual_mailbox_domains\[0\]\.users must be", got[0]), got


@pytest.mark.parametrize(("mailbox", "why"), [
    ("/var/mail/vhosts/a/", "is an absolute path; a mailbox is a path under postfix_server_virtual_mailbox_base"),
    ("/", "is an absolute path; a mailbox is a path under postfix_server_virtual_mailbox_base"),
    ("../etc/", "leaves postfix_server_virtual_mailbox_base (a .. segment)"),
    ("example.tld/../../root/", "leaves postfix_server_virtual_mailbox_base (a .. segment)"),
    ("example.tld/..", "leaves postfix_server_virtual_mailbox_base (a .. segment)"),
    ("", "is empty"),
    ("  ", "is empty"),
    ("a b/", "contains white space"),
    ("./a/", "has an empty or . segment; write it plainly (DIR/SUBDIR/ for a Maildir)"),
    ("a//b/", "has an empty or . segment; write it plainly (DIR/SUBDIR/ for a Maildir)"),
])
def test_mailbox_paths_that_escape_the_base_or_are_not_plain(mailbox, why):
    assert problems(virtual_mailbox_domains_host=[{"domain": "example.tld", "users": {"a": {"mailbox": mailbox}}}]) == [
        "%s[0].users: a: mailbox %s %s" % (HOST, mailbox.strip(), why)]


def test_a_local_part_that_would_make_the_default_path_escape():
    assert problems(virtual_mailbox_domains=[{"domain": "example.tld", "users": {"..": None}}]) == [
        FLEET + "[0].users: ..: mailbox example.tld/../ leaves postfix_server_virtual_mailbox_base (a .. segment)"]


def test_two_users_in_one_mailbox_across_layers():
    assert problems(
        virtual_mailbox_domains=[{"domain": "example.tld", "users": {"alice": None, "old": {"state": "absent"}}}],
        virtual_mailbox_domains_host=[{"domain": "example.tld", "users": {
            "bob": {"mailbox": "example.tld/alice"}, "new": {"mailbox": "example.tld/old/"}}}]) == [
        HOST + "[0].users: bob: mailbox example.tld/alice is also the mailbox of alice@example.tld"
        " (" + FLEET + "[0].users: alice); give each user its own, or deliver one address into the other's"
        " mailbox with an alias"]


def test_bare_alias_targets_must_be_users_of_the_domain():
    where = FLEET + "[0]"
    assert problems(
        virtual_mailbox_domains=[{"domain": "example.tld", "users": {"alice": None, "gone": {"state": "absent"}},
                                  "aliases": {"info": ["alice", "root", "gone", "bob@other.tld"], "x": "Alice"},
                                  "catch_all": ["nobody"]}],
        # A bare name is a user of the alias's own domain only.
        virtual_mailbox_domains_host=[{"domain": "other.tld", "users": {"bob": None},
                                       "aliases": {"b": ["alice"]}}]) == [
        where + ".aliases: info: root is not a user of example.tld; name a user declared in its users,"
        " or give a full address",
        where + ".aliases: info: gone is a user of example.tld with state: absent; mail to it would bounce",
        where + ".catch_all: nobody is not a user of example.tld; name a user declared in its users,"
        " or give a full address",
        HOST + "[0].aliases: b: alice is not a user of other.tld; name a user declared in its users,"
        " or give a full address",
    ]
    # A host removing a fleet user makes the fleet's aliases to it wrong on that host.
    assert problems(
        virtual_mailbox_domains=[{"domain": "example.tld", "users": {"alice": None, "bob": None},
                                  "aliases": {"info": ["bob"]}}],
        virtual_mailbox_domains_host=[{"domain": "example.tld", "users": {"bob": {"state": "absent"}}}]) == [
        where + ".aliases: info: bob is a user of example.tld with state: absent; mail to it would bounce"]


def test_aliases_of_mailbox_domains_are_checked_like_virtual_aliases():
    where = FLEET + "[0]"
    assert problems(virtual_mailbox_domains=[{"domain": "example.tld", "aliases": {
        "a@other.tld": ["x@y.tld"], "bad key": ["x@y.tld"], "none": None, "prog": ["|/bin/sh"], "sp": ["a b@y.tld"]},
        "catch_all": []}, {"domain": "nodot"}]) == [
        where + ".aliases: a@other.tld is not an address in example.tld",
        where + ".aliases: bad key is not a local part or an address",
        where + ".aliases: none has no target (None)",
        where + ".aliases: prog: |/bin/sh is a command, file or include; virtual aliases take addresses"
        " (route to a name in postfix_server_aliases instead)",
        where + ".aliases: sp: a b@y.tld contains a space; give one target per list item",
        where + ".catch_all has no target ([])",
        FLEET + "[1].domain: nodot is not a domain name",
    ]
    # Reported, not raised (the role computes it in a no_log task).
    got = problems(virtual_mailbox_domains=[{"domain": "a.tld", "aliases": ["x"]}])
    assert len(got) == 1 and re.search(r"postfix_server_virtual_mailbox_domains\[0\]\.aliases must be", got[0]), got


def test_vmail_account_ids_paths_and_transport():
    assert problems(vmail_uid=99) == [
        "postfix_server_vmail_uid: 99 is below postfix_server_virtual_minimum_uid (100);"
        " virtual(8) refuses to deliver as a uid under it"]
    assert problems(vmail_uid="150", virtual_minimum_uid="200") == [
        "postfix_server_vmail_uid: 150 is below postfix_server_virtual_minimum_uid (200);"
        " virtual(8) refuses to deliver as a uid under it"]
    assert problems(vmail_uid=0, virtual_minimum_uid=0, vmail_gid=0) == [
        "postfix_server_virtual_minimum_uid: 0 is below 1, the least Postfix accepts",
        "postfix_server_vmail_gid: 0 is root's group; give the mailboxes a group of their own",
    ]
    assert problems(vmail_uid="x", vmail_gid=True, virtual_minimum_uid=None) == [
        "postfix_server_vmail_uid: x is not an integer", "postfix_server_vmail_gid: True is not an integer"]
    assert problems(vmail_user="root", vmail_group="", virtual_mailbox_base="vhosts", virtual_mailbox_map="/",
                    virtual_transport="lmtp:unix:private/dovecot lmtp") == [
        "postfix_server_vmail_user: root would own every mailbox; use an account of its own (vmail)",
        "postfix_server_vmail_group:  is not a user or group name",
        "postfix_server_virtual_mailbox_base: vhosts is not an absolute path below /",
        "postfix_server_virtual_mailbox_map: / is not an absolute path below /",
        "postfix_server_virtual_transport: lmtp:unix:private/dovecot lmtp is not a transport"
        " (virtual, or lmtp:unix:private/dovecot-lmtp)",
    ]
    assert problems(vmail_user="vmail", virtual_transport="lmtp:unix:private/dovecot-lmtp", vmail_uid=100) == []


# Size


def test_ten_thousand_users():
    n = 10000
    fleet = [{"domain": "example.tld", "users": {"user%05d" % i: None for i in range(n)},
              "aliases": {"all%05d" % i: ["user%05d" % i, "ext%d@x.tld" % i] for i in range(n)},
              "catch_all": ["user00000"]}]
    host = [{"domain": "example.tld", "users": {"user%05d" % i: {"state": "absent"} for i in range(0, n, 2)},
             "aliases": {"all%05d" % i: "user%05d" % (i + 1) for i in range(0, n, 2)}, "catch_all": "user00001"}]
    mailbox, virtual = entries(fleet, host)
    assert len(mailbox) == n // 2
    assert mailbox["user00001@example.tld"] == "example.tld/user00001/"
    assert len(virtual) == n + n // 2 + 1
    assert virtual["all00000@example.tld"] == ["user00001@example.tld"]
    assert virtual["all00001@example.tld"] == ["user00001@example.tld", "ext1@x.tld"]
    assert virtual["user00003@example.tld"] == ["user00003@example.tld"]
    assert virtual["@example.tld"] == ["user00001@example.tld"]
    assert problems(virtual_mailbox_domains=fleet, virtual_mailbox_domains_host=host) == []
    fleet[0]["aliases"]["typo"] = ["usr1"]
    assert problems(virtual_mailbox_domains=fleet) == [
        FLEET + "[0].aliases: typo: usr1 is not a user of example.tld; name a user declared in its users,"
        " or give a full address"]
