# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throw-away Postfix hosts for the benchmarks: podman containers from the cached test image
on a closed network (--internal --disable-dns) that this run creates. Everything created
carries the label mailops.postfix.bench=<run id>; close() removes exactly the containers and
networks carrying this run's id, whatever happened before."""

from __future__ import annotations

import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABEL = "mailops.postfix.bench"


def podman(*args, check=True, stdin=None):
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", os.path.join(ROOT, "molecule", "containers.conf"))
    proc = subprocess.run(["podman", *args], input=stdin, capture_output=True, text=True, env=env, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("podman %s failed (%d): %s" % (" ".join(args[:3]), proc.returncode, proc.stderr.strip()))
    return proc


def build_image(release="debian12"):
    """A test image (scripts/build-image.sh builds it once, then reuses it): Debian 12 with
    Postfix, or a variant such as debian12-sql (PostgreSQL and postfix-pgsql as well)."""
    proc = subprocess.run([os.path.join(ROOT, "scripts", "build-image.sh"), release],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError("scripts/build-image.sh failed: %s" % proc.stderr.strip())
    return proc.stdout.strip().splitlines()[-1]


def _used_subnets():
    used = set()
    for net in json.loads(podman("network", "ls", "--format", "json").stdout or "[]"):
        for sub in net.get("subnets") or []:
            used.add(sub.get("subnet"))
    return used


class Testbed:
    """Containers on one closed network, all removed by close()."""

    def __init__(self, image):
        self.image = image
        self.run_id = "%d-%d" % (os.getpid(), int(time.time()))
        self.network = "mailops-bench-%s" % self.run_id
        self.subnet = None
        self.containers = []
        self.ips = {}
        self._next_ip = 10

    def open(self):
        used = _used_subnets()
        # 10.231.x.0/24 is the project's test range (Molecule uses the low numbers).
        for third in range(200, 250):
            subnet = "10.231.%d.0/24" % third
            if subnet not in used:
                break
        else:
            raise RuntimeError("no free 10.231.200-249.0/24 subnet for the bench network")
        self.subnet = subnet
        podman("network", "create", "--internal", "--disable-dns", "--subnet", subnet,
               "--label", "%s=%s" % (LABEL, self.run_id), self.network)
        return self

    def start(self, hostname, image=None):
        """A container named after this run, reachable by podman exec; returns its name
        (its address is in self.ips)."""
        name = "mailops-bench-%s-%s" % (self.run_id, hostname.split(".")[0])
        ip = self.subnet.rsplit(".", 1)[0] + ".%d" % self._next_ip
        self._next_ip += 1
        self.containers.append(name)
        self.ips[name] = ip
        podman("run", "-d", "--init", "--name", name, "--label", "%s=%s" % (LABEL, self.run_id),
               "--hostname", hostname, "--network", self.network, "--ip", ip,
               image or self.image, "sleep", "infinity")
        return name

    def remove(self, name):
        """Remove one container of this run (checked by its label)."""
        proc = podman("inspect", "--format", '{{ index .Config.Labels "%s" }}' % LABEL, name, check=False)
        if proc.returncode == 0 and proc.stdout.strip() == self.run_id:
            podman("rm", "-f", "-t", "1", name, check=False)
        if name in self.containers:
            self.containers.remove(name)

    def exec(self, name, script, stdin=None, check=True):
        opts = ["-i"] if stdin is not None else []
        return podman("exec", *opts, name, "sh", "-c", script, stdin=stdin, check=check)

    def close(self):
        """Remove every container and network carrying this run's label, and nothing else."""
        sel = "label=%s=%s" % (LABEL, self.run_id)
        ids = podman("ps", "-a", "-q", "--filter", sel, check=False).stdout.split()
        if ids:
            podman("rm", "-f", "-t", "1", *ids, check=False)
        nets = podman("network", "ls", "-q", "--filter", sel, check=False).stdout.split()
        for net in nets:
            podman("network", "rm", net, check=False)
        self.containers = []
