"""The server role with a table in a database: a postfix_server_maps map of type pgsql joins the
role's virtual_alias_maps through proxymap(8). The role writes only the client file (0640
root:postfix, the password never shown), extends a narrow proxy_read_maps, leaves its own virtual
file out while inventory declares no alias, and the verify entry point asks the database through
the host's postmap -q. Oracles: a private PostgreSQL cluster with PostfixAdmin's alias table, real
postmap -q through proxymap, the expansion of a message by cleanup(8)."""

from __future__ import annotations

import grp
import os
import stat

from postfix_instance import MAILBOX_DOMAIN
from role_runner import ROLE_TASKS_PLAYBOOK, VERIFY_PLAYBOOK, role_paths, run_playbooks
from slapd_instance import LDAP_DOMAIN, ldap_params, people_ldif

SQL_DOMAIN = "sql.test"
FILE_DOMAIN = "file.test"
QUERY = "SELECT goto FROM alias WHERE address = '%s' AND active"
ALIASES = {"info@%s" % SQL_DOMAIN: "bob@%s" % MAILBOX_DOMAIN,
           "sales@%s" % SQL_DOMAIN: "bob@%s,carol@%s" % (MAILBOX_DOMAIN, MAILBOX_DOMAIN)}


def postfixadmin_alias_table(pg):
    """PostfixAdmin's alias table (address, goto, domain, active), owned by the test's login."""
    rows = ", ".join("('%s', '%s', '%s', true)" % (a, g, SQL_DOMAIN) for a, g in ALIASES.items())
    pg.psql("CREATE TABLE alias (address varchar(255) PRIMARY KEY, goto text NOT NULL,"
            " domain varchar(255) NOT NULL, created timestamp NOT NULL DEFAULT now(),"
            " modified timestamp NOT NULL DEFAULT now(), active boolean NOT NULL DEFAULT true);\n"
            "INSERT INTO alias (address, goto, domain, active) VALUES %s,"
            " ('old@%s', 'bob@%s', '%s', false);\n"
            "ALTER TABLE alias OWNER TO %s;" % (rows, SQL_DOMAIN, MAILBOX_DOMAIN, SQL_DOMAIN, pg.user))


def inventory(pf, pg, password=None, expect=None, **extra):
    client = {"hosts": pg.hostport, "user": pg.user, "dbname": pg.dbname, "query": QUERY}
    variables = dict(role_paths(pf), postfix_server_install=False,
                     postfix_server_virtual_alias_domains=[{"domain": SQL_DOMAIN}],
                     postfix_server_maps={"virtual-sql": {
                         "type": "pgsql", "parameter": "virtual_alias_maps", "client": client,
                         "client_secret": {"password": password or pg.password},
                         "expect": ALIASES if expect is None else expect}})
    variables.update(extra)
    return variables


def settle(path):
    """Postfix re-reads a client file modified within the last second until it settles
    (dict_load_file_xt(), util/dict.c): date it back so that a lookup does not wait."""
    st = os.stat(path)
    os.utime(path, (st.st_atime, st.st_mtime - 10))


def answers(pf, reference, keys):
    proc = pf.run("postmap", "-q", "-", reference, input="".join(k + "\n" for k in keys), check=False)
    assert "fatal" not in proc.stderr, proc.stderr
    return dict(line.split("\t", 1) for line in proc.stdout.splitlines())


