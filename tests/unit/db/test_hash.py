# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure-Python Berkeley DB hash format against real libdb 5.3 and Postfix 3.7.

Every file we write must pass db_verify and be read back completely by postmap -s and
postmap -q; every file real postmap writes must be read back completely by us.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.mailops.postfix.plugins.module_utils._db import _lanes
from ansible_collections.mailops.postfix.plugins.module_utils._db import hash as dbhash
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

for _tool in ("postmap", "db_verify"):
    if shutil.which(_tool) is None:
        raise RuntimeError("%s is required for these tests (apt-get install postfix db-util)" % _tool)


# -- helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    """A private main.cf so postmap never reads /etc/postfix."""
    path = tmp_path_factory.mktemp("cfg")
    main_cf = path / "main.cf"
    main_cf.write_text("compatibility_level = 3.6\nsmtputf8_enable = yes\n")
    # Postfix waits and re-reads a main.cf modified within the last second (dict_load_file_xt,
    # like load_file.c): a fresh main.cf costs every postmap call 1-2 s. Backdate it.
    os.utime(str(main_cf), (1000000000, 1000000000))
    return str(path)


def run(args, **kwargs):
    if "input" not in kwargs:
        kwargs["stdin"] = subprocess.DEVNULL
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, **kwargs)


def db_verify(path):
    proc = run(["db_verify", "-q", path])
    assert proc.returncode == 0, proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")


def postmap_dump(base, config):
    """(key, value) pairs in postmap -s order, NULs put back as stored."""
    proc = run(["postmap", "-c", config, "-s", "hash:" + base])
    assert proc.returncode == 0, proc.stderr
    pairs = []
    for line in proc.stdout.split(b"\n")[:-1]:
        key, value = line.split(b"\t", 1)
        pairs.append((key + b"\0", value + b"\0"))
    return pairs


def postmap_query(base, config, keys):
    """postmap -q - : the value of every key found, from one process."""
    proc = run(["postmap", "-c", config, "-q", "-", "hash:" + base],
               input=b"".join(k.rstrip(b"\0") + b"\n" for k in keys))
    assert proc.returncode in (0, 1) and b"fatal:" not in proc.stderr, proc.stderr
    found = {}
    for line in proc.stdout.split(b"\n")[:-1]:
        key, value = line.split(b"\t", 1)
        found[key + b"\0"] = value + b"\0"
    return found


def check_with_postfix(tmp_path, config, records, sample=200):
    """Write ``records`` with our writer; libdb and Postfix must agree with them: every key
    is looked up by real postmap (a dump walks the pages in order and would not see a
    record in the wrong bucket), ``sample`` of them by our own lookup too."""
    base = str(tmp_path / "table")
    dbhash.write(base + ".db", records)
    db_verify(base + ".db")
    dumped = postmap_dump(base, config)
    assert sorted(dumped) == sorted(records)
    # Postfix walks buckets in the order we read them.
    assert dumped == list(dbhash.read(base + ".db"))
    assert postmap_query(base, config, [k for k, v in records]) == dict(records)
    rng = random.Random(len(records))
    chosen = rng.sample(records, min(sample, len(records)))
    missing = run(["postmap", "-c", config, "-q", "no-such-key@absent.example", "hash:" + base])
    assert missing.returncode == 1 and missing.stdout == b""
    for key, value in chosen[:50]:
        assert dbhash.lookup(base + ".db", key) == value
    assert dbhash.lookup(base + ".db", b"no-such-key@absent.example\0") is None
    return base


def virtual_records(count, seed=0):
    rng = random.Random(seed)
    records = []
    for i in range(count):
        key = "%s%d+%s@d%d.example.com" % (rng.choice(["a", "bob", "x.y"]), i, rng.choice(["", "tag"]), i % 97)
        value = "user%d@mail%d.example.net" % (i, rng.randrange(50))
        records.append((key.encode() + b"\0", value.encode() + b"\0"))
    return records


def fnv1(data):
    h = 0
    for c in data:
        h = ((h * 16777619) & 0xFFFFFFFF) ^ c
    return h


