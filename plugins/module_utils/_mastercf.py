# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master.cf (master(5)): parse / edit / render, lossless.

Grouping follows readlline.c:readllines(), as for main.cf: a line whose first byte is not
whitespace and not ``#`` starts an entry; following lines that start with whitespace continue
it, and comment or blank lines between them are skipped by Postfix without ending it.
Fields are split like master_ent.c:get_master_ent() (mystrtokq() with ``{ }`` grouping):
``service type private unpriv chroot wakeup maxproc command [args]``.  ``-o { name = value }``
(Postfix >= 3.0) is normalised to ``name=value`` the way postconf(1) shows it.

Untouched entries keep their bytes.  An edited entry is re-rendered the way
postconf_master.c:pcf_print_master_entry() writes it (fields at columns 0, 11, 17, 25, 33, 41,
49, 57; each ``-o`` on its own line indented 4 spaces; other arguments folded at 80 columns).
It stays where it was.  ``postconf -M``/``-F``/``-P`` instead emit an edited entry after
the comment lines that followed it (FORMATS.md); keeping it in place changes no entry's
order, so ``postconf -M`` and ``postconf -P`` show the same result, and the comments stay
next to the services they describe.  Comment lines that were inside an edited entry (between
its continuation lines) are kept, right after it.
"""

from __future__ import annotations

import os

from ansible_collections.mailops.postfix.plugins.module_utils import _atomic
from ansible_collections.mailops.postfix.plugins.module_utils._errors import ParseError, PostfixError

# master_ent.c: the service types master(8) knows.
TYPES = ("inet", "unix", "unix-dgram", "fifo", "pass")
# postconf -F field names, in order (postconf_master.c:pcf_field_name_offset).
FIELDS = ("service", "type", "private", "unprivileged", "chroot", "wakeup", "process_limit", "command")
MIN_FIELDS = 8
_COLUMNS = (0, 11, 17, 25, 33, 41, 49, 57)
_LINE_LIMIT = 80
_INDENT = "    "
# ISSPACE(): ASCII isspace.
_BLANKS = " \t\n\r\x0b\x0c"


def _is_space(ch):
    return ch in _BLANKS


def _takes_value(arg):
    """An option followed by its value: ``strchr(pcf_daemon_options_expecting_value, arg[1])``
    with the option letters ``o``; for a lone ``-`` arg[1] is the NUL byte, which strchr()
    also finds, so ``-`` takes the next argument too (postconf_master.c)."""
    return arg[1:2] in ("o", "")


def tokenize(text):
    """Split like mystrtokq(&bufp, blanks, "{}"): whitespace-separated tokens, where ``{``
    starts a token that runs to its matching ``}``.  Raises ValueError when unbalanced."""
    tokens = []
    i, n = 0, len(text)
    while i < n:
        while i < n and _is_space(text[i]):
            i += 1
        if i >= n:
            break
        start = i
        depth = 0
        while i < n:
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth < 0:
                    raise ValueError("unbalanced '}'")
            elif depth == 0 and _is_space(ch):
                break
            i += 1
        if depth:
            raise ValueError("unbalanced '{'")
        tokens.append(text[start:i])
    return tokens


def _unbrace(token):
    """extpar(): ``{ text }`` -> ``text`` with the blanks inside the braces trimmed."""
    if token.startswith("{") and token.endswith("}"):
        return token[1:-1].strip(_BLANKS)
    return token


def _nameval(text):
    """split_nameval(): ``name = value`` -> ``name=value`` (name and value trimmed)."""
    if "=" not in text:
        return text
    name, value = text.split("=", 1)
    return "%s=%s" % (name.strip(_BLANKS), value.strip(_BLANKS))


def _split_option(tok):
    """An option word as getopt() reads it: ``-vo`` is ``-v`` then ``-o`` (value in the next
    word), ``-oname=value`` and ``-vDoname=value`` carry the value in the same word.  Split
    like postconf_master.c:pcf_normalize_daemon_args() into ``[-vD] -o [value]``, except that
    postconf skips an ``o`` right after the ``-`` when looking for it (``-osyslog_name=x``
    becomes ``-o sysl -o g_name=x`` there, not what the daemon's getopt() sees)."""
    k = tok.find("o", 1)
    if len(tok) < 2 or k < 0 or (k == 1 and len(tok) == 2):
        return [tok]
    return ([tok[:k]] if k > 1 else []) + ["-o"] + ([tok[k + 1:]] if tok[k + 1:] else [])


def normalize_argv(tokens):
    """The command arguments as postconf holds them: braces removed, ``-o`` values as name=value."""
    out = list(tokens[:1])
    i = 1
    in_options = True
    while i < len(tokens):
        tok = tokens[i]
        if in_options and (not tok.startswith("-") or tok == "--"):
            in_options = False
        parts = _split_option(tok) if in_options else [tok]
        if len(parts) > 1:
            out.extend(parts[:parts.index("-o") + 1])
            if parts[-1] != "-o":
                out.append(_nameval(_unbrace(parts[-1])))
                i += 1
                continue
            tok = "-o"
            if i + 1 >= len(tokens):
                i += 1
                continue
            out.pop()
        if in_options and _takes_value(tok) and i + 1 < len(tokens):
            value = _unbrace(tokens[i + 1])
            out.extend([tok, _nameval(value) if tok == "-o" else value])
            i += 2
            continue
        out.append(_unbrace(tok))
        i += 1
    return out


def render_entry(fields, argv):
    """One entry as pcf_print_master_entry(PCF_FOLD_LINE) writes it, with its newline."""
    out = []
    line_len = 0
    for idx, arg in enumerate(list(fields) + [argv[0]]):
        if line_len > 0:
            while True:
                out.append(" ")
                line_len += 1
                if line_len >= _COLUMNS[idx]:
                    break
        out.append(arg)
        line_len += len(arg)
    in_options = True
    i = 1
    while i < len(argv):
        arg = argv[i]
        arg_len = len(arg)
        aval = None
        need_parens = False
        if in_options:
            if not arg.startswith("-") or arg == "--":
                in_options = False
            elif _takes_value(arg) and i + 1 < len(argv):
                aval = argv[i + 1]
                line_len = _LINE_LIMIT
                arg_len += len(aval) + 3
                need_parens = any(_is_space(c) for c in aval)
                if need_parens:
                    arg_len += 2
        if not in_options:
            need_parens = any(_is_space(c) for c in arg) or arg == ""
        if line_len > len(_INDENT):
            if line_len + 1 + arg_len < _LINE_LIMIT:
                out.append(" ")
                line_len += 1
            else:
                out.append("\n" + _INDENT)
                line_len = len(_INDENT)
        if not in_options and need_parens:
            out.append("{")
            line_len += 1
        out.append(arg)
        line_len += len(arg)
        if aval is not None:
            out.append(" {" if need_parens else " ")
            out.append(aval)
            if need_parens:
                out.append("}")
            i += 1
            line_len = _LINE_LIMIT
        if not in_options and need_parens:
            out.append("}")
            line_len += 1
        i += 1
    out.append("\n")
    return "".join(out)


def option_params(argv):
    """The ``-o`` parameters of an argv as (index of the value, name, value) triples."""
    found = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "--":
            break
        if _takes_value(arg) and i + 1 < len(argv):
            if arg == "-o" and "=" in argv[i + 1]:
                name, _sep, value = argv[i + 1].partition("=")
                found.append((i + 1, name, value))
            i += 2
            continue
        i += 1
    return found


def overrides(argv):
    """The ``-o name=value`` parameters as the daemon ends up with them: applied in order
    (single_server.c & co: getopt() case 'o' -> mail_conf_update()), so a later one wins;
    ``postconf -P`` shows the same."""
    out = {}
    for _idx, name, value in option_params(argv):
        out[name] = value
    return out


def service_info(entry):
    """One active entry as a dict: its fields, the command, the arguments other than the
    ``-o`` overrides (other options such as ``-v`` first, in file order) and the overrides."""
    fields, argv = entry.fields, entry.argv
    pairs = set()
    for idx, _name, _value in option_params(argv):
        pairs.update((idx - 1, idx))
    info = {"name": fields[0], "type": fields[1]}
    for idx, field in enumerate(SERVICE_FIELDS):
        info[field] = fields[2 + idx]
    info.update(command=argv[0], args=[a for k, a in enumerate(argv) if k and k not in pairs],
                options=overrides(argv))
    return info


def first_non_option(argv):
    i = 1
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "--":
            return i
        i += 2 if (_takes_value(arg) and i + 1 < len(argv)) else 1
    return len(argv)


class Entry(object):
    """One service: its physical lines (start, continuations, comments between them) and fields."""

    def __init__(self, lines, fields, argv, lineno):
        self.lines = lines
        self.fields = list(fields)
        self.argv = list(argv)
        self.lineno = lineno
        self.edited = False
        self.commented = False

    @property
    def key(self):
        return "%s/%s" % (self.fields[0], self.fields[1])

    def render(self):
        if self.commented:
            return "".join(ln if ln.lstrip(_BLANKS).startswith("#") or not ln.strip(_BLANKS) else "#" + ln
                           for ln in self.lines)
        if not self.edited:
            return "".join(self.lines)
        inner = [ln for ln in self.lines[1:] if ln.lstrip(_BLANKS).startswith("#")]
        return render_entry(self.fields, self.argv) + "".join(inner)


def parse_entry_text(text, where="entry"):
    """Split one entry's text (as ``postconf -M name/type='...'`` takes it) into fields, argv."""
    try:
        tokens = tokenize(text)
    except ValueError as e:
        raise PostfixError("%s: %s" % (where, e))
    if len(tokens) < MIN_FIELDS:
        raise PostfixError("%s: too few fields (%d of at least %d: service type private unpriv chroot "
                           "wakeup maxproc command)" % (where, len(tokens), MIN_FIELDS))
    if tokens[1] not in TYPES:
        raise PostfixError("%s: unknown service type %r (one of %s)" % (where, tokens[1], ", ".join(TYPES)))
    return tokens[:7], normalize_argv(tokens[7:])


class MasterCf(object):
    """A parsed master.cf: ``items`` are Entry objects and strings (comment/blank lines)."""

    def __init__(self, text, path="master.cf"):
        self.path = path
        self.original = text
        self.items = []
        self._parse(text)

    @classmethod
    def load(cls, path, missing_ok=False):
        data = _atomic.read_bytes(path, missing_ok, missing="%s: no such file", cannot="%s: %s")
        return cls(data.decode("utf-8", "surrogateescape"), path)

    def _parse(self, text):
        # Split on \n only (str.splitlines() also splits on \r, \v, \f...).
        lines = [ln + "\n" for ln in text.split("\n")]
        if lines:
            last = lines.pop()
            if last != "\n":
                lines.append(last[:-1])
        i = 0
        while i < len(lines):
            ln = lines[i]
            body = ln.rstrip("\n")
            if not body.strip(_BLANKS) or body.lstrip(_BLANKS).startswith("#"):
                self.items.append(ln)
                i += 1
                continue
            if _is_space(body[0]):
                # readllines(): "logical line must not start with whitespace"; master(8) drops it.
                raise ParseError(self.path, i + 1, "continuation line without an entry before it")
            start = i
            j = i + 1
            last_cont = i
            while j < len(lines):
                nb = lines[j].rstrip("\n")
                if not nb.strip(_BLANKS) or nb.lstrip(_BLANKS).startswith("#"):
                    j += 1
                    continue
                if _is_space(nb[0]):
                    last_cont = j
                    j += 1
                    continue
                break
            group = lines[start:last_cont + 1]
            text_parts = [g.rstrip("\n") for g in group
                          if g.strip(_BLANKS) and not g.lstrip(_BLANKS).startswith("#")]
            try:
                fields, argv = parse_entry_text(" ".join(text_parts), "x")
            except PostfixError as e:
                raise ParseError(self.path, start + 1, str(e)[len("x: "):])
            self.items.append(Entry(group, fields, argv, start + 1))
            i = last_cont + 1

    def render(self):
        return "".join(it if isinstance(it, str) else it.render() for it in self.items)

    def entries(self):
        return [it for it in self.items if isinstance(it, Entry) and not it.commented]

    def services(self):
        """The active services in file order (duplicates too, as ``postconf -M`` lists them)."""
        return [service_info(e) for e in self.entries()]

    def find(self, name, type_):
        """The entry master(8) uses for name/type (the last one), or None."""
        found = [e for e in self.entries() if e.fields[0] == name and e.fields[1] == type_]
        return found[-1] if found else None

    def _append(self, entry):
        text = self.render()
        if text and not text.endswith("\n"):
            last = self.items[-1]
            if isinstance(last, str):
                self.items[-1] = last + "\n"
            else:
                last.lines[-1] += "\n"
        self.items.append(entry)

    # -- edits; each returns True when the entry changed -----------------------------------

    def matching(self, name, type_):
        return [e for e in self.entries() if e.fields[0] == name and e.fields[1] == type_]

    def set_entry(self, name, type_, fields, argv):
        """``postconf -M name/type='...'``: replace the entry or append it.  Like postconf,
        the first entry of that name/type is replaced and any later ones are removed."""
        fields = list(fields)
        argv = list(argv)
        if fields[0] != name or fields[1] != type_:
            raise PostfixError("%s/%s: the entry names %s/%s" % (name, type_, fields[0], fields[1]))
        found = self.matching(name, type_)
        if not found:
            new = Entry([], fields, argv, None)
            new.edited = True
            self._append(new)
            return True
        entry, extra = found[0], found[1:]
        if not extra and entry.fields == fields and entry.argv == argv:
            return False
        if entry.fields != fields or entry.argv != argv:
            entry.fields, entry.argv, entry.edited = fields, argv, True
        self.items = [it for it in self.items if not any(it is e for e in extra)]
        return True

    def remove(self, name, type_):
        """``postconf -MX name/type``: every entry of that name/type goes."""
        before = len(self.items)
        self.items = [it for it in self.items
                      if isinstance(it, str) or it.commented or it.fields[:2] != [name, type_]]
        return len(self.items) != before

    def comment(self, name, type_):
        """``postconf -M# name/type``: ``#`` before each line of every such entry."""
        changed = False
        for e in self.entries():
            if e.fields[:2] == [name, type_]:
                if e.edited:
                    e.lines = render_entry(e.fields, e.argv).splitlines(True)
                    e.edited = False
                e.commented = True
                changed = True
        return changed

    def _edit_each(self, name, type_, edit):
        """Apply ``edit(fields, argv) -> (fields, argv)`` to every entry of name/type (postconf
        -F, -P and -PX edit them all)."""
        changed = False
        for entry in self.matching(name, type_):
            fields, argv = edit(list(entry.fields), list(entry.argv))
            if fields != entry.fields or argv != entry.argv:
                entry.fields, entry.argv, entry.edited = fields, argv, True
                changed = True
        return changed

    def set_field(self, name, type_, field, value):
        """``postconf -F name/type/field=value``."""
        if field not in FIELDS:
            raise PostfixError("unknown master.cf field %r (one of %s)" % (field, ", ".join(FIELDS)))
        if field == "command":
            try:
                tokens = tokenize(value)
            except ValueError as e:
                raise PostfixError("%s/%s/command: %s" % (name, type_, e))
            if not tokens:
                raise PostfixError("%s/%s: empty command" % (name, type_))
            new_argv = normalize_argv(tokens)
            return self._edit_each(name, type_, lambda f, a: (f, list(new_argv)))
        if not value or any(_is_space(c) for c in value):
            raise PostfixError("%s/%s/%s: a field is one word" % (name, type_, field))
        if field == "type" and value not in TYPES:
            raise PostfixError("unknown service type %r" % value)
        idx = FIELDS.index(field)
        return self._edit_each(name, type_, lambda f, a: (f[:idx] + [value] + f[idx + 1:], a))

    def set_param(self, name, type_, param, value):
        """``postconf -P name/type/param=value``: replace the ``-o`` or add it before the first
        non-option argument (where postconf puts it)."""
        return self._edit_each(name, type_, lambda f, a: (f, set_param_argv(a, param, value)))

    def remove_param(self, name, type_, param):
        """``postconf -PX name/type/param``."""
        return self._edit_each(name, type_, lambda f, a: (f, remove_param_argv(a, param)))


def set_param_argv(argv, param, value):
    argv = list(argv)
    found = [idx for idx, n, _v in option_params(argv) if n == param]
    if found:
        for idx in found:
            argv[idx] = "%s=%s" % (param, value)
        return argv
    pos = first_non_option(argv)
    return argv[:pos] + ["-o", "%s=%s" % (param, value)] + argv[pos:]


def remove_param_argv(argv, param):
    drop = set()
    for idx, n, _v in option_params(argv):
        if n == param:
            drop.update((idx - 1, idx))
    return [a for k, a in enumerate(argv) if k not in drop]


# -- the master_cf module's edit: many services, one locked read-modify-write ---------------

SERVICE_FIELDS = ("private", "unpriv", "chroot", "wakeup", "maxproc")
# What master_ent.c:get_master_ent() accepts in each column.
_FIELD_SYNTAX = {
    "private": lambda v: v in ("y", "n", "-"),
    "unpriv": lambda v: v in ("y", "n", "-"),
    "chroot": lambda v: v in ("y", "n", "-"),
    "wakeup": lambda v: v == "-" or (v.rstrip("?").isdigit() and v.isascii() and v.count("?") <= 1),
    "maxproc": lambda v: v == "-" or (v.isdigit() and v.isascii()),
}
_FIELD_HELP = {
    "private": "y, n or -", "unpriv": "y, n or -", "chroot": "y, n or -",
    "wakeup": "a number of seconds, optionally followed by ?, or -", "maxproc": "a number or -",
}
_FORBIDDEN = ("\n", "\r", "\0")


def _check_text(what, value):
    if any(c in value for c in _FORBIDDEN):
        raise PostfixError("%s: a newline, carriage return or NUL byte is not allowed: %r" % (what, value))
    depth = 0
    for ch in value:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            break
    if depth:
        raise PostfixError("%s: unbalanced '{' or '}': %r" % (what, value))


def _check_word(what, value):
    _check_text(what, value)
    if not value or any(_is_space(c) for c in value) or "{" in value or "}" in value:
        raise PostfixError("%s: must be one word without whitespace or braces: %r" % (what, value))


def _string(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    return str(value)


# The argument spec of one service, shared by the master_cf and config modules.
SERVICE_OPTIONS = dict(
    name=dict(type="str", required=True),
    type=dict(type="str", required=True, choices=["inet", "unix", "unix-dgram", "fifo", "pass"]),
    state=dict(type="str", default="present", choices=["present", "absent", "commented"]),
    private=dict(type="str"),
    unpriv=dict(type="str"),
    chroot=dict(type="str"),
    wakeup=dict(type="str"),
    maxproc=dict(type="str"),
    command=dict(type="str"),
    args=dict(type="list", elements="str"),
    options=dict(type="dict"),
    options_exclusive=dict(type="bool", default=True),
)


def validate_service(svc):
    """Check one ``services`` item of the module; return it with strings everywhere."""
    name, type_ = _string(svc.get("name")), _string(svc.get("type"))
    _check_word("service name", name)
    if "=" in name or "/" in name or name.startswith("#"):
        raise PostfixError("service name %r: '=', '/' and a leading '#' are not allowed" % name)
    if type_ not in TYPES:
        raise PostfixError("%s: unknown service type %r (one of %s)" % (name, type_, ", ".join(TYPES)))
    key = "%s/%s" % (name, type_)
    out = dict(svc, name=name, type=type_)
    for field in SERVICE_FIELDS + ("command",):
        if svc.get(field) is not None:
            out[field] = _string(svc[field])
            _check_word("%s: %s" % (key, field), out[field])
            if not _FIELD_SYNTAX.get(field, lambda v: True)(out[field]):
                raise PostfixError("%s: %s must be %s, not %r" % (key, field, _FIELD_HELP[field], out[field]))
    if svc.get("args") is not None:
        out["args"] = [_string(a) for a in svc["args"]]
        for a in out["args"]:
            _check_text("%s: args" % key, a)
    if svc.get("options") is not None:
        if not isinstance(svc["options"], dict):
            raise PostfixError("%s: options must be a dictionary of parameter: value" % key)
        opts = {}
        for pname, pvalue in svc["options"].items():
            pname = _string(pname)
            _check_word("%s: option name" % key, pname)
            if "=" in pname or pname.startswith("-"):
                raise PostfixError("%s: option name %r: '=' or a leading '-' is not allowed" % (key, pname))
            pvalue = _string(pvalue)
            _check_text("%s: option %s" % (key, pname), pvalue)
            if pvalue != pvalue.strip(_BLANKS):
                raise PostfixError("%s: option %s: leading or trailing whitespace is not kept by Postfix: %r"
                                   % (key, pname, pvalue))
            opts[pname] = pvalue
        out["options"] = opts
    return out


def desired_entry(svc, entry):
    """The fields and argv a present service should have, starting from its current entry."""
    key = "%s/%s" % (svc["name"], svc["type"])
    if entry is None:
        if not svc.get("command"):
            raise PostfixError("%s: command is required to add a service" % key)
        fields = [svc["name"], svc["type"]] + ["-"] * len(SERVICE_FIELDS)
        argv = [svc["command"]]
    else:
        fields, argv = list(entry.fields), list(entry.argv)
        if svc.get("command"):
            argv[0] = svc["command"]
    for idx, field in enumerate(SERVICE_FIELDS):
        if svc.get(field) is not None:
            fields[2 + idx] = svc[field]
    options = svc.get("options")
    if options is not None:
        if svc.get("options_exclusive", True):
            for _idx, pname, _v in option_params(argv):
                if pname not in options:
                    argv = remove_param_argv(argv, pname)
        for pname, pvalue in options.items():
            argv = set_param_argv(argv, pname, pvalue)
    if svc.get("args") is not None:
        argv = argv[:first_non_option(argv)] + list(svc["args"])
    return fields, argv


def edit_master_cf(config_dir, services, backup=False, check_mode=False, lock_timeout=None):
    """Apply the module's ``services`` to ``config_dir``/master.cf; write only on change."""
    from ansible_collections.mailops.postfix.plugins.module_utils import _atomic

    if not os.path.isdir(config_dir):
        raise PostfixError("%s: no such directory" % config_dir)
    if not services:
        raise PostfixError("services is empty")
    services = [validate_service(s) for s in services]
    path = os.path.join(config_dir, "master.cf")

    def attempt():
        doc = MasterCf.load(path, missing_ok=all(s.get("state", "present") == "present" for s in services))
        before = doc.render()
        changed = []
        for svc in services:
            name, type_, state = svc["name"], svc["type"], svc.get("state") or "present"
            if state == "present":
                fields, argv = desired_entry(svc, doc.find(name, type_))
                hit = doc.set_entry(name, type_, fields, argv)
            elif state == "absent":
                hit = doc.remove(name, type_)
            elif state == "commented":
                hit = doc.comment(name, type_)
            else:
                raise PostfixError("%s/%s: unknown state %r" % (name, type_, state))
            key = "%s/%s" % (name, type_)
            if hit and key not in changed:
                changed.append(key)
        after = doc.render()
        if after == before:
            changed = []
        return before, after, changed

    result = {"path": path, "backup_file": None}
    if check_mode:
        before, after, changed = attempt()
    else:
        timeout = _atomic.DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        with _atomic.locked(path, timeout):
            before, after, changed = attempt()
            if changed:
                result["backup_file"] = _atomic.replace_text(path, after, backup=backup)
    result.update(changed=bool(changed), changed_services=changed, before=before, after=after,
                  # master(8): on SIGHUP the master re-reads master.cf, starts added services,
                  # stops removed ones and re-creates the listeners of changed ones.
                  restart_required=False, restart_services=[])
    return result
