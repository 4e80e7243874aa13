# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address classes: every pair of the four class lists, written literally, through ``$name``
expansion, as hash/cdb/lmdb tables compiled by real postmap and as /file/name lists; Postfix's
real defaults give no crossing; the words; and real Postfix's trivial-rewrite warns "do not
list domain X in BOTH A and B" about exactly the crossings found here."""

from __future__ import annotations

import itertools
import os
import re
import subprocess

import pytest

from ansible_collections.mailops.postfix.plugins.module_utils import _address_classes as ac
from ansible_collections.mailops.postfix.plugins.module_utils import _maincf, _postfix

PAIRS = list(itertools.combinations(ac.CLASS_PARAMS, 2))
BASE = "compatibility_level = 3.6\nmyhostname = mx.example.test\nmydomain = example.test\n"


@pytest.fixture(scope="module")
def defaults():
    """Real ``postconf -d``."""
    return _postfix.Binary().defaults()


@pytest.fixture(scope="module")
def confdir(tmp_path_factory):
    """A config dir for ``postmap -c`` (main.cf dated back: Postfix waits on a fresh one)."""
    d = tmp_path_factory.mktemp("conf")
    (d / "main.cf").write_text("compatibility_level = 3.6\nmyhostname = mx.example.test\n")
    os.utime(str(d / "main.cf"), (1000000000, 1000000000))
    return str(d)


def config(text, defaults):
    return _maincf.Config(_maincf.MainCf(text.encode()), defaults)


def postmap(confdir, typ, path, text):
    """Write ``text`` to ``path`` and compile it with real postmap; return ``typ:path``."""
    with open(str(path), "w") as f:
        f.write(text)
    subprocess.run(["postmap", "-c", confdir, "%s:%s" % (typ, path)], check=True)
    return "%s:%s" % (typ, path)


def found(cfg):
    return [(c.domain, c.params) for c in ac.find_crossings(cfg).crossings]


# -- literal lists and $name expansion ----------------------------------------------------

@pytest.mark.parametrize("first,second", PAIRS)
def test_each_pair_literal(defaults, first, second):
    cfg = config(BASE + "%s = one.example, Shared.Example\n%s = shared.example\ttwo.example\n" % (first, second),
                 defaults)
    report = ac.find_crossings(cfg)
    assert report.crossings == [ac.Crossing("shared.example", (first, second), ("", ""))]
    assert report.unchecked == []
    text = ac.message(report.crossings)
    assert text.startswith("refusing: shared.example would be in both %s and %s: a domain belongs to exactly one "
                           "address class (ADDRESS_CLASS_README); " % (first, second))
    assert ("crossing the streams" in text) == ((first, second) == ("mydestination", "virtual_alias_domains"))


@pytest.mark.parametrize("first,second", PAIRS)
def test_each_pair_expanded(defaults, first, second):
    cfg = config(BASE + "%s = $first_list\nfirst_list = one.example, ${shared_name}\nshared_name = Shared.Example\n"
                 "%s = ${second_list}\nsecond_list = $shared_name\n" % (first, second), defaults)
    assert found(cfg) == [("shared.example", (first, second))]


def test_default_mydestination_expanded(defaults):
    # mydestination's default: $myhostname, localhost.$mydomain, localhost.
    cfg = config(BASE + "virtual_mailbox_domains = MX.example.test, localhost\n", defaults)
    assert found(cfg) == [("localhost", ("mydestination", "virtual_mailbox_domains")),
                          ("mx.example.test", ("mydestination", "virtual_mailbox_domains"))]
    # A class that is $ another class: Postfix warns about every name of it.
    cfg = config(BASE + "virtual_alias_domains = $mydestination\n", defaults)
    assert [d for d, _p in found(cfg)] == ["localhost", "localhost.example.test", "mx.example.test"]


def test_three_classes_and_negation(defaults):
    cfg = config(BASE + "mydestination = a.example\n"
                 "virtual_alias_domains = !b.example, a.example, b.example, c.example\n"
                 "relay_domains = a.example, b.example\nvirtual_mailbox_domains = !!c.example\n", defaults)
    assert found(cfg) == [("a.example", ("mydestination", "virtual_alias_domains", "relay_domains")),
                          ("c.example", ("virtual_alias_domains", "virtual_mailbox_domains"))]
    text = ac.message(ac.find_crossings(cfg).crossings, refusing=False)
    assert text.startswith("a.example is in mydestination, virtual_alias_domains and relay_domains; c.example is in "
                           "both virtual_alias_domains and virtual_mailbox_domains: ")
    for first, second in [("mydestination", "virtual_alias_domains"), ("mydestination", "relay_domains"),
                          ("virtual_alias_domains", "relay_domains"),
                          ("virtual_alias_domains", "virtual_mailbox_domains")]:
        assert ac._WHY[(first, second)] in text
    assert ac._WHY[("mydestination", "virtual_mailbox_domains")] not in text