def colliding_keys(blocks, bits=16):
    """2**blocks keys whose hashes agree in the low ``bits`` bits (one bucket of any table
    with up to 2**bits buckets): each block is one of two strings that reach the same
    low bits from the state the previous blocks left."""
    mask = (1 << bits) - 1
    letters = "abcdefghijklmnopqrstuvwxyz"
    state = 0
    pairs = []
    for dummy in range(blocks):
        seen = {}
        for a in letters:
            for b in letters:
                for c in letters:
                    text = (a + b + c).encode()
                    h = state
                    for ch in text:
                        h = ((h * 16777619) & mask) ^ ch
                    if h in seen:
                        pairs.append((seen[h], text))
                        state = h
                        break
                    seen[h] = text
                else:
                    continue
                break
            else:
                continue
            break
    keys = [b""]
    for one, other in pairs:
        keys = [k + one for k in keys] + [k + other for k in keys]
    return [k + b"@collide.example\0" for k in keys]


# -- files we write, read by libdb and Postfix -------------------------------------------------

@pytest.mark.parametrize("count", [0, 1, 3, 5000])
def test_small_tables(tmp_path, config_dir, count):
    check_with_postfix(tmp_path, config_dir, virtual_records(count, seed=count))


def test_empty_table_layout(tmp_path):
    path = str(tmp_path / "empty.db")
    dbhash.write(path, [])
    db_verify(path)
    assert list(dbhash.read(path)) == []
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) == 3 * 4096  # meta page and the two buckets libdb starts with
    magic, version, pagesize = struct.unpack_from("<III", data, 12)
    assert (magic, version, pagesize) == (0x061561, 9, 4096)
    max_bucket, high, low, ffactor, nelem, charkey = struct.unpack_from("<6I", data, 72)
    assert (max_bucket, high, low, ffactor, nelem, charkey) == (1, 1, 0, 0, 4096, 0x5E688DD1)
    assert charkey == fnv1(b"%$sniglet^&\0")


def test_100k_table(tmp_path, config_dir):
    records = virtual_records(100000, seed=7)
    base = check_with_postfix(tmp_path, config_dir, records, sample=500)
    # Real postmap compiles the same source; both files hold the same records.
    src = tmp_path / "src"
    src.write_bytes(b"".join(k[:-1] + b" " + v[:-1] + b"\n" for k, v in records))
    proc = run(["postmap", "-c", config_dir, "hash:" + str(src)])
    assert proc.returncode == 0, proc.stderr
    assert sorted(dbhash.read(str(src) + ".db")) == sorted(dbhash.read(base + ".db"))
    # ... and about the same size (theirs splits buckets one at a time, ours doubles).
    ours, theirs = os.path.getsize(base + ".db"), os.path.getsize(str(src) + ".db")
    assert ours < 1.3 * theirs


@pytest.mark.parametrize("size", [1024, 1025, 5 * 1024, 10 * 1024, 100 * 1024])
def test_long_values_use_overflow_pages(tmp_path, config_dir, size):
    records = virtual_records(300, seed=size)
    records[::7] = [(k, v[:-1] + b"x" * (size - len(v)) + b"\0") for k, v in records[::7]]
    records.append((b"exact@big.example\0", b"y" * (size - 1) + b"\0"))
    check_with_postfix(tmp_path, config_dir, records)
    with open(str(tmp_path / "table.db"), "rb") as f:
        data = f.read()
    page_types = {data[i + 25] for i in range(4096, len(data), 4096)}
    assert (7 in page_types) == (size > 1024)  # P_OVERFLOW only past ISBIG


