# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters private to the mailops.postfix.server role: merge inventory layers, turn virtual
alias domains into map entries, and find inventory mistakes before anything is changed."""

from __future__ import annotations

import re

# Targets that run a program or write a file as the recipient (aliases(5)).
_UNSAFE_PREFIXES = ("|", "/", ":include:")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$", re.I)
_MANAGED_PARAMS = ("virtual_alias_domains", "virtual_alias_maps", "alias_maps", "alias_database")


def _targets(value):
    """A target list from a list, a comma-separated string or None."""
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",")]
    if isinstance(value, (list, tuple)):
        return [str(t).strip() if t is not None else "" for t in value]
    return [str(value).strip()]


def _unquote(target):
    return target[1:-1] if len(target) > 1 and target[0] == target[-1] == '"' else target


def _is_unsafe(target):
    return _unquote(target).startswith(_UNSAFE_PREFIXES)


def merge_domains(*layers):
    """Merge lists of virtual alias domains; a later layer adds domains, or adds to and
    overrides the aliases (and catch_all) of a domain an earlier layer declared."""
    merged = {}
    order = []
    for layer in layers:
        for item in layer or []:
            if not isinstance(item, dict):
                # Left for problems() to report with the variable name.
                continue
            name = str(item.get("domain", "")).strip().lower()
            if name not in merged:
                merged[name] = {"domain": name, "aliases": {}}
                order.append(name)
            entry = merged[name]
            entry["aliases"].update(item.get("aliases") or {})
            if item.get("catch_all") is not None:
                entry["catch_all"] = item["catch_all"]
    return [merged[name] for name in order]


def _full_key(alias, domain):
    alias = str(alias).strip().lower()
    return alias if "@" in alias else "%s@%s" % (alias, domain)


def virtual_map(domains):
    """Entries of the virtual alias map: full address (or @domain for a catch-all) -> targets."""
    entries = {}
    for item in domains:
        domain = item["domain"]
        for alias, targets in sorted(item.get("aliases", {}).items(), key=lambda kv: str(kv[0])):
            entries[_full_key(alias, domain)] = _targets(targets)
        if item.get("catch_all") is not None:
            entries["@" + domain] = _targets(item["catch_all"])
    return entries


def _mydestination(main_cf):
    """mydestination from inventory, with $myhostname / $mydomain expanded where known."""
    value = main_cf.get("mydestination")
    if value is None:
        return []
    names = value if isinstance(value, (list, tuple)) else re.split(r"[\s,]+", str(value))
    hostname = str(main_cf.get("myhostname", "")).lower()
    domain = str(main_cf.get("mydomain", hostname.partition(".")[2] if "." in hostname else "")).lower()
    out = []
    for name in names:
        name = str(name).strip().lower()
        if hostname:
            name = name.replace("${myhostname}", hostname).replace("$myhostname", hostname)
        if domain:
            name = name.replace("${mydomain}", domain).replace("$mydomain", domain)
        if name:
            out.append(name)
    return out


def _check_targets(problems, where, key, targets, allow_unsafe, virtual):
    if not targets or all(t == "" for t in targets):
        problems.append("%s: %r has no target" % (where, key))
        return
    for target in targets:
        if target == "":
            problems.append("%s: %r has an empty target in %r" % (where, key, targets))
        elif re.search(r"[\s,]", _unquote(target)) and not _is_unsafe(target):
            problems.append("%s: %r target %r contains a space or comma; give one target per list item"
                            % (where, key, target))
        elif _is_unsafe(target):
            if virtual:
                problems.append("%s: %r target %r is a command, file or include; virtual aliases take addresses only"
                                " (route to a local alias in postfix_server_aliases instead)" % (where, key, target))
            elif not allow_unsafe:
                problems.append("%s: %r target %r runs a command or writes a file as the recipient; set"
                                " postfix_server_allow_unsafe_targets: true to allow it" % (where, key, target))


def problems(domain_layers, aliases, main_cf, allow_unsafe=False):
    """Every inventory mistake found, each naming the variable and the value.

    domain_layers: dict variable name -> list of domains (as given in inventory);
    aliases: dict variable name -> dict of aliases; main_cf: dict variable name -> dict.
    """
    found = []
    merged_main_cf = {}
    for var, params in main_cf.items():
        if params is None:
            continue
        if not isinstance(params, dict):
            found.append("%s must be a dict of main.cf parameters, got %r" % (var, params))
            continue
        for name in _MANAGED_PARAMS:
            if name in params:
                found.append("%s.%s: set by the role from postfix_server_virtual_alias_domains and"
                             " postfix_server_table_type; remove it (value %r)" % (var, name, params[name]))
        merged_main_cf.update(params)
    mydestination = set(_mydestination(merged_main_cf))

    seen = {}
    for var, domains in domain_layers.items():
        if domains is None:
            continue
        if not isinstance(domains, (list, tuple)):
            found.append("%s must be a list of {domain, aliases, catch_all}, got %r" % (var, domains))
            continue
        for index, item in enumerate(domains):
            where = "%s[%d]" % (var, index)
            if not isinstance(item, dict):
                found.append("%s must be a dict with domain and aliases, got %r" % (where, item))
                continue
            domain = str(item.get("domain") or "").strip().lower()
            if not domain or not _DOMAIN_RE.match(domain):
                found.append("%s.domain: %r is not a domain name" % (where, item.get("domain")))
                continue
            if domain in mydestination:
                found.append("%s.domain: %r is also in mydestination (%s); a domain must never be both a"
                             " virtual alias domain and in mydestination"
                             % (where, domain, ", ".join(sorted(mydestination))))
            seen.setdefault(domain, []).append(where)
            alias_map = item.get("aliases") or {}
            if not isinstance(alias_map, dict):
                found.append("%s.aliases must be a dict (local part or address -> targets), got %r" % (where, alias_map))
                continue
            for alias, targets in alias_map.items():
                key = str(alias).strip()
                if not key or key.startswith("@") or re.search(r"[\s,:]", key):
                    found.append("%s.aliases: %r is not a local part or an address" % (where, alias))
                    continue
                if "@" in key and key.lower().rpartition("@")[2] != domain:
                    found.append("%s.aliases: %r is not an address in %s" % (where, alias, domain))
                    continue
                _check_targets(found, where + ".aliases", key, _targets(targets), allow_unsafe, True)
            if item.get("catch_all") is not None:
                _check_targets(found, where + ".catch_all", "@" + domain, _targets(item["catch_all"]), allow_unsafe, True)

    for var, alias_map in aliases.items():
        if alias_map is None:
            continue
        if not isinstance(alias_map, dict):
            found.append("%s must be a dict (name -> list of targets), got %r" % (var, alias_map))
            continue
        for name, targets in alias_map.items():
            key = str(name).strip()
            if not key or re.search(r"[\s,@]", key):
                found.append("%s: %r is not a local alias name" % (var, name))
                continue
            _check_targets(found, var, key, _targets(targets), allow_unsafe, False)
    return found


def alias_entries(*layers):
    """Merge alias dicts (later layers win per name); values become target lists."""
    merged = {}
    for layer in layers:
        for name, targets in (layer or {}).items():
            merged[str(name).strip().lower()] = _targets(targets)
    return merged


def _split(value):
    return [t.strip() for t in str(value).split(",") if t.strip()]


def mismatches(values, expected, table):
    """Compare postmap query results with the expected entries; one line per difference."""
    out = []
    for key, targets in sorted(expected.items()):
        got = (values or {}).get(key)
        if got is None:
            out.append("%s: %s has no entry (expected %s)" % (table, key, ", ".join(targets)))
        elif _split(got) != list(targets):
            out.append("%s: %s resolves to %s (expected %s)" % (table, key, got, ", ".join(targets)))
    return out


class FilterModule:
    """mailops.postfix.server role filters."""

    def filters(self):
        return {
            "postfix_server_merge_domains": merge_domains,
            "postfix_server_virtual_map": virtual_map,
            "postfix_server_problems": problems,
            "postfix_server_alias_entries": alias_entries,
            "postfix_server_mismatches": mismatches,
        }
