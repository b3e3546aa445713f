"""Training loop of the INN classifier (Behrmann et al. 2021, section 6; NOTES d.1/d.2).

A dedicated small loop rather than the shared Trainer: the Trainer selects on bits/dim or NLL and
writes sample grids, while a classifier is selected on validation *accuracy* and has nothing to
sample; teaching the Trainer a third metric would touch several shared training files. This loop
reuses the config (runs/config.py), the model builder and run layout (runs/run_dir.py), the
Trainer's seeded batch order and optimiser choice, and the checkpoint module, so `load_trained`
reads its runs like any other.

Used config fields: data.* (data.augment: training batches only, drawn from the step, as the
Trainer), model.*, and train.{optimizer, lr, warmup_steps, lr_schedule and its lr_* fields
(training/schedules.py; supplement G's x0.1 at epochs 60, 120, 160 is lr_schedule = "step",
lr_decay_epochs = [60, 120, 160]), batch_size, max_steps, max_minutes, grad_clip, init_batch, seed,
device, log_every, eval_every, valid_examples, diagnose_every}; eval.batch_size. With
train.diagnose_every = N > 0, every N steps a "dynamics" row (experiments/inn_dynamics.py) records
sigma_max, sigma_min and the condition number of J_F by power iteration on the first validation
images and the accuracy on the first 500 validation images (Behrmann et al. 2021, supplement G,
figures 14-17). Each step passes its index to `model.loss`, which applies the FD regulariser on
every `fd_every`-th step. A step with a non-finite loss or gradient norm is skipped and counted.
No mid-run resume: a run is minutes long, and an interrupted one is retrained from the start.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from flowforge.data.augment import augment_batch
from flowforge.errors import NonFiniteError
from flowforge.evaluation.accuracy import classification_accuracy
from flowforge.experiments.csv_rows import append_row, fresh_run_dir
from flowforge.experiments.inn_dynamics import training_dynamics
from flowforge.runs.checkpoint import save_checkpoint
from flowforge.runs.config import RunConfig
from flowforge.runs.data_sources import ImageSource
from flowforge.runs.run_dir import build_model, select_device
from flowforge.runs.trainer import _optimizer, _seeded
from flowforge.training.schedules import LRSchedule

LOG_COLUMNS = ("step", "event", "elapsed_s", "lr", "train_loss", "train_accuracy", "train_penalty",
               "valid_accuracy", "sigma_max", "sigma_min", "condition_median", "condition_max",
               "condition_non_finite", "dynamics_accuracy")


def _log_row(path: Path, **row) -> None:
    append_row(path, LOG_COLUMNS, row)


def train_classifier(cfg: RunConfig, run_dir: str | Path, data_dir: str | None = None,
                     progress: bool = True) -> dict:
    """Train the classifier `cfg` describes into `run_dir`; the checkpoint with the best
    validation accuracy goes to checkpoints/best, the final one to checkpoints/last. Returns the
    run's summary (steps, training seconds, best validation accuracy and its step, skipped steps)."""
    paths, log_path = fresh_run_dir(cfg, run_dir, "classifier-metrics.csv")
    tc = cfg.train
    device = select_device(tc.device)
    source = ImageSource(cfg, data_dir)
    images, labels = (t.to(device) for t in source.tensors("train"))
    valid = source.tensors("valid", tc.valid_examples)
    data_args = source.model_args()
    model = build_model(cfg, data_args).to(device)
    n = len(images)
    steps_per_epoch = n // tc.batch_size
    schedule = LRSchedule.from_train_config(tc, steps_per_epoch)

    gen = _seeded(tc.seed, 2, device=torch.device("cpu"))
    model.initialize(images[torch.randperm(n, generator=gen)[: min(tc.init_batch, n)].to(device)])
    optimizer = _optimizer(cfg, model)

    def save(path: Path, **extra) -> None:
        state = {"config": cfg.to_dict(), "model_data_args": data_args, **extra}
        save_checkpoint(path, model=model, state=state)

    best = {"valid_accuracy": -1.0, "step": -1, "validated_at": -1}
    skipped, elapsed, step = 0, 0.0, 0
    budget = tc.max_minutes * 60 or math.inf
    perm: tuple[int, torch.Tensor] | None = None
    window: list[dict] = []

    def validate() -> None:
        acc = classification_accuracy(model, *valid, batch_size=cfg.eval.batch_size, device=device)["accuracy"]
        _log_row(log_path, step=step, event="valid", elapsed_s=elapsed, valid_accuracy=acc)
        best["validated_at"] = step
        if acc > best["valid_accuracy"]:
            best.update(valid_accuracy=acc, step=step)
            save(paths.best, step=step, valid_accuracy=acc, elapsed_seconds=elapsed)

    def dynamics() -> None:
        row = training_dynamics(model, valid, cfg.eval.batch_size, device)
        _log_row(log_path, step=step, event="dynamics", elapsed_s=elapsed, **row)

    if tc.diagnose_every:
        dynamics()  # step 0: the initialised model
    bar = tqdm(total=tc.max_steps, desc=f"train {paths.root.name}", unit="step", disable=not progress,
               dynamic_ncols=True)
    while step < tc.max_steps and elapsed < budget:
        clock = time.perf_counter()
        epoch, i = divmod(step, steps_per_epoch)
        if perm is None or perm[0] != epoch:
            perm = (epoch, torch.randperm(n, generator=_seeded(tc.seed, 1, epoch, device=torch.device("cpu")))
                    .to(device))
        idx = perm[1][i * tc.batch_size:(i + 1) * tc.batch_size]
        lr = schedule.rate(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        batch = augment_batch((images[idx], labels[idx]), cfg.data.augment, cfg.data.augment_pad,
                              _seeded(tc.seed, 5, step, device=torch.device("cpu")))
        out = model.loss(batch, generator=_seeded(tc.seed, 4, step, device=device), step=step)
        optimizer.zero_grad(set_to_none=True)
        ok = bool(torch.isfinite(out["loss"]))
        if ok:
            out["loss"].backward()
            clip = tc.grad_clip if tc.grad_clip > 0 else math.inf
            ok = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)))
        if ok:
            optimizer.step()
            window.append({k: float(v.detach()) for k, v in out.items()})
        else:
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
        step += 1
        elapsed += time.perf_counter() - clock  # training time only: validation is not counted
        bar.update(1)
        if step % tc.log_every == 0 and window:
            # the penalty is present only on the steps it applies to: averaged over those
            keys = {k for w in window for k in w}
            mean = {k: sum(w[k] for w in window if k in w) / sum(k in w for w in window) for k in keys}
            _log_row(log_path, step=step, event="train", elapsed_s=elapsed, lr=lr, train_loss=mean["loss"],
                     train_accuracy=mean["accuracy"], train_penalty=mean.get("penalty", ""))
            bar.set_postfix(loss=f"{mean['loss']:.3f}", acc=f"{mean['accuracy']:.3f}",
                            valid=f"{best['valid_accuracy']:.3f}")
            window = []
        if step % tc.eval_every == 0:
            validate()
        if tc.diagnose_every and step % tc.diagnose_every == 0:
            dynamics()
    bar.close()
    if best["validated_at"] != step:
        validate()
    if skipped == step:
        raise NonFiniteError(f"{paths.root}: every one of the {step} training steps had a non-finite loss or gradient")
    summary = {"steps": step, "train_seconds": elapsed, "best_valid_accuracy": best["valid_accuracy"],
               "best_step": best["step"], "skipped_steps": skipped}
    save(paths.last, **summary, elapsed_seconds=elapsed)
    return summary
