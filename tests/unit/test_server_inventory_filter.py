# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server role's inventory filters: layering, catch-alls, every problem message, size."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mailops.postfix.plugins.filter.server_inventory import (
    FilterModule, server_alias_entries, server_domains, server_inventory, server_mailbox_domains,
    server_mailbox_entries, server_mailbox_virtual_entries, server_problems, server_virtual_entries)

BASE = {"postmaster": ["root"]}
ROLE_NOTE = " is set by the role (from postfix_server_virtual_alias_domains and postfix_server_table_type); remove it"
MYDEST_NOTE = "; a domain must never be both a virtual alias domain and in mydestination"
VIRTUAL_UNSAFE = (" is a command, file or include; virtual aliases take addresses"
                  " (route to a name in postfix_server_aliases instead)")
LOCAL_UNSAFE = (" runs a command or writes a file as the recipient;"
                " set postfix_server_allow_unsafe_targets: true to allow it")


def problems(**inventory):
    allow = inventory.pop("allow_unsafe_targets", False)
    return server_problems({"postfix_server_" + k: v for k, v in inventory.items()}, allow_unsafe_targets=allow)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "server_domains", "server_virtual_entries", "server_alias_entries", "server_problems", "server_inventory",
        "server_mailbox_domains", "server_mailbox_entries", "server_mailbox_virtual_entries",
        "server_maps", "server_map_params", "server_map_type_problems", "server_master_services",
        "server_config_tables", "server_proxy_read", "server_joined_refs"}


# Layering


def test_domains_merge_fleet_then_host_host_wins_per_alias():
    fleet = [{"domain": " Example.TLD ", "aliases": {"info": ["alice"], "sales": ["bob"]}, "catch_all": ["root"]},
             {"domain": "other.tld", "aliases": {"a": "b"}}]
    host = [{"domain": "example.tld", "aliases": {"info": ["carol"], "new": ["dave"]}, "catch_all": None},
            {"domain": "host.tld"}]
    assert server_domains(fleet, host) == [
        {"domain": "example.tld", "aliases": {"info": ["carol"], "sales": ["bob"], "new": ["dave"]}, "catch_all": ["root"]},
        {"domain": "other.tld", "aliases": {"a": "b"}},
        {"domain": "host.tld", "aliases": {}},
    ]
    # The inputs are not changed.
    assert fleet[0]["aliases"] == {"info": ["alice"], "sales": ["bob"]}


def test_domains_host_catch_all_replaces_fleet_one_and_odd_items_are_skipped():
    fleet = [{"domain": "example.tld", "catch_all": "a"}, "not a mapping", None]
    host = [{"domain": "EXAMPLE.tld", "catch_all": ["b"], "aliases": ["not", "a", "mapping"]}]
    assert server_domains(fleet, host) == [{"domain": "example.tld", "aliases": {}, "catch_all": ["b"]}]
    assert server_domains(None, None) == server_domains([], []) == []


def test_virtual_entries_addresses_targets_and_catch_all():
    domains = [{"domain": "example.tld", "aliases": {
        "Zed": "x", "info": " a , b ", "Sales@Example.TLD": ["c"], "none": None, "num": 5, " Bob ": ["d "]},
        "catch_all": "root, ops"},
        {"domain": "other.tld", "aliases": {"info@example.tld": ["late"]}, "catch_all": ["z"]}]
    entries = server_virtual_entries(domains)
    assert entries == {
        "bob@example.tld": ["d"], "info@example.tld": ["late"], "none@example.tld": [], "num@example.tld": ["5"],
        "sales@example.tld": ["c"], "zed@example.tld": ["x"], "@example.tld": ["root", "ops"], "@other.tld": ["z"]}
    # Per domain in key order (case-insensitive), catch-all last; a later domain overrides in place.
    assert list(entries) == ["bob@example.tld", "info@example.tld", "none@example.tld", "num@example.tld",
                             "sales@example.tld", "zed@example.tld", "@example.tld", "@other.tld"]


def test_alias_entries_layers_later_wins_and_names_fold():
    assert server_alias_entries(BASE, {"Root": ["admin"], "ops": "a,b"}, {"root": "ops , dev", "postmaster": None}) == {
        "postmaster": [], "root": ["ops", "dev"], "ops": ["a", "b"]}
    assert server_alias_entries(BASE, None, {}) == {"postmaster": ["root"]}
    with pytest.raises(AnsibleFilterError):
        server_alias_entries(BASE, ["not", "a", "mapping"])


