# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one of the collection's playbooks against localhost and a private Postfix instance."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run_playbook(pf, name, *extra):
    """Run playbooks/<name>.yml against localhost and this instance; return (rc, stdout)."""
    root = ROOT
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(root, ".build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", "ansible_become=false",
            "-e", "config_dir=%s" % pf.config_dir, os.path.join(root, "playbooks", name + ".yml")] + list(extra)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr
