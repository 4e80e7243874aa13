#!/usr/bin/env bash
# Print "VERSION PATH" for every working CPython 3.8-3.14 interpreter on this machine, one
# line each, newest last. pyenv shims are skipped: they answer "command not found" outside
# a pyenv-selected directory, so we look at the real binaries behind them.
set -u
declare -A seen=()
for minor in 8 9 10 11 12 13 14; do
  v="3.$minor"
  for cand in /usr/bin/python$v /usr/local/bin/python$v "$HOME"/.pyenv/versions/$v*/bin/python$v \
              /opt/python*/bin/python$v; do
    [ -x "$cand" ] || continue
    [ -n "${seen[$v]:-}" ] && continue
    if "$cand" -c 'import sys, ensurepip, venv; sys.exit(0 if sys.version_info[:2] == tuple(map(int, sys.argv[1].split("."))) else 1)' "$v" >/dev/null 2>&1; then
      seen[$v]=1
      echo "$v $(readlink -f "$cand")"
    fi
  done
done
