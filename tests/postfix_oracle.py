"""Real postmap / postalias as the oracle for the source engines.

Each source is compiled with ``TOOL -c CONFIG cdb:FILE`` and the cdb records are read back
directly, in file order (Postfix 3.7 cannot dump a cdb map with -s; cdb stores no NUL, so
records compare byte for byte).
"""

from __future__ import annotations

import os
import re
import string
import struct
import subprocess

_LINE_WARNING = re.compile(r"^\S+: warning: .*?, line (\d+): (.*)$")

KEY_CHARS = string.ascii_lowercase + string.digits + "@.+-_=/"
VALUE_CHARS = KEY_CHARS + " ,:"


def read_cdb(path):
    """Every (key, value) of a cdb file in file order (records precede the hash tables)."""
    with open(path, "rb") as f:
        data = f.read()
    end = min(struct.unpack_from("<256I", data)[::2])
    out = []
    pos = 2048
    while pos < end:
        klen, dlen = struct.unpack_from("<II", data, pos)
        pos += 8
        out.append((data[pos:pos + klen], data[pos + klen:pos + klen + dlen]))
        pos += klen + dlen
    return out


def warning_kind(message):
    """Compare warnings by what they say, not by how the offending bytes are printed."""
    return message.split('"')[0].split("'")[0].strip()


class Oracle(object):
    """A real Postfix tool (postmap or postalias) with its own main.cf, SMTPUTF8 on or off."""

    def __init__(self, root, tool, smtputf8=True):
        self.root = root
        self.tool = tool
        self.config = os.path.join(root, "cf")
        os.makedirs(self.config)
        main_cf = os.path.join(self.config, "main.cf")
        with open(main_cf, "w") as f:
            f.write("compatibility_level = 3.6\nmyhostname = oracle.example\nsmtputf8_enable = %s\n"
                    % ("yes" if smtputf8 else "no"))
        # Postfix tools wait for a main.cf changed in the last seconds to settle: date it back.
        os.utime(main_cf, (1000000000, 1000000000))
        self.count = 0

    def compile(self, data, options=()):
        """(records, line warnings [(line, message)], other warnings) of the real tool."""
        self.count += 1
        path = os.path.join(self.root, "src%d" % self.count)
        with open(path, "wb") as f:
            f.write(data)
        proc = subprocess.run([self.tool, "-c", self.config] + list(options) + ["cdb:" + path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        err = proc.stderr.decode("utf-8", "surrogateescape")
        assert proc.returncode == 0, err
        records = read_cdb(path + ".cdb")
        os.unlink(path)
        os.unlink(path + ".cdb")
        lines, other = [], []
        for text in err.splitlines():
            m = _LINE_WARNING.match(text)
            if m:
                lines.append((int(m.group(1)), m.group(2)))
            else:
                other.append(text)
        return records, lines, other


def postmap_query(confdir, spec, keys):
    """Values real postmap finds for ``keys`` in ``spec`` (TYPE:PATH), one ``postmap -q -`` run."""
    proc = subprocess.run(["postmap", "-c", confdir, "-q", "-", spec],
                          input=b"".join(k + b"\n" for k in keys), capture_output=True, check=False)
    # Exit 1 is also a fatal error (an unreadable table): that is never "not found".
    assert proc.returncode in (0, 1) and b"fatal:" not in proc.stderr, proc.stderr
    return dict(line.split(b"\t", 1) for line in proc.stdout.splitlines())


def postmap_q(confdir, key, spec, no_warnings=False):
    """The value real ``postmap -q KEY SPEC`` prints, None when it exits non-zero (not found).
    With ``no_warnings``, any warning or fatal line postmap prints fails the test: for pattern
    tables Postfix skips a line it cannot parse with only a warning (dict_regexp.c, dict_cidr.c)."""
    proc = subprocess.run(["postmap", "-c", confdir, "-q", key, spec], capture_output=True, text=True, check=False)
    if no_warnings:
        assert "warning" not in proc.stderr and "fatal" not in proc.stderr, proc.stderr
    return proc.stdout.rstrip("\n") if proc.returncode == 0 else None


def random_records(rng, n, value_len=60):
    """``n`` records with unique keys in random order, values of up to ``value_len`` chars."""
    keys = set()
    while len(keys) < n:
        keys.add("".join(rng.choice(KEY_CHARS) for _i in range(rng.randint(1, 40))).encode())
    keys = sorted(keys)
    rng.shuffle(keys)
    return [(k, ("".join(rng.choice(VALUE_CHARS) for _i in range(rng.randint(0, value_len))).strip() or "v").encode())
            for k in keys]
