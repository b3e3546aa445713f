import os
from pathlib import Path

import pytest
import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _has_mnist() -> bool:
    root = os.environ.get("FLOWFORGE_DATA")
    return bool(root) and (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").is_file()


needs_mnist = pytest.mark.skipif(not _has_mnist(), reason="FLOWFORGE_DATA does not hold mnist (make test sets it)")
