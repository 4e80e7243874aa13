#!/usr/bin/env bash
# `make docs`: the collection's documentation site (modules, filters, the server role) as HTML
# in .build/docs/build/html, built with antsibull-docs and Sphinx from the pinned venv, offline.
#  1. antsibull-docs sphinx-init writes the Sphinx project (conf.py, rst/index.rst),
#  2. antsibull-docs collection turns the plugins' DOCUMENTATION into rst/ (--fail-on-error),
#  3. sphinx-build -W --keep-going makes the HTML: any warning (a broken O()/M()/:ref:) fails.
# Sphinx would download the Python/Jinja/Ansible inventories for intersphinx; instead conf.py
# gets one small local inventory holding the few Ansible docsite labels the generated pages
# link to (Return Values, configuration settings), so links still point at docs.ansible.com
# and nothing is fetched. Documents this checkout (.build/collections); DOCS_COLLECTIONS_PATH=DIR
# documents a copy installed under DIR instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.venv/bin:$PATH"
if [ -n "${DOCS_COLLECTIONS_PATH:-}" ]; then
  export ANSIBLE_COLLECTIONS_PATH="$DOCS_COLLECTIONS_PATH"
else
  mkdir -p "$root/.build/collections/ansible_collections/mailops"
  [ -L "$root/.build/collections/ansible_collections/mailops/postfix" ] ||
    ln -sfn "$root" "$root/.build/collections/ansible_collections/mailops/postfix"
  export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"
fi
site="$root/.build/docs"
rm -rf "$site"
# antsibull-docs refuses a destination others can write to.
mkdir -p -m 755 "$site"
chmod 755 "$site"
cd "$site"

antsibull-docs sphinx-init --use-current --fail-on-error --dest-dir "$site" \
  --project mailops.postfix --copyright "mailops.postfix maintainers" \
  --title "mailops.postfix documentation" mailops.postfix >/dev/null

# The local inventory (Sphinx inventory v2: a header, then zlib-compressed
# "name domain:role priority uri display-name" lines) replaces the generated mapping.
python - "$site/ansible_devel.inv" <<'PY'
import sys, zlib
labels = [
    ("common_return_values", "reference_appendices/common_return_values.html", "Return Values"),
    ("ansible_configuration_settings", "reference_appendices/config.html",
     "Ansible Configuration Settings"),
]
body = "".join("%s std:label -1 %s %s\n" % entry for entry in labels)
with open(sys.argv[1], "wb") as f:
    f.write(b"# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n"
            b"# The remainder of this file is compressed using zlib.\n")
    f.write(zlib.compress(body.encode()))
PY
cat >>conf.py <<'EOF'

# scripts/docs.sh: offline build, no inventory downloaded; see ansible_devel.inv.
intersphinx_mapping = {
    # The path is relative to the source directory (rst/), as in the generated mapping.
    'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/', '../ansible_devel.inv'),
}
EOF

mkdir -p rst
chmod 755 rst
start=$SECONDS
antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything --fail-on-error \
  --use-current --dest-dir rst mailops.postfix >rst.log 2>&1 || { cat rst.log >&2; exit 1; }
sphinx-build -M html rst build -c . -W --keep-going -q
pages=$(find build/html/collections -name '*.html' | wc -l)
echo "docs: $pages pages in $site/build/html (index.html) in $((SECONDS - start)) s"
