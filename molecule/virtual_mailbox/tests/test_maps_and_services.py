# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table families (postfix_server_maps) and master.cf services (postfix_server_master_cf) of the
scenario's inventory/hosts.yml, proven on every mail server with real Postfix and SMTP: a
transport map sends the provider's domain through a service of its own, a secret SASL map is
0600 and never logged, a regexp header check rejects, submission answers on 587."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tests"))
import mailtest as mt  # noqa: E402

SCENARIO_INVENTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inventory", "hosts.yml")
HOSTS = mt.group("mail_servers")
PROVIDER = mt.group("providers")[0]
# Index file of each indexed type (the role writes the host's default type here).
SUFFIX = {"hash": ".db", "lmdb": ".lmdb", "cdb": ".cdb", "btree": ".db"}


def group_vars():
    return mt._load(SCENARIO_INVENTORY)["mail_servers"]["vars"]


def declared_maps():
    return group_vars()["postfix_server_maps"]


def sasl_password():
    return next(iter(declared_maps()["sasl_passwd"]["entries"].values()))


def ref(h, param):
    """(type, path) of the only table main.cf names in param."""
    value = h.check_output("postconf -h %s", param)
    assert "," not in value and " " not in value.strip(), value
    kind, path = value.strip().split(":", 1)
    return kind, path


def log_since(h, mark):
    """Lines of the Postfix log written after the mark (its line count)."""
    return h.run("tail -n +%s /var/log/postfix.log", str(mark + 1)).stdout


def log_mark(h):
    return int(h.check_output("wc -l < /var/log/postfix.log"))


@pytest.fixture(scope="module")
def provider():
    return mt.host(PROVIDER)


@pytest.mark.parametrize("name", HOSTS)
def test_main_cf_names_every_map(name):
    h = mt.host(name)
    assert ref(h, "transport_maps")[1] == "/etc/postfix/transport"
    assert ref(h, "smtp_sasl_password_maps")[1] == "/etc/postfix/sasl_passwd"
    assert ref(h, "header_checks") == ("regexp", "/etc/postfix/header_checks")


@pytest.mark.parametrize("name", HOSTS)
def test_every_entry_answers_through_real_postmap(name):
    h = mt.host(name)
    for param, table in (("transport_maps", "transport"), ("smtp_sasl_password_maps", "sasl_passwd"),
                         ("header_checks", "header_checks")):
        kind, path = ref(h, param)
        for key, value in declared_maps()[table]["entries"].items():
            # A regexp table is asked with a string its pattern matches.
            probe = "Subject: please mailops-refuse-me" if kind == "regexp" else key
            got = h.run("postmap -q %s %s:%s", probe, kind, path)
            assert got.rc == 0 and got.stdout.strip() == value, (table, key)


@pytest.mark.parametrize("name", HOSTS)
def test_secret_map_files_are_root_only(name):
    h = mt.host(name)
    kind, path = ref(h, "smtp_sasl_password_maps")
    for f in (path, path + SUFFIX[kind]):
        assert h.file(f).exists, f
        assert (h.file(f).mode, h.file(f).user) == (0o600, "root"), f


@pytest.mark.parametrize("name", HOSTS)
def test_transport_map_sends_the_provider_domain_through_its_own_service(name, provider):
    h = mt.host(name)
    mark = log_mark(h)
    token, result = mt.send(provider, mt.platform(name)["ip"], "chris@example.tld")
    assert result == {"ok": True}, result
    assert mt.wait_for_mail(provider, "chris", token), mt.mail_log(h) + mt.mail_log(provider)
    # master.cf's partner service logs as postfix/partner (its -o syslog_name).
    deadline = time.time() + 30
    while time.time() < deadline:
        lines = log_since(h, mark)
        if re.search(r"postfix/partner/smtp\[\d+\]: .*to=<chris@example\.net>.*relay=10\.231\.14\.20\[10\.231\.14\.20\]:25"
                     r".*status=sent", lines):
            break
        time.sleep(0.5)
    else:
        pytest.fail("no delivery through the partner transport:\n" + lines)


@pytest.mark.parametrize("name", HOSTS)
def test_regexp_header_check_rejects_the_subject(name, provider):
    client = (
        "import smtplib, sys\n"
        "s = smtplib.SMTP(sys.argv[1], 25, timeout=20)\n"
        "try:\n"
        "    s.sendmail('tester@example.net', ['support@example.tld'],\n"
        "               'Subject: please mailops-refuse-me\\r\\n\\r\\nbody\\r\\n')\n"
        "    print('accepted')\n"
        "except smtplib.SMTPDataError as e:\n"
        "    print(e.smtp_code, e.smtp_error.decode())\n"
    )
    out = provider.check_output("python3 -c %s %s", client, mt.platform(name)["ip"])
    assert out.startswith("550 ") and "subject refused by header_checks" in out, out


@pytest.mark.parametrize("name", HOSTS)
def test_submission_listens_on_587(name, provider):
    h = mt.host(name)
    assert h.check_output("postconf -M submission/inet").split()[:8] == \
        ["submission", "inet", "n", "-", "y", "-", "-", "smtpd"]
    overrides = h.check_output("postconf -P submission/inet/syslog_name")
    assert overrides.strip() == "submission/inet/syslog_name = postfix/submission"
    client = (
        "import smtplib, sys\n"
        "s = smtplib.SMTP(timeout=20)\n"
        "code, banner = s.connect(sys.argv[1], 587)\n"
        "print(code, banner.decode())\n"
        "s.quit()\n"
    )
    mark = log_mark(h)
    out = provider.check_output("python3 -c %s %s", client, mt.platform(name)["ip"])
    assert out.startswith("220 %s ESMTP" % name), out
    deadline = time.time() + 10
    while "postfix/submission/smtpd" not in log_since(h, mark) and time.time() < deadline:
        time.sleep(0.5)
    assert "postfix/submission/smtpd" in log_since(h, mark)


def test_changed_password_never_reaches_the_log(tmp_path):
    """A changed SASL password, applied with ansible-playbook -v --diff: the diff names the key,
    no old or new password appears anywhere in the output, real postmap answers the new one."""
    old = sasl_password()
    new = "molecule-Rotated-55e0"
    maps = dict(declared_maps())
    maps["sasl_passwd"] = dict(maps["sasl_passwd"], entries={"[10.231.14.20]": new})
    extra = tmp_path / "extra.yml"
    extra.write_text(yaml.safe_dump({"postfix_server_maps": maps}))
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    cmd = ["ansible-playbook", "-v", "--diff", "mailops.postfix.site", "-i", inventory,
           "-e", "target=mail_servers", "-e", "@%s" % extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert old not in out and new not in out
    assert "[10.231.14.20]" in out  # the diff shows which key changed
    for name in HOSTS:
        h = mt.host(name)
        kind, path = ref(h, "smtp_sasl_password_maps")
        assert h.check_output("postmap -q %s %s:%s", "[10.231.14.20]", kind, path) == new
        assert h.file(path).mode == 0o600 and h.file(path + SUFFIX[kind]).mode == 0o600
