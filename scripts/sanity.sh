#!/usr/bin/env bash
# Run `ansible-test sanity` without Docker: copy the collection into an
# ansible_collections/mailops/postfix tree, run the full sanity suite on the controller
# Python and the compile/import tests on every other target Python this machine has.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
tree="$root/.build/sanity/ansible_collections/mailops/postfix"
pybin="$root/.build/pybin"

# ansible-test asks for a get-pip script from a host that may be unreachable; give it the
# offline stand-in under every pip version name it may ask for.
pipver=$("$venv/bin/python" - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
mkdir -p "$HOME/.ansible/test/cache"
cp "$root/scripts/get_pip_standin.py" "$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"

# Real interpreters (not pyenv shims) under their versioned names.
rm -rf "$pybin"; mkdir -p "$pybin"
supported=$("$venv/bin/python" -c 'from ansible_test._util.target.common.constants import REMOTE_ONLY_PYTHON_VERSIONS as r, CONTROLLER_PYTHON_VERSIONS as c; print(" ".join(r + c))')
controller=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
targets=()
while read -r ver path; do
  ln -sf "$path" "$pybin/python$ver"
  case " $supported " in *" $ver "*) targets+=("$ver");; esac
done < <("$root/scripts/find-pythons.sh")
export PATH="$pybin:$venv/bin:$PATH"

rm -rf "$tree"; mkdir -p "$tree"
(cd "$root" && git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$tree/")
cd "$tree"
git init -q . && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity

echo "== ansible-test sanity (controller Python $controller)"
ansible-test sanity --venv --python "$controller" --color no
for v in "${targets[@]}"; do
  [ "$v" = "$controller" ] && continue
  echo "== ansible-test sanity compile/import (target Python $v)"
  ansible-test sanity --venv --python "$v" --test compile --test import --color no
done
