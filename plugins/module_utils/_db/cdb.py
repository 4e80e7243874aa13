# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cdb tables as ``postmap cdb:`` writes them (Postfix dict_cdb.c over tinycdb), pure Python.

Layout (all little-endian uint32): a 2048-byte header of 256 (table position, slot count)
pairs; the records ``klen vlen key value`` in insertion order; then 256 hash tables of
``2 * records-in-table`` (hash, record position) slots, filled by linear probing in
insertion order. Written this way the file is byte-identical to tinycdb's cdb_make.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from array import array
from collections import Counter
from itertools import accumulate, repeat
from operator import add

from ansible_collections.mailops.postfix.plugins.module_utils import _db
from ansible_collections.mailops.postfix.plugins.module_utils._db import _lanes
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

SUFFIX = ".cdb"
# dict_cdbm_open() forces DICT_FLAG_TRY0NULL: keys and values are stored without a NUL.
NUL_TERMINATED = False

_HEADER_SIZE = 2048
_MAX_FILE = 0xFFFFFFFF
_PAIR = struct.Struct("<II")
_HEADER = struct.Struct("<512I")
_WRITE_BATCH = 65536
_READ_BLOCK = 1 << 20
_VERIFY_BATCH = 8192


class CdbError(PostfixError):
    """A cdb file that cannot be written or is not a valid cdb file."""


def _hash(key):
    """The cdb hash (djb, cdb_hash in tinycdb): h = 5381; h = (h * 33) ^ c, modulo 2**32."""
    return _lanes.hash_one(key, 33, 5381)


def _hashes(keys):
    """cdb hashes of ``keys``, an array of uint32, computed many keys at a time (_lanes)."""
    return _lanes.hashes(keys, 33, 5381)


def _uint32_le(values):
    if sys.byteorder != "little":
        values.byteswap()
    return values.tobytes()


def _from_le(typecode, data):
    """An array of ``typecode`` from little-endian bytes."""
    values = array(typecode)
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def _plan(keys, values, klens, vlens):
    """(header bytes, hash table bytes) for the records ``keys[i]`` -> ``values[i]`` of
    lengths ``klens[i]`` and ``vlens[i]``."""
    count = len(keys)
    end = _HEADER_SIZE + 8 * count + sum(klens) + sum(vlens)
    if end + 16 * count > _MAX_FILE:
        raise CdbError("cdb table too large: a cdb file cannot exceed 4 GiB")
    # Record positions: 2048, then each record's 8 + klen + vlen bytes (cdb_make_add).
    positions = array("I", accumulate(map(add, map(add, klens, vlens), repeat(8)), initial=_HEADER_SIZE))
    positions.pop()

    # cdb_make_finish: table t (= hash & 255) gets 2 * (its record count) slots; a record
    # goes to slot (hash >> 8) % nslots, then linear probing, in insertion order. The 256
    # tables follow the records back to back, so all slots live in one array here, each
    # slot the 64-bit little-endian (hash, record position) pair it is on disk, 0 if empty.
    hashes = _hashes(keys)
    raw = _uint32_le(array("I", hashes))
    tables = raw[0::4]                                   # hash & 255 of every record
    shifted = bytearray(4 * count)                       # hash >> 8 of every record
    for byte in range(3):
        shifted[byte::4] = raw[byte + 1::4]
    del raw
    per_table = Counter(tables)
    nslots = [2 * per_table[t] for t in range(256)]
    bases = list(accumulate(nslots, initial=0))
    starts = map(add, map(bases.__getitem__, tables),
                 map(int.__mod__, _from_le("I", shifted), map(nslots.__getitem__, tables)))
    pairs = array("I", bytes(8 * count))
    pairs[0::2] = hashes
    pairs[1::2] = positions
    del hashes, positions, shifted
    slots = array("Q", bytes(8 * bases[256]))
    for pair, i in zip(_from_le("Q", _uint32_le(pairs)), starts):
        if slots[i]:
            t = pair & 0xFF
            stop = bases[t + 1]
            while slots[i]:
                i += 1
                if i == stop:
                    i = bases[t]
        slots[i] = pair
    header = [0] * 512
    header[0::2] = [end + 8 * b for b in bases[:256]]
    header[1::2] = nslots
    return _HEADER.pack(*header), _uint32_le(slots)


