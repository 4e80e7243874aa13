#!/usr/bin/env bash
# Run the Molecule scenarios (all of them, or those named as arguments) against real Postfix
# in local podman containers; print the time each took; exit non-zero if any failed.
#   scripts/molecule.sh [default lmdb debian13 rollout virtual_mailbox migrate fleet_sql]
# Test images are built from debootstrap on first use and cached in podman's storage
# (rebuilt when scripts/build-image.sh changes); MAILOPS_TEST_IMAGE_DEBIAN12 / _DEBIAN13 /
# _DEBIAN14 point the scenarios at images of your own.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../molecule/env.sh
. "$root/molecule/env.sh"
mailops_podman_collection || exit 1

if [ $# -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for f in molecule/*/molecule.yml; do scenarios+=("$(basename "$(dirname "$f")")"); done
fi

# Build (or find cached) images first so that scenario timings are comparable.
t0=$(date +%s)
for release in debian12 debian13 debian14 debian12-dovecot debian12-sql; do
  scripts/build-image.sh "$release" >/dev/null || exit 1
done
echo "molecule: images ready in $(( $(date +%s) - t0 )) s"

failed=()
summary=()
for s in "${scenarios[@]}"; do
  start=$(date +%s)
  echo "== molecule test -s $s"
  if molecule test -s "$s"; then status=passed; else status=FAILED; failed+=("$s"); fi
  summary+=("$(printf '%-16s %-7s %4d s' "$s" "$status" $(( $(date +%s) - start )))")
done
echo "== molecule summary (total $(( $(date +%s) - t0 )) s)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "molecule: failed: ${failed[*]}" >&2
  exit 1
fi
