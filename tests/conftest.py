"""Make the collection importable as ansible_collections.mailops.postfix from the checkout."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "mailops", "postfix")

if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    try:
        os.symlink(ROOT, LINK)
    except FileExistsError:  # another xdist worker made it first
        pass
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)

import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postfix_instance import PostfixInstance  # noqa: E402


@pytest.fixture
def conf(tmp_path):
    """A settled config dir: a main.cf dated back to the epoch (Postfix tools wait for a main.cf
    modified in the last seconds to settle before reading it) that references no table."""
    d = tmp_path / "etc"
    d.mkdir()
    (d / "main.cf").write_text("compatibility_level = 3.6\nmyhostname = mx.example.tld\n")
    os.utime(d / "main.cf", (1, 1))
    return str(d)


@pytest.fixture
def postfix_instance():
    """A real Postfix with its own config dir, queue, log and SMTP port (not started).

    Rooted outside pytest's 0700 tmp tree: Postfix daemons run as the postfix user and
    virtual(8) delivers as nobody, so every parent directory must be traversable.
    """
    root = tempfile.mkdtemp(prefix="mailops-postfix-")
    instance = PostfixInstance(root)
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_instance():
    """A started private PostgreSQL cluster (tests/postgres_instance.py): 127.0.0.1 on a free
    port, a login role owning a database (``dsn``, ``user``, ``password``, ``dbname``),
    ``psql(sql)`` as the superuser; stopped and removed after the test."""
    import postgres_instance as pgi
    if not pgi.available():
        pytest.skip("PostgreSQL server or root not available (scripts/install-system-deps.sh)")
    with pgi.postgres_cluster() as pg:
        yield pg


@pytest.fixture
def slapd_instance():
    """A started private OpenLDAP server (tests/slapd_instance.py): ``ldap://127.0.0.1:PORT``,
    suffix dc=example,dc=test, ``rootdn``/``rootpw`` write, ``postfix_dn``/``postfix_pw`` read;
    ``ldapadd(ldif)``, ``ldapmodify(ldif)``, ``ldapsearch(filter, *attrs)``; stopped by its PID
    and removed after the test."""
    import slapd_instance as sli
    if not sli.available():
        pytest.skip("slapd, ldap-utils or root not available (scripts/install-system-deps.sh)")
    with sli.slapd_server() as server:
        yield server
