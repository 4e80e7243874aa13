#!/usr/bin/env bash
# Build the collection tarball as users get it, check it carries no development files or
# caches, install it with ansible-galaxy into a fresh path and, from that installed copy (not
# the source tree), so a file missing from the package fails here:
#  - ansible-doc for every module and the role's argument spec,
#  - antsibull-docs lint-collection-docs --plugin-docs (the docs site's markup and references),
#  - bindep.txt and meta/execution-environment.yml as ansible-builder reads them: nothing for
#    the controller image, the role's package lists for targets; `ansible-builder create` of
#    the execution environment definition README.md shows,
#  - the demo (scripts/demo.sh): `ansible-playbook mailops.postfix.site` applied to a local
#    container and two mails delivered over SMTP, with the installed copy as the only
#    mailops.postfix on ANSIBLE_COLLECTIONS_PATH (about 30 s with the test image built).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"
work="$root/.build/package"
t=$SECONDS
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
for need in plugins/modules roles/server/meta/argument_specs.yml playbooks/site.yml playbooks/examples/inventory \
  meta/runtime.yml meta/execution-environment.yml bindep.txt README.md; do
  grep -q "^$need" <<<"$listing" || { echo "package-check: $need missing from the tarball" >&2; exit 1; }
done
# Only the fresh path is searched (a copy installed elsewhere, e.g. ~/.ansible/collections,
# would make ansible-galaxy report "already installed" and install nothing), and --force
# installs even so.
export ANSIBLE_COLLECTIONS_PATH="$work/collections"
"$bin/ansible-galaxy" collection install --offline --force -p "$work/collections" "$tarball" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log" >&2; exit 1; }
installed="$work/collections/ansible_collections/mailops/postfix"
[ -d "$installed/plugins/modules" ] || { cat "$work/install.log" >&2; echo "package-check: nothing installed in $installed" >&2; exit 1; }
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
echo "package-check: $(grep -vc '/$' <<<"$listing") files, $(du -k "$tarball" | cut -f1) KiB; ansible-doc of $modules modules and the server role from the installed copy ($((SECONDS - t)) s)"
t=$SECONDS

# antsibull-docs runs `ansible-doc` from PATH.
export PATH="$bin:$PATH"
"$bin/antsibull-docs" lint-collection-docs --plugin-docs "$installed" >"$work/docs-lint.log" 2>&1 \
  || { echo "package-check: antsibull-docs lint-collection-docs --plugin-docs:" >&2; cat "$work/docs-lint.log" >&2; exit 1; }
echo "package-check: antsibull-docs lint-collection-docs --plugin-docs clean ($((SECONDS - t)) s)"
t=$SECONDS

# What ansible-builder takes from the collection (introspect reads meta/execution-environment.yml),
# and what bindep then selects: the builder runs `bindep -l newline` (default profile), so an
# execution environment gets no package from us; the `target` and `pcre` profiles list what the
# role installs on targets (roles/server/vars/), for each platform family.
"$bin/ansible-builder" introspect --sanitize --write-bindep "$work/ee-bindep.txt" "$work/collections" >"$work/introspect.log" 2>&1 \
  || { cat "$work/introspect.log" >&2; exit 1; }
"$bin/python" - "$installed" "$work/ee-bindep.txt" <<'PY'
import os, sys
import yaml
from bindep.depends import Depends

installed, ee_bindep = sys.argv[1:]
with open(os.path.join(installed, "bindep.txt")) as f:
    ours = Depends(f.read())
with open(ee_bindep) as f:
    lines = [line for line in f.read().splitlines() if "# from collection mailops.postfix" in line]
if not lines:
    sys.exit("package-check: ansible-builder introspect found no bindep.txt lines of mailops.postfix")
ee = Depends("\n".join(lines) + "\n")


def role_vars(name):
    with open(os.path.join(installed, "roles/server/vars", name)) as f:
        return yaml.safe_load(f)


families = {
    "dpkg": (["platform:dpkg", "platform:debian"], ["Debian.yml"]),
    "rpm": (["platform:rpm", "platform:redhat"], ["RedHat.yml", "RedHat-10.yml"]),
}
problems = []
for family, (platform, var_files) in families.items():
    default = [r[0] for r in ee.active_rules(platform + ["default"])]
    if default:
        problems.append("%s: an execution environment would install %s" % (family, default))
    target = sorted(r[0] for r in ours.active_rules(platform + ["target"]))
    pcre = sorted(r[0] for r in ours.active_rules(platform + ["pcre"]))
    for name in var_files:
        v = role_vars(name)
        want = sorted(["python3"] + v["__postfix_server_packages"] + v["__postfix_server_lmdb_packages"])
        if target != want:
            problems.append("%s: bindep target %s, roles/server/vars/%s %s" % (family, target, name, want))
        want = sorted(v["__postfix_server_type_packages"]["pcre"])
        if pcre != want:
            problems.append("%s: bindep pcre %s, roles/server/vars/%s %s" % (family, pcre, name, want))
if problems:
    sys.exit("package-check: bindep.txt:\n  " + "\n  ".join(problems))
PY
# The user's side: the version 3 definition README.md shows, from the installed README.
ee_dir="$work/ee"
mkdir -p "$ee_dir"
sed -n '/^# execution-environment.yml/,/^```/p' "$installed/README.md" | sed '$d' >"$ee_dir/execution-environment.yml"
grep -q '^version: 3' "$ee_dir/execution-environment.yml" \
  || { echo "package-check: no execution-environment.yml (version: 3) block in README.md" >&2; exit 1; }
"$bin/ansible-builder" create -f "$ee_dir/execution-environment.yml" -c "$ee_dir/context" >"$work/builder.log" 2>&1 \
  || { cat "$work/builder.log" >&2; exit 1; }
[ -f "$ee_dir/context/Containerfile" ] || { echo "package-check: ansible-builder create wrote no Containerfile" >&2; exit 1; }
echo "package-check: bindep.txt gives an execution environment no package and targets the role's; ansible-builder create of README's definition ($((SECONDS - t)) s)"
t=$SECONDS

# The demo from the installed copy, in its own container (a kept `make demo` one is left alone).
DEMO_COLLECTIONS_PATH="$work/collections" DEMO_CONTAINER=mailops-package-mx1 "$root/scripts/demo.sh" >"$work/demo.log" 2>&1 \
  || { echo "package-check: the demo from the installed copy failed; $work/demo.log:" >&2; tail -40 "$work/demo.log" >&2; exit 1; }
grep -q "^demo: mailops.postfix .* from $installed\$" "$work/demo.log" \
  || { echo "package-check: the demo did not run from $installed" >&2; exit 1; }
echo "package-check: demo from the installed copy: mail delivered to $(grep -o '^  /var/mail/[^ ]*' "$work/demo.log" | sort -u | wc -l) mailboxes ($((SECONDS - t)) s, $work/demo.log)"
