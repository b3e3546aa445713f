"""Training loop of a Flow-GAN (Grover et al. 2018; Behrmann et al. 2021, supplement H): a Glow
generator G = F^-1 trained on adversarial + lambda * bits/dim (objectives/adversarial.py) against a
spectral-normalised discriminator (nets/discriminator.py), lambda = inf being plain maximum
likelihood (no discriminator).

A dedicated loop: the shared Trainer (runs/trainer.py) has
one model and one optimiser and selects on bits/dim. It reuses the config (runs/config.py), the model
builder, the Trainer's seeded batch order and the checkpoint module, so `load_trained` reads its
runs. Every `eval_every` steps it logs to flow-gan-metrics.csv, on fixed validation images:
bits/dim (mean over all, inf / NaN counted), FID of `valid_fid` samples against as many validation
images, the reconstruction error ||x - F^-1(F(x))|| (mean, max over finite ones, non-finite count)
and power-iteration sigma_max, sigma_min and condition number of J_F (diagnostics/jacobian.py).
The checkpoint with the best validation FID is checkpoints/best. A step whose generator or
discriminator loss (or gradient norm) is non-finite is skipped and counted. No mid-run resume: an
interrupted run is retrained from the start.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from flowforge.data.quantisation import to_uint8
from flowforge.diagnostics.jacobian import singular_value_extremes
from flowforge.diagnostics.maps import invertible_map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors
from flowforge.errors import NonFiniteError
from flowforge.evaluation.bits_per_dim import per_example_bpd
from flowforge.evaluation.fid import feature_statistics, frechet_distance, image_features
from flowforge.experiments.csv_rows import append_row, fresh_run_dir
from flowforge.nets.discriminator import Discriminator
from flowforge.objectives.adversarial import discriminator_loss, flow_gan_generator_loss
from flowforge.progress import progress_bar
from flowforge.runs.checkpoint import save_checkpoint
from flowforge.runs.config import RunConfig
from flowforge.runs.data_sources import ImageSource
from flowforge.runs.run_dir import build_model
from flowforge.runs.trainer import _seeded

LOG_COLUMNS = ("step", "elapsed_s", "skipped_steps", "train_bpd", "train_adversarial", "train_d_bce", "train_gp",
               "valid_bpd", "valid_bpd_non_finite", "valid_fid", "valid_fid_non_finite", "recon_mean", "recon_max",
               "recon_non_finite", "sigma_max", "sigma_min", "condition", "condition_non_finite")


@dataclass(frozen=True)
class GANSettings:
    """What the RunConfig has no field for. Supplement H's table 12: Adam(0.5, 0.99), equal
    learning rates for G and D (5e-5 there; train.lr here, for both), batch 32, gradient penalty."""

    mle_weight: float = 0.5
    d_widths: tuple[int, ...] = (32, 64, 64, 128)
    gp_weight: float = 10.0
    betas: tuple[float, float] = (0.5, 0.99)
    temperature: float = 1.0
    valid_fid: int = 1000
    valid_bpd: int = 500
    recon_images: int = 256
    svd_images: int = 4
    power_iters: int = 10


def _log_row(path: Path, row: dict) -> None:
    append_row(path, LOG_COLUMNS, row)


def _finite_mean(values: torch.Tensor) -> tuple[float, int]:
    """(mean over all values — inf or NaN if any is —, how many are non-finite)."""
    values = values.double()
    return float(values.mean()) if values.numel() else math.nan, int((~torch.isfinite(values)).sum())


@torch.no_grad()
def sample_fid(model, extractor, reference: tuple[torch.Tensor, torch.Tensor], n: int, seed: int,
               temperature: float = 1.0, batch_size: int = 500) -> tuple[float | None, int]:
    """(FID of n samples against `reference` statistics, non-finite samples); FID None when any
    sample is non-finite (such samples are counted, never dropped)."""
    gen = torch.Generator().manual_seed(seed)
    images, bad = [], 0
    for start in range(0, n, batch_size):
        x = model.sample(min(batch_size, n - start), temperature, generator=gen)
        bad += int((~torch.isfinite(x.flatten(1))).any(dim=1).sum())
        images.append(to_uint8(torch.nan_to_num(x, nan=0.0, posinf=0.5, neginf=-0.5), model.n_bits))
    if bad:
        return None, bad
    feats = image_features(extractor, torch.cat(images))
    if not torch.isfinite(feats).all():
        return None, int((~torch.isfinite(feats)).any(dim=1).sum())
    return frechet_distance(*feature_statistics(feats, "samples"), *reference), 0


def stability_numbers(model, x: torch.Tensor, svd_images: int, power_iters: int, seed: int = 0) -> dict:
    """Reconstruction summary on x and median power-iteration singular values on its first
    `svd_images` (non-finite ones counted)."""
    forward, inverse = invertible_map(model)
    rec = error_summary(reconstruction_errors(forward, inverse, x))
    sv = singular_value_extremes(forward, inverse, x[:svd_images], iters=power_iters, exact=False,
                                 generator=torch.Generator().manual_seed(seed))
    out = {"recon_mean": rec["mean"], "recon_max": rec["max"], "recon_non_finite": rec["non_finite"]}
    for name, values in sv.items():
        finite = values[torch.isfinite(values)]
        out[name] = float(finite.median()) if finite.numel() else math.nan
    out["condition_non_finite"] = int((~torch.isfinite(sv["condition"])).sum())
    return out


def train_flow_gan(cfg: RunConfig, settings: GANSettings, run_dir: str | Path, extractor, data_dir: str | None = None,
                   progress: bool = True) -> dict:
    """Train the Glow `cfg` describes with `settings.mle_weight` into `run_dir` (CPU); returns the
    run's summary. `extractor`: the FID feature network for the validation FID."""
    from tqdm.auto import tqdm

    paths, log_path = fresh_run_dir(cfg, run_dir, "flow-gan-metrics.csv")
    tc = cfg.train
    source = ImageSource(cfg, data_dir)
    images = source.tensors("train")[0]
    valid_images = source.tensors("valid")[0]
    data_args = source.model_args()
    model = build_model(cfg, data_args)
    n, steps_per_epoch = len(images), len(images) // tc.batch_size
    adversarial = not math.isinf(settings.mle_weight)
    disc = None
    if adversarial:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tc.seed + 1)
            disc = Discriminator(model.image_shape[0], model.image_shape[1], settings.d_widths)
    model.initialize(images[torch.randperm(n, generator=_seeded(tc.seed, 2, device=torch.device("cpu")))
                            [: min(tc.init_batch, n)]], generator=_seeded(tc.seed, 3, device=torch.device("cpu")))
    opt_g = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=settings.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=tc.lr, betas=settings.betas) if disc is not None else None

    valid_fid_ref = feature_statistics(image_features(extractor, valid_images[: settings.valid_fid]), "valid images")
    x_valid = model.prepare(valid_images[: settings.recon_images], torch.Generator().manual_seed(0))
    valid_split = source.split("valid")

    def save(path: Path, **extra) -> None:
        save_checkpoint(path, model=model, state={"config": cfg.to_dict(), "model_data_args": data_args,
                                                  "gan": asdict(settings), **extra})

    best = {"valid_fid": math.inf, "step": -1}
    skipped, elapsed, step = 0, 0.0, 0
    budget = tc.max_minutes * 60 or math.inf
    perm: tuple[int, torch.Tensor] | None = None
    window: list[dict] = []
    last_eval = -1

    def evaluate() -> None:
        nonlocal last_eval
        model.eval()
        from flowforge.data.images import ImageSplit

        sub = ImageSplit(valid_split.images[: settings.valid_bpd], valid_split.labels[: settings.valid_bpd])
        bpd, bpd_bad = _finite_mean(per_example_bpd(model, sub, batch_size=500))
        fid, fid_bad = sample_fid(model, extractor, valid_fid_ref, settings.valid_fid, seed=1, temperature=settings.temperature)
        keys = {k for w in window for k in w}
        mean = {k: sum(w[k] for w in window if k in w) / sum(k in w for w in window) for k in keys}
        row = {"step": step, "elapsed_s": elapsed, "skipped_steps": skipped, "valid_bpd": bpd,
               "valid_bpd_non_finite": bpd_bad, "valid_fid": "" if fid is None else fid, "valid_fid_non_finite": fid_bad,
               **{f"train_{k}": mean.get(k, "") for k in ("bpd", "adversarial", "d_bce", "gp")},
               **stability_numbers(model, x_valid, settings.svd_images, settings.power_iters)}
        _log_row(log_path, row)
        window.clear()
        last_eval = step
        if fid is not None and fid < best["valid_fid"]:
            try:
                save(paths.best, step=step, valid_fid=fid, valid_bpd=bpd, elapsed_seconds=elapsed)
                best.update(valid_fid=fid, step=step)
            except NonFiniteError as err:  # save_checkpoint refuses non-finite weights: not selectable
                tqdm.write(f"{paths.root.name}: step {step} not saved as best ({err})")
        bar.set_postfix(bpd=f"{bpd:.3f}", fid="–" if fid is None else f"{fid:.1f}", skipped=skipped)

    bar = progress_bar(total=None if tc.max_minutes else tc.max_steps, desc=f"flow-gan {paths.root.name}", unit="step",
               disable=not progress, dynamic_ncols=True)
    while step < tc.max_steps and elapsed < budget:
        clock = time.perf_counter()
        epoch, i = divmod(step, steps_per_epoch)
        if perm is None or perm[0] != epoch:
            perm = (epoch, torch.randperm(n, generator=_seeded(tc.seed, 1, epoch, device=torch.device("cpu"))))
        batch = images[perm[1][i * tc.batch_size:(i + 1) * tc.batch_size]]
        lr = tc.lr * (min(1.0, (step + 1) / tc.warmup_steps) if tc.warmup_steps else 1.0)
        for opt in (opt_g, opt_d):
            for group in (opt.param_groups if opt is not None else []):
                group["lr"] = lr
        gen = _seeded(tc.seed, 4, step, device=torch.device("cpu"))
        model.train()
        if disc is not None:
            disc.requires_grad_(False)  # the generator's step moves only the flow
        out = flow_gan_generator_loss(model, batch, disc, settings.mle_weight, temperature=settings.temperature,
                                      generator=gen)
        opt_g.zero_grad(set_to_none=True)
        ok = bool(torch.isfinite(out["loss"]))
        if ok:
            out["loss"].backward()
            clip = tc.grad_clip if tc.grad_clip > 0 else math.inf
            ok = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)))
        record = {"bpd": float(out["bpd"])}
        if ok and disc is not None:
            disc.requires_grad_(True)
            real = model.prepare(batch, gen)
            d_out = discriminator_loss(disc, real, out["fake"], settings.gp_weight, generator=gen)
            opt_d.zero_grad(set_to_none=True)
            ok = bool(torch.isfinite(d_out["loss"]))
            if ok:
                d_out["loss"].backward()
                ok = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(disc.parameters(), math.inf)))
            if ok:
                opt_d.step()
                record.update(adversarial=float(out["adversarial"]), d_bce=float(d_out["d_bce"]),
                              gp=float(d_out.get("gp", 0.0)))
        if ok:
            opt_g.step()
            window.append(record)
        else:
            skipped += 1
        opt_g.zero_grad(set_to_none=True)
        step += 1
        elapsed += time.perf_counter() - clock  # training time only: evaluation is not counted
        bar.update(1)
        if step % tc.eval_every == 0:
            evaluate()
    if last_eval != step:
        evaluate()
    bar.close()
    summary = {"steps": step, "train_seconds": elapsed, "best_valid_fid": best["valid_fid"], "best_step": best["step"],
               "skipped_steps": skipped, "mle_weight": settings.mle_weight}
    try:
        save(paths.last, step=step, **summary, elapsed_seconds=elapsed)
        summary["last_saved"] = True
    except NonFiniteError as err:  # non-finite weights: the run ended broken, which is a result
        summary["last_saved"] = False
        summary["last_error"] = str(err)
    return summary