def _check_columns(keys, values):
    if len(keys) != len(values):
        raise CdbError("cdb records must be (key, value) pairs")
    if not all(map(isinstance, keys, repeat(bytes))) or not all(map(isinstance, values, repeat(bytes))):
        raise CdbError("cdb records must be (bytes, bytes) pairs")


def _columns(records):
    records = list(records)
    try:
        if set(map(len, records)) - {2}:
            raise ValueError
        keys, values = zip(*records) if records else ((), ())
    except (TypeError, ValueError):
        raise CdbError("cdb records must be (key, value) pairs")
    return keys, values


def _emit(out, keys, values):
    """Write the cdb file for the records through ``out`` (a write method), in batches."""
    _check_columns(keys, values)
    klens = array("I", map(len, keys))
    vlens = array("I", map(len, values))
    header, table = _plan(keys, values, klens, vlens)
    out(header)
    pack = _PAIR.pack
    count = len(keys)
    for b in range(0, count, _WRITE_BATCH):
        e = min(b + _WRITE_BATCH, count)
        parts = [b""] * (3 * (e - b))
        parts[0::3] = map(pack, klens[b:e], vlens[b:e])
        parts[1::3] = keys[b:e]
        parts[2::3] = values[b:e]
        out(b"".join(parts))
    out(table)


def dumps(records):
    """The cdb file contents for ``records`` (an iterable of ``(key, value)`` bytes pairs)."""
    chunks = []
    _emit(chunks.append, *_columns(records))
    return b"".join(chunks)


def write(path, records):
    """Write ``records`` as a complete cdb file at ``path`` (truncating it)."""
    write_columns(path, *_columns(records))


def write_columns(path, keys, values):
    """Write the records ``keys[i]`` -> ``values[i]`` (sequences of bytes) as a cdb file."""
    try:
        with open(path, "wb") as f:
            _emit(f.write, keys, values)
    except OSError as exc:
        raise CdbError("cannot write %s: %s" % (path, exc.strerror or exc))


def _open(path):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise CdbError("cannot read %s: %s" % (path, exc.strerror or exc))


def _check_header(path, head, size):
    """Validate the header against the file size; return the header tuple."""
    if size < _HEADER_SIZE or len(head) < _HEADER_SIZE:
        raise CdbError("%s: not a cdb file (%d bytes, shorter than the 2048-byte header)" % (path, size))
    header = _HEADER.unpack_from(head, 0)
    for t in range(256):
        tpos, nslots = header[2 * t], header[2 * t + 1]
        if tpos < _HEADER_SIZE or tpos + 8 * nslots > size or (nslots and nslots % 2):
            raise CdbError("%s: not a cdb file (bad hash table %d in header)" % (path, t))
    return header


def _read_header(path, f):
    try:
        size = os.fstat(f.fileno()).st_size
        return _check_header(path, f.read(_HEADER_SIZE), size)
    except OSError as exc:
        raise CdbError("cannot read %s: %s" % (path, exc.strerror or exc))


def _records_in(header):
    """The number of records the header's tables index (two slots per record)."""
    return sum(header[1::2]) // 2


def record_count(path):
    """The number of records in the file."""
    with _open(path) as f:
        return _records_in(_read_header(path, f))


def read(path):
    """Iterate over every ``(key, value)`` in file (insertion) order, reading the file a
    block at a time.  The header is checked at once."""
    f = _open(path)
    try:
        # Records end where the first hash table starts (cdb_make writes table 0 first).
        end = _read_header(path, f)[0]
    except Exception:
        f.close()
        raise
    return _records(path, f, end)


def _records(path, f, end):
    unpack_pair = _PAIR.unpack_from
    buf = b""
    offset = _HEADER_SIZE       # file offset of buf[0]; the file is read on from there
    i = 0
    try:
        with f:
            while offset + i < end:
                if len(buf) - i < 8:
                    buf, offset, i = _refill(path, f, buf, offset, i, 8, end)
                klen, vlen = unpack_pair(buf, i)
                size = 8 + klen + vlen
                if offset + i + size > end:
                    raise CdbError("%s: corrupt cdb file (record at offset %d runs past the data)"
                                   % (path, offset + i))
                if len(buf) - i < size:
                    buf, offset, i = _refill(path, f, buf, offset, i, size, end)
                kend = i + 8 + klen
                yield buf[i + 8:kend], buf[kend:i + size]
                i += size
    except OSError as exc:
        raise CdbError("cannot read %s: %s" % (path, exc.strerror or exc))


