# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Berkeley DB hash files (Postfix ``hash:`` tables), written and read in pure Python.

The layout is libdb 5.3's hash access method, version 9 (what Debian's Postfix links):

- page 0 is the meta page (``HMETA33`` in db_page.h);
- pages 1..N hold the N buckets, N a power of two, so ``max_bucket = high_mask = N - 1``
  and ``spares[0..log2 N] = 1`` (``BS_TO_PAGE``: bucket b is page b + 1), exactly what
  ``__ham_init_meta`` sets up for a table created with N buckets;
- a bucket that does not fit one page continues on ``P_HASH`` overflow pages linked by
  next/prev, and keys or values over pagesize/4 (``ISBIG``) are ``H_OFFPAGE`` items that
  point to chains of ``P_OVERFLOW`` pages (``__ham_add_el``, ``__db_poff``); both kinds
  are allocated after the last bucket page, as libdb allocates them at the end of file.

N is the smallest power of two that makes buckets at most 85% full on average (so
43-85%): most buckets are one page, the fuller ones spill onto an overflow page, and the
file is about the size postmap makes (postmap's libdb splits one bucket at a time as
the table grows; the result is the same kind of file). libdb takes its page size from
the file system's preferred I/O size, clamped to 512-16384 (``__fop_set_pgsize``), which
is 4096 on ext4, xfs and most others; this writer always uses 4096, and every libdb
reads any page size from the meta page. The reader takes any page size, either byte
order, and sorted (version 9) or unsorted (version 8) bucket pages.

Rules a lookup depends on, each of which a file can break while every record is still in
it (a reader that walks the pages in order sees them all; db_verify may pass):

- page n lives at byte n * pagesize (``__memp_fget`` reads a page by number), so bucket b
  is read from page ``b + spares[log2(b + 1)]`` (``BUCKET_TO_PAGE``, hash.h) and nowhere
  else. The writer once broke it: bucket pages and the overflow pages produced between
  them were buffered separately, and a flush of 256 overflow pages replaced the bucket
  buffer while bucket pages were still being appended to the old one, so later bucket
  pages were written at other buckets' offsets or not at all. Postfix then could not find
  up to a third of the keys of tables with a few percent of multi-kilobyte values;
- a key is only looked for in the bucket ``__ham_call_hash`` gives it, along that
  bucket's page chain (``__ham_lookup``);
- each page's pairs are in the order of ``__ham_getindex_sorted``'s binary search.

``verify`` checks all three, key by key, the way libdb looks keys up.
"""

from __future__ import annotations

import contextlib
import os
import struct
from array import array
from bisect import bisect_right
from itertools import accumulate, chain, count, islice, repeat
from operator import add, ge, itemgetter, sub

from ansible_collections.mailops.postfix.plugins.module_utils import _db
from ansible_collections.mailops.postfix.plugins.module_utils._db import _lanes
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError

SUFFIX = ".db"
NUL_TERMINATED = True

PAGESIZE = 4096

# db_page.h
_HASHMAGIC = 0x061561
_HASHVERSION = 9
_P_HASH_UNSORTED = 2
_P_OVERFLOW = 7
_P_HASHMETA = 8
_P_HASH = 13
_H_KEYDATA = 1
_H_OFFPAGE = 3
_OVERHEAD = 26  # SIZEOF_PAGE: no checksum, no encryption
_TYPE_AT = 25   # PAGE's type byte (see _PAGE_HEADER)
_DBMETASIZE = 512
_NCACHED = 32
_DBMETA_CHKSUM = 0x01
_DB_HASH_SUBDB = 0x02
_OTHER_MAGIC = {0x053162: "btree", 0x042253: "queue", 0x074582: "heap"}

# dict_db.c: Postfix asks for DICT_DB_NELM (4096) elements and no fill factor; libdb
# stores h_nelem in the meta page and adds one for every record put (__ham_add_el).
_POSTFIX_NELEM = 4096
# hash.h CHARKEY "%$sniglet^&" with its NUL, hashed by __ham_func5.
_CHARKEY_HASH = 0x5E688DD1

_FNV_PRIME = 16777619

# Average bucket fill the writer aims for (see module docstring).
_FILL = 0.85

# lsn (not logged: file 0, offset 1), pgno, prev_pgno, next_pgno, entries, hf_offset,
# level, type (PAGE in db_page.h).
_PAGE_HEADER = struct.Struct("<IIIIIHHBB")
_OFFPAGE = struct.Struct("<B3xII")  # HOFFPAGE: type, unused[3], pgno, tlen


def _pwrite(fd, data, offset):
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view = view[done:]
        offset += done


class _PageRun(object):
    """Pages with consecutive numbers from ``pgno``, written together at ``pgno * pagesize``
    once 256 are buffered. A page handed in out of sequence is a bug in the writer, not in
    the data: it raises instead of landing at another page's offset (``__memp_fget`` reads
    page n at offset n * pagesize; a bucket found there holds another bucket's keys)."""

    def __init__(self, fd, pagesize, pgno):
        self.fd = fd
        self.pagesize = pagesize
        self.pgno = pgno
        self.pages = []

    def add(self, pgno, page):
        pages = self.pages
        if pgno != self.pgno + len(pages) or len(page) != self.pagesize:
            raise PostfixError("hash writer: page %d out of sequence (a bug: nothing was written in place)" % pgno)
        pages.append(page)
        if len(pages) >= 256:
            self.flush()

    def flush(self):
        pages = self.pages
        if pages:
            _pwrite(self.fd, b"".join(pages), self.pgno * self.pagesize)
            self.pgno += len(pages)
            del pages[:]


