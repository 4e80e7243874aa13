"""The config module: tables, /etc/aliases, main.cf and master.cf in one run, read back by real
Postfix (postmap -q / postalias -q for every key, postconf -n, postconf -M), idempotent to the
mtime, check mode writing nothing, every refusal before any file changes."""

import os
import stat
import subprocess

from module_runner import run_module
from postfix_oracle import postmap_query

VIRTUAL = {"alias%d@example.tld" % i: ["user%d@example.net" % i, "copy%d@example.org" % (i % 7)]
           for i in range(2000)}
VIRTUAL["info@example.tld"] = "alice@example.net"
TRANSPORT = {"example.net": "smtp:[mail.example.net]", "partner.test": "partner:[10.0.0.5]"}
HEADER_CHECKS = {"/^Subject: .*viagra/": "REJECT no spam here", "/^X-Mailer: bulk/": "DISCARD"}
ALIASES = {"postmaster": "root", "root": "admin@example.tld", "abuse": ["root", "sec@example.tld"]}


def args(conf, **over):
    a = dict(
        config_dir=conf,
        tables=[
            dict(path=conf + "/virtual", type="hash", entries=VIRTUAL, exclusive=True),
            dict(path=conf + "/transport", type="lmdb", entries=TRANSPORT, exclusive=True, mode="0640"),
            dict(path=conf + "/header_checks", type="regexp", entries=HEADER_CHECKS, exclusive=True),
            dict(path=conf + "/relay_recipients", type="cdb"),
        ],
        aliases=dict(path=conf + "/aliases", type="hash", entries=ALIASES, exclusive=True),
        params=dict(virtual_alias_domains="example.tld", virtual_alias_maps="hash:%s/virtual" % conf,
                    transport_maps="lmdb:%s/transport" % conf, header_checks="regexp:%s/header_checks" % conf,
                    alias_maps="hash:%s/aliases" % conf, alias_database="hash:%s/aliases" % conf),
        services=[dict(name="partner", type="unix", private="-", chroot="n", command="smtp",
                       options={"smtp_helo_name": "mx.example.tld"})],
    )
    a.update(over)
    return a


def files(conf):
    """Every file in the config dir with its mtime and mode (what 'nothing changed' means)."""
    out = {}
    for name in sorted(os.listdir(conf)):
        st = os.stat(os.path.join(conf, name))
        out[name] = (st.st_mtime_ns, stat.S_IMODE(st.st_mode), st.st_size)
    return out


def postconf(conf, *flags):
    return subprocess.run(["postconf", "-c", conf] + list(flags), capture_output=True, text=True,
                          check=True).stdout


def expected(entries):
    return dict((k.encode(), (", ".join(v) if isinstance(v, list) else v).encode()) for k, v in entries.items())


