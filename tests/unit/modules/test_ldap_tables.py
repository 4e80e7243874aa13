"""ldap: tables: a private OpenLDAP server holds the aliases, Postfix reads them.

Oracles: a real slapd (tests/slapd_instance.py) with entries written by ldapadd/ldapmodify,
the client file written by ``mailops.postfix.lookup_client``, real ``postmap -q`` through
Postfix's ldap client plugin (postfix-ldap, ldap_table(5)), and SMTP delivery through an
LDAP-backed virtual alias (``proxy:ldap:``) into Maildirs of a private Postfix.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time

import pytest

from module_runner import run_module
from postfix_instance import MAILBOX_DOMAIN, private_instance
from slapd_instance import LDAP_DOMAIN, ldap_params, people_ldif


def settle(path):
    """Date a just-written client file back: Postfix re-reads a file modified in the last
    second until it settles (dict_load_file_xt(), util/dict.c)."""
    st = os.stat(path)
    os.utime(path, (st.st_atime, st.st_mtime - 10))


def postmap_q(pf, key, spec):
    settle(spec.rsplit(":", 1)[1])
    proc = pf.run("postmap", "-q", key, spec, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def submit(pf, rcpt, text):
    """Local submission through sendmail(1) -> postdrop(1) into this instance's maildrop
    (sendmail takes the config dir as -C; -c is something else)."""
    subprocess.run(["sendmail", "-C", str(pf.config_dir), "-f", "tester@client.test", rcpt],
                   input=text, text=True, check=True, capture_output=True)


def test_ldap_client_postmap_smtp_delivery_and_fault(slapd_instance, postfix_instance):
    ldap, pf = slapd_instance, postfix_instance
    assert ldap.start_seconds < 3, ldap.start_seconds
    ldap.ldapadd(people_ldif(ldap.base))
    path = pf.config_dir / "ldap-virtual.cf"
    spec = "ldap:%s" % path

    res = run_module("lookup_client", dict(path=str(path), type="ldap", params=ldap_params(ldap),
                                           secret_params={"bind_pw": ldap.postfix_pw}))
    assert res["changed"] and res["created"], res
    assert ldap.postfix_pw not in str(res)
    again = run_module("lookup_client", dict(path=str(path), type="ldap", params=ldap_params(ldap),
                                             secret_params={"bind_pw": ldap.postfix_pw}))
    assert not again["changed"], again

    # Real postmap(1) with the ldap client: what the directory holds.
    assert postmap_q(pf, "info@%s" % LDAP_DOMAIN, spec)[:2] == (0, "bob@%s\n" % MAILBOX_DOMAIN)
    rc, out = postmap_q(pf, "sales@%s" % LDAP_DOMAIN, spec)[:2]
    assert rc == 0 and sorted(out.strip().split(",")) == ["bob@%s" % MAILBOX_DOMAIN, "carol@%s" % MAILBOX_DOMAIN]
    assert postmap_q(pf, "carol@%s" % LDAP_DOMAIN, spec)[:2] == (0, "carol@%s\n" % MAILBOX_DOMAIN)
    assert postmap_q(pf, "nobody@%s" % LDAP_DOMAIN, spec)[0] == 1
    # The bind is what gives access: anonymous reads nothing (slapd.conf ACL), so a client
    # without bind_dn finds no key at all.
    anon = pf.config_dir / "ldap-anon.cf"
    run_module("lookup_client", dict(path=str(anon), type="ldap", params=dict(
        ldap_params(ldap), bind="no", bind_dn="")))
    assert postmap_q(pf, "info@%s" % LDAP_DOMAIN, "ldap:%s" % anon)[0] == 1

    # A private Postfix reads the aliases through proxymap(8) and delivers into Maildirs.
    proxied = "proxy:" + spec
    pf.add_mailboxes("bob", "carol")
    default_read_maps = pf.postconf("-dh", "proxy_read_maps").strip()
    pf.write_main(virtual_alias_domains=LDAP_DOMAIN, virtual_alias_maps=proxied,
                  proxy_read_maps="%s %s" % (default_read_maps, proxied))
    pf.start()
    assert postmap_q(pf, "info@%s" % LDAP_DOMAIN, proxied)[:2] == (0, "bob@%s\n" % MAILBOX_DOMAIN)
    code, reply = pf.rcpt_code("nobody@%s" % LDAP_DOMAIN)
    assert code == 550 and "User unknown in virtual alias table" in reply, (code, reply)
    msgid = pf.send("sales@%s" % LDAP_DOMAIN)
    for user in ("bob", "carol"):
        headers = pf.headers(pf.wait_for_delivery(user, msgid))
        assert headers["Delivered-To"] == "%s@%s" % (user, MAILBOX_DOMAIN)

    # An entry changed in the directory routes the next mail: no reload, no file written.
    ldap.ldapmodify("dn: uid=carol,ou=aliases,%s\nchangetype: modify\nadd: mailLocalAddress\n"
                    "mailLocalAddress: new@%s\n" % (ldap.base, LDAP_DOMAIN))
    ldap.ldapmodify("dn: uid=bob,ou=aliases,%s\nchangetype: modify\nreplace: mailRoutingAddress\n"
                    "mailRoutingAddress: carol@%s\n" % (ldap.base, MAILBOX_DOMAIN))
    msgid = pf.send("new@%s" % LDAP_DOMAIN)
    pf.wait_for_delivery("carol", msgid)
    msgid = pf.send("info@%s" % LDAP_DOMAIN)
    pf.wait_for_delivery("carol", msgid)
    assert not [m for m in pf.mailbox("bob") if msgid in m]

    # Fault: slapd stops while mail arrives. The ldap lookup in proxymap fails (DICT_ERR_RETRY,
    # dict_ldap.c) and smtpd answers 4xx: the sender keeps the message, nothing is bounced.
    ldap.stop()
    code, reply = pf.rcpt_code("info@%s" % LDAP_DOMAIN)
    assert (code, reply) == (451, "4.3.0 <info@%s>: Temporary lookup failure" % LDAP_DOMAIN), (code, reply)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        pf.send("info@%s" % LDAP_DOMAIN)
    assert refused.value.recipients["info@%s" % LDAP_DOMAIN][0] == 451
    # Locally submitted mail (sendmail(1) -> postdrop -> pickup -> cleanup) cannot be expanded
    # either: cleanup(8) refuses it for now ("map lookup problem ... try again later") and
    # pickup(8) keeps the file in the maildrop queue (pickup.c) to retry it.
    submitted = "<%d.local@client.test>" % time.time_ns()
    submit(pf, "info@%s" % LDAP_DOMAIN, "Subject: queued while LDAP is down\nMessage-ID: %s\n\nhello\n" % submitted)
    pf.wait_for_log("map lookup problem for info@%s" % LDAP_DOMAIN)
    assert os.listdir(pf.queue_dir / "maildrop"), pf.log()
    assert "status=bounced" not in pf.log()

    # slapd is back. dict_ldap reconnects on the next lookup (no down-host timer, unlike
    # dict_pgsql/dict_mysql): the very next RCPT is accepted, no reload.
    ldap.restart()
    t0 = time.monotonic()
    while pf.rcpt_code("info@%s" % LDAP_DOMAIN)[0] != 250:
        assert time.monotonic() - t0 < 20, pf.log()
        time.sleep(0.1)
    smtp_back = time.monotonic() - t0
    assert smtp_back < 5, smtp_back  # pgsql: 61 s (docs/network_tables.md); measured here 0.00-0.01 s
    msgid = pf.send("info@%s" % LDAP_DOMAIN)
    pf.wait_for_delivery("carol", msgid)
    # The message kept in the maildrop is delivered when pickup scans again: its wakeup timer
    # (master.cf: 60 s in the stock file) or the next local submission, which triggers a scan.
    submit(pf, "carol@%s" % MAILBOX_DOMAIN, "Subject: trigger\n\nhello\n")
    pf.wait_for_delivery("carol", submitted)
    local_back = time.monotonic() - t0
    assert "status=bounced" not in pf.log()
    print("LDAP back: SMTP RCPT accepted after %.2f s, kept local mail delivered after %.2f s"
          % (smtp_back, local_back))


def test_two_mx_hosts_one_directory(slapd_instance):
    """The fleet: N MX hosts (here two private Postfix instances) read one directory through
    proxy:ldap:; one directory write routes the next mail on every host, nothing is rolled out."""
    ldap = slapd_instance
    ldap.ldapadd(people_ldif(ldap.base))
    with private_instance("mx1.test.example") as mx1, private_instance("mx2.test.example") as mx2:
        for pf in (mx1, mx2):
            path = pf.config_dir / "ldap-virtual.cf"
            run_module("lookup_client", dict(path=str(path), type="ldap", params=ldap_params(ldap),
                                             secret_params={"bind_pw": ldap.postfix_pw}))
            settle(path)
            proxied = "proxy:ldap:%s" % path
            pf.add_mailboxes("bob", "carol")
            # proxy_read_maps left at its default: it names $virtual_alias_maps, which proxymap(8)
            # expands, so the proxy: table there is allowed (docs/ldap_tables.md).
            pf.write_main(virtual_alias_domains=LDAP_DOMAIN, virtual_alias_maps=proxied)
            pf.start()
            pf.wait_for_delivery("bob", pf.send("info@%s" % LDAP_DOMAIN))
        ldap.ldapmodify("dn: uid=bob,ou=aliases,%s\nchangetype: modify\ndelete: mailLocalAddress\n"
                        "mailLocalAddress: info@%s\n\n"
                        "dn: uid=carol,ou=aliases,%s\nchangetype: modify\nadd: mailLocalAddress\n"
                        "mailLocalAddress: info@%s\n" % (ldap.base, LDAP_DOMAIN, ldap.base, LDAP_DOMAIN))
        for pf in (mx1, mx2):
            msgid = pf.send("info@%s" % LDAP_DOMAIN)
            pf.wait_for_delivery("carol", msgid)
            assert not [m for m in pf.mailbox("bob") if msgid in m]


PLAYBOOK = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: One entry per mail user, its addresses and where its mail goes
      community.general.ldap_entry:
        server_uri: "{{ ldap_url }}"
        bind_dn: "{{ ldap_admin_dn }}"
        bind_pw: "{{ ldap_admin_pw }}"
        dn: "uid={{ item.uid }},ou=aliases,{{ ldap_base }}"
        objectClass: [inetOrgPerson, inetLocalMailRecipient]
        attributes:
          cn: "{{ item.uid }}"
          sn: "{{ item.uid }}"
          mail: "{{ item.uid }}@ldap.test"
          mailLocalAddress: "{{ item.aliases }}"
          mailRoutingAddress: "{{ item.uid }}@mbox.test"
      loop:
        - {uid: bob, aliases: [info@ldap.test, sales@ldap.test]}
        - {uid: carol, aliases: [sales@ldap.test]}

    - name: An alias added to an existing entry
      community.general.ldap_attrs:
        server_uri: "{{ ldap_url }}"
        bind_dn: "{{ ldap_admin_dn }}"
        bind_pw: "{{ ldap_admin_pw }}"
        dn: "uid=carol,ou=aliases,{{ ldap_base }}"
        attributes:
          mailLocalAddress: new@ldap.test
        state: present
"""