class _Writer(object):
    """Page assembly and placement for one output file."""

    def __init__(self, fd, path, nbuckets, pagesize=PAGESIZE):
        self.fd = fd
        self.path = path
        self.pagesize = pagesize
        self.usable = pagesize - _OVERHEAD
        self.big = pagesize // 4  # ISBIG: longer items go off-page (hash.h MINFILL)
        self.zeros = bytes(pagesize)
        self.formats = {}
        self.next_pgno = nbuckets + 1  # first page after the buckets
        # Bucket pages 1..N and the pages allocated after them are produced interleaved;
        # each run is written where its page numbers say, never where the other run ended.
        self.bucket_run = _PageRun(fd, pagesize, 1)
        self.tail_run = _PageRun(fd, pagesize, self.next_pgno)

    def _allocate(self):
        pgno = self.next_pgno
        self.next_pgno += 1
        return pgno

    # -- pages --------------------------------------------------------------------------
    def _hash_page(self, pgno, prev, nxt, items, sizes, encoded):
        """A P_HASH page holding ``items`` (key, data, key, data...) in index order.

        Items are packed from the end of the page down, item 0 highest, as libdb places
        them (__ham_insertpair). Raw items get the H_KEYDATA type byte; encoded ones
        (``encoded``) carry their type byte already.
        """
        ps = self.pagesize
        n = len(items)
        if encoded:
            data = b"".join(reversed(items))
            offsets = map(sub, repeat(ps), accumulate(sizes))
        else:
            data = b"\x01" + b"\x01".join(reversed(items)) if n else b""
            offsets = map(sub, map(sub, repeat(ps - 1), accumulate(sizes)), count())
        inp = struct.pack("<%dH" % n, *offsets)
        hf_offset = ps - len(data)
        header = _PAGE_HEADER.pack(0, 1, pgno, prev, nxt, n, hf_offset, 0, _P_HASH)
        return b"".join((header, inp, self.zeros[:hf_offset - _OVERHEAD - 2 * n], data))

    def _offpage(self, item):
        """Store ``item`` on a chain of P_OVERFLOW pages (__db_poff); its HOFFPAGE stub."""
        space = self.usable
        total = len(item)
        first = pgno = self._allocate()
        prev = 0
        for start in range(0, total, space):
            chunk = item[start:start + space]
            nxt = self._allocate() if start + space < total else 0
            # OV_REF (entries) is 1, OV_LEN (hf_offset) the bytes on this page.
            header = _PAGE_HEADER.pack(0, 1, pgno, prev, nxt, 1, len(chunk), 0, _P_OVERFLOW)
            self.tail_run.add(pgno, b"".join((header, chunk, self.zeros[:space - len(chunk)])))
            prev, pgno = pgno, nxt
        return _OFFPAGE.pack(_H_OFFPAGE, first, total)

    def buckets(self, groups, big):
        """Write every bucket's pages, in bucket order.

        ``groups[b]`` is bucket b's flat key, data, key, data... list, sorted by key;
        it is released once written. ``big`` tells whether any item of the table is
        longer than ISBIG.
        """
        ps = self.pagesize
        usable = self.usable
        zeros = self.zeros
        put = self.bucket_run.add
        header = _PAGE_HEADER.pack
        formats = self.formats
        for bucket, chunk in enumerate(groups):
            groups[bucket] = None
            entries = len(chunk)
            sizes = list(map(len, chunk))
            used = sum(sizes) + entries  # with the H_KEYDATA type bytes
            if not entries or (used + 2 * entries <= usable and (not big or max(sizes) <= self.big)):
                # One page: offsets counted down from the page end (__ham_insertpair).
                pack = formats.get(entries)
                if pack is None:
                    pack = formats[entries] = struct.Struct("<%dH" % (entries + 1)).pack
                inp = pack(*accumulate(map(add, sizes, repeat(1)), sub, initial=ps))[2:]
                put(bucket + 1, b"".join((header(0, 1, bucket + 1, 0, 0, entries, ps - used, 0, _P_HASH), inp,
                                          zeros[:ps - used - _OVERHEAD - 2 * entries], b"\x01" if entries else b"",
                                          b"\x01".join(reversed(chunk)))))
            else:
                self._long_bucket(bucket + 1, chunk)

    def _long_bucket(self, pgno, items):
        """A bucket with big items or more pairs than one page holds."""
        big = self.big
        sizes = list(map(len, items))
        if max(sizes) > big:
            items = [b"\x01" + item if size <= big else self._offpage(item)
                     for item, size in zip(items, sizes)]
            sizes = list(map(len, items))
            encoded = True
        else:
            encoded = False
        # Page space per pair: two index slots, plus the type bytes of raw items.
        extra = 4 if encoded else 6
        pair_sizes = map(sum, zip(islice(sizes, 0, None, 2), islice(sizes, 1, None, 2), repeat(extra)))
        ends = list(accumulate(pair_sizes))
        npairs = len(ends)
        cuts = [0]
        used = 0
        while cuts[-1] < npairs:
            last = bisect_right(ends, used + self.usable, cuts[-1])
            used = ends[last - 1]
            cuts.append(last)
        pgnos = [pgno] + [self._allocate() for dummy in range(len(cuts) - 2)]
        for i, this in enumerate(pgnos):
            lo, hi = 2 * cuts[i], 2 * cuts[i + 1]
            page = self._hash_page(this, pgnos[i - 1] if i else 0, pgnos[i + 1] if i + 1 < len(pgnos) else 0,
                                   items[lo:hi], sizes[lo:hi], encoded)
            (self.tail_run if i else self.bucket_run).add(this, page)

    def meta(self, nbuckets, nrecords):
        """The meta page (__ham_init_meta), written last when the page count is known."""
        self.bucket_run.flush()
        self.tail_run.flush()
        st = os.fstat(self.fd)
        # __os_fileid: ino[4] dev[4] unique-ID[4] serial[4] empty[4]; the unique ID is
        # random and the serial starts at the pid.
        uid = struct.pack("<II4sI4x", st.st_ino & 0xFFFFFFFF, st.st_dev & 0xFFFFFFFF, os.urandom(4),
                          os.getpid() & 0xFFFFFFFF)
        log2 = nbuckets.bit_length() - 1
        spares = [1] * (log2 + 1) + [0] * (_NCACHED - log2 - 1)
        page = bytearray(self.pagesize)
        struct.pack_into("<6I3Bx6I20s", page, 0,
                         0, 1, 0, _HASHMAGIC, _HASHVERSION, self.pagesize, 0, _P_HASHMETA, 0,
                         0, self.next_pgno - 1, 0, 0, 0, 0, uid)
        struct.pack_into("<6I32I", page, 72, nbuckets - 1, nbuckets - 1, (nbuckets >> 1) - 1, 0,
                         (_POSTFIX_NELEM + nrecords) & 0xFFFFFFFF, _CHARKEY_HASH, *spares)
        _pwrite(self.fd, page, 0)


