"""Figure 18 analog of Behrmann et al. 2021 (appendix G): the angle between memory-saving and true
gradients while training small INN classifiers (Glow-like body without splits, 1x1 convolutions,
additive or affine coupling; `flowforge.models.inn_classifier`) on Fashion-MNIST, with and
without regularisation.

As in the paper, unregularised models train with ordinary backprop and regularised ones (FD,
NF) with memory-saving gradients; the angle is measured on a fixed set of training mini-batches
(the paper: 40 of 128 images; here `angle_batches` of `batch_size`) for the cross-entropy only,
over all parameters of the invertible body (as the public code), during training instead of from
saved checkpoints. A measurement whose memory-saving gradient is not finite is counted, not
averaged away: its mean angle is reported as NaN with the count beside it.

CPU scale: 2 levels x 4 steps, 32 hidden channels, a few hundred steps at lr 1e-3 (the paper:
3 x 16, 128 channels, 200 epochs at 1e-4) — an analog, not a reproduction.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from flowforge.bijections.memory_saving import memory_saving_attribute, memory_saving_forward
from flowforge.data.images import load_image_split
from flowforge.diagnostics.gradient_angle import gradient_angle
from flowforge.diagnostics.maps import invertible_map
from flowforge.diagnostics.reconstruction import error_summary, reconstruction_errors
from flowforge.models import create
from flowforge.objectives.regularisers import FD_WEIGHT
from flowforge.progress import progress_bar
from flowforge.viz.atomic_file import save_figure

VARIANTS = (("additive", "none"), ("additive", "fd"), ("affine", "none"), ("affine", "fd"), ("affine", "nf"))
MODEL = dict(levels=2, depth=4, hidden=32, permutation="conv1x1", scale="sigmoid", fd_coefficient=FD_WEIGHT,
             fd_every=10, nf_coefficient=1e-5)


def build_classifier(coupling: str, regulariser: str, images: torch.Tensor, seed: int = 0, **overrides):
    """An INN classifier of the study's size, actnorm initialised on `images`."""
    torch.manual_seed(seed)
    model = create("inn-classifier", image_shape=tuple(images.shape[1:]), coupling=coupling,
                   regulariser=regulariser, seed=seed, **{**MODEL, **overrides})
    model.initialize(images)
    return model


def train_step(model, optimizer, batch, step: int, memory_saving: bool, generator: torch.Generator) -> dict | None:
    """One optimiser step on the model's loss (CE + its regulariser when due), by memory-saving
    or ordinary backprop; None (and no update) when the loss or a gradient is not finite."""
    model.train()
    if memory_saving:
        with memory_saving_attribute(model, "transform"):
            out = model.loss(batch, generator=generator, step=step)
            if not torch.isfinite(out["loss"]):
                return None
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
    else:
        out = model.loss(batch, generator=generator, step=step)
        if not torch.isfinite(out["loss"]):
            return None
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
    if not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
        optimizer.zero_grad(set_to_none=True)
        return None
    optimizer.step()
    return out


