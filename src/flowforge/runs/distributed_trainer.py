"""The Trainer under torchrun: DistributedDataParallel over the global batch (see distributed.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from flowforge.errors import ConfigError
from flowforge.models.registry import model_class
from flowforge.runs.config import RunConfig
from flowforge.runs.trainer import Trainer, _seeded
from flowforge.training.distributed import (
    DistInfo,
    agreed_seconds,
    cpu_group,
    distributed_step,
    init_from_env,
    initialize_sharded,
    rank_run_dir,
    sharded_input,
    wrap,
)
from flowforge.training.speed import begin_training_step


class DistributedTrainer(Trainer):
    """Same run, same checkpoints and same resume as `Trainer`; one process per device."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, data_dir: str | None = None, progress: bool = True,
                 info: DistInfo | None = None, device: torch.device | None = None):
        if cfg.train.objective != "likelihood" or getattr(model_class(cfg.model.name), "is_classifier", False):
            raise ConfigError("torchrun training is maximum likelihood on images: train a classifier or a "
                              "reverse-KL fit in one process (flowforge train without torchrun)")
        if info is None:
            info, device = init_from_env(cfg.train.device)
        self.info, self._rank_device = info, device
        super().__init__(cfg, rank_run_dir(Path(run_dir), info), data_dir, progress=progress and info.is_main)
        self.ddp = wrap(self.model, self.device)
        self._clock_group = cpu_group() if info.world_size > 1 else None

    def device_for(self, cfg: RunConfig) -> torch.device:  # type: ignore[override]
        return self._rank_device

    def _initialize(self) -> None:
        n = min(self.cfg.train.init_batch, self.num_train)
        n -= n % self.info.world_size
        gen = _seeded(self.cfg.train.seed, 2, device=torch.device("cpu"))
        idx = torch.randperm(self.num_train, generator=gen)[:n].to(self.device)
        init_gen = _seeded(self.cfg.train.seed, 3, device=self.device)
        initialize_sharded(self.model, self.train_data[0][idx], init_gen, self.info)
        self.ema.copy_from(self.model)

    def _agreed_seconds(self, seconds: float) -> float:  # type: ignore[override]
        # each rank's own clock would let one rank start a step of a time budget that another
        # skips (a hang in the next all-reduce) and give a budgeted cosine different rates
        return agreed_seconds(seconds, self.info, self._clock_group)

    def _train_step(self, step: int) -> dict | None:
        draw = step + self.state.draws_skipped  # a skipped step moves past its batch and noise
        images = self._augmented(self._batch(draw), draw)[0]  # the global batch, identical on every rank
        gen = _seeded(self.cfg.train.seed, 4, draw, device=self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(step)
        self.model.train()
        begin_training_step(self.speed)
        x = sharded_input(self.model, images, gen, self.info)
        self._mid_update = True  # until fit() counts the step
        loss = distributed_step(self.ddp, self.optimizer, x, self.cfg.train.grad_clip)
        if loss is None:
            return None
        self.ema.update(self.model, step)
        return {"loss": loss, self.state.metric: loss}
