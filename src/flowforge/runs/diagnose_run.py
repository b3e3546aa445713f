"""`flowforge diagnose RUN_DIR`: the stability diagnostics (diagnostics/diagnose.py) of a trained
run's checkpoint on a split, written with their figures beside the run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from flowforge.diagnostics.diagnose import diagnose_batch
from flowforge.diagnostics.during_training import model_inputs
from flowforge.diagnostics.maps import invertible_map
from flowforge.diagnostics.ood import noise_probes, other_dataset_probe
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors
from flowforge.diagnostics.report import render_report
from flowforge.runs.data_sources import ImageSource, make_source
from flowforge.runs.run_dir import load_trained
from flowforge.viz.stability_plots import save_error_histogram, save_spectrum


def diagnose_run(run_dir: str | Path, split: str = "test", examples: int = 1000, out: str | Path | None = None,
                 ood: bool = False, ood_examples: int = 256, data_dir: str | None = None, which: str = "best",
                 seed: int = 0, command: str = "", **options) -> dict:
    """Diagnose the run's `which` checkpoint (EMA weights) on the first `examples` of `split`;
    write OUT/diagnose.json, OUT/report.md and the figures (OUT defaults to RUN_DIR/diagnostics)."""
    cfg, model, state = load_trained(run_dir, which=which, device="cpu")
    out = Path(out) if out else Path(run_dir) / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    source = make_source(cfg, data_dir)
    gen = torch.Generator().manual_seed(seed)
    x = model_inputs(model, source.tensors(split, examples), gen)
    results, arrays = diagnose_batch(model, x, generator=gen, **options)
    results.update(run_dir=str(run_dir), split=split, checkpoint=state["checkpoint"], step=state["step"],
                   model=cfg.model.name, command=command)
    error_sets = {split: arrays["errors"]}
    if ood:
        if not isinstance(source, ImageSource):
            raise ValueError("--ood probes need an image model")
        probes = noise_probes(ood_examples, model.image_shape, model.n_bits, gen)
        other = other_dataset_probe(model, cfg.data.dataset, ood_examples, source.data_dir, gen)
        if other.images is not None:
            probes[other.name] = other.images
        forward, inverse = invertible_map(model)
        probe_errors = {k: reconstruction_errors(forward, inverse, v) for k, v in probes.items()}
        results["ood"] = {k: error_summary(e) for k, e in probe_errors.items()}
        if other.images is None:
            results["ood_skipped"] = {other.name: other.note}
            print(f"diagnose: {other.note}")
        error_sets.update(probe_errors)
    figures = {"histogram": save_error_histogram(out / "reconstruction-errors.png", error_sets).name}
    if "spectra" in arrays:
        figures["spectrum"] = save_spectrum(out / "singular-values.png", arrays["spectra"]).name
    results["figures"] = figures
    (out / "diagnose.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(render_report(results))
    return results
