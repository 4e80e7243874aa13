# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cdb format against real ``postmap cdb:`` (Postfix 3.7, tinycdb).

postmap 3.7 cannot dump a cdb table (``postmap -s cdb:`` is fatal: "sequence operation is
not supported"), so our files are checked key by key with ``postmap -q -`` and by bytes.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.mailops.postfix.plugins.module_utils._db import _lanes, cdb, get_format, index_path
from postfix_oracle import KEY_CHARS, VALUE_CHARS, postmap_query, random_records
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError


def postmap_build(confdir, source, lines):
    with open(source, "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines))
    subprocess.run(["postmap", "-c", confdir, "cdb:" + source], check=True, capture_output=True)
    with open(source + ".cdb", "rb") as f:
        return f.read()


def test_interface():
    assert get_format("cdb") is cdb
    assert cdb.SUFFIX == ".cdb" and cdb.NUL_TERMINATED is False
    assert index_path("/p/virtual", "cdb") == "/p/virtual.cdb"


@pytest.mark.parametrize("n", [0, 1, 3, 257, 2000])
def test_byte_identical_to_postmap(tmp_path, confdir, n):
    records = random_records(random.Random(n), n)
    source = str(tmp_path / "virtual")
    theirs = postmap_build(confdir, source, [k + b" " + v for k, v in records])
    assert list(cdb.read(source + ".cdb")) == records
    assert cdb.dumps(records) == theirs
    cdb.write(str(tmp_path / "ours.cdb"), records)
    assert (tmp_path / "ours.cdb").read_bytes() == theirs


def test_postmap_reads_ours(tmp_path, confdir):
    records = random_records(random.Random(7), 500)
    ours = str(tmp_path / "ours")
    cdb.write(ours + ".cdb", records)
    found = postmap_query(confdir, "cdb:" + ours, [k for k, _v in records] + [b"absent@example.com"])
    assert found == dict(records)
    for key, value in records[:5]:
        proc = subprocess.run(["postmap", "-c", confdir, "-q", key, "cdb:" + ours], capture_output=True, check=False)
        assert (proc.returncode, proc.stdout) == (0, value + b"\n")
    proc = subprocess.run(["postmap", "-c", confdir, "-q", "absent@example.com", "cdb:" + ours],
                          capture_output=True, check=False)
    assert (proc.returncode, proc.stdout) == (1, b"")


def test_unicode_keys_folded_by_postmap(tmp_path, confdir):
    words = ["Straße@Example.COM", "ÉCOLE@ex.fr", "Ωmega", "naïve", "日本語@例え.jp", "MiXeD+tag@x", "ǅemal"]
    lines = [("%s value-%d" % (w, i)).encode() for i, w in enumerate(words)]
    source = str(tmp_path / "virtual")
    theirs = postmap_build(confdir, source, lines)
    records = list(cdb.read(source + ".cdb"))
    assert [k for k, _v in records] == [w.casefold().encode() for w in words]
    assert cdb.dumps(records) == theirs
    ours = str(tmp_path / "ours")
    cdb.write(ours + ".cdb", records)
    assert postmap_query(confdir, "cdb:" + ours, [w.encode() for w in words]) == {
        w.encode(): v for w, (_k, v) in zip(words, records)}
    for key, value in records:
        assert cdb.lookup(ours + ".cdb", key) == value


def test_lookup_probes(tmp_path):
    records = random_records(random.Random(3), 3000)
    path = str(tmp_path / "t.cdb")
    cdb.write(path, records)
    for key, value in records:
        assert cdb.lookup(path, key) == value
    assert cdb.lookup(path, b"absent") is None
    assert cdb.lookup(path, b"") is None


def test_reader_answers_as_postmap_and_sees_a_replaced_file(tmp_path, confdir):
    """Reader (the route module's many lookups): one mapping for many keys, answers equal
    to real postmap -q for every key and for keys the file does not hold; a new file
    renamed into place (as postmap and our writer do) is read at the next lookup."""
    records = random_records(random.Random(4), 3000)
    source = str(tmp_path / "virtual")
    cdb.write(source + ".cdb", records)
    asked = [k for k, _v in records] + [b"absent%d@example.com" % i for i in range(300)]
    reader = cdb.Reader(source + ".cdb")
    answers = [reader.lookup(k) for k in asked]
    assert dict((k, v) for k, v in zip(asked, answers) if v is not None) == postmap_query(confdir, "cdb:" + source, asked)
    first = reader._cdb  # pylint: disable=protected-access
    assert reader.lookup(asked[0]) == records[0][1] and reader._cdb is first  # pylint: disable=protected-access
    cdb.write(source + ".new.cdb", [(b"a@x.test", b"new")])
    os.rename(source + ".new.cdb", source + ".cdb")
    assert reader.lookup(b"a@x.test") == b"new" and reader.lookup(asked[0]) is None
    os.unlink(source + ".cdb")
    with pytest.raises(PostfixError):
        reader.lookup(b"a@x.test")
    reader.close()


def test_duplicate_keys_first_wins_like_cdb_put_add(tmp_path, confdir):
    """postmap -w stores both records (CDB_PUT_ADD); lookups return the first."""
    source = str(tmp_path / "virtual")
    proc_lines = [b"dup first", b"other x", b"dup second"]
    with open(source, "wb") as f:
        f.write(b"".join(line + b"\n" for line in proc_lines))
    subprocess.run(["postmap", "-w", "-c", confdir, "cdb:" + source], check=True, capture_output=True)
    theirs = open(source + ".cdb", "rb").read()
    records = [(b"dup", b"first"), (b"other", b"x"), (b"dup", b"second")]
    assert list(cdb.read(source + ".cdb")) == records
    assert cdb.dumps(records) == theirs
    assert cdb.lookup(source + ".cdb", b"dup") == b"first"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.text(KEY_CHARS + "ÄÖüß", min_size=1, max_size=30),
                          st.text(VALUE_CHARS, min_size=1, max_size=50).map(str.strip).filter(bool)),
                max_size=60, unique_by=lambda r: r[0].casefold()))
