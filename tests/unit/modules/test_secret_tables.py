"""Secret tables (smtp_sasl_password_maps): lookup_table's secret_entries / secret and the
postmap module's index mode, checked with real Postfix (postmap -q, postmap's own modes) and
a real ansible-playbook run whose output must never hold a password."""

import json
import os
import stat
import subprocess
import sys

import pytest

from module_runner import run_module
from postfix_oracle import postmap_q

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TARGET_PYTHON = "/usr/bin/python3"
RELAY = "[smtp.example.net]:587"
OTHER = "[mail.example.org]:submission"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# -- a real ansible-playbook run ----------------------------------------------------------------
PLAY = """\
- hosts: localhost
  gather_facts: false
  vars:
    relay_password: "%(password)s"
    other_password: "%(other)s"
  tasks:
    - name: SASL passwords
      mailops.postfix.lookup_table:
        path: "%(path)s"
        config_dir: "%(conf)s"
        type: hash
        secret_entries:
          "%(relay)s": "relayuser:{{ relay_password }}"
          "%(other_key)s": "otheruser:{{ other_password }}"
"""


def playbook(tmp_path, conf, password, other, *flags):
    path = str(tmp_path / "sasl_passwd")
    play = tmp_path / "play.yml"
    play.write_text(PLAY % dict(password=password, other=other, path=path, conf=conf, relay=RELAY, other_key=OTHER))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_DEPRECATION_WARNINGS="0")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % TARGET_PYTHON, str(play)] + list(flags)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path, proc.stdout, proc.stderr


def recap_changed(out):
    line = [x for x in out.splitlines() if x.startswith("localhost") and "changed=" in x][-1]
    return int(line.split("changed=")[1].split()[0])


def test_playbook_never_shows_a_password(tmp_path, conf):
    first, second, other = "Pw-Alpha-7f3e9q", "Pw-Beta-c41d2z", "Pw-Gamma-93ab1k"
    path, out, err = playbook(tmp_path, conf, first, other, "-v", "--diff")
    for secret in (first, other):
        assert secret not in out and secret not in err
    assert recap_changed(out) == 1
    # The diff shows the keys, the values hidden.
    assert "+%s <hidden>" % RELAY in out and "+%s <hidden>" % OTHER in out
    assert mode(path) == 0o600 and mode(path + ".db") == 0o600
    assert os.stat(path).st_uid == os.geteuid()
    # Real Postfix reads the index.
    assert postmap_q(conf, RELAY, "hash:" + path) == "relayuser:" + first
    assert postmap_q(conf, OTHER, "hash:" + path) == "otheruser:" + other

    # A new password, at the highest verbosity.
    path, out, err = playbook(tmp_path, conf, second, other, "-vvv", "--diff")
    for secret in (first, second, other):
        assert secret not in out and secret not in err
    assert recap_changed(out) == 1
    assert "-%s <hidden>" % RELAY in out and "+%s <hidden, changed>" % RELAY in out
    assert postmap_q(conf, RELAY, "hash:" + path) == "relayuser:" + second
    assert mode(path) == 0o600 and mode(path + ".db") == 0o600

    # The same again: nothing changes, nothing is touched.
    before = [os.stat(p).st_mtime_ns for p in (path, path + ".db")]
    path, out, err = playbook(tmp_path, conf, second, other, "-vvv", "--diff")
    assert recap_changed(out) == 0
    for secret in (first, second, other):
        assert secret not in out and secret not in err
    assert [os.stat(p).st_mtime_ns for p in (path, path + ".db")] == before


