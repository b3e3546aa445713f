"""Flow-GAN on Fashion-MNIST (Behrmann et al. 2021, supplement H, tables 12-13 and figure 19;
Grover et al. 2018): the same small additive Glow trained three ways with the same budget —
pure adversarial (lambda = 0; the supplement finds exploding inverses and infinite bits/dim
there), the hybrid adversarial + lambda * bits/dim, and pure maximum likelihood (lambda = inf).

lambda multiplies bits/dim here; the supplement weights its MLE loss by 1e-3, which for a
28x28 image (NLL in nats = 784 ln 2 * bpd = 543 * bpd) is about 0.5 on bits/dim, the default mixed
weight. Each run keeps the checkpoint with the best validation FID (experiments/flow_gan_training.py);
on the test split the table gives, for that checkpoint, bits/dim over all 10,000 images (inf / NaN
counted, never dropped), FID of `fid_samples` samples (T = 1) against as many test images with the
project's feature classifier (evaluation/fid_features.py; not Inception: comparable only within the
table), and diagnose_batch's reconstruction errors and power-iteration condition numbers on the
first `diagnose_images` test images; the last checkpoint's stability numbers follow, since an
inverse can explode after the selected step. Re-running keeps evaluated variants and evaluates
trained ones (train-summary.json written); an unfinished one is retrained from the start.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

from flowforge.data.images import ImageSplit, load_image_split
from flowforge.diagnostics.diagnose import diagnose_batch
from flowforge.errors import CheckpointError
from flowforge.evaluation.bits_per_dim import per_example_bpd
from flowforge.evaluation.fid import feature_statistics, image_features
from flowforge.evaluation.fid_features import load_feature_network, train_feature_network
from flowforge.experiments.flow_gan_training import GANSettings, sample_fid, train_flow_gan
from flowforge.runs.config import load_config
from flowforge.runs.run_dir import load_trained

VARIANTS = {"adversarial": 0.0, "flow-gan": 0.5, "mle": math.inf}
RESULT_FILE = "flow-gan-eval-test.json"


def _bpd_summary(values: torch.Tensor) -> dict:
    values = values.double()
    finite = values[torch.isfinite(values)]
    return {"mean": float(values.mean()), "finite_mean": float(finite.mean()) if finite.numel() else None,
            "non_finite": int(values.numel() - finite.numel()), "examples": int(values.numel())}


def _stability(model, x: torch.Tensor, condition_examples: int) -> dict:
    results, _ = diagnose_batch(model, x, jacobian_examples=0, condition_examples=condition_examples, iters=20,
                                drift_examples=16, generator=torch.Generator().manual_seed(0))
    pi = results["forward_power_iteration"]
    return {"reconstruction": results["reconstruction"], "condition": pi["condition"], "sigma_max": pi["sigma_max"],
            "sigma_min": pi["sigma_min"]}


def evaluate_variant(run_dir: Path, extractor, test: ImageSplit, fid_samples: int, diagnose_images: int,
                     condition_examples: int, reference) -> dict:
    result: dict = {}
    try:
        _, model, state = load_trained(run_dir, which="best")
    except CheckpointError as err:  # neither a finite best nor last checkpoint: nothing to score
        return {"error": str(err)}
    result["checkpoint_step"] = state["step"]
    result["valid_fid"] = state.get("valid_fid")
    result["bpd"] = _bpd_summary(per_example_bpd(model, test, batch_size=500))
    fid, bad = sample_fid(model, extractor, reference, fid_samples, seed=0)
    result["fid"] = {"fid": fid, "non_finite_samples": bad, "n": fid_samples, "extractor": extractor.description}
    x = model.prepare(test.images[:diagnose_images], torch.Generator().manual_seed(0))
    result["selected"] = _stability(model, x, condition_examples)
    try:
        _, last, last_state = load_trained(run_dir, which="last")
        result["last"] = {"step": last_state["step"], **_stability(last, x, condition_examples)}
    except CheckpointError as err:
        result["last"] = {"error": str(err)}
    return result


@torch.no_grad()
def _figure_samples(run_dir: Path, n: int = 36, seed: int = 0) -> torch.Tensor | None:
    """n samples (T = 1) of the run's selected checkpoint, or None without a finite checkpoint."""
    try:
        _, model, _ = load_trained(run_dir, which="best")
    except CheckpointError:
        return None
    return model.sample(n, 1.0, generator=torch.Generator().manual_seed(seed))


def _g(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2g}"


