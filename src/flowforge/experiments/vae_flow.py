"""Morrow & Chiu 2020 (VAEs with normalising-flow decoders), tables 1, 2 and 4 on Fashion-MNIST,
in one process so that the timings compare:

- table 1: FID of a VAE with a flow prior vs the two-stage VAE (same encoder / decoder, both with the
  scalar-gamma decoder as in the paper's table 1; the per-pixel-variance flow-prior VAE of table 2 too);
- table 2: FID and bits/dim (ELBO bound) of the full model (VAE + Glow layer, T = 0.5) vs a
  standalone Glow of the Glow layer's depth trained for the same total time, and vs the VAE
  samples without the Glow layer;
- table 4: seconds per epoch of the VAE phase, the Glow phase and the standalone Glow, and the
  ratio for equal epochs of the two phases (the paper trains both for the same epochs).

The "paper" profile uses the configs as they are (GPU); "cpu-small" shrinks every network and
trains each phase for a few minutes (figures labelled "CPU, small scale"). Finished runs are
kept and interrupted ones resume when re-run. FID uses the Inception v3 pool-3 features when
$FLOWFORGE_INCEPTION_WEIGHTS names pytorch-fid's weights file, else the project's feature network
(evaluation/fid_features.py), trained here if missing; the results name the extractor.
"""

from __future__ import annotations

import json
from pathlib import Path

from flowforge.data.images import load_image_split
from flowforge.evaluation.fid import fid_of_sampler, reference_statistics, sampler_for
from flowforge.evaluation.fid_features import (
    inception_extractor,
    inception_weights_path,
    load_feature_network,
    train_feature_network,
)
from flowforge.experiments.step_timing import interleaved_seconds_per_step
from flowforge.runs.checkpoint import load_checkpoint
from flowforge.runs.pipeline import evaluate_run, evaluated, train_or_resume
from flowforge.runs.run_dir import RunPaths, load_trained
from flowforge.viz.vae_flow_figures import glow_vs_vae_figure, latent_interpolation_figure

VAE_CONFIG = "vae-flow-fashion-mnist"
TWO_STAGE_CONFIG = "two-stage-vae-fashion-mnist"
GLOW_CONFIG = "glow-additive-single-level-fashion-mnist"
TRAIN_EXAMPLES = 55000  # Fashion-MNIST's training split after the 5,000 validation images

_QUIET = ["train.eval_every=1000000000", "train.checkpoint_every=500", "train.sample_every=1000000000",
          "train.valid_examples=2000"]
PROFILES = {
    "paper": {"vae_arch": [], "glow_arch": [], "train": [], "glow_train": [], "vae_minutes": 0.0,
              "glow_minutes": 0.0,
              "fid_samples": 10000, "feature_epochs": 5, "timing_steps": 20},
    "cpu-small": {
        "vae_arch": ["model.latent_dim=32", "model.channels=16", "model.depth=1", "model.prior_layers=4",
                     "model.prior_hidden=[256, 256]", "model.glow_depth=8", "model.glow_hidden=64",
                     "model.second_stage_width=256"],
        "glow_arch": ["model.depth=8", "model.hidden=64"],
        "train": ["train.lr=1e-3", "train.warmup_steps=50", *_QUIET],
        "vae_minutes": 3.5, "glow_minutes": 2.5, "fid_samples": 10000, "feature_epochs": 2, "timing_steps": 10,
        # the Glow layer sits on a decoder whose per-pixel std is ~1e-3 on the background (the
        # dequantisation noise): Adam at lr 1e-3 moved the zero-initialised coupling outputs enough in
        # its first steps to raise the bound from 4.8 to ~9 bits/dim; the paper's 1e-4 with a warm-up
        "glow_train": ["train.lr=1e-4", "train.warmup_steps=200"],
    },
}


def _budget(steps: int | None, minutes: float) -> list[str]:
    if steps:
        return [f"train.max_steps={steps}", "train.max_minutes=0.0"]
    return [f"train.max_minutes={minutes}"] if minutes else []


