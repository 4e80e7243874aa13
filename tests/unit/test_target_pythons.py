"""Module code compiles and its engines import on every target Python 3.8+ on the machine.

ansible-test sanity covers the Pythons its release supports (3.9+ for ansible-core 2.20+);
this covers the rest of the range the collection promises, with the real interpreters.
"""

import glob
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")


def _pythons():
    out = subprocess.run([os.path.join(ROOT, "scripts", "find-pythons.sh")], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


PYTHONS = _pythons()
SOURCES = sorted(glob.glob(os.path.join(ROOT, "plugins", "**", "*.py"), recursive=True))


def _engine_name(path):
    return "ansible_collections.mailops.postfix." + os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").replace(
        ".__init__", "")


def _needs_ansible(path):
    with open(path) as f:
        return "from ansible.module_utils" in f.read()


# Engines are standard library only; the few module_utils that drive AnsibleModule are
# imported by ansible-test's own import test on the Pythons it supports.
MODULE_UTILS = glob.glob(os.path.join(ROOT, "plugins", "module_utils", "**", "*.py"), recursive=True)
ENGINES = sorted(_engine_name(p) for p in MODULE_UTILS if not _needs_ansible(p))


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"])
def test_compiles_and_engines_import(version):
    if version not in PYTHONS:
        pytest.skip("no Python %s interpreter on this machine" % version)
    python = PYTHONS[version]
    code = (
        "import sys, importlib\n"
        "sys.path.insert(0, %r)\n"
        "for src in %r:\n"
        "    with open(src, 'rb') as f:\n"
        "        compile(f.read(), src, 'exec', dont_inherit=True)\n"
        "for name in %r:\n"
        "    importlib.import_module(name)\n"
    ) % (COLLECTIONS, SOURCES, ENGINES)
    proc = subprocess.run([python, "-I", "-B", "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
