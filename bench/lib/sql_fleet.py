# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database side of `bench/run.py --only sqlfleet`: a PostgreSQL server in one bench
container (configured here: listens on its bench address, scram-sha-256 for the bench network,
a PostfixAdmin-like `alias` table, a read-only login for Postfix and a writer), the alias rows
loaded with COPY, and pollers that run real `postmap -q` in each MX container and log when the
answer changes.

Everything runs through `podman exec` in containers of the bench's Testbed (bench/lib/testbed.py),
which removes them by their label."""

from __future__ import annotations

import os
import secrets
import shlex
import time

from testbed import podman

DB_NAME = "mail"
WRITER = "mailadmin"
READER = "postfix_ro"
CLIENT_FILE = "/etc/postfix/pgsql-virtual.cf"
TABLE_SPEC = "proxy:pgsql:" + CLIENT_FILE
# PostfixAdmin's query for virtual_alias_maps (its DOCUMENTS/POSTFIX_CONF.txt, pgsql variant).
QUERY = "SELECT goto FROM alias WHERE address='%s' AND active = '1'"
DATA_DIR = "/var/lib/postgresql/bench"

# PostfixAdmin 3.3's PostgreSQL tables (shared with the tests and the fleet_sql scenario).
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "postfixadmin.sql")) as _schema:
    SCHEMA = _schema.read()


class Database:
    """PostgreSQL in the bench container ``container`` at ``ip`` (bench network ``subnet``)."""

    def __init__(self, tb, container, ip, subnet):
        self.tb, self.container, self.ip, self.subnet = tb, container, ip, subnet
        self.writer_password = "w-" + secrets.token_hex(12)
        self.reader_password = "r-" + secrets.token_hex(12)
        self.version = None

    def start(self, domains):
        """initdb, configure, start and create the roles, database and tables (untimed)."""
        # pg_hba.conf(5): first matching line wins; the superuser only over the local socket
        # (peer), everyone else over TCP from the bench network with a scram-sha-256 password.
        script = """set -e
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
d={data}
mkdir -p $d /var/run/postgresql
chown postgres:postgres $d /var/run/postgresql
runuser -u postgres -- $bindir/initdb -D $d -U postgres -E UTF8 --locale=C.UTF-8 --auth-local=peer \\
    --auth-host=scram-sha-256 >/dev/null
printf 'local all postgres peer\\nhost all all {subnet} scram-sha-256\\n' > $d/pg_hba.conf
cat >> $d/postgresql.conf <<EOF
# mailops bench database
listen_addresses = '{ip}'
port = 5432
unix_socket_directories = '/var/run/postgresql'
password_encryption = 'scram-sha-256'
EOF
runuser -u postgres -- $bindir/pg_ctl -D $d -l $d/server.log -w -t 60 start >/dev/null
$bindir/postgres --version
""".format(data=DATA_DIR, subnet=self.subnet, ip=self.ip)
        self.version = self.tb.exec(self.container, script).stdout.strip()
        self.psql("CREATE ROLE %s LOGIN PASSWORD '%s';\nCREATE ROLE %s LOGIN PASSWORD '%s';\n"
                  "CREATE DATABASE %s;" % (WRITER, self.writer_password, READER, self.reader_password, DB_NAME),
                  db="postgres")
        grants = ("GRANT SELECT ON alias TO %s;\n"
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON alias TO %s;\n"
                  "GRANT SELECT ON domain, mailbox TO %s;\n" % (READER, WRITER, WRITER))
        rows = ", ".join("('%s')" % d for d in domains)
        self.psql(SCHEMA + grants + "INSERT INTO domain (domain) VALUES %s;\n" % rows)
        return self

    def psql(self, sql, db=DB_NAME):
        """SQL as the superuser over the container's local socket; unaligned tuples-only output."""
        cmd = "runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -d %s -f -" % shlex.quote(db)
        return self.tb.exec(self.container, cmd, stdin=sql).stdout

    def load(self, aliases):
        """Replace the alias rows: {address: [targets]} -> goto 'a,b' (PostfixAdmin's form)."""
        lines = ["BEGIN;", "DELETE FROM alias;", "COPY alias (address, goto, domain) FROM STDIN;"]
        for address, targets in aliases.items():
            lines.append("%s\t%s\t%s" % (address, ",".join(targets), address.rsplit("@", 1)[1]))
        lines += ["\\.", "COMMIT;", "ANALYZE alias;", "SELECT count(*) FROM alias;"]
        return int(self.psql("\n".join(lines) + "\n").strip())

    def value(self, address):
        return self.psql("SELECT goto FROM alias WHERE address = '%s';" % address.replace("'", "''")).strip()


# --------------------------------------------------------------------------- pollers

POLL_LOG = "/tmp/mailops-bench-poll.log"
POLL_STOP = "/tmp/mailops-bench-poll.stop"


def start_pollers(tb, containers, key, interval):
    """In every MX container: real `postmap -q KEY proxy:pgsql:...` every `interval` seconds,
    one line per answer: `<epoch seconds after the answer> <exit status> <value>`. The containers
    share the host's clock, so the times compare with time.time() here."""
    loop = ("rm -f {stop} {log}; while [ ! -e {stop} ]; do "
            "v=$(postmap -q {key} {spec} 2>&1); rc=$?; "
            "echo \"$(date +%s.%N) $rc $v\" | tr '\\n' ' ' >> {log}; echo >> {log}; "
            "sleep {interval}; done").format(
                stop=POLL_STOP, log=POLL_LOG, key=shlex.quote(key), spec=TABLE_SPEC, interval=interval)
    for c in containers:
        podman("exec", "-d", c, "sh", "-c", loop)


def stop_pollers(tb, containers):
    for c in containers:
        tb.exec(c, "touch %s" % POLL_STOP, check=False)


def read_poll(tb, container):
    """[(time, status, value)] logged so far."""
    out = tb.exec(container, "cat %s 2>/dev/null" % POLL_LOG, check=False).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2:
            try:
                rows.append((float(parts[0]), parts[1], parts[2].strip() if len(parts) > 2 else ""))
            except ValueError:
                pass
    return rows


def wait_routed(tb, containers, want, since, timeout):
    """Wait until every container's poller logged `want` at or after `since` (epoch); returns
    {container: first such time or None}, after at most `timeout` seconds."""
    first = dict.fromkeys(containers)
    deadline = time.time() + timeout
    while True:
        for c in containers:
            if first[c] is None:
                for t, _rc, value in read_poll(tb, c):
                    if t >= since and value == want:
                        first[c] = t
                        break
        if all(first.values()) or time.time() > deadline:
            return first
        time.sleep(0.5)
