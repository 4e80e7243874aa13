# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where things are (config_dir, queue_directory, the master pid), the facts the
``postconf`` binary knows (defaults, table types), the referenced lookup tables, the
pre-flight checks and the reload itself (postfix-script "reload" without the shell)."""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import re
import shutil
import signal
import stat
import subprocess
import time

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._db import index_path, stale_by_mtime
from ansible_collections.mailops.postfix.plugins.module_utils import _address_classes, _maincf, _mastercf

DEFAULT_CONFIG_DIR = "/etc/postfix"
DEFAULT_QUEUE_DIR = "/var/spool/postfix"
# master.c: DEF_PID_DIR "pid", relative to queue_directory; the file is "<procname>.pid".
PID_FILE = os.path.join("pid", "master.pid")

# Parameters the running master reads only when it starts; a reload keeps the old value
# and logs "to change X, stop and start Postfix". master_vars.c:master_vars_init watches
# config_directory, queue_directory and inet_protocols; master_ent.c refuses to change
# inet_interfaces; master.c:main applies import_environment (clean_env), queue_directory
# (chdir) and data_directory (master.lock) once. master_service_disable is re-read on
# reload (master_vars_init), so it is not listed.
RESTART_PARAMS = (
    "config_directory",
    "data_directory",
    "import_environment",
    "inet_interfaces",
    "inet_protocols",
    "queue_directory",
)

# Postfix dictionary types (dict_open.c and the dynamic maps) that name a file after ':'.
TABLE_TYPES = (
    "btree", "cdb", "cidr", "dbm", "hash", "ldap", "lmdb", "memcache", "mongodb", "mysql",
    "nis", "nisplus", "pcre", "pgsql", "regexp", "sdbm", "sqlite", "texthash",
)
# Types whose index is a separate file postmap/postalias builds from the source.
INDEX_TYPES = ("hash", "btree", "cdb", "lmdb", "dbm", "sdbm")
# Types that wrap other tables: proxy:type:name, unionmap:{...}, pipemap:{...}.
WRAPPER_TYPES = ("proxy",)
LIST_TYPES = ("unionmap", "pipemap")


def which(name, extra=("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin", "/bin")):
    """A Postfix tool by name: on PATH, else in the sbin directories a module's PATH may lack."""
    path = shutil.which(name)
    if path:
        return path
    for d in extra:
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def _run(argv):
    # The engine also runs without an AnsibleModule (facts for other engines, tests).
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                              check=False)
    except OSError as e:
        raise PostfixError("%s: %s" % (argv[0], e))
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def postmap_query(argv, spec, keys, timeout=None):
    """Ask ``spec`` (TYPE:NAME) for every key of ``keys`` (bytes) with one ``postmap -q - SPEC``;
    ``argv`` is postmap with its options (-c DIR, -f). Returns (exit status, {key: value} of the
    keys found, stderr text); judging the stderr is the caller's. postmap_queries() (postmap.c)
    prints KEY<TAB>VALUE for each key found, in input order and as given: matched in order, as
    a value may hold a TAB. subprocess.TimeoutExpired is the caller's to handle."""
    data = b"".join(key + b"\n" for key in keys)
    try:
        proc = subprocess.run(argv + ["-q", "-", spec], input=data, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                              stderr=subprocess.PIPE, check=False, timeout=timeout)
    except OSError as e:
        raise PostfixError("%s: %s" % (argv[0], e))
    lines = proc.stdout.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    found, i = {}, 0
    for line in lines:
        while i < len(keys) and not line.startswith(keys[i] + b"\t"):
            i += 1
        if i == len(keys):
            raise PostfixError("%s: unexpected postmap -q output line %r" % (spec, line[:200]))
        found[keys[i]] = line[len(keys[i]) + 1:]
        i += 1
    return proc.returncode, found, proc.stderr.decode("utf-8", "replace")


def parse_postconf_output(text):
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" =")
        if sep:
            out[name.strip()] = value[1:] if value.startswith(" ") else value
    return out