# -- tables ----------------------------------------------------------------------------------

TABLE = "Shared.Example OK\nuser@shared.example x\nboth@example.test x\n%s OK\nMixed.Example OK\n"


@pytest.mark.parametrize("first,second", PAIRS)
@pytest.mark.parametrize("typ", ["hash", "cdb", "lmdb"])
def test_each_pair_as_tables(defaults, confdir, tmp_path, typ, first, second):
    a = postmap(confdir, typ, tmp_path / "a", TABLE % "only-a.example")
    b = postmap(confdir, typ, tmp_path / "b", TABLE % "only-b.example")
    report = ac.find_crossings(config(BASE + "%s = %s\n%s = other.example, %s\n" % (first, a, second, b), defaults))
    # Address keys (user@..., both@...) are never domain names, even when both tables hold them.
    assert report.crossings == [ac.Crossing("mixed.example", (first, second), (a, b)),
                                ac.Crossing("shared.example", (first, second), (a, b))]
    assert report.unchecked == []
    assert "(%s) and %s (%s)" % (a, second, b) in ac.message(report.crossings)


@pytest.mark.parametrize("typ", ["hash", "cdb", "lmdb"])
def test_index_first_then_source_then_not_checked(defaults, confdir, tmp_path, typ):
    ref = postmap(confdir, typ, tmp_path / "vdomains", "shared.example OK\n")
    cfg = config(BASE + "virtual_mailbox_domains = shared.example\nvirtual_alias_domains = %s\n" % ref, defaults)
    crossing = [("shared.example", ("virtual_alias_domains", "virtual_mailbox_domains"))]
    # The index is what Postfix reads: a source edited since the last postmap does not count yet.
    (tmp_path / "vdomains").write_text("other.example OK\n")
    assert found(cfg) == crossing
    # No index yet: the source is what postmap will build.
    (tmp_path / "vdomains").write_text("Shared.Example OK\n")
    os.unlink(ref.split(":", 1)[1] + {"hash": ".db", "cdb": ".cdb", "lmdb": ".lmdb"}[typ])
    assert found(cfg) == crossing
    os.unlink(str(tmp_path / "vdomains"))
    report = ac.find_crossings(cfg)
    assert report.crossings == []
    assert len(report.unchecked) == 1
    assert report.unchecked[0].startswith("virtual_alias_domains: %s (no readable index and no source: " % ref)


def test_virtual_alias_maps_default_postfix_style_domain(defaults, confdir, tmp_path):
    # virtual_alias_domains defaults to $virtual_alias_maps: a "Postfix-style" virtual
    # domain is a key of that table (VIRTUAL_README); addresses are not domains.
    ref = postmap(confdir, "hash", tmp_path / "virtual",
                  "example.com anything\ninfo@example.com joe\nmx.example.test anything\n")
    vmbox = postmap(confdir, "hash", tmp_path / "vmailbox", "info@example.com example.com/info/\n")
    cfg = config(BASE + "virtual_alias_maps = %s\nvirtual_mailbox_maps = %s\n" % (ref, vmbox), defaults)
    report = ac.find_crossings(cfg)
    assert report.crossings == [ac.Crossing("mx.example.test", ("mydestination", "virtual_alias_domains"), ("", ref))]
    assert "crossing the streams" in ac.message(report.crossings)


def test_texthash_inline_proxy_unionmap(defaults, confdir, tmp_path):
    (tmp_path / "th").write_text("t.example x\n")
    u1 = postmap(confdir, "cdb", tmp_path / "u1", "u.example x\n")
    p = postmap(confdir, "hash", tmp_path / "p", "p.example x\n")
    cfg = config(BASE + "mydestination = texthash:%s, proxy:%s\n"
                 "virtual_alias_domains = inline:{ t.example=x, { P.example = a b } }, inline:{ bad.example = x }\n"
                 "virtual_mailbox_domains = unionmap:{%s, inline:{i.example=1}}\n"
                 "relay_domains = u.example, i.example\n" % (tmp_path / "th", p, u1), defaults)
    assert found(cfg) == [("i.example", ("virtual_mailbox_domains", "relay_domains")),
                          ("p.example", ("mydestination", "virtual_alias_domains")),
                          ("t.example", ("mydestination", "virtual_alias_domains")),
                          ("u.example", ("virtual_mailbox_domains", "relay_domains"))]
    # Like real postmap: 'fatal: missing '=' after attribute name: ...; need "inline:{name=value...}"'.
    assert ac.find_crossings(cfg).unchecked == [
        "virtual_alias_domains: inline:{ bad.example = x } (missing '=' after attribute name; "
        "need inline:{name=value...})"]