def test_one_run_sets_every_file_real_postfix_reads_them(conf):
    res = run_module("config", args(conf))
    assert res["changed"] and res["reload_required"] and not res["restart_required"]
    assert sorted(res["main_cf"]["changed_params"]) == sorted(args(conf)["params"])
    # Every key, through real postmap / postalias.
    assert postmap_query(conf, "hash:%s/virtual" % conf, list(expected(VIRTUAL))) == expected(VIRTUAL)
    assert postmap_query(conf, "lmdb:%s/transport" % conf, list(expected(TRANSPORT))) == expected(TRANSPORT)
    got = subprocess.run(["postalias", "-c", conf, "-q", "-", "hash:%s/aliases" % conf], check=True,
                         input=b"".join(k + b"\n" for k in expected(ALIASES)), capture_output=True).stdout
    # postalias -q - prints each found name as "name:<TAB>value".
    assert dict(line.split(b":\t", 1) for line in got.splitlines()) == expected(ALIASES)
    assert postmap_query(conf, "regexp:%s/header_checks" % conf, [b"Subject: buy viagra now"]) == {
        b"Subject: buy viagra now": b"REJECT no spam here"}
    # A declared table without entries: an empty source and index (postmap -s lists nothing).
    assert os.path.getsize(conf + "/relay_recipients") == 0 and os.path.exists(conf + "/relay_recipients.cdb")
    n = postconf(conf, "-n")
    for name, value in args(conf)["params"].items():
        assert "%s = %s\n" % (name, value) in n
    assert "smtp_helo_name=mx.example.tld" in postconf(conf, "-M", "partner/unix")
    # The mode asked for: source and index.
    assert stat.S_IMODE(os.stat(conf + "/transport").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(conf + "/transport.lmdb").st_mode) == 0o640
    # main.cf written last: it names indexes that existed before it.
    assert os.stat(conf + "/main.cf").st_mtime_ns >= os.stat(conf + "/virtual.db").st_mtime_ns
    # One diff per changed file.
    headers = [d["after_header"] for d in res["diff"]]
    for name in ("virtual", "transport", "header_checks", "aliases", "main.cf", "master.cf"):
        assert conf + "/" + name in headers, headers

    before = files(conf)
    again = run_module("config", args(conf))
    assert not again["changed"] and not again["reload_required"] and "diff" not in again
    assert files(conf) == before


def test_check_mode_previews_and_writes_nothing(conf):
    run_module("config", args(conf))
    before = files(conf)
    changed = dict(VIRTUAL, **{"info@example.tld": "bob@example.net"})
    a = args(conf, params=dict(args(conf)["params"], smtpd_banner="$myhostname ESMTP"))
    a["tables"][0]["entries"] = changed
    res = run_module("config", a, check_mode=True)
    assert res["changed"] and res["reload_required"]
    text = "\n".join(d["after"] for d in res["diff"])
    assert "info@example.tld\tbob@example.net" in text and "smtpd_banner = $myhostname ESMTP" in text
    assert files(conf) == before


def test_a_refusal_anywhere_changes_no_file(conf):
    run_module("config", args(conf))
    before = files(conf)
    # A changed virtual map, and a bad regular expression in a later table: the host's Postfix
    # refuses the pattern; the virtual map must not have been written either.
    a = args(conf)
    a["tables"][0]["entries"] = dict(VIRTUAL, **{"new@example.tld": "x@example.net"})
    a["tables"][2]["entries"] = dict(HEADER_CHECKS, **{"/^Subject: (unbalanced/": "REJECT"})
    res = run_module("config", a, fail_ok=True)
    assert res.get("failed") and "header_checks" in res["msg"], res
    assert files(conf) == before
    # A domain in two address classes (main.cf check) with a changed table: nothing written.
    a = args(conf, params=dict(args(conf)["params"], mydestination="example.tld, localhost"))
    a["tables"][0]["entries"] = dict(VIRTUAL, **{"new@example.tld": "x@example.net"})
    res = run_module("config", a, fail_ok=True)
    assert res.get("failed") and "example.tld" in res["msg"], res
    assert files(conf) == before
    # An aliases value that would inject a line, and a bad service field.
    a = args(conf)
    a["aliases"]["entries"] = dict(ALIASES, evil="root\nroot: /tmp/x")
    assert run_module("config", a, fail_ok=True).get("failed")
    a = args(conf)
    a["services"] = [dict(name="partner", type="unix", chroot="maybe", command="smtp")]
    res = run_module("config", a, fail_ok=True)
    assert res.get("failed"), res
    assert files(conf) == before


def test_absent_table_removed_after_main_cf_stops_naming_it(conf):
    run_module("config", args(conf))
    a = args(conf, params=dict((k, v) for k, v in args(conf)["params"].items() if k != "transport_maps"),
             params_absent=["transport_maps"])
    a["tables"][1]["state"] = "absent"
    res = run_module("config", a)
    assert sorted(res["removed_files"]) == [conf + "/transport", conf + "/transport.lmdb"]
    assert res["main_cf"]["removed_params"] == ["transport_maps"] and res["reload_required"]
    assert "transport_maps" not in postconf(conf, "-n")
    assert not os.path.exists(conf + "/transport")
    again = run_module("config", a)
    assert not again["changed"] and again["removed_files"] == []