# Problems


def test_no_problems_for_a_good_inventory():
    domain = {"domain": "example.tld", "aliases": {"info": ["alice", "bob@x.tld"], "b@Example.TLD": "c"},
              "catch_all": "root"}
    assert problems(
        main_cf={"myhostname": "mx1.example.tld", "mydestination": ["$myhostname", "localhost.$mydomain", "localhost"]},
        main_cf_host={}, virtual_alias_domains=[domain],
        virtual_alias_domains_host=None, aliases={"root": ["admin"]}, aliases_host={"prog": ["|/usr/bin/logger"]},
        allow_unsafe_targets=True) == []
    assert server_problems({}) == []


def test_role_owned_main_cf_parameters():
    assert problems(main_cf={"alias_maps": ["hash:/etc/aliases", "x"], "virtual_alias_domains": "a"},
                    main_cf_host={"virtual_alias_maps": "hash:/x", "alias_database": "hash:/y"}) == [
        "postfix_server_main_cf.virtual_alias_domains: a" + ROLE_NOTE,
        "postfix_server_main_cf.alias_maps: ['hash:/etc/aliases', 'x']" + ROLE_NOTE,
        "postfix_server_main_cf_host.virtual_alias_maps: hash:/x" + ROLE_NOTE,
        "postfix_server_main_cf_host.alias_database: hash:/y" + ROLE_NOTE,
    ]


@pytest.mark.parametrize(("main_cf", "mydest"), [
    ({"myhostname": "MX1.Example.tld", "mydestination": ["$myhostname", "localhost.$mydomain", "${mydomain}"]},
     "mx1.example.tld, localhost.example.tld, example.tld"),
    ({"myhostname": "a.b", "mydomain": "Example.TLD", "mydestination": "${myhostname},  $mydomain localhost"},
     "a.b, example.tld, localhost"),
    ({"mydestination": ["$mydomain", "Example.TLD "]}, "$mydomain, example.tld"),
])
def test_domain_in_mydestination_after_expansion(main_cf, mydest):
    assert problems(main_cf=main_cf, virtual_alias_domains_host=[{"domain": "example.tld"}]) == [
        "postfix_server_virtual_alias_domains_host[0].domain: example.tld is also in mydestination (%s)%s"
        % (mydest, MYDEST_NOTE)]


def test_mydestination_from_the_host_layer_wins():
    assert problems(main_cf={"mydestination": ["example.tld"]}, main_cf_host={"mydestination": ["localhost"]},
                    virtual_alias_domains=[{"domain": "example.tld"}]) == []


def test_domain_names():
    assert problems(virtual_alias_domains=[
        {"domain": ""}, "a string", {"domain": None}, {"domain": 12}, {"domain": "-bad.tld"}, {"domain": "nodot"},
        {"domain": " Good_1.Example-x.TLD "}]) == [
        "postfix_server_virtual_alias_domains[0].domain:  is not a domain name",
        "postfix_server_virtual_alias_domains[1] must be a dictionary (domain, aliases, catch_all), got str",
        "postfix_server_virtual_alias_domains[2].domain: None is not a domain name",
        "postfix_server_virtual_alias_domains[3].domain: 12 is not a domain name",
        "postfix_server_virtual_alias_domains[4].domain: -bad.tld is not a domain name",
        "postfix_server_virtual_alias_domains[5].domain: nodot is not a domain name",
    ]


def test_virtual_alias_messages():
    where = "postfix_server_virtual_alias_domains[0]"
    assert problems(virtual_alias_domains=[{"domain": "Example.tld", "aliases": {
        "info": "a, b,", "none": None, "empty": [], "bad key": ["x"], "a,b": ["x"], "c:d": ["x"], "@x": ["y"],
        "": ["y"], "a@other.tld": ["z"], "b@EXAMPLE.tld": ["z"], "prog": ["|/bin/x"], "file": ['"/tmp/f'],
        "inc": [":include:/l"], "sp": ["a b"]}, "catch_all": "root, "}]) == [
        where + ".aliases: info has an empty target in a, b,",
        where + ".aliases: none has no target (None)",
        where + ".aliases: empty has no target ([])",
        where + ".aliases: bad key is not a local part or an address",
        where + ".aliases: a,b is not a local part or an address",
        where + ".aliases: c:d is not a local part or an address",
        where + ".aliases: @x is not a local part or an address",
        where + ".aliases:  is not a local part or an address",
        where + ".aliases: a@other.tld is not an address in example.tld",
        where + ".aliases: prog: |/bin/x" + VIRTUAL_UNSAFE,
        where + '.aliases: file: "/tmp/f' + VIRTUAL_UNSAFE,
        where + ".aliases: inc: :include:/l" + VIRTUAL_UNSAFE,
        where + ".aliases: sp: a b contains a space; give one target per list item",
        where + ".catch_all has an empty target in root, ",
    ]


