"""postmap's expect: several tables checked in one run against declared values, as the server
role's verify step uses it. Local indexes compiled by the module and read back; a network table
(sqlite: no server needed) asked through the host's own postmap -q, including the probe that
makes a broken client fail the task."""

from __future__ import annotations

import json
import os

from module_runner import run_module
from sqlite_db import alias_database

SECRET = "Relay-Pw-0c41"


def table(conf, name, text):
    path = os.path.join(conf, name)
    with open(path, "w") as f:
        f.write(text)
    run_module("postmap", dict(path=path, type="hash", config_dir=conf))
    return path


def test_mismatches_named_secret_values_never_shown(conf):
    virtual = table(conf, "virtual", "info@example.tld alice@example.net\nsales@example.tld a@x.test, b@x.test\n")
    sasl = table(conf, "sasl_passwd", "[relay.test]:587 user:%s\n" % SECRET)
    res = run_module("postmap", dict(config_dir=conf, expect=[
        dict(path=virtual, type="hash", entries={"info@example.tld": "alice@example.net",
                                                 "sales@example.tld": ["a@x.test", "b@x.test"],
                                                 "Gone@example.tld": "x@x.test"}),
        dict(label="sasl", path=sasl, type="hash", secret_entries={"[relay.test]:587": "user:other",
                                                                   "[gone.test]:587": "user:" + SECRET}),
    ]))
    assert res["changed"] is False
    assert res["checked"] == [dict(label="hash:%s" % virtual, reference="hash:%s" % virtual, keys=3),
                              dict(label="sasl", reference="hash:%s" % sasl, keys=2)]
    assert res["mismatches"] == [
        "hash:%s: Gone@example.tld has no entry (expected x@x.test)" % virtual,
        "sasl: [relay.test]:587 resolves to another value (secret map)",
        "sasl: [gone.test]:587 has no entry"]
    assert SECRET not in json.dumps(res)
    # The same expectations as text (KEY<TAB>VALUE lines): the same answer.
    text = "info@example.tld\talice@example.net\nsales@example.tld\ta@x.test, b@x.test\nGone@example.tld\tx@x.test\n"
    again = run_module("postmap", dict(config_dir=conf, expect=[dict(path=virtual, type="hash", entries_text=text)]))
    assert again["checked"] == res["checked"][:1] and again["mismatches"] == res["mismatches"][:1]
    bad = run_module("postmap", dict(config_dir=conf, expect=[dict(label="v", path=virtual, entries_text="k v\n")]),
                     fail_ok=True)
    assert bad["failed"] and bad["msg"] == "v: entries as text, line 1: expected KEY<TAB>VALUE", bad


def test_network_table_expect_and_probe(conf, tmp_path):
    db = alias_database(tmp_path / "aliases.sqlite", [("info@lite.test", "bob@mbox.test")])
    client = os.path.join(conf, "sqlite-virtual.cf")
    with open(client, "w") as f:
        f.write("dbpath = %s\nquery = SELECT destination FROM virtual WHERE source='%%s'\n" % db)
    os.utime(client, (1, 1))   # settled: Postfix waits for a client file changed in the last second
    reference = "sqlite:" + client
    res = run_module("postmap", dict(config_dir=conf, expect=[
        dict(table=reference, entries={"info@lite.test": "bob@mbox.test", "new@lite.test": "carol@mbox.test"}),
        dict(table=reference)]))
    assert res["mismatches"] == ["%s: new@lite.test has no entry (expected carol@mbox.test)" % reference]
    assert [c["keys"] for c in res["checked"]] == [2, 0]

    # A broken query: the probe alone makes the task fail with SQLite's own words.
    with open(client, "w") as f:
        f.write("dbpath = %s\nquery = SELECT destination FROM no_such_table WHERE source='%%s'\n" % db)
    os.utime(client, (1, 1))
    res = run_module("postmap", dict(config_dir=conf, expect=[dict(label="lite", table=reference)]), fail_ok=True)
    assert res["failed"] and res["msg"].startswith("lite: %s: " % reference) and "no such table: no_such_table" in res["msg"], res
