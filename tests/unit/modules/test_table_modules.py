"""lookup_table, aliases, postmap and newaliases modules, checked with real Postfix tools."""

import os
import subprocess

import pytest

from module_runner import run_module

TYPES = ["hash", "cdb", "lmdb"]


def postmap_q(conf, key, spec, tool="postmap", fold=True):
    argv = [tool, "-c", conf] + ([] if fold else ["-f"]) + ["-q", key, spec]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.stdout.rstrip("\n") if proc.returncode == 0 else None


def postmap_s(conf, spec, tool="postmap"):
    out = subprocess.run([tool, "-c", conf, "-s", spec], capture_output=True, text=True, check=True).stdout
    return dict(line.split("\t", 1) if "\t" in line else line.split(None, 1) for line in out.splitlines())


@pytest.fixture
def conf(tmp_path):
    """A config dir whose main.cf references nothing: the type comes from the task."""
    d = tmp_path / "etc"
    d.mkdir()
    (d / "main.cf").write_text("compatibility_level = 3.6\nmyhostname = mx.example.tld\n")
    settle(d / "main.cf")
    return str(d)


def settle(path):
    """Date a just-written main.cf back: Postfix tools wait for a main.cf modified in the
    last seconds to settle before reading it, which only slows the tests down."""
    old = os.stat(path).st_mtime - 60
    os.utime(path, (old, old))


def table_args(tmp_path, conf, type_name, **kw):
    args = dict(path=str(tmp_path / "virtual"), config_dir=conf, type=type_name)
    args.update(kw)
    return args


SEED = {
    "Support@chrisbinnie.tld": ["chris", "alice"],
    "chris@chrisbinnie.tld": "chrisbinnie@linux.tld",
    "STRASSEß@chrisbinnie.tld": "strasse",
}


@pytest.mark.parametrize("type_name", TYPES)
def test_lookup_table_compiles_what_real_postmap_reads(tmp_path, conf, type_name):
    result = run_module("lookup_table", table_args(tmp_path, conf, type_name, entries=SEED))
    assert result["changed"] and result["compiled"] and result["count"] == 3
    spec = "%s:%s" % (type_name, tmp_path / "virtual")
    assert postmap_q(conf, "support@chrisbinnie.tld", spec) == "chris, alice"
    assert postmap_q(conf, "chris@chrisbinnie.tld", spec) == "chrisbinnie@linux.tld"
    # postmap folds non-ASCII keys with full Unicode case folding when SMTPUTF8 is on.
    assert postmap_q(conf, "strassess@chrisbinnie.tld", spec) == "strasse"
    assert postmap_q(conf, "nobody@chrisbinnie.tld", spec) is None
    # Our query agrees with real postmap -q, including folding of the query key.
    values = run_module("postmap", dict(path=str(tmp_path / "virtual"), config_dir=conf, type=type_name,
                                        query=["SUPPORT@chrisbinnie.tld", "nobody@chrisbinnie.tld"]))["lookups"]
    assert values == {"SUPPORT@chrisbinnie.tld": "chris, alice", "nobody@chrisbinnie.tld": None}
    if type_name != "cdb":  # Postfix 3.7's cdb map has no sequence operation (postmap -s)
        dump = run_module("postmap", dict(path=str(tmp_path / "virtual"), config_dir=conf, type=type_name,
                                          dump=True))["records"]
        assert dump == postmap_s(conf, spec)


@pytest.mark.parametrize("type_name", TYPES)
def test_second_run_changes_nothing_and_touches_nothing(tmp_path, conf, type_name):
    args = table_args(tmp_path, conf, type_name, entries=SEED)
    run_module("lookup_table", args)
    src = tmp_path / "virtual"
    index = tmp_path / ("virtual" + {"hash": ".db", "cdb": ".cdb", "lmdb": ".lmdb"}[type_name])
    before = (os.stat(src).st_mtime_ns, os.stat(index).st_mtime_ns, os.stat(index).st_ino)
    again = run_module("lookup_table", args)
    assert again["changed"] is False and again["compiled"] is False and "diff" not in again
    assert (os.stat(src).st_mtime_ns, os.stat(index).st_mtime_ns, os.stat(index).st_ino) == before
    assert run_module("postmap", dict(path=str(src), config_dir=conf, type=type_name))["changed"] is False


