"""`flowforge attack RUN_DIR`: the invertibility attack on a trained image model's test images,
with the error curve, the worst images and attack.json (see diagnostics/attack.py)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import Tensor

from flowforge.data.quantisation import to_model_space, to_uint8
from flowforge.diagnostics.attack import PAPER_STEP_SIZE, PAPER_STEPS, AttackResult, attack_radius, invertibility_attack
from flowforge.diagnostics.maps import invertible_map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors
from flowforge.diagnostics.summary import finite_stats
from flowforge.errors import FlowforgeError
from flowforge.progress import progress_bar

WORST_SHOWN = 8


def map_only(model):
    """A context in which the model may skip work the attack does not need: residual flows compute
    no log-det estimate inside `flowforge.bijections.residual.logdet_skipped` (when that module
    exists); other models are left as they are."""
    try:
        from flowforge.bijections.residual import logdet_skipped
    except ImportError:
        return contextlib.nullcontext()
    return logdet_skipped(model)


def cell_centres(images: Tensor, n_bits: int) -> Tensor:
    """uint8 images -> the centre of each pixel's n-bit dequantisation cell, in model space."""
    return to_model_space(images, n_bits) + attack_radius(n_bits)


def _displayable(x: Tensor, n_bits: int) -> Tensor:
    # a broken reconstruction (inf / NaN) is drawn black rather than cast to garbage
    return to_uint8(torch.nan_to_num(x, nan=-0.5, posinf=0.5, neginf=-0.5).clamp(-0.5, 0.5 - 1e-6), n_bits)


def save_worst_images(result: AttackResult, inverse_of_forward, path: Path, n_bits: int, k: int = WORST_SHOWN) -> Path:
    """Rows: natural image (cell centre), attacked image, its reconstruction, for the k examples
    with the largest final error (non-finite first)."""
    from flowforge.viz import save_rows

    order = result.final.nan_to_num(nan=float("inf"), posinf=float("inf")).argsort(descending=True)[:k]
    with torch.no_grad():
        rebuilt = inverse_of_forward(result.x_attacked[order])
    from flowforge.viz.nonfinite import mark, non_finite_rows, record, same_channels

    tensors = (result.x_natural[order], result.x_attacked[order], rebuilt)
    rows = same_channels([mark(_displayable(t, n_bits).cpu(), non_finite_rows(t)) for t in tensors])
    out = save_rows(rows, path, labels=["natural", "attacked", "F^-1(F(x'))"])
    record(out, int(non_finite_rows(rebuilt).sum()), len(rebuilt), what="reconstructions")
    return out


def summarise(result: AttackResult) -> dict:
    return {"epsilon": result.epsilon, "steps": result.errors.shape[0] - 1,
            "start": error_summary(result.errors[0]), "final": error_summary(result.final),
            "worst_during_attack": error_summary(result.worst),
            # also the examples that broke later: how large their error grew while still finite
            "largest_finite_error": finite_stats(result.errors)["max"]}


def attack_run(run_dir: str | Path, split: str = "test", examples: int = 32, steps: int = PAPER_STEPS,
               step_size: float = PAPER_STEP_SIZE, out: str | Path | None = None, seed: int = 0,
               data_dir: str | None = None, which: str = "best", command: str = "", progress: bool = True,
               batch_size: int = 64, screen: int = 0) -> tuple[dict, AttackResult]:
    """Attack the first `examples` images of `split`, or with `screen` = N the `examples` images
    of the first N whose round trip at the cell centre is worst (inf / NaN first); write
    OUT/attack.json, attack-curve.png and attack-worst.png (OUT defaults to RUN_DIR/attack);
    return the summary and the raw result."""
    from flowforge.runs.data_sources import ImageSource, make_source
    from flowforge.runs.run_dir import load_trained

    cfg, model, state = load_trained(run_dir, which=which, device="cpu")
    source = make_source(cfg, data_dir)
    if not isinstance(source, ImageSource):
        raise FlowforgeError("the invertibility attack works on image models (it attacks inside a dequantisation cell)")
    out = Path(out) if out else Path(run_dir) / "attack"
    out.mkdir(parents=True, exist_ok=True)
    if screen and screen < examples:
        raise FlowforgeError(f"--screen {screen} must be at least --examples {examples}")
    with map_only(model):
        return _attack(model, source, run_dir, split, examples, steps, step_size, out, seed, command, progress,
                       batch_size, screen, state)


def _attack(model, source, run_dir, split, examples, steps, step_size, out, seed, command, progress,
            batch_size, screen, state) -> tuple[dict, AttackResult]:
    from flowforge.viz.stability_plots import save_attack_curves

    x_nat = cell_centres(source.tensors(split, screen or examples)[0], model.n_bits)
    forward, inverse = invertible_map(model)
    chosen = torch.arange(len(x_nat))
    if screen:
        errors = reconstruction_errors(forward, inverse, x_nat, batch_size)
        chosen = errors.nan_to_num(nan=float("inf"), posinf=float("inf")).argsort(descending=True)[:examples]
        x_nat = x_nat[chosen]
    gen = torch.Generator().manual_seed(seed)
    eps = attack_radius(model.n_bits)
    parts = []
    with progress_bar(total=steps * -(-len(x_nat) // batch_size), desc="attack", unit="step", disable=not progress) as bar:
        for chunk in x_nat.split(batch_size):
            parts.append(invertibility_attack(forward, inverse, chunk, eps, steps, step_size, generator=gen,
                                              progress=bar.update))
    result = AttackResult(x_natural=torch.cat([p.x_natural for p in parts]),
                          x_attacked=torch.cat([p.x_attacked for p in parts]),
                          errors=torch.cat([p.errors for p in parts], dim=1), epsilon=eps)
    summary = summarise(result)
    summary.update(run_dir=str(run_dir), split=split, examples=len(x_nat), screened=screen, indices=chosen.tolist(),
                   step_size=step_size, seed=seed,
                   n_bits=model.n_bits, checkpoint=state["checkpoint"], step=state["step"], command=command)
    label = Path(run_dir).name
    summary["figures"] = {
        "curve": save_attack_curves(out / "attack-curve.png", {label: result.errors}).name,
        "worst": save_worst_images(result, lambda x: inverse(forward(x)), out / "attack-worst.png", model.n_bits).name,
    }
    (out / "attack.json").write_text(json.dumps(summary, indent=2))
    torch.save({"errors": result.errors, "x_attacked": result.x_attacked}, out / "attack-result.pt")
    return summary, result
