"""Run-level steps shared by the command line and the paper experiments: train (or continue) a
run, and evaluate a run's selected checkpoint on a split, recording the result in the run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from flowforge.errors import ConfigError, DataError
from flowforge.runs.checkpoint import checkpoint_exists, load_checkpoint
from flowforge.runs.config import load_config
from flowforge.runs.data_sources import make_source
from flowforge.runs.report import write_report
from flowforge.runs.run_dir import RunPaths, load_trained, read_run_config, select_device
from flowforge.runs.trainer import Trainer, TrainState


def train_or_resume(config: str | Path, overrides: list[str], run_dir: str | Path, data_dir: str | None = None,
                    progress: bool = True) -> TrainState:
    """Train `config` with `overrides` into `run_dir`, or continue the run already there (with
    its saved config) when it holds a checkpoint."""
    paths = RunPaths(Path(run_dir))
    if checkpoint_exists(paths.last):
        cfg = load_config(None, [], base=read_run_config(run_dir).to_dict())
        return Trainer(cfg, run_dir, data_dir=data_dir, progress=progress).fit(resume=True)
    cfg = load_config(config, overrides)
    return Trainer(cfg, run_dir, data_dir=data_dir, progress=progress).fit()


def evaluate_run(run_dir: str | Path, split: str = "test", command: str = "", data_dir: str | None = None,
                 which: str = "best", samples: int | None = None, batch_size: int | None = None,
                 device: str | torch.device = "auto", progress: bool = False, importance_samples: int | None = None,
                 repeats: int | None = None, examples: int = 0) -> dict:
    """Score the run's `which` checkpoint (EMA weights) on a whole split; write RUN_DIR/eval-SPLIT.json
    and the report; return the result (the metric, its standard error, examples, provenance).
    `examples` > 0 scores the split's first `examples` only, into RUN_DIR/eval-SPLIT-firstN.json,
    which the report does not show as the run's figure (a quick or partial look, e.g. an IS estimate)."""
    device = select_device(device) if isinstance(device, str) else device
    cfg, model, state = load_trained(run_dir, which=which, device=device)
    if importance_samples or repeats:  # models trained by an ELBO (LGF): K and repeats of the IS estimate
        if not hasattr(model, "test_samples"):
            raise ConfigError("--importance-samples / --repeats apply only to models trained by an ELBO (lgf-*)")
        model.test_samples = importance_samples or model.test_samples
        model.test_repeats = repeats or model.test_repeats
    source = make_source(cfg, data_dir, state.get("data_state"))
    samples = samples or cfg.eval.samples
    data = source.tensors(split)
    split_size = len(data[0])
    if examples < 0 or examples > split_size:
        raise DataError(f"--examples {examples}: the {split} split has {split_size} examples (0 = all of them)")
    if examples:
        data = tuple(t[:examples] for t in data)
    what = f"{Path(run_dir).name} {split} split" + (f" (first {examples})" if examples else "")
    result = source.evaluate(model, data, what=what, device=device,
                             batch_size=batch_size or cfg.eval.batch_size, samples=samples, progress=progress)
    last = load_checkpoint(RunPaths(Path(run_dir)).last)  # the whole run, not the selected step
    result.update(metric=source.metric, log_prob=model.log_prob_kind, split=split, samples=samples,
                  checkpoint=state["checkpoint"],
                  step=state["step"], steps=last["step"], train_seconds=last["elapsed_seconds"],
                  best_valid=last["best_valid"], parameters=sum(p.numel() for p in model.parameters()),
                  split_examples=split_size, command=command)
    RunPaths(Path(run_dir)).eval_result(split, examples).write_text(json.dumps(result, indent=2))
    write_report(run_dir)
    return result


def evaluated(run_dir: str | Path, split: str = "test") -> dict | None:
    """The recorded evaluation of a run on `split`, if there is one."""
    path = RunPaths(Path(run_dir)).eval_result(split)
    return json.loads(path.read_text()) if path.is_file() else None
