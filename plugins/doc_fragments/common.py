# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """Options and attributes several modules share."""

    # mailops.postfix.common.config_dir
    CONFIG_DIR = r"""
options:
  config_dir:
    description:
      - The Postfix configuration directory holding main.cf.
    type: path
    default: /etc/postfix
"""

    # mailops.postfix.common.lock_timeout: the modules that write a file under its lock
    LOCK_TIMEOUT = r"""
options:
  lock_timeout:
    description:
      - How many seconds to wait for another run that is changing the same file (main.cf, or a
        table or aliases source and its index) before failing.
      - Runs on one host take turns through a lock file beside that file (C(.virtual.lock) for
        C(/etc/postfix/virtual)), held from the read of the file until it (and a table's index)
        is replaced. When the time is up the task fails, naming the lock file and the pid of the
        process holding it, and changes nothing.
      - V(0) does not wait; at most V(86400) (a day). Check mode and reading an index take no lock.
    type: float
    default: 60
"""

    # mailops.postfix.common.table_source: lookup_table and aliases
    TABLE_SOURCE = r"""
options:
  state:
    description:
      - V(present) sets each entry to its value; V(absent) removes each one.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - Remove every entry not in O(entries). Comments and blank lines stay.
      - Only with O(state=present).
    type: bool
    default: false
  compile:
    description:
      - Compile the index after editing, when it is stale (missing, older than the source, or
        with other records than the source compiles to).
      - Set V(false) when a handler compiles it.
    type: bool
    default: true
  type:
    description:
      - The table type to compile. Default is the type main.cf uses for O(path), else main.cf's
        C(default_database_type), else C(hash).
    type: str
    choices: [hash, cdb, lmdb]
  backup:
    description:
      - Keep a timestamped copy of the source before changing it.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports the entries and the index that would change, writing nothing.
  diff_mode:
    support: full
    description: Shows the source lines before and after.
"""

    # Attributes. ansible-doc merges a module's own attributes over a fragment's key by key
    # (ansible.utils.plugin_docs.merge_fragment): a module states only what differs, e.g. its
    # own diff_mode description, and keeps the fragment's support level.

    # mailops.postfix.common.attributes: modules that edit a text file (main.cf, master.cf)
    ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: Reports what would change, with the diff, writing nothing.
  diff_mode:
    support: full
    description: The whole file before and after.
"""

    # mailops.postfix.common.read_only: modules that only read
    READ_ONLY = r"""
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
"""

    # mailops.postfix.common.platform: pure Python; uses the Postfix binaries when present
    PLATFORM = r"""
attributes:
  platform:
    platforms: posix
    support: full
    description: Targets with Python 3.8 or later; the Postfix binaries are optional.
"""

    # mailops.postfix.common.platform_lmdb: modules that read or write indexed tables
    PLATFORM_LMDB = r"""
attributes:
  platform:
    platforms: posix
    support: full
    description: Targets with Python 3.8 or later. C(lmdb) tables need the Python C(lmdb) binding (Debian package python3-lmdb).
"""
