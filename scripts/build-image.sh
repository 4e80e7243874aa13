#!/usr/bin/env bash
# Build, or reuse, the local container image that Molecule and `make demo` run Postfix in.
#
#   scripts/build-image.sh [debian12|debian13|debian14]  prints the image name on stdout
#   scripts/build-image.sh debian12-dovecot         the same plus Dovecot (LMTP delivery tests)
#   scripts/build-image.sh debian12-sql             the same plus PostgreSQL and postfix-pgsql
#
# No registry is needed: the root file system comes from debootstrap, is imported into
# podman's own storage and gets Postfix (postfix-lmdb, postfix-cdb), Python and the lmdb and
# apt bindings. The image carries a label with the hash of this script; it is rebuilt only
# when this script changes (or with REBUILD=1). To use an image of your own instead, set
# MAILOPS_TEST_IMAGE (all releases) or MAILOPS_TEST_IMAGE_DEBIAN12 / _DEBIAN13 / _DEBIAN14;
# it must contain python3, python3-apt and Postfix with its lmdb and cdb map plugins,
# because the test networks have no route to a package mirror. debian14 is Debian "forky"
# (testing: Postfix 3.11 today), so its image follows whatever testing carries when built.
#
# RELEASE-dovecot is one more layer on the RELEASE image (built first if needed): Debian's
# dovecot-core and dovecot-lmtpd, installed by apt from the mirror at build time, left
# unconfigured and stopped (the virtual_mailbox scenario's prepare configures and starts
# Dovecot). It is rebuilt when this script or the RELEASE image changes; use an image of
# your own with MAILOPS_TEST_IMAGE_DEBIAN12_DOVECOT (MAILOPS_TEST_IMAGE does not apply).
#
# RELEASE-sql is the same kind of layer with Debian's postgresql (15 on bookworm),
# postfix-pgsql and python3-psycopg2 (the fleet_sql scenario: one database host, mail hosts
# reading it through proxy:pgsql:). apt's maintainer scripts create the cluster 15/main;
# it is stopped and marked "manual" in start.conf, so nothing starts it at boot (the
# scenario's prepare configures and starts it). MAILOPS_TEST_IMAGE_DEBIAN12_SQL replaces it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../molecule/env.sh
. "$root/molecule/env.sh"

release=${1:-debian12}
variant=
case $release in
  *-dovecot) variant=dovecot; base_release=${release%-dovecot} ;;
  *-sql) variant=sql; base_release=${release%-sql} ;;
  *) base_release=$release ;;
esac
script=
apt_update='apt-get update -qq'
case $base_release in
  debian12) suite=bookworm ;;
  debian13) suite=trixie ;;
  # Debian 14 is "testing" today (Postfix 3.11). debootstrap of Debian 12 has no script named
  # forky: its sid script (the one trixie links to) bootstraps any suite of that layout.
  # Testing's Release files are valid for a week only, a snapshot mirror's soon expire:
  # accept them for this one build (the image never reaches a mirror afterwards).
  debian14) suite=forky; script=sid
            apt_update='apt-get -o Acquire::Check-Valid-Until=false update -qq' ;;
  *) echo "build-image: unknown release '$release' (debian12, debian13, debian14, debian12-dovecot, debian12-sql)" >&2; exit 2 ;;
esac
override_var="MAILOPS_TEST_IMAGE_${release^^}"
override_var=${override_var//-/_}
if [ -n "$variant" ]; then
  override=${!override_var:-}
else
  override=${!override_var:-${MAILOPS_TEST_IMAGE:-}}
fi
if [ -n "$override" ]; then
  echo "$override"
  exit 0
fi

image="localhost/mailops-postfix-test:$release"
stamp=$(sha256sum "$0" | cut -c1-16)

if [ -n "$variant" ]; then
  # The variant always layers on the local RELEASE image (built or reused first).
  base=$(MAILOPS_TEST_IMAGE='' "$0" "$base_release")
  base_id=$(podman image inspect --format '{{ .Id }}' "$base")
  if [ "${REBUILD:-0}" != 1 ] && podman image exists "$image" &&
     [ "$(podman image inspect --format '{{ index .Labels "mailops.build" }}/{{ index .Labels "mailops.base" }}' "$image")" = "$stamp/$base_id" ]; then
    echo "$image"
    exit 0
  fi
  start=$(date +%s)
  work=$(mktemp -d /var/tmp/mailops-image.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  # The maintainer scripts find no running init in the build and start nothing; for the
  # sql variant a policy-rc.d (invoke-rc.d(8): exit 101 = action forbidden) makes sure of it.
  case $variant in
    dovecot) packages='dovecot-core dovecot-lmtpd'; what=Dovecot; pre=true; post=true ;;
    sql) packages='postgresql postfix-pgsql python3-psycopg2'; what='PostgreSQL and postfix-pgsql'
         pre='printf "#!/bin/sh\\nexit 101\\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
         # start.conf(5) of postgresql-common: "manual" = pg_ctlcluster only, never at boot.
         post='rm -f /usr/sbin/policy-rc.d && for c in /etc/postgresql/*/main; do echo manual >"$c/start.conf"; done' ;;
  esac
  cat >"$work/Containerfile" <<CONTAINERFILE
FROM $base
RUN $pre \\
 && apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      $packages \\
 && $post \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
LABEL mailops.build=$stamp mailops.base=$base_id
CMD ["sleep", "infinity"]
CONTAINERFILE
  echo "build-image: installing $what into $image" >&2
  podman build --quiet --network host --tag "$image" --file "$work/Containerfile" "$work" >/dev/null
  echo "build-image: $image built in $(( $(date +%s) - start )) s" >&2
  echo "$image"
  exit 0
fi
if [ "${REBUILD:-0}" != 1 ] && podman image exists "$image" &&
   [ "$(podman image inspect --format '{{ index .Labels "mailops.build" }}' "$image")" = "$stamp" ]; then
  echo "$image"
  exit 0
fi

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The Debian mirror this machine uses (deb822 or one-line sources), else the CDN.
  mirror=$(grep -hoE '(URIs:|^deb) *https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null |
           grep -oE 'https?://[^ ]+' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

start=$(date +%s)
work=$(mktemp -d /var/tmp/mailops-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "build-image: debootstrap $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" ${script:+"$script"} >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2; exit 1; }
tar -C "$work/rootfs" -c . | podman import --quiet - "$image-base" >/dev/null

# "Local only" leaves Postfix listening on loopback: the role's inventory has to open it
# (inet_interfaces = all), which exercises the restart path on the first converge.
cat >"$work/Containerfile" <<EOF
FROM $image-base
RUN echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections \\
 && echo "postfix postfix/mailname string localhost" | debconf-set-selections \\
 && $apt_update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      postfix postfix-lmdb postfix-cdb python3 python3-apt python3-lmdb procps ssl-cert \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
LABEL mailops.build=$stamp
CMD ["sleep", "infinity"]
EOF
echo "build-image: installing Postfix into $image" >&2
podman build --quiet --network host --tag "$image" --file "$work/Containerfile" "$work" >/dev/null
podman rmi "$image-base" >/dev/null
echo "build-image: $image built in $(( $(date +%s) - start )) s" >&2
echo "$image"
