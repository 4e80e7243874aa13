"""A private, real OpenLDAP server (Debian's ``slapd``) for tests.

One temp dir holds an ``slapd.conf`` (slapd.conf(5)), an mdb database for the suffix
``dc=example,dc=test``, the pid and args files. slapd listens on ``ldap://127.0.0.1:PORT/``
only (``-h``), loads core, cosine, inetorgperson, nis and misc (mailLocalAddress,
mailRoutingAddress: the inetLocalMailRecipient class) from /etc/ldap/schema, and runs as
root, detached, with its own pid file. It never touches the system
slapd (/etc/ldap/slapd.d, /var/lib/ldap, port 389). ``stop()`` signals only the PID from this
instance's pid file (SIGTERM, wait, SIGKILL).

Access (slapd.access(5)): the rootdn writes; ``cn=postfix,<suffix>`` (password
:attr:`postfix_pw`) reads; anonymous may only bind. A Postfix ldap: client that does not bind
as cn=postfix finds nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import processes
from postfix_instance import MAILBOX_DOMAIN, free_port

SLAPD = "/usr/sbin/slapd"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis", "misc")
MODULE_PATH = "/usr/lib/ldap"

_CONF = """\
# slapd.conf(5) of a private test server
{includes}
pidfile         {root}/slapd.pid
argsfile        {root}/slapd.args
modulepath      {modulepath}
moduleload      back_mdb
loglevel        none

database        mdb
maxsize         16777216
suffix          "{suffix}"
rootdn          "{rootdn}"
rootpw          {rootpw}
directory       {root}/db
index           objectClass eq
index           mail,mailLocalAddress eq

access to attrs=userPassword
        by anonymous auth
        by * none
access to *
        by dn.exact="{postfix_dn}" read
        by * none
"""


def available() -> bool:
    return os.geteuid() == 0 and os.access(SLAPD, os.X_OK) and shutil.which("ldapadd") is not None \
        and all(os.path.exists("/etc/ldap/schema/%s.schema" % s) for s in SCHEMAS)


class SlapdInstance:
    """One private slapd rooted at ``root``; :meth:`start` writes the config and the base entries."""

    def __init__(self, root: Path | str, suffix: str = "dc=example,dc=test"):
        self.root = Path(root)
        self.suffix = suffix
        self.base = suffix
        self.host = "127.0.0.1"
        self.port = free_port()
        self.url = "ldap://%s:%d" % (self.host, self.port)
        self.rootdn = "cn=admin,%s" % suffix
        self.rootpw = "root-" + secrets.token_hex(8)
        self.postfix_dn = "cn=postfix,%s" % suffix
        self.postfix_pw = "pf-" + secrets.token_hex(8)
        self.conf = self.root / "slapd.conf"
        self.pid_file = self.root / "slapd.pid"
        self.log_path = self.root / "slapd.log"
        self.pid: int | None = None
        self._log = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> float:
        """Write the config, start slapd, add the base entries; return the start time in seconds."""
        t0 = time.monotonic()
        (self.root / "db").mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.conf.write_text(_CONF.format(
            includes="\n".join("include         /etc/ldap/schema/%s.schema" % s for s in SCHEMAS),
            root=self.root, modulepath=MODULE_PATH, suffix=self.suffix, rootdn=self.rootdn,
            rootpw=self.rootpw, postfix_dn=self.postfix_dn))
        os.chmod(self.conf, 0o600)
        self._spawn(timeout)
        self.ldapadd(
            "dn: {s}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n\n"
            "dn: ou=aliases,{s}\nobjectClass: organizationalUnit\nou: aliases\n\n"
            "dn: {pdn}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n"
            "cn: postfix\nuserPassword: {ppw}\n".format(s=self.suffix, pdn=self.postfix_dn, ppw=self.postfix_pw))
        return time.monotonic() - t0

    def _spawn(self, timeout: float) -> None:
        # Without -d slapd(8) detaches and writes its pid file; its log goes to syslog.
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        proc = subprocess.run([SLAPD, "-h", self.url + "/", "-f", str(self.conf)],
                              capture_output=True, text=True, check=False, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError("slapd failed to start (%d): %s%s" % (proc.returncode, proc.stdout, proc.stderr))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pid = self._read_pid()
            if self.pid and self.is_running():
                return
            time.sleep(0.05)
        raise AssertionError("slapd did not listen on %s" % self.url)

    def restart(self, timeout: float = 10.0) -> None:
        """Start the stopped server again: same config, data and port."""
        self._spawn(timeout)

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop this server only (idempotent): SIGTERM to its own PID, wait, SIGKILL."""
        pid = self._read_pid() or self.pid
        self.pid = None
        processes.stop(pid, timeout=10)

    # -- ldap-utils --------------------------------------------------------------------
    def _tool(self, argv: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, LDAPNOINIT="1")  # ignore /etc/ldap/ldap.conf and ~/.ldaprc
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False, env=env, timeout=30)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (%d): %s%s" % (argv[0], proc.returncode, proc.stdout, proc.stderr))
        return proc

    def _bind_args(self, dn: str | None, pw: str | None) -> list[str]:
        if dn is None:
            return ["-x", "-H", self.url, "-D", self.rootdn, "-w", self.rootpw]
        if dn == "":
            return ["-x", "-H", self.url]
        return ["-x", "-H", self.url, "-D", dn, "-w", pw or ""]

    def ldapadd(self, ldif: str, check: bool = True) -> subprocess.CompletedProcess:
        """Add entries (LDIF) as the rootdn."""
        return self._tool(["ldapadd"] + self._bind_args(None, None), input=ldif, check=check)

    def ldapmodify(self, ldif: str, check: bool = True) -> subprocess.CompletedProcess:
        """Apply an LDIF change set (changetype: ...) as the rootdn."""
        return self._tool(["ldapmodify"] + self._bind_args(None, None), input=ldif, check=check)

    def ldapsearch(self, filt: str = "(objectClass=*)", *attrs: str, base: str | None = None,
                   dn: str | None = None, pw: str | None = None) -> str:
        """LDIF of the matching entries (``-LLL``), bound as the rootdn unless ``dn`` is given
        (``dn=""``: anonymous)."""
        return self._tool(["ldapsearch", "-LLL"] + self._bind_args(dn, pw)
                          + ["-b", base or self.base, filt] + list(attrs), check=False).stdout


