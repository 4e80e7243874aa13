"""The modules as Ansible ships them: packaged with their module_utils (AnsiballZ) and run
by the target's own interpreter (Debian's /usr/bin/python3 with python3-lmdb), not in-process.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TARGET_PYTHON = "/usr/bin/python3"


def ansible(module, args, check=False):
    """Run one module on localhost through ansible; return its result dict."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % TARGET_PYTHON, "-m", "mailops.postfix." + module,
            "-a", json.dumps(args)] + (["--check"] if check else [])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    # The ad-hoc output is "localhost | CHANGED => {json}".
    body = proc.stdout.partition(" => ")[2]
    try:
        return json.loads(body)
    except ValueError:
        raise AssertionError("ansible printed no result: %s%s" % (proc.stdout, proc.stderr))


@pytest.mark.parametrize("type_name", ["hash", "cdb", "lmdb"])
def test_table_modules_run_as_shipped(postfix_instance, type_name):
    conf = str(postfix_instance.config_dir)
    src = os.path.join(conf, "virtual")
    result = ansible("lookup_table", dict(path=src, config_dir=conf, type=type_name,
                                          entries={"support@x.tld": ["a@mbox.test", "b@mbox.test"]}))
    assert result.get("failed") is not True, result
    assert result["changed"] and result["compiled"]
    real = subprocess.run(["postmap", "-c", conf, "-q", "support@x.tld", "%s:%s" % (type_name, src)],
                          capture_output=True, text=True, check=True)
    assert real.stdout == "a@mbox.test, b@mbox.test\n"
    query = ansible("postmap", dict(path=src, config_dir=conf, type=type_name, query=["SUPPORT@x.tld"]))
    assert query["lookups"] == {"SUPPORT@x.tld": "a@mbox.test, b@mbox.test"}


def test_info_and_reload_run_as_shipped_with_debian_cache_tables(postfix_instance):
    """Debian's main.cf names a TLS session cache that only exists once Postfix made it:
    neither a stale table for the facts nor a reason to refuse a reload."""
    pf = postfix_instance
    pf.write_main(smtp_tls_session_cache_database="btree:${data_directory}/smtp_scache")
    info = ansible("postfix_info", dict(config_dir=str(pf.config_dir)))
    assert info.get("failed") is not True, info
    cache = [t for t in info["tables"] if t["path"].endswith("smtp_scache")]
    assert cache and cache[0]["cache"] is True and info["stale_tables"] == []
    pf.start()
    pid = pf.master_pid()
    result = ansible("reload", dict(config_dir=str(pf.config_dir)))
    assert result.get("failed") is not True, result
    assert result["changed"] and result["pid"] == pid
    pf.wait_for_log("reload -- version")
