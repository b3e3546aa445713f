"""Flat data of your own: a `.npy`, `.npz` or `.csv` file of feature (and optional context)
columns, split into train / valid / test and standardised with statistics of the training split.

Files:
- `.csv`: a header row naming the columns, then one row per example; every cell a number.
- `.npy`: one numeric array (N, D); columns are named by their index ("0", "1", ...).
- `.npz`: either one numeric array (N, D), read as a `.npy`, or the three arrays `train`,
  `valid` and `test` (each (N_split, D)), which then give the split and no seeded split is made.

Columns: `columns` names the features (default: every column not a context column);
`context_columns` names the conditioning columns (default: none).

Split: without given splits the rows are permuted by a generator seeded with `seed` and the
first `valid_fraction` go to valid, the next `test_fraction` to test, the rest to train; the same
file, fractions and seed give the same split on every machine.

Standardisation: x -> (x - mean) / std per column with the mean and (population) standard
deviation of the training split only, for the features and the context alike, as in the MAF
preprocessing of the UCI sets (Papamakarios et al. 2017, appendix D). It is kept in a
`Standardiser` that a run saves, so evaluation and sampling use the training run's transform.

Every problem (missing file, unreadable file, wrong shape, a non-numeric cell, NaN or infinite
values, unknown columns, a constant training column) is a DataError naming the file and, where
there is one, the column and the row.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowforge.data.arrays import ArraySplits
from flowforge.errors import DataError

SPLIT_KEYS = ("train", "valid", "test")
SUFFIXES = (".npy", ".npz", ".csv")


@dataclass(frozen=True)
class Table:
    """The raw numbers of a file: float64 arrays per split (one "all" entry when the file gives
    no split) and the name of every column."""

    names: tuple[str, ...]
    parts: dict[str, np.ndarray]


@dataclass(frozen=True)
class Standardiser:
    """Per-column affine map fitted on the training split: forward (x - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray, names: tuple[str, ...], path: Path) -> Standardiser:
        if len(x) < 2:
            raise DataError(f"{path}: the training split has {len(x)} rows; at least 2 are needed to standardise")
        mean, std = x.mean(0), x.std(0)
        for j, s in enumerate(std):
            if not s > 0:
                raise DataError(f"{path}: column {names[j]!r} is constant ({mean[j]:g}) in the training split; "
                                "drop it from data.columns / data.context_columns")
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    @classmethod
    def identity(cls, dim: int) -> Standardiser:
        return cls((0.0,) * dim, (1.0,) * dim)

    def apply(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        return ((x - torch.tensor(self.mean, dtype=torch.float64)) / torch.tensor(self.std, dtype=torch.float64)).float()

    def invert(self, z: torch.Tensor) -> torch.Tensor:
        """Back to the file's units (float64)."""
        z = z.detach().double().cpu()
        return z * torch.tensor(self.std, dtype=torch.float64) + torch.tensor(self.mean, dtype=torch.float64)

    @property
    def log_scale(self) -> float:
        """sum_j log std_j: -log p in the file's units = -log p standardised + this."""
        return float(sum(math.log(s) for s in self.std))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict, where: str, dim: int) -> Standardiser:
        try:
            mean, std = tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: the saved standardisation is not {{'mean': [...], 'std': [...]}}") from None
        if len(mean) != dim or len(std) != dim or not all(s > 0 and math.isfinite(s) for s in std):
            raise DataError(f"{where}: the saved standardisation does not fit {dim} columns")
        return cls(mean, std)


