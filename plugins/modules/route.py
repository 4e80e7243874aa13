#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: route
short_description: Where does mail to an address go in Postfix
version_added: "0.1.0"
author: mailops.postfix maintainers (@mailops)
description:
  - Follows each address the way Postfix does and returns its final recipients, each with its
    address class, transport, next hop, the chain of table lookups and alias expansions that led
    there, and Postfix's rejection text when it would not be delivered.
  - Changes nothing and never delivers a message.
  - >-
    O(mode=static) computes the route in Python from main.cf and the tables on the host, with no
    running Postfix needed (so also on a staged configuration directory and in check mode).
    cleanup(8) canonicalises the address (C(@$myorigin) for a bare name), applies
    C(recipient_canonical_maps) then C(canonical_maps) (canonical(5)) and expands
    C(virtual_alias_maps) recursively (virtual(5)); trivial-rewrite(8) gives each result its
    class (C(mydestination) and the C(inet_interfaces)/C(proxy_interfaces) literals are local,
    then C(virtual_alias_domains), C(virtual_mailbox_domains), C(relay_domains), else default),
    its transport and next hop (C(transport_maps), transport(5), before the class default);
    local(8) expands C(alias_maps) (aliases(5)) and knows its system users; virtual(8) checks
    C(virtual_mailbox_maps).
  - >-
    Lookups try C(user+ext@domain), C(user@domain), then C(user+ext) and C(user) when the domain
    is C($myorigin) or local, then C(@domain); C(recipient_delimiter) and
    C(propagate_unmatched_extensions) apply as in Postfix; an address that lists itself keeps
    itself and stops; C(virtual_alias_recursion_limit) and C(virtual_alias_expansion_limit)
    stop the message, as Postfix does (RV(routes.error)).
  - >-
    C(hash), C(cdb) and C(lmdb) tables are read by this collection's readers. Every other type
    (C(regexp), C(pcre), C(cidr), C(texthash), C(inline), C(static), and network tables such as
    C(pgsql), C(mysql), C(ldap)) is looked up with the host's C(postmap -q KEY TYPE:NAME) (with
    C(-c) O(config_dir)); those tables are listed in RV(routes.lookups_via_postmap).
  - >-
    O(mode=live) asks the running Postfix: one C(sendmail -bv -f double-bounce ADDRESS) per
    address (Postfix's address verification mode). Postfix runs the message through cleanup,
    the queue manager and the delivery agents, which report what they would do instead of
    delivering. Local and virtual delivery agents only look at their tables and users; an
    C(smtp) or C(lmtp) transport connects to the next hop and asks it about the recipient
    (MAIL FROM and RCPT TO, no message), which is the only contact with another host. The report
    Postfix would mail to the sender goes to C(double-bounce), whose mail Postfix discards.
  - >-
    Live verdicts are read from the mail log (C(maillog_file), else C(/var/log/mail.log) or
    C(/var/log/maillog)): the probe's queue id from pickup's C(uid=.. from=<double-bounce>) line
    that follows the submission, then the delivery agents' C(to=<..>, orig_to=<..>, relay=..,
    status=deliverable|undeliverable (text)) lines until the queue manager's C(removed), or
    cleanup's C(message not accepted) warning. Addresses are asked one after the other; the
    whole call waits at most O(timeout) seconds. A probe that cleanup refuses (a virtual alias
    loop) is removed from the maildrop queue, or pickup would retry it for ever.
