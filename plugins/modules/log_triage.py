#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: log_triage
short_description: Summarise warning, error, fatal and panic lines of the Postfix mail log
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Reads the Postfix mail log and returns its C(warning), C(error), C(fatal) and C(panic) lines,
    grouped by severity and by message, with counts, first and last time seen and the newest
    examples first. The Ansible form of C(grep -E '(warning|error|fatal|panic):' /var/log/mail.log).
  - Messages are grouped after masking what varies between occurrences of one problem (queue ids,
    IP addresses, numbers such as pids and ports), per Postfix program (C(postfix/smtpd), ...).
  - The log is, in order, O(path) when given; else the file in Postfix's C(maillog_file) parameter
    (read with C(postconf -c O(config_dir) -h maillog_file)); else C(/var/log/mail.log) or
    C(/var/log/maillog); else the journal (C(journalctl -u postfix*)) when C(journalctl) exists.
  - "Understands syslog lines (C(Nov 24 11:11:11 host postfix/smtpd[123]: warning: ...)), the RFC 3339
    form (C(2026-11-24T11:11:11.123456+00:00 host ...)) and the C(maillog_file) of Postfix
    written by postlogd(8). Lines of other programs are ignored."
  - Files are streamed, and O(lines) reads the end of the file backwards in blocks, so large logs are
    never read whole into memory. Rotated copies can be included (O(include_rotated)).
  - Never changes anything. RV(healthy) is false when any C(fatal) or C(panic) line is found.
options:
  path:
    description:
      - The log file to read. Default is found as described above.
    type: path
  source:
    description:
      - V(auto) finds the log as described above; V(file) only looks at files; V(journald) reads the
        journal with C(journalctl) (then O(path) and O(include_rotated) cannot be used).
    type: str
    choices: [auto, file, journald]
    default: auto
  config_dir:
    description:
      - The Postfix configuration directory, passed to C(postconf) as C(-c) to find C(maillog_file).
    type: path
    default: /etc/postfix
  severities:
    description:
      - The severities to group and return in RV(groups). RV(counts) and RV(healthy) always cover all four.
    type: list
    elements: str
    choices: [warning, error, fatal, panic]
    default: [warning, error, fatal, panic]
  since:
    description:
      - Only lines logged at or after this time. A date and time such as V(2026-11-24T10:00:00),
        V(2026-11-24 10:00), V(2026-11-24) (local time unless an offset such as V(+01:00) or V(Z)
        is given), seconds since the epoch, or a duration back from now such as V(30m), V(2h), V(1d).
      - Syslog lines carry no year; the most recent year that does not put a line in the future is assumed.
    type: str
  lines:
    description:
      - Only the last N lines of the log (of all files read, the newest first). Combined with O(since), both apply.
    type: int
  include_rotated:
    description:
      - Also read rotated copies of the log file (C(mail.log.1), C(mail.log.2.gz), C(mail.log-20261124), ...;
        gzip, bzip2 and xz are read), oldest first. With O(since), copies last written before that time are skipped.
    type: bool
    default: false
  examples:
    description:
      - How many example lines to keep per group, newest first.
    type: int
    default: 3
extends_documentation_fragment:
  - mailops.postfix.common.read_only
attributes:
  platform:
    platforms: posix
    support: full
    description: Targets with Python 3.8 or later. Reading the mail log usually needs root or the adm group.
seealso:
  - module: mailops.postfix.queue
  - name: DEBUG_README
    description: Postfix debugging howto, including where to look in the log.
    link: https://www.postfix.org/DEBUG_README.html
  - name: MAILLOG_README
    description: Postfix logging to file or stdout (maillog_file, postlogd).
    link: https://www.postfix.org/MAILLOG_README.html
"""

EXAMPLES = r"""
- name: Triage the mail log of the last day
  mailops.postfix.log_triage:
    since: 1d
  register: triage

