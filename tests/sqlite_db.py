# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A sqlite3 alias database for sqlite: client files (sqlite_table(5)): no server to start."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def alias_database(path, rows) -> str:
    """A file at ``path`` with a two-column ``virtual`` table (source, destination) holding
    ``rows`` (pairs); skips the test when the sqlite3 tool is missing. Returns the path."""
    if not shutil.which("sqlite3"):
        pytest.skip("sqlite3 not installed")
    values = ", ".join("('%s', '%s')" % pair for pair in rows)
    subprocess.run(["sqlite3", str(path)], check=True, text=True, input=(
        "CREATE TABLE virtual (source TEXT PRIMARY KEY, destination TEXT NOT NULL);\n"
        "INSERT INTO virtual VALUES %s;\n" % values))
    return str(path)
