# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server role's tasks run by ansible-playbook against a private Postfix instance
(tests/postfix_instance.py): the plays, the role's paths inside the instance, and what a run did."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The role's tasks without the service task (the instance is not the system's Postfix).
ROLE_TASKS_PLAYBOOK = """\
---
- name: The server role's tasks against a private Postfix instance
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The role but the service state
      ansible.builtin.import_role:
        name: mailops.postfix.server
        tasks_from: apply
"""


def entry_point_playbook(name):
    """A play of its own that runs the role's entry point ``name`` (a conditional import would put
    its condition on the role's handlers too)."""
    return """\
---
- name: The server role's %(name)s entry point
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Entry point %(name)s
      ansible.builtin.import_role:
        name: mailops.postfix.server
        tasks_from: %(name)s
""" % {"name": name}


VERIFY_PLAYBOOK = entry_point_playbook("verify")

TASK_RE = re.compile(r"(?:TASK|RUNNING HANDLER) \[(?:mailops\.postfix\.server : )?(.*)\] \**$")
RECAP_RE = re.compile(r"localhost\s+: ok=\d+\s+changed=(\d+)")

# rc; the whole output; the recap's changed count (None without a recap); the tasks that reported
# changed, and every task that ran, in order; the run's wall time.
Run = collections.namedtuple("Run", "rc out changed changed_tasks tasks seconds")


def role_paths(pf):
    """The role's file variables pointed into the instance's configuration directory."""
    conf = str(pf.config_dir)
    return dict(postfix_server_config_dir=conf, postfix_server_virtual_alias_map=conf + "/virtual",
                postfix_server_virtual_mailbox_map=conf + "/vmailbox-role",
                postfix_server_aliases_file=conf + "/aliases")


def run_playbooks(pf, variables, playbooks, *extra):
    """ansible-playbook on localhost with `variables` as extra vars and each playbook (text, or the
    path of a file) in turn."""
    (pf.root / "vars.json").write_text(json.dumps(variables))
    paths = []
    for i, play in enumerate(playbooks):
        if "\n" in play:
            path = pf.root / ("play%d.yml" % i)
            path.write_text(play)
            play = str(path)
        paths.append(play)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_RETRY_FILES_ENABLED="0")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", "@%s" % (pf.root / "vars.json")]
    started = time.monotonic()
    proc = subprocess.run(argv + paths + list(extra), env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    out = proc.stdout + proc.stderr
    tasks, changed_tasks, task = [], [], None
    for line in out.splitlines():
        m = TASK_RE.match(line)
        if m:
            task = m.group(1)
            tasks.append(task)
        elif line.startswith("changed:") and task not in changed_tasks:
            changed_tasks.append(task)
    recap = RECAP_RE.search(out)
    return Run(proc.returncode, out, int(recap.group(1)) if recap else None, changed_tasks, tasks, seconds)