def test_pgsql_map_joins_virtual_alias_maps_through_proxymap(postgres_instance, postfix_instance):
    pg, pf = postgres_instance, postfix_instance
    postfixadmin_alias_table(pg)
    # A narrow proxy_read_maps, as a hardened host may have: the role must extend it.
    pf.write_main(proxy_read_maps="$local_recipient_maps")
    pf.start()
    conf = str(pf.config_dir)
    client_file = conf + "/virtual-sql.cf"
    reference = "proxy:pgsql:" + client_file

    before_reload = pf.children()
    run = run_playbooks(pf, inventory(pf, pg), [ROLE_TASKS_PLAYBOOK, VERIFY_PLAYBOOK], "-v", "--diff")
    assert run.rc == 0, run.out
    pf.wait_for_exit(before_reload)
    assert pg.password not in run.out
    assert "password = <hidden, changed>" in run.out
    settings = dict(line.split(" = ", 1) for line in pf.postconf("-n").splitlines())
    # The database alone holds the aliases: no virtual file is named (nor written).
    assert settings["virtual_alias_maps"] == reference
    assert settings["virtual_alias_domains"] == SQL_DOMAIN
    assert settings["proxy_read_maps"] == "$local_recipient_maps " + reference
    assert not os.path.exists(conf + "/virtual")
    st = os.stat(client_file)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, grp.getgrnam("postfix").gr_gid)
    assert ("3 key(s) answer as declared (%s/aliases: 1, postfix_server_maps.virtual-sql (%s): 2)"
            % (conf, reference)) in run.out, run.out

    # Real Postfix through proxymap: every row, the inactive one not; SMTP.
    settle(client_file)
    assert answers(pf, reference, list(ALIASES) + ["old@%s" % SQL_DOMAIN]) == ALIASES
    code, reply = pf.rcpt_code("nobody@%s" % SQL_DOMAIN)
    assert code == 550 and "User unknown in virtual alias table" in reply, (code, reply)
    assert pf.rcpt_code("info@%s" % SQL_DOMAIN)[0] == 250
    # cleanup(8) expands the alias through the database (the instance's mail leaves through
    # its error transport: the expansion is what the log shows).
    pf.send("sales@%s" % SQL_DOMAIN)
    for user in ("bob", "carol"):
        pf.wait_for_log("to=<%s@%s>, orig_to=<sales@%s>" % (user, MAILBOX_DOMAIN, SQL_DOMAIN))

    # Idempotent: nothing changes, the client file keeps its mtime.
    mtime = os.stat(client_file).st_mtime_ns
    run = run_playbooks(pf, inventory(pf, pg), [ROLE_TASKS_PLAYBOOK])
    assert run.rc == 0 and run.changed == 0, run.changed_tasks
    assert os.stat(client_file).st_mtime_ns == mtime

    # verify compares the expect keys with what the database answers, naming the key.
    wrong = dict(ALIASES, **{"info@%s" % SQL_DOMAIN: "carol@%s" % MAILBOX_DOMAIN})
    run = run_playbooks(pf, inventory(pf, pg, expect=wrong), [VERIFY_PLAYBOOK])
    assert run.rc != 0
    assert ("postfix_server_maps.virtual-sql (%s): info@%s resolves to bob@%s (expected carol@%s)"
            % (reference, SQL_DOMAIN, MAILBOX_DOMAIN, MAILBOX_DOMAIN)) in run.out, run.out

    # A file alias next to the database: the role's file map comes first, then the database.
    both = inventory(pf, pg, postfix_server_virtual_alias_domains=[
        {"domain": SQL_DOMAIN}, {"domain": FILE_DOMAIN, "aliases": {"help": ["carol@%s" % MAILBOX_DOMAIN]}}])
    before_reload = pf.children()
    run = run_playbooks(pf, both, [ROLE_TASKS_PLAYBOOK, VERIFY_PLAYBOOK])
    assert run.rc == 0, run.out
    pf.wait_for_exit(before_reload)
    table_type = pf.postconf("-h", "default_database_type").strip()
    assert pf.postconf("-h", "virtual_alias_maps").strip() == "%s:%s/virtual, %s" % (table_type, conf, reference)
    pf.send("help@%s" % FILE_DOMAIN)
    pf.wait_for_log("to=<carol@%s>, orig_to=<help@%s>" % (MAILBOX_DOMAIN, FILE_DOMAIN))

    # Refused credentials: the client file changes (Postfix reloaded), and verify fails the
    # host with the server's reason, the password shown nowhere.
    bad = "Wrong-Pw-Never-Shown-51c2"
    run = run_playbooks(pf, inventory(pf, pg, password=bad), [ROLE_TASKS_PLAYBOOK, VERIFY_PLAYBOOK], "-v")
    assert run.rc != 0
    assert "Reload Postfix for changed main.cf, master.cf or tables read at start" in run.changed_tasks, run.out
    assert "password authentication failed" in run.out, run.out
    assert bad not in run.out and pg.password not in run.out