# -- modes ----------------------------------------------------------------------------------
def test_loose_source_and_index_are_tightened_check_mode_first(tmp_path, conf):
    src = tmp_path / "sasl_passwd"
    src.write_text("# old: %s user:Old-Secret-1\n%s user:Pw-1\n" % (RELAY, RELAY))
    os.chmod(src, 0o644)
    subprocess.run(["postmap", "-c", conf, "hash:%s" % src], check=True)
    os.chmod(str(src) + ".db", 0o644)
    args = dict(path=str(src), config_dir=conf, type="hash", secret_entries={RELAY: "user:Pw-1"})

    checked = run_module("lookup_table", args, check_mode=True)
    assert checked["changed"] and not checked["source_changed"]
    assert checked["secured"] == [
        "%s: mode 0644 owner 0 -> mode 0600 owner 0 (secret table)" % src,
        "%s.db: mode 0644 owner 0 -> mode 0600 owner 0 (secret table)" % src]
    assert mode(src) == 0o644 and mode(str(src) + ".db") == 0o644     # check mode: reported only
    assert [d["before_header"] for d in checked["diff"]] == ["%s (attributes)" % src, "%s.db (attributes)" % src]
    assert checked["diff"][0]["before"] == "mode 0644 owner 0\n" and checked["diff"][0]["after"] == "mode 0600 owner 0\n"

    done = run_module("lookup_table", args)
    assert done["changed"] and len(done["secured"]) == 2 and not done["compiled"]
    assert mode(src) == 0o600 and mode(str(src) + ".db") == 0o600
    again = run_module("lookup_table", args)
    assert not again["changed"] and again["secured"] == []


def test_tightening_gives_a_file_to_root(tmp_path, conf):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    src = tmp_path / "sasl_passwd"
    src.write_text("%s user:Pw-1\n" % RELAY)
    os.chown(src, 65534, 0)
    os.chmod(src, 0o600)
    result = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="hash",
                                             secret_entries={RELAY: "user:Pw-1"}))
    assert result["secured"][0] == "%s: mode 0600 owner 65534 -> mode 0600 owner 0 (secret table)" % src
    assert os.stat(src).st_uid == 0 and os.stat(src).st_gid == 0
    assert os.stat(str(src) + ".db").st_uid == 0 and mode(str(src) + ".db") == 0o600


def test_secret_diff_hides_values_and_old_entries_in_comments(tmp_path, conf):
    src = tmp_path / "sasl_passwd"
    src.write_text("# was: %s user:Old-Secret-1\n%s user:Pw-1\n\n%s\n  other:Pw-cont\n" % (RELAY, RELAY, OTHER))
    os.chmod(src, 0o600)
    result = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="hash",
                                             secret_entries={RELAY: "user:Pw-2"}))
    text = json.dumps(result)
    for secret in ("Old-Secret-1", "Pw-1", "Pw-2", "Pw-cont"):
        assert secret not in text
    assert result["diff"]["before"] == "# <hidden>\n%s <hidden>\n\n%s <hidden>\n  <hidden>\n" % (RELAY, OTHER)
    assert result["diff"]["after"] == "# <hidden>\n%s <hidden, changed>\n\n%s <hidden>\n  <hidden>\n" % (RELAY, OTHER)
    assert result["updated"] == [RELAY]
    assert postmap_q(conf, RELAY, "hash:%s" % src) == "user:Pw-2"
    # state=absent with secret: true hides the diff too.
    gone = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="hash", state="absent", secret=True,
                                           entries={RELAY: None}))
    assert gone["removed"] == [RELAY] and "Pw-" not in json.dumps(gone)
    assert gone["diff"]["after"] == "# <hidden>\n\n%s <hidden>\n  <hidden>\n" % OTHER
    assert postmap_q(conf, RELAY, "hash:%s" % src) is None


