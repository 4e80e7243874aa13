# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the Molecule tests: the scenario's hosts, what inventory declares, real SMTP."""

from __future__ import annotations

import json
import os
import time
import uuid

import testinfra
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
EXAMPLES = os.path.join(ROOT, "playbooks", "examples", "inventory")

# Sends one message; prints JSON: {"ok": true} or {"refused": {rcpt: [code, text]}}.
SMTP_CLIENT = r"""
import json, smtplib, sys, time
from email.message import EmailMessage
server, sender, rcpt, token = sys.argv[1:5]
msg = EmailMessage()
msg["From"], msg["To"], msg["Subject"] = sender, rcpt, token
msg.set_content("test message " + token + "\n")
for attempt in range(30):
    try:
        s = smtplib.SMTP(server, 25, timeout=20)
        break
    except OSError:
        time.sleep(1)
else:
    raise SystemExit("no SMTP service on " + server)
try:
    s.send_message(msg)
    print(json.dumps({"ok": True}))
except smtplib.SMTPRecipientsRefused as e:
    print(json.dumps({"refused": {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}}))
finally:
    s.quit()
"""


def inventory():
    with open(os.environ["MOLECULE_INVENTORY_FILE"], encoding="utf-8") as f:
        return yaml.safe_load(f)


def group(name):
    return sorted((inventory().get(name) or {}).get("hosts") or {})


def platform(name):
    with open(os.environ["MOLECULE_FILE"], encoding="utf-8") as f:
        config = yaml.safe_load(os.path.expandvars(f.read()))
    return next(p for p in config["platforms"] if p["name"] == name)


def host(name):
    """A testinfra host on the container itself (podman exec, no Ansible round trip)."""
    return testinfra.get_host("podman://" + name)


def _load(path):
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _targets(value):
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(t).strip() for t in value]


def declared(hostname, overrides=None):
    """(virtual map entries, alias entries) the example inventory declares for a host.

    Written independently of the role: fleet domains then host domains (a host entry for a
    fleet domain adds aliases and wins per alias); postmaster -> root unless declared."""
    v = dict(_load(os.path.join(EXAMPLES, "group_vars", "mail_servers.yml")))
    v.update(_load(os.path.join(EXAMPLES, "host_vars", hostname + ".yml")))
    v.update(overrides or {})
    domains = {}
    for item in (v.get("postfix_server_virtual_alias_domains") or []) + (v.get("postfix_server_virtual_alias_domains_host") or []):
        d = domains.setdefault(item["domain"].lower(), {"aliases": {}})
        d["aliases"].update(item.get("aliases") or {})
        if item.get("catch_all") is not None:
            d["catch_all"] = item["catch_all"]
    virtual = {}
    for domain, d in domains.items():
        for alias, targets in d["aliases"].items():
            key = alias.lower() if "@" in alias else "%s@%s" % (alias.lower(), domain)
            virtual[key] = _targets(targets)
        if "catch_all" in d:
            virtual["@" + domain] = _targets(d["catch_all"])
    aliases = {"postmaster": ["root"]}
    for layer in (v.get("postfix_server_aliases"), v.get("postfix_server_aliases_host")):
        for name, targets in (layer or {}).items():
            aliases[name.lower()] = _targets(targets)
    return virtual, aliases


def inventory_table_type():
    """The table type the scenario's converge asks for (None: the host's default)."""
    path = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")
    if not os.path.exists(path):
        return None
    plays = _load(path)
    return (plays[0].get("vars") or {}).get("postfix_server_table_type")


def map_ref(mx, param):
    """TYPE:PATH of the first map main.cf names in param (virtual_alias_maps, alias_maps)."""
    return mx.check_output("postconf -h %s", param).replace(",", " ").split()[0]


def send(client, server_ip, rcpt, sender="tester@example.net"):
    token = "mailops-" + uuid.uuid4().hex
    out = client.check_output("python3 -c %s %s %s %s %s", SMTP_CLIENT, server_ip, sender, rcpt, token)
    return token, json.loads(out.splitlines()[-1])


def wait_for_mail(box_host, user, token, timeout=60):
    """True once the user's mailbox (/var/mail/USER) holds the message with this token."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if box_host.run("grep -qs -- %s /var/mail/%s", token, user).rc == 0:
            return True
        time.sleep(0.5)
    return False


def maildir_files(h, directory, token):
    """Message files of a Maildir (new/ or cur/) holding the token."""
    out = h.run("grep -rlsF -- %s %s/new %s/cur", token, directory, directory).stdout
    return sorted(out.split())


def wait_for_maildir(h, directory, token, timeout=30):
    """The Maildir's files holding the token once there; [] after the timeout, or as soon as the
    queue has been empty three polls in a row without them (delivered elsewhere, or bounced)."""
    deadline = time.time() + timeout
    empty = 0
    while time.time() < deadline:
        found = maildir_files(h, directory, token)
        if found:
            return found
        empty = empty + 1 if h.run("postqueue -j").stdout.strip() == "" else 0
        if empty > 2:
            return maildir_files(h, directory, token)
        time.sleep(0.5)
    return []


def mail_log(h):
    return h.run("postqueue -p; tail -n 30 /var/log/mail.log /var/log/postfix.log 2>/dev/null").stdout