class Binary(object):
    """The installed ``postconf`` (None when Postfix is not installed)."""

    def __init__(self, postconf=None):
        self.postconf = postconf if postconf is not None else which("postconf")
        self._defaults = {}

    def __bool__(self):
        return bool(self.postconf)

    def defaults(self, config_dir=None):
        """``postconf -d``: compiled-in defaults (raw, unexpanded), or {} without Postfix."""
        if not self.postconf:
            return {}
        key = config_dir or ""
        if key not in self._defaults:
            argv = [self.postconf, "-d"]
            if config_dir and os.path.isdir(config_dir):
                argv[1:1] = ["-c", config_dir]
            rc, out, err = _run(argv)
            if rc != 0:
                raise PostfixError("%s failed: %s" % (" ".join(argv), err.strip()))
            self._defaults[key] = parse_postconf_output(out)
        return self._defaults[key]

    def default(self, name, fallback=None):
        return self.defaults().get(name, fallback)

    def map_types(self):
        """``postconf -m``: the table types this Postfix supports."""
        if not self.postconf:
            return []
        rc, out, err = _run([self.postconf, "-m"])
        if rc != 0:
            raise PostfixError("postconf -m failed: %s" % err.strip())
        return sorted(t for t in out.split() if t)


# -- reading the configuration ---------------------------------------------------

def main_cf_path(config_dir):
    return os.path.join(config_dir, "main.cf")


def master_cf_path(config_dir):
    return os.path.join(config_dir, "master.cf")


def load(config_dir, binary=None, missing_ok=False):
    """(MainCf, Config) for ``config_dir``, layered over ``postconf -d`` when installed."""
    maincf = _maincf.MainCf.load(main_cf_path(config_dir), missing_ok=missing_ok)
    binary = binary if binary is not None else Binary()
    defaults = binary.defaults(config_dir) if binary else {}
    return maincf, _maincf.Config(maincf, defaults)


def queue_directory(config, binary=None):
    """queue_directory from main.cf, else the compiled default (postconf -dh), else Debian's."""
    value = config.value("queue_directory")
    if value:
        return value
    if binary is not None and binary:
        value = binary.default("queue_directory")
        if value:
            return value
    return DEFAULT_QUEUE_DIR


# -- lookup tables main.cf references ---------------------------------------------

def _table_refs(token, out):
    if token.startswith("{") and token.endswith("}"):
        for t in _maincf.split_braced(token[1:-1]):
            _table_refs(t, out)
        return
    m = re.match(r"^([A-Za-z0-9_]+):(.*)\Z", token, re.S)
    if not m:
        return
    typ, rest = m.group(1).lower(), m.group(2)
    if typ in WRAPPER_TYPES:
        _table_refs(rest, out)
    elif typ in LIST_TYPES and rest.startswith("{"):
        _table_refs(rest, out)
    elif typ in TABLE_TYPES and rest.startswith("/"):
        out.append((typ, rest))


def table_refs(value):
    """``[(type, path)]`` for every ``type:/path`` lookup table in an expanded value."""
    out = []
    for tok in _maincf.split_braced(value):
        _table_refs(tok, out)
    return out


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def table_info(typ, path):
    """type, source, index, exists, stale (index missing or older than its source)."""
    info = {"type": typ, "path": path, "source_exists": _mtime(path) is not None,
            "index": None, "index_exists": None, "stale": False}
    if typ in INDEX_TYPES:
        idx = index_path(path, typ)
        reason = stale_by_mtime(path, idx)
        info["index"] = idx
        info["index_exists"] = reason != "index missing"
        info["stale"] = reason is not None
    return info


def alias_database_refs(config, default_type):
    """newaliases' view of alias_database: entries without ``type:`` use default_database_type
    (sendmail.c: postalias -- <alias_database split on ", \\t\\r\\n">)."""
    out = []
    for tok in _maincf.split_list(config.value("alias_database")):
        m = re.match(r"^([A-Za-z0-9_]+):(.*)\Z", tok)
        if m:
            typ, path = m.group(1).lower(), m.group(2)
        else:
            typ, path = default_type, tok
        if path.startswith("/"):
            out.append((typ, path))
    return out


def is_cache_parameter(name):
    """Parameters naming caches that Postfix daemons create and write themselves (tlsmgr's
    *_tls_session_cache_database, verify(8)'s address_verify_map, postscreen_cache_map,
    ...): no source file, nothing for postmap to build, missing until first use."""
    return name.endswith(("_cache_database", "_cache_map")) or name == "address_verify_map"


def _found(found, ref):
    entry = found.get(ref)
    if entry is None:
        entry = found[ref] = table_info(*ref)
        entry["parameters"] = []
        entry["overrides"] = []
    return entry


