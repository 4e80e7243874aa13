# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""lmdb format against real ``postmap lmdb:`` (Postfix 3.7 with liblmdb 0.9.24)."""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.mailops.postfix.plugins.module_utils._db import get_format, index_path
from ansible_collections.mailops.postfix.plugins.module_utils._db import lmdb as lmdb_format
from postfix_oracle import KEY_CHARS, VALUE_CHARS, postmap_query, random_records
from ansible_collections.mailops.postfix.plugins.module_utils._errors import MissingLibrary, PostfixError

MODULE = "ansible_collections.mailops.postfix.plugins.module_utils._db.lmdb"


def nul(records):
    return [(k + b"\0", v + b"\0") for k, v in records]


def postmap_build(confdir, source, lines):
    with open(source, "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines))
    subprocess.run(["postmap", "-c", confdir, "lmdb:" + source], check=True, capture_output=True)
    return source + ".lmdb"


def postmap_dump(confdir, table):
    proc = subprocess.run(["postmap", "-c", confdir, "-s", "lmdb:" + table], capture_output=True, check=True)
    return sorted(tuple(line.split(b"\t", 1)) for line in proc.stdout.splitlines())


def test_interface():
    assert get_format("lmdb") is lmdb_format
    assert lmdb_format.SUFFIX == ".lmdb" and lmdb_format.NUL_TERMINATED is True
    assert index_path("/p/virtual", "lmdb") == "/p/virtual.lmdb"


@pytest.mark.parametrize("n", [0, 1, 3, 1000])
def test_postmap_reads_ours(tmp_path, confdir, n):
    records = random_records(random.Random(n), n)
    ours = str(tmp_path / "ours")
    lmdb_format.write(ours + ".lmdb", nul(records))
    assert sorted(os.listdir(str(tmp_path))) == ["ours.lmdb"]  # no "-lock" file
    assert postmap_dump(confdir, ours) == sorted(records)
    assert postmap_query(confdir, "lmdb:" + ours, [k for k, _v in records] + [b"absent@example.com"]) == dict(records)
    for key, value in records[:3]:
        proc = subprocess.run(["postmap", "-c", confdir, "-q", key, "lmdb:" + ours], capture_output=True, check=False)
        assert (proc.returncode, proc.stdout) == (0, value + b"\n")
    proc = subprocess.run(["postmap", "-c", confdir, "-q", "absent@example.com", "lmdb:" + ours],
                          capture_output=True, check=False)
    assert (proc.returncode, proc.stdout) == (1, b"")


@pytest.mark.parametrize("n", [0, 5, 2000])
def test_we_read_postmaps_file(tmp_path, confdir, n):
    records = random_records(random.Random(n + 1), n)
    theirs = postmap_build(confdir, str(tmp_path / "virtual"), [k + b" " + v for k, v in records])
    assert list(lmdb_format.read(theirs)) == sorted(nul(records))
    assert postmap_dump(confdir, str(tmp_path / "virtual")) == sorted(records)
    for key, value in nul(records)[:50]:
        assert lmdb_format.lookup(theirs, key) == value
    assert lmdb_format.lookup(theirs, b"absent\0") is None
    # Rebuilt by us from the same records: the same pages as postmap's bulk load.
    lmdb_format.write(str(tmp_path / "ours.lmdb"), nul(records))
    assert list(lmdb_format.read(str(tmp_path / "ours.lmdb"))) == list(lmdb_format.read(theirs))


def test_unicode_keys(tmp_path, confdir):
    words = ["Straße@Example.COM", "ÉCOLE@ex.fr", "Ωmega", "naïve", "日本語@例え.jp", "MiXeD+tag@x", "ǅemal"]
    theirs = postmap_build(confdir, str(tmp_path / "virtual"),
                           [("%s value-%d" % (w, i)).encode() for i, w in enumerate(words)])
    expected = sorted((w.casefold().encode() + b"\0", b"value-%d\0" % i) for i, w in enumerate(words))
    assert list(lmdb_format.read(theirs)) == expected
    ours = str(tmp_path / "ours")
    lmdb_format.write(ours + ".lmdb", expected)
    assert postmap_dump(confdir, ours) == postmap_dump(confdir, str(tmp_path / "virtual"))
    assert postmap_query(confdir, "lmdb:" + ours, [w.encode() for w in words]) == {
        w.encode(): b"value-%d" % i for i, w in enumerate(words)}


def test_large_values_and_growing_map(tmp_path, confdir, monkeypatch):
    """Values bigger than a page (overflow pages) and a map that must double several times
    (slmdb_prepare() on MDB_MAP_FULL)."""
    monkeypatch.setattr(lmdb_format, "_initial_map_size", lambda keys, values: 64 * 1024)
    monkeypatch.setattr(lmdb_format, "_TXN_BATCH", 7)
    rng = random.Random(5)
    records = [(b"key%04d@example.com" % i, ("".join(rng.choice(VALUE_CHARS) for _i in range(rng.choice(
        (10, 3000, 9000))))).strip().encode() or b"v") for i in range(300)]
    ours = str(tmp_path / "ours")
    lmdb_format.write(ours + ".lmdb", nul(records))
    assert os.path.getsize(ours + ".lmdb") > 64 * 1024
    assert postmap_dump(confdir, ours) == sorted(records)
    assert list(lmdb_format.read(ours + ".lmdb")) == sorted(nul(records))


def test_duplicate_keys_keep_the_first(tmp_path):
    path = str(tmp_path / "t.lmdb")
    lmdb_format.write(path, [(b"a\0", b"1\0"), (b"b\0", b"2\0"), (b"a\0", b"3\0")])
    assert list(lmdb_format.read(path)) == [(b"a\0", b"1\0"), (b"b\0", b"2\0")]


def test_key_size_limit(tmp_path, confdir):
    ok = b"k" * 510 + b"\0"
    path = str(tmp_path / "ok")
    lmdb_format.write(path + ".lmdb", [(ok, b"v\0")])
    assert postmap_query(confdir, "lmdb:" + path, [ok[:-1]]) == {ok[:-1]: b"v"}
    long_key = b"x" * 600 + b"@example.com\0"
    with pytest.raises(PostfixError, match=r"key 'xxxx.*613 bytes.*511 bytes") as info:
        lmdb_format.write(str(tmp_path / "bad.lmdb"), [(b"a\0", b"b\0"), (long_key, b"v\0")])
    assert "Traceback" not in str(info.value)
    assert lmdb_format.lookup(path + ".lmdb", long_key) is None
    with pytest.raises(PostfixError, match="empty"):
        lmdb_format.write(str(tmp_path / "bad.lmdb"), [(b"", b"v\0")])


def test_bad_records(tmp_path):
    for records in ([("str\0", b"v\0")], [(b"k\0",)], [b"kv"]):
        with pytest.raises(PostfixError, match="bytes"):
            lmdb_format.write(str(tmp_path / "x.lmdb"), records)
    with pytest.raises(PostfixError, match="cannot write"):
        lmdb_format.write(str(tmp_path / "no-dir" / "x.lmdb"), [(b"k\0", b"v\0")])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=511), st.binary(max_size=300)), max_size=60))