def test_catch_all_messages():
    assert problems(virtual_alias_domains_host=[
        {"domain": "a.tld", "catch_all": []}, {"domain": "b.tld", "catch_all": "|evil"},
        {"domain": "c.tld", "catch_all": None}, {"domain": "d.tld", "catch_all": ["x y"]}]) == [
        "postfix_server_virtual_alias_domains_host[0].catch_all has no target ([])",
        "postfix_server_virtual_alias_domains_host[1].catch_all: |evil" + VIRTUAL_UNSAFE,
        "postfix_server_virtual_alias_domains_host[3].catch_all: x y contains a space; give one target per list item",
    ]


def test_local_alias_messages():
    assert problems(aliases={"bad name": ["x"], "a@b": ["x"], "a:b": ["x"], "": ["x"], "nobody": [], "nil": None,
                             "e": "a,,b", "prog": ["|/usr/bin/logger", ":include:/x", "/file", '"|q'], "n": 7},
                    aliases_host={"broken": []}) == [
        "postfix_server_aliases: bad name is not a local alias name",
        "postfix_server_aliases: a@b is not a local alias name",
        "postfix_server_aliases: a:b is not a local alias name",
        "postfix_server_aliases:  is not a local alias name",
        "postfix_server_aliases.nobody has no target ([])",
        "postfix_server_aliases.nil has no target (None)",
        "postfix_server_aliases.e has an empty target in a,,b",
        "postfix_server_aliases.prog: |/usr/bin/logger" + LOCAL_UNSAFE,
        "postfix_server_aliases.prog: :include:/x" + LOCAL_UNSAFE,
        "postfix_server_aliases.prog: /file" + LOCAL_UNSAFE,
        'postfix_server_aliases.prog: "|q' + LOCAL_UNSAFE,
        "postfix_server_aliases_host.broken has no target ([])",
    ]
    assert problems(aliases={"prog": ["|/usr/bin/logger"]}, allow_unsafe_targets=True) == []


def test_problems_in_variable_order():
    got = problems(aliases_host={"x": []}, aliases={"y": []}, virtual_alias_domains_host=[{"domain": "x"}],
                   virtual_alias_domains=[{"domain": "y"}], main_cf_host={"alias_maps": "h"}, main_cf={"alias_maps": "f"})
    assert [p.split(".")[0].split("[")[0].split(":")[0] for p in got] == [
        "postfix_server_main_cf", "postfix_server_main_cf_host", "postfix_server_virtual_alias_domains",
        "postfix_server_virtual_alias_domains_host", "postfix_server_aliases", "postfix_server_aliases_host"]
    got = problems(aliases={"y": []}, vmail_uid=1, virtual_minimum_uid=100,
                   virtual_mailbox_domains_host=[{"domain": "x"}], virtual_mailbox_domains=[{"domain": "y"}],
                   virtual_alias_domains_host=[{"domain": "x"}], main_cf={"alias_maps": "f"})
    assert [p.split(".")[0].split("[")[0].split(":")[0] for p in got] == [
        "postfix_server_main_cf", "postfix_server_virtual_alias_domains_host", "postfix_server_virtual_mailbox_domains",
        "postfix_server_virtual_mailbox_domains_host", "postfix_server_vmail_uid", "postfix_server_aliases"]


