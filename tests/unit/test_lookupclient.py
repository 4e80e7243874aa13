"""The private PostgreSQL fixture (tests/postgres_instance.py) and the lookup_client engine."""

from __future__ import annotations

import os
import time

import pytest


def test_postgres_fixture_roundtrip(postgres_instance):
    pg = postgres_instance
    pg.psql("CREATE TABLE virtual (source text PRIMARY KEY, destination text NOT NULL);\n"
            "INSERT INTO virtual VALUES ('a@example.test', 'b@example.test');\n"
            "ALTER TABLE virtual OWNER TO %s;" % pg.user)
    assert pg.psql("SELECT source, destination FROM virtual;") == "a@example.test|b@example.test\n"
    # The test role over TCP with its password; a wrong password is refused (scram-sha-256).
    ok = pg.psql_as_user("SELECT destination FROM virtual WHERE source = 'a@example.test';")
    assert ok.stdout == "b@example.test\n"
    bad = pg._run(["psql", "-X", "-At", "-c", "SELECT 1",
                   pg.dsn.replace(pg.password, "wrong")], check=False)
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr
    # Private: not the system cluster's port nor its socket directory.
    assert pg.port != 5432 and str(pg.socket_dir).startswith(str(pg.root))
    pid = pg.postmaster_pid()
    assert pid and os.path.exists("/proc/%d" % pid)
    pg.stop()
    assert not pg.is_running()
    deadline = time.time() + 5
    while os.path.exists("/proc/%d" % pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % pid)
    pg.stop()  # idempotent


def test_postgres_fixture_restart_keeps_data(postgres_instance):
    pg = postgres_instance
    pg.psql("CREATE TABLE t (k text); INSERT INTO t VALUES ('kept');")
    pg.stop()
    assert not pg.is_running()
    pg.restart()
    assert pg.psql("SELECT k FROM t;") == "kept\n"
