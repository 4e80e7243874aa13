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

# Every container and network a scenario creates is labelled with this run
# (mailops.postfix.run=<boot id>:<pid>:<start time> of this script; molecule/shared/create.yml).
# A run stopped before its destroy step leaves them behind, and their instance names would make
# the next scenario that uses the same names refuse to start; so those of a run that is gone are
# removed first. A live run's, and those made by `molecule` by hand (no run label), are left alone.
proc_start() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
boot_id=$(cut -c1-8 /proc/sys/kernel/random/boot_id)
export MAILOPS_MOLECULE_RUN="$boot_id:$$:$(proc_start $$)"
run_gone() {
  local boot pid start
  IFS=: read -r boot pid start <<<"$1"
  [ "$boot" != "$boot_id" ] || [ "$(proc_start "$pid")" != "$start" ]
}
while read -r name run; do
  if [ -n "$run" ] && run_gone "$run"; then
    podman rm -f -t 1 "$name" </dev/null >/dev/null && echo "molecule: removed container $name, left by run $run"
  fi
done < <(podman ps -a --filter label=mailops.postfix.molecule \
           --format '{{.Names}} {{index .Labels "mailops.postfix.run"}}')
for net in $(podman network ls -q --filter label=mailops.postfix.molecule); do
  run=$(podman network inspect --format '{{index .Labels "mailops.postfix.run"}}' "$net")
  if [ -n "$run" ] && run_gone "$run"; then
    podman network rm "$net" >/dev/null && echo "molecule: removed network $net, left by run $run"
  fi
done

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