def test_domain_lists_shape_as_an_argument_spec_would_check_it():
    """The domain lists are checked here, not through the role's argument spec: not a list, an item
    not a dictionary, an unknown option (with the nearest known one), a catch_all that is not
    targets - each reported, none raised."""
    assert problems(virtual_alias_domains={"domain": "a.tld"}, virtual_mailbox_domains="m.tld") == [
        "postfix_server_virtual_alias_domains must be a list of domains, got dict",
        "postfix_server_virtual_mailbox_domains must be a list of domains, got str"]
    assert problems(virtual_alias_domains=[{"domain": "a.tld", "alias": {"x": ["y"]}, "catch_all": 5}],
                    virtual_mailbox_domains_host=[{"domain": "m.tld", "user": {}, "zz": 1}, 7]) == [
        "postfix_server_virtual_alias_domains[0]: unknown option alias (known: domain, aliases, catch_all);"
        " did you mean aliases?",
        "postfix_server_virtual_alias_domains[0].catch_all must be a target or a list of targets, got 5",
        "postfix_server_virtual_mailbox_domains_host[0]: unknown option user (known: domain, users, aliases,"
        " catch_all); did you mean users?",
        "postfix_server_virtual_mailbox_domains_host[0]: unknown option zz (known: domain, users, aliases, catch_all)",
        "postfix_server_virtual_mailbox_domains_host[1] must be a dictionary (domain, users, aliases, catch_all), got int"]
    assert problems(virtual_alias_domains=[{"domain": "a.tld", "catch_all": "ops"}],
                    virtual_mailbox_domains=[{"domain": "m.tld", "users": {"u": None}, "catch_all": ["u"]}]) == []


def test_non_mapping_aliases_of_a_domain_are_an_error():
    # Reported, not raised (the role computes it in a no_log task).
    got = problems(virtual_alias_domains=[{"domain": "a.tld", "aliases": ["x"]}])
    assert len(got) == 1 and re.search(r"postfix_server_virtual_alias_domains\[0\]\.aliases", got[0]), got


# Size


def test_ten_thousand_aliases():
    n = 10000
    fleet = [{"domain": "example.tld", "aliases": {"user%05d" % i: ["u%d@x.tld" % i, "ops"] for i in range(n)}}]
    host = [{"domain": "example.tld", "aliases": {"user%05d" % i: "host%d" % i for i in range(0, n, 2)}}]
    local = {"l%05d" % i: ["root"] for i in range(n)}
    domains = server_domains(fleet, host)
    entries = server_virtual_entries(domains)
    assert len(entries) == n
    assert entries["user00000@example.tld"] == ["host0"]
    assert entries["user00001@example.tld"] == ["u1@x.tld", "ops"]
    assert entries["user09999@example.tld"] == ["u9999@x.tld", "ops"]
    assert len(server_alias_entries(BASE, local, {})) == n + 1
    assert problems(virtual_alias_domains=fleet, virtual_alias_domains_host=host, aliases=local) == []
    local["bad one"] = []
    assert problems(virtual_alias_domains=fleet, aliases=local) == ["postfix_server_aliases: bad one is not a local alias name"]


# One pass


def test_inventory_in_one_pass_equals_the_filters_one_by_one():
    fleet = [{"domain": "Example.TLD", "aliases": {"info": "ops, Sales@x.tld", "b@example.tld": ["b2"]},
              "catch_all": ["ops"]}]
    host = [{"domain": "example.tld", "aliases": {"info": ["host"]}}]
    mbox = [{"domain": "mbox.tld", "users": {"alice": None, "bob": {"state": "absent"}},
             "aliases": {"a": ["alice"]}, "catch_all": ["alice"]}]
    inventory = {"postfix_server_virtual_alias_domains": fleet, "postfix_server_virtual_alias_domains_host": host,
                 "postfix_server_virtual_mailbox_domains": mbox, "postfix_server_aliases": {"Root": ["admin"]},
                 "postfix_server_aliases_host": {"ops": "a,b"}}
    got = server_inventory(inventory, BASE)
    domains, mailbox_domains = server_domains(fleet, host), server_mailbox_domains(mbox)
    virtual = dict(server_virtual_entries(domains))
    virtual.update(server_mailbox_virtual_entries(mailbox_domains))
    # The resolved values are the strings the tables hold; the domains by name only.
    joined = dict((k, ", ".join(v)) for k, v in virtual.items())
    aliases = dict((k, ", ".join(v)) for k, v in server_alias_entries(BASE, {"Root": ["admin"]}, {"ops": "a,b"}).items())
    assert got == {"problems": [], "domains": [{"domain": "example.tld"}], "mailbox_domains": [{"domain": "mbox.tld"}],
                   "mailbox_entries": server_mailbox_entries(mailbox_domains), "virtual_entries": joined,
                   "alias_entries": aliases,
                   "mailbox_text": "".join("%s\t%s\n" % kv for kv in server_mailbox_entries(mailbox_domains).items()),
                   "virtual_text": "".join("%s\t%s\n" % kv for kv in joined.items()),
                   "alias_text": "".join("%s\t%s\n" % kv for kv in aliases.items()),
                   "addresses": [k for k in joined if not k.startswith("@")],
                   "counts": {"domains": 1, "mailbox_domains": 1, "mailbox_entries": 1, "virtual_entries": len(virtual),
                              "alias_entries": 3, "addresses": 4}}
    assert len(virtual) == 6
    assert got["virtual_entries"]["info@example.tld"] == "host"
    assert got["virtual_entries"]["alice@mbox.tld"] == "alice@mbox.tld"
    assert got["alias_entries"]["ops"] == "a, b"
    assert [d["domain"] for d in domains] == ["example.tld"]
    assert list(got["virtual_entries"]) == list(virtual)