def test_errors_and_warnings_of_a_secret_table_never_quote_a_value(tmp_path, conf):
    src = tmp_path / "sasl_passwd"
    # An unbalanced quote: postmap's warning would quote the whole line.
    src.write_text('"%s user:Leaky-Pw-1\n' % RELAY)
    bad = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="hash",
                                          secret_entries={OTHER: "u:Pw-2"}), fail_ok=True)
    assert bad["failed"] and "Leaky-Pw-1" not in json.dumps(bad)
    assert bad["msg"].startswith("%s:1: unbalanced" % src)
    # Without secret, the same message quotes the line (Postfix's wording).
    plain = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="hash",
                                            entries={OTHER: "u:Pw-2"}), fail_ok=True)
    assert "Leaky-Pw-1" in plain["msg"]
    # A value that cannot be one line.
    src.write_text("%s user:Pw-1\n%s user:Pw-1b\n" % (RELAY, RELAY))
    newline = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="hash",
                                              secret_entries={OTHER: "u:Multi\nLine-Pw"}), fail_ok=True)
    assert newline["failed"] and "Multi" not in json.dumps(newline) and "Line-Pw" not in json.dumps(newline)
    # A duplicate key warns with the key only.
    dup = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="hash", secret=True, entries={}))
    assert dup["source_warnings"] == ['%s:2: duplicate entry: "%s"' % (src, RELAY)]
    assert "Pw-1" not in json.dumps(dup)


def test_secret_with_values_in_entries_is_refused(tmp_path, conf):
    result = run_module("lookup_table", dict(path=str(tmp_path / "s"), config_dir=conf, type="hash", secret=True,
                                             entries={"a": "Pw-logged"}), fail_ok=True)
    assert result["failed"] and "use secret_entries" in result["msg"] and not os.path.exists(tmp_path / "s")


def test_entries_and_secret_entries_are_mutually_exclusive(tmp_path, conf):
    result = run_module("lookup_table", dict(path=str(tmp_path / "s"), config_dir=conf, type="hash",
                                             entries={"a": "b"}, secret_entries={"c": "Pw-x"}), fail_ok=True)
    assert result["failed"] and "mutually exclusive" in result["msg"]


# -- the postmap module: a hand-made 0600 source -----------------------------------------------
@pytest.mark.parametrize("type_name,suffix", [("hash", ".db"), ("cdb", ".cdb"), ("lmdb", ".lmdb")])
def test_postmap_module_gives_a_protected_source_a_protected_index(tmp_path, conf, type_name, suffix):
    src = tmp_path / "sasl_passwd"
    src.write_text("%s user:Pw-1\n" % RELAY)
    os.chmod(src, 0o600)
    # Real postmap protects a new index of a 0600 source the same way.
    real = tmp_path / "real"
    real.mkdir()
    (real / "sasl_passwd").write_text("%s user:Pw-1\n" % RELAY)
    os.chmod(real / "sasl_passwd", 0o600)
    subprocess.run(["postmap", "-c", conf, "%s:%s" % (type_name, real / "sasl_passwd")], check=True)
    assert mode(str(real / "sasl_passwd") + suffix) == 0o600

    result = run_module("postmap", dict(path=str(src), config_dir=conf, type=type_name))
    assert result["changed"] and mode(str(src) + suffix) == 0o600
    # Real postmap leaves an old world-readable hash or lmdb index (made before the source
    # was protected) world-readable (cdb writes a new file and renames it); we do not.
    os.chmod(str(real / "sasl_passwd") + suffix, 0o644)
    os.utime(str(real / "sasl_passwd") + suffix, (1, 1))
    subprocess.run(["postmap", "-c", conf, "%s:%s" % (type_name, real / "sasl_passwd")], check=True)
    assert mode(str(real / "sasl_passwd") + suffix) == (0o600 if type_name == "cdb" else 0o644)
    os.chmod(str(src) + suffix, 0o644)
    src.write_text("%s user:Pw-2\n" % RELAY)
    os.utime(str(src) + suffix, (1, 1))
    result = run_module("postmap", dict(path=str(src), config_dir=conf, type=type_name))
    assert result["changed"] and mode(str(src) + suffix) == 0o600
    assert postmap_q(conf, RELAY, "%s:%s" % (type_name, src)) == "user:Pw-2"
    # A source that others may read: an existing index keeps its mode (as before).
    os.chmod(src, 0o644)
    os.chmod(str(src) + suffix, 0o640)
    os.utime(str(src) + suffix, (1, 1))
    run_module("postmap", dict(path=str(src), config_dir=conf, type=type_name))
    assert mode(str(src) + suffix) == 0o640
