import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _db
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError


def test_parse_error_renders_path_and_line():
    assert str(ParseError("/etc/postfix/virtual", 7, "expected format: key whitespace value")) == \
        "/etc/postfix/virtual:7: expected format: key whitespace value"


def test_index_path_follows_postfix_suffixes():
    assert _db.index_path("/etc/postfix/virtual", "hash") == "/etc/postfix/virtual.db"
    assert _db.index_path("/etc/postfix/virtual", "cdb") == "/etc/postfix/virtual.cdb"
    assert _db.index_path("/etc/postfix/virtual", "lmdb") == "/etc/postfix/virtual.lmdb"


def test_unsupported_type_is_a_clear_error():
    with pytest.raises(_db.UnsupportedType, match="unsupported table type 'btree'"):
        _db.get_format("btree")
