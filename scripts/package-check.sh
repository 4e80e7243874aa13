#!/usr/bin/env bash
# Build the collection tarball as users get it, check it carries no development files or
# caches, install it with ansible-galaxy into a fresh path and run ansible-doc for every module
# and the role's argument spec from that installed copy (not the source tree), so a file
# missing from the package fails here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"
work="$root/.build/package"
rm -rf "$work"
mkdir -p "$work/dist" "$work/collections"
"$bin/ansible-galaxy" collection build --output-path "$work/dist" "$root" >/dev/null
tarball=$(ls "$work"/dist/mailops-postfix-*.tar.gz)
listing=$(tar tzf "$tarball")
unwanted=$(echo "$listing" | grep -E '(^|/)(\.hypothesis|\.pytest_cache|__pycache__|\.venv|\.build|\.ci|bench|molecule|scripts|tests/output)(/|$)|\.pyc$|\.tar\.gz$' || true)
if [ -n "$unwanted" ]; then
  echo "package-check: the tarball carries development files:" >&2
  echo "$unwanted" | head -20 >&2
  exit 1
fi
for need in plugins/modules roles/server/meta/argument_specs.yml playbooks/site.yml meta/runtime.yml README.md; do
  grep -q "^$need" <<<"$listing" || { echo "package-check: $need missing from the tarball" >&2; exit 1; }
done
"$bin/ansible-galaxy" collection install --offline -p "$work/collections" "$tarball" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log" >&2; exit 1; }
installed="$work/collections/ansible_collections/mailops/postfix"
export ANSIBLE_COLLECTIONS_PATH="$work/collections"
cd "$work"
modules=0
for m in "$installed"/plugins/modules/*.py; do
  name=$(basename "$m" .py)
  out=$("$bin/ansible-doc" -t module "mailops.postfix.$name" 2>&1) || { echo "$out" >&2; exit 1; }
  doc_path=$(echo "$out" | grep -m1 -o "$installed[^ )]*" || true)
  [ -n "$doc_path" ] || { echo "package-check: ansible-doc did not read mailops.postfix.$name from the installed copy" >&2; exit 1; }
  modules=$((modules + 1))
done
"$bin/ansible-doc" -t role mailops.postfix.server >/dev/null 2>"$work/role-doc.log" \
  || { cat "$work/role-doc.log" >&2; exit 1; }
echo "package-check: $(grep -vc '/$' <<<"$listing") files, $(du -k "$tarball" | cut -f1) KiB; ansible-doc of $modules modules and the server role from the installed copy"
