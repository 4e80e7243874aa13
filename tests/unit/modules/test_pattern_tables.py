"""lookup_table and postmap on tables without an index (regexp, pcre, cidr, texthash), with
real Postfix as the oracle: every entry written is looked up by the host's postmap -q, and
Postfix's own warnings decide what is refused."""

import os
import subprocess

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _postfix
import postfix_oracle
from module_runner import run_module


def postmap_q(conf, key, spec):
    # Postfix skips a pattern line it cannot parse with only a warning: none may appear.
    return postfix_oracle.postmap_q(conf, key, spec, no_warnings=True)


def snapshot(path):
    return path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino


# Entries and, for each, a string it matches first (before any later entry).
REGEXP = {
    "/^(.*)@old\\.tld$/": ("${1}@new.tld", "alice@old.tld", "alice@new.tld"),
    "/^postmaster@ (with space)$/": ("pm-space", "postmaster@ with space", "pm-space"),
    "/^CaseSensitive@/": ("folded-by-default", "casesensitive@x", "folded-by-default"),
    "/^Exact@/i": ("exact-case", "Exact@y", "exact-case"),
    "!/@/": ("no-at-sign", "localpart", "no-at-sign"),
    "/^[^@]+@(sub)\\.example$/": ("$1-matched", "bob@sub.example", "sub-matched"),
}


@pytest.mark.parametrize("type_name", ["regexp", "pcre"])
def test_pattern_table_written_and_read_by_real_postmap(tmp_path, conf, type_name):
    src = tmp_path / "generic"
    entries = dict((k, v[0]) for k, v in REGEXP.items())
    result = run_module("lookup_table", dict(path=str(src), config_dir=conf, type=type_name, entries=entries))
    assert result["changed"] and result["source_changed"] and result["reload_required"]
    assert result["index"] is None and result["compiled"] is False and result["count"] == len(REGEXP)
    # Keys are the patterns as written: never folded, never split at a blank inside the pattern.
    assert result["added"] == list(REGEXP)
    lines = src.read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == list(REGEXP)     # declared order
    for key, (_value, probe, expected) in REGEXP.items():
        assert postmap_q(conf, probe, "%s:%s" % (type_name, src)) == expected, key
    # The postmap module asks the host's postmap (Postfix's regex engine, not Python's).
    probes = [v[1] for v in REGEXP.values()] + ["nobody@elsewhere.tld"]
    lookups = run_module("postmap", dict(path=str(src), config_dir=conf, type=type_name, query=probes))["lookups"]
    assert lookups == dict([(v[1], v[2]) for v in REGEXP.values()] + [("nobody@elsewhere.tld", None)])

    # Idempotence: nothing changes, nothing is touched, no reload needed.
    before = snapshot(src)
    again = run_module("lookup_table", dict(path=str(src), config_dir=conf, type=type_name, entries=entries))
    assert not again["changed"] and not again["reload_required"] and snapshot(src) == before

    # Check mode reports a change and the reload it needs, and writes nothing.
    checked = run_module("lookup_table", dict(path=str(src), config_dir=conf, type=type_name,
                                              entries={"/^new@/": "x"}), check_mode=True)
    assert checked["changed"] and checked["reload_required"] and checked["added"] == ["/^new@/"]
    assert checked["diff"]["after"].endswith("/^new@/\tx\n")
    assert snapshot(src) == before

    # A changed value is rewritten in place.
    changed = run_module("lookup_table", dict(path=str(src), config_dir=conf, type=type_name,
                                              entries={"/^(.*)@old\\.tld$/": "${1}@newer.tld"}))
    assert changed["updated"] == ["/^(.*)@old\\.tld$/"] and changed["reload_required"]
    assert src.read_text().splitlines()[0] == "/^(.*)@old\\.tld$/\t${1}@newer.tld"
    assert postmap_q(conf, "carol@old.tld", "%s:%s" % (type_name, src)) == "carol@newer.tld"


