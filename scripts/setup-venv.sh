#!/usr/bin/env bash
# Create .venv with the newest Python this machine has (ansible-core 2.20+ needs >= 3.12;
# with only 3.11 the pins fall back to ansible-core 2.19) and install the pinned tools.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
py=$("$root/scripts/find-pythons.sh" | awk '$1 != "3.14" {p=$2} END {print p}')
if [ -z "$py" ]; then
  echo "setup-venv: no usable python3 (3.11+) with venv/ensurepip found; on Debian: apt-get install python3-venv" >&2
  exit 1
fi
want=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -x "$venv/bin/python" ] && [ "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$want" ]; then
  rm -rf "$venv"
fi
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/requirements/dev.txt"
touch "$venv/.stamp"
echo "venv: $("$venv/bin/python" --version) with $("$venv/bin/ansible" --version | head -1)"
