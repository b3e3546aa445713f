"""How a command was invoked, recorded in the files it writes (eval json, diagnose and attack reports)."""

from __future__ import annotations

import shlex
import sys


def command_line() -> str:
    """`flowforge ARGS...` as typed (the running process's arguments, shell-quoted)."""
    return "flowforge " + shlex.join(sys.argv[1:])
