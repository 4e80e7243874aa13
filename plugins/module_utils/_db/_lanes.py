# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Many multiply-xor string hashes at once, for the index writers.

Both hashes the writers need have the form ``h = initial; for each byte c: h = (h * M) ^ c``
modulo 2**32: tinycdb's cdb_hash (M = 33, initial 5381; ``h + (h << 5)`` is ``h * 33``) and
libdb's __ham_func5, FNV-1 (M = 16777619, initial 0).  One Python operation per byte is
slow, so :func:`hashes` gives each key a lane of a few bytes in one big integer and does each
step (multiply, keep the low bits, xor a column of bytes) for all lanes with three
big-integer operations.  A lane is wide enough that the multiplication never carries into
the next one.

Keys are left-padded with spaces to a common length, a whole batch by one %-format.  A pad
byte maps a state h to ``f(h) = (h * M) ^ 0x20``, which M odd makes invertible modulo
2**bits, so the lane of a key padded with p spaces starts from ``f**-p(initial)`` and holds
``initial`` when its first real byte comes.
"""

from __future__ import annotations

import sys
from array import array
from collections import Counter

# Keys hashed per batch (bounds the size of the big integers).
BATCH = 65536
# Fewer keys than this are hashed a byte at a time (hash_one).
FEW = 16
# The longest key hashed in a lane (see _lane_length).
_LONGEST_LANE = 255
_PAD = 0x20


def hash_one(key, multiplier, initial=0, bits=32):
    """The hash of one key modulo 2**bits, a byte at a time."""
    mask = (1 << bits) - 1
    h = initial & mask
    for c in key:
        h = ((h * multiplier) & mask) ^ c
    return h & mask


def hashes(keys, multiplier, initial=0, bits=32):
    """``hash_one(key, multiplier, initial, bits)`` of every key of ``keys`` (a sequence of
    bytes), as an array of unsigned ints ("I", so ``bits`` <= 32).  With ``bits`` below 32
    only the low bits are computed, in narrower lanes (libdb needs only the bucket bits)."""
    out = array("I")
    if not keys:
        return out
    if len(keys) < FEW:
        # A lookup hashes one key: setting lanes up costs more than a byte at a time.
        out.extend(hash_one(key, multiplier, initial, bits) for key in keys)
        return out
    low = (1 << bits) - 1
    multiplier &= low
    if not multiplier & 1:
        raise ValueError("lanes need an odd multiplier")
    # The widest value a lane holds: a state times the multiplier, or a byte.
    width = ((max(low, 255) * max(multiplier, 1)).bit_length() + 7) // 8
    lane_mask = low.to_bytes(width, "little")
    for start in range(0, len(keys), BATCH):
        batch = keys[start:start + BATCH]
        n = len(batch)
        lengths = list(map(len, batch))
        longest, alone = _lane_length(lengths)
        if alone:
            batch = [k if len(k) <= longest else b"" for k in batch]
            lengths = list(map(len, batch))
        mask = int.from_bytes(lane_mask * n, "little")
        state = _initial_lanes(bytes(lengths), longest, multiplier, initial & low, low, width)
        padded = (b"%%%ds" % longest * n) % tuple(batch)
        lanes = bytearray(width * n)
        for col in range(longest):
            lanes[0::width] = padded[col::longest]
            state = ((state * multiplier) & mask) ^ int.from_bytes(lanes, "little")
        del padded, lanes
        part = _to_uint32(state & mask, n, width)
        for i in alone:
            part[i] = hash_one(keys[start + i], multiplier, initial, bits)
        out.extend(part)
    return out


def _initial_lanes(lengths, longest, multiplier, initial, low, width):
    """The starting state of every lane: ``f**-pad(initial)`` for a key padded with ``pad``
    spaces, ``lengths`` the key lengths as bytes (so ``longest`` < 256).  Each
    byte of the lanes is the key length translated through a table of that byte of the
    start for every length."""
    inverse = pow(multiplier, -1, low + 1)
    start_of = [0] * 256
    start = initial
    for length in range(longest, -1, -1):
        start_of[length] = start
        start = ((start ^ _PAD) * inverse) & low
    lanes = bytearray(width * len(lengths))
    for byte in range(min(width, 4)):
        lanes[byte::width] = lengths.translate(bytes((s >> 8 * byte) & 0xFF for s in start_of))
    return int.from_bytes(lanes, "little")


def _to_uint32(state, n, width):
    """Lanes of ``width`` bytes (values below 2**32) to an array("I") of ``n`` values."""
    packed = state.to_bytes(width * n, "little")
    if width != 4:
        wide = bytearray(4 * n)
        for byte in range(min(width, 4)):
            wide[byte::4] = packed[byte::width]
        packed = wide
    part = array("I")
    part.frombytes(packed)
    if sys.byteorder == "big":
        part.byteswap()
    return part


def _lane_length(lengths):
    """The padded length for a batch, and the indexes of keys longer than it.

    Padding every key to the longest one costs (keys x longest) lane steps; a key hashed
    alone costs about 14 lane steps per byte. Pick the cut that costs least, at most 255
    (_initial_lanes keeps lengths in bytes; an address is never longer: RFC 5321 caps a
    path at 256 octets with its angle brackets).
    """
    longest = max(lengths)
    if longest <= 64:
        return longest, ()
    n = len(lengths)
    counts = Counter(lengths)
    best, best_cost = None, None
    above = sum(lengths)
    for length in sorted(counts):
        above -= counts[length] * length
        cost = n * length + 14 * above
        if length <= _LONGEST_LANE and (best is None or cost < best_cost):
            best, best_cost = length, cost
    if best == longest:
        return longest, ()
    if best is None:
        return 0, range(n)
    return best, [i for i, length in enumerate(lengths) if length > best]
