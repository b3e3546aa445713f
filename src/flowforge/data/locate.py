"""Find the folder that holds an image data set, downloading it as a last resort.

Order (DESIGN.md, "Data"): the ``data_dir`` argument (``--data-dir``), the ``FLOWFORGE_DATA``
variable, the per-user cache, known system locations (Debian ``dataset-fashion-mnist``),
then a download from the official source into the per-user cache where the set has an open
download. The files each set needs are its published layout (`layouts.LAYOUTS`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from http.client import HTTPException
from pathlib import Path

from flowforge.data.layouts import LAYOUTS, MNIST_FILES, Layout
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
DATASET_FILES: tuple[str, ...] = MNIST_FILES

#: Official download locations of the MNIST-like sets (base URLs; a file's URL is base + file name).
DOWNLOAD_URLS: dict[str, str] = {
    name: LAYOUTS[name].urls[0].rsplit("/", 1)[0] + "/" for name in ("mnist", "fashion-mnist")
}

#: Folders that system packages install a data set into (same file names).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "mnist": (),
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

_ENV_VAR = "FLOWFORGE_DATA"
_TIMEOUT_S = 60.0


def _present(path: Path, entry: str) -> bool:
    return path.is_dir() if entry.endswith("/") else path.is_file()


def _missing(folder: Path, layout: Layout) -> list[str]:
    """The layout's files absent from ``folder`` (all of them when it is not a folder)."""
    return [f for f in layout.files if not _present(folder / f, f)]


def _describe(folder: Path, missing: list[str]) -> str:
    if not folder.is_dir():
        return f"{folder} (no such directory)"
    return f"{folder} (missing: {', '.join(missing)})"


def _search_root(root: Path, name: str, layout: Layout, looked: list[str], label: str) -> Path | None:
    """Look at ``root/name`` then ``root``; record what was missing in ``looked``."""
    for folder in (root / name, root):
        missing = _missing(folder, layout)
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


def _unpack(archive: Path, folder: Path) -> None:
    """Unpack a .tar.gz into ``folder`` (tarfile's "data" filter: no links out, no absolute paths)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(folder, filter="data")
    except (OSError, EOFError, tarfile.TarError) as e:
        raise DataError(f"{archive}: cannot unpack the downloaded archive ({e}); delete it and retry") from e
    archive.unlink()


def _download(name: str, layout: Layout, cache: Path, missing: list[str]) -> None:
    """Fetch the official files into ``cache``: every archive, and the plain files still missing."""
    for url in layout.urls:
        fname = url.rsplit("/", 1)[1]
        archive = fname.endswith(".tar.gz")
        if not archive and fname not in missing:
            continue
        print(f"flowforge: downloading {url} -> {cache / fname}", file=sys.stderr, flush=True)
        download_file(url, cache / fname)
        if archive:
            _unpack(cache / fname, cache)


def find_dataset_dir(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Path:
    """The folder holding the files of the image set ``name`` (`layouts.LAYOUTS`).

    Looks at ``data_dir/name`` and ``data_dir`` (an explicit ``data_dir`` that lacks the files
    raises), then the same two places under ``$FLOWFORGE_DATA``, the per-user cache, system
    locations, and finally downloads into the per-user cache when ``download`` is true and the
    set has an open download. Raises a one-line ``DataError`` naming the expected files, every
    place looked at and where to put them when nothing is found.
    """
    if name not in LAYOUTS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {tuple(LAYOUTS)}")
    layout = LAYOUTS[name]
    looked: list[str] = []

    if data_dir is not None:
        found = _search_root(Path(data_dir), name, layout, looked, "data_dir")
        if found is not None:
            return found
        raise DataError(
            f"data_dir {data_dir} does not hold the {name} files ({layout.summary}); looked at: " + "; ".join(looked)
            + f". Put them in {Path(data_dir) / name}"
        )

    env = os.environ.get(_ENV_VAR, "")
    if env:
        found = _search_root(Path(env), name, layout, looked, f"${_ENV_VAR}")
        if found is not None:
            return found
    else:
        looked.append(f"${_ENV_VAR}: not set")

    cache = cache_dir(name)
    missing = _missing(cache, layout)
    if not missing:
        return cache
    looked.append(f"user cache: {_describe(cache, missing)}")

    for folder in SYSTEM_DIRS.get(name, ()):
        folder_missing = _missing(folder, layout)
        if not folder_missing:
            return folder
        looked.append(f"system: {_describe(folder, folder_missing)}")

    fix = (f"Fix: put {layout.summary} in {cache}, or set {_ENV_VAR} (or pass --data-dir) to a folder "
           f"holding {name}/ with them")
    if layout.manual:
        raise DataError(f"{name} data not found; looked at: " + "; ".join(looked) + f". {fix}; {layout.manual}.")
    if not download:
        looked.append("download: disabled")
        raise DataError(f"{name} data not found; looked at: " + "; ".join(looked) + f". {fix}, or allow downloading.")
    try:
        _download(name, layout, cache, missing)
    except (OSError, HTTPException, ValueError) as e:
        looked.append(f"download: {', '.join(layout.urls)} failed ({e})")
        raise DataError(
            f"{name} data not found and the download failed; looked at: " + "; ".join(looked) + f". {fix}."
        ) from e
    still_missing = _missing(cache, layout)
    if still_missing:
        raise DataError(f"{name}: downloaded into {cache} but {', '.join(still_missing)} is still missing. {fix}.")
    return cache
