"""Read and write idx files, the format of MNIST and Fashion-MNIST (LeCun et al.).

An idx file is a 4-byte big-endian magic ``0x00 0x00 TYPE NDIM``, then ``NDIM`` big-endian
uint32 sizes, then the data in C order. Only ``TYPE = 0x08`` (unsigned byte) is supported,
which is all that MNIST-like sets use: ``0x00000803`` for images (N, H, W), ``0x00000801``
for labels (N,). A path ending in ``.gz`` is gzip-compressed; any other path is plain.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from flowforge.errors import DataError

__all__ = ["read_idx", "write_idx"]

_UINT8 = 0x08
_TYPE_NAMES = {
    0x08: "uint8",
    0x09: "int8",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_GZIP_MAGIC = b"\x1f\x8b"


def _is_gz(path: Path) -> bool:
    return path.name.endswith(".gz")


def _read_bytes(path: Path) -> bytes:
    """The file's (decompressed) content; DataError if missing, unreadable or bad gzip."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    with f:
        if not _is_gz(path):
            return f.read()
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                return g.read()
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from e


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (gzip-compressed when the name ends in ``.gz``) into a uint8 array.

    The array has the shape the header gives and is a fresh, writable copy. Raises
    ``DataError`` naming the file for a missing file, bad gzip, bad magic, unsupported
    element type, truncated data or trailing bytes.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: truncated idx header: expected at least 4 bytes, found {len(data)}")
    zero0, zero1, dtype_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or ndim == 0:
        hint = ""
        if data[:2] == _GZIP_MAGIC and not _is_gz(path):
            hint = " (the content looks gzip-compressed but the name does not end in .gz)"
        raise DataError(
            f"{path}: bad idx magic 0x{data[:4].hex()}: expected 0x0000TTNN with a type byte TT "
            f"and a dimension count NN >= 1 (0x00000803 images, 0x00000801 labels){hint}"
        )
    if dtype_code != _UINT8:
        name = _TYPE_NAMES.get(dtype_code, "unknown")
        raise DataError(
            f"{path}: unsupported idx element type 0x{dtype_code:02x} ({name}); only 0x08 (uint8) is supported"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: truncated idx header: {ndim} dimensions need {header_len} header bytes, found {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    expected = math.prod(shape)
    found = len(data) - header_len
    if found < expected:
        raise DataError(
            f"{path}: truncated idx data: sizes {shape} need {expected} bytes, found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: {found - expected} trailing bytes after the idx data: sizes {shape} need "
            f"{expected} bytes, found {found}"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header_len).reshape(shape).copy()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 array as an idx file, gzip-compressed when the name ends in ``.gz``."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx: only uint8 arrays are supported, got dtype {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: array must have 1 to 255 dimensions, got {array.ndim}")
    if any(s >= 2**32 for s in array.shape):
        raise ValueError(f"write_idx: every size must fit in uint32, got shape {array.shape}")
    header = bytes([0, 0, _UINT8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array).tobytes()
    if _is_gz(path):
        with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
            g.write(payload)
    else:
        path.write_bytes(payload)