def test_random_tables_match_postmap(tmp_path, confdir, pairs):
    source = str(tmp_path / "virtual")
    theirs = postmap_build(confdir, source, [("%s %s" % (k, v)).encode() for k, v in pairs])
    records = [(k.casefold().encode(), v.encode()) for k, v in pairs]
    assert list(cdb.read(source + ".cdb")) == records
    assert cdb.dumps(records) == theirs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=70), st.binary(max_size=200)), max_size=80))
def test_round_trip_any_bytes(pairs):
    data = cdb.dumps(pairs)
    with tempfile.NamedTemporaryFile(suffix=".cdb") as f:
        f.write(data)
        f.flush()
        assert list(cdb.read(f.name)) == pairs
        first = {}
        for k, v in pairs:
            first.setdefault(k, v)
        for k, v in first.items():
            assert cdb.lookup(f.name, k) == v
        assert cdb.lookup(f.name, b"\xff" * 71) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=90)), max_size=40), st.integers(1, 64))
def test_read_in_small_blocks_and_write_columns(pairs, block):
    keys = [k for k, _v in pairs]
    values = [v for _k, v in pairs]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.cdb")
        cdb.write_columns(path, keys, values)
        assert open(path, "rb").read() == cdb.dumps(pairs)
        assert cdb.record_count(path) == len(pairs)
        saved = cdb._READ_BLOCK
        cdb._READ_BLOCK = block
        try:
            assert list(cdb.read(path)) == pairs
        finally:
            cdb._READ_BLOCK = saved


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=90), max_size=60), st.sampled_from([1, 3, 8, 12, 24, 32]), st.integers(2, 300))
def test_lane_hashes_equal_hashing_one_key_at_a_time(keys, bits, batch):
    """_lanes (shared with the hash writer): cdb_hash and FNV-1 at any width, keys of mixed
    lengths (padded lanes, long keys hashed alone), several batches."""
    saved = _lanes.BATCH
    _lanes.BATCH = batch
    try:
        for multiplier, initial in ((33, 5381), (16777619, 0)):
            assert list(_lanes.hashes(keys, multiplier, initial, bits)) == [
                _lanes.hash_one(k, multiplier, initial, bits) for k in keys]
    finally:
        _lanes.BATCH = saved
    assert [_lanes.hash_one(k, 33, 5381) for k in keys] == [cdb._hash(k) for k in keys]


