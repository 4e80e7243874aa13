# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Postfix mail queue through Postfix's own tools: postqueue(1) and postsuper(1).

Listing parses ``postqueue -j`` (one JSON object per message, Postfix >= 3.1). Actions run
``postqueue -f/-i/-s`` and ``postsuper -d/-h/-H/-r``; ids go to one postsuper process on
stdin (``-d -``), and what postsuper reports on stderr decides what actually changed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import time

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._postfix import which

QUEUE_NAMES = ("maildrop", "hold", "incoming", "active", "deferred")

# mail_queue.h: a short id is 5 upper-case hex digits of microseconds plus the inode in hex;
# a long id is base-52 seconds (6+) and microseconds (4) from the "safe" alphabet (digits and
# letters without vowels), a 'z', then the inode in base 51 (the same alphabet minus 'z').
_SAFE52 = "0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z"
_SAFE51 = "0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y"
_SHORT_ID = re.compile(r"[0-9A-F]{6,64}\Z")
_LONG_ID = re.compile(r"[%s]{10,64}z[%s]{1,32}\Z" % (_SAFE52, _SAFE51))

# What postsuper(1) says on stderr, per message and in summary (postsuper.c, Postfix 3.x).
_OPS = {
    # state: (flag, per-message verb, summary word, queues it acts on by default)
    "deleted": ("-d", "removed", "Deleted", ("hold", "incoming", "active", "deferred")),
    "held": ("-h", "placed on hold", "Placed on hold", ("incoming", "active", "deferred")),
    "released": ("-H", "released from hold", "Released from hold", ("hold",)),
    "requeued": ("-r", "requeued", "Requeued", ("hold", "incoming", "active", "deferred")),
}
_DONE_LINE = re.compile(r"^postsuper: ([0-9A-Za-z]+): (removed|placed on hold|released from hold|requeued)$")
_SUMMARY_LINE = re.compile(r"^postsuper: (Deleted|Placed on hold|Released from hold|Requeued): (\d+) messages?$")

_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text) -> int:
    """``"2h"``, ``"30m"``, ``"1d"``, ``"1h30m"``, ``"90"`` (seconds) -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise PostfixError("duration must not be negative: %r" % text)
        return int(text)
    s = str(text).strip().lower()
    pos, total = 0, 0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if not m or m.end() == pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
        while pos < len(s) and s[pos] == " ":
            pos += 1
    if not s or pos != len(s):
        raise PostfixError("invalid duration %r: use a number with s, m, h, d or w (e.g. 30m, 2h, 1d)" % (text,))
    return total


def normalize_id(queue_id) -> str:
    """Strip the status marks postqueue -p appends (``*`` active, ``!`` on hold)."""
    return str(queue_id).strip().rstrip("*!")


def valid_queue_id(queue_id: str) -> bool:
    return bool(_SHORT_ID.match(queue_id) or _LONG_ID.match(queue_id))


def find_tool(name: str) -> str:
    path = which(name)
    if path:
        return path
    raise PostfixError("%s not found: is Postfix installed on this host?" % name)


def _match_address(pattern: str, address: str) -> bool:
    """Exact (case-insensitive), ``@domain``, or a shell glob such as ``*@example.com``.

    ``<>`` matches the null sender (bounces), which postqueue -j shows as an empty string.
    """
    if pattern == "<>":
        return address == ""
    p, a = pattern.lower(), address.lower()
    if any(c in p for c in "*?["):
        return fnmatch.fnmatchcase(a, p)
    if p.startswith("@"):
        return a.endswith(p)
    return a == p


def summarize(messages) -> dict:
    by_queue = dict((q, 0) for q in QUEUE_NAMES)
    by_reason = {}
    size = 0
    recipients = 0
    for m in messages:
        by_queue[m["queue"]] = by_queue.get(m["queue"], 0) + 1
        size += m["size"]
        recipients += len(m["recipients"])
        for reason in sorted(set(r["delay_reason"] for r in m["recipients"] if r.get("delay_reason"))):
            by_reason[reason] = by_reason.get(reason, 0) + 1
    return {
        "messages": len(messages),
        "recipients": recipients,
        "size": size,
        "by_queue": by_queue,
        "by_reason": by_reason,
    }


class QueueError(PostfixError):
    """A failed action; ``result`` holds what had already been done."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result or {}


