"""Unpickle data files without running arbitrary code: an Unpickler that resolves only the
globals a pickled dict of lists, bytes and numpy arrays needs (the CIFAR python batches).

Any other global (``os.system``, ``builtins.eval``, ...) is refused with a one-line
``DataError`` naming the file before anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from flowforge.errors import DataError

__all__ = ["load_restricted_pickle"]

# numpy's array-reconstruction function, wherever this numpy keeps it (numpy.core in 1.x,
# numpy._core in 2.x); resolved from an array's own reduction so that numpy.core is not imported.
_RECONSTRUCT = np.zeros(0).__reduce_ex__(2)[0]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("builtins", "__builtin__"):  # __builtin__: pickles written by Python 2
    for _name, _obj in (("dict", dict), ("list", list), ("bytes", bytes), ("str", str), ("int", int)):
        _ALLOWED[(_module, _name)] = _obj


class _Refused(pickle.UnpicklingError):
    """The pickle asks for a global outside the allowed set."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(
                f"refusing to load the global {module}.{name} (only dict, list, bytes, str, int and numpy arrays "
                "are allowed)"
            ) from None


def load_restricted_pickle(path: Path, encoding: str = "bytes") -> Any:
    """The object pickled in ``path``, loaded with only dict/list/bytes/str/int and numpy arrays allowed.

    ``encoding="bytes"`` keeps Python 2 strings as bytes, as the CIFAR release needs. Raises a
    one-line ``DataError`` naming the file for a missing, truncated or corrupt file and for a
    pickle that asks for any other global.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except _Refused as e:
        raise DataError(f"{path}: {e}") from None
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: not a valid pickle: {e}") from e
    except EOFError:
        raise DataError(f"{path}: truncated pickle (the file ends early; download it again)") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as e:
        raise DataError(f"{path}: corrupt pickle ({type(e).__name__}: {e})") from e
