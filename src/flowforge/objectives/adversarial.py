"""The Flow-GAN objectives (Grover et al. 2018, "Flow-GAN: combining maximum likelihood and
adversarial learning in generative models", eq. 5; Behrmann et al. 2021, supplement H).

The flow is the generator G = F^-1 applied to z ~ p_Z. With D a discriminator returning logits:

- discriminator: binary cross-entropy, real -> 1 and generated -> 0, plus the gradient penalty of
  Gulrajani et al. 2017 (eq. 3), gp * E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates
  x_hat between real and generated images (supplement H: BCE loss "further regularised with
  gradient penalty");
- generator: the non-saturating loss -log sigmoid(D(G(z))) (Goodfellow et al. 2014) plus
  lambda * bits/dim of the real batch (the MLE term in bits/dim, objectives/bits_per_dim.py).

lambda = 0 is pure adversarial training; lambda = inf is pure maximum likelihood: the loss is then
the model's plain bits/dim loss and no generated images or discriminator are used at all.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] at x_hat = a real + (1 - a) fake, a ~ U(0, 1) per example;
    differentiable in D's parameters (double backward)."""
    a = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator, device=real.device, dtype=real.dtype)
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def discriminator_loss(discriminator: nn.Module, real: Tensor, fake: Tensor, gp_weight: float = 10.0,
                       generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """BCE(D(real), 1) + BCE(D(fake), 0) + gp_weight * gradient penalty. `fake` is detached: this
    loss moves only the discriminator."""
    real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
    bce = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
           + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    out = {"d_bce": bce.detach(), "d_real": torch.sigmoid(real_logits).mean().detach(),
           "d_fake": torch.sigmoid(fake_logits).mean().detach()}
    loss = bce
    if gp_weight:
        gp = gradient_penalty(discriminator, real, fake, generator)
        out["gp"] = gp.detach()
        loss = loss + gp_weight * gp
    out["loss"] = loss
    return out


def generator_adversarial_loss(discriminator: nn.Module, fake: Tensor) -> Tensor:
    """Non-saturating -log sigmoid(D(fake)) = softplus(-D(fake)), mean over the batch."""
    return F.softplus(-discriminator(fake)).mean()


def flow_gan_generator_loss(model, images: Tensor, discriminator: nn.Module | None, mle_weight: float,
                            n_fake: int | None = None, temperature: float = 1.0,
                            generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """The generator's hybrid loss: adversarial + `mle_weight` * bits/dim of the uint8 `images`
    (the model's own `loss`, one dequantisation draw from `generator`). `mle_weight` = inf: the
    bits/dim alone, exactly `model.loss(images)` (no samples drawn); 0: the adversarial term alone
    (the bits/dim is still computed and returned for logging, without gradient). Returns "loss",
    "bpd", "adversarial" (absent for pure MLE) and "fake" (the generated batch, absent for pure MLE)."""
    if mle_weight < 0 or math.isnan(mle_weight):
        raise ValueError(f"mle_weight must be >= 0 (inf for pure maximum likelihood), got {mle_weight}")
    if math.isinf(mle_weight):
        out = model.loss(images, generator=generator)
        return {"loss": out["loss"], "bpd": out["loss"].detach()}
    if discriminator is None:
        raise ValueError("a finite mle_weight needs a discriminator")
    if mle_weight > 0:
        bpd = model.loss(images, generator=generator)["loss"]
    else:
        with torch.no_grad():
            bpd = model.loss(images, generator=generator)["loss"]
    fake = model.sample(n_fake or images.shape[0], temperature, generator=generator)
    adversarial = generator_adversarial_loss(discriminator, fake)
    loss = adversarial + mle_weight * bpd if mle_weight > 0 else adversarial
    return {"loss": loss, "bpd": bpd.detach(), "adversarial": adversarial.detach(), "fake": fake}