def test_check_mode_touches_nothing_and_reports_the_diff(tmp_path, conf):
    src = tmp_path / "virtual"
    src.write_text("# hand comment\nold@x.tld\tkeep\n")
    result = run_module("lookup_table", table_args(tmp_path, conf, "hash", entries={"new@x.tld": "n"}),
                        check_mode=True)
    assert result["changed"] and result["added"] == ["new@x.tld"]
    assert result["diff"]["after"] == "# hand comment\nold@x.tld\tkeep\nnew@x.tld\tn\n"
    assert src.read_text() == "# hand comment\nold@x.tld\tkeep\n"
    assert not (tmp_path / "virtual.db").exists()
    assert result["rebuild_reason"] == "index missing"


def test_exclusive_keeps_comments_and_blank_lines(tmp_path, conf):
    src = tmp_path / "virtual"
    src.write_text("# aliases for x.tld\n\nA@x.tld\ta\n# keep me\nb@x.tld\tb\n   continued\nc@x.tld c\n")
    result = run_module("lookup_table", table_args(tmp_path, conf, "lmdb", exclusive=True,
                                                   entries={"a@x.tld": "a", "c@x.tld": "C2"}))
    assert result["removed"] == ["b@x.tld"] and result["updated"] == ["c@x.tld"]
    assert src.read_text() == "# aliases for x.tld\n\nA@x.tld\ta\n# keep me\nc@x.tld C2\n"
    spec = "lmdb:%s" % src
    assert postmap_s(conf, spec) == {"a@x.tld": "a", "c@x.tld": "C2"}


def test_state_absent_removes_entries(tmp_path, conf):
    src = tmp_path / "virtual"
    src.write_text("a@x.tld a\nb@x.tld b\n")
    result = run_module("lookup_table", table_args(tmp_path, conf, "hash", state="absent", entries={"B@x.tld": None}))
    assert result["removed"] == ["b@x.tld"]
    assert src.read_text() == "a@x.tld a\n"
    assert postmap_s(conf, "hash:%s" % src) == {"a@x.tld": "a"}