def _choose_buckets(keys, values):
    """(power-of-two bucket count, whether any item is over ISBIG) for these records.

    At least 2 buckets, as libdb. An item takes its bytes, its H_KEYDATA type byte and a
    2-byte index slot; an off-page item takes its 9-byte HOFFPAGE stub plus the slot.
    """
    limit = PAGESIZE // 4
    longest = max(chain(map(len, keys), map(len, values)), default=0)
    big = longest > limit
    if big:
        total = sum(size + 3 if size <= limit else 14 for size in map(len, chain(keys, values)))
    else:
        total = sum(map(len, keys)) + sum(map(len, values)) + 6 * len(keys)
    wanted = int(total / ((PAGESIZE - _OVERHEAD) * _FILL)) + 1
    nbuckets = 2
    while nbuckets < wanted:
        nbuckets <<= 1
    return nbuckets, big


def _on_page_order(key):
    """Sort key for __ham_getindex_sorted's on-page comparison (case 4): bytes first and,
    when one key is a prefix of the other, the longer one first."""
    return key.decode("latin-1") + "\u0100"


def _home_buckets(keys, max_bucket, high_mask, low_mask):
    """__ham_call_hash (hash.h) of every key: its FNV-1 hash (__ham_func5) & high_mask, or
    & low_mask when that is past max_bucket; an array."""
    if not high_mask:
        return array("I", bytes(4 * len(keys)))
    homes = _lanes.hashes(keys, _FNV_PRIME, 0, high_mask.bit_length())
    if max_bucket != high_mask:
        homes = array("I", [h if h <= max_bucket else h & low_mask for h in homes])
    return homes


