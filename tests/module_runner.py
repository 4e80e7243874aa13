"""Run a collection module in-process, the way Ansible would, and return its result dict."""

from __future__ import annotations

import importlib
import io
import json
from contextlib import redirect_stdout
from unittest import mock

from ansible.module_utils import _internal
from ansible.module_utils.common import warnings as _warnings
from ansible.module_utils.testing import patch_module_args


class ModuleFailed(Exception):
    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


def run_module(name: str, args: dict, check_mode: bool = False, diff: bool = True, fail_ok: bool = False) -> dict:
    """Run ``mailops.postfix.<name>`` with ``args``; raise ModuleFailed on fail_json unless fail_ok."""
    module = importlib.import_module("ansible_collections.mailops.postfix.plugins.modules." + name)
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    out = io.StringIO()
    # A module process starts with no warnings; in this process ansible-core keeps them in a
    # module-level list that would carry those of earlier runs into this result.
    _warnings._global_warnings.clear()  # pylint: disable=protected-access
    _warnings._global_deprecations.clear()  # pylint: disable=protected-access
    # A module runs on the target: once anything in this process imported controller code
    # (ansible.errors, a filter plugin), warn() would go to the controller's display instead
    # of the module result.
    with patch_module_args(args), redirect_stdout(out), mock.patch.object(_internal, "is_controller", False):
        try:
            module.main()
        except SystemExit:
            pass
    text = out.getvalue()
    try:
        result = json.loads(text[text.index("{"):])
    except ValueError:
        raise AssertionError("module %s printed no JSON result: %r" % (name, text))
    if result.get("failed") and not fail_ok:
        raise ModuleFailed(result)
    return result