def test_type_comes_from_main_cf_reference(tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    src = tmp_path / "virtual"
    (conf / "main.cf").write_text("virtual_alias_maps = lmdb:%s\ndefault_database_type = cdb\n" % src)
    settle(conf / "main.cf")
    result = run_module("lookup_table", dict(path=str(src), config_dir=str(conf), entries={"a@x.tld": "a"}))
    assert result["type"] == "lmdb" and result["index"] == str(src) + ".lmdb"
    other = run_module("lookup_table", dict(path=str(tmp_path / "transport"), config_dir=str(conf),
                                            entries={"x.tld": "smtp:[mx.x.tld]"}))
    assert other["type"] == "cdb"
    assert postmap_q(str(conf), "x.tld", "cdb:%s" % (tmp_path / "transport")) == "smtp:[mx.x.tld]"


def test_stale_index_with_same_mtime_order_is_rebuilt_on_content(tmp_path, conf):
    """An index newer than its source but with other records (a hand-run postmap of another
    file copied over it) is rebuilt: staleness compares records, not mtimes alone."""
    src = tmp_path / "virtual"
    src.write_text("a@x.tld a\n")
    run_module("postmap", dict(path=str(src), config_dir=conf, type="hash"))
    other = tmp_path / "other"
    other.write_text("a@x.tld WRONG\n")
    subprocess.run(["postmap", "-c", conf, "hash:%s" % other], check=True)
    os.replace(str(other) + ".db", str(src) + ".db")
    result = run_module("postmap", dict(path=str(src), config_dir=conf, type="hash"))
    assert result["changed"] and result["rebuild_reason"].startswith("index content differs from source: ")
    assert postmap_q(conf, "a@x.tld", "hash:%s" % src) == "a"


def test_duplicates_warn_like_postmap_and_keep_the_first(tmp_path, conf):
    src = tmp_path / "virtual"
    src.write_text("a@x.tld first\nA@x.tld second\n")
    result = run_module("postmap", dict(path=str(src), config_dir=conf, type="hash"))
    assert result["source_warnings"] == ['%s:2: duplicate entry: "a@x.tld"' % src]
    assert postmap_q(conf, "a@x.tld", "hash:%s" % src) == "first"
    other = tmp_path / "copy"
    other.write_text(src.read_text())
    real = subprocess.run(["postmap", "-c", conf, "hash:%s" % other], capture_output=True, text=True, check=True)
    assert 'duplicate entry: "a@x.tld"' in real.stderr
    assert postmap_q(conf, "a@x.tld", "hash:%s" % other) == "first"


def test_bad_source_fails_with_path_and_line_and_writes_nothing(tmp_path, conf):
    src = tmp_path / "virtual"
    src.write_text("good@x.tld g\nlonely-key\n")
    result = run_module("lookup_table", table_args(tmp_path, conf, "hash", entries={"n@x.tld": "n"}), fail_ok=True)
    assert result["failed"] and result["msg"] == "%s:2: expected format: key whitespace value" % src
    assert src.read_text() == "good@x.tld g\nlonely-key\n"
    assert not (tmp_path / "virtual.db").exists()
    result = run_module("postmap", dict(path=str(src), config_dir=conf, type="hash"), fail_ok=True)
    assert result["msg"].startswith("%s:2:" % src)


@pytest.mark.parametrize("entries", [
    {"a@x.tld": "one\nb@x.tld two"},
    {"a@x.tld\nb@x.tld": "two"},
    {"a b@x.tld": "x"},
    {"#a@x.tld": "x"},
    {"a@x.tld": ""},
    {"a@x.tld": None},
    {"a@x.tld": "nul\0byte"},
])
def test_injection_is_refused(tmp_path, conf, entries):
    src = tmp_path / "virtual"
    src.write_text("keep@x.tld k\n")
    result = run_module("lookup_table", table_args(tmp_path, conf, "hash", entries=entries), fail_ok=True)
    assert result["failed"] and "Traceback" not in result["msg"]
    assert src.read_text() == "keep@x.tld k\n"


def test_source_keeps_owner_and_mode(tmp_path, conf):
    src = tmp_path / "virtual"
    src.write_text("a@x.tld a\n")
    os.chmod(src, 0o640)
    os.chown(src, 0, 65534)
    run_module("lookup_table", table_args(tmp_path, conf, "hash", entries={"b@x.tld": "b"}))
    st = os.stat(src)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 0, 65534)
    idx = os.stat(str(src) + ".db")
    # postmap's rule for a new index: 0600 plus the source's group/other read bits, source's owner.
    assert (idx.st_mode & 0o7777, idx.st_uid, idx.st_gid) == (0o640, 0, 65534)


# -- aliases -------------------------------------------------------------------------------
@pytest.mark.parametrize("type_name", TYPES)
def test_aliases_compile_like_postalias(tmp_path, conf, type_name):
    src = tmp_path / "aliases"
    src.write_text("# /etc/aliases\npostmaster:    root\n")
    result = run_module("aliases", dict(path=str(src), config_dir=conf, type=type_name,
                                        entries={"root": "chrisbinnie", "admins": "a , b,c   (x)",
                                                 "quoted name": ["x"]}))
    assert result["changed"] and result["count"] == 4
    spec = "%s:%s" % (type_name, src)
    for key, value in (("root", "chrisbinnie"), ("admins", "a, b, c (x)"), ("quoted name", "x"),
                       ("postmaster", "root"), ("@", "@")):
        assert postmap_q(conf, key, spec, tool="postalias") == value, key
    # postalias's NIS records are stored unfolded and without NUL.
    assert postmap_q(conf, "YP_MASTER_NAME", spec, tool="postalias", fold=False) == "mx.example.tld"
    assert src.read_text().startswith("# /etc/aliases\npostmaster:    root\n")
    assert run_module("aliases", dict(path=str(src), config_dir=conf, type=type_name,
                                      entries={"root": "chrisbinnie"}))["changed"] is False


