"""A lock on a run directory, so that two `flowforge train` processes never write the same run.

RUN_DIR/.lock holds the holder's PID and host as JSON; it is created with O_CREAT | O_EXCL
(atomic), removed when the holder finishes, and taken over (with a message) when it is stale:
left by a process of this host that no longer exists.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from flowforge.errors import FlowforgeError

LOCK_FILE = ".lock"


class RunLockedError(FlowforgeError):
    """The run directory is being written by another process."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def _read(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}


class RunLock:
    """Context manager holding RUN_DIR/.lock; `acquire` refuses (RunLockedError) a live holder."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)
        self.path = self.root / LOCK_FILE
        self.held = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        return True

    def acquire(self) -> "RunLock":
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            if self._create():
                self.held = True
                return self
            holder = _read(self.path)
            pid, host = holder.get("pid"), holder.get("host")
            if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and not _alive(pid):
                print(f"{self.root}: taking over the stale lock of PID {pid} on {host} (that process is gone)",
                      file=sys.stderr)
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue  # O_EXCL again: if another process took it meanwhile, it holds it
            if not holder:  # being written this very instant, or unreadable
                raise RunLockedError(f"{self.root} is locked ({self.path} exists but names no holder); "
                                     "remove it if no flowforge process is writing this run")
            break
        holder = _read(self.path)
        raise RunLockedError(f"{self.root} is in use by PID {holder.get('pid')} on host {holder.get('host')} "
                             f"since {holder.get('since')} (lock {self.path}); wait for it to finish or choose "
                             "another --run-dir")

    def release(self) -> None:
        if self.held:
            self.held = False
            if _read(self.path).get("pid") == os.getpid():
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