- name: Fail when Postfix logged a fatal or panic
  ansible.builtin.assert:
    that: triage.healthy
    fail_msg: "{{ triage.counts.fatal }} fatal, {{ triage.counts.panic }} panic lines"

- name: Last 10000 lines, errors only
  mailops.postfix.log_triage:
    lines: 10000
    severities: [error, fatal, panic]

- name: A week of history, including rotated logs
  mailops.postfix.log_triage:
    path: /var/log/mail.log
    include_rotated: true
    since: 7d

- name: Read the journal
  mailops.postfix.log_triage:
    source: journald
    since: "2026-11-24 00:00"
"""

RETURN = r"""
healthy:
  description: False when any C(fatal) or C(panic) line was found.
  returned: always
  type: bool
  sample: true
counts:
  description: Lines per severity (all four, whatever O(severities) says).
  returned: always
  type: dict
  sample: {"warning": 12, "error": 0, "fatal": 0, "panic": 0}
groups:
  description: One entry per severity, program and normalised message, most severe first, then most frequent.
  returned: always
  type: list
  elements: dict
  contains:
    severity:
      description: warning, error, fatal or panic.
      type: str
      sample: warning
    program:
      description: The logging program, as syslog_name/program.
      type: str
      sample: postfix/smtpd
    message:
      description: The message with queue ids (C(QUEUEID)), IP addresses (C(IP)) and numbers (C(N)) masked.
      type: str
      sample: "hostname mxN.example.net does not resolve to address IP"
    count:
      description: Number of lines.
      type: int
      sample: 2
    first_seen:
      description: Time of the oldest line (ISO 8601, local time of the target).
      type: str
      sample: "2026-11-24T11:11:11+00:00"
    last_seen:
      description: Time of the newest line.
      type: str
      sample: "2026-11-24T11:11:12+00:00"
    examples:
      description: Full log lines, newest first (at most O(examples)).
      type: list
      elements: str
      sample: ["Nov 24 11:11:12 mail postfix/smtpd[901]: warning: hostname mx2.example.net does not resolve to address 192.0.2.11"]
sources:
  description: The files read (oldest first), or C(journald).
  returned: always
  type: list
  elements: str
  sample: [/var/log/mail.log.1, /var/log/mail.log]
lines_read:
  description: Lines examined.
  returned: always
  type: int
  sample: 120000
postfix_lines:
  description: Lines from Postfix programs in the time range.
  returned: always
  type: int
  sample: 118000
oldest:
  description: Time of the oldest Postfix line considered; null when none.
  returned: always
  type: str
  sample: "2026-11-23T00:00:02+00:00"
newest:
  description: Time of the newest Postfix line considered; null when none.
  returned: always
  type: str
  sample: "2026-11-24T11:11:12+00:00"
since:
  description: O(since) as an absolute time; null when not given.
  returned: always
  type: str
  sample: "2026-11-23T11:11:12+00:00"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._maillog import SEVERITIES, triage


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path"),
            source=dict(type="str", default="auto", choices=["auto", "file", "journald"]),
            config_dir=dict(type="path", default="/etc/postfix"),
            severities=dict(type="list", elements="str", default=list(SEVERITIES), choices=list(SEVERITIES)),
            since=dict(type="str"),
            lines=dict(type="int"),
            include_rotated=dict(type="bool", default=False),
            examples=dict(type="int", default=3),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["source"] == "journald" and (p["include_rotated"] or p["path"]):
        module.fail_json(msg="path and include_rotated apply to log files, not to source=journald")
    if p["examples"] < 0:
        module.fail_json(msg="examples must not be negative")
    try:
        result = triage(path=p["path"], config_dir=p["config_dir"], source=p["source"],
                        severities=p["severities"], since=p["since"], lines=p["lines"],
                        include_rotated=p["include_rotated"], examples=p["examples"])
    except PostfixError as e:
        module.fail_json(msg=str(e))
    for w in result.pop("warnings"):
        module.warn(w)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
