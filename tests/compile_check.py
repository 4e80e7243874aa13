# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks shared by the table and aliases parser tests: the compile-only path
(LineDocument.compile) against the lossless document."""

import io

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _logical_lines
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError


def assert_compile_matches_document(document, data, chunk, nul=False, duplicates="warn", **options):
    """``document.compile()`` (from bytes and from a file, read ``chunk`` bytes at a time)
    gives what the document's records() gives, or raises the same error."""
    z = b"\0" if nul else b""
    saved = _logical_lines._CHUNK
    _logical_lines._CHUNK = chunk
    try:
        try:
            compiled = document.compile(data, "src", nul=nul, duplicates=duplicates, **options)
            assert document.compile(io.BytesIO(data), "src", nul=nul, duplicates=duplicates, **options) == compiled
        except ParseError as e:
            with pytest.raises(ParseError) as expected:
                document(data, "src", **options)
            assert (e.line, str(e)) == (expected.value.line, str(expected.value))
            return
    finally:
        _logical_lines._CHUNK = saved
    records, warnings = document(data, "src", **options).records(duplicates)
    assert list(zip(compiled[0], compiled[1])) == [(k + z, v + z) for k, v in records]
    assert [(w.line, str(w)) for w in compiled[2]] == [(w.line, str(w)) for w in warnings]


def assert_compile_mixes_paths(document, data, nul, duplicates, bad_line):
    """As assert_compile_matches_document in 64 KiB pieces, and at least one piece of
    several took the bulk split (``_split_plain``); then with ``bad_line`` (a line the
    format refuses, ending in the source's line end) in the last piece: strict parsing
    names it, whichever path finds it."""
    taken = []
    split = document._split_plain

    def spy(text, nul):
        result = split(text, nul)
        taken.append(result is not None)
        return result

    document._split_plain = staticmethod(spy)
    try:
        assert_compile_matches_document(document, data, 1 << 16, nul=nul, duplicates=duplicates, strict=False)
    finally:
        document._split_plain = staticmethod(split)
    assert len(taken) >= 8 and any(taken)
    assert_compile_matches_document(document, data + bad_line, 1 << 16, nul=nul, strict=True)