def test_round_trip_any_bytes(pairs):
    first = {}
    for k, v in pairs:
        first.setdefault(k, v)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.lmdb")
        lmdb_format.write(path, pairs)
        assert list(lmdb_format.read(path)) == sorted(first.items())
        for k, v in first.items():
            assert lmdb_format.lookup(path, k) == v
        assert os.listdir(d) == ["t.lmdb"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.text(KEY_CHARS + "ÄÖüß", min_size=1, max_size=30),
                          st.text(VALUE_CHARS, min_size=1, max_size=50).map(str.strip).filter(bool)),
                max_size=60, unique_by=lambda r: r[0].casefold()))
def test_random_tables_match_postmap(tmp_path, confdir, pairs):
    source = str(tmp_path / "virtual")
    theirs = postmap_build(confdir, source, [("%s %s" % (k, v)).encode() for k, v in pairs])
    records = [(k.casefold().encode() + b"\0", v.encode() + b"\0") for k, v in pairs]
    assert list(lmdb_format.read(theirs)) == sorted(records)
    lmdb_format.write(str(tmp_path / "ours.lmdb"), records)
    assert postmap_dump(confdir, str(tmp_path / "ours")) == postmap_dump(confdir, source)


def test_100k_entries(tmp_path, confdir):
    rng = random.Random(100000)
    records = [(("user%d.%s@dom%d.example" % (i, rng.randint(0, 1 << 30), i % 997)).encode(),
                ("dest%d@relay.example, other%d@x.example" % (i, i)).encode()) for i in range(100000)]
    ours = str(tmp_path / "ours")
    lmdb_format.write(ours + ".lmdb", nul(records))
    assert postmap_dump(confdir, ours) == sorted(records)
    assert postmap_query(confdir, "lmdb:" + ours, [k for k, _v in records]) == dict(records)  # every key
    theirs = postmap_build(confdir, str(tmp_path / "virtual"), [k + b" " + v for k, v in records])
    assert list(lmdb_format.read(theirs)) == sorted(nul(records))


