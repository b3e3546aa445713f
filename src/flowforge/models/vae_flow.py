"""VAE with a normalising-flow decoder (Morrow & Chiu 2020, "Variational Autoencoders with
Normalizing Flow Decoders"), and the two-stage VAE baseline (Dai & Wipf 2019) as one of its priors.

    q(z|x)      = N(z; mu_e(x), diag sigma_e(x)^2)                  (ConvEncoder)
    p(z)        = flow prior (exact), N(0, I), or a second-stage VAE (bound)
    p(x_bar|z)  = N(x_bar; g_mu(z), g_Sigma(z))                      eq. 3; diagonal per pixel
                                                                     or one scalar gamma (Dai & Wipf)
    p(x|z)      = p(f(x)|z) |det df/dx|                              eq. 4; f = additive Glow
                                                                     (actnorm, 1x1 conv, additive
                                                                     coupling) x glow_depth, no split

The bound is the ELBO (eq. 1) with one sample of z: log p(x) >= log p(x|z) + log p(z) - log q(z|x)
(the KL in closed form for the N(0, I) prior). Every bits/dim this model reports is therefore an
UPPER BOUND; `log_prob` returns the ELBO, not the exact log-density.

Phases (`phase`, section 3.4): "vae" trains encoder, decoder and prior (no Glow layer); "glow"
loads them from the phase-1 run `init_from`, freezes them and trains only the Glow layer (the
gradient of the ELBO then equals that of E_q[log p(x|z)]); "joint" trains everything at once;
"prior" loads encoder and decoder from `init_from` and trains only the prior (the two-stage
VAE's second stage, Dai & Wipf's stage 2 on z ~ q(z|x) freshly drawn at every step).

The Glow layer needs at least two channels to couple: single-channel images (MNIST, Fashion)
are squeezed 2x2 -> (4, H/2, W/2) before it and unsqueezed after (`glow_squeeze="auto"`), a
fixed permutation of the pixels (log|det| = 0); there is still no split, so the layer is one
flow over every dimension as in the paper.

The paper does not say how the Glow layer starts. `glow_init="identity"` (the default) starts it
as the identity map (actnorm at zero shift and unit scale, 1x1 convolutions at the identity
matrix; the additive couplings start at the identity anyway), so phase 2 starts exactly at the
phase-1 bound and can only improve on it; `glow_init="data"` is Glow's data-dependent actnorm
initialisation with random rotations. The coupling networks' inner actnorms are data-initialised
in both cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.bijections import Chain, Inverse, InvertibleConv1x1, InvertibleConv1x1LU, Squeeze
from flowforge.bijections.actnorm import data_dependent_init
from flowforge.distributions.gaussian import diag_gaussian_log_prob, diag_gaussian_sample
from flowforge.errors import ConfigError
from flowforge.models.base import ImageModel
from flowforge.models.glow import PERMUTATIONS, flow_step
from flowforge.models.latent_priors import FlowLatentPrior, GaussianLatentPrior, SecondStageVAE, gaussian_kl
from flowforge.models.registry import register
from flowforge.nets.vae_resnet import ConvDecoder, ConvEncoder
from flowforge.objectives.bits_per_dim import bits_per_dim

PHASES = ("vae", "glow", "joint", "prior")
PRIORS = ("flow", "gaussian", "two-stage")
DECODER_VARIANCES = ("pixel", "scalar")
SQUEEZE = ("auto", "always", "never")
GLOW_INITS = ("identity", "data")


def glow_layer(channels: int, depth: int, hidden: int, permutation: str = "conv1x1", squeeze: bool = False,
               seed: int = 0) -> Chain:
    """The additive Glow of section 3.3: depth x (actnorm -> 1x1 conv -> additive coupling), no
    split; optionally inside a squeeze / unsqueeze pair (for single-channel images)."""
    c = channels * 4 if squeeze else channels
    if c < 2:
        raise ConfigError(f"the Glow layer couples channel halves and needs >= 2 channels, got {c}; "
                          "set model.glow_squeeze to 'auto' or 'always'")
    steps = [flow_step(c, hidden, "additive", "sigmoid", permutation, seed + k) for k in range(depth)]
    return Chain([Squeeze(), *steps, Inverse(Squeeze())] if squeeze else steps)


@torch.no_grad()
def _start_at_identity(glow: Chain) -> None:
    """Make every flow step's actnorm and 1x1 convolution the identity (actnorms marked
    initialised so that data-dependent initialisation leaves them alone)."""
    for step in glow.layers:
        if not isinstance(step, Chain):
            continue  # the squeeze pair
        actnorm, permutation = step.layers[0], step.layers[1]
        actnorm.bias.zero_()
        actnorm.log_scale.zero_()
        actnorm.initialized.fill_(True)
        if isinstance(permutation, InvertibleConv1x1):
            permutation.weight.copy_(torch.eye(permutation.weight.shape[0]))
        elif isinstance(permutation, InvertibleConv1x1LU):
            eye = torch.eye(permutation.lower.shape[0])
            permutation.perm_matrix.copy_(eye)
            permutation.sign_s.fill_(1.0)
            permutation.lower.zero_()
            permutation.upper.zero_()
            permutation.log_s.zero_()


@register("vae-flow")
class VAEFlow(ImageModel):
    """VAE + flow prior + additive Glow decoder layer over images of shape `image_shape`."""

    log_prob_kind = "elbo"

    LEGACY_KEYS = ((r"^prior\.flow\.flow\.", "prior.flow.transform."),)
    CHOICES = {"phase": PHASES, "prior": PRIORS, "decoder_variance": DECODER_VARIANCES,
               "glow_squeeze": SQUEEZE, "permutation": PERMUTATIONS, "glow_init": GLOW_INITS}

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 64,
        channels: int = 32,
        depth: int = 3,
        decoder_variance: str = "pixel",
        prior: str = "flow",
        prior_layers: int = 16,
        prior_hidden: Sequence[int] = (1024, 1024),
        second_stage_width: int = 1024,
        second_stage_depth: int = 3,
        glow_depth: int = 32,
        glow_hidden: int = 256,
        permutation: str = "conv1x1",
        glow_squeeze: str = "auto",
        glow_init: str = "identity",
        glow_temperature: float = 0.5,
        phase: str = "vae",
        init_from: str = "",
        n_bits: int = 8,
        seed: int = 0,
    ):
        super().__init__()
        self._set_image_shape(image_shape, n_bits)
        for name, value in (("phase", phase), ("prior", prior), ("decoder_variance", decoder_variance),
                            ("glow_squeeze", glow_squeeze), ("glow_init", glow_init)):
            if value not in self.CHOICES[name]:
                raise ConfigError(f"model.{name}: expected one of {list(self.CHOICES[name])}, got {value!r}")
        c = self.image_shape[0]
        self.latent_dim, self.phase, self.prior_name = latent_dim, phase, prior
        self.init_from, self.glow_temperature = init_from, glow_temperature
        self.encoder = ConvEncoder(self.image_shape, latent_dim, channels, depth)
        self.decoder = ConvDecoder(self.image_shape, latent_dim, channels, depth,
                                   per_pixel_std=decoder_variance == "pixel")
        # Dai & Wipf's gamma: one learned log-std for every pixel, initialised at 0
        self.log_gamma = nn.Parameter(torch.zeros(())) if decoder_variance == "scalar" else None
        if prior == "flow":
            self.prior = FlowLatentPrior(latent_dim, prior_layers, prior_hidden)
        elif prior == "gaussian":
            self.prior = GaussianLatentPrior(latent_dim)
        else:
            self.prior = SecondStageVAE(latent_dim, second_stage_width, second_stage_depth)
        self.glow = None
        if phase in ("glow", "joint"):
            squeeze = glow_squeeze == "always" or (glow_squeeze == "auto" and c == 1)
            self.glow = glow_layer(c, glow_depth, glow_hidden, permutation, squeeze, seed)
            if glow_init == "identity":
                _start_at_identity(self.glow)
        frozen = {"vae": [], "joint": [], "glow": ["encoder", "decoder", "log_gamma", "prior"],
                  "prior": ["encoder", "decoder", "log_gamma"]}[phase]
        for name in frozen:
            part = getattr(self, name)
            for p in ([part] if isinstance(part, nn.Parameter) else part.parameters() if part is not None else []):
                p.requires_grad_(False)

    # ------------------------------------------------------------------------------ the pieces
    def _decode_gaussian(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-std) of p(x_bar | z), both (B, C, H, W)."""
        mean, log_std = self.decoder(z)
        if log_std is None:
            log_std = self.log_gamma.expand_as(mean)
        return mean, log_std

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One-sample ELBO terms per example (nats): `log_px_z` = log p(x|z) (Glow included),
        `kl` = log q(z|x) - log p(z) (closed form for the N(0, I) prior), `elbo` = their difference.
        Parts frozen in the current phase run without gradients."""
        self._check_input(x)
        frozen_vae = self.phase in ("glow", "prior")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_vae):
            mean_z, log_std_z = self.encoder(x)
            z = diag_gaussian_sample(mean_z, log_std_z, generator=generator)
            mean_x, log_std_x = self._decode_gaussian(z)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.phase != "glow"):
            if self.prior.has_closed_form_kl:
                kl = gaussian_kl(mean_z, log_std_z)
            else:
                kl = diag_gaussian_log_prob(z, mean_z, log_std_z) - self.prior.log_prob(z, generator)
        x_bar, logdet = self.glow(x) if self.glow is not None else (x, 0.0)
        log_px_z = diag_gaussian_log_prob(x_bar, mean_x, log_std_x) + logdet
        return {"log_px_z": log_px_z, "kl": kl, "elbo": log_px_z - kl}

    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One-sample ELBO (nats per example) of model-space x: a lower bound on log p(x)."""
        return self.elbo_terms(x, generator)["elbo"]

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The ELBO (a lower bound, not the exact log-density), so evaluation and validation report
        an upper bound on bits/dim."""
        return self.elbo(x)

    @torch.no_grad()
    def log_prob_is(self, x: Tensor, samples: int = 100, generator: torch.Generator | None = None) -> Tensor:
        """Importance-sampled log p(x) with q(z|x) as proposal (Burda et al. 2016):
        log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), a lower bound that tightens with K (with the
        second-stage-VAE prior, log p(z_k) is itself that prior's ELBO, so still a bound)."""
        self._check_input(x)
        mean_z, log_std_z = self.encoder(x)
        x_bar, logdet = self.glow(x) if self.glow is not None else (x, 0.0)
        weights = []
        for _ in range(samples):
            z = diag_gaussian_sample(mean_z, log_std_z, generator=generator)
            mean_x, log_std_x = self._decode_gaussian(z)
            weights.append(diag_gaussian_log_prob(x_bar, mean_x, log_std_x) + logdet
                           + self.prior.log_prob(z, generator) - diag_gaussian_log_prob(z, mean_z, log_std_z))
        return torch.logsumexp(torch.stack(weights).double(), dim=0) - math.log(samples)

    # ------------------------------------------------------------------------------ sampling
    def sample_latents(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        return self.prior.sample(n, temperature, generator=generator, device=self._device())

    def decode_latents(self, z: Tensor, temperature: float | None = None, generator: torch.Generator | None = None,
                       use_glow: bool = True) -> Tensor:
        """Images from latents z. Without the Glow layer (or use_glow=False): the decoder mean
        g_mu(z) (the usual VAE sample, section 2.1). With it: x_bar = g_mu + T g_sigma eps, then
        x = f^-1(x_bar), T the Glow-layer temperature (section 3.5; default glow_temperature)."""
        mean, log_std = self._decode_gaussian(z)
        if self.glow is None or not use_glow:
            return mean
        t = self.glow_temperature if temperature is None else temperature
        x_bar = diag_gaussian_sample(mean, log_std, t, generator)
        return self.glow.inverse(x_bar)[0]

    def sample(self, n: int, temperature=None, context: Tensor | None = None, generator=None) -> Tensor:
        """Samples in model space: z ~ p(z), then `decode_latents` with Glow temperature
        `temperature` (None: the model's glow_temperature)."""
        return self.decode_latents(self.sample_latents(n, 1.0, generator), temperature, generator)

    def encode(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        """The posterior mean of z (not an exact inverse: a VAE has no bijective encoder)."""
        return [self.encoder(x)[0]]

    def decode(self, latents: list[Tensor], context: Tensor | None = None) -> Tensor:
        """Glow layer at temperature 0 applied to the decoder mean (or the mean itself without it)."""
        return self.decode_latents(latents[0], temperature=0.0)

    # ------------------------------------------------------------------------------ training
    def loss(self, batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        terms = self.elbo_terms(self.prepare(images, generator), generator)
        bpd = bits_per_dim(terms["elbo"], self.num_dims, self.n_bits).mean()  # an upper bound
        return {"loss": bpd, "bpd": bpd.detach(), "kl_nats": terms["kl"].mean().detach(),
                "recon_nats": -terms["log_px_z"].mean().detach()}

    def initialize_from_runs(self, load_run) -> None:
        """Phase 2 (and the prior phase) start from the phase-1 run `init_from`, which `load_run`
        (run directory -> trained model, given by the application) reads."""
        if not self.init_from:
            if self.phase in ("glow", "prior"):
                raise ConfigError(f"model.phase = {self.phase!r} trains on top of a phase-1 run: set model.init_from "
                                  "to its run directory")
            return
        source = load_run(self.init_from)
        if not isinstance(source, VAEFlow):
            raise ConfigError(f"model.init_from = {self.init_from!r} is a {type(source).__name__} run, not vae-flow")
        parts = ["encoder", "decoder"] + (["log_gamma"] if self.log_gamma is not None else [])
        if type(source.prior) is type(self.prior):
            parts.append("prior")
        elif self.phase != "prior":
            raise ConfigError(f"model.init_from = {self.init_from!r} has prior {source.prior_name!r}, this model "
                              f"{self.prior_name!r}; only phase 'prior' may start a new prior")
        if self.glow is not None and source.glow is not None:
            parts.append("glow")
        state = {k: v for k, v in source.state_dict().items() if k.split(".")[0] in parts}
        missing = [k for k in self.state_dict() if k.split(".")[0] in parts and k not in state]
        try:
            self.load_state_dict(state, strict=False)
        except RuntimeError as err:
            raise ConfigError(f"model.init_from = {self.init_from!r}: its weights do not fit this model's "
                              f"architecture (latent_dim, channels, depth, decoder_variance must match): {err}") from None
        if missing:
            raise ConfigError(f"model.init_from = {self.init_from!r} lacks weights {missing[:3]}...")

    def initialize(self, images: Tensor, labels: Tensor | None = None, generator=None) -> int:
        """The Glow layer's actnorms initialised from data (after `initialize_from_runs`; only those
        not loaded from the phase-1 run)."""
        if self.glow is None:
            return 0
        return data_dependent_init(self.glow, lambda b: self.glow(self.prepare(b, generator)), images)
