"""The staleness check and the lookups look every key up the way Postfix does.

On files that real Postfix cannot fully read (records in another bucket, a page out of
order, a lost page, a cleared cdb slot, truncation) the check must count exactly the keys
real ``postmap -q`` finds, while a plain read of every record would have called them
current; lookups (one at a time, and through the Reader the route module keeps open) must
answer exactly the keys real ``postmap -q`` answers; and the next run must rebuild such an
index.
"""

from __future__ import annotations

import os
import random
import re
import struct
import subprocess

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _db
from ansible_collections.mailops.postfix.plugins.module_utils._db import cdb as dbcdb
from ansible_collections.mailops.postfix.plugins.module_utils._db import hash as dbhash
from ansible_collections.mailops.postfix.plugins.module_utils._mapbuild import Table
from postfix_oracle import postmap_query

_FINDS = re.compile(r"Postfix finds (\d+) of (\d+) keys")


def columns(n, long_share=0.0, seed=0, nul=True):
    """Keys and values as an index stores them: virtual addresses, some with long lists."""
    rng = random.Random(seed)
    z = b"\0" if nul else b""
    keys, values = [], []
    for i in range(n):
        keys.append(b"user%d.%d@d%d.example" % (i, rng.randrange(1000), i % 7) + z)
        if rng.random() < long_share:
            value = b", ".join(b"member%d@lists.example" % j for j in range(rng.randint(200, 600)))
        else:
            value = b"target%d@example.net" % i
        values.append(value + z)
    return keys, values


def postfix_finds(confdir, spec, keys, values):
    """How many keys real postmap answers with their value (queried without the NUL)."""
    got = postmap_query(confdir, spec, [k.rstrip(b"\0") for k in keys])
    return sum(got.get(k.rstrip(b"\0")) == v.rstrip(b"\0") for k, v in zip(keys, values))


def verify_finds(fmt, path, keys, values):
    """How many keys verify() says Postfix finds (all when it calls the file current)."""
    reason = fmt.verify(path, keys, values)
    if reason is None:
        return len(keys)
    m = _FINDS.search(reason)
    assert m, reason
    assert int(m.group(2)) == len(keys)
    return int(m.group(1))


def lookups_find(fmt, path, keys, values):
    """How many keys lookup() answers with their value; the Reader must answer the same."""
    one_by_one = [fmt.lookup(path, k) for k in keys]
    reader = fmt.Reader(path)
    try:
        assert [reader.lookup(k) for k in keys] == one_by_one
    finally:
        reader.close()
    return sum(got == v for got, v in zip(one_by_one, values))


def pages(path):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    return data, struct.unpack_from("<I", data, 72)[0]


def bucket_page(data, bucket):
    return (bucket + 1) * 4096  # our writer: spares[] = 1, bucket b on page b + 1


def pairs_on(data, offset):
    return struct.unpack_from("<H", data, offset + 20)[0] // 2


# -- hash: files Postfix cannot fully read ----------------------------------------------------

def swap_two_buckets(monkeypatch):
    """The writer puts buckets 0 and 1's records on each other's pages."""
    group = dbhash._group

    def swapped(*args):
        groups = group(*args)
        groups[0], groups[1] = groups[1], groups[0]
        return groups
    monkeypatch.setattr(dbhash, "_group", swapped)


def reverse_a_bucket(monkeypatch):
    """The writer stores the pairs of the fullest bucket in reverse order (each page
    well-formed, the binary search misled)."""
    group = dbhash._group

    def reversed_pairs(*args):
        groups = group(*args)
        fullest = max(range(len(groups)), key=lambda b: len(groups[b]))
        flat = groups[fullest]
        pairs = [flat[i:i + 2] for i in range(0, len(flat), 2)]
        groups[fullest] = [item for pair in reversed(pairs) for item in pair]
        return groups
    monkeypatch.setattr(dbhash, "_group", reversed_pairs)