def service_value(config, entry, value, strict=False, warnings=None):
    """A master.cf ``-o`` value expanded as the service's daemon sees it: its own ``-o``
    parameters over main.cf over the defaults (mail_conf_update() before the parameters are
    read), and ``$service_name`` the service's name (set by the daemon skeletons such as
    single_server.c; ``postconf -Px`` expands the overrides the same way)."""
    own = _mastercf.overrides(entry.argv)

    def lookup(name):
        if name in own:
            return own[name]
        if name == "service_name":
            return entry.fields[0]
        return config.raw(name)

    exp = _maincf.Expander(lookup, strict=strict)
    result = exp.expand(value)
    if warnings is not None:
        warnings.extend(exp.warnings)
    return result


def referenced_tables(config, names=None, warnings=None, mastercf=None):
    """``{(type, path): {..., "parameters": [names], "overrides": [sites]}}`` for every
    table main.cf references and, with ``mastercf``, every table a master.cf ``-o``
    override references (a site: dict(service, parameter, line)).

    Every explicit parameter value is expanded (so ``$alias_maps`` style indirection is
    followed); defaults are consulted for names the values reference."""
    found = {}
    params = names if names is not None else sorted(config.explicit)
    for name in params:
        value = config.value(name, warnings=warnings)
        for ref in table_refs(value):
            entry = _found(found, ref)
            if name not in entry["parameters"]:
                entry["parameters"].append(name)
    for service in mastercf.entries() if mastercf is not None else ():
        for name, raw in _mastercf.overrides(service.argv).items():
            for ref in table_refs(service_value(config, service, raw, warnings=warnings)):
                site = {"service": service.key, "parameter": name, "line": service.lineno}
                entry = _found(found, ref)
                if site not in entry["overrides"]:
                    entry["overrides"].append(site)
    for entry in found.values():
        names = entry["parameters"] + [site["parameter"] for site in entry["overrides"]]
        entry["cache"] = all(is_cache_parameter(name) for name in names)
        if entry["cache"]:
            entry["stale"] = False
    return found


def tables_to_build(config, warnings=None, mastercf=None):
    """referenced_tables() plus the maps of alias_database (what newaliases builds), each
    listing "alias_database" among its parameters."""
    tables = referenced_tables(config, warnings=warnings, mastercf=mastercf)
    for ref in alias_database_refs(config, config.value("default_database_type") or "hash"):
        entry = _found(tables, ref)
        if "alias_database" not in entry["parameters"]:
            entry["parameters"].append("alias_database")
    return tables


# -- the running master ----------------------------------------------------------

def pid_file(queue_dir):
    return os.path.join(queue_dir, PID_FILE)