def test_secret_table_values_never_in_the_result(conf):
    secret = "Pw-Delta-51zq"
    a = dict(config_dir=conf, tables=[dict(path=conf + "/sasl_passwd", type="hash",
                                           secret_entries={"[smtp.example.net]:587": "user:" + secret})])
    res = run_module("config", a)
    assert secret not in repr(res)
    assert stat.S_IMODE(os.stat(conf + "/sasl_passwd").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(conf + "/sasl_passwd.db").st_mode) == 0o600
    assert postmap_query(conf, "hash:%s/sasl_passwd" % conf, [b"[smtp.example.net]:587"]) == {
        b"[smtp.example.net]:587": ("user:" + secret).encode()}


def test_tables_compiled_with_the_main_cf_this_run_writes(conf):
    """postalias records myhostname (YP_MASTER_NAME) and smtputf8_enable decides key folding: a run
    that changes them with the aliases compiles with the new values, and the next run has nothing
    to rebuild."""
    a = dict(config_dir=conf, aliases=dict(path=conf + "/aliases", type="lmdb", entries=ALIASES),
             params=dict(myhostname="new-name.example.tld", alias_maps="lmdb:%s/aliases" % conf,
                         alias_database="lmdb:%s/aliases" % conf))
    assert run_module("config", a)["changed"]
    before = files(conf)
    again = run_module("config", a)
    assert not again["changed"], again["aliases"]
    assert files(conf) == before
    # postalias stores YP_MASTER_NAME without the NUL its lookups add: read it from the dump.
    dump = subprocess.run(["postalias", "-c", conf, "-s", "lmdb:%s/aliases" % conf], capture_output=True,
                          text=True, check=True).stdout
    assert "YP_MASTER_NAME:\tnew-name.example.tld" in dump.splitlines(), dump


def test_client_files_written_whole_proxy_read_maps_only_when_needed(conf):
    """A database table's client file (lookup_client's engine, whole: a parameter not given is
    removed), check mode writing nothing, proxy_read_maps left alone while its default allows the
    table (proxy:-prefixed entries of the expanded value, proxymap.c) and extended otherwise."""
    client = conf + "/virtual-sql.cf"
    reference = "proxy:pgsql:" + client
    table = dict(path=client, type="pgsql", params={"hosts": "db.test", "user": "postfix", "dbname": "mail",
                                                    "query": "SELECT goto FROM alias WHERE address = '%s'"},
                 secret_params={"password": "Sql-Pw-9d1e"})
    a = dict(config_dir=conf, tables=[table], params={"virtual_alias_maps": reference},
             proxy_read_maps=[reference])
    before = files(conf)
    res = run_module("config", a, check_mode=True)
    assert res["changed"] and res["reload_required"] and files(conf) == before
    res = run_module("config", a)
    assert res["changed"] and res["tables"][0]["changed_params"] == ["dbname", "hosts", "password", "query", "user"]
    assert "Sql-Pw-9d1e" not in str(res) and "password = <hidden, changed>" in res["diff"][0]["after"]
    # $virtual_alias_maps is in the default proxy_read_maps: nothing added.
    assert "proxy_read_maps" not in postconf(conf, "-n")
    assert stat.S_IMODE(os.stat(client).st_mode) == 0o640
    assert run_module("config", a)["changed"] is False

    # Whole: a parameter no longer given is removed; a narrow proxy_read_maps is extended.
    with open(client, "a") as f:
        f.write("expansion_limit = 3\n")
    a["params"]["proxy_read_maps"] = "$local_recipient_maps"
    res = run_module("config", a)
    assert res["tables"][0]["changed_params"] == ["expansion_limit"]
    assert "expansion_limit" not in open(client).read()
    assert postconf(conf, "-h", "proxy_read_maps").strip() == "$local_recipient_maps " + reference
    assert run_module("config", a)["changed"] is False