def test_every_page_at_its_number_with_many_overflow_pages(tmp_path, config_dir):
    """Hundreds of overflow pages produced between bucket pages: every page must sit at
    the offset its number says (a writer that flushed one buffer with the other's offset
    put bucket pages at other buckets' places, and Postfix lost a third of the keys)."""
    rng = random.Random(8)
    records = virtual_records(8000, seed=8)
    records[::50] = [(k, b", ".join(b"m%d@lists.example" % j for j in range(rng.randint(200, 600))) + b"\0")
                     for k, dummy in records[::50]]
    base = check_with_postfix(tmp_path, config_dir, records)
    with open(base + ".db", "rb") as f:
        data = f.read()
    numbers = [struct.unpack_from("<I", data, offset + 8)[0] for offset in range(4096, len(data), 4096)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert sum(data[offset + 25] == 7 for offset in range(4096, len(data), 4096)) > 256


def test_long_keys_use_overflow_pages(tmp_path, config_dir):
    records = virtual_records(200, seed=3)
    records += [(b"k%d-" % i + b"z" * (1000 + 40 * i) + b"@long.example\0", b"v%d\0" % i) for i in range(10)]
    base = check_with_postfix(tmp_path, config_dir, records, sample=len(records))
    for key, value in records[-10:]:
        assert dbhash.lookup(base + ".db", key) == value
        assert dbhash.lookup(base + ".db", key[:-2] + b"\0") is None


def test_colliding_keys_chain_bucket_pages(tmp_path, config_dir):
    keys = colliding_keys(10)
    assert len(set(fnv1(k) & 0xFFFF for k in keys)) == 1
    records = [(k, b"target-%d@example.net\0" % i) for i, k in enumerate(keys)]
    records += virtual_records(3000, seed=11)
    base = check_with_postfix(tmp_path, config_dir, records, sample=len(records))
    with open(base + ".db", "rb") as f:
        data = f.read()
    max_bucket = struct.unpack_from("<I", data, 72)[0]
    first = 1 + (fnv1(keys[0]) & max_bucket)
    chain = 0
    pgno = first
    while pgno:
        chain += 1
        pgno = struct.unpack_from("<I", data, pgno * 4096 + 16)[0]
    assert chain >= 10  # one bucket of about 1024 pairs spans a chain of pages


def test_postmap_can_update_our_file(tmp_path, config_dir):
    """libdb's own insert path (bucket splits, page allocation) works on our layout."""
    records = virtual_records(4000, seed=5)
    base = str(tmp_path / "table")
    dbhash.write(base + ".db", records)
    extra = virtual_records(6000, seed=6)[4000:]
    proc = run(["postmap", "-c", config_dir, "-i", "hash:" + base],
               input=b"".join(k[:-1] + b" " + v[:-1] + b"\n" for k, v in extra))
    assert proc.returncode == 0, proc.stderr
    proc = run(["postmap", "-c", config_dir, "-d", records[0][0][:-1].decode(), "hash:" + base])
    assert proc.returncode == 0, proc.stderr
    db_verify(base + ".db")
    expected = sorted(records[1:] + extra)
    assert sorted(dbhash.read(base + ".db")) == expected
    assert sorted(postmap_dump(base, config_dir)) == expected


@pytest.mark.parametrize("nbuckets", [2, 4, 256, 2048, 1 << 15, 1 << 16, 1 << 23, 1 << 24, 1 << 31])
def test_bucket_hashes_match_fnv1(nbuckets):
    """The writer's buckets: _lanes FNV-1 (__ham_func5) at the width of the bucket mask."""
    rng = random.Random(nbuckets)
    keys = [bytes(rng.randrange(256) for dummy in range(rng.choice([0, 1, 5, 20, 40, 70, 300, 2000])))
            for dummy in range(400)]
    got = _lanes.hashes(keys, dbhash._FNV_PRIME, 0, (nbuckets - 1).bit_length())
    assert list(got) == [fnv1(k) & (nbuckets - 1) for k in keys]
    assert [_lanes.hash_one(k, dbhash._FNV_PRIME) for k in keys] == list(map(fnv1, keys))


def test_keys_hashed_in_batches(tmp_path, config_dir, monkeypatch):
    """The batch path of the key hasher (tables of over 65536 keys), on a small table."""
    monkeypatch.setattr(_lanes, "BATCH", 999)
    records = virtual_records(12000, seed=12)
    records[::500] = [(k, v[:-1] + b"w" * 3000 + b"\0") for k, v in records[::500]]
    check_with_postfix(tmp_path, config_dir, records, sample=1000)


def test_new_file_mode(tmp_path):
    path = str(tmp_path / "t.db")
    dbhash.write(path, [(b"a\0", b"b\0")])
    assert os.stat(path).st_mode & 0o777 == 0o600
    os.chmod(path, 0o640)
    dbhash.write(path, ((k, b"c\0") for k in [b"a\0"]))  # any iterable; an existing file keeps its mode
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert dbhash.lookup(path, b"a\0") == b"c\0"


# -- files real postmap writes, read by us ----------------------------------------------------

_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.+-_@éüøжλ中ñ"


def random_source(rng, count):
    """A postmap source with unique, already-folded keys and some long values."""
    lines, records, seen = [], [], set()
    while len(records) < count:
        key = "".join(rng.choice(_KEY_CHARS) for dummy in range(rng.randint(1, 40)))
        if key in seen:
            continue
        seen.add(key)
        roll = rng.random()
        if roll < 0.02:
            value = "long-" + "v" * rng.choice([1100, 5000, 30000])
        elif roll < 0.1:
            value = ", ".join("u%d@d.example" % rng.randrange(1000) for dummy in range(rng.randint(2, 30)))
        else:
            value = "%s@%s.example" % (rng.choice(["a", "b.c", "d+e"]), rng.choice(["x", "yé", "z"]))
        lines.append("%s\t%s\n" % (key, value))
        records.append((key.encode() + b"\0", value.encode() + b"\0"))
    return "".join(lines), records


@pytest.mark.parametrize("count", [0, 1, 2000, 20000])
def test_read_files_written_by_postmap(tmp_path, config_dir, count):
    text, records = random_source(random.Random(count), count)
    src = tmp_path / "virtual"
    src.write_text(text, encoding="utf-8")
    proc = run(["postmap", "-c", config_dir, "hash:" + str(src)])
    assert proc.returncode == 0, proc.stderr
    path = str(src) + ".db"
    ours = list(dbhash.read(path))
    assert sorted(ours) == sorted(records)
    assert ours == postmap_dump(str(src), config_dir)
    for key, value in random.Random(1).sample(records, min(300, count)):
        assert dbhash.lookup(path, key) == value
        assert dbhash.lookup(path, key[:-1]) is None  # stored with its NUL
        assert dbhash.lookup(path, b"x" + key) is None


# -- property: anything we write reads back --------------------------------------------------

_value = st.one_of(st.binary(max_size=60), st.binary(min_size=1000, max_size=3000))
# Keys as Postfix stores them in a hash file: a C string and its NUL (no key is then a prefix
# of another; test_verify.py covers keys without the NUL, and what libdb cannot find).
_key = st.one_of(st.binary(max_size=40), st.binary(min_size=1020, max_size=1100)).map(
    lambda k: k.replace(b"\0", b"") + b"\0")
_records = st.dictionaries(_key, _value, max_size=150).map(lambda d: sorted(d.items()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=_records, verify=st.integers(0, 9))
def test_roundtrip_property(records, verify):
    directory = tempfile.mkdtemp(prefix="hashprop-")
    try:
        path = os.path.join(directory, "t.db")
        shuffled = list(records)
        random.Random(len(records)).shuffle(shuffled)
        dbhash.write(path, shuffled)
        assert sorted(dbhash.read(path)) == records
        for key, value in records[:20]:
            assert dbhash.lookup(path, key) == value
        if verify == 0:
            db_verify(path)
    finally:
        shutil.rmtree(directory)


# -- bad input ---------------------------------------------------------------------------------

def assert_rejected(path):
    with pytest.raises(PostfixError) as info:
        list(dbhash.read(path))
    assert str(info.value).startswith(path + ": ")
    with pytest.raises(PostfixError):
        dbhash.lookup(path, b"a@b.example\0")


def test_garbage_is_not_a_hash_file(tmp_path, config_dir):
    cases = {
        "empty": b"",
        "text": b"root: admin\n" * 100,
        "short": b"\x00" * 100,
        "zeros": b"\x00" * 8192,
        "random": random.Random(1).randbytes(3 * 4096) if hasattr(random.Random, "randbytes")
        else bytes(random.Random(1).getrandbits(8) for dummy in range(3 * 4096)),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert_rejected(str(path))
        with pytest.raises(PostfixError, match="not a Berkeley DB hash file"):
            dbhash.read(str(path))
    src = tmp_path / "bt"
    src.write_text("a b\n")
    assert run(["postmap", "-c", config_dir, "btree:" + str(src)]).returncode == 0
    with pytest.raises(PostfixError, match="btree"):
        dbhash.read(str(src) + ".db")
    with pytest.raises(PostfixError, match="cannot open"):
        dbhash.read(str(tmp_path / "missing.db"))
    with pytest.raises(PostfixError):
        dbhash.lookup(str(tmp_path), b"a\0")


def test_truncated_files(tmp_path):
    path = str(tmp_path / "t.db")
    records = virtual_records(3000, seed=2)
    records.append((b"big@example\0", b"v" * 20000 + b"\0"))
    dbhash.write(path, records)
    with open(path, "rb") as f:
        data = f.read()
    for cut in (1, 100, 511, 4096, 4097, 8192, len(data) // 2, len(data) - 4096, len(data) - 1):
        cut_path = str(tmp_path / ("cut%d.db" % cut))
        with open(cut_path, "wb") as f:
            f.write(data[:cut])
        with pytest.raises(PostfixError, match="not a Berkeley DB hash file"):
            list(dbhash.read(cut_path))
        for key, dummy in records[::100]:
            try:
                dbhash.lookup(cut_path, key)
            except PostfixError as exc:
                assert "not a Berkeley DB hash file" in str(exc)


def test_corrupted_bytes_never_raise_anything_else(tmp_path):
    path = str(tmp_path / "t.db")
    records = virtual_records(1500, seed=4)
    records += [(b"big%d@example\0" % i, b"v" * 9000 + b"\0") for i in range(3)]
    dbhash.write(path, records)
    with open(path, "rb") as f:
        clean = f.read()
    rng = random.Random(9)
    hot = list(range(0, 600)) + [4096 * p + o for p in range(1, len(clean) // 4096) for o in range(0, 40)]
    bad = str(tmp_path / "bad.db")
    for trial in range(400):
        data = bytearray(clean)
        for dummy in range(rng.randint(1, 4)):
            pos = rng.choice(hot) if rng.random() < 0.7 else rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        with open(bad, "wb") as f:
            f.write(data)
        try:
            list(dbhash.read(bad))
        except PostfixError:
            pass
        for key, dummy in records[trial % 50::300]:
            try:
                dbhash.lookup(bad, key)
            except PostfixError:
                pass


def test_bad_records_are_refused(tmp_path):
    path = str(tmp_path / "t.db")
    with pytest.raises(PostfixError, match="duplicate"):
        dbhash.write(path, [(b"a\0", b"1\0"), (b"a\0", b"2\0")])
    for bad in ([("a", "b")], [(b"a", "b")], [(b"a", 1)], [(1, b"b")], [(b"a",)], [(b"a", b"b", b"c")], [b"ab"]):
        with pytest.raises(PostfixError, match="bytes"):
            dbhash.write(path, bad)


def test_write_columns(tmp_path, config_dir):
    """write_columns() takes the two lists the compiler has; write() is the same file."""
    records = virtual_records(3000, seed=3)
    records[::300] = [(k, v[:-1] + b"w" * 2000 + b"\0") for k, v in records[::300]]
    base = str(tmp_path / "cols")
    dbhash.write_columns(base + ".db", [k for k, v in records], tuple(v for k, v in records))
    db_verify(base + ".db")
    assert sorted(postmap_dump(base, config_dir)) == sorted(records)
    dbhash.write(str(tmp_path / "recs.db"), records)
    assert list(dbhash.read(base + ".db")) == list(dbhash.read(str(tmp_path / "recs.db")))
    path = str(tmp_path / "bad.db")
    for keys, values in (([b"a\0"], []), ([b"a\0"], ["b"]), (["a"], [b"b\0"]), ([b"a\0", None], [b"b\0", b"c\0"])):
        with pytest.raises(PostfixError, match="bytes"):
            dbhash.write_columns(path, keys, values)
    keys = [k for k, v in records] + [records[1234][0]]
    with pytest.raises(PostfixError, match="duplicate"):
        dbhash.write_columns(path, keys, [b"v\0"] * len(keys))


def test_reader_keeps_the_file_open_and_sees_a_replaced_one(tmp_path):
    """Reader (the route module's many lookups): one open file for many keys; a new index
    renamed into place (as postmap and our writer do) is read at the next lookup."""
    path = str(tmp_path / "virtual.db")
    dbhash.write(path, [(b"a@x.test\0", b"old\0"), (b"b@x.test\0", b"b\0")])
    reader = dbhash.Reader(path)
    assert reader.lookup(b"a@x.test\0") == b"old\0" and reader.lookup(b"c@x.test\0") is None
    first = reader._db  # pylint: disable=protected-access
    assert reader.lookup(b"b@x.test\0") == b"b\0" and reader._db is first  # pylint: disable=protected-access
    new = str(tmp_path / "virtual.new.db")
    dbhash.write(new, [(b"a@x.test\0", b"new\0")])
    os.rename(new, path)
    assert reader.lookup(b"a@x.test\0") == b"new\0" and reader.lookup(b"b@x.test\0") is None
    os.unlink(path)
    with pytest.raises(PostfixError):
        reader.lookup(b"a@x.test\0")
    reader.close()