def _group(path, keys, values, nbuckets, homes):
    """Every bucket's flat key, data, key, data... list, sorted by key within the bucket.

    ``homes`` holds each key's bucket (_home_buckets). Version 9 bucket pages
    keep their pairs in the order the binary search of __ham_getindex_sorted expects: byte
    order, as Python compares bytes, except that of two keys one of which is a prefix of
    the other the longer comes first. That needs a key without a trailing NUL (postalias's
    YP_* records): NUL-terminated keys are never prefixes of one another. Only references
    to the caller's keys and values are held.
    """
    all_nul = all(map(bytes.endswith, keys, repeat(b"\0")))
    keys_of = [[] for dummy in range(nbuckets)]
    values_of = [[] for dummy in range(nbuckets)]
    add_key = [group.append for group in keys_of]
    add_value = [group.append for group in values_of]
    for bucket, key, value in zip(homes, keys, values):
        add_key[bucket](key)
        add_value[bucket](value)
    del add_key, add_value
    for bucket, bkeys in enumerate(keys_of):
        bvalues = values_of[bucket]
        values_of[bucket] = None
        entries = len(bkeys)
        if entries > 1:
            value_of = dict(zip(bkeys, bvalues))
            bkeys.sort()
            if not all_nul and any(map(bytes.startswith, islice(bkeys, 1, None), bkeys)):
                bkeys.sort(key=_on_page_order)
            if len(value_of) != entries:
                dup = next(k for k, other in zip(bkeys, islice(bkeys, 1, None)) if k == other)
                raise PostfixError("%s: duplicate key %r" % (path, dup))
            bvalues = map(value_of.__getitem__, bkeys)
        flat = [None] * (2 * entries)
        flat[0::2] = bkeys
        flat[1::2] = bvalues
        keys_of[bucket] = flat
    return keys_of


def write(path, records):
    """Write ``records`` ((key, value) bytes pairs, unique keys) as a new hash file
    (see :func:`write_columns`)."""
    try:
        records = list(records)
        if set(map(len, records)) - set((2,)):
            raise TypeError
    except TypeError:
        raise PostfixError("%s: records must be (key, value) pairs of bytes" % (path,))
    write_columns(path, list(map(itemgetter(0), records)), list(map(itemgetter(1), records)))


