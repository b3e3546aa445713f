import os
from pathlib import Path

import pytest
import torch

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "flowforge" / "configs"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _has_mnist() -> bool:
    root = os.environ.get("FLOWFORGE_DATA")
    return bool(root) and (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").is_file()


needs_mnist = pytest.mark.skipif(not _has_mnist(), reason="FLOWFORGE_DATA does not hold mnist (make test sets it)")


@torch.no_grad()
def perturb(module: torch.nn.Module, seed: int, scale: float = 0.1) -> None:
    """Seeded noise on every parameter: zero-initialised couplings would make the map trivial."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        p.add_((0.01 if name.endswith("logs") else scale) * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def small_glow(coupling: str = "affine") -> torch.nn.Module:
    """A 2-level Glow on (1, 4, 4) 5-bit images, actnorm-initialised and perturbed, in eval mode."""
    from flowforge.models import create

    model = create("glow", image_shape=(1, 4, 4), levels=2, depth=2, hidden=8, coupling=coupling, n_bits=5)
    model.initialize(torch.randint(0, 256, (16, 1, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.uint8))
    perturb(model, seed=2)
    return model.eval()