def test_tables_not_read_are_reported(defaults, tmp_path):
    cfg = config(BASE + "relay_domains = ldap:/etc/postfix/ldap-relay.cf, pcre:/etc/postfix/r.pcre, hash:relative, "
                 "%s, r.example\nmydestination = r.example\n" % (tmp_path / "missing"), defaults)
    report = ac.find_crossings(cfg)
    assert [(c.domain, c.params) for c in report.crossings] == [("r.example", ("mydestination", "relay_domains"))]
    assert report.unchecked[:3] == [
        "relay_domains: ldap:/etc/postfix/ldap-relay.cf (ldap tables are not read here)",
        "relay_domains: pcre:/etc/postfix/r.pcre (pcre tables are not read here)",
        "relay_domains: hash:relative (not an absolute path)"]
    assert report.unchecked[3].startswith("relay_domains: %s (cannot read: " % (tmp_path / "missing"))
    assert ac.message(report.crossings, unchecked=report.unchecked).endswith(
        " (not checked: %s)" % "; ".join(report.unchecked))


# -- /file/name lists ------------------------------------------------------------------------

def test_file_lists(defaults, tmp_path):
    listed = tmp_path / "local-domains"
    listed.write_text("# local domains\nShared.Example, one.example  two.example # three.example is ignored\n"
                      "  # an indented comment: ignored too\n!four.example\nfour.example\nfive.example\n"
                      "%s\n" % (tmp_path / "nested"))
    (tmp_path / "nested").write_text("six.example %s\n" % listed)
    cfg = config(BASE + "mydestination = %s\nvirtual_alias_domains = shared.example, three.example, four.example, "
                 "five.example, six.example\n" % listed, defaults)
    report = ac.find_crossings(cfg)
    assert [(c.domain, c.origins) for c in report.crossings] == [
        ("five.example", (str(listed), "")), ("shared.example", (str(listed), "")),
        ("six.example", (str(tmp_path / "nested"), ""))]
    assert report.unchecked == ["mydestination: %s (includes itself)" % listed]
    # !/file/name negates every name of the file.
    cfg = config(BASE + "mydestination = !%s, shared.example\nvirtual_alias_domains = shared.example\n" % listed,
                 defaults)
    assert found(cfg) == []


# -- the defaults ----------------------------------------------------------------------------

def test_real_defaults_have_no_crossing(defaults):
    # Postfix 3.7: compatibility_level 0, so relay_domains is $mydestination by default.
    assert defaults["compatibility_level"] == "0"
    assert defaults["relay_domains"] == "${{$compatibility_level} <level {2} ? {$mydestination} : {}}"
    for name, value in ac.DEFAULTS.items():
        assert defaults[name] == value, name
    for text in ("", open("/etc/postfix/main.cf").read(), open("/usr/share/postfix/main.cf.dist").read()):
        cfg = config(text, defaults)
        assert ac.find_crossings(cfg) == ac.Report([], []), text[:80]
        lists, _unchecked = ac.class_domains(cfg)
        assert lists["mydestination"] and not lists["relay_domains"]
        assert not lists["virtual_alias_domains"] and not lists["virtual_mailbox_domains"]
    # Without Postfix installed: the same defaults.
    assert ac.find_crossings(config("", ac.DEFAULTS)) == ac.Report([], [])
    assert config("", defaults).value("relay_domains") == config("", defaults).value("mydestination")


@pytest.mark.parametrize("level", ["0", "1", "2", "3.6"])
def test_relay_domains_derived_from_mydestination(defaults, level, tmp_path):
    base = "compatibility_level = %s\nmyhostname = mx.example.test\nmydomain = example.test\n" % level
    for relay in (None, "$mydestination, relay.example", "$my_list", "${{$compatibility_level} <level {2} ? "
                  "{$mydestination} : {}}, relay.example"):
        text = base + "my_list = relay.example, $mydestination\n"
        if relay is not None:
            text += "relay_domains = %s\n" % relay
        lists, _u = ac.class_domains(config(text, defaults))
        assert found(config(text, defaults)) == [], relay
        assert set(lists["relay_domains"]) <= {"relay.example"}
    # Written into relay_domains itself, a local name is a crossing at every level.
    cfg = config(base + "relay_domains = $mydestination, MX.example.test\n", defaults)
    assert found(cfg) == [("mx.example.test", ("mydestination", "relay_domains"))]
    listed = tmp_path / "relay"
    listed.write_text("localhost\n")
    assert found(config(base + "relay_domains = %s\n" % listed, defaults)) == [
        ("localhost", ("mydestination", "relay_domains"))]


