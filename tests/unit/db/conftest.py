"""Shared by the index-format tests: a config dir for real postmap."""

import os

import pytest


@pytest.fixture(scope="module")
def confdir(tmp_path_factory):
    """A config dir for postmap -c: SMTPUTF8 on (compatibility_level >= 1) as on Debian.

    main.cf is dated in the past: dict_load_file_xt() re-reads (with sleeps) a file whose
    mtime is too recent, which would cost every postmap run seconds.
    """
    d = tmp_path_factory.mktemp("conf")
    (d / "main.cf").write_text("compatibility_level = 3.6\nmyhostname = mx.example.test\n")
    os.utime(str(d / "main.cf"), (1000000000, 1000000000))
    return str(d)