def test_inventory_with_problems_resolves_nothing():
    got = server_inventory({"postfix_server_virtual_alias_domains": [{"domain": "a.tld", "aliases": ["x"]}],
                            "postfix_server_aliases": {"ok": ["root"]}}, BASE)
    assert len(got["problems"]) == 1 and "postfix_server_virtual_alias_domains[0].aliases" in got["problems"][0]
    assert got == {"problems": got["problems"], "domains": [], "mailbox_domains": [], "mailbox_entries": {},
                   "virtual_entries": {}, "alias_entries": {}, "mailbox_text": "", "virtual_text": "", "alias_text": "",
                   "addresses": [],
                   "counts": {"domains": 0, "mailbox_domains": 0, "mailbox_entries": 0, "virtual_entries": 0,
                              "alias_entries": 0, "addresses": 0}}
    assert server_inventory("not a dictionary")["problems"] == ["the inventory must be a dictionary, got str"]


def test_inventory_text_is_what_the_config_module_reads_back():
    """The entries as text (entries_text) read back by the config engine are the entries; an
    /etc/aliases target with a line break (which would add a line) is a problem, not text."""
    from ansible_collections.mailops.postfix.plugins.module_utils._configuration import entries_from_text
    domain = {"domain": "a.tld", "aliases": {"x": ["y@b.tld", "z"]}, "catch_all": "ops"}
    inventory = {"postfix_server_virtual_alias_domains": [domain],
                 "postfix_server_aliases": {"ops": ["|/usr/bin/logger -t mail", "root"]}}
    got = server_inventory(inventory, BASE, allow_unsafe_targets=True)
    assert got["problems"] == []
    for entries, text in (("virtual_entries", "virtual_text"), ("alias_entries", "alias_text")):
        assert entries_from_text(got[text], "t") == got[entries] and list(entries_from_text(got[text], "t")) == list(got[entries])
    assert got["alias_entries"]["ops"] == "|/usr/bin/logger -t mail, root"
    broken = dict(inventory, postfix_server_aliases={"ops": ["root\nevil\t|/bin/sh"]})
    got = server_inventory(broken, BASE, allow_unsafe_targets=True)
    assert got["problems"] == ["postfix_server_aliases.ops: 'root\\nevil\\t|/bin/sh' holds a line break"]
    assert got["alias_text"] == ""


def test_inventory_result_is_plain_data():
    """Tagged strings and ints of Ansible's templating come back as plain str and int."""
    from ansible._internal._datatag._tags import TrustedAsTemplate  # pylint: disable=import-outside-toplevel
    tag = TrustedAsTemplate()
    inventory = {"postfix_server_virtual_alias_domains": [
        {tag.tag("domain"): tag.tag("a.tld"), "aliases": {tag.tag("x"): [tag.tag("y@b.tld")]}}],
        "postfix_server_vmail_uid": 5000}
    got = server_inventory(inventory, {tag.tag("postmaster"): [tag.tag("root")]})
    assert got["virtual_entries"] == {"x@a.tld": "y@b.tld"}

    def walk(value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert type(value) in (str, int, bool, type(None)), (value, type(value))
    walk(got)