@contextlib.contextmanager
def slapd_server(**kwargs):
    """A started SlapdInstance in its own temp dir; stopped and removed on exit."""
    root = tempfile.mkdtemp(prefix="mailops-slapd-")
    instance = SlapdInstance(root, **kwargs)
    try:
        instance.start_seconds = instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


# What the tests put in the directory and how Postfix reads it (test_ldap_tables.py, the
# server role's test of ldap: maps).
LDAP_DOMAIN = "ldap.test"


def people_ldif(base):
    """Two mail users: mailLocalAddress (misc.schema, inetLocalMailRecipient) lists the addresses
    of the LDAP domain that reach them, mailRoutingAddress where their mail goes."""
    return "".join(
        "dn: uid={u},ou=aliases,{b}\n"
        "objectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\n"
        "uid: {u}\ncn: {u}\nsn: {u}\n"
        "mail: {u}@{d}\n{local}"
        "mailRoutingAddress: {u}@{m}\n\n".format(
            u=u, b=base, d=LDAP_DOMAIN, m=MAILBOX_DOMAIN,
            local="".join("mailLocalAddress: %s@%s\n" % (a, LDAP_DOMAIN) for a in aliases))
        for u, aliases in (("bob", ("info", "sales")), ("carol", ("sales",))))


def ldap_params(ldap):
    # ldap_table(5): version 3 (slapd refuses LDAPv2 binds unless "allow bind_v2"); %s is the
    # whole address; every entry that matches adds its result_attribute values, joined by ",".
    return {"server_host": ldap.url, "version": "3", "search_base": ldap.base,
            "query_filter": "(&(objectClass=inetLocalMailRecipient)(|(mail=%s)(mailLocalAddress=%s)))",
            "result_attribute": "mailRoutingAddress", "bind": "yes", "bind_dn": ldap.postfix_dn}
