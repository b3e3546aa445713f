"""sha256 checksums of a checkpoint's files: ``checksums.json``, written last into the checkpoint
directory (atomically) and verified whenever the checkpoint is loaded, so that bit rot or a
truncated copy is refused with the name of the file instead of giving wrong weights silently.

Checkpoints written before checksums existed (no ``checksums.json``) still load, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from flowforge.errors import CheckpointError

CHECKSUM_FILE = "checksums.json"
_CHUNK = 1 << 20
_warned: set[str] = set()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(directory: Path, names: list[str]) -> Path:
    """Write DIRECTORY/checksums.json with the sha256 of each of `names` (files in DIRECTORY)."""
    directory = Path(directory)
    record = {"algorithm": "sha256", "files": {name: sha256_of(directory / name) for name in sorted(names)}}
    target = directory / CHECKSUM_FILE
    tmp = directory / f".{CHECKSUM_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.rename(tmp, target)  # atomic on POSIX (the directory is fresh, nothing is replaced)
    return target


def verify_checksums(directory: Path, names: tuple[str, ...]) -> bool:
    """Check every file of `names` present in DIRECTORY against DIRECTORY/checksums.json.

    Raises CheckpointError naming the file on a mismatch, a listed file that is missing, or a
    present file that the record does not cover. Without a checksums.json (an older checkpoint)
    warns once per directory on stderr and returns False; returns True when everything matched.
    """
    directory = Path(directory)
    record_file = directory / CHECKSUM_FILE
    if not record_file.is_file():
        key = str(directory.resolve())
        if key not in _warned:
            _warned.add(key)
            print(f"warning: {directory} has no {CHECKSUM_FILE} (written by an older flowforge); "
                  "its files are not verified", file=sys.stderr)
        return False
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        files = record["files"]
        if record.get("algorithm") != "sha256" or not isinstance(files, dict):
            raise ValueError("expected {'algorithm': 'sha256', 'files': {name: hex digest}}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{record_file} is unreadable ({type(exc).__name__}: {exc}); "
                              "the checkpoint cannot be verified") from None
    for name, expected in files.items():
        path = directory / str(name)
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (listed in {record_file})")
        if sha256_of(path) != expected:
            raise CheckpointError(f"{path} is corrupted: its sha256 does not match {record_file}")
    for name in names:
        if name not in files and (directory / name).is_file():
            raise CheckpointError(f"{directory / name} is not covered by {record_file}; the checkpoint was altered")
    return True