@dataclass(frozen=True)
class UserArrays:
    """A user's flat data, standardised: `splits` the features, `context` the context per split
    (None without context columns), the standardisers and the column names."""

    splits: ArraySplits
    context: dict[str, torch.Tensor] | None
    columns: tuple[str, ...]
    context_columns: tuple[str, ...]
    x_standardiser: Standardiser
    context_standardiser: Standardiser | None
    sha256: str

    @property
    def context_dim(self) -> int:
        return len(self.context_columns)

    def state(self) -> dict:
        """What a run saves so that evaluation and sampling use the same transform."""
        return {"columns": list(self.columns), "context_columns": list(self.context_columns),
                "standardise_x": self.x_standardiser.to_dict(),
                "standardise_context": self.context_standardiser.to_dict() if self.context_standardiser else None,
                "sha256": self.sha256}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checked_path(path: str | Path, suffixes: tuple[str, ...] = SUFFIXES) -> Path:
    if not str(path):
        raise DataError("data.path is empty: name a .npy, .npz or .csv file")
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise DataError(f"{path}: expected a file ending in {', '.join(suffixes)}, got {path.suffix or 'no suffix'!r}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path


def _numeric(a: np.ndarray, path: Path, what: str) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise DataError(f"{path}: {what} holds {a.dtype} values; expected a numeric array (int or float)")
    if a.ndim != 2:
        raise DataError(f"{path}: {what} has shape {a.shape}; expected (N, D), one row per example")
    return a.astype(np.float64)


def _read_npy(path: Path) -> Table:
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy file ({err})") from None
    a = _numeric(a, path, "the array")
    return Table(tuple(str(j) for j in range(a.shape[1])), {"all": a})


def _read_npz(path: Path) -> Table:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, KeyError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    if set(SPLIT_KEYS) <= set(arrays):
        parts = {k: _numeric(arrays[k], path, f"array {k!r}") for k in SPLIT_KEYS}
        widths = {k: v.shape[1] for k, v in parts.items()}
        if len(set(widths.values())) != 1:
            raise DataError(f"{path}: the split arrays disagree on the number of columns: {widths}")
    elif len(arrays) == 1:
        (key, a), = arrays.items()
        parts = {"all": _numeric(a, path, f"array {key!r}")}
    else:
        raise DataError(f"{path}: expected one array, or the arrays 'train', 'valid' and 'test'; found {sorted(arrays)}")
    width = next(iter(parts.values())).shape[1]
    return Table(tuple(str(j) for j in range(width)), parts)


def _read_csv(path: Path) -> Table:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); expected a CSV file with a header row") from None
    except (OSError, csv.Error) as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]  # blank lines carry nothing
    if not rows:
        raise DataError(f"{path}: empty file; expected a header row naming the columns, then the data")
    names = tuple(cell.strip() for cell in rows[0])
    if all(_is_number(n) for n in names):
        raise DataError(f"{path}: the first row {list(names)} is numbers; expected a header row naming the columns")
    for j, n in enumerate(names):
        if not n:
            raise DataError(f"{path}: column {j + 1} of the header has no name")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{path}: the header names {dup} more than once")
    if len(rows) == 1:
        raise DataError(f"{path}: a header and no data rows")
    out = np.empty((len(rows) - 1, len(names)), dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        line = i + 2  # as an editor counts it, the header being line 1 (blank lines not counted)
        if len(row) != len(names):
            raise DataError(f"{path}: row {line} has {len(row)} cells; the header has {len(names)}")
        for j, cell in enumerate(row):
            try:
                out[i, j] = float(cell)
            except ValueError:
                raise DataError(f"{path}: row {line}, column {names[j]!r}: {cell.strip()!r} is not a number") from None
    return Table(names, {"all": out})


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_table(path: str | Path) -> Table:
    """The numbers of a .npy, .npz or .csv file (DataError naming the file on any problem)."""
    path = _checked_path(path)
    reader = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv}[path.suffix.lower()]
    table = reader(path)
    for part, a in table.parts.items():
        if len(a) == 0:
            raise DataError(f"{path}: {'the file' if part == 'all' else f'split {part!r}'} has no rows")
        bad = ~np.isfinite(a)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            value = "NaN" if math.isnan(a[i, j]) else "infinite"
            row = f"row {i + 2}" if path.suffix.lower() == ".csv" else f"row {i}"
            where = "" if part == "all" else f"split {part!r}, "
            raise DataError(f"{path}: {where}{row}, column {table.names[j]!r} is {value} "
                            f"({int(bad.sum())} non-finite values in all); remove or fill them")
    return table


