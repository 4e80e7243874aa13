#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: queue
short_description: List, flush, delete, hold, release or requeue messages in the Postfix mail queue
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Lists the Postfix mail queue and acts on its messages.
  - This module acts on a running Postfix through Postfix's own queue tools, never by touching
    queue files itself. Listing parses C(postqueue -j); flushing runs C(postqueue -f), C(-i) or
    C(-s); deleting, holding, releasing and requeueing run one C(postsuper -d), C(-h), C(-H)
    or C(-r) process that reads the queue ids on standard input.
  - The queue is always listed first. O(ids) that are not in the queue are reported in
    RV(missing_ids), which is not an error.
  - "C(changed) is true only when something was actually flushed, deleted, held, released or
    requeued, as counted by the summary C(postsuper) prints (for example
    C(postsuper: Deleted: 2 messages))."
  - In check mode nothing is touched; RV(ids) lists exactly the messages that would be.
  - Listing works while Postfix is stopped (C(postqueue) then reads the queue directly, as
    root); RV(postfix_running) says which happened. Flushing needs a running Postfix.
options:
  state:
    description:
      - V(listed) returns the queue (after the filters) and changes nothing.
      - V(flushed) asks the queue manager to retry delivery now (C(postqueue -f)); with O(site)
        only mail for that destination (C(postqueue -s)); with O(ids) or a filter one
        C(postqueue -i) per selected message. Mail on hold is not flushed.
      - V(deleted) removes messages (C(postsuper -d)).
      - V(held) puts messages on hold (C(postsuper -h)); V(released) releases them (C(postsuper -H)).
      - V(requeued) requeues messages (C(postsuper -r)), so they go through address rewriting
        and routing again (through the maildrop queue and pickup(8), which may give them new queue ids).
      - V(deleted), V(held), V(released) and V(requeued) need O(ids), or at least one of
        O(sender), O(recipient), O(older_than) to select messages.
    type: str
    choices: [listed, flushed, deleted, held, released, requeued]
    default: listed
  ids:
    description:
      - Queue ids to act on (or, with V(listed), to show), as C(postqueue -p) prints them; a
        trailing C(*) or C(!) status mark is ignored.
      - Only Postfix queue id characters are accepted, and malformed ids are refused before
        any tool runs. Short ids are upper-case hexadecimal (at least six digits). Long ids
        (C(enable_long_queue_ids)) are digits and consonants, with a C(z) before the inode part.
      - V(ALL) (upper case, alone) selects every message and requires O(confirm_all=true) for
        V(deleted), V(held), V(released) and V(requeued). Without filters it runs
        C(postsuper -d ALL) (restricted to O(queue) when given).
      - When filters are given too, only the listed ids that match them are acted on; the
        others are reported in RV(skipped_ids).
    type: list
    elements: str
  confirm_all:
    description:
      - Must be V(true) for O(ids=ALL) with V(deleted), V(held), V(released) or V(requeued).
    type: bool
    default: false
  sender:
    description:
      - Select messages from this envelope sender. An exact address (case-insensitive),
        C(@domain) for a whole domain, or a shell pattern such as C(*@example.com).
        V(<>) selects bounces (the null sender).
    type: str
  recipient:
    description:
      - Select messages with at least one recipient matching, in the same forms as O(sender).
      - Acting on a selected message acts on the whole message, with all its recipients.
    type: str
  older_than:
    description:
      - Select messages that arrived longer ago than this, for example V(30m), V(2h), V(1d),
        V(1h30m); a bare number is seconds.
    type: str
  queue:
    description:
      - Only these queues. With V(deleted), V(held), V(released), V(requeued) the names are
        also passed to C(postsuper), which otherwise uses its own defaults (for example
        C(-d) acts on hold, incoming, active and deferred).
    type: list
    elements: str
    choices: [maildrop, hold, incoming, active, deferred]
  site:
    description:
      - With O(state=flushed), flush only mail for this destination (C(postqueue -s)). Postfix
        accepts this only for destinations in C(fast_flush_domains).
    type: str
  config_dir:
    description:
      - The Postfix configuration directory, passed to the Postfix tools as C(-c).
    type: path
    default: /etc/postfix
attributes:
  check_mode:
    support: full
    description: Lists the queue and reports in RV(ids) exactly which messages would be acted on; touches none.
  diff_mode:
    support: none
    description: No file is edited.
  platform:
    platforms: posix
    support: full
    description: Targets with Postfix 3.1 or later (C(postqueue -j)) and Python 3.8 or later. Acting on the queue needs root.
notes:
  - Deleting every message (C(postsuper -d ALL)) is the last resort of the Postfix documentation;
    prefer deleting by id or by filter.
  - Flushing undeliverable mail often makes delivery of all other mail slower (postqueue(1)).
  - With C(maillog_file) set and Postfix stopped, C(postsuper) can fail after the first message
    because it cannot open the log without postlogd; the module then fails and reports the ids
    already done.
seealso:
  - name: postqueue(1)
    description: The Postfix queue control command.
    link: https://www.postfix.org/postqueue.1.html
  - name: postsuper(1)
    description: The Postfix superintendent command.
    link: https://www.postfix.org/postsuper.1.html
  - module: mailops.postfix.log_triage