class PostfixQueue:
    """One Postfix instance's queue, addressed by its config directory."""

    def __init__(self, config_dir: str = "/etc/postfix", now=None):
        self.config_dir = config_dir
        self.now = now if now is not None else time.time()
        self.warnings = []
        self.running = None

    # -- tools -------------------------------------------------------------------
    def _run(self, tool: str, args, stdin=None):
        argv = [find_tool(tool), "-c", self.config_dir] + list(args)
        env = dict(os.environ, LC_ALL="C")
        try:
            # The engine also runs without an AnsibleModule (tests, scripts): no run_command here.
            proc = subprocess.run(  # pylint: disable=ansible-bad-function
                argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                universal_newlines=True, env=env, check=False)
        except OSError as exc:
            raise PostfixError("cannot run %s: %s" % (argv[0], exc))
        return proc.returncode, proc.stdout, proc.stderr

    @staticmethod
    def _fatal(stderr: str) -> str:
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        fatal = [ln for ln in lines if ": fatal: " in ln]
        return (fatal or lines or ["no error output"])[-1]

    # -- listing -----------------------------------------------------------------
    def list(self):
        """All queued messages from ``postqueue -j``; sets ``running``.

        postqueue asks showq(8); when the mail system is down, root gets the queue read
        directly (postqueue warns "Mail system is down -- accessing queue directly").
        """
        rc, out, err = self._run("postqueue", ["-j"])
        if rc != 0:
            msg = self._fatal(err)
            if "mail system is down" in msg.lower():
                raise PostfixError("cannot list the queue: Postfix is not running and only root can read "
                                   "the queue directly (%s)" % msg)
            raise PostfixError("postqueue -j failed (exit %d): %s" % (rc, msg))
        self.running = "mail system is down" not in err.lower()
        if not self.running:
            self.warnings.append("Postfix is not running: the queue was read directly from %s"
                                 % self.config_dir)
        messages = []
        for n, line in enumerate(out.splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except ValueError as exc:
                raise PostfixError("postqueue -j: line %d is not JSON (%s): %s" % (n, exc, line[:200]))
            messages.append(self._message(raw))
        return messages

    def _message(self, raw) -> dict:
        arrival = int(raw.get("arrival_time") or 0)
        return {
            "id": raw.get("queue_id", ""),
            "queue": raw.get("queue_name", ""),
            "size": int(raw.get("message_size") or 0),
            "arrival_time": arrival,
            "arrival": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(arrival)),
            "age": max(0, int(self.now - arrival)),
            "sender": raw.get("sender", ""),
            "forced_expire": bool(raw.get("forced_expire", False)),
            "recipients": [
                {"address": r.get("address", ""), "delay_reason": r.get("delay_reason", "")}
                for r in raw.get("recipients", [])
            ],
        }

    @staticmethod
    def filter(messages, sender=None, recipient=None, older_than=None, queues=None):
        min_age = parse_duration(older_than) if older_than not in (None, "") else None
        out = []
        for m in messages:
            if queues and m["queue"] not in queues:
                continue
            if sender is not None and not _match_address(sender, m["sender"]):
                continue
            if recipient is not None and not any(_match_address(recipient, r["address"]) for r in m["recipients"]):
                continue
            if min_age is not None and m["age"] < min_age:
                continue
            out.append(m)
        return out

    # -- actions -----------------------------------------------------------------
    def postsuper(self, state: str, ids, queues=None) -> dict:
        """Run one ``postsuper -X -`` (ids on stdin) or ``-X ALL`` when ``ids == "ALL"``."""
        flag, verb, word = _OPS[state][:3]
        args = [flag, "ALL" if ids == "ALL" else "-"] + list(queues or [])
        stdin = None if ids == "ALL" else "".join(i + "\n" for i in ids)
        rc, dummy, err = self._run("postsuper", args, stdin=stdin)
        done, count = [], None
        for line in err.splitlines():
            m = _DONE_LINE.match(line.strip())
            if m and m.group(2) == verb:
                done.append(m.group(1))
                continue
            m = _SUMMARY_LINE.match(line.strip())
            if m and m.group(1) == word:
                count = int(m.group(2))
        result = {"ids": done, "count": count if count is not None else len(done)}
        if rc != 0:
            msg = "postsuper %s failed (exit %d) after %d message(s): %s" % (flag, rc, len(done), self._fatal(err))
            if self.running is False:
                msg += (" (Postfix is not running: with maillog_file set, postsuper cannot open the log "
                        "without postlogd; start Postfix and retry)")
            raise QueueError(msg, result)
        return result

    def flush(self, ids=None, site=None) -> None:
        """``postqueue -f``, ``-s SITE`` or one ``-i ID`` per id (postqueue(1))."""
        if site:
            calls = [["-s", site]]
        elif ids:
            calls = [["-i", i] for i in ids]
        else:
            calls = [["-f"]]
        for args in calls:
            rc, dummy, err = self._run("postqueue", args)
            if rc != 0:
                msg = self._fatal(err)
                if "mail system is down" in msg.lower():
                    raise PostfixError("cannot flush: Postfix is not running (%s)" % msg)
                raise PostfixError("postqueue %s failed (exit %d): %s" % (" ".join(args), rc, msg))