def test_a_domain_moved_between_address_classes_in_one_edit(conf):
    """virtual_mailbox_domains removed and virtual_alias_domains set in the same run: main.cf is
    judged and written as one edit, never refused halfway for a domain in two classes."""
    run_module("config", dict(config_dir=conf, params={"virtual_mailbox_domains": "move.test"}))
    res = run_module("config", dict(config_dir=conf, params={"virtual_alias_domains": "move.test"},
                                    params_absent=["virtual_mailbox_domains"]))
    assert res["main_cf"]["changed_params"] == ["virtual_alias_domains"]
    assert res["main_cf"]["removed_params"] == ["virtual_mailbox_domains"]
    assert len([d for d in res["diff"] if d["before_header"].endswith("main.cf")]) == 1
    settings = postconf(conf, "-n")
    assert "virtual_alias_domains = move.test" in settings and "virtual_mailbox_domains" not in settings
    # Both in one class at once is still refused, naming the domain, and nothing is written.
    before = files(conf)
    res = run_module("config", dict(config_dir=conf, params={"virtual_mailbox_domains": "move.test"}), fail_ok=True)
    assert res["failed"] and "move.test" in res["msg"], res
    assert files(conf) == before


def as_text(entries):
    return "".join("%s\t%s\n" % (k, ", ".join(v) if isinstance(v, list) else v) for k, v in entries.items())


def test_entries_as_text_are_the_same_entries(conf):
    """entries_text (KEY<TAB>VALUE lines, how the server role sends its maps) writes what entries
    writes: after a run with entries, the same state as text changes nothing, to the mtime; a
    changed key as text is read back by real postmap; a malformed or injecting text refuses the
    whole run before any file changes."""
    run_module("config", args(conf))
    before = files(conf)
    a = args(conf)
    a["tables"][0] = dict(a["tables"][0], entries_text=as_text(VIRTUAL))
    del a["tables"][0]["entries"]
    a["aliases"] = dict(a["aliases"], entries_text=as_text(ALIASES))
    del a["aliases"]["entries"]
    res = run_module("config", a)
    assert not res["changed"], res
    assert files(conf) == before

    changed = dict(VIRTUAL, **{"info@example.tld": "bob@example.net"})
    a["tables"][0]["entries_text"] = as_text(changed)
    assert run_module("config", a)["changed"]
    assert postmap_query(conf, "hash:%s/virtual" % conf, list(expected(changed))) == expected(changed)
    before = files(conf)

    for bad, why in (("info@example.tld bob@example.net\n", "entries as text, line 1: expected KEY<TAB>VALUE"),
                     ("a@example.tld\tx\na@example.tld\ty\n", "entries as text, line 2: a@example.tld given twice")):
        b = dict(a, tables=[dict(a["tables"][0], entries_text=bad)] + a["tables"][1:])
        res = run_module("config", b, fail_ok=True)
        assert res.get("failed") and why in res["msg"], res
    # A value carrying a carriage return is checked as in entries: refused.
    b = dict(a, aliases=dict(a["aliases"], entries_text="evil\troot\rroot: /tmp/x\n"))
    assert run_module("config", b, fail_ok=True).get("failed")
    # entries and entries_text together: refused by the argument spec.
    b = dict(a, tables=[dict(a["tables"][0], entries=VIRTUAL)] + a["tables"][1:])
    assert "mutually exclusive" in run_module("config", b, fail_ok=True)["msg"]
    assert files(conf) == before


