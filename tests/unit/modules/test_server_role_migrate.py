"""The server role leaving Berkeley DB: postfix_server_table_type changed from hash to lmdb on a
host the role set up with hash tables migrates every table through migrate_tables (proven key by
key), leaves no hash: reference in main.cf, and real Postfix answers every key from the new type."""

from role_runner import ROLE_TASKS_PLAYBOOK, role_paths, run_playbooks

ALIASES = {"alias%d" % i: ["user%d@example.net" % i, "copy@example.org"] for i in range(300)}
TRANSPORT = {"example.net": "smtp:[smarthost.test]:587", "partner.test": "smtp:[10.0.0.5]"}


def inventory(table_type):
    return {
        "postfix_server_install": False,
        "postfix_server_table_type": table_type,
        "postfix_server_virtual_alias_domains": [{"domain": "alias.test", "aliases": ALIASES}],
        "postfix_server_aliases": {"root": ["admin@example.net"]},
        "postfix_server_maps": {"transport": {"parameter": "transport_maps", "entries": TRANSPORT}},
    }


def run_role(pf, table_type, *extra):
    run = run_playbooks(pf, dict(inventory(table_type), **role_paths(pf)), [ROLE_TASKS_PLAYBOOK], *extra)
    assert run.rc == 0, run.out
    return run


def answers(pf, reference, keys):
    proc = pf.run("postmap", "-q", "-", reference, input="".join(k + "\n" for k in keys))
    return dict(line.split("\t", 1) for line in proc.stdout.splitlines())


def test_table_type_hash_to_lmdb_migrates_every_table(postfix_instance):
    pf = postfix_instance
    pf.write_main()
    pf.start()
    conf = str(pf.config_dir)
    run_role(pf, "hash")
    assert "virtual_alias_maps = hash:%s/virtual" % conf in pf.postconf("-n").splitlines()
    keys = ["%s@alias.test" % k for k in ALIASES]

    # Check mode: the migration and the new references previewed, nothing written.
    before = pf.main_cf.read_bytes()
    run = run_role(pf, "lmdb", "--check", "--diff")
    assert "Move the tables off Berkeley DB (hash, btree) to the role's table type" in run.changed_tasks, run.out
    assert "+virtual_alias_maps = lmdb:%s/virtual" % conf in run.out
    assert pf.main_cf.read_bytes() == before

    run = run_role(pf, "lmdb")
    assert "Move the tables off Berkeley DB (hash, btree) to the role's table type" in run.changed_tasks, run.out
    n = pf.postconf("-n")
    assert "hash:" not in n and "btree:" not in n, n
    for line in ("virtual_alias_maps = lmdb:%s/virtual" % conf, "transport_maps = lmdb:%s/transport" % conf,
                 "alias_maps = lmdb:%s/aliases" % conf):
        assert line in n.splitlines(), n
    # Every key, from the new indexes, by real Postfix.
    want = dict(("%s@alias.test" % k, ", ".join(v)) for k, v in ALIASES.items())
    assert answers(pf, "lmdb:%s/virtual" % conf, keys) == want
    assert answers(pf, "lmdb:%s/transport" % conf, list(TRANSPORT)) == TRANSPORT
    # The migration reloaded Postfix; mail routes through the new virtual index.
    code, _text = pf.rcpt_code("alias7@alias.test")
    assert code == 250

    # Nothing left to move: the task is skipped, nothing changes.
    run = run_role(pf, "lmdb")
    assert run.changed == 0, run.changed_tasks
    assert "Move the tables off Berkeley DB" not in "".join(run.changed_tasks)