def _clean_ids(ids):
    """Normalised ids, or "ALL"; malformed ids refused before any tool runs."""
    if ids is None:
        return None
    if isinstance(ids, str):
        ids = [ids]
    cleaned = [normalize_id(i) for i in ids if str(i).strip()]
    if "ALL" in cleaned:
        if len(cleaned) != 1:
            raise PostfixError("ids: ALL cannot be combined with other queue ids")
        return "ALL"
    bad = [i for i in cleaned if not valid_queue_id(i)]
    if bad:
        raise PostfixError("malformed queue id(s): %s (Postfix queue ids are upper-case hex, or the long "
                           "form of digits and consonants with a 'z' before the inode part)"
                           % ", ".join(repr(b) for b in bad))
    seen = set()
    return [i for i in cleaned if not (i in seen or seen.add(i))]


def _check_site(site: str) -> str:
    s = site.strip()
    if not s or not re.match(r"^\[?[A-Za-z0-9._:-]+\]?$", s):
        raise PostfixError("invalid site %r: give a domain name such as example.com" % site)
    return s


def manage(config_dir="/etc/postfix", state="listed", ids=None, confirm_all=False, sender=None,
           recipient=None, older_than=None, queue=None, site=None, check_mode=False, now=None) -> dict:
    """List or act on the queue; returns the module result (without ``changed`` semantics lost)."""
    if state not in ("listed", "flushed") and state not in _OPS:
        raise PostfixError("unknown state %r" % state)
    queues = list(queue or [])
    unknown = [q for q in queues if q not in QUEUE_NAMES]
    if unknown:
        raise PostfixError("unknown queue(s): %s (use %s)" % (", ".join(unknown), ", ".join(QUEUE_NAMES)))
    if older_than not in (None, ""):
        parse_duration(older_than)  # refuse a bad value before touching anything
    ids = _clean_ids(ids)
    if site is not None:
        if state != "flushed":
            raise PostfixError("site is only used with state=flushed")
        site = _check_site(site)
    content_filter = sender is not None or recipient is not None or older_than not in (None, "")

    if state in _OPS:
        if ids == "ALL" and not confirm_all:
            raise PostfixError("ids: ALL would %s every message%s; set confirm_all: true to do that"
                               % ({"deleted": "delete", "held": "hold", "released": "release",
                                   "requeued": "requeue"}[state],
                                  (" in " + ", ".join(queues)) if queues else ""))
        if ids is None and not content_filter:
            raise PostfixError("state=%s needs ids, a filter (sender, recipient, older_than), or ids: ALL "
                               "with confirm_all: true" % state)

    pq = PostfixQueue(config_dir, now=now)
    everything = pq.list()
    selected = pq.filter(everything, sender, recipient, older_than, queues)
    result = {
        "changed": False,
        "postfix_running": pq.running,
        "messages": selected,
        "summary": summarize(selected),
        "ids": [],
        "missing_ids": [],
        "skipped_ids": [],
        "count": 0,
        "warnings": pq.warnings,
    }
    if state == "listed":
        if isinstance(ids, list):
            present = set(m["id"] for m in everything)
            result["missing_ids"] = [i for i in ids if i not in present]
            result["messages"] = [m for m in selected if m["id"] in ids]
            result["summary"] = summarize(result["messages"])
        result["count"] = len(result["messages"])
        return result

    present = dict((m["id"], m) for m in everything)
    chosen = set(m["id"] for m in selected)
    if isinstance(ids, list):
        result["missing_ids"] = [i for i in ids if i not in present]
        result["skipped_ids"] = [i for i in ids if i in present and i not in chosen]
        targets = [present[i] for i in ids if i in chosen]
    else:
        targets = selected

    if state == "flushed":
        return _flush(pq, result, targets, ids, site, content_filter, queues, check_mode)

    default_queues = _OPS[state][3]
    eligible = [m for m in targets if m["queue"] in (queues or default_queues)]
    if isinstance(ids, list):
        # Already in the wanted state (e.g. holding a held message): nothing to do for postsuper.
        result["skipped_ids"] += [m["id"] for m in targets if m not in eligible]
    result["ids"] = [m["id"] for m in eligible]
    result["count"] = len(eligible)
    result["messages"] = eligible
    result["summary"] = summarize(eligible)
    if check_mode or not eligible and not (ids == "ALL" and not content_filter):
        result["changed"] = bool(eligible)
        return result
    if ids == "ALL" and not content_filter:
        # postsuper -X ALL [queue...]: the seed's last resort, restricted to `queue` when given.
        done = pq.postsuper(state, "ALL", queues)
    else:
        done = pq.postsuper(state, [m["id"] for m in eligible], queues)
    if ids == "ALL" and not content_filter and len(done["ids"]) < done["count"]:
        # postsuper -X ALL prints only its summary: name the messages from a second listing.
        done["ids"] = _ids_gone(state, eligible, pq.list())
    result["ids"] = done["ids"]
    result["count"] = done["count"]
    result["changed"] = done["count"] > 0
    if ids != "ALL" or content_filter:
        # Gone between listing and postsuper (delivered, expired): report, not fatal.
        vanished = [m["id"] for m in eligible if m["id"] not in done["ids"]]
        result["missing_ids"] += vanished
    return result