def test_lane_hashes_of_long_and_short_keys():
    keys = [b"x" * n for n in (0, 1, 64, 65, 255, 256, 300, 5000)] * 20 + [b"k%d" % i for i in range(500)]
    assert list(_lanes.hashes(keys, 33, 5381)) == [_lanes.hash_one(k, 33, 5381) for k in keys]
    # Lanes hold keys of at most 255 bytes: a batch of longer keys only is hashed key by key.
    for long_keys in ([b"y" * 256, b"z" * 400] * 30, [b"w" * 255] * 3 + [b"v" * 256] * 300):
        assert list(_lanes.hashes(long_keys, 16777619)) == [_lanes.hash_one(k, 16777619) for k in long_keys]
    with pytest.raises(ValueError):
        _lanes.hashes(keys, 34, 1)


def test_write_columns_refuses_bad_columns(tmp_path):
    for keys, values in (([b"k"], []), ([b"k"], ["v"]), (["k"], [b"v"])):
        with pytest.raises(PostfixError):
            cdb.write_columns(str(tmp_path / "x.cdb"), keys, values)


def test_100k_entries(tmp_path, confdir):
    rng = random.Random(100000)
    records = [(("user%d.%s@dom%d.example" % (i, rng.randint(0, 1 << 30), i % 997)).encode(),
                ("dest%d@relay.example, other%d@x.example" % (i, i)).encode()) for i in range(100000)]
    source = str(tmp_path / "virtual")
    theirs = postmap_build(confdir, source, [k + b" " + v for k, v in records])
    ours = str(tmp_path / "ours")
    cdb.write(ours + ".cdb", records)
    assert open(ours + ".cdb", "rb").read() == theirs
    assert list(cdb.read(source + ".cdb")) == records
    assert postmap_query(confdir, "cdb:" + ours, [k for k, _v in records]) == dict(records)  # every key
    sample = rng.sample(records, 2000)
    for key, value in sample[:200]:
        assert cdb.lookup(ours + ".cdb", key) == value


def _expect_error(path):
    with pytest.raises(PostfixError):
        list(cdb.read(path))
    try:
        cdb.lookup(path, b"key")
    except PostfixError:
        pass


@pytest.mark.parametrize("content", [b"", b"x" * 100, b"\xff" * 2048, os.urandom(4096)])
def test_garbage_is_a_postfix_error(tmp_path, content):
    path = str(tmp_path / "bad.cdb")
    with open(path, "wb") as f:
        f.write(content)
    _expect_error(path)


def test_truncated_file_is_a_postfix_error(tmp_path):
    good = cdb.dumps(random_records(random.Random(1), 50))
    for cut in (10, 2048, 2060, len(good) // 2, len(good) - 1):
        path = str(tmp_path / ("cut%d.cdb" % cut))
        with open(path, "wb") as f:
            f.write(good[:cut])
        _expect_error(path)


def test_corrupt_record_length_is_a_postfix_error(tmp_path):
    good = bytearray(cdb.dumps([(b"key", b"value"), (b"k2", b"v2")]))
    good[2048:2052] = (1 << 30).to_bytes(4, "little")
    path = str(tmp_path / "bad.cdb")
    with open(path, "wb") as f:
        f.write(good)
    with pytest.raises(PostfixError, match="corrupt"):
        list(cdb.read(path))
    with pytest.raises(PostfixError, match="corrupt"):
        cdb.lookup(path, b"key")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_files_never_raise_anything_but_postfix_error(data):
    good = bytearray(cdb.dumps([(b"key%d" % i, b"value%d" % i) for i in range(20)]))
    for _i in range(data.draw(st.integers(1, 8))):
        good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    with tempfile.NamedTemporaryFile(suffix=".cdb") as f:
        f.write(bytes(good[:cut]))
        f.flush()
        for call in (lambda: list(cdb.read(f.name)), lambda: cdb.lookup(f.name, b"key3")):
            try:
                call()
            except PostfixError:
                pass


def test_missing_file_and_bad_records(tmp_path):
    with pytest.raises(PostfixError, match="cannot read"):
        list(cdb.read(str(tmp_path / "nope.cdb")))
    with pytest.raises(PostfixError, match="cannot read"):
        cdb.lookup(str(tmp_path / "nope.cdb"), b"k")
    with pytest.raises(PostfixError, match="bytes"):
        cdb.write(str(tmp_path / "x.cdb"), [("str", b"v")])
    with pytest.raises(PostfixError):
        cdb.write(str(tmp_path / "x.cdb"), [(b"k",)])
    with pytest.raises(PostfixError, match="cannot write"):
        cdb.write(str(tmp_path / "no-dir" / "x.cdb"), [(b"k", b"v")])
