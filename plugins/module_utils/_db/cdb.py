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

import os
import struct
import sys
from array import array
from collections import Counter
from itertools import accumulate, chain, repeat
from operator import add

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

SUFFIX = ".cdb"
# dict_cdbm_open() forces DICT_FLAG_TRY0NULL: keys and values are stored without a NUL.
NUL_TERMINATED = False

_HEADER_SIZE = 2048
_MAX_FILE = 0xFFFFFFFF
_PAIR = struct.Struct("<II")
_HEADER = struct.Struct("<512I")
_LANE = struct.Struct("<Q")
_HASH_BLOCK = 4096
_WRITE_BATCH = 65536


class CdbError(PostfixError):
    """A cdb file that cannot be written or is not a valid cdb file."""


def _hash(key):
    """The cdb hash (djb, cdb_hash in tinycdb): h = 5381; h = (h * 33) ^ c, modulo 2**32."""
    h = 5381
    for c in key:
        h = ((h * 33) ^ c) & 0xFFFFFFFF
    return h


def _hashes(keys):
    """cdb hashes of ``keys`` (an array of uint32), a column at a time for keys of equal length.

    Each key gets a 64-bit lane in one big integer: multiplying by 33 a value below 2**32
    cannot carry into the next lane, so one big-integer multiply, mask and xor hash a whole
    column of bytes at C speed instead of one Python operation per byte. Blocks of
    _HASH_BLOCK keys keep those integers cache-sized.
    """
    out = array("I", bytes(4 * len(keys)))
    groups = {}
    for i, key in enumerate(keys):
        groups.setdefault(len(key), []).append(i)
    for length, members in groups.items():
        if len(members) < 16 or not length:
            for i in members:
                out[i] = _hash(keys[i])
            continue
        for b in range(0, len(members), _HASH_BLOCK):
            idx = members[b:b + _HASH_BLOCK]
            count = len(idx)
            blob = b"".join([keys[i] for i in idx])
            mask = int.from_bytes(b"\xff\xff\xff\xff\0\0\0\0" * count, "little")
            h = int.from_bytes(_LANE.pack(5381) * count, "little")
            column = bytearray(8 * count)
            for j in range(length):
                column[0::8] = blob[j::length]
                h = ((h * 33) & mask) ^ int.from_bytes(column, "little")
            for i, value in zip(idx, struct.unpack("<%dQ" % count, h.to_bytes(8 * count, "little"))):
                out[i] = value
    return out


def _uint32_le(values):
    if sys.byteorder != "little":
        values.byteswap()
    return values.tobytes()


def _plan(records):
    """Validate ``records``; return (keys, values, header bytes, hash table bytes)."""
    records = list(records)
    count = len(records)
    try:
        if set(map(len, records)) - {2}:
            raise ValueError
        keys, values = zip(*records) if records else ((), ())
    except (TypeError, ValueError):
        raise CdbError("cdb records must be (key, value) pairs")
    del records
    if not all(map(isinstance, keys, repeat(bytes))) or not all(map(isinstance, values, repeat(bytes))):
        raise CdbError("cdb records must be (bytes, bytes) pairs")
    # Record positions: 2048, then each record's 8 + klen + vlen bytes (cdb_make_add).
    end = _HEADER_SIZE + 8 * count + sum(map(len, keys)) + sum(map(len, values))
    if end + 16 * count > _MAX_FILE:
        raise CdbError("cdb table too large: a cdb file cannot exceed 4 GiB")
    positions = accumulate(chain((_HEADER_SIZE,), map(add, map(add, map(len, keys), map(len, values)), repeat(8))))

    # cdb_make_finish: table t (= hash & 255) gets 2 * (its record count) slots; a record
    # goes to slot (hash >> 8) % nslots, then linear probing, in insertion order. The 256
    # tables follow the records back to back, so all slots live in one array here.
    hashes = _hashes(keys)
    tables = bytes(h & 0xFF for h in hashes)
    nslots = [0] * 256
    for t, n in Counter(tables).items():
        nslots[t] = 2 * n
    bases = list(accumulate(chain((0,), nslots)))
    slot_hash = array("I", bytes(8 * count))
    slot_pos = array("I", bytes(8 * count))
    for h, rpos, t in zip(hashes, positions, tables):
        n = nslots[t]
        base = bases[t]
        i = (h >> 8) % n
        while slot_pos[base + i]:
            i += 1
            if i == n:
                i = 0
        slot_hash[base + i] = h
        slot_pos[base + i] = rpos
    del hashes
    slots = array("I", bytes(16 * count))
    slots[0::2] = slot_hash
    slots[1::2] = slot_pos
    header = [0] * 512
    header[0::2] = [end + 8 * b for b in bases[:256]]
    header[1::2] = nslots
    return keys, values, _HEADER.pack(*header), _uint32_le(slots)