def _column_indices(names: tuple[str, ...], wanted, field: str, path: Path) -> list[int]:
    out = []
    for w in wanted:
        key = str(w)
        if key not in names:
            shown = list(names) if len(names) <= 12 else [*names[:12], "..."]
            raise DataError(f"{path}: {field} names column {w!r}, which the file does not have; its columns: {shown}")
        out.append(names.index(key))
    return out


def split_rows(n: int, valid_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Row indices of each split from a permutation seeded by `seed` (each split sorted)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_valid, n_test = round(n * valid_fraction), round(n * test_fraction)
    return {"valid": np.sort(perm[:n_valid]), "test": np.sort(perm[n_valid : n_valid + n_test]),
            "train": np.sort(perm[n_valid + n_test :])}


def load_user_arrays(path: str | Path, columns=(), context_columns=(), valid_fraction: float = 0.1,
                     test_fraction: float = 0.1, seed: int = 0, standardise: bool = True,
                     saved: dict | None = None) -> UserArrays:
    """A user's file as standardised splits (see the module docstring). With `saved` (a run's
    `UserArrays.state()`), its standardisation is used instead of being fitted, and a file that
    changed since the run was trained is refused."""
    table = read_table(path)
    path = Path(path).expanduser()
    ctx_idx = _column_indices(table.names, context_columns, "data.context_columns", path)
    if columns:
        x_idx = _column_indices(table.names, columns, "data.columns", path)
    else:
        x_idx = [j for j in range(len(table.names)) if j not in ctx_idx]
    if not x_idx:
        raise DataError(f"{path}: no feature columns left (every column is a context column)")
    both = sorted(set(x_idx) & set(ctx_idx))
    if both:
        raise DataError(f"{path}: column {table.names[both[0]]!r} is in both data.columns and data.context_columns")
    if "all" in table.parts:
        a = table.parts["all"]
        rows = split_rows(len(a), valid_fraction, test_fraction, seed)
        for name, idx in rows.items():
            if len(idx) < 1:
                raise DataError(f"{path}: {len(a)} rows leave the {name} split empty "
                                f"(data.valid_fraction = {valid_fraction}, data.test_fraction = {test_fraction})")
        parts = {name: a[idx] for name, idx in rows.items()}
    else:
        parts = table.parts
    x_names = tuple(table.names[j] for j in x_idx)
    c_names = tuple(table.names[j] for j in ctx_idx)
    sha = file_sha256(path)
    if saved is not None:
        where = f"{path} (standardisation saved with the run)"
        if saved.get("sha256") != sha:
            raise DataError(f"{path} changed since the run was trained (sha256 {sha[:12]}, the run's "
                            f"{str(saved.get('sha256'))[:12]}); its splits and standardisation would differ")
        xs = Standardiser.from_dict(saved["standardise_x"], where, len(x_idx))
        cs = Standardiser.from_dict(saved["standardise_context"], where, len(ctx_idx)) if ctx_idx else None
    elif standardise:
        xs = Standardiser.fit(parts["train"][:, x_idx], x_names, path)
        cs = Standardiser.fit(parts["train"][:, ctx_idx], c_names, path) if ctx_idx else None
    else:
        xs = Standardiser.identity(len(x_idx))
        cs = Standardiser.identity(len(ctx_idx)) if ctx_idx else None
    splits = ArraySplits(path.name, *(xs.apply(parts[s][:, x_idx]) for s in SPLIT_KEYS))
    context = {s: cs.apply(parts[s][:, ctx_idx]) for s in SPLIT_KEYS} if ctx_idx else None
    return UserArrays(splits, context, x_names, c_names, xs, cs, sha)


def write_csv(path: Path, names: tuple[str, ...], values: torch.Tensor) -> Path:
    """Rows of `values` under a header of `names` (full float precision)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(names)
        w.writerows([repr(float(v)) for v in row] for row in values.tolist())
    return path