def read_pid(path):
    """The pid in master.pid (``%*lu\\n`` with padding, master.c), or None."""
    try:
        with open(path, "rb") as f:
            text = f.read(4096).decode("ascii", "replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PostfixError("%s: cannot read: %s" % (path, e.strerror))
    first = text.split("\n", 1)[0].strip()
    if not first:
        return None
    if not first.isdigit():
        raise PostfixError("%s: not a pid file: %r" % (path, first[:40]))
    return int(first)


def is_locked(path):
    """The master holds an exclusive flock on master.pid while it runs (master -t)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise PostfixError("%s: cannot open: %s" % (path, e.strerror))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, OSError) as e:
            if isinstance(e, BlockingIOError) or e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return True
            raise PostfixError("%s: lock test failed: %s" % (path, e))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _proc(pid, what):
    try:
        with open("/proc/%d/%s" % (pid, what), "rb") as f:
            return f.read()
    except OSError:
        return None


def is_master(pid):
    """Whether /proc says ``pid`` is Postfix's master (comm "master", exe or argv[0] .../master)."""
    comm = _proc(pid, "comm")
    if comm is None or comm.strip() != b"master":
        return False
    try:
        exe = os.readlink("/proc/%d/exe" % pid)
    except OSError:
        exe = ""
    cmdline = _proc(pid, "cmdline") or b""
    argv0 = cmdline.split(b"\0", 1)[0].decode("utf-8", "replace")
    return os.path.basename(exe.replace(" (deleted)", "")) == "master" or os.path.basename(argv0) == "master"


def master_status(queue_dir):
    """dict(pid_file, pid, running): running means the lock is held and /proc agrees.

    Raises PostfixError when the file is locked but its pid is not Postfix's master."""
    path = pid_file(queue_dir)
    status = {"pid_file": path, "pid": None, "running": False}
    if not os.path.exists(path):
        return status
    pid = read_pid(path)
    if not is_locked(path):
        return status
    if pid is None:
        raise PostfixError("%s is locked but holds no pid" % path)
    if not is_master(pid):
        raise PostfixError(
            "%s names pid %d, which is not Postfix's master process (comm %r); refusing to signal it"
            % (path, pid, (_proc(pid, "comm") or b"gone").strip().decode("utf-8", "replace")))
    status["pid"] = pid
    status["running"] = True
    return status


def signal_reload(pid):
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as e:
        raise PostfixError("cannot signal master pid %d: %s" % (pid, e.strerror))


def _systemctl():
    """systemctl, when systemd is the running init (sd_booted(3): /run/systemd/system), else None."""
    systemctl = which("systemctl")
    return systemctl if systemctl and os.path.isdir("/run/systemd/system") else None


def systemd_usable():
    """systemd runs as PID 1 manager and knows a postfix unit."""
    systemctl = _systemctl()
    if not systemctl:
        return None
    rc, out, _err = _run([systemctl, "is-system-running"])
    if out.strip() not in ("running", "degraded", "starting"):
        return None
    rc, out, _err = _run([systemctl, "list-unit-files", "postfix.service", "--no-legend"])
    if rc != 0 or "postfix.service" not in out:
        return None
    return systemctl


# os-release(5) ID / ID_LIKE words -> Ansible's os_family, for the role to pick its variables
# without a fact-gathering round trip (ansible.module_utils.facts.system.distribution).
OS_FAMILIES = (("Debian", ("debian", "ubuntu")), ("RedHat", ("rhel", "fedora", "centos")),
               ("Suse", ("suse", "opensuse", "sles")), ("Alpine", ("alpine",)), ("Archlinux", ("arch",)))


def host_facts(path="/etc/os-release"):
    """os_family, distribution (os-release ID) and distribution_major_version of the host,
    from os-release(5); empty strings when it cannot be read."""
    release = {}
    try:
        with open(path) as f:
            for line in f:
                name, sep, value = line.strip().partition("=")
                if sep:
                    release[name] = value.strip().strip("\"'")
    except OSError:
        pass
    words = [release.get("ID", "").lower()] + release.get("ID_LIKE", "").lower().split()
    family = ""
    for name, ids in OS_FAMILIES:
        if any(w in ids or (name == "Suse" and w.startswith("opensuse")) for w in words):
            family = name
            break
    return {"os_family": family, "distribution": release.get("ID", ""),
            "distribution_major_version": release.get("VERSION_ID", "").split(".")[0]}


def service_facts(name="postfix"):
    """Whether the init system starts service ``name`` at boot: ``systemctl is-enabled`` when
    systemd runs (exit 0: enabled, static, alias...), else the sysv start links
    /etc/rc?.d/S??NAME that update-rc.d makes (how ansible.builtin.service judges both);
    enabled None when neither tells."""
    systemctl = _systemctl()
    if systemctl:
        rc, out, _err = _run([systemctl, "is-enabled", name + ".service"])
        return {"name": name, "manager": "systemd", "enabled": rc == 0, "state": out.strip()}
    if os.path.isdir("/etc/init.d") and os.path.exists(os.path.join("/etc/init.d", name)):
        links = glob.glob("/etc/rc?.d/S??" + name)
        return {"name": name, "manager": "sysv", "enabled": bool(links), "state": "enabled" if links else "disabled"}
    return {"name": name, "manager": None, "enabled": None, "state": None}


def start(config_dir):
    """Start Postfix: through systemd for the default instance when systemd manages it,
    else ``postfix -c DIR start``. Returns the method used."""
    systemctl = systemd_usable() if os.path.realpath(config_dir) == DEFAULT_CONFIG_DIR else None
    if systemctl:
        argv = [systemctl, "start", "postfix.service"]
        method = "systemd"
    else:
        postfix = which("postfix")
        if not postfix:
            raise PostfixError("cannot start Postfix: no postfix command found")
        argv = [postfix, "-c", config_dir, "start"]
        method = "postfix start"
    rc, out, err = _run(argv)
    if rc != 0:
        raise PostfixError("%s failed (%d): %s" % (" ".join(argv), rc, (err or out).strip()))
    return method


# -- pre-flight checks -------------------------------------------------------------

def _file_problems(path, what, check_owner=True):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return []
    except OSError as e:
        return ["%s: cannot stat: %s" % (path, e.strerror)]
    problems = []
    if st.st_mode & stat.S_IWOTH:
        problems.append("%s (%s) is world-writable (mode %04o)" % (path, what, stat.S_IMODE(st.st_mode)))
    # Tables may belong to another user (postmap runs as the source's owner, e.g. Mailman's
    # maps); configuration files must not (postfix-script check-warn).
    if check_owner and st.st_uid != 0 and st.st_uid != os.geteuid():
        problems.append("%s (%s) is owned by uid %d, not root" % (path, what, st.st_uid))
    return problems


def preflight(config_dir, binary=None):
    """The checks ``reload`` runs before signalling. Returns (problems, warnings, facts)."""
    binary = binary if binary is not None else Binary()
    problems = []
    warnings = []
    # master(8) re-reads master.cf on SIGHUP and exits on a line it cannot parse
    # (master_ent.c: fatal_invalid_field(), fatal_with_context()); postconf -d fails on it
    # too, so it is read first.
    mastercf = None
    if os.path.exists(master_cf_path(config_dir)):
        try:
            mastercf = _mastercf.MasterCf.load(master_cf_path(config_dir))
        except PostfixError as e:
            return [str(e)], warnings, {}
    try:
        maincf, config = load(config_dir, binary)
    except PostfixError as e:
        return [str(e)], warnings, {}
    warnings.extend(maincf.warnings)
    exp_warnings = []
    for name in sorted(config.explicit):
        try:
            config.value(name, strict=True)
        except _maincf.ExpansionError as e:
            exp_warnings.append("%s: parameter %s: %s" % (maincf.path, name, e))
    problems.extend(exp_warnings)
    if mastercf is not None:
        for service in mastercf.entries():
            for name, raw in sorted(_mastercf.overrides(service.argv).items()):
                try:
                    service_value(config, service, raw, strict=True)
                except _maincf.ExpansionError as e:
                    problems.append("%s:%d: %s -o %s: %s" % (mastercf.path, service.lineno, service.key, name, e))
    tables = tables_to_build(config, mastercf=mastercf)
    stale = []
    for (typ, path), info in sorted(tables.items()):
        if info.get("cache"):
            continue
        # One message per place the table is named: main.cf's parameters together, then
        # each master.cf override with its file and line.
        sites = []
        if info["parameters"]:
            sites.append("%s:%s (%s)" % (typ, path, ", ".join(info["parameters"])))
        for site in info["overrides"]:
            sites.append("%s:%d: %s -o %s: %s:%s" % (mastercf.path, site["line"], site["service"],
                                                     site["parameter"], typ, path))
        if typ in INDEX_TYPES:
            if not info["index_exists"]:
                stale.append(info["index"])
                problems.extend("%s: index %s is missing" % (where, info["index"]) for where in sites)
            elif info["stale"]:
                stale.append(info["index"])
                problems.extend("%s: index %s is older than its source; run postmap/postalias"
                                % (where, info["index"]) for where in sites)
            problems.extend(_file_problems(path, "table source", check_owner=False))
            problems.extend(_file_problems(info["index"], "table index", check_owner=False))
        elif not info["source_exists"]:
            problems.extend("%s: file not found" % where for where in sites)
        else:
            problems.extend(_file_problems(path, "table", check_owner=False))
    # Every domain in more than one address class is a problem, however it got there.
    classes = _address_classes.find_crossings(config)
    if classes.crossings:
        problems.append(_address_classes.message(classes.crossings, refusing=False))
    for name in ("main.cf", "master.cf"):
        problems.extend(_file_problems(os.path.join(config_dir, name), "configuration"))
    if not os.path.exists(os.path.join(config_dir, "master.cf")):
        problems.append("%s: file not found" % os.path.join(config_dir, "master.cf"))
    facts = {"maincf": maincf, "mastercf": mastercf, "config": config, "tables": tables, "stale": stale,
             "domain_lists_not_checked": classes.unchecked}
    return problems, warnings, facts


# -- the postconf module's edit ------------------------------------------------------

# Used for the address class check when Postfix is not installed (mail_params.h).
FALLBACK_DEFAULTS = dict(_address_classes.DEFAULTS)


def edit_main_cf(config_dir, params, state="present", backup=False, check_mode=False, binary=None,
                 lock_timeout=None, remove=()):
    """Set (``postconf -e``), remove (``-X``) or comment out (``-#``) main.cf parameters;
    with ``state=present``, ``remove`` names parameters removed in the same edit (one write,
    judged as a whole: a domain moved from one address class to another is never refused
    halfway). ``params`` may then be empty.

    Nothing is written when nothing changes, in check mode, or when a change leaves a
    domain in more than one address class (mydestination, virtual_alias_domains,
    virtual_mailbox_domains, relay_domains; _address_classes). That is judged on the whole
    file after the edit: an edit that changes something is refused while any crossing
    remains, one it made or one already there, so a file is only ever written free of them
    (or fixed); an edit that changes nothing never fails. The file is replaced
    atomically under a lock and keeps its owner, group and mode (``postconf -e`` always
    leaves 0644 owned by the caller: a main.cf kept 0640 stays 0640 here). Another run
    holding the lock is waited for at most ``lock_timeout`` seconds (None: the default).
    """
    from ansible_collections.mailops.postfix.plugins.module_utils import _atomic

    path = main_cf_path(config_dir)
    if not os.path.isdir(config_dir):
        raise PostfixError("%s: no such directory" % config_dir)
    if state == "present":
        if not isinstance(params, dict):
            raise PostfixError("params must be a dictionary of name: value with state=present")
    elif isinstance(params, dict):
        params = list(params)
    elif not isinstance(params, (list, tuple)):
        raise PostfixError("params must be a list of names or a dictionary with state=%s" % state)
    remove = list(remove or ())
    if remove and state != "present":
        raise PostfixError("remove goes with state=present")
    if not params and not remove:
        raise PostfixError("params is empty")
    binary = binary if binary is not None else Binary()

    def attempt():
        maincf = _maincf.MainCf.load(path, missing_ok=(state == "present"))
        before = maincf.render()
        removed = []
        if state == "present":
            changed = maincf.set_many(params) if params else []
            removed = maincf.remove_many(remove) if remove else []
        elif state == "absent":
            changed = maincf.remove_many(params)
        elif state == "commented":
            changed = maincf.comment_many(params)
        else:
            raise PostfixError("unknown state %r" % (state,))
        after = maincf.render()
        unchecked = []
        if changed or removed:
            defaults = dict(FALLBACK_DEFAULTS)
            if binary:
                defaults.update(binary.defaults(config_dir))
            classes = _address_classes.find_crossings(_maincf.Config(maincf, defaults))
            if classes.crossings:
                raise PostfixError(_address_classes.message(classes.crossings, unchecked=classes.unchecked))
            unchecked = classes.unchecked
        return maincf, before, after, changed, removed, unchecked

    result = {"path": path, "backup_file": None}
    if check_mode:
        maincf, before, after, changed, removed, unchecked = attempt()
    else:
        with _atomic.locked(path, _atomic.DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout):
            maincf, before, after, changed, removed, unchecked = attempt()
            if changed or removed:
                result["backup_file"] = _atomic.replace_text(path, after, backup=backup)
    touched = set(changed) | set(removed)
    result.update(
        changed=bool(changed or removed),
        changed_params=changed,
        removed_params=removed,
        restart_required=sorted(touched & set(RESTART_PARAMS)) != [],
        restart_params=sorted(touched & set(RESTART_PARAMS)),
        warnings=maincf.warnings,
        domain_lists_not_checked=unchecked,
        before=before,
        after=after,
    )
    return result


# -- facts ---------------------------------------------------------------------------

def facts(config_dir, binary=None):
    """What ``postconf -n/-d/-m`` and ``postfix status`` tell, read without changing anything."""
    binary = binary if binary is not None else Binary()
    notes = []
    warnings = []
    maincf = _maincf.MainCf.load(main_cf_path(config_dir))
    warnings.extend(maincf.warnings)
    # Before postconf -d, which also fails on a bad master.cf but without saying where.
    mastercf = _mastercf.MasterCf.load(master_cf_path(config_dir), missing_ok=True)
    if not os.path.exists(mastercf.path):
        notes.append("%s: file not found" % mastercf.path)
    defaults = binary.defaults(config_dir) if binary else {}
    if not binary:
        notes.append("postconf not found: defaults, table types and mail_version are unknown")
    config = _maincf.Config(maincf, defaults or FALLBACK_DEFAULTS)
    queue_dir = queue_directory(config, binary)
    try:
        status = master_status(queue_dir)
    except PostfixError as e:
        warnings.append(str(e))
        status = {"pid_file": pid_file(queue_dir), "pid": None, "running": False}
    exp_warnings = []
    tables = tables_to_build(config, warnings=exp_warnings, mastercf=mastercf)
    warnings.extend(sorted(set(exp_warnings)))
    return {
        "config_dir": config_dir,
        "main_cf": maincf.path,
        "master_cf": mastercf.path,
        "services": mastercf.services(),
        "parameters": maincf.params(),
        "defaults": defaults,
        "map_types": binary.map_types() if binary else [],
        "default_database_type": config.value("default_database_type") or None,
        "mail_version": config.value("mail_version") or None,
        "queue_directory": queue_dir,
        "pid_file": status["pid_file"],
        "running": status["running"],
        "master_pid": status["pid"],
        "tables": [tables[k] for k in sorted(tables)],
        "stale_tables": [tables[k]["path"] for k in sorted(tables) if tables[k]["stale"]],
        "restart_params": list(RESTART_PARAMS),
        "notes": notes,
        "warnings": warnings,
    }


def host_info(config_dir, service_name="postfix", binary=None):
    """What the postfix_info module returns: facts() (its warnings as warnings_main_cf), the
    host (os-release), whether service ``service_name`` starts at boot and whether the Python
    lmdb binding imports. When Postfix cannot be read, ``msg`` says why and the keys of facts()
    are missing (mail_version among them)."""
    out = {"host": host_facts(), "service": service_facts(service_name)}
    try:
        out.update(facts(config_dir, binary))
    except PostfixError as e:
        out["msg"] = str(e)
        return out
    out["warnings_main_cf"] = out.pop("warnings")
    try:
        import lmdb  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
        out["python_lmdb"] = True
    except ImportError:
        out["python_lmdb"] = False
    return out


# -- reload --------------------------------------------------------------------------

class PreflightFailed(PostfixError):
    def __init__(self, problems, stale):
        self.problems = problems
        self.stale = stale
        super().__init__("pre-flight check failed, nothing signalled: " + "; ".join(problems))


def master_children(pid):
    """PIDs of the processes whose parent is ``pid`` (/proc; empty without it)."""
    out = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            out.add(int(entry))
    return out


def wait_gone(pids, timeout):
    """The ``pids`` still running after at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left:
        left = set(p for p in left if os.path.exists("/proc/%d" % p))
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return left


def reload(config_dir, start_if_stopped=False, check_mode=False, binary=None, wait=10.0):
    """``postfix reload`` in Python: pre-flight checks, then SIGHUP the running master.

    Unlike postfix-script it does not run ``postsuper active`` around the signal (a queue
    repair, not part of re-reading the configuration). A master that is not running is not
    an error: it is started only with ``start_if_stopped``.

    The master tells its children to exit on SIGHUP (master_restart_service()), but an idle
    daemon from before - proxymap, smtpd - may still take one more request with the old
    configuration: at most ``wait`` seconds are spent waiting for them to be gone, and those
    still running (a session in progress) are returned in ``old_processes``.
    """
    binary = binary if binary is not None else Binary()
    problems, warnings, info = preflight(config_dir, binary)
    if problems:
        raise PreflightFailed(problems, info.get("stale", []))
    queue_dir = queue_directory(info["config"], binary)
    status = master_status(queue_dir)
    result = {
        "queue_directory": queue_dir,
        "pid_file": status["pid_file"],
        "pid": status["pid"],
        "running": status["running"],
        "reloaded": False,
        "started": False,
        "start_method": None,
        "changed": False,
        "warnings": warnings,
        "tables_checked": sorted(path for _typ, path in info["tables"]),
        "domain_lists_not_checked": info["domain_lists_not_checked"],
    }
    if status["running"]:
        result["old_processes"] = []
        if not check_mode:
            before = master_children(status["pid"])
            signal_reload(status["pid"])
            result["old_processes"] = sorted(wait_gone(before, wait))
        result["reloaded"] = result["changed"] = True
    elif start_if_stopped:
        if not check_mode:
            result["start_method"] = start(config_dir)
            after = master_status(queue_dir)
            result["pid"], result["running"] = after["pid"], after["running"]
        result["started"] = result["changed"] = True
    return result