"""

EXAMPLES = r"""
- name: List the queue
  mailops.postfix.queue:
  register: mailq

- name: Show how many messages are deferred
  ansible.builtin.debug:
    msg: "{{ mailq.summary.by_queue.deferred }} deferred"

- name: List deferred mail older than two hours for one domain
  mailops.postfix.queue:
    queue: [deferred]
    recipient: "@example.com"
    older_than: 2h

- name: Retry delivery of everything now
  mailops.postfix.queue:
    state: flushed

- name: Retry one message
  mailops.postfix.queue:
    state: flushed
    ids: [3ED1624E13]

- name: Delete one stuck message
  mailops.postfix.queue:
    state: deleted
    ids: [3ED1624E13]

- name: Hold everything from a runaway sender
  mailops.postfix.queue:
    state: held
    sender: newsletter@example.com

- name: Release it again
  mailops.postfix.queue:
    state: released
    sender: newsletter@example.com

- name: Delete every deferred message (last resort)
  mailops.postfix.queue:
    state: deleted
    ids: [ALL]
    queue: [deferred]
    confirm_all: true
"""

RETURN = r"""
messages:
  description:
    - With V(listed), the selected messages. Otherwise the messages acted on (or that would be, in check mode), as listed before acting.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The queue id.
      type: str
      sample: 3ED1624E13
    queue:
      description: The queue the message is in (maildrop, hold, incoming, active, deferred).
      type: str
      sample: deferred
    size:
      description: Message size in bytes.
      type: int
      sample: 12512
    arrival_time:
      description: Arrival time, seconds since the epoch.
      type: int
      sample: 1795535846
    arrival:
      description: Arrival time, ISO 8601 in UTC.
      type: str
      sample: "2026-11-24T15:57:26Z"
    age:
      description: Seconds since arrival.
      type: int
      sample: 7260
    sender:
      description: Envelope sender; empty for bounces.
      type: str
      sample: support@example.tld
    forced_expire:
      description: Whether the message was marked for expiry (C(postsuper -e)).
      type: bool
      sample: false
    recipients:
      description: Recipients still to deliver, with the reason of the last deferral.
      type: list
      elements: dict
      sample: [{"address": "user@example.com", "delay_reason": "connect to mx.example.com[192.0.2.1]:25: Connection timed out"}]
summary:
  description: Counts over RV(messages).
  returned: always
  type: dict
  contains:
    messages:
      description: Number of messages.
      type: int
    recipients:
      description: Number of recipients.
      type: int
    size:
      description: Total size in bytes.
      type: int
    by_queue:
      description: Messages per queue (every queue name present, 0 when empty).
      type: dict
    by_reason:
      description: Messages per delay reason.
      type: dict
  sample:
    messages: 2
    recipients: 2
    size: 692
    by_queue: {"maildrop": 0, "hold": 0, "incoming": 0, "active": 0, "deferred": 2}
    by_reason: {"connect to 127.0.0.1[127.0.0.1]:2525: Connection refused": 2}
ids:
  description:
    - The queue ids acted on, as C(postsuper) reported them; in check mode the ids that would be.
    - For V(flushed), the ids the flush covered. Empty for V(listed).
  returned: always
  type: list
  elements: str
  sample: [3ED1624E13]
count:
  description: Number of messages acted on (C(postsuper)'s own count), or listed.
  returned: always
  type: int
  sample: 1
missing_ids:
  description: Requested ids that are not in the queue (or left it before C(postsuper) ran).
  returned: always
  type: list
  elements: str
  sample: [4F00A1B2C3]
skipped_ids:
  description:
    - Requested ids in the queue that were not acted on, because they do not match the filters
      or are already in the wanted state (for example holding a held message).
  returned: always
  type: list
  elements: str
  sample: []
postfix_running:
  description: Whether Postfix answered (false when C(postqueue) had to read the queue directly).
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError
from ansible_collections.mailops.postfix.plugins.module_utils._queue import QueueError, manage


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="listed",
                       choices=["listed", "flushed", "deleted", "held", "released", "requeued"]),
            ids=dict(type="list", elements="str"),
            confirm_all=dict(type="bool", default=False),
            sender=dict(type="str"),
            recipient=dict(type="str"),
            older_than=dict(type="str"),
            queue=dict(type="list", elements="str",
                       choices=["maildrop", "hold", "incoming", "active", "deferred"]),
            site=dict(type="str"),
            config_dir=dict(type="path", default="/etc/postfix"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = manage(config_dir=p["config_dir"], state=p["state"], ids=p["ids"],
                        confirm_all=p["confirm_all"], sender=p["sender"], recipient=p["recipient"],
                        older_than=p["older_than"], queue=p["queue"], site=p["site"],
                        check_mode=module.check_mode)
    except QueueError as e:
        done = e.result
        module.fail_json(msg=str(e), changed=bool(done.get("count")), ids=done.get("ids", []),
                         count=done.get("count", 0))
    except PostfixError as e:
        module.fail_json(msg=str(e))
    for w in result.pop("warnings"):
        module.warn(w)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