def _train(config: str, overrides: list[str], run_dir: Path, data_dir, progress: bool) -> dict:
    """Train (or finish) a run; return its recorded test evaluation and timing."""
    result = evaluated(run_dir)
    if result is None:
        train_or_resume(config, overrides, run_dir, data_dir, progress)
        result = evaluate_run(run_dir, command=f"flowforge reproduce vae-flow ({run_dir.name})", data_dir=data_dir,
                              device="cpu", progress=progress)
    last = load_checkpoint(RunPaths(run_dir).last)
    batch = last["config"]["train"]["batch_size"]
    seconds_per_step = last["elapsed_seconds"] / max(last["step"], 1)
    return {**result, "seconds_per_step": seconds_per_step, "seconds_per_epoch": seconds_per_step * (TRAIN_EXAMPLES // batch)}


def reproduce(out_dir: str | Path, steps: int | None = None, minutes: float | None = None, data_dir: str | None = None,
              progress: bool = True, profile: str = "cpu-small", fid_samples: int | None = None) -> str:
    """Train every run under `out_dir` (steps or minutes per phase: `steps`, else `minutes`, else the
    profile's), measure FIDs, bits/dim and timings, write results.md / results.json and the figures
    (results-inception.md / .json when the FIDs are Inception FIDs, so that neither replaces the other)."""
    p = PROFILES[profile]
    out = Path(out_dir)
    n_fid = fid_samples or p["fid_samples"]
    feats = out / "fid-features"
    weights = inception_weights_path()  # loaded before training, so that a wrong file fails at once
    if not weights and not (feats / "features.json").is_file():
        train_feature_network("fashion-mnist", feats, epochs=p["feature_epochs"], data_dir=data_dir, progress=progress)
    extractor = inception_extractor(weights) if weights else load_feature_network(feats)
    vae_budget = _budget(steps, minutes or p["vae_minutes"])
    glow_budget = _budget(steps, minutes or p["glow_minutes"])
    arch, common = p["vae_arch"], p["train"]
    runs = {}
    runs["flow-vae"] = _train(VAE_CONFIG, [*arch, *common, *vae_budget], out / "flow-vae", data_dir, progress)
    runs["flow-vae+glow"] = _train(VAE_CONFIG, [*arch, *common, *p["glow_train"], *glow_budget, 'model.phase="glow"',
                                                f'model.init_from="{out / "flow-vae"}"'], out / "flow-vae+glow",
                                   data_dir, progress)
    # table 1 of the paper used the scalar-gamma decoder for both priors: the same run with a flow prior
    runs["flow-vae-gamma"] = _train(VAE_CONFIG, [*arch, *common, *vae_budget, 'model.decoder_variance="scalar"'],
                                    out / "flow-vae-gamma", data_dir, progress)
    # stage 1 gets the same number of steps as the flow-prior VAE it is compared with (equal epochs, as
    # the paper): on a shared machine equal minutes can mean very different step counts
    same_steps = [f"train.max_steps={runs['flow-vae-gamma']['steps']}", "train.max_minutes=0.0"]
    runs["two-stage-1"] = _train(TWO_STAGE_CONFIG, [*arch, *common, *same_steps], out / "two-stage-1", data_dir,
                                 progress)
    runs["two-stage-2"] = _train(TWO_STAGE_CONFIG, [*arch, *common, *glow_budget, 'model.prior="two-stage"',
                                                    'model.phase="prior"', f'model.init_from="{out / "two-stage-1"}"'],
                                 out / "two-stage-2", data_dir, progress)
    total_minutes = (runs["flow-vae"]["train_seconds"] + runs["flow-vae+glow"]["train_seconds"]) / 60
    runs["glow"] = _train(GLOW_CONFIG, [*p["glow_arch"], *common, "train.max_steps=1000000000",
                                        f"train.max_minutes={total_minutes:.4f}"], out / "glow", data_dir, progress)

    test = load_image_split("fashion-mnist", "test", data_dir=data_dir).images
    models = {name: load_trained(out / name, which="best")[1] for name in runs}
    fid_rows = [
        ("table 1", "VAE + flow prior, scalar gamma decoder (decoder mean)", "flow-vae-gamma", None, True),
        ("table 1", "two-stage VAE, scalar gamma decoder (decoder mean)", "two-stage-2", None, True),
        ("table 1", "(two-stage VAE's stage 1 alone: N(0, I) prior)", "two-stage-1", None, True),
        ("table 1", "VAE + flow prior, per-pixel variance decoder (decoder mean)", "flow-vae", None, True),
        ("table 2", "full model: VAE + flow prior + Glow layer, T = 0.5", "flow-vae+glow", 0.5, True),
        ("table 2", "full model, Glow layer at T = 1.0", "flow-vae+glow", 1.0, True),
        ("table 2", "same model's VAE samples without the Glow layer", "flow-vae+glow", None, False),
        ("table 2", "standalone Glow (same depth, same total time), T = 1.0", "glow", 1.0, True),
        ("table 2", "standalone Glow, T = 0.7", "glow", 0.7, True),
    ]
    fids = []
    reference = reference_statistics(extractor, test, n_fid, progress)  # the test images' features, once
    for table, label, name, temperature, use_glow in fid_rows:
        r = fid_of_sampler(sampler_for(models[name], temperature, use_glow), extractor, test, n_fid, seed=0,
                           progress=progress, reference=reference)
        fids.append({"table": table, "model": label, "run": name, **r})
    train_images = load_image_split("fashion-mnist", "train", data_dir=data_dir).images
    per_step = interleaved_seconds_per_step({k: out / k for k in ("flow-vae", "flow-vae+glow", "glow")}, train_images,
                                            batch_size=64, steps=p["timing_steps"], rounds=4)
    figures = [str(glow_vs_vae_figure(models["flow-vae+glow"], out / "glow-vs-vae.png", temperature=0.5)),
               str(latent_interpolation_figure(models["flow-vae+glow"], out / "latent-interpolation.png"))]
    stem = "results-inception" if weights else "results"
    (out / f"{stem}.json").write_text(json.dumps({"profile": profile, "runs": runs, "fid": fids,
                                                  "interleaved_seconds_per_step": per_step, "figures": figures}, indent=2))
    text = _tables(profile, runs, fids, extractor.description, n_fid, per_step)
    (out / f"{stem}.md").write_text(text + "\n")
    return text


def _tables(profile: str, runs: dict, fids: list[dict], extractor: str, n: int, per_step: dict[str, float]) -> str:
    bound = {"flow-vae": "≤ ", "flow-vae+glow": "≤ ", "flow-vae-gamma": "≤ ", "two-stage-1": "≤ ",
             "two-stage-2": "≤ ", "glow": ""}
    lines = [f"Profile `{profile}`. FID over {n} samples vs the first {n} test images; extractor: {extractor}.", "",
             "| table | model | FID |", "|---|---|---|"]
    lines += [f"| {f['table']} | {f['model']} | {f['fid']:.2f} |" for f in fids]
    lines += ["", "Test bits/dim (`≤`: an ELBO bound, one z and one dequantisation draw per image; Glow: exact "
              "density, one dequantisation draw) and training time:", "",
              "| run | steps | train time (s) | s / step | s / epoch (55k images) | test bpd |", "|---|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['steps']} | {r['train_seconds']:.0f} | {r['seconds_per_step']:.3f} | "
                     f"{r['seconds_per_epoch']:.0f} | {bound[name]}{r['bpd']:.4f} ± {r['bpd_std_err']:.4f} |")
    epoch_steps = TRAIN_EXAMPLES // 64
    vae, glow_phase, glow = (per_step[k] * epoch_steps for k in ("flow-vae", "flow-vae+glow", "glow"))
    average = (vae + glow_phase) / 2
    lines += ["", "Table 4 analog, timed interleaved in one process (median of 4 rounds, batch 64, "
              f"{epoch_steps} steps per epoch): VAE phase {vae:.0f} s/epoch, Glow phase {glow_phase:.0f} s/epoch, "
              f"average {average:.0f} s/epoch; standalone Glow of the Glow layer's depth {glow:.0f} s/epoch; ratio "
              f"standalone / VAE-flow average = {glow / average:.2f} (paper, CIFAR-10 on a GTX 1080 Ti against a full "
              "multi-scale Glow: about 3.5). The s/step column above comes from the training runs, which ran at "
              "different times on a shared machine."]
    return "\n".join(lines)
