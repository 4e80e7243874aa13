# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible-playbook under cProfile: the controller process and every worker it forks (where
task arguments are templated and modules are sent), one .prof file per process.

    .venv/bin/python bench/lib/profile_playbook.py run DIR PLAYBOOK -i INVENTORY ...
    .venv/bin/python bench/lib/profile_playbook.py report DIR [N]

`report` merges the files of DIR and prints the N (default 30) functions with the most
cumulative and the most own time. Environment as for ansible-playbook (molecule/env.sh).
Only the controller side is seen: module run time on the host shows up as time spent waiting
for the connection (subprocess communicate / select).
"""

from __future__ import annotations

import cProfile
import glob
import os
import pstats
import sys

_controller = []   # the controller's profiler; a forked worker stops its copy first


def run(out, argv):
    os.makedirs(out, exist_ok=True)
    from ansible.executor.process import worker  # pylint: disable=import-outside-toplevel

    original = worker.WorkerProcess._run  # pylint: disable=protected-access

    def profiled(self):
        for inherited in _controller:
            inherited.disable()
        prof = cProfile.Profile()
        prof.enable()
        try:
            return original(self)
        finally:
            prof.disable()
            prof.dump_stats(os.path.join(out, "worker-%d.prof" % os.getpid()))

    worker.WorkerProcess._run = profiled  # pylint: disable=protected-access
    from ansible.cli.playbook import main  # pylint: disable=import-outside-toplevel

    sys.argv = ["ansible-playbook"] + argv
    prof = cProfile.Profile()
    _controller.append(prof)
    prof.enable()
    try:
        main()
    except SystemExit as exc:
        return exc.code or 0
    finally:
        prof.disable()
        prof.dump_stats(os.path.join(out, "controller-%d.prof" % os.getpid()))
    return 0


def report(out, top):
    for kind in ("controller", "worker"):
        files = sorted(glob.glob(os.path.join(out, kind + "-*.prof")))
        if not files:
            continue
        stats = None
        for path in files:
            try:
                if stats is None:
                    stats = pstats.Stats(path, stream=sys.stdout)
                else:
                    stats.add(path)
            except (EOFError, ValueError, TypeError):   # a process killed while writing
                print("skipped %s (incomplete)" % path)
        if stats is None:
            continue
        print("=== %s processes (%d files): by cumulative time" % (kind, len(files)))
        stats.sort_stats("cumulative").print_stats(top)
        print("=== %s processes: by own time" % kind)
        stats.sort_stats("tottime").print_stats(top)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "run":
        return run(sys.argv[2], sys.argv[3:])
    if len(sys.argv) in (3, 4) and sys.argv[1] == "report":
        report(sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 30)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