def table(rows: list[dict]) -> str:
    lines = ["| objective | λ (× bpd) | steps | train time (s) | skipped steps | selected step | test bpd "
             "(non-finite) | test FID (non-finite samples) | recon. err. mean / max (non-finite) | cond. median / "
             "max (non-finite) | last step: recon. max (non-finite) | last step: cond. max (non-finite) |",
             "|" + "---|" * 12]
    for r in rows:
        head = (f"| {r['variant']} | {r['mle_weight']:g} | {r['steps']} | {r['train_seconds']:.0f} | "
                f"{r['skipped_steps']} |")
        if "error" in r:
            lines.append(head + f" no readable checkpoint: {r['error']} |" + " |" * 6)
            continue
        b, f, s = r["bpd"], r["fid"], r["selected"]
        rec, cond = s["reconstruction"], s["condition"]
        last = r["last"]
        if "error" in last:
            last_cells = "last checkpoint not readable | – |"
        else:
            last_cells = (f"{_g(last['reconstruction']['max'])} ({last['reconstruction']['non_finite']}/"
                          f"{last['reconstruction']['examples']}) | {_g(last['condition']['max'])} "
                          f"({last['condition']['non_finite']}/{last['condition']['n']}) |")
        fid = "–" if f["fid"] is None else f"{f['fid']:.1f}"
        lines.append(head + f" {r['checkpoint_step']} | {b['mean']:.4f} ({b['non_finite']}/{b['examples']}) | "
                     f"{fid} ({f['non_finite_samples']}/{f['n']}) | {_g(rec['mean'])} / {_g(rec['max'])} "
                     f"({rec['non_finite']}/{rec['examples']}) | {_g(cond['median'])} / {_g(cond['max'])} "
                     f"({cond['non_finite']}/{cond['n']}) | " + last_cells)
    return "\n".join(lines)


def reproduce(out_dir: str | Path, config: str | Path = "configs/flow-gan.toml", steps: int | None = None,
              minutes: float | None = None, data_dir: str | None = None, progress: bool = True,
              fid_samples: int | None = None, variants: dict[str, float] | None = None, feature_epochs: int = 2,
              diagnose_images: int = 1000, condition_examples: int = 16, settings: GANSettings | None = None,
              figure: str | Path | None = None) -> str:
    """Train and evaluate the variants (default VARIANTS: name -> lambda) under `out_dir`; write
    results.md, results.json and flow-gan.png (and a copy at `figure`); return the table. Budget per
    variant: `steps`, else `minutes`, else the config's (5 minutes)."""
    from flowforge.viz.flow_gan_figures import flow_gan_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants = VARIANTS if variants is None else variants
    settings = settings or GANSettings()
    n_fid = fid_samples or 5000
    budget = [f"train.max_steps={steps}", "train.max_minutes=0.0"] if steps else []
    if minutes and not steps:
        budget = [f"train.max_minutes={minutes}", "train.max_steps=1000000000"]
    cfg0 = load_config(config, budget)
    feats = out / "fid-features"
    if not (feats / "features.json").is_file():
        train_feature_network(cfg0.data.dataset, feats, epochs=feature_epochs, data_dir=data_dir, progress=progress)
    extractor = load_feature_network(feats)
    test = load_image_split(cfg0.data.dataset, "test", data_dir=data_dir or cfg0.data.data_dir or None)
    reference = None
    rows = []
    for name, weight in variants.items():
        run_dir = out / name
        result_path, summary_path = run_dir / RESULT_FILE, run_dir / "train-summary.json"
        if result_path.is_file() and summary_path.is_file():
            result, summary = json.loads(result_path.read_text()), json.loads(summary_path.read_text())
        else:
            if summary_path.is_file():  # trained, not yet evaluated
                summary = json.loads(summary_path.read_text())
            else:
                import dataclasses

                cfg = load_config(config, budget)
                summary = train_flow_gan(cfg, dataclasses.replace(settings, mle_weight=weight), run_dir, extractor,
                                         data_dir, progress)
                summary_path.write_text(json.dumps(summary, indent=2))
            if reference is None:
                reference = feature_statistics(image_features(extractor, test.images[:n_fid]), "test images")
            result = evaluate_variant(run_dir, extractor, test, n_fid, diagnose_images, condition_examples, reference)
            result_path.write_text(json.dumps(result, indent=2))
        rows.append({"variant": name, "mle_weight": weight, **summary, **result})
    text = table(rows)
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    runs = {name: out / name for name in variants}
    samples = {name: _figure_samples(run) for name, run in runs.items()}
    paths = [flow_gan_figure(out / "flow-gan.png", runs, samples)]
    if figure:
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        paths.append(Path(shutil.copyfile(paths[0], figure)))
    (out / "results.md").write_text(
        f"Flow-GAN on Fashion-MNIST (Behrmann et al. 2021, supplement H, table 13 analog): budget per variant "
        f"{'%d steps' % steps if steps else '%g training minutes' % (minutes or cfg0.train.max_minutes)}; checkpoint "
        f"selected on validation FID; test split. FID: {n_fid} samples (T = 1) vs the first {n_fid} test images, "
        f"extractor: {extractor.description}. Reconstruction error ||x - F^-1(F(x))||_2 on the first "
        f"{diagnose_images} dequantised test images (model space); condition number of J_F by 20 power iterations on "
        f"the first {condition_examples}. Figure: {', '.join(map(str, paths))}.\n\n" + text + "\n")
    return text
