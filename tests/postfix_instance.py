"""A private, real Postfix instance for tests: its own config dir, queue, log and SMTP port.

It never touches /etc/postfix or the system instance. Mail for the virtual mailbox domain
``mbox.test`` is delivered by virtual(8) into ``<root>/vmail/<user>/new/`` (Maildir), so a
test can prove where a message went without local system users. ``stop()`` signals only the
master this instance started (by the PID in its own pid file).
"""

from __future__ import annotations

import contextlib
import email
import email.message
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import processes

MAILBOX_DOMAIN = "mbox.test"

# Only the services a delivery test needs; nothing chrooted (no copies of /etc needed).
_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
proxywrite unix - - n -  1 proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
local     unix  - n n -  - local
virtual   unix  - n n -  - virtual
lmtp      unix  - - n -  - lmtp
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostfixInstance:
    """One Postfix instance rooted at ``root`` (a pytest tmp_path)."""

    def __init__(self, root: Path, myhostname: str = "mx.test.example"):
        self.root = Path(root)
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "spool"
        self.data_dir = self.root / "data"
        self.vmail_dir = self.root / "vmail"
        self.log_path = self.root / "postfix.log"
        self.port = free_port()
        self.myhostname = myhostname
        self._started = False
        nobody = pwd.getpwnam("nobody")
        self.vmail_uid, self.vmail_gid = nobody.pw_uid, nobody.pw_gid
        for d in (self.config_dir, self.queue_dir, self.data_dir, self.vmail_dir):
            d.mkdir(parents=True, exist_ok=True)
        postfix = pwd.getpwnam("postfix")
        os.chown(self.data_dir, postfix.pw_uid, postfix.pw_gid)
        os.chown(self.vmail_dir, self.vmail_uid, self.vmail_gid)
        os.chmod(self.root, 0o755)
        (self.config_dir / "master.cf").write_text(
            _MASTER_CF.format(listen="127.0.0.1:%d" % self.port))
        self.main = {
            "compatibility_level": "3.6",
            "myhostname": myhostname,
            "mydestination": "$myhostname, localhost",
            "mynetworks": "127.0.0.0/8",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.root),
            "alias_maps": "",
            "alias_database": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "virtual_mailbox_domains": MAILBOX_DOMAIN,
            "virtual_mailbox_base": str(self.vmail_dir),
            "virtual_mailbox_maps": "hash:%s" % (self.config_dir / "vmailbox"),
            "virtual_uid_maps": "static:%d" % self.vmail_uid,
            "virtual_gid_maps": "static:%d" % self.vmail_gid,
            "default_transport": "error:outside mail disabled in tests",
            "relay_transport": "error:outside mail disabled in tests",
            "smtputf8_enable": "yes",
            "biff": "no",
            "delay_warning_time": "0",
        }
        self.write_main()
        (self.config_dir / "vmailbox").write_text("")
        self.run("postmap", "hash:%s" % (self.config_dir / "vmailbox"))

    # -- configuration -------------------------------------------------------------
    @property
    def main_cf(self) -> Path:
        return self.config_dir / "main.cf"

    def write_main(self, **extra: str) -> None:
        """Write main.cf from ``self.main`` updated with ``extra`` (sorted, one per line)."""
        self.main.update(extra)
        self.main_cf.write_text("".join("%s = %s\n" % kv for kv in self.main.items()))
        # Postfix tools wait for a main.cf changed in the last seconds to settle; date it back.
        old = time.time() - 60
        os.utime(self.main_cf, (old, old))

    def add_mailboxes(self, *users: str) -> None:
        """Make ``user@mbox.test`` deliverable into vmail/<user>/ (Maildir)."""
        src = self.config_dir / "vmailbox"
        existing = src.read_text()
        src.write_text(existing + "".join("%s@%s %s/\n" % (u, MAILBOX_DOMAIN, u) for u in users))
        self.run("postmap", "hash:%s" % src)

    # -- running Postfix's own tools against this instance -------------------------
    def run(self, *argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        # sendmail(1) takes the configuration directory as -C (-c is something else there): with
        # -c it would drop the message into the system's queue.
        cmd = [argv[0], "-C" if os.path.basename(argv[0]) == "sendmail" else "-c", str(self.config_dir)] + list(argv[1:])
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (%d): %s%s" % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def postconf(self, *argv: str) -> str:
        return self.run("postconf", *argv).stdout

    # -- lifecycle -----------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.queue_dir / "pid" / "master.pid"

    def master_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 20.0) -> None:
        self.run("postfix", "start")
        self._started = True
        self.wait_for_port(timeout)

    def mark_started(self) -> None:
        """Adopt a master started by something else (a module under test) so stop() ends it."""
        self._started = True

    def children(self) -> set[int]:
        """PIDs of the master's child processes (smtpd, qmgr, ...) now."""
        master = self.master_pid()
        out = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    # pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master:
                out.add(int(entry))
        return out

    def wait_for_exit(self, pids: set[int], timeout: float = 20.0) -> None:
        """Wait until ``pids`` (children from before a reload) are gone. On reload master(8) asks
        its children to exit (master_restart_service()), but an idle old smtpd may still take a
        connection with the old configuration until it notices."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not [p for p in pids if os.path.exists("/proc/%d" % p)]:
                return
            time.sleep(0.1)
        raise AssertionError("processes from before the reload still run: %s" % sorted(pids))

    def wait_for_port(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(512).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("Postfix did not answer on port %d; log:\n%s" % (self.port, self.log()))

    def stop(self) -> None:
        """Stop the master this instance started, by its PID; wait until it is gone."""
        if not self._started:
            return
        self._started = False
        processes.stop(self.master_pid(), timeout=15)

    # -- mail ----------------------------------------------------------------------
    def send(self, rcpt: str, sender: str = "tester@client.test", subject: str = "test") -> str:
        """Send one message over SMTP; return its Message-ID. Raises SMTPRecipientsRefused on 5xx."""
        msgid = "<%d.%d@client.test>" % (time.time_ns(), os.getpid())
        body = "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n\r\nhello\r\n" % (
            sender, rcpt, subject, msgid)
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
            smtp.sendmail(sender, [rcpt], body)
        return msgid

    def rcpt_code(self, rcpt: str, sender: str = "tester@client.test") -> tuple[int, str]:
        """The SMTP reply to RCPT TO (no message is sent)."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            smtp.mail(sender)
            code, msg = smtp.rcpt(rcpt)
            smtp.rset()
        return code, msg.decode("utf-8", "replace")

    def mailbox(self, user: str) -> list[str]:
        """Messages delivered to ``user@mbox.test`` so far."""
        new = self.vmail_dir / user / "new"
        if not new.is_dir():
            return []
        return [p.read_text(errors="replace") for p in sorted(new.iterdir())]

    def wait_for_delivery(self, user: str, msgid: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.mailbox(user):
                if msgid in msg:
                    return msg
            time.sleep(0.2)
        raise AssertionError("%s never reached %s; log:\n%s" % (msgid, user, self.log()))

    @staticmethod
    def maildir(path: Path) -> dict:
        """The messages in the ``new/`` directory of the Maildir ``path``: file -> text."""
        new = Path(path) / "new"
        if not new.is_dir():
            return {}
        return {p: p.read_text(errors="replace") for p in sorted(new.iterdir())}

    def wait_for_maildir(self, path: Path, msgid: str, timeout: float = 20.0) -> Path:
        """The file of message ``msgid`` once it is in the Maildir ``path`` (any base, any domain)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for file, text in self.maildir(path).items():
                if msgid in text:
                    return file
            time.sleep(0.2)
        raise AssertionError("%s never reached %s; log:\n%s" % (msgid, path, self.log()))

    @staticmethod
    def headers(text: str) -> email.message.Message:
        """A delivered message parsed: ``headers(msg)["Return-Path"]``, ``.get_all("Received")``."""
        return email.message_from_string(text)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.2)
        raise AssertionError("%r not in log:\n%s" % (needle, self.log()))


@contextlib.contextmanager
def private_instance(myhostname: str = "mx.test.example"):
    """A further PostfixInstance (not started) with its own root and port, for tests that need
    two of them; stopped (by its PID) and removed on exit, like the ``postfix_instance`` fixture.

    Give each instance its own ``myhostname``: an SMTP client greeted with its own name
    treats the mail as looping back to itself (smtp_helo.c).
    """
    root = tempfile.mkdtemp(prefix="mailops-postfix-")
    instance = PostfixInstance(root, myhostname=myhostname)
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)
