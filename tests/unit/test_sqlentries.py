"""sql_entries engine without a server: entry validation, key folding, the plan and its text,
connection keywords, and refusals that must happen before anything connects."""

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _sqlentries as se


def test_keys_folded_as_postfix_queries_and_lists_stored_like_postfixadmin():
    got = se.normalise_entries({"Sales@Example.COM": ["alice@example.com", " bob@example.com "],
                                "STRASSEß@example.com": "x@example.com", "n@example.com": 42})
    assert got == {"sales@example.com": "alice@example.com,bob@example.com",
                   "strassess@example.com": "x@example.com", "n@example.com": "42"}


@pytest.mark.parametrize("entries, message", [
    ({"a@x": "b\n@c"}, "contains a line break"),
    ({"a@x": "b\r"}, "contains a carriage return"),
    ({"a\x00@x": "b"}, "contains a NUL byte"),
    ({"a@x": ["b", "c\nd"]}, "contains a line break"),
    ({"a@x": ""}, "empty value"),
    ({"a@x": None}, "must be a string"),
    ({"a@x": ["b", ""]}, "empty target"),
    ({"a b@x": "c"}, "white space in a key"),
    ({"A@x": "b", "a@x": "c"}, "the same key as another entry"),
])
def test_bad_entries_refused_with_the_entry_named(entries, message):
    with pytest.raises(se.SqlEntriesError) as e:
        se.normalise_entries(entries)
    assert message in str(e.value) and "entries[" in str(e.value)


def test_absent_ignores_values_and_domain_and_layout_rules():
    assert se.normalise_entries({"A@x": None}, state="absent") == {"a@x": None}
    with pytest.raises(se.SqlEntriesError, match="user@domain or @domain"):
        se.normalise_entries({"postmaster": "root"}, layout="postfixadmin")
    assert se.normalise_entries({"@Example.com": "c@x"}, layout="postfixadmin", domain="example.COM") == {
        "@example.com": "c@x"}
    with pytest.raises(se.SqlEntriesError, match="not in domain example.com"):
        se.normalise_entries({"a@example.org": "b"}, domain="example.com")


def test_plan_insert_update_replace_remove_and_text():
    current = [("a@x", "1", True), ("b@x", "2", True), ("c@x", "3", False), ("d@x", "4", True),
               ("d@x", "4", True), ("e@x", "5", True)]
    p = se.plan(current, {"a@x": "1", "b@x": "22", "c@x": "3", "d@x": "4", "f@x": "6"}, exclusive=True,
                has_active=True)
    assert p.added == ["f@x"]
    assert p.updated == ["b@x", "c@x", "d@x"]  # changed value, inactive made active, duplicates merged
    assert p.removed == ["e@x"]
    assert p.changed
    assert se.Plan.text(p.before) == ("a@x 1\nb@x 2\nc@x 3  # inactive\nd@x 4\nd@x 4\ne@x 5\n")
    assert se.Plan.text(p.after) == "a@x 1\nb@x 22\nc@x 3\nd@x 4\nf@x 6\n"


def test_plan_idempotent_and_absent():
    current = [("a@x", "1", None), ("b@x", "2", None)]
    p = se.plan(current, {"a@x": "1", "b@x": "2"})
    assert not p.changed and p.before == p.after
    p = se.plan(current, {"a@x": None, "z@x": None}, state="absent")
    assert p.removed == ["a@x"] and not p.added and se.Plan.text(p.after) == "b@x 2\n"
    p = se.plan(current, {"c@x": "3"}, exclusive=True, keep={"b@x"})
    assert p.removed == ["a@x"] and p.added == ["c@x"]


def test_target_columns_and_layouts():
    t = se.Target("postfixadmin")
    assert t.name == "public.alias" and t.columns["value"] == "goto" and t.columns["active"] == "active"
    t = se.Target("pairs", "virtual", "mail", {"key": "source", "value": "destination"})
    assert t.name == "mail.virtual" and t.columns == {"key": "source", "value": "destination"}
    t = se.Target("postfixadmin", columns={"modified": ""})
    assert "modified" not in t.columns
    with pytest.raises(se.SqlEntriesError, match="table: required"):
        se.Target("pairs")
    with pytest.raises(se.SqlEntriesError, match="unknown role 'adress'"):
        se.Target("postfixadmin", columns={"adress": "x"})


def test_connect_kwargs_follow_community_postgresql():
    kw = se.connect_kwargs(login_host="db", login_user="u", login_password="s3cret", login_db="mail")
    assert kw["host"] == "db" and kw["port"] == 5432 and kw["dbname"] == "mail" and kw["connect_timeout"] == 10
    assert "s3cret" not in se.where(kw)
    kw = se.connect_kwargs(login_host="db", login_unix_socket="/run/pg", connect_params={"connect_timeout": 2})
    assert kw["host"] == "/run/pg" and kw["connect_timeout"] == 2 and "password" not in kw


def test_exclusive_without_domain_refused_before_connecting():
    def connect(**kw):
        raise AssertionError("connected")
    t = se.Target("pairs", "virtual")
    with pytest.raises(se.SqlEntriesError, match="exclusive_scope=table"):
        se.sync(t, {"a@x": "b"}, exclusive=True, connect=connect)
    with pytest.raises(se.SqlEntriesError, match="state=present only"):
        se.sync(t, {"a@x": None}, state="absent", exclusive=True, domain="x", connect=connect)


def test_copy_text_escapes():
    assert se._copy_text(["a\\b", "c\td"]) == "a\\\\b\tc\\td\n"


def test_non_ascii_entries_listed_for_the_latin1_warning():
    desired = se.normalise_entries({"bjørn@example.com": "b@x", "a@x": "jörg@x", "c@x": "d@x"})
    assert se.non_ascii(desired) == ["a@x", "bjørn@example.com"]