def _ids_gone(state, before, after):
    """Ids of ``before`` that left the queue they were in (held: that are now on hold)."""
    now = dict((m["id"], m["queue"]) for m in after)
    if state == "held":
        return [m["id"] for m in before if now.get(m["id"]) == "hold"]
    if state == "released":
        return [m["id"] for m in before if m["id"] in now and now[m["id"]] != "hold"]
    return [m["id"] for m in before if m["id"] not in now]


def _flush(pq, result, targets, ids, site, content_filter, queues, check_mode):
    if site:
        dom = site.strip("[]").lower()
        targets = [m for m in targets
                   if any(r["address"].lower().rsplit("@", 1)[-1] == dom for r in m["recipients"])]
    # postqueue -f / -i / -s do not release held mail.
    eligible = [m for m in targets if m["queue"] != "hold"]
    result["skipped_ids"] += [m["id"] for m in targets if m["queue"] == "hold" and isinstance(ids, list)]
    by_id = isinstance(ids, list) or content_filter or bool(queues)
    result["ids"] = [m["id"] for m in eligible]
    result["count"] = len(eligible)
    result["messages"] = eligible
    result["summary"] = summarize(eligible)
    result["changed"] = bool(eligible)
    if pq.running is False:
        raise PostfixError("cannot flush: Postfix is not running (postqueue -f needs the queue manager)")
    if check_mode or not eligible:
        return result
    if site:
        pq.flush(site=site)
    elif by_id:
        pq.flush(ids=result["ids"])
    else:
        pq.flush()
    return result