def write_columns(path, keys, values):
    """Write the records ``keys[i]`` -> ``values[i]`` (sequences of bytes, unique keys) as a
    new hash file.

    The file is created with mode 0600 if it does not exist; the caller renames it
    into place and sets its attributes.
    """
    bad = PostfixError("%s: records must be (key, value) pairs of bytes" % (path,))
    n = len(keys)
    if len(values) != n or not set(map(type, keys)) <= set((bytes,)):
        raise bad
    try:
        nbuckets, big = _choose_buckets(keys, values)
    except TypeError:
        raise bad
    if nbuckets > 1 << 31:
        raise PostfixError("%s: table too large for a Berkeley DB hash file" % (path,))
    groups = _group(path, keys, values, nbuckets, _home_buckets(keys, nbuckets - 1, nbuckets - 1, 0))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise PostfixError("%s: cannot create: %s" % (path, exc.strerror))
    try:
        writer = _Writer(fd, path, nbuckets)
        writer.buckets(groups, big)
        writer.meta(nbuckets, n)
    except OSError as exc:
        raise PostfixError("%s: cannot write: %s" % (path, exc.strerror))
    except TypeError:
        raise bad  # a value that is not bytes
    finally:
        os.close(fd)


# -- reading -------------------------------------------------------------------------------

def _log2(num):
    """__db_log2 (db_log2.c): the smallest i with 2**i >= num."""
    return (num - 1).bit_length() if num > 1 else 0