# -- the inventory function and the words ----------------------------------------------------

def test_crossings_of_declared_sets():
    assert ac.crossings({}) == []
    assert ac.crossings({
        "virtual_alias_domains": {"Alias.Example", " both.example "},
        "virtual_mailbox_domains": ["both.example", "mbox.example"],
        "mydestination": "mx.example, localhost, alias.example",
        "relay_domains": (),
    }) == [("alias.example", ["mydestination", "virtual_alias_domains"]),
           ("both.example", ["virtual_alias_domains", "virtual_mailbox_domains"])]
    with pytest.raises(ValueError) as e:
        ac.crossings({"virtual_domains": ["x"]})
    assert "'virtual_domains' is not an address class parameter" in str(e.value)
    text = ac.message([("both.example", ["virtual_mailbox_domains", "virtual_alias_domains"])], refusing=False)
    assert text.startswith("both.example is in both virtual_alias_domains and virtual_mailbox_domains: ")
    assert "NEVER list a virtual MAILBOX domain name as a virtual ALIAS domain!" in text
    text = ac.message([("a.example", ["relay_domains", "mydestination"]),
                       ("b.example", ["mydestination", "relay_domains"])], refusing=False)
    assert text.startswith("a.example, b.example are in both mydestination and relay_domains: ")


def test_message_keeps_the_tutorial_quote():
    text = ac.message([("vm", ("mydestination", "virtual_alias_domains"))])
    assert text.startswith("refusing: vm would be in both mydestination and virtual_alias_domains: a domain belongs "
                           "to exactly one address class (ADDRESS_CLASS_README); Postfix reads a domain in "
                           "mydestination as local and never consults the virtual alias domain")
    assert text.endswith("as the virtual domains tutorial puts it: \"%s\"" % ac.CROSSING_WARNING)
    assert not hasattr(_maincf, "crossing_domains") and not hasattr(_maincf, "CROSSING_WARNING")


# -- real Postfix ----------------------------------------------------------------------------

BOTH = re.compile(r"warning: do not list domain (\S+) in BOTH (\S+) and (\S+)")


def test_trivial_rewrite_warns_about_the_same_crossings(postfix_instance):
    """Each class in several forms at once (file, cdb, hash, lmdb, literal, negation); RCPT
    TO each domain makes trivial-rewrite resolve it and log "do not list domain X in BOTH A
    and B" for every pair but mydestination/relay_domains, which Postfix leaves alone."""
    pf = postfix_instance
    conf = str(pf.config_dir)
    localfile = pf.config_dir / "local-domains"
    localfile.write_text("# local\nla.test\nlr.test\n")
    relayfile = pf.config_dir / "relay-domains"
    relayfile.write_text("ar.test\n!neg.test\nneg.test\n")
    pf.write_main(
        mydestination="$myhostname, localhost, %s, %s" % (
            localfile, postmap(conf, "cdb", pf.config_dir / "local-table", "lm.test ok\n")),
        virtual_alias_domains="am.test, neg.test, %s" % postmap(
            conf, "hash", pf.config_dir / "alias-domains", "la.test ok\nar.test ok\nuser@am.test x\n"),
        virtual_mailbox_domains="mbox.test, %s" % postmap(
            conf, "lmdb", pf.config_dir / "mailbox-domains", "lm.test ok\nam.test ok\nmr.test ok\n"),
        relay_domains="lr.test, %s, %s" % (
            relayfile, postmap(conf, "hash", pf.config_dir / "relay-table", "mr.test ok\n")),
    )
    ours = set()
    for c in ac.find_crossings(_postfix.load(conf)[1]).crossings:
        ours.update((c.domain,) + pair for pair in itertools.combinations(c.params, 2))
    assert {d for d, _a, _b in ours} == {"la.test", "lm.test", "am.test", "ar.test", "mr.test", "lr.test"}
    pf.start()
    for domain in ("lr.test", "neg.test", "solo.test", "la.test", "lm.test", "am.test", "ar.test", "mr.test"):
        pf.rcpt_code("someone@%s" % domain)
    expected = {c for c in ours if c[1:] != ("mydestination", "relay_domains")}
    for domain, first, second in expected:
        pf.wait_for_log("do not list domain %s in BOTH %s and %s" % (domain, first, second))
    assert set(BOTH.findall(pf.log())) == expected