def clear_a_page(path):
    """A bucket page that reads back as never written (all zeros)."""
    data, max_bucket = pages(path)
    offset = bucket_page(data, max_bucket // 2)
    data[offset:offset + 4096] = bytes(4096)
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("damage", ["swapped buckets", "page out of order", "page lost"])
def test_hash_verdict_is_postfix_verdict(tmp_path, confdir, monkeypatch, damage):
    keys, values = columns(3000, long_share=0.02, seed=len(damage))
    path = str(tmp_path / "t.db")
    if damage == "swapped buckets":
        swap_two_buckets(monkeypatch)
    elif damage == "page out of order":
        reverse_a_bucket(monkeypatch)
    dbhash.write_columns(path, keys, values)
    monkeypatch.undo()  # the check groups keys with the real _group
    if damage == "page lost":
        clear_a_page(path)
    finds = postfix_finds(confdir, "hash:" + path[:-3], keys, values)
    assert finds < len(keys)
    assert verify_finds(dbhash, path, keys, values) == finds
    assert lookups_find(dbhash, path, keys, values) == finds
    if damage != "page lost":
        # Every record is still there for a reader that walks the pages in order.
        assert sorted(dbhash.read(path)) == sorted(zip(keys, values))


def test_keys_without_nul_prefix_of_each_other(tmp_path, confdir, monkeypatch):
    """postalias's YP_* records carry no NUL: of two such keys, one a prefix of the other in
    one bucket, libdb's on-page comparison puts the longer first (__ham_getindex_sorted)."""
    # Appending even bytes keeps FNV-1's low bit: all in one bucket of a 2-bucket table.
    keys = [b"yp", b"ypb", b"ypbd", b"ypbdf", b"ypbdfh", b"yp_master_name", b"yp_master_namez"]
    values = [b"v-" + k for k in keys]
    path = str(tmp_path / "t.db")
    dbhash.write_columns(path, keys, values)
    assert dbhash.verify(path, keys, values) is None
    assert [dbhash.lookup(path, k) for k in keys] == values
    # postmap -q tries the key with a NUL first, then without (dict_db_lookup).
    assert postfix_finds(confdir, "hash:" + path[:-3], keys, values) == len(keys)
    # In plain byte order the same records hide keys from libdb, and verify() counts them.
    monkeypatch.setattr(dbhash, "_on_page_order", lambda key: key)
    dbhash.write_columns(path, keys, values)
    monkeypatch.undo()
    finds = postfix_finds(confdir, "hash:" + path[:-3], keys, values)
    assert finds < len(keys)
    assert verify_finds(dbhash, path, keys, values) == finds
    assert lookups_find(dbhash, path, keys, values) == finds


def test_a_key_that_off_page_keys_extend(tmp_path, confdir):
    """Keys stored without a NUL can be prefixes of others. libdb compares a lookup key
    with an off-page item shorter-first (__db_moff) but with an on-page one longer-first,
    so on one page no order lets it find both "b" and two long keys that extend it: real
    postmap -q does not find "b", and neither must lookup() nor verify()."""
    keys = [b"b", b"b" + b"a" * 1030, b"b" + b"z" * 1030]
    values = [b"v0", b"v1", b"v2"]
    path = str(tmp_path / "t.db")
    dbhash.write_columns(path, keys, values)
    got = postmap_query(confdir, "hash:" + path[:-3], keys)
    assert [got.get(k) for k in keys] == [None, b"v1", b"v2"]
    assert verify_finds(dbhash, path, keys, values) == lookups_find(dbhash, path, keys, values) == 2


def test_unsorted_pages_are_searched_in_order(tmp_path, confdir, monkeypatch):
    """A bucket whose pairs are out of order hides keys from libdb's binary search on a
    sorted page (P_HASH), but not on a pre-4.6 unsorted one (P_HASH_UNSORTED), which
    __ham_getindex_unsorted searches item by item: the same records, found as Postfix finds them."""
    keys, values = columns(3000, seed=5)
    path = str(tmp_path / "t.db")
    reverse_a_bucket(monkeypatch)
    dbhash.write_columns(path, keys, values)
    monkeypatch.undo()
    finds = postfix_finds(confdir, "hash:" + path[:-3], keys, values)
    assert finds < len(keys)
    assert verify_finds(dbhash, path, keys, values) == lookups_find(dbhash, path, keys, values) == finds
    data, max_bucket = pages(path)
    for bucket in range(max_bucket + 1):
        data[bucket_page(data, bucket) + 25] = 2  # PAGE type: P_HASH -> P_HASH_UNSORTED
    with open(path, "wb") as f:
        f.write(data)
    assert postfix_finds(confdir, "hash:" + path[:-3], keys, values) == len(keys)
    assert verify_finds(dbhash, path, keys, values) == lookups_find(dbhash, path, keys, values) == len(keys)


def test_hash_verify_reasons(tmp_path):
    keys, values = columns(500, long_share=0.05, seed=3)
    path = str(tmp_path / "t.db")
    dbhash.write_columns(path, keys, values)
    assert dbhash.verify(path, keys, values) is None
    changed = values[:7] + [b"other\0"] + values[8:]
    assert dbhash.verify(path, keys, changed) == _db.DIFFERS + ": Postfix finds 499 of 500 keys (1 with another value)"
    assert dbhash.verify(path, keys[1:], values[1:]) == _db.DIFFERS + ": it holds 500 records, the source 499"
    more = keys + [b"new@example\0"]
    assert dbhash.verify(path, more, values + [b"x\0"]) == _db.DIFFERS + ": Postfix finds 500 of 501 keys (1 not found)"
    with open(path, "r+b") as f:
        f.truncate(5000)
    assert dbhash.verify(path, keys, values).startswith("index unreadable: ")
    with open(path, "wb") as f:
        f.write(b"garbage" * 1000)
    assert dbhash.verify(path, keys, values).startswith("index unreadable: ")
    assert dbhash.verify(str(tmp_path / "absent.db"), keys, values).startswith("index unreadable: ")


# -- cdb --------------------------------------------------------------------------------------

def test_cdb_verdict_is_postfix_verdict(tmp_path, confdir):
    keys, values = columns(3000, long_share=0.02, seed=9, nul=False)
    path = str(tmp_path / "t.cdb")
    dbcdb.write_columns(path, keys, values)
    assert dbcdb.verify(path, keys, values) is None
    clear_first_cdb_slot(path)
    finds = postfix_finds(confdir, "cdb:" + path[:-4], keys, values)
    assert finds < len(keys)
    assert verify_finds(dbcdb, path, keys, values) == finds
    assert lookups_find(dbcdb, path, keys, values) == finds
    assert sorted(dbcdb.read(path)) == sorted(zip(keys, values))


# -- the next run rebuilds what Postfix cannot read ------------------------------------------

def clear_first_cdb_slot(path):
    """Clear the first used slot of cdb table 0: its record, and any probing past it, is lost."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    tpos, nslots = struct.unpack_from("<II", data, 0)
    slot = next(i for i in range(nslots) if struct.unpack_from("<I", data, tpos + 8 * i + 4)[0])
    struct.pack_into("<II", data, tpos + 8 * slot, 0, 0)
    with open(path, "wb") as f:
        f.write(data)


def damage_index(table, monkeypatch):
    """Leave an index that Postfix cannot fully read; the reason the next run must give."""
    if table.type == "hash":
        keys, values = table.stored_records()[:2]
        swap_two_buckets(monkeypatch)
        dbhash.write_columns(table.index, keys, values)
        monkeypatch.undo()
        return _db.DIFFERS + ": Postfix finds "
    if table.type == "cdb":
        clear_first_cdb_slot(table.index)
        return _db.DIFFERS + ": Postfix finds "
    with open(table.index, "r+b") as f:
        f.truncate(4096 + 100)
    return "index unreadable: "


@pytest.mark.parametrize("type_name", ["hash", "cdb", "lmdb"])
def test_next_run_rebuilds_an_index_postfix_cannot_read(tmp_path, confdir, monkeypatch, type_name):
    source = str(tmp_path / "virtual")
    keys, values = columns(2000, long_share=0.02, seed=5, nul=False)
    with open(source, "wb") as f:
        f.write(b"".join(k + b" " + v + b"\n" for k, v in zip(keys, values)))
    table = Table(source, type_name, hostname="mx.example.test")
    assert table.ensure()["rebuild_reason"] == "index missing"
    assert table.ensure()["rebuild_reason"] is None
    expected_reason = damage_index(table, monkeypatch)
    later = os.stat(source).st_mtime + 10
    os.utime(table.index, (later, later))  # newer than its source: only the content tells
    result = table.ensure(check_mode=True)
    assert result["changed"]
    reason = result["rebuild_reason"]
    assert reason.startswith(expected_reason)
    assert table.ensure()["rebuild_reason"] == reason
    spec = "%s:%s" % (type_name, source)
    assert postfix_finds(confdir, spec, keys, values) == len(keys)
    assert table.ensure()["changed"] is False
    proc = subprocess.run(["postmap", "-c", confdir, "-s", spec], capture_output=True, check=False)
    if type_name != "cdb":  # Postfix 3.7 cannot dump cdb
        assert proc.returncode == 0 and len(proc.stdout.splitlines()) == len(keys)


@pytest.mark.parametrize("n", [1, 5000, 20000])
def test_files_written_by_postmap_are_current(tmp_path, confdir, n):
    """libdb's own layout (buckets split one at a time, so max_bucket is rarely a power of
    two less one; pairs inserted into the first page with room): the check must call a
    file real postmap wrote from the same records current, and see one changed value."""
    keys, values = columns(n, long_share=0.02, seed=n)
    source = str(tmp_path / "virtual")
    with open(source, "wb") as f:
        f.write(b"".join(k[:-1] + b" " + v[:-1] + b"\n" for k, v in zip(keys, values)))
    subprocess.run(["postmap", "-c", confdir, "hash:" + source], check=True)
    max_bucket, high_mask = struct.unpack_from("<II", open(source + ".db", "rb").read(80), 72)
    assert dbhash.verify(source + ".db", keys, values) is None
    changed = values[:-1] + [b"changed\0"]
    assert verify_finds(dbhash, source + ".db", keys, changed) == n - 1
    if n > 1:
        assert max_bucket != high_mask  # the low_mask half of __ham_call_hash is exercised
