# Sourced by scripts/molecule.sh, scripts/demo.sh and scripts/build-image.sh: the environment
# the test containers and Molecule need. Expects $root (the collection checkout).
# shellcheck shell=bash
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/molecule/containers.conf}"
# Scenarios live in molecule/ (not extensions/molecule/): say so, which also silences
# Molecule's "should migrate" notice for collections.
export MOLECULE_GLOB="${MOLECULE_GLOB:-molecule/*/molecule.yml}"
# This checkout as mailops.postfix, plus containers.podman for the podman driver.
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections:$root/.build/molecule/collections"
export PATH="$root/.venv/bin:$PATH"
mkdir -p "$root/.build/collections/ansible_collections/mailops"
[ -L "$root/.build/collections/ansible_collections/mailops/postfix" ] ||
  ln -sfn "$root" "$root/.build/collections/ansible_collections/mailops/postfix"

# containers.podman, unpacked from the pinned `ansible` wheel (requirements/molecule.txt):
# Galaxy may be unreachable, PyPI is enough. Done once; redone when the pin changes.
mailops_podman_collection() {
  local dest="$root/.build/molecule/collections" stamp want
  want=$(sha256sum "$root/requirements/molecule.txt" | cut -c1-16)
  stamp="$dest/.stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
     [ -f "$dest/ansible_collections/containers/podman/MANIFEST.json" ]; then
    return 0
  fi
  local wheels="$root/.build/molecule/wheels"
  rm -rf "$dest" "$wheels"; mkdir -p "$dest" "$wheels"
  "$root/.venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --require-hashes -r "$root/requirements/molecule.txt" -d "$wheels"
  "$root/.venv/bin/python" - "$wheels" "$dest" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/ansible-*.whl")[0]
prefix = "ansible_collections/containers/podman/"
with zipfile.ZipFile(wheel) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith(prefix)])
PY
  rm -rf "$wheels"
  echo "$want" >"$stamp"
}