def test_aliases_refuse_unsafe_targets_unless_allowed(tmp_path, conf):
    src = tmp_path / "aliases"
    for target in ("|/usr/bin/procmail", "/var/mail/archive", ":include:/etc/mail/list"):
        result = run_module("aliases", dict(path=str(src), config_dir=conf, type="hash", entries={"x": target}),
                            fail_ok=True)
        assert result["failed"] and "allow_unsafe_targets" in result["msg"], target
        assert not src.exists()
    result = run_module("aliases", dict(path=str(src), config_dir=conf, type="hash", allow_unsafe_targets=True,
                                        entries={"x": '"|/usr/bin/procmail -a x"'}))
    assert postmap_q(conf, "x", "hash:%s" % src, tool="postalias") == '"|/usr/bin/procmail -a x"'


def test_alias_name_must_be_local(tmp_path, conf):
    result = run_module("aliases", dict(path=str(tmp_path / "aliases"), config_dir=conf, type="hash",
                                        entries={"root@x.tld": "a"}), fail_ok=True)
    assert "name must be local" in result["msg"]


def test_newaliases_rebuilds_alias_database_only_when_stale(tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    a1, a2 = tmp_path / "aliases", tmp_path / "more-aliases"
    a1.write_text("root: admin\n")
    a2.write_text("ops: admin, oncall\n")
    (conf / "main.cf").write_text("myhostname = mx.x.tld\nalias_maps = hash:%s\n"
                                  "alias_database = hash:%s, lmdb:%s\n" % (a1, a1, a2))
    settle(conf / "main.cf")
    first = run_module("newaliases", dict(config_dir=str(conf)))
    assert first["rebuilt"] == ["hash:%s" % a1, "lmdb:%s" % a2]
    assert postmap_q(str(conf), "ops", "lmdb:%s" % a2, tool="postalias") == "admin, oncall"
    assert run_module("newaliases", dict(config_dir=str(conf)))["changed"] is False
    a2.write_text("ops: oncall\n")
    os.utime(a2, (os.stat(a2).st_atime, os.stat(str(a2) + ".lmdb").st_mtime + 5))
    check = run_module("newaliases", dict(config_dir=str(conf)), check_mode=True)
    assert check["rebuilt"] == ["lmdb:%s" % a2]
    assert postmap_q(str(conf), "ops", "lmdb:%s" % a2, tool="postalias") == "admin, oncall"
    run_module("newaliases", dict(config_dir=str(conf)))
    assert postmap_q(str(conf), "ops", "lmdb:%s" % a2, tool="postalias") == "oncall"


def test_postmap_reads_an_index_written_by_real_postalias(tmp_path, conf):
    """Records written by the C tool (random libdb file id, timestamp) are current for us."""
    src = tmp_path / "aliases"
    src.write_text("root: admin\n")
    (tmp_path / "etc" / "main.cf").write_text("myhostname = mx.example.tld\nalias_database = hash:%s\n" % src)
    settle(tmp_path / "etc" / "main.cf")
    subprocess.run(["postalias", "-c", conf, "hash:%s" % src], check=True)
    assert run_module("newaliases", dict(config_dir=conf))["changed"] is False


def test_missing_lmdb_binding_is_a_clear_error(tmp_path, conf, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "lmdb", None)
    result = run_module("lookup_table", table_args(tmp_path, conf, "lmdb", entries={"a@x.tld": "a"}), fail_ok=True)
    assert result["failed"] and "python3-lmdb" in result["msg"]
