"""Data augmentation of uint8 image batches, drawn from a generator the caller seeds by the step
(so a resumed run augments exactly as the uninterrupted one did):

- `crop`: zero padding of `pad` pixels on each side, then a random crop back to (H, W), one
  offset per image (torchvision's RandomCrop(size, padding=pad); Behrmann et al. 2021,
  supplement G: RandomCrop(32, padding=4) for the CIFAR-10 INN classifier; the Glow runs of
  its supplement D and the public Glow code, NOTES a.7, shift by 10 % of the width and height);
- `flip`: horizontal flip of each image with probability 1/2.

Training batches only: validation, test and evaluation never see it.
"""

from __future__ import annotations

import torch
from torch import Tensor

AUGMENTATIONS = ("crop", "flip")


def augment_images(images: Tensor, ops: tuple[str, ...], pad: int, generator: torch.Generator) -> Tensor:
    """`images` (B, C, H, W) augmented by `ops` in the order of AUGMENTATIONS; the random draws
    come from `generator` (a CPU generator: the same numbers on every device)."""
    for op in ops:
        if op not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {op!r}; expected any of {list(AUGMENTATIONS)}")
    if images.dim() != 4:
        raise ValueError(f"augmentation needs images (B, C, H, W), got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    out = images
    if "crop" in ops and pad > 0:
        offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(images.device)
        padded = torch.nn.functional.pad(out, (pad, pad, pad, pad))
        rows = offsets[0][:, None] + torch.arange(h, device=images.device)  # (B, H)
        cols = offsets[1][:, None] + torch.arange(w, device=images.device)  # (B, W)
        batch = torch.arange(b, device=images.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    if "flip" in ops:
        flip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


def augment_batch(batch: tuple[Tensor, ...], ops: tuple[str, ...], pad: int,
                  generator: torch.Generator) -> tuple[Tensor, ...]:
    """(images, labels, ...) with the images augmented; no ops: the batch itself."""
    if not ops:
        return batch
    return (augment_images(batch[0], ops, pad, generator), *batch[1:])


__all__ = ["AUGMENTATIONS", "augment_images", "augment_batch"]