options:
  addresses:
    description:
      - The addresses to follow, as given to C(sendmail) (C(user) or C(user@domain)).
    type: list
    elements: str
    required: true
  mode:
    description:
      - V(static) computes the route from the configuration files; V(live) asks the running
        Postfix (see the description).
    type: str
    choices: [static, live]
    default: static
  staged:
    description:
      - >-
        O(mode=static) only. Route as the configuration will be once a change is written,
        without writing anything (for check mode, before a host changes): main.cf with
        O(staged.params) laid over it and the tables of O(staged.tables) holding exactly the
        entries given.
      - >-
        With O(staged), the module also routes the addresses on the configuration as it is now
        and compares: RV(route_changes) lists each address whose route differs, the result is
        C(changed) when one does (nothing is written), and C(--diff) shows C(address: route)
        lines before and after. RV(routes) are the staged routes.
    type: dict
    suboptions:
      params:
        description:
          - main.cf parameters (name -> string, list, number or boolean, as
            M(mailops.postfix.postconf) takes them) over the file's; V(null) removes one, so
            Postfix's default applies.
        type: dict
        default: {}
      tables:
        description:
          - >-
            C(TYPE:PATH) or C(PATH) of a table source -> C({key: value}), the entries the table
            will hold (a list value is written C(a, b)). Keys, and every lookup, are folded as
            postmap(1) and postalias(1) fold them (lower case). A C(PATH) stands for the main.cf
            references of any indexed type to that source. Only C(hash), C(cdb) and C(lmdb)
            tables can be staged; other tables are looked up as they are (a C(regexp), C(pcre),
            C(cidr) or C(texthash) source that does not exist yet as empty, named in
            RV(routes.limits)).
          - A table that is in C(alias_maps) gets its values parsed as aliases(5) values.
          - The entries may also be given as one string, C(KEY<TAB>VALUE) per line (as
            M(mailops.postfix.config)'s C(entries_text)), which Ansible templates and sends at once;
            the M(mailops.postfix.server) role stages its maps this way.
        type: dict
        default: {}
      merge:
        description:
          - >-
            Tables of O(staged.tables) whose staged entries are laid over the entries the
            table holds now (a non-exclusive write; a V(null) value removes a key) instead of
            replacing them.
        type: list
        elements: str
        default: []
  fail_on_reject:
    description:
      - >-
        Fail when a route (the staged one with O(staged)) has a rejected recipient, an alias
        loop or an error (a limit that makes Postfix refuse the message, a table that cannot be
        read). The message names each address, the recipient and Postfix's text.
    type: bool
    default: false
  return_routes:
    description:
      - Return RV(routes) (and RV(routes_before)). With V(false) only RV(route_changes), RV(routed)
        and, on a failure, the problems are returned (for thousands of addresses, whose routes
        would be sent back and kept by Ansible whole).
    type: bool
    default: true
  timeout:
    description:
      - O(mode=live) only. At most this many seconds for the whole call; addresses not answered
        by then get an RV(routes.error).
    type: float
    default: 30
extends_documentation_fragment:
  - mailops.postfix.common.config_dir
attributes:
  check_mode:
    support: full
    description: The module never changes anything; both modes run in check mode.
  diff_mode:
    support: full
    description: >-
      With O(staged), the routes that change, one C(address: recipients) line each, before and
      after. Nothing is changed.
  platform:
    platforms: posix
    support: full
    description: Targets with Python 3.8 or later; O(mode=live) needs a running Postfix and its mail log.
notes:
  - >-
    Static mode stops where C(sendmail -bv) stops. An address that local(8) forwards (an alias
    target in another domain) is a recipient with RV(routes.recipients.forwarded=true) and the
    local transport; ask for that address to follow it further.
  - >-
    Rejections are the texts of the agents that decide them, as C(sendmail -bv) reports them:
    C(User unknown in virtual alias table) (trivial-rewrite), C(unknown user: "name") (local(8),
    virtual(8)), an C(error:) transport's text, C(alias database loop for NAME). The SMTP
    server's own RCPT checks (C(local_recipient_maps), C(relay_recipient_maps), access maps)
    are not part of the route.
  - >-
    Not modelled in static mode: C(.forward) files and C(luser_relay) (named in
    RV(routes.limits) when they apply), sender-dependent transports and relay hosts,
    masquerading, and what a remote SMTP server answers. Parent-domain matching of
    C(relay_domains) is not widened to subdomains, and C(inet_interfaces=all) stands for the
    loopback addresses only.
  - >-
    Live mode finds its probe by the pickup log line that follows the submission (same user id,
    sender C(double-bounce)); another C(sendmail -bv -f double-bounce) by the same user at the
    same moment could be taken for it.
seealso:
  - module: mailops.postfix.postmap
  - name: virtual(5)
    description: Virtual alias table lookup order, extensions and recursion.
    link: https://www.postfix.org/virtual.5.html
  - name: transport(5)
    description: Transport table lookup order.
    link: https://www.postfix.org/transport.5.html
  - name: ADDRESS_VERIFICATION_README
    description: What C(sendmail -bv) does.
    link: https://www.postfix.org/ADDRESS_VERIFICATION_README.html
"""

EXAMPLES = r"""
- name: Where does mail to support@ go
  mailops.postfix.route:
    addresses:
      - support@example.tld
      - root
  register: where

- name: Fail when an alias target would be rejected
  ansible.builtin.assert:
    that: >-
      where.routes['support@example.tld'].recipients
      | selectattr('rejected') | list | length == 0

- name: Ask the running Postfix (sendmail -bv), at most 20 seconds
  mailops.postfix.route:
    addresses: [support@example.tld]
    mode: live
    timeout: 20

- name: Preview how routes change with a new virtual alias map, and stop on a rejected one
  mailops.postfix.route:
    addresses: [support@example.tld, sales@example.tld]
    staged:
      tables:
        /etc/postfix/virtual:
          support@example.tld: [alice@example.net, bob@example.net]
          sales@example.tld: carol@example.net
      params:
        virtual_alias_domains: [example.tld]
    fail_on_reject: true
  check_mode: true
  diff: true
  register: preview

- name: Routes of a staged configuration directory before it goes live
  mailops.postfix.route:
    config_dir: /etc/postfix.staged
    addresses: "{{ postfix_aliases | map(attribute='address') | list }}"
  check_mode: true
"""

RETURN = r"""
routed:
  description: How many addresses were routed.
  returned: always
  type: int
  sample: 10000
routes:
  description: For each address asked (the key), where Postfix takes it.
  returned: unless O(return_routes=false)
  type: dict
  contains:
    address:
      description: The address as Postfix writes it (C(@$myorigin) appended to a bare name); null in live mode.
      type: str
      sample: root@mail.example.tld
    recipients:
      description: The final recipients; one address can have delivered and rejected recipients at once.
      type: list
      elements: dict
      contains:
        address:
          description: The recipient address.
          type: str
          sample: alice@example.net
        class:
          description: >-
            The address class, one of V(local), V(virtual_alias), V(virtual_mailbox), V(relay),
            V(default); null in live mode (the log does not say).
          type: str
          sample: virtual_mailbox
        transport:
          description: >-
            The master.cf transport (static); the delivery agent that logged the verdict (live).
          type: str
          sample: virtual
        nexthop:
          description: >-
            The next hop (static); in live mode the C(relay=) host of an smtp/lmtp verdict, else null.
          type: str
          sample: example.net
        via:
          description: >-
            Static mode, the chain that led here, in order: C({rewrite, key, result}) for the
            canonical form, C({table, key, result, parameter}) for each table match,
            C({aliases, key, result}) for each alias expansion by local(8). Live mode,
            C({orig_to}) when Postfix logged the original recipient.
          type: list
          elements: dict
        rejected:
          description: Postfix's reason when this recipient would not be delivered, else null.
          type: str
          sample: User unknown in virtual alias table
        forwarded:
          description: local(8) forwards this address in a new message (not followed further).
          type: bool
    loops:
      description: Alias loops found (virtual alias chains that come back, local alias loops).
      type: list
      elements: str
    limits:
      description: >-
        Limits hit (virtual_alias_recursion_limit, virtual_alias_expansion_limit, ...) and what
        static mode did not follow (a C(.forward) file, C(luser_relay)).
      type: list
      elements: str
    error:
      description: >-
        Why the address has no route (not an address, a table that cannot be read, a limit that
        makes Postfix refuse the message, no verdict in time), else null.
      type: str
    lookups_via_postmap:
      description: The tables this address was looked up in with the host's C(postmap -q) (static mode).
      type: list
      elements: str
  sample:
    support@example.tld:
      address: support@example.tld
      recipients:
        - address: alice@example.net
          class: virtual_mailbox
          transport: virtual
          nexthop: example.net
          via:
            - table: hash:/etc/postfix/virtual
              key: support@example.tld
              result: alice@example.net
              parameter: virtual_alias_maps
          rejected: null
          forwarded: false
      loops: []
      limits: []
      error: null
      lookups_via_postmap: []
routes_before:
  description: >-
    With O(staged), the routes on the configuration as it is now (same form as RV(routes));
    empty when the current configuration could not be read.
  returned: when staged is given, unless O(return_routes=false)
  type: dict
route_changes:
  description: >-
    With O(staged), each address whose route differs: its current and staged route, each one
    line (the final recipients sorted, C(rejected: TEXT) after a rejected one, C(forwarded)
    after one local(8) forwards, the loops, or C(error: TEXT)).
  returned: when staged is given
  type: dict
  sample:
    support@example.tld:
      before: "alice@example.net, bob@example.net"
      after: "alice@example.net, nosuch@example.tld (rejected: User unknown in virtual alias table)"
domain_lists_not_checked:
  description: Static mode, class domain lists (tables or files) that could not be read; a domain in them is not recognised.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.postfix.plugins.module_utils import _route
from ansible_collections.mailops.postfix.plugins.module_utils._errors import PostfixError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            addresses=dict(type="list", elements="str", required=True),
            config_dir=dict(type="path", default="/etc/postfix"),
            mode=dict(type="str", choices=["static", "live"], default="static"),
            timeout=dict(type="float", default=30),
            staged=dict(type="dict", options=dict(
                params=dict(type="dict", default={}),
                tables=dict(type="dict", default={}),
                merge=dict(type="list", elements="str", default=[]),
            )),
            fail_on_reject=dict(type="bool", default=False),
            return_routes=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    staged = params["staged"]
    if staged is not None and params["mode"] == "live":
        module.fail_json(msg="staged needs mode=static: live mode asks the running Postfix", changed=False)
    unchecked = []
    result = {}
    try:
        if params["mode"] == "live":
            routes = _route.live_routes(params["config_dir"], params["addresses"], timeout=params["timeout"])
        else:
            routes, router = _route.static_routes(params["config_dir"], params["addresses"], staged=staged)
            unchecked = router.unchecked
            if staged is not None:
                try:
                    before = _route.static_routes(params["config_dir"], params["addresses"])[0]
                except PostfixError:
                    before = {}     # nothing to compare with yet (e.g. no main.cf)
                changes = _route.route_changes(before, routes)
                result = dict(route_changes=changes, changed=bool(changes))
                if params["return_routes"]:
                    result["routes_before"] = before
                if module._diff and changes:
                    result["diff"] = dict(
                        before_header="routes (%s)" % params["config_dir"],
                        after_header="routes (staged)",
                        before="".join("%s: %s\n" % (a, changes[a]["before"]) for a in sorted(changes)),
                        after="".join("%s: %s\n" % (a, changes[a]["after"]) for a in sorted(changes)))
    except PostfixError as e:
        module.fail_json(msg=str(e), changed=False)
    result.setdefault("changed", False)
    result.update(routed=len(routes), domain_lists_not_checked=unchecked)
    if params["return_routes"]:
        result["routes"] = routes
    if params["fail_on_reject"]:
        problems = _route.problems(routes)
        if problems:
            which = " (staged)" if staged is not None else ""
            module.fail_json(msg="%d route problem(s)%s: %s" % (len(problems), which, "; ".join(problems)),
                             problems=problems, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
