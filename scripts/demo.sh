#!/usr/bin/env bash
# `make demo`: the collection's main job on a throw-away local container.
#  1. builds (or reuses) a Debian 12 image with Postfix (scripts/build-image.sh),
#  2. starts it as mx1.example.tld, with no network but its own loopback,
#  3. applies `ansible-playbook mailops.postfix.site` with playbooks/examples/inventory,
#  4. asks the compiled maps where support@example.tld and info@example.org go (postmap module),
#  5. sends a mail to support@example.tld (two local accounts) and one to info@example.org (an
#     alias of erin's virtual mailbox) over SMTP and prints where they were delivered.
# The container is removed at the end; DEMO_KEEP=1 keeps it for a look around
# (podman exec -it mailops-demo-mx1 bash), `scripts/demo.sh clean` removes it later.
# DEMO_COLLECTIONS_PATH=DIR runs the demo from a copy installed with `ansible-galaxy collection
# install -p DIR` (playbook, role, modules and example inventory), not from this checkout;
# scripts/package-check.sh does that with the tarball it built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../molecule/env.sh
. "$root/molecule/env.sh"
mailops_podman_collection
examples="$root/playbooks/examples"
if [ -n "${DEMO_COLLECTIONS_PATH:-}" ]; then
  installed="$DEMO_COLLECTIONS_PATH/ansible_collections/mailops/postfix"
  [ -f "$installed/MANIFEST.json" ] ||
    { echo "demo: no installed mailops.postfix (MANIFEST.json) under $DEMO_COLLECTIONS_PATH" >&2; exit 1; }
  # Only the installed copy and containers.podman: the checkout's symlink is not on the path.
  export ANSIBLE_COLLECTIONS_PATH="$DEMO_COLLECTIONS_PATH:$root/.build/molecule/collections"
  examples="$installed/playbooks/examples"
  # ansible-galaxy prints one "# <path>/ansible_collections" header per copy it finds.
  found=$(ansible-galaxy collection list mailops.postfix 2>/dev/null | sed -n 's|^# \(.*\)/ansible_collections$|\1|p')
  if [ "$(readlink -f "$found")" != "$(readlink -f "$DEMO_COLLECTIONS_PATH")" ]; then
    echo "demo: ansible finds mailops.postfix in '${found//$'\n'/ and }', not only in $DEMO_COLLECTIONS_PATH" >&2
    exit 1
  fi
  echo "demo: mailops.postfix $(sed -n 's/.*"version": "\([^"]*\)".*/\1/p' "$installed/MANIFEST.json" | head -1) from $installed"
fi

# DEMO_CONTAINER names the container (and its work directory) for a run beside someone's demo.
name=${DEMO_CONTAINER:-mailops-demo-mx1}
label=mailops.postfix.demo=1
work="$root/.build/demo${DEMO_CONTAINER:+/$DEMO_CONTAINER}"

remove() {
  # Only the container this script made (checked by its label).
  if podman container exists "$name" &&
     [ "$(podman inspect --format '{{ index .Config.Labels "mailops.postfix.demo" }}' "$name")" = 1 ]; then
    podman rm -f -t 1 "$name" >/dev/null
  fi
}
if [ "${1:-}" = clean ]; then remove; exit 0; fi
if podman container exists "$name" &&
   [ "$(podman inspect --format '{{ index .Config.Labels "mailops.postfix.demo" }}' "$name")" != 1 ]; then
  echo "demo: a container named $name exists and is not the demo's; not touching it" >&2
  exit 1
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Image"
image=$(scripts/build-image.sh debian12)
echo "$image"

step "Container mx1.example.tld ($name)"
remove
podman run -d --init --name "$name" --label "$label" --hostname mx1.example.tld --network none \
  "$image" sleep infinity >/dev/null
[ "${DEMO_KEEP:-0}" = 1 ] || trap remove EXIT
# The example inventory delivers to these local accounts.
for u in admin alice bob; do podman exec "$name" useradd --no-create-home "$u"; done
echo "started; local users admin, alice, bob"

mkdir -p "$work"
cat >"$work/hosts.yml" <<EOF
---
# The example inventory's mx1, reached with podman exec.
mail_servers:
  hosts:
    mx1.example.tld:
      ansible_connection: containers.podman.podman
      ansible_host: $name
      ansible_python_interpreter: /usr/bin/python3
EOF
export ANSIBLE_NOCOLOR=1 ANSIBLE_PYTHON_INTERPRETER=auto_silent ANSIBLE_PIPELINING=true
inventory=(-i "$examples/inventory" -i "$work/hosts.yml")

step "ansible-playbook mailops.postfix.site (example inventory, --diff)"
ansible-playbook mailops.postfix.site "${inventory[@]}" -e target=mx1.example.tld --diff

step "Where do support@example.tld and info@example.org go? (mailops.postfix.postmap, query)"
ansible mx1.example.tld "${inventory[@]}" -m mailops.postfix.postmap \
  -a '{"path": "/etc/postfix/virtual", "query": ["support@example.tld", "chris@example.tld", "info@example.org"]}' |
  sed -n '/"lookups"/,/}/p'
echo "and the virtual mailbox map (mailbox paths under /var/mail/vhosts):"
ansible mx1.example.tld "${inventory[@]}" -m mailops.postfix.postmap \
  -a '{"path": "/etc/postfix/vmailbox", "query": ["erin@example.org"]}' |
  sed -n '/"lookups"/,/}/p'

step "Sending a mail to support@example.tld and one to info@example.org over SMTP"
token="demo-$(date +%s)-$$"
podman exec -i "$name" python3 - "$token" <<'PY'
import smtplib, sys, time
from email.message import EmailMessage
for _ in range(30):
    try:
        s = smtplib.SMTP("127.0.0.1", 25, timeout=10)
        break
    except OSError:
        time.sleep(1)
else:
    sys.exit("no SMTP service on 127.0.0.1:25")
with s:
    for rcpt in ("support@example.tld", "info@example.org"):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "demo@example.net", rcpt, sys.argv[1]
        msg.set_content("Hello from make demo.\n")
        s.send_message(msg)
        print("%s: accepted by 127.0.0.1:25" % rcpt)
PY

step "Delivered to"
found=0
for _ in $(seq 60); do
  podman exec "$name" sh -c "grep -ls -- '$token' /var/mail/* 2>/dev/null" >"$work/boxes" || true
  podman exec "$name" sh -c "grep -rls -- '$token' /var/mail/vhosts 2>/dev/null" >"$work/maildirs" || true
  if [ "$(wc -l <"$work/boxes")" -ge 2 ] && [ -s "$work/maildirs" ]; then found=1; break; fi
  sleep 0.5
done
while read -r box; do
  # Headers local(8) added above the message's Subject: the address asked for, the mailbox reached.
  podman exec "$name" sh -c "grep -B15 -- 'Subject: $token' '$box' | grep -E '^(X-Original-To|Delivered-To):'" |
    sed "s|^|  $box  |"
done <"$work/boxes"
while read -r file; do
  # One file per message in the Maildir's new/, written by virtual(8) as the vmail account.
  podman exec "$name" stat -c '  %n  (owner %U:%G, uid %u)' "$file"
  podman exec "$name" sh -c "grep -E '^(X-Original-To|Delivered-To):' '$file'" | sed 's|^|    |'
done <"$work/maildirs"
if [ "$found" != 1 ]; then
  echo "demo: the messages did not reach alice, bob and erin's Maildir; queue:" >&2
  podman exec "$name" postqueue -p >&2 || true
  exit 1
fi
echo
echo "support@example.tld -> alice, bob: delivered to both local mailboxes."
echo "info@example.org -> erin@example.org: delivered to her virtual mailbox (Maildir, owned by vmail)."
[ "${DEMO_KEEP:-0}" = 1 ] && echo "Container kept: podman exec -it $name bash   (remove: scripts/demo.sh clean)"
exit 0
