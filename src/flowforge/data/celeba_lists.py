"""CelebA's text files (Liu et al. 2015, "Deep Learning Face Attributes in the Wild"):
``Eval/list_eval_partition.txt`` and ``Anno/list_attr_celeba.txt`` as published.

``list_eval_partition.txt``: one line per image, ``000001.jpg 0``, where 0 is train (162,770
images), 1 is validation (19,867) and 2 is test (19,962); no header.
``list_attr_celeba.txt``: line 1 the image count, line 2 the 40 attribute names
(``5_o_Clock_Shadow Arched_Eyebrows ... Young``), then one line per image, ``000001.jpg -1  1 ...``,
with 1 (has the attribute) or -1 (has not), separated by one or more spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowforge.errors import DataError

__all__ = ["CELEBA_ATTRIBUTE_NAMES", "CELEBA_N_ATTRIBUTES", "PARTITION_CODES", "CelebAAttributes", "read_attributes",
           "read_partition"]

CELEBA_N_ATTRIBUTES = 40
#: The 40 attribute names of list_attr_celeba.txt's second line, in column order (as published).
CELEBA_ATTRIBUTE_NAMES: tuple[str, ...] = tuple(
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young".split())
#: list_eval_partition.txt's code of each split.
PARTITION_CODES: dict[str, int] = {"train": 0, "valid": 1, "test": 2}


@dataclass(frozen=True)
class CelebAAttributes:
    """The 40 binary attributes of the images of one split, rows in the split's image order.

    ``names``: the attribute names of list_attr_celeba.txt, in column order. ``values``: int64
    (N, 40), 1 where the image has the attribute (the file's 1) and 0 where it has not (-1).
    """

    names: tuple[str, ...]
    values: torch.Tensor

    def __post_init__(self) -> None:
        if self.values.dim() != 2 or self.values.shape[1] != len(self.names) or self.values.dtype != torch.int64:
            raise ValueError(f"CelebAAttributes: expected int64 values (N, {len(self.names)}), got "
                             f"{self.values.dtype} {tuple(self.values.shape)}")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def column(self, name: str) -> torch.Tensor:
        """The 0/1 column (N,) of one attribute, e.g. ``column("Smiling")``."""
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"unknown CelebA attribute {name!r}; expected one of {self.names}") from None


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as ASCII text ({e})") from e
    return [line for line in text.splitlines() if line.strip()]


def read_partition(path: Path) -> tuple[list[str], np.ndarray]:
    """The file names and their partition codes (0 train, 1 valid, 2 test), in file order."""
    names, codes = [], []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(f"{path}: line {number}: expected 'FILENAME 0|1|2', got {line.strip()!r}")
        names.append(fields[0])
        codes.append(int(fields[1]))
    if not names:
        raise DataError(f"{path}: empty file; expected one 'FILENAME 0|1|2' line per image")
    return names, np.asarray(codes, dtype=np.int64)


def read_attributes(path: Path) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """The 40 attribute names and, for each file name, its 0/1 row (the file's 1 / -1)."""
    lines = _lines(path)
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(f"{path}: expected the image count on line 1 and the {CELEBA_N_ATTRIBUTES} attribute "
                        "names on line 2")
    count, names = int(lines[0]), tuple(lines[1].split())
    if len(names) != CELEBA_N_ATTRIBUTES:
        raise DataError(f"{path}: line 2 names {len(names)} attributes, expected {CELEBA_N_ATTRIBUTES}")
    if len(lines) - 2 != count:
        raise DataError(f"{path}: line 1 announces {count} images but {len(lines) - 2} lines follow "
                        "(truncated or corrupt; download it again)")
    rows: dict[str, np.ndarray] = {}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != CELEBA_N_ATTRIBUTES + 1 or any(v not in ("1", "-1") for v in fields[1:]):
            raise DataError(f"{path}: line {number}: expected a file name and {CELEBA_N_ATTRIBUTES} values 1 or -1, "
                            f"got {len(fields)} fields")
        rows[fields[0]] = (np.asarray(fields[1:], dtype=np.int64) + 1) // 2
    return names, rows