def test_bad_database_map_refused_before_any_change(postgres_instance, postfix_instance):
    pg, pf = postgres_instance, postfix_instance
    pf.write_main()
    before = pf.main_cf.read_bytes()
    variables = inventory(pf, pg)
    spec = variables["postfix_server_maps"]["virtual-sql"]
    spec["client"]["dbnmae"] = "mail"
    spec["client"]["password"] = "in-the-clear"
    spec["entries"] = {"info@%s" % SQL_DOMAIN: "bob@%s" % MAILBOX_DOMAIN}
    spec["mode"] = "0644"
    variables["postfix_server_maps"]["transport"] = {"parameter": "transport_maps", "proxy": True}
    run = run_playbooks(pf, variables, [ROLE_TASKS_PLAYBOOK])
    assert run.rc != 0
    for problem in (
            "postfix_server_maps.virtual-sql.client: unknown pgsql_table(5) parameter 'dbnmae'; did you mean dbname?",
            "postfix_server_maps.virtual-sql.client.password: a credential; give it in client_secret",
            "postfix_server_maps.virtual-sql.entries: a pgsql map's data is in its database",
            "postfix_server_maps.virtual-sql.mode: 0644 lets every local user read the client file",
            "postfix_server_maps.transport: proxy is an option of a database map"):
        assert problem in run.out, run.out
    assert "in-the-clear" not in run.out
    assert pf.main_cf.read_bytes() == before
    assert not os.path.exists(str(pf.config_dir) + "/virtual-sql.cf")


def test_ldap_map_without_proxy(slapd_instance, postfix_instance):
    """An ldap: map (ldap_table(5)) read directly (proxy: false): bind_pw kept out of every log,
    the entries the directory holds answered by real Postfix and checked by verify."""
    ldap, pf = slapd_instance, postfix_instance
    ldap.ldapadd(people_ldif(ldap.base))
    pf.write_main()
    pf.start()
    conf = str(pf.config_dir)
    domain = LDAP_DOMAIN
    expect = {"info@%s" % domain: "bob@%s" % MAILBOX_DOMAIN,
              "sales@%s" % domain: "bob@%s,carol@%s" % (MAILBOX_DOMAIN, MAILBOX_DOMAIN)}
    variables = dict(role_paths(pf), postfix_server_install=False,
                     postfix_server_virtual_alias_domains=[{"domain": domain}],
                     postfix_server_maps={"directory": {
                         "type": "ldap", "parameter": "virtual_alias_maps", "proxy": False,
                         "client": ldap_params(ldap),
                         "client_secret": {"bind_pw": ldap.postfix_pw}, "expect": expect}})
    before_reload = pf.children()
    run = run_playbooks(pf, variables, [ROLE_TASKS_PLAYBOOK, VERIFY_PLAYBOOK], "-v", "--diff")
    assert run.rc == 0, run.out
    # The role reloaded Postfix: an smtpd from before may still take a connection (old main.cf).
    pf.wait_for_exit(before_reload)
    assert ldap.postfix_pw not in run.out and "bind_pw = <hidden, changed>" in run.out
    reference = "ldap:%s/directory.cf" % conf
    assert pf.postconf("-h", "virtual_alias_maps").strip() == reference
    assert "proxy_read_maps" not in pf.postconf("-n")
    assert "postfix_server_maps.directory (%s): 2" % reference in run.out, run.out
    settle(conf + "/directory.cf")
    assert answers(pf, reference, list(expect)) == expect
    assert pf.rcpt_code("sales@%s" % domain)[0] == 250
    assert pf.rcpt_code("nobody@%s" % domain)[0] == 550
