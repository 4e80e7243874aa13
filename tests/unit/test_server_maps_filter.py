# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server role's lookup table and master.cf filters: layering, defaults, main.cf parameters,
every problem message."""

from __future__ import annotations

import copy

from ansible_collections.mailops.postfix.plugins.filter.server_inventory import (
    FilterModule, server_config_tables, server_joined_refs, server_map_params, server_map_type_problems, server_maps,
    server_master_services, server_problems, server_proxy_read)

FLEET = "postfix_server_maps"
HOST = "postfix_server_maps_host"
KNOWN = "path, type, entries, parameter, exclusive, secret, mode, state"


def problems(**inventory):
    return server_problems({"postfix_server_" + k: v for k, v in inventory.items()})


def test_filters_are_registered():
    assert {"server_maps", "server_map_params", "server_map_type_problems",
            "server_master_services", "server_config_tables"} <= set(FilterModule().filters())


def test_config_tables_secret_entries_apart_absent_maps_path_only():
    maps = server_maps({"transport": {"entries": {"example.net": "smtp:[mx.example.net]"}, "mode": "0640"},
                        "sasl_passwd": {"parameter": "smtp_sasl_password_maps",
                                        "entries": {"[mx.example.net]:587": "user:pw"}},
                        "old": {"state": "absent", "type": "lmdb", "entries": {"a": "b"}}},
                       config_dir="/etc/postfix", table_type="hash")
    assert server_config_tables(maps) == [
        {"path": "/etc/postfix/old", "type": "lmdb", "state": "absent"},
        {"path": "/etc/postfix/sasl_passwd", "type": "hash", "state": "present", "exclusive": True, "mode": None,
         "secret_entries": {"[mx.example.net]:587": "user:pw"}},
        {"path": "/etc/postfix/transport", "type": "hash", "state": "present", "exclusive": True, "mode": "0640",
         "entries": {"example.net": "smtp:[mx.example.net]"}},
    ]


# Layering and defaults


def test_maps_resolve_defaults():
    got = server_maps({"transport": {"entries": {"example.net": "smtp:[mx.example.net]"}},
                       "sasl_passwd": {"parameter": "smtp_sasl_password_maps",
                                       "entries": {"[mx.example.net]:587": "user:pw"}},
                       "header_checks": {"type": "REGEXP", "parameter": " header_checks ",
                                         "entries": {"/^Subject: x/": "REJECT"}}},
                      config_dir="/etc/pf/", table_type="lmdb")
    assert list(got) == ["header_checks", "sasl_passwd", "transport"]
    assert got["transport"] == {
        "name": "transport", "where": "postfix_server_maps.transport", "path": "/etc/pf/transport",
        "type": "lmdb", "reference": "lmdb:/etc/pf/transport", "index": "/etc/pf/transport.lmdb",
        "entries": {"example.net": "smtp:[mx.example.net]"}, "parameter": None, "exclusive": True,
        "secret": False, "mode": None, "state": "present", "network": False}
    assert got["sasl_passwd"]["secret"] is True and got["sasl_passwd"]["index"] == "/etc/pf/sasl_passwd.lmdb"
    assert got["header_checks"]["type"] == "regexp" and got["header_checks"]["index"] is None
    assert got["header_checks"]["parameter"] == "header_checks" and got["header_checks"]["secret"] is False
    assert server_maps(None) == server_maps({}, None) == {}


def test_database_maps_resolve_merge_per_parameter_and_join_the_role_parameters():
    fleet = {"virtual-sql": {"type": "pgsql", "parameter": "virtual_alias_maps",
                             "client": {"hosts": "db1", "user": "postfix", "dbname": "mail", "query": "q"},
                             "client_secret": {"password": "pw"}, "expect": {"Info@Example.TLD": "a@b"}},
             "mailboxes": {"type": "ldap", "parameter": "virtual_mailbox_maps", "proxy": "no",
                           "client": {"server_host": "ldap://l", "search_base": "dc=x"}},
             "transport": {"parameter": "transport_maps"}}
    host = {"virtual-sql": {"client": {"hosts": "db2", "dbname": None}, "expect": {"info@example.tld": "c@d"}}}
    got = server_maps(fleet, host, config_dir="/etc/pf", table_type="lmdb")
    sql = got["virtual-sql"]
    assert (sql["path"], sql["reference"], sql["index"], sql["proxy"], sql["network"]) == (
        "/etc/pf/virtual-sql.cf", "proxy:pgsql:/etc/pf/virtual-sql.cf", None, True, True)
    # Client parameters merged per name (a null host value drops the fleet's), expect keys folded.
    assert sql["client"] == {"hosts": "db2", "user": "postfix", "query": "q"}
    assert sql["client_secret"] == {"password": "pw"} and sql["expect"] == {"info@example.tld": "c@d"}
    assert got["mailboxes"]["reference"] == "ldap:/etc/pf/mailboxes.cf"
    assert server_config_tables(got)[0] == {
        "path": "/etc/pf/mailboxes.cf", "type": "ldap", "state": "present", "mode": None,
        "params": {"server_host": "ldap://l", "search_base": "dc=x"}, "secret_params": {}}
    assert server_proxy_read(got) == ["proxy:pgsql:/etc/pf/virtual-sql.cf"]
    assert server_joined_refs(got) == {"virtual_alias_maps": ["proxy:pgsql:/etc/pf/virtual-sql.cf"],
                                       "virtual_mailbox_maps": ["ldap:/etc/pf/mailboxes.cf"]}
    # The role's parameters are not among the maps' own (the role joins them).
    assert server_map_params(got) == {"transport_maps": "lmdb:/etc/pf/transport"}


def test_database_map_problems():
    assert problems(maps={
        "sql": {"type": "pgsql", "client": {"hosts": "db", "dbnmae": "m", "password": "x", "query": "a\nb"},
                "client_secret": {"bind_pw": "y"}, "entries": {"a": "b"}, "proxy": "maybe", "exclusive": True,
                "mode": "0604", "expect": {"two words": "v"}},
        "empty": {"type": "mysql"},
        "mbox": {"type": "ldap", "parameter": "virtual_mailbox_maps", "client": {"server_host": "ldap://l"}},
        "file": {"parameter": "transport_maps", "client": {"hosts": "db"}, "expect": {}}}) == [
        "postfix_server_maps.sql.entries: a pgsql map's data is in its database, which the role does not write"
        " (mailops.postfix.sql_entries does); list keys the verify step checks in expect",
        "postfix_server_maps.sql: unknown key exclusive for a pgsql map (known: path, type, parameter, client,"
        " client_secret, proxy, expect, mode, state)",
        "postfix_server_maps.sql.client: unknown pgsql_table(5) parameter 'dbnmae'; did you mean dbname?",
        "postfix_server_maps.sql.client.password: a credential; give it in client_secret (never logged,"
        " hidden in diffs)",
        "postfix_server_maps.sql.client: parameter query: value contains a newline; a client file value is one"
        " logical line",
        "postfix_server_maps.sql.client_secret: unknown pgsql_table(5) parameter 'bind_pw'; it is a parameter"
        " of ldap tables",
        "postfix_server_maps.sql.proxy: maybe is not a boolean",
        "postfix_server_maps.sql.expect: two words contains white space or starts with #; a pgsql key is one"
        " word (postmap(1))",
        "postfix_server_maps.file: client is an option of a database map (pgsql, mysql, ldap, sqlite); this map"
        " is a hash file",
        "postfix_server_maps.file: expect is an option of a database map (pgsql, mysql, ldap, sqlite); this map"
        " is a hash file",
        "postfix_server_maps.empty.client: the mysql client file's parameters are missing (mysql_table(5))",
        "postfix_server_maps.mbox.parameter: virtual_mailbox_maps is set only while a virtual mailbox domain is"
        " declared (postfix_server_virtual_mailbox_domains)",
        "postfix_server_maps.sql.mode: 0604 lets every local user read the client file (its credentials);"
        " client files are 0640 root:postfix"]


def test_lmtp_password_maps_are_secret_too_and_secret_false_wins():
    got = server_maps({"a": {"parameter": "lmtp_sasl_password_maps"},
                       "b": {"parameter": "smtp_sasl_password_maps", "secret": "no"},
                       "c": {"secret": True, "exclusive": "false", "mode": "0600"}})
    assert (got["a"]["secret"], got["b"]["secret"], got["c"]["secret"]) == (True, False, True)
    assert got["c"]["exclusive"] is False and got["c"]["mode"] == "0600"


def test_host_map_wins_per_option_and_per_entry_null_drops_an_entry():
    fleet = {"transport": {"parameter": "transport_maps", "entries": {
        "Example.NET": "smtp:[a]", "keep.example": "smtp:[k]", "gone.example": "smtp:[g]"}}}
    host = {"transport": {"type": "cdb", "entries": {"example.net": "smtp:[b]", "GONE.example": None,
                                                     "new.example": "smtp:[n]"}},
            "local_only": {"entries": {"x": "y"}}}
    before = copy.deepcopy(fleet)
    got = server_maps(fleet, host, config_dir="/etc/postfix")
    assert got["transport"]["entries"] == {"keep.example": "smtp:[k]", "example.net": "smtp:[b]",
                                           "new.example": "smtp:[n]"}
    assert got["transport"]["type"] == "cdb" and got["transport"]["parameter"] == "transport_maps"
    assert got["transport"]["where"] == "postfix_server_maps_host.transport"
    assert got["local_only"]["path"] == "/etc/postfix/local_only"
    assert fleet == before


def test_pattern_keys_are_merged_as_written():
    got = server_maps({"hc": {"type": "regexp", "entries": {"/^Subject: A/": "REJECT", "/^X/": "DISCARD"}}},
                      {"hc": {"entries": {"/^subject: a/": "WARN", "/^X/": "HOLD"}}})
    assert got["hc"]["entries"] == {"/^Subject: A/": "REJECT", "/^subject: a/": "WARN", "/^X/": "HOLD"}


def test_map_params_join_in_name_order_and_absent_maps_leave():
    maps = server_maps({"20-transport": {"parameter": "transport_maps"},
                        "10-transport": {"parameter": "transport_maps", "type": "lmdb"},
                        "old_checks": {"parameter": "body_checks", "type": "pcre", "state": "absent"},
                        "access": {}},
                       config_dir="/etc/postfix")
    assert server_map_params(maps) == {
        "transport_maps": "lmdb:/etc/postfix/10-transport, hash:/etc/postfix/20-transport",
        "body_checks": None}
    maps["20-transport"]["state"] = "absent"
    assert server_map_params(maps)["transport_maps"] == "lmdb:/etc/postfix/10-transport"


def test_master_services_host_replaces_same_name_and_type_in_place():
    fleet = [{"name": "submission", "type": "inet", "command": "smtpd", "options": {"a": "1"}},
             {"name": "submission", "type": "unix", "command": "smtpd"},
             {"name": "relay", "type": "unix", "state": "commented"}]
    host = [{"name": "submission", "type": "inet", "command": "smtpd", "options": {"b": "2"}},
            {"name": "smtps", "type": "inet", "command": "smtpd"}]
    assert server_master_services(fleet, host) == [
        {"name": "submission", "type": "inet", "command": "smtpd", "options": {"b": "2"}},
        {"name": "submission", "type": "unix", "command": "smtpd"},
        {"name": "relay", "type": "unix", "state": "commented"},
        {"name": "smtps", "type": "inet", "command": "smtpd"}]
    assert server_master_services(None, None) == []


# Problems


def test_good_maps_and_services_have_no_problem():
    assert problems(
        config_dir="/etc/postfix",
        main_cf={"smtpd_recipient_restrictions": ["check_recipient_access hash:/etc/postfix/access"]},
        maps={"transport": {"parameter": "transport_maps", "entries": {"example.net": ["smtp:[a]", "x"]}},
              "access": {"entries": {"spam@example.tld": "REJECT"}, "mode": "0640"},
              "hc": {"type": "regexp", "parameter": "header_checks",
                     "entries": {"/^Subject: .*x/i": "REJECT", "!#^To: a#": "WARN", "/a\\/b/": "HOLD"}},
              "pc": {"type": "pcre", "parameter": "body_checks", "entries": {"/x/AsX": "REJECT"}},
              "clients": {"type": "cidr", "entries": {"10.0.0.0/8": "OK", "!192.0.2.1": "REJECT",
                                                      "[2001:db8::]/32": "OK", "2001:db8::1": "OK"}},
              "sasl_passwd": {"parameter": "smtp_sasl_password_maps", "entries": {"[a]:587": "u:p"},
                              "mode": "0600", "path": "/etc/postfix/sasl/sasl_passwd"}},
        maps_host={"transport": {"entries": {"example.net": None}}},
        master_cf=[{"name": "submission", "type": "inet", "private": "n", "chroot": "n", "command": "smtpd",
                    "options": {"syslog_name": "postfix/submission"}}],
        master_cf_host=[{"name": "submission", "type": "inet", "options": {"smtpd_tls_security_level": "may"}}],
    ) == []


def test_map_layers_and_specs_of_the_wrong_shape():
    assert problems(maps=["a"], maps_host={"x y": "z", "b": None}) == [
        "postfix_server_maps: must be a dictionary of maps (name -> options), got list",
        "postfix_server_maps_host.x y: the map name is not a file name (letters, digits, _ . + -)",
        "postfix_server_maps_host.x y: z is not a dictionary of options (%s)" % KNOWN,
        "postfix_server_maps_host.b: None is not a dictionary of options (%s)" % KNOWN]


def test_unknown_keys_types_states_booleans_modes_and_entries():
    assert problems(maps={"t": {"typ": "hash", "type": "btree", "state": "gone", "exclusive": "maybe",
                                "secret": 2, "mode": 416, "entries": ["a"]},
                          "u": {"mode": "rw-r-----"}}) == [
        "postfix_server_maps.t: unknown key typ (known: %s)" % KNOWN,
        "postfix_server_maps.t.type: btree is not a table type the role writes"
        " (hash, cdb, lmdb, regexp, pcre, cidr, texthash, pgsql, mysql, ldap, sqlite)",
        "postfix_server_maps.t.state: gone is not present or absent",
        "postfix_server_maps.t.exclusive: maybe is not a boolean",
        "postfix_server_maps.t.secret: 2 is not a boolean",
        "postfix_server_maps.t.mode: 416 is not an octal mode in quotes, such as '0640'",
        "postfix_server_maps.t.entries: must be a dictionary (key -> value), got list",
        "postfix_server_maps.u.mode: rw-r----- is not an octal mode in quotes, such as '0640'"]


def test_regexp_pcre_and_cidr_keys():
    assert problems(maps={
        "hc": {"type": "regexp", "entries": {"^Subject: x": "REJECT", "/x/q": "REJECT", "/x/s": "WARN",
                                             "if /x/": "y", "/ok/": "OK"}},
        "pc": {"type": "pcre", "entries": {"aXb": "REJECT", "/x/sAq": "REJECT"}},
        "net": {"type": "cidr", "entries": {"10.0.0.1/8": "OK", "example.net": "OK", "10.1.0.0/16": "OK"}},
    }) == [
        "postfix_server_maps.hc.entries: ^Subject: x is not a pattern of the form /pattern/flags"
        " (regexp_table(5)); if/endif blocks are not supported in entries",
        "postfix_server_maps.hc.entries: /x/q has flags q that regexp_table(5) does not know (i, m, x)",
        "postfix_server_maps.hc.entries: /x/s has flags s that regexp_table(5) does not know (i, m, x)",
        "postfix_server_maps.hc.entries: if /x/ is not a pattern of the form /pattern/flags"
        " (regexp_table(5)); if/endif blocks are not supported in entries",
        "postfix_server_maps.pc.entries: aXb is not a pattern of the form /pattern/flags"
        " (pcre_table(5)); if/endif blocks are not supported in entries",
        "postfix_server_maps.pc.entries: /x/sAq has flags q that pcre_table(5) does not know"
        " (i, m, s, x, A, E, U, X)",
        "postfix_server_maps.net.entries: 10.0.0.1/8 is not a network in address or address/prefix form"
        " (cidr_table(5)): 10.0.0.1/8 has host bits set",
        "postfix_server_maps.net.entries: example.net is not a network in address or address/prefix form"
        " (cidr_table(5)): 'example.net' does not appear to be an IPv4 or IPv6 network"]


def test_keys_and_values_the_source_cannot_hold():
    assert problems(maps={"t": {"entries": {"a b": "x", "#c": "x", "d": "two\nlines", "e\nf": "x", "g": None,
                                            "h": "", "i": {"j": "k"}, " ": "x", "l": ["m", "n\r"]}}},
                    maps_host={"t": {"entries": {"a": None}}}) == [
        "postfix_server_maps.t.entries: a b contains white space or starts with #; a hash key is one word"
        " (postmap(1))",
        "postfix_server_maps.t.entries: #c contains white space or starts with #; a hash key is one word"
        " (postmap(1))",
        "postfix_server_maps.t.entries: d: the value contains a line break",
        "postfix_server_maps.t.entries: e\nf contains a line break",
        "postfix_server_maps.t.entries: g has no value",
        "postfix_server_maps.t.entries: h has an empty value",
        "postfix_server_maps.t.entries: i: the value is not a string or a list of strings",
        "postfix_server_maps.t.entries: an empty key",
        "postfix_server_maps.t.entries: l: the value contains a line break"]


def test_entries_are_checked_with_the_type_that_takes_effect():
    # The host makes the fleet's map a regexp table: the fleet's keys must be patterns then.
    assert problems(maps={"hc": {"entries": {"subject": "REJECT"}}},
                    maps_host={"hc": {"type": "regexp", "entries": {"/x/": "WARN"}}}) == [
        "postfix_server_maps.hc.entries: subject is not a pattern of the form /pattern/flags"
        " (regexp_table(5)); if/endif blocks are not supported in entries"]


def test_paths_outside_the_config_dir_or_shared():
    note = "; the role keeps its tables there, where postfix check and the reload pre-flight look"
    assert problems(config_dir="/etc/postfix", virtual_alias_map="/etc/postfix/virtual",
                    aliases_file="/etc/aliases",
                    maps={"a": {"path": "/tmp/a"}, "b": {"path": "/etc/postfix/../shadow"},
                          "c": {"path": "/etc/postfix/virtual"}, "d": {"path": "/etc/postfix/a"},
                          "e": {"path": "/etc/postfix/sub/"}, "f": {"path": "/etc/postfix/main.cf"}},
                    maps_host={"a": {"path": "/etc/postfix/a"}}) == [
        "postfix_server_maps.a.path: /tmp/a is not a file under postfix_server_config_dir (/etc/postfix/)" + note,
        "postfix_server_maps.b.path: /etc/postfix/../shadow is not a file under postfix_server_config_dir"
        " (/etc/postfix/)" + note,
        "postfix_server_maps.e.path: /etc/postfix/sub/ is not a file under postfix_server_config_dir"
        " (/etc/postfix/)" + note,
        "postfix_server_maps.c.path: /etc/postfix/virtual is the file of postfix_server_virtual_alias_map",
        "postfix_server_maps.d.path: /etc/postfix/a is also the path of postfix_server_maps_host.a",
        "postfix_server_maps.f.path: /etc/postfix/main.cf is the file of postfix_server_config_dir"]


def test_parameters_unknown_owned_by_the_role_or_also_in_main_cf():
    assert problems(main_cf={"transport_maps": "hash:/etc/postfix/transport"},
                    main_cf_host={"header_checks": "regexp:/etc/postfix/hc"},
                    maps={"a": {"parameter": "transport_map"}, "b": {"parameter": "virtual_alias_domains"},
                          "c": {"parameter": "smtpd_recipient_restrictions"},
                          "t": {"parameter": "transport_maps"}, "hc": {"type": "regexp", "parameter": "header_checks"}}
                    ) == [
        "postfix_server_maps.a.parameter: transport_map is not a main.cf parameter that takes lookup tables"
        " (a *_maps or *_checks parameter of postconf(5)); did you mean transport_maps?; for an access map in"
        " smtpd_*_restrictions leave parameter out and name the map in postfix_server_main_cf",
        "postfix_server_maps.b.parameter: virtual_alias_domains is set by the role (from"
        " postfix_server_virtual_alias_domains and postfix_server_table_type); choose another parameter",
        "postfix_server_maps.c.parameter: smtpd_recipient_restrictions is not a main.cf parameter that takes"
        " lookup tables (a *_maps or *_checks parameter of postconf(5)); for an access map in"
        " smtpd_*_restrictions leave parameter out and name the map in postfix_server_main_cf",
        "postfix_server_maps.hc.parameter: header_checks is also set in postfix_server_main_cf_host; set it in"
        " one place (the role writes header_checks = regexp:/etc/postfix/hc)",
        "postfix_server_maps.t.parameter: transport_maps is also set in postfix_server_main_cf; set it in one"
        " place (the role writes transport_maps = hash:/etc/postfix/t)"]


def test_a_secret_map_readable_by_others():
    assert problems(maps={"sasl": {"parameter": "smtp_sasl_password_maps", "mode": "0640"},
                          "ok": {"parameter": "smtp_sasl_password_maps", "mode": "0644", "secret": False}},
                    maps_host={"other": {"secret": True, "mode": "604"}}) == [
        "postfix_server_maps_host.other.mode: 604 lets others than the owner read a secret map; secret maps are 0600",
        "postfix_server_maps.sasl.mode: 0640 lets others than the owner read a secret map; secret maps are 0600"]


def test_an_absent_map_main_cf_still_names():
    assert problems(config_dir="/etc/postfix",
                    main_cf={"smtpd_recipient_restrictions": ["permit_mynetworks",
                                                              "check_recipient_access hash:/etc/postfix/access"],
                             "smtpd_sender_restrictions": "check_sender_access hash:/etc/postfix/access2"},
                    maps={"access": {"state": "absent"}, "acc": {"state": "absent"}}) == [
        "postfix_server_maps.access.state: absent deletes /etc/postfix/access, but"
        " postfix_server_main_cf.smtpd_recipient_restrictions still names it; remove it there too"]


def test_type_the_host_lacks():
    maps = server_maps({"p": {"type": "pcre"}, "c": {"type": "cidr"}, "gone": {"type": "pcre", "state": "absent"}},
                       {"l": {"type": "lmdb"}})
    assert server_map_type_problems(maps, ["hash", "cidr", "regexp"]) == [
        "postfix_server_maps_host.l.type: this Postfix has no lmdb tables (postconf -m: cidr, hash, regexp);"
        " install postfix-lmdb (postfix_server_install: true does)",
        "postfix_server_maps.p.type: this Postfix has no pcre tables (postconf -m: cidr, hash, regexp);"
        " install postfix-pcre (postfix_server_install: true does)"]
    assert server_map_type_problems(maps, ["hash", "cidr", "pcre", "lmdb"]) == []
    assert server_map_type_problems(server_maps({"t": {"type": "texthash"}}), ["hash"]) == [
        "postfix_server_maps.t.type: this Postfix has no texthash tables (postconf -m: hash)"]


def test_master_cf_problems():
    assert problems(master_cf={"name": "x"},
                    master_cf_host=["smtp", {"name": "submission"}, {"name": "s", "type": "inet", "cmd": "smtpd"},
                                    {"name": "s", "type": "inet", "options": ["a=b"]},
                                    {"name": "t", "type": "unix", "args": ["a", "b\nc"]},
                                    {"name": "u", "type": "unix", "options": {"x": "1\n2"}}]) == [
        "postfix_server_master_cf: must be a list of services, got dict",
        "postfix_server_master_cf_host[0]: smtp is not a service (a dictionary with name and type)",
        "postfix_server_master_cf_host[1]: a service needs name and type (such as submission and inet)",
        "postfix_server_master_cf_host[2] (s/inet): unknown key cmd (known: name, type, state, private, unpriv,"
        " chroot, wakeup, maxproc, command, args, options, options_exclusive)",
        "postfix_server_master_cf_host[3] (s/inet): s/inet is also postfix_server_master_cf_host[2];"
        " declare a service once per list",
        "postfix_server_master_cf_host[3] (s/inet).options: must be a dictionary (parameter -> value)",
        "postfix_server_master_cf_host[4] (t/unix): a value contains a line break",
        "postfix_server_master_cf_host[5] (u/unix): a value contains a line break"]


def test_size_one_map_of_many_entries_is_linear():
    entries = {"user%d@example.tld" % i: "other%d@example.net" % i for i in range(50000)}
    assert problems(maps={"canonical": {"parameter": "canonical_maps", "entries": entries}}) == []
    assert len(server_maps({"canonical": {"entries": entries}}, {"canonical": {"entries": {"user1@example.tld": None}}})
               ["canonical"]["entries"]) == 49999
