"""Offline stand-in for the get-pip script ansible-test downloads to bootstrap its venvs.

ansible-test runs ``python get_pip_X_Y.py [pip install options] pip==X.Y``. The host it
downloads from is not reachable on every machine, so this installs pip from the
interpreter's own ensurepip and then upgrades it to the requested version from the package
index that pip.conf names (the explicit --cert: the bootstrapped pip ignores pip.conf's).
"""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
cmd = [sys.executable, "-m", "pip", "install"]
if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
    cmd += ["--cert", "/etc/ssl/certs/ca-certificates.crt"]
sys.exit(subprocess.call(cmd + args))