def _emit(out, records):
    """Write the cdb file for ``records`` through ``out`` (a write method), in batches."""
    keys, values, header, slots = _plan(records)
    out(header)
    pack = _PAIR.pack
    for b in range(0, len(keys), _WRITE_BATCH):
        k = keys[b:b + _WRITE_BATCH]
        v = values[b:b + _WRITE_BATCH]
        out(b"".join(chain.from_iterable(zip(map(pack, map(len, k), map(len, v)), k, v))))
    out(slots)


def dumps(records):
    """The cdb file contents for ``records`` (an iterable of ``(key, value)`` bytes pairs)."""
    chunks = []
    _emit(chunks.append, records)
    return b"".join(chunks)


def write(path, records):
    """Write ``records`` as a complete cdb file at ``path`` (truncating it)."""
    try:
        with open(path, "wb") as f:
            _emit(f.write, records)
    except OSError as exc:
        raise CdbError("cannot write %s: %s" % (path, exc.strerror or exc))


def _read_all(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CdbError("cannot read %s: %s" % (path, exc.strerror or exc))


def _check_header(path, data):
    """Validate the header against the file size; return (header tuple, end of records)."""
    size = len(data)
    if size < _HEADER_SIZE:
        raise CdbError("%s: not a cdb file (%d bytes, shorter than the 2048-byte header)" % (path, size))
    header = _HEADER.unpack_from(data, 0)
    for t in range(256):
        tpos, nslots = header[2 * t], header[2 * t + 1]
        if tpos < _HEADER_SIZE or tpos + 8 * nslots > size or (nslots and nslots % 2):
            raise CdbError("%s: not a cdb file (bad hash table %d in header)" % (path, t))
    # Records end where the first hash table starts (cdb_make writes table 0 first).
    return header, header[0]


def read(path):
    """Yield every ``(key, value)`` in file (insertion) order."""
    data = _read_all(path)
    _header, end = _check_header(path, data)
    unpack_pair = _PAIR.unpack_from
    pos = _HEADER_SIZE
    out = []
    while pos < end:
        if pos + 8 > end:
            raise CdbError("%s: corrupt cdb file (truncated record at offset %d)" % (path, pos))
        klen, vlen = unpack_pair(data, pos)
        kstart = pos + 8
        vstart = kstart + klen
        nxt = vstart + vlen
        if nxt > end:
            raise CdbError("%s: corrupt cdb file (record at offset %d runs past the data)" % (path, pos))
        out.append((data[kstart:vstart], data[vstart:nxt]))
        pos = nxt
    return iter(out)


def lookup(path, key):
    """The value stored for ``key`` (first match, as cdb_find returns), or None."""
    h = _hash(key)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _HEADER_SIZE:
                raise CdbError("%s: not a cdb file (%d bytes, shorter than the 2048-byte header)" % (path, size))
            slot_off = (h & 0xFF) * 8
            f.seek(slot_off)
            tpos, nslots = _PAIR.unpack(f.read(8))
            if tpos < _HEADER_SIZE or tpos + 8 * nslots > size:
                raise CdbError("%s: not a cdb file (bad hash table %d in header)" % (path, h & 0xFF))
            if not nslots:
                return None
            i = (h >> 8) % nslots
            for _i in range(nslots):
                f.seek(tpos + 8 * i)
                shash, rpos = _PAIR.unpack(f.read(8))
                if not rpos:
                    return None
                if shash == h:
                    if rpos + 8 > size:
                        raise CdbError("%s: corrupt cdb file (record offset %d past the end)" % (path, rpos))
                    f.seek(rpos)
                    klen, vlen = _PAIR.unpack(f.read(8))
                    if rpos + 8 + klen + vlen > size:
                        raise CdbError("%s: corrupt cdb file (record at offset %d runs past the end)" % (path, rpos))
                    if klen == len(key) and f.read(klen) == key:
                        return f.read(vlen)
                i += 1
                if i == nslots:
                    i = 0
            return None
    except OSError as exc:
        raise CdbError("cannot read %s: %s" % (path, exc.strerror or exc))
    except struct.error:
        raise CdbError("%s: corrupt cdb file (truncated)" % (path,))
