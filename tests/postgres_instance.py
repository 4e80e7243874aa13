"""A private, real PostgreSQL cluster for tests (Debian's ``postgresql`` package).

The cluster lives in its own temporary directory (data dir owned by the ``postgres`` user),
listens on 127.0.0.1 on a free port and on a private unix socket directory, and never touches
the system cluster (/var/lib/postgresql, /var/run/postgresql, port 5432). Tests run as root;
initdb, pg_ctl and psql run as ``postgres`` through ``runuser``.

Authentication (pg_hba.conf): the ``postgres`` superuser over the private unix socket with
``trust`` (for :meth:`psql`), everything over TCP with ``scram-sha-256``: clients such as
Postfix's pgsql: tables must send the right password of :attr:`user`.

``stop()`` stops only this cluster: ``pg_ctl stop -m fast``, then the postmaster PID read from
this cluster's own ``postmaster.pid`` is killed if it is still there.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import processes
from postfix_instance import free_port


def _bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL server not installed (scripts/install-system-deps.sh installs it)")
    return Path(found[-1]).parent


def available() -> bool:
    try:
        _bindir()
        pwd.getpwnam("postgres")
    except (RuntimeError, KeyError):
        return False
    return os.geteuid() == 0 and shutil.which("runuser") is not None


class PostgresInstance:
    """One private PostgreSQL cluster rooted at ``root`` (created and started by :meth:`start`).

    ``user``/``password`` is a login role that owns database ``dbname`` (TCP, password auth);
    ``psql()`` runs SQL as the superuser over the private socket.
    """

    def __init__(self, root: Path | str, user: str = "mailops", dbname: str = "mailops",
                 password: str | None = None):
        self.root = Path(root)
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.bindir = _bindir()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = user
        self.dbname = dbname
        self.password = password or "pw-" + secrets.token_hex(8)
        self.pid: int | None = None
        pg = pwd.getpwnam("postgres")
        self._uid, self._gid = pg.pw_uid, pg.pw_gid

    # -- connection strings ----------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """libpq keyword/value connection string for the test role over TCP (psycopg2, psql)."""
        return "host=%s port=%d dbname=%s user=%s password=%s" % (
            self.host, self.port, self.dbname, self.user, self.password)

    @property
    def url(self) -> str:
        return "postgresql://%s:%s@%s:%d/%s" % (self.user, self.password, self.host, self.port, self.dbname)

    @property
    def hostport(self) -> str:
        """``hosts`` value for a pgsql_table(5) client file."""
        return "%s:%d" % (self.host, self.port)

    # -- running the binaries as postgres ----------------------------------------------------
    def _run(self, argv: list[str], input: str | None = None, check: bool = True,
             env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = ["runuser", "-u", "postgres", "--"] + argv
        full_env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        full_env.pop("PGPASSWORD", None)
        full_env.update(env or {})
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, check=False,
                              cwd=str(self.root), env=full_env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (%d): %s%s" % (
                " ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def start(self, timeout: float = 30.0) -> None:
        os.chmod(self.root, 0o755)  # postgres must traverse it
        for d in (self.data_dir, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chown(d, self._uid, self._gid)
        self.log_path.touch()
        os.chown(self.log_path, self._uid, self._gid)
        # --no-sync: a throw-away cluster; -A trust then pg_hba.conf rewritten below.
        self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                   "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--auth=trust"])
        # pg_hba.conf(5): first matching line wins.
        (self.data_dir / "pg_hba.conf").write_text(
            "local all postgres trust\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write("\n# mailops test cluster\n"
                    "listen_addresses = '127.0.0.1'\n"
                    "port = %d\n"
                    "unix_socket_directories = '%s'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "shared_buffers = 16MB\nmax_connections = 50\n"
                    "password_encryption = 'scram-sha-256'\n"
                    "log_connections = on\n" % (self.port, self.socket_dir))
        proc = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                          "-w", "-t", str(int(timeout)), "start"], check=False)
        if proc.returncode != 0:
            raise AssertionError("pg_ctl start failed (%d): %s%s\nlog:\n%s" % (
                proc.returncode, proc.stdout, proc.stderr, self.log()))
        self.pid = self.postmaster_pid()
        self.psql("CREATE ROLE %s LOGIN PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;"
                  % (self.user, self.password, self.dbname, self.user), db="postgres")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def psql(self, sql: str, db: str | None = None, check: bool = True) -> str:
        """Run ``sql`` (one or more statements) as the superuser; return unaligned, tuples-only
        output (``|`` between columns, one row a line)."""
        proc = self._run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
                          "-d", db or self.dbname, "-f", "-"], input=sql, check=check)
        return proc.stdout

    def psql_as_user(self, sql: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``sql`` as the test role over TCP with its password (what a client does)."""
        return self._run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-", self.dsn],
                         input=sql, check=check)

    def is_running(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop this cluster only (idempotent): pg_ctl fast shutdown, then its postmaster PID."""
        pid = self.postmaster_pid() or self.pid
        if self.data_dir.is_dir() and (self.data_dir / "postmaster.pid").exists():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "10",
                       "stop"], check=False, timeout=30)
        # pg_ctl asked it to stop: only wait, then kill what is left.
        processes.stop(pid, timeout=5, term=False)
        self.pid = None

    def restart(self, timeout: float = 30.0) -> None:
        """Start the (stopped) cluster again with the same data, port and roles."""
        proc = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                          "-w", "-t", str(int(timeout)), "start"], check=False)
        if proc.returncode != 0:
            raise AssertionError("pg_ctl start failed: %s%s" % (proc.stdout, proc.stderr))
        self.pid = self.postmaster_pid()


@contextlib.contextmanager
def postgres_cluster(**kwargs):
    """A started PostgresInstance in its own temp dir; stopped and removed on exit.

    For fixtures with a wider scope than the function-scoped ``postgres_instance``."""
    root = tempfile.mkdtemp(prefix="mailops-pg-")
    instance = PostgresInstance(root, **kwargs)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)