@pytest.mark.parametrize("type_name,message", [
    ("regexp", "Unmatched ( or \\("),
    ("pcre", "missing closing parenthesis"),
])
@pytest.mark.parametrize("check_mode", [False, True])
def test_bad_pattern_refused_with_path_and_line_file_untouched(tmp_path, conf, type_name, message, check_mode):
    src = tmp_path / "generic"
    src.write_text("# rewrite\n/^a@/ b\n")
    os.utime(src, (1000, 1000))
    before = snapshot(src)
    result = run_module("lookup_table", dict(path=str(src), config_dir=conf, type=type_name,
                                             entries={"/(unclosed/": "x"}), check_mode=check_mode, fail_ok=True)
    assert result["failed"]
    # The line of the new entry in the new text, Postfix's own words.
    assert result["msg"].startswith("%s:3: " % src) and message in result["msg"], result["msg"]
    assert snapshot(src) == before
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_new_source_refused_is_not_created(tmp_path, conf):
    src = tmp_path / "generic"
    result = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="regexp",
                                             entries={"/a/": "ok", "/b/q": "unknown flag"}), fail_ok=True)
    assert result["msg"] == '%s:2: unknown regexp option "q": skipping this rule' % src
    assert os.listdir(tmp_path) == ["etc"]


@pytest.mark.parametrize("type_name", ["regexp", "pcre", "cidr"])
def test_exclusive_puts_entries_in_declared_order(tmp_path, conf, type_name):
    src = tmp_path / "table"
    if type_name == "cidr":
        wide, narrow, other = "10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24"
        probe = "10.1.2.3"
    else:
        wide, narrow, other = "/@example\\.tld$/", "/^admin@example\\.tld$/", "/^old@/"
        probe = "admin@example.tld"
    src.write_text("# header\n\n%s\twide\n# the narrow one\n%s\tnarrow\n\n%s\tother\n" % (wide, narrow, other))
    spec = "%s:%s" % (type_name, src)
    assert postmap_q(conf, probe, spec) == "wide"       # the first match wins
    args = dict(path=str(src), config_dir=conf, type=type_name, exclusive=True,
                entries={narrow: "narrow", wide: "wide"})
    result = run_module("lookup_table", args)
    assert result["changed"] and result["removed"] == [other] and result["reload_required"]
    # The narrow entry moved up with its comment; the header and blank lines stayed.
    assert src.read_text() == "# header\n\n# the narrow one\n%s\tnarrow\n%s\twide\n\n" % (narrow, wide)
    assert postmap_q(conf, probe, spec) == "narrow"
    before = snapshot(src)
    again = run_module("lookup_table", args)
    assert not again["changed"] and snapshot(src) == before
    # New entries are appended in the declared order.
    more = dict(args, entries={narrow: "narrow", wide: "wide", other: "other"}, exclusive=False)
    run_module("lookup_table", more)
    assert src.read_text().splitlines()[-1] == "%s\tother" % other


def test_cidr_table_queried_with_an_address(tmp_path, conf):
    src = tmp_path / "client_access"
    entries = {"192.0.2.0/24": "REJECT test net", "2001:db8::/32": "REJECT doc net", "198.51.100.7": "OK",
               "!203.0.113.0/24": "DUNNO"}
    result = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="cidr", entries=entries))
    assert result["changed"] and result["index"] is None and result["added"] == list(entries)
    spec = "cidr:%s" % src
    assert postmap_q(conf, "192.0.2.77", spec) == "REJECT test net"
    assert postmap_q(conf, "2001:db8:1::5", spec) == "REJECT doc net"
    assert postmap_q(conf, "198.51.100.7", spec) == "OK"
    assert postmap_q(conf, "198.51.100.8", spec) == "DUNNO"
    lookups = run_module("postmap", dict(path=str(src), config_dir=conf, type="cidr",
                                         query=["192.0.2.1", "203.0.113.5"]))["lookups"]
    assert lookups == {"192.0.2.1": "REJECT test net", "203.0.113.5": None}
    bad = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="cidr",
                                          entries={"10.0.0.0/33": "REJECT"}), fail_ok=True)
    assert bad["msg"] == '%s:5: bad mask length in "10.0.0.0/33": skipping this rule' % src


def test_texthash_table_folds_keys_like_hash(tmp_path, conf):
    src = tmp_path / "relocated"
    result = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="texthash",
                                             entries={"Old@Example.TLD": "new@example.tld"}))
    assert result["added"] == ["old@example.tld"] and result["reload_required"] and result["index"] is None
    assert postmap_q(conf, "OLD@example.tld", "texthash:%s" % src) == "new@example.tld"
    again = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="texthash",
                                            entries={"old@example.tld": "new@example.tld"}))
    assert not again["changed"]
    dump = run_module("postmap", dict(path=str(src), config_dir=conf, type="texthash", dump=True))
    assert dump["records"] == {"old@example.tld": "new@example.tld"}