def test_expect_unmet_changes_nothing_and_says_why(conf):
    """Each expectation of the host checked against this real Postfix (default_database_type, postconf
    -m, tables main.cf names): any that does not hold leaves every file as it was (mtime included),
    does not fail, and says what did not hold; the facts come back either way."""
    with open(conf + "/main.cf", "a") as f:
        f.write("canonical_maps = hash:%s/canonical\n" % conf)
    os.utime(conf + "/main.cf", (1, 1))
    default_type = postconf(conf, "-dh", "default_database_type").strip()
    other = "lmdb" if default_type != "lmdb" else "cdb"
    before = files(conf)
    res = run_module("config", args(conf, expect=dict(
        default_database_type=other, map_types=["hash", "no-such-type"], no_tables_of_type=["hash", "btree"])))
    assert not res["changed"] and not res["ready"] and not res["reload_required"], res
    assert res["unmet"][:2] == ["default_database_type is %s, not %s" % (default_type, other),
                                "table types not in postconf -m: no-such-type"], res
    # Every hash table Postfix would open, the defaults' too (alias_maps of postconf -d).
    assert res["unmet"][2].startswith("main.cf or master.cf names ") and len(res["unmet"]) == 3, res
    assert "hash:%s/canonical" % conf in res["unmet"][2].split(" names ")[1].split(", "), res
    assert files(conf) == before
    assert res["facts"]["default_database_type"] == default_type and "hash" in res["facts"]["map_types"]
    assert "tables" not in res and "main_cf" not in res

    # In check mode the same answer.
    res = run_module("config", args(conf, expect=dict(default_database_type=other)), check_mode=True)
    assert res["unmet"] == ["default_database_type is %s, not %s" % (default_type, other)], res
    assert files(conf) == before


def test_expect_met_writes_and_returns_the_facts_postfix_info_gives(conf):
    """All expectations hold: the run writes as without them (real postmap answers) and returns, read
    before the write, the same facts as mailops.postfix.postfix_info but its postconf -d defaults
    (every other key, the same values); the second run changes nothing."""
    info = run_module("postfix_info", dict(config_dir=conf))
    expect = dict(default_database_type=info["default_database_type"], map_types=["hash", "lmdb", "cdb", "regexp"],
                  python_lmdb=True, no_tables_of_type=["btree"])
    res = run_module("config", args(conf, expect=expect))
    assert res["ready"] and res["unmet"] == [] and res["changed"], res
    assert postmap_query(conf, "hash:%s/virtual" % conf, list(expected(VIRTUAL))) == expected(VIRTUAL)
    assert "defaults" not in res["facts"] and len(info["defaults"]) > 500, sorted(res["facts"])
    assert sorted(res["facts"]) == sorted(set(info) - {"defaults", "changed", "invocation"}), sorted(res["facts"])
    for key in ("mail_version", "default_database_type", "map_types", "tables", "host", "service", "python_lmdb",
                "parameters", "running", "warnings_main_cf"):
        assert res["facts"][key] == info[key], key
    before = files(conf)
    res = run_module("config", args(conf, expect=expect))
    assert res["ready"] and not res["changed"], res
    # The facts of this run were read before it: they name the tables the first run added.
    assert "%s/virtual" % conf in [t["path"] for t in res["facts"]["tables"]]
    assert files(conf) == before


def test_expect_postfix_unreadable_is_unmet_not_a_failure(conf):
    """A main.cf Postfix cannot parse: not ready (the role then installs or reports), with why,
    and nothing written; without expect the same run fails naming the line."""
    with open(conf + "/main.cf", "w") as f:
        f.write("this line has no equals sign\nmyhostname = mx.example.tld\n")
    os.utime(conf + "/main.cf", (1, 1))
    before = files(conf)
    res = run_module("config", args(conf, expect={}))
    assert not res["ready"] and not res["changed"], res
    assert len(res["unmet"]) == 1 and res["unmet"][0].startswith("Postfix cannot be read: %s/main.cf:1: " % conf), res
    assert "mail_version" not in res["facts"] and res["facts"]["host"]["os_family"], res
    assert files(conf) == before
    res = run_module("config", args(conf), fail_ok=True)
    assert res.get("failed") and "%s/main.cf:1: " % conf in res["msg"], res
    assert files(conf) == before
