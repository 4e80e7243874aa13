#!/usr/bin/env bash
# Install the Debian packages the tests use: real Postfix (the oracle), its cdb and lmdb
# map plugins (pcre too), libdb tools (db_verify/db_dump), the lmdb binding, and podman/debootstrap
# for Molecule. Idempotent; does nothing when everything is present.
set -euo pipefail
pkgs=(python3-venv postfix postfix-lmdb postfix-cdb postfix-pcre db-util python3-lmdb podman runc debootstrap
      iproute2 uidmap fuse-overlayfs slirp4netns rsync make catatonit
      postgresql postfix-pgsql postfix-sqlite sqlite3 postfix-ldap postfix-mysql python3-psycopg2
      slapd ldap-utils)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
echo "postfix postfix/mailname string $(hostname -f 2>/dev/null || hostname)" | debconf-set-selections
# slapd: no system database (tests start private servers, tests/slapd_instance.py); never leave
# the system slapd running.
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if printf '%s\n' "${missing[@]}" | grep -qx slapd; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now slapd >/dev/null 2>&1 || true
  else
    service slapd stop >/dev/null 2>&1 || true
    update-rc.d slapd disable >/dev/null 2>&1 || true
  fi
fi