def collection_paths():
    return [p for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p] + [
        os.path.expanduser("~/.ansible/collections"), "/usr/share/ansible/collections"]


def test_entries_written_with_community_general(slapd_instance, conf, tmp_path):
    """The users' way to write entries: community.general's ldap_entry / ldap_attrs (python-ldap
    on the managed host). Runs where that collection and python3-ldap are installed; the project
    does not depend on either."""
    ldap = slapd_instance
    python = "/usr/bin/python3"
    if not any(os.path.isdir(os.path.join(p, "ansible_collections", "community", "general", "plugins",
                                          "modules")) for p in collection_paths()):
        pytest.skip("community.general not installed (optional)")
    if subprocess.run([python, "-c", "import ldap"], capture_output=True, check=False).returncode != 0:
        pytest.skip("python3-ldap not installed (optional)")
    playbook = tmp_path / "entries.yml"
    playbook.write_text(PLAYBOOK)
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(collection_paths()),
               ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", LDAPNOINIT="1")

    def play():
        proc = subprocess.run([ansible_playbook, "-i", "localhost,", "-c", "local",
                               "-e", "ansible_python_interpreter=%s" % python,
                               "-e", "ldap_url=%s ldap_base=%s ldap_admin_dn=%s ldap_admin_pw=%s" % (
                                   ldap.url, ldap.base, ldap.rootdn, ldap.rootpw),
                               str(playbook)], env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    assert "changed=2" in play()
    assert "changed=0" in play()  # idempotent: the entries are what the play says
    assert "mailLocalAddress: new@ldap.test" in ldap.ldapsearch("(uid=carol)", "mailLocalAddress")

    path = os.path.join(conf, "ldap-virtual.cf")
    run_module("lookup_client", dict(path=path, type="ldap", params=ldap_params(ldap),
                                     secret_params={"bind_pw": ldap.postfix_pw}))

    def q(key):
        settle(path)
        proc = subprocess.run(["postmap", "-c", conf, "-q", key, "ldap:" + path],
                              capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout

    assert q("info@ldap.test") == (0, "bob@%s\n" % MAILBOX_DOMAIN)
    assert q("new@ldap.test") == (0, "carol@%s\n" % MAILBOX_DOMAIN)
    rc, out = q("sales@ldap.test")
    assert rc == 0 and sorted(out.split()[0].split(",")) == ["bob@%s" % MAILBOX_DOMAIN, "carol@%s" % MAILBOX_DOMAIN]
    assert q("nobody@ldap.test")[0] == 1
