"""Find the folder that holds an MNIST-like data set, downloading it as a last resort.

Order (DESIGN.md, "Data"): the ``data_dir`` argument (``--data-dir``), the ``FLOWFORGE_DATA``
variable, the per-user cache, known system locations (Debian ``dataset-fashion-mnist``),
then a download from the official source into the per-user cache.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.request
from http.client import HTTPException
from pathlib import Path

from flowforge.errors import DataError

__all__ = [
    "DATASET_FILES",
    "DOWNLOAD_URLS",
    "SYSTEM_DIRS",
    "cache_dir",
    "download_file",
    "find_dataset_dir",
]

#: The four files a folder must hold to count as having an MNIST-like set.
DATASET_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Official download locations (base URLs; a file's URL is base + file name).
DOWNLOAD_URLS: dict[str, str] = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

#: Folders that system packages install a data set into (same file names).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "mnist": (),
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

_ENV_VAR = "FLOWFORGE_DATA"
_TIMEOUT_S = 60.0


def _missing(folder: Path) -> list[str]:
    """The dataset files absent from ``folder`` (all of them when it is not a folder)."""
    return [f for f in DATASET_FILES if not (folder / f).is_file()]


def _describe(folder: Path, missing: list[str]) -> str:
    if not folder.is_dir():
        return f"{folder} (no such directory)"
    return f"{folder} (missing: {', '.join(missing)})"


def _search_root(root: Path, name: str, looked: list[str], label: str) -> Path | None:
    """Look at ``root/name`` then ``root``; record what was missing in ``looked``."""
    for folder in (root / name, root):
        missing = _missing(folder)
        if not missing:
            return folder
        looked.append(f"{label}: {_describe(folder, missing)}")
    return None


def cache_dir(name: str) -> Path:
    """The per-user cache folder of a data set: ``$XDG_CACHE_HOME/flowforge/NAME`` or ``~/.cache/flowforge/NAME``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "flowforge" / name


def download_file(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` atomically (a temporary file in the same folder, then a rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
            shutil.copyfileobj(resp, out)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def find_dataset_dir(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Path:
    """The folder holding the four idx files of ``name`` ("mnist" or "fashion-mnist").

    Looks at ``data_dir/name`` and ``data_dir`` (an explicit ``data_dir`` that lacks the files
    raises), then the same two places under ``$FLOWFORGE_DATA``, the per-user cache, system
    locations, and finally downloads into the per-user cache when ``download`` is true.
    Raises ``DataError`` listing every place looked at when nothing is found.
    """
    if name not in DOWNLOAD_URLS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {tuple(DOWNLOAD_URLS)}")
    looked: list[str] = []

    if data_dir is not None:
        found = _search_root(Path(data_dir), name, looked, "data_dir")
        if found is not None:
            return found
        raise DataError(
            f"data_dir {data_dir} does not hold the {name} files "
            f"({', '.join(DATASET_FILES)}); looked at:\n  " + "\n  ".join(looked)
        )

    env = os.environ.get(_ENV_VAR, "")
    if env:
        found = _search_root(Path(env), name, looked, f"${_ENV_VAR}")
        if found is not None:
            return found
    else:
        looked.append(f"${_ENV_VAR}: not set")

    cache = cache_dir(name)
    missing = _missing(cache)
    if not missing:
        return cache
    looked.append(f"user cache: {_describe(cache, missing)}")

    for folder in SYSTEM_DIRS.get(name, ()):
        folder_missing = _missing(folder)
        if not folder_missing:
            return folder
        looked.append(f"system: {_describe(folder, folder_missing)}")

    fix = (
        f"Fix: set {_ENV_VAR} (or pass --data-dir) to a folder holding {name}/ with the files "
        f"{', '.join(DATASET_FILES)}"
    )
    if not download:
        looked.append("download: disabled")
        raise DataError(
            f"{name} data not found; looked at:\n  " + "\n  ".join(looked) + f"\n{fix}, or allow downloading."
        )

    base = DOWNLOAD_URLS[name]
    for fname in missing:
        url = base + fname
        print(f"flowforge: downloading {url} -> {cache / fname}", file=sys.stderr, flush=True)
        try:
            download_file(url, cache / fname)
        except (OSError, HTTPException, ValueError) as e:
            looked.append(f"download: {url} failed ({e})")
            raise DataError(
                f"{name} data not found and the download failed; looked at:\n  "
                + "\n  ".join(looked)
                + f"\n{fix}."
            ) from e
    still_missing = _missing(cache)
    if still_missing:
        raise DataError(
            f"{name}: downloaded into {cache} but {', '.join(still_missing)} is still missing. {fix}."
        )
    return cache