def _expect_error(path):
    with pytest.raises(PostfixError):
        list(lmdb_format.read(path))
    with pytest.raises(PostfixError):
        lmdb_format.lookup(path, b"key\0")


@pytest.mark.parametrize("content", [b"", b"x" * 100, b"\0" * 8192, b"\xff" * 20000, os.urandom(12288)])
def test_garbage_is_a_postfix_error(tmp_path, content):
    path = str(tmp_path / "bad.lmdb")
    with open(path, "wb") as f:
        f.write(content)
    _expect_error(path)


def test_truncated_file_is_a_postfix_error(tmp_path):
    """A truncated map would make liblmdb fault (SIGBUS) on access: refused up front."""
    path = str(tmp_path / "good.lmdb")
    lmdb_format.write(path, [(b"key%05d\0" % i, b"v" * 50 + b"\0") for i in range(5000)])
    good = open(path, "rb").read()
    for cut in (100, 4096, 8192, len(good) // 2, len(good) - 4096):
        bad = str(tmp_path / ("cut%d.lmdb" % cut))
        with open(bad, "wb") as f:
            f.write(good[:cut])
        _expect_error(bad)


def test_missing_file(tmp_path):
    _expect_error(str(tmp_path / "nope.lmdb"))


def test_missing_binding_names_the_package(tmp_path, confdir, monkeypatch):
    with open(str(tmp_path / "real"), "wb") as f:
        f.write(b"k v\n")
    real = postmap_build(confdir, str(tmp_path / "real"), [b"k v"])
    package = sys.modules[MODULE.rsplit(".", 1)[0]]
    monkeypatch.setattr(package, "lmdb", package.lmdb)  # restored with sys.modules below
    monkeypatch.setitem(sys.modules, "lmdb", None)
    monkeypatch.delitem(sys.modules, MODULE)
    module = importlib.import_module(MODULE)  # imports without the binding
    assert module is not lmdb_format
    for call in (lambda: module.write(str(tmp_path / "x.lmdb"), [(b"k\0", b"v\0")]),
                 lambda: list(module.read(real)),
                 lambda: module.lookup(real, b"k\0")):
        with pytest.raises(MissingLibrary, match="python3-lmdb") as info:
            call()
        assert "pip install lmdb" in str(info.value)
    assert not os.path.exists(str(tmp_path / "x.lmdb"))


def test_engine_imports_without_binding_in_a_fresh_interpreter():
    code = (
        "import sys\n"
        "sys.modules['lmdb'] = None\n"
        "sys.path.insert(0, %r)\n"
        "from ansible_collections.mailops.postfix.plugins.module_utils._db import get_format\n"
        "from ansible_collections.mailops.postfix.plugins.module_utils._errors import MissingLibrary\n"
        "fmt = get_format('lmdb')\n"
        "try:\n"
        "    fmt.write('/nonexistent/x.lmdb', [(b'k', b'v')])\n"
        "except MissingLibrary as exc:\n"
        "    print(exc)\n"
    ) % (os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                      ".build", "collections"),)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "python3-lmdb" in proc.stdout


def test_reader_answers_as_postmap_and_sees_a_replaced_file(tmp_path, confdir):
    """Reader (the route module's many lookups): every key of a file postmap built, and
    keys it does not hold, answered as real postmap -q answers them, one by one at first
    and from the whole file read once after that; a new file renamed into place (as
    postmap and our writer do) is read at the next lookup."""
    records = random_records(random.Random(7), 300)
    source = str(tmp_path / "virtual")
    theirs = postmap_build(confdir, source, [k + b" " + v for k, v in records])
    asked = [k for k, _v in records] + [b"absent%d@example.com" % i for i in range(100)]
    real = postmap_query(confdir, "lmdb:" + source, asked)
    reader = lmdb_format.Reader(theirs)
    answers = [reader.lookup(k + b"\0") for k in asked]  # dict_lmdb_lookup: the key with its NUL
    assert reader._records is not None  # pylint: disable=protected-access
    assert dict((k, v[:-1]) for k, v in zip(asked, answers) if v is not None) == real
    assert reader.lookup(b"") is None and reader.lookup(b"x" * (lmdb_format.MAX_KEY_SIZE + 1)) is None
    new = str(tmp_path / "new.lmdb")
    lmdb_format.write(new, [(b"a@x.test\0", b"new\0")])
    os.rename(new, theirs)
    assert reader.lookup(b"a@x.test\0") == b"new\0" and reader.lookup(asked[0] + b"\0") is None
    os.unlink(theirs)
    with pytest.raises(PostfixError):
        reader.lookup(b"a@x.test\0")
    reader.close()