def _refill(path, f, buf, offset, i, need, end):
    """(buffer, its file offset, 0): buf[i:] and what follows, at least ``need`` bytes."""
    rest = buf[i:]
    offset += i
    rest += f.read(min(max(need - len(rest), _READ_BLOCK), end - offset - len(rest)))
    if len(rest) < need:
        raise CdbError("%s: corrupt cdb file (truncated record at offset %d)" % (path, offset))
    return rest, offset, 0


class _Mapped(object):
    """A cdb file mapped read-only, its header checked, searched as tinycdb's cdb_find():
    the key's table by the low byte of its hash, linear probing from slot
    (hash >> 8) % nslots until an empty slot, the first record whose hash and key match."""

    def __init__(self, path):
        self.path = path
        with _open(path) as f:
            try:
                self.size = os.fstat(f.fileno()).st_size
                self.data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""
            except OSError as exc:
                raise CdbError("cannot read %s: %s" % (path, exc.strerror or exc))
        try:
            self.header = _check_header(path, self.data[:_HEADER_SIZE], self.size)
        except CdbError:
            self.close()
            raise
        self._tables = [None] * 256     # (slots, slot count) of each table, read when first probed

    def close(self):
        if self.size:
            self.data.close()

    def _table(self, t):
        """(slots, slot count) of hash table ``t``, read when first probed."""
        tpos, nslots = self.header[2 * t], self.header[2 * t + 1]
        table = self._tables[t] = (_from_le("I", self.data[tpos:tpos + 8 * nslots]), nslots)
        return table

    def find(self, keys, hashes):
        """The value of the first record for each of ``keys`` (whose cdb hashes are
        ``hashes``), or None for a key not found."""
        data, size, unpack_pair, tables = self.data, self.size, _PAIR.unpack_from, self._tables
        out = []
        for key, h in zip(keys, hashes):
            slots, nslots = tables[h & 0xFF] or self._table(h & 0xFF)
            found = None
            i = (h >> 8) % nslots if nslots else 0
            for _probe in range(nslots):
                rpos = slots[2 * i + 1]
                if not rpos:
                    break
                if slots[2 * i] == h:
                    try:
                        klen, vlen = unpack_pair(data, rpos)
                    except struct.error:
                        raise CdbError("%s: corrupt cdb file (record offset %d past the end)" % (self.path, rpos))
                    if rpos + 8 + klen + vlen > size:
                        raise CdbError("%s: corrupt cdb file (record at offset %d runs past the end)"
                                       % (self.path, rpos))
                    if klen == len(key) and data[rpos + 8:rpos + 8 + klen] == key:
                        found = data[rpos + 8 + klen:rpos + 8 + klen + vlen]
                        break
                i += 1
                if i == nslots:
                    i = 0
            out.append(found)
        return out


def verify(path, keys, values, volatile=()):
    """Why the file does not answer ``keys`` with ``values`` as cdb_find() finds them, or
    None (see _db.verify)."""
    try:
        cdb = _Mapped(path)
    except CdbError as exc:
        return _db.unreadable(exc)
    missing = wrong = 0
    try:
        # In batches: the values found are compared and dropped, never all held at once.
        for start in range(0, len(keys), _VERIFY_BATCH):
            batch = keys[start:start + _VERIFY_BATCH]
            got = cdb.find(batch, _hashes(batch))
            lost, other = _db.differences(batch, values[start:start + _VERIFY_BATCH], got, volatile)
            missing += lost
            wrong += other
    except CdbError as exc:
        return _db.unreadable(exc)
    finally:
        cdb.close()
    return _db.verdict(len(keys), missing, wrong, _records_in(cdb.header))


def lookup(path, key):
    """The value stored for ``key`` (first match, as cdb_find returns), or None."""
    cdb = _Mapped(path)
    try:
        return cdb.find((key,), (_hash(key),))[0]
    finally:
        cdb.close()


class Reader(object):
    """The cdb file at ``path`` kept mapped for many lookups (the route module's), mapped
    again when the file there is replaced (postmap and our writer rename a new one into place)."""

    def __init__(self, path):
        self.path = path
        self._cdb = None
        self._ident = None

    def lookup(self, key):
        ident = _db.identity(self.path)
        if ident != self._ident:
            self.close()
            self._cdb, self._ident = _Mapped(self.path), ident
        return self._cdb.find((key,), (_hash(key),))[0]

    def close(self):
        if self._cdb is not None:
            self._cdb.close()
            self._cdb, self._ident = None, None