def test_if_endif_blocks_kept_and_not_edited(tmp_path, conf):
    src = tmp_path / "generic"
    text = "/^a@/\tA\nif /@example\\.tld$/\n/^b@/\tB\nendif\n"
    src.write_text(text)
    inside = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="regexp",
                                             entries={"/^b@/": "changed"}), fail_ok=True)
    assert inside["msg"] == "%s:3: pattern '/^b@/' is inside an if/endif block; entries there are not edited" % src
    exclusive = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="regexp", exclusive=True,
                                                entries={"/^a@/": "A"}), fail_ok=True)
    assert exclusive["msg"] == "%s:2: exclusive cannot manage a regexp table with if/endif blocks" % src
    assert src.read_text() == text
    outside = run_module("lookup_table", dict(path=str(src), config_dir=conf, type="regexp",
                                              entries={"/^a@/": "A2", "/^c@/": "C"}))
    assert outside["count"] == 3
    assert src.read_text() == "/^a@/\tA2\nif /@example\\.tld$/\n/^b@/\tB\nendif\n/^c@/\tC\n"
    assert postmap_q(conf, "b@example.tld", "regexp:%s" % src) == "B"
    assert postmap_q(conf, "c@x", "regexp:%s" % src) == "C"


def test_host_without_the_type_fails_clearly(tmp_path, conf, monkeypatch):
    monkeypatch.setattr(_postfix.Binary, "map_types", lambda self: ["cidr", "hash", "regexp"])
    result = run_module("lookup_table", dict(path=str(tmp_path / "generic"), config_dir=conf, type="pcre",
                                             entries={"/a/": "b"}), fail_ok=True)
    assert "this host's Postfix has no pcre table type (postconf -m lists: cidr hash regexp)" in result["msg"]
    assert not os.path.exists(tmp_path / "generic")


def test_postmap_module_checks_a_pattern_source(tmp_path, conf):
    src = tmp_path / "generic"
    src.write_text("/^a@/ A\n")
    ok = run_module("postmap", dict(path=str(src), config_dir=conf, type="regexp"))
    assert ok["changed"] is False and ok["index"] is None and ok["rebuild_reason"] is None and ok["count"] == 1
    src.write_text("/^a@/ A\n/[z-a]/ B\n")
    bad = run_module("postmap", dict(path=str(src), config_dir=conf, type="regexp"), fail_ok=True)
    assert bad["failed"] and bad["msg"].startswith("%s:2: " % src)
    dump = run_module("postmap", dict(path=str(src), config_dir=conf, type="regexp", dump=True), fail_ok=True)
    assert "cannot be dumped" in dump["msg"]


def test_type_resolved_from_main_cf(tmp_path, conf):
    src = tmp_path / "generic"
    with open(os.path.join(conf, "main.cf"), "a") as f:
        f.write("smtp_generic_maps = pcre:%s\n" % src)
    os.utime(os.path.join(conf, "main.cf"), (1, 1))
    result = run_module("lookup_table", dict(path=str(src), config_dir=conf, entries={"/^Root@/": "admin"}))
    assert result["type"] == "pcre" and result["index"] is None and result["added"] == ["/^Root@/"]
    assert postmap_q(conf, "root@x", "pcre:%s" % src) == "admin"


def test_indexed_tables_never_need_a_reload(tmp_path, conf):
    result = run_module("lookup_table", dict(path=str(tmp_path / "virtual"), config_dir=conf, type="hash",
                                             entries={"a@x": "b"}))
    assert result["changed"] and result["reload_required"] is False


def test_pattern_table_as_shipped(tmp_path, conf):
    """Through ansible (AnsiballZ, the target's /usr/bin/python3): the check runs there too."""
    import json
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(root, ".build", "collections"), ANSIBLE_NOCOLOR="1")

    def ansible(args):
        argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,", "-c",
                "local", "-e", "ansible_python_interpreter=/usr/bin/python3", "-m", "mailops.postfix.lookup_table",
                "-a", json.dumps(args)]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        head, _sep, body = proc.stdout.partition(" => ")
        return dict(json.loads(body), failed="FAILED!" in head)

    src = str(tmp_path / "generic")
    good = ansible(dict(path=src, config_dir=conf, type="pcre", entries={"/^(.+)@old\\.tld$/": "$1@new.tld"}))
    assert good["changed"] and good["reload_required"], good
    assert postmap_q(conf, "x@old.tld", "pcre:" + src) == "x@new.tld"
    bad = ansible(dict(path=src, config_dir=conf, type="pcre", entries={"/(/": "x"}))
    assert bad["failed"] and bad["msg"].startswith(src + ":2: "), bad
