# -*- coding: utf-8 -*-
# Copyright (c) mailops.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions shared by the private engines; modules turn them into fail_json."""

from __future__ import annotations


class PostfixError(Exception):
    """Any failure the engines report to a user (never a traceback)."""


class ParseError(PostfixError):
    """A source file that Postfix would reject: rendered ``path:line: message``."""

    def __init__(self, path, line, message):
        self.path = path
        self.line = line
        self.message = message
        super().__init__("%s:%s: %s" % (path, line, message) if line else "%s: %s" % (path, message))


class MissingLibrary(PostfixError):
    """An optional Python library (the lmdb binding) is not installed on the target."""
