"""The FID Inception v3 network (Szegedy et al. 2016) in plain PyTorch, with pytorch-fid's weights.

FID (Heusel et al. 2017) is defined on the 2048 pool-3 features of the TF graph
`inception-2015-12-05`; pytorch-fid (github.com/mseitzer/pytorch-fid) ports it to PyTorch as
`fid_inception_v3()` and publishes the converted weights `pt_inception-2015-12-05-6726825d.pth`.
This module re-implements that network without torchvision: the same layers under the same names
(torchvision's `Inception3` keys, `fc` with 1008 classes, no auxiliary head), so the file loads
with strict key checking, and the same input handling as pytorch-fid's
`InceptionV3([3], resize_input=True, normalize_input=True)`: images in [0, 1] are resized
bilinearly to 299 x 299 (align_corners=False) and mapped to [-1, 1]. Grey images are repeated to
three channels (what pytorch-fid's PIL `convert("RGB")` does).

tests/test_inception.py checks the keys, shapes and features against pytorch-fid's own module
code run on synthetic weights (the fixture comes from tests/fixtures/make_inception_reference.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowforge.errors import CheckpointError, ShapeError
from flowforge.evaluation.inception_blocks import BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE

PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299


class FIDInceptionV3(nn.Module):
    """pytorch-fid's FID Inception v3 up to pool 3; `fc` is only there to take the file's keys."""

    def __init__(self, max_batch: int = 100):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)
        self.max_batch = max_batch  # images per forward pass in `features` (activation memory)
        self.description = "Inception v3 pool3 (no weights loaded)"

    def pool3(self, x: Tensor) -> Tensor:
        """(N, 3, 299, 299) inputs in [-1, 1] -> (N, 2048) pool-3 features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) float images in [0, 1] -> (N, 2048), as pytorch-fid's InceptionV3 block 3."""
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return self.pool3(2 * x - 1)

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Pool-3 features of uint8 images (N, C, H, W) with C = 1 (repeated) or 3, in float32."""
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ShapeError(f"Inception features: expected (N, 1 or 3, H, W) images, got {tuple(images.shape)}")
        device = self.fc.weight.device
        out = []
        for start in range(0, len(images), self.max_batch):
            x = images[start:start + self.max_batch].to(device).float() / 255
            out.append(self(x.expand(-1, 3, -1, -1)))
        return torch.cat(out) if out else torch.empty(0, 2048, device=device)


def load_inception_state(model: FIDInceptionV3, state: object, source: str) -> None:
    """Load `state` into `model`, refusing (CheckpointError naming them) missing or unexpected keys
    and shape mismatches. BatchNorm's own rule for files without `num_batches_tracked` applies, as
    when pytorch-fid loads the file into torchvision's modules."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: expected a state dict (name -> tensor), got {type(state).__name__}")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatches are raised even when strict=False
        raise CheckpointError(f"{source}: not the FID Inception v3 weights ({PYTORCH_FID_WEIGHTS}): {err}") from None
    problems = [f"{len(keys)} {what} key(s): {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}"
                for what, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys)) if keys]
    if problems:
        raise CheckpointError(f"{source}: not the FID Inception v3 weights ({PYTORCH_FID_WEIGHTS}): "
                              + "; ".join(problems))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_fid_inception(path: str | Path, device: torch.device | str = "cpu") -> FIDInceptionV3:
    """The FID Inception network with the weights in `path` (pytorch-fid's file), in eval mode, its
    `description` naming the file and the first 8 hex digits of its SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; FID with Inception needs pytorch-fid's weights "
                              f"{PYTORCH_FID_WEIGHTS} (a release asset of github.com/mseitzer/pytorch-fid)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"{path}: not a PyTorch weights file ({type(err).__name__}: {err})") from None
    model = FIDInceptionV3()
    load_inception_state(model, state, str(path))
    model.description = f"Inception v3 pool3 (pytorch-fid weights {path.name}, sha256 {_sha256(path)[:8]})"
    model.requires_grad_(False)
    return model.to(device).eval()


__all__ = ["FIDInceptionV3", "load_inception_state", "load_fid_inception", "PYTORCH_FID_WEIGHTS"]