class _File(object):
    """An open hash file: its meta data and checked access to its pages.

    Pages are read with pread, not mmap: a file that shrinks while it is read (postmap
    rebuilds in place) gives a "truncated" error instead of a SIGBUS.
    """

    def __init__(self, path):
        self.path = path
        try:
            self.file = open(path, "rb")
        except OSError as exc:
            raise PostfixError("%s: cannot open: %s" % (path, exc.strerror))
        try:
            self.fd = self.file.fileno()
            self.size = os.fstat(self.fd).st_size
            self._meta(self.file.read(_DBMETASIZE))
        except OSError as exc:
            self.close()
            raise PostfixError("%s: cannot read: %s" % (path, exc.strerror))
        except Exception:
            self.close()
            raise

    def close(self):
        self.file.close()

    def bad(self, why):
        return PostfixError("%s: not a Berkeley DB hash file (%s)" % (self.path, why))

    def _meta(self, head):
        """Check the meta page as __db_meta_setup and __ham_vrfy_meta do."""
        if len(head) < _DBMETASIZE:
            raise self.bad("%d bytes, shorter than a meta page" % len(head))
        for order in "<>":
            magic = struct.unpack_from(order + "I", head, 12)[0]
            if magic == _HASHMAGIC or magic in _OTHER_MAGIC:
                break
        else:
            raise self.bad("no Berkeley DB magic number")
        if magic != _HASHMAGIC:
            raise self.bad("it is a Berkeley DB %s file" % _OTHER_MAGIC[magic])
        self.order = order
        (version, pagesize, encrypt, ptype, metaflags, last_pgno, flags) = struct.unpack_from(
            order + "IIBBBx4xI12xI", head, 16)
        if version not in (8, 9):
            raise self.bad("unsupported hash version %d" % version)
        if pagesize < 512 or pagesize > 65536 or pagesize & (pagesize - 1):
            raise self.bad("impossible page size %d" % pagesize)
        if ptype != _P_HASHMETA:
            raise self.bad("meta page has type %d" % ptype)
        if encrypt or metaflags & _DBMETA_CHKSUM:
            raise self.bad("encrypted or checksummed files are not supported")
        if flags & _DB_HASH_SUBDB:
            raise self.bad("files with subdatabases are not supported")
        fields = struct.unpack_from(order + "6I32I", head, 72)
        max_bucket, high_mask, low_mask, dummy, dummy, charkey = fields[:6]
        spares = fields[6:]
        if charkey != _CHARKEY_HASH:
            raise self.bad("it uses an unknown hash function")
        if max_bucket >= self.size // pagesize:
            raise self.bad("max_bucket %d, but only %d pages" % (max_bucket, self.size // pagesize))
        top = 1 << _log2(max_bucket + 1) if max_bucket else 1
        if high_mask != top - 1 or low_mask != (top >> 1) - 1:
            raise self.bad("masks %#x/%#x do not fit max_bucket %d" % (high_mask, low_mask, max_bucket))
        if not all(spares[:_log2(max_bucket + 1) + 1]):
            raise self.bad("spares table does not cover max_bucket %d" % max_bucket)
        self.max_bucket, self.high_mask, self.low_mask, self.spares = max_bucket, high_mask, low_mask, spares
        self.pagesize = pagesize
        self.last_pgno = last_pgno
        self.header = struct.Struct(order + "8xIIIHHBB")
        self.offpage = struct.Struct(order + "4xII")

    def page(self, pgno):
        """The bytes of page ``pgno``."""
        if pgno > self.last_pgno:
            raise self.bad("page %d referenced, the last page is %d" % (pgno, self.last_pgno))
        start = pgno * self.pagesize
        data = os.pread(self.fd, self.pagesize, start) if start + self.pagesize <= self.size else b""
        if len(data) != self.pagesize:
            raise self.bad("truncated: page %d is past the end of the file" % pgno)
        return data

    def bucket_pages(self, bucket):
        """The pages of a bucket's chain, each parsed as (page bytes, item offsets)."""
        pgno = bucket + self.spares[_log2(bucket + 1)]
        seen = set()
        prev = 0
        while pgno:
            if pgno in seen or len(seen) > self.last_pgno:
                raise self.bad("bucket %d: page %d linked twice" % (bucket, pgno))
            seen.add(pgno)
            page = self.page(pgno)
            this, prev_pgno, next_pgno, entries, dummy, dummy, ptype = self.header.unpack_from(page)
            if ptype == 0 and not prev and not page.strip(b"\0"):
                return  # __ham_vrfy_bucket: a bucket page that was never written is empty
            if ptype not in (_P_HASH, _P_HASH_UNSORTED) or this != pgno or prev_pgno != prev:
                raise self.bad("page %d: not a page of hash bucket %d" % (pgno, bucket))
            yield pgno, page, self._offsets(page, pgno, entries)
            prev, pgno = pgno, next_pgno

    def _offsets(self, page, pgno, entries):
        """Item (start, end) pairs of a hash page, checked as __ham_vrfy does: offsets past
        the index and strictly falling (items are packed from the page end down)."""
        end = _OVERHEAD + 2 * entries
        if entries % 2 or end > self.pagesize:
            raise self.bad("page %d: impossible entry count %d" % (pgno, entries))
        inp = struct.unpack_from("%s%dH" % (self.order, entries), page, _OVERHEAD)
        if inp and (inp[0] >= self.pagesize or inp[-1] < end or any(map(ge, islice(inp, 1, None), inp))):
            raise self.bad("page %d: item offsets out of order" % pgno)
        return list(zip(inp, chain((self.pagesize,), inp)))

    def items(self, page, pgno, spans):
        """Every item of a page in index order (see item); plain items sliced in bulk."""
        if not spans:
            return []
        starts = [start for start, dummy in spans]
        types = bytes(itemgetter(*starts)(page)) if len(starts) > 1 else bytes((page[starts[0]],))
        if types.count(_H_KEYDATA) == len(types):
            return [page[start + 1:end] for start, end in spans]
        return [self.item(page, pgno, span) for span in spans]

    def item(self, page, pgno, span):
        """The bytes of one item (H_KEYDATA, or H_OFFPAGE read from its overflow chain)."""
        start, end = span
        itype = page[start]
        if itype == _H_KEYDATA:
            return page[start + 1:end]
        if itype == _H_OFFPAGE and end - start >= _OFFPAGE.size:
            first, length = self.offpage.unpack_from(page, start)
            return self.overflow(first, length)
        raise self.bad("page %d: item type %d is not a plain key or value" % (pgno, itype))

    def overflow(self, pgno, length):
        """An off-page item: ``length`` bytes on the P_OVERFLOW chain from ``pgno``."""
        parts = []
        have = 0
        prev = 0
        hops = 0
        while True:
            hops += 1
            if not pgno or hops > self.last_pgno + 1:
                raise self.bad("overflow chain for a %d-byte item is broken" % length)
            page = self.page(pgno)
            this, prev_pgno, next_pgno, dummy, used, dummy, ptype = self.header.unpack_from(page)
            if ptype != _P_OVERFLOW or this != pgno or prev_pgno != prev or used > self.pagesize - _OVERHEAD:
                raise self.bad("page %d: not an overflow page of its chain" % pgno)
            parts.append(page[_OVERHEAD:_OVERHEAD + used])
            have += used
            if have >= length or not next_pgno:
                break
            prev, pgno = pgno, next_pgno
        if have != length:
            raise self.bad("overflow item at page %d holds %d bytes, expected %d" % (pgno, have, length))
        return b"".join(parts)

    def pairs(self):
        for bucket in range(self.max_bucket + 1):
            for pgno, page, spans in self.bucket_pages(bucket):
                items = self.items(page, pgno, spans)
                yield from zip(islice(items, 0, None, 2), islice(items, 1, None, 2))


@contextlib.contextmanager
def _reading(db):
    """Close ``db`` at the end; a malformed page that slipped past the checks (struct,
    index or value errors) is a "not a Berkeley DB hash file" error, an I/O error a read error."""
    try:
        yield
    except (struct.error, IndexError, ValueError) as exc:
        raise db.bad(str(exc))
    except OSError as exc:
        raise PostfixError("%s: cannot read: %s" % (db.path, exc.strerror))
    finally:
        db.close()


def read(path):
    """Iterate over every (key, value) pair of the hash file at ``path``, raw.

    The meta page is checked at once; pages are checked as the iteration reaches them.
    """
    db = _File(path)

    def pairs():
        with _reading(db):
            yield from db.pairs()
    return pairs()


def _compare(key, item, item_offpage):
    """__ham_getindex_sorted's comparison of a looked-up key with a page's key item (a
    lookup key is always H_KEYDATA: __ham_lookup). Bytes first; when one is a prefix of the
    other, an on-page item (case 4) counts the longer one as the smaller, an off-page item
    (case 2, __db_moff) the shorter one."""
    if key == item:
        return 0
    n = min(len(key), len(item))
    if key[:n] != item[:n]:
        return -1 if key[:n] < item[:n] else 1
    longer_key = len(key) > len(item)
    return (1 if longer_key else -1) if item_offpage else (-1 if longer_key else 1)


def _page_finds(key, page_keys, offpage):
    """Whether the binary search of __ham_getindex_sorted (DB_BINARY_SEARCH_FOR over the
    pairs of one page) finds ``key`` among ``page_keys``."""
    base, lim = 0, len(page_keys)
    while lim:
        mid = base + (lim >> 1)
        res = _compare(key, page_keys[mid], offpage[mid])
        if not res:
            return True
        if res > 0:
            base = mid + 1
            lim -= 1
        lim >>= 1
    return False


def _searchable(page_keys, offpage):
    """Which keys of one page a lookup finds. A page in plain byte order with no key a
    prefix of the next (always so when keys end with NUL) and no off-page key is
    searched by both comparisons alike: every key is found. Any other page is searched
    key by key as libdb searches it."""
    if page_keys == sorted(page_keys) and not any(offpage) and \
            not any(map(bytes.startswith, islice(page_keys, 1, None), page_keys)):
        return page_keys
    return [key for key in page_keys if _page_finds(key, page_keys, offpage)]


def verify(path, keys, values, volatile=()):
    """Why the file does not answer ``keys`` with ``values`` as libdb looks them up, or None
    (see _db.verify).

    A record is found when it sits in the bucket its key hashes to (__ham_call_hash, the
    page by BUCKET_TO_PAGE: spares) on a page whose binary search reaches it
    (__ham_getindex_sorted), first match along the chain (__ham_lookup). Every page of
    every bucket is read and checked on the way, as the reader does. A bucket whose pairs,
    read along its chain, are exactly the pairs expected there in page order (what this
    writer makes) has every page in search order and is found whole, unless it holds an
    off-page key; any other bucket is searched key by key.
    """
    try:
        db = _File(path)
        with _reading(db):
            expected = _group(path, keys, values, db.max_bucket + 1,
                              _home_buckets(keys, db.max_bucket, db.high_mask, db.low_mask))
            # The writer's order is searchable unless an off-page key extends another key
            # (test_verify.py: no order on a page lets libdb find both); C strings with their
            # NUL, as Postfix stores keys (all but postalias's YP_* records), never do.
            prefix_free = all(map(bytes.endswith, keys, repeat(b"\0"))) and \
                b"".join(keys).count(b"\0") == len(keys)
            stored = missing = wrong = 0
            for bucket in range(db.max_bucket + 1):
                want = expected[bucket]
                expected[bucket] = None
                pages = [(page, spans, db.items(page, pgno, spans)) for pgno, page, spans in db.bucket_pages(bucket)]
                found = list(chain.from_iterable(items for dummy, dummy, items in pages))
                stored += len(found) // 2
                if found != want or not prefix_free and any(any(_offpage_keys(page, spans))
                                                            for page, spans, dummy in pages):
                    lost, other = _bucket_differences(pages, want, volatile)
                    missing += lost
                    wrong += other
    except PostfixError as exc:
        return _db.unreadable(exc)
    return _db.verdict(len(keys), missing, wrong, stored)


def _bucket_differences(pages, want, volatile):
    """(not found, found with another value) among the ``want`` pairs of one bucket."""
    found = _found_on(pages)
    want_keys = want[0::2]
    return _db.differences(want_keys, want[1::2], list(map(found.get, want_keys)), volatile)


def _found_on(pages):
    """{key: value} of every key a lookup finds on one bucket's ``pages`` ((page, spans,
    items) in chain order), as __ham_lookup searches them: page by page, the first page
    that holds the key answers; on a page, what __ham_getindex finds: a binary search of a
    sorted page (_searchable), a linear one of a pre-4.6 P_HASH_UNSORTED page."""
    found = {}
    for page, spans, items in pages:
        page_keys = items[0::2]
        if page[_TYPE_AT] == _P_HASH_UNSORTED:
            reached = page_keys
        else:
            reached = set(_searchable(page_keys, _offpage_keys(page, spans)))
        for key, value in zip(page_keys, islice(items, 1, None, 2)):
            if key not in found and key in reached:
                found[key] = value
    return found


def _offpage_keys(page, spans):
    """Whether each key item of a hash page is off-page (H_OFFPAGE), in page order."""
    return [page[start] == _H_OFFPAGE for start, dummy in spans[0::2]]


def _bucket_found(db, bucket):
    """{key: value} of every key a lookup finds in ``bucket`` of the open ``db``."""
    return _found_on([(page, spans, db.items(page, pgno, spans)) for pgno, page, spans in db.bucket_pages(bucket)])


def _home_bucket(db, key):
    return _home_buckets([key], db.max_bucket, db.high_mask, db.low_mask)[0]


def lookup(path, key):
    """The raw value Postfix finds for the raw ``key``, or None; reads only the key's bucket."""
    db = _File(path)
    with _reading(db):
        return _bucket_found(db, _home_bucket(db, key)).get(key)


class Reader(object):
    """The hash file at ``path`` kept open for many lookups (the route module asks thousands;
    opening it and reading its meta page each time cost more than the lookup), opened again
    when the file there is replaced (postmap and our writer rename a new one into place).
    What a lookup finds in a bucket is kept: the next keys of that bucket are dict lookups."""

    def __init__(self, path):
        self.path = path
        self._db = None
        self._ident = None
        self._buckets = {}

    def lookup(self, key):
        ident = _db.identity(self.path)
        if ident != self._ident:
            self.close()
            self._db, self._ident = _File(self.path), ident
        db = self._db
        try:
            bucket = _home_bucket(db, key)
            found = self._buckets.get(bucket)
            if found is None:
                found = self._buckets[bucket] = _bucket_found(db, bucket)
            return found.get(key)
        except (struct.error, IndexError, ValueError) as exc:
            raise db.bad(str(exc))
        except OSError as exc:
            raise PostfixError("%s: cannot read: %s" % (db.path, exc.strerror))

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db, self._ident = None, None
        self._buckets = {}