def classification_angle(model, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Angle between the memory-saving and the true gradient of the cross-entropy on one batch,
    over the body's parameters (head in training mode, its running statistics restored)."""
    head_state = {k: v.clone() for k, v in model.head.state_dict().items()}
    x = model.prepare(images)

    def ce(z: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model.head(z.flatten(1)), labels)

    model.train()
    result = gradient_angle(lambda: ce(model.transform(x)[0]), lambda: ce(memory_saving_forward(model.transform, x)[0]),
                            [p for p in model.transform.parameters() if p.requires_grad])
    model.head.load_state_dict(head_state)
    return result


@torch.no_grad()
def _accuracy_and_reconstruction(model, images: torch.Tensor, labels: torch.Tensor) -> dict:
    model.eval()
    logits = model.head(model.transform(model.prepare(images))[0].flatten(1))
    finite = torch.isfinite(logits).all(dim=1)
    correct = (logits.argmax(1) == labels) & finite  # a non-finite prediction counts as wrong
    forward, inverse = invertible_map(model.transform)
    errors = error_summary(reconstruction_errors(forward, inverse, model.prepare(images)))
    return {"accuracy": float(correct.float().mean()), "non_finite_logits": int((~finite).sum()), **errors}


def run_variant(coupling: str, regulariser: str, train, test, steps: int, lr: float, batch_size: int,
                angle_every: int, angle_batches: int, seed: int = 0, progress: bool = True) -> dict:
    """Train one variant; the angle history and the final test figures."""
    gen = torch.Generator().manual_seed(seed)
    init = torch.randperm(len(train.images), generator=gen)[:512]
    model = build_classifier(coupling, regulariser, train.images[init], seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    fixed = [(train.images[i * batch_size:(i + 1) * batch_size], train.labels[i * batch_size:(i + 1) * batch_size])
             for i in range(angle_batches)]
    memory_saving = regulariser != "none"
    history, skipped, train_seconds = [], 0, 0.0
    order = torch.randperm(len(train.images), generator=gen)
    label = f"{coupling}/{regulariser}"
    for step in progress_bar(range(steps + 1), desc=label, disable=not progress, dynamic_ncols=True):
        if step % angle_every == 0 or step == steps:
            angles = [classification_angle(model, im, lb) for im, lb in fixed]
            finite = [a for a in angles if a["finite"]]
            history.append({"step": step, "angle_deg": (sum(a["angle_deg"] for a in finite) / len(finite))
                            if len(finite) == len(angles) else math.nan,
                            "angle_max_deg": max((a["angle_deg"] for a in finite), default=math.nan),
                            "non_finite_batches": len(angles) - len(finite),
                            "relative_error": (sum(a["relative_error"] for a in finite) / len(finite))
                            if finite else math.nan})
        if step == steps:
            break
        i = (step * batch_size) % (len(order) - batch_size)
        idx = order[i:i + batch_size]
        start = time.perf_counter()
        out = train_step(model, optimizer, (train.images[idx], train.labels[idx]), step, memory_saving,
                         torch.Generator().manual_seed(seed * 100_003 + step))
        train_seconds += time.perf_counter() - start
        skipped += out is None
    final = _accuracy_and_reconstruction(model, test.images, test.labels)
    return {"coupling": coupling, "regulariser": regulariser, "memory_saving_training": memory_saving,
            "history": history, "skipped_steps": skipped, "train_seconds": train_seconds, **final}


def _figure(path: Path, results: list[dict]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    for j, coupling in enumerate(("additive", "affine")):
        ax = fig.add_subplot(1, 2, j + 1)
        for r in results:
            if r["coupling"] != coupling:
                continue
            steps = [h["step"] for h in r["history"]]
            ax.plot(steps, [h["angle_deg"] for h in r["history"]], marker="o", ms=3, label=r["regulariser"])
            bad = [h["step"] for h in r["history"] if h["non_finite_batches"]]
            if bad:
                ax.axvline(bad[0], ls="--", color="gray")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("mean angle (degrees)")
        ax.set_title(f"{coupling} coupling, 1x1 conv (dashed: first non-finite)")
        ax.legend(title="regulariser")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def reproduce(out_dir: str | Path, data_dir: str | None = None, steps: int | None = None, lr: float = 1e-3,
              batch_size: int = 32, angle_every: int | None = None, angle_batches: int = 4,
              test_examples: int = 1000, progress: bool = True) -> str:
    """Train every variant, write angles.csv, gradient_angles.png and results.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = steps or 250
    angle_every = angle_every or max(1, steps // 10)
    train = load_image_split("fashion-mnist", "train", data_dir)
    test = load_image_split("fashion-mnist", "test", data_dir)
    test = type(test)(test.images[:test_examples], test.labels[:test_examples])
    results = [run_variant(c, r, train, test, steps, lr, batch_size, angle_every, angle_batches, progress=progress)
               for c, r in VARIANTS]
    _figure(out_dir / "gradient_angles.png", results)
    with open(out_dir / "angles.csv", "w") as f:
        f.write("coupling,regulariser,step,angle_deg,angle_max_deg,relative_error,non_finite_batches\n")
        for r in results:
            for h in r["history"]:
                f.write(f"{r['coupling']},{r['regulariser']},{h['step']},{h['angle_deg']},{h['angle_max_deg']},"
                        f"{h['relative_error']},{h['non_finite_batches']}\n")

    def fmt(v):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2e}"

    rows = []
    for r in results:
        angles = [h["angle_deg"] for h in r["history"]]
        finite = [a for a in angles if not math.isnan(a)]
        rows.append(f"| {r['coupling']} | {r['regulariser']} | {'memory-saving' if r['memory_saving_training'] else 'ordinary'} "
                    f"| {fmt(angles[0])} | {fmt(max(finite) if finite else math.nan)} | {fmt(angles[-1])} | "
                    f"{sum(h['non_finite_batches'] for h in r['history'])} | {100 * r['accuracy']:.1f} | "
                    f"{fmt(r['mean'])} | {fmt(r['max'])} | {r['non_finite']} | {r['skipped_steps']} | "
                    f"{r['train_seconds']:.0f} |")
    table = "\n".join([
        f"Gradient angle (degrees) between memory-saving and true gradients of the cross-entropy, mean over "
        f"{angle_batches} fixed training batches of {batch_size}, every {angle_every} of {steps} steps (Adam lr {lr:g}); "
        f"INN classifier {MODEL['levels']} levels x {MODEL['depth']} steps, hidden {MODEL['hidden']}, 1x1 conv; "
        f"FD: λ = {MODEL['fd_coefficient']:g} every {MODEL['fd_every']} steps; NF: c = {MODEL['nf_coefficient']:g}. "
        f"Test: first {test_examples} Fashion-MNIST test images; reconstruction error in model space [-0.5, 0.5).",
        "",
        "| coupling | regulariser | training gradients | angle at step 0 | max angle | final angle | "
        "non-finite angle batches | test acc % | recon mean | recon max | recon non-finite | skipped steps | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    (out_dir / "results.md").write_text(table + "\n\nFigure: gradient_angles.png; per-measurement values: angles.csv\n")
    return table
