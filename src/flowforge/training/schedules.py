"""Learning-rate schedules as pure functions of the optimizer step, with torch.optim.lr_scheduler's
formulas, so that a resumed run computes exactly the rate the uninterrupted one used (nothing
to save in the checkpoint):

- `constant`: the base rate.
- `step`: MultiStepLR semantics: the base rate multiplied by `gamma` once for every milestone
  passed (milestones in optimizer steps; epochs are converted with the steps per epoch). The
  INN classifier of Behrmann et al. 2021 (supplement G: Adam 1e-4, x0.1 at epochs 60, 120, 160)
  and the VAE with a flow decoder of Morrow & Chiu 2020 (section 4.2: halved every 250 epochs).
- `cosine`: CosineAnnealingLR's closed form (Loshchilov & Hutter 2017, eq. 5)
  eta_min + (base - eta_min) (1 + cos(pi t / T_max)) / 2, held at eta_min after T_max (torch's
  form would rise again: that is SGDR's restart, not this schedule). Over a time budget
  (`t_max_seconds`) the cosine's progress is the larger of the step and the training-time
  fractions; training time is part of the run's saved state, so a resumed run continues the
  same curve.

The linear warm-up of the public Glow code (NOTES a.7: lr * min(1, (step + 1) / warmup), as a
LambdaLR) multiplies the scheduled rate: `rate(step) = scheduled(step) * warmup(step)`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class LRSchedule:
    base_lr: float
    kind: str = "constant"
    milestones: tuple[int, ...] = ()  # optimizer steps at which `step` multiplies by gamma
    gamma: float = 0.1
    t_max: int = 1  # cosine: steps from base_lr down to eta_min
    t_max_seconds: float = 0.0  # cosine: also done after this much training time (0: steps only)
    eta_min: float = 0.0
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {self.kind!r}; expected one of {list(SCHEDULES)}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"learning-rate milestones must be in increasing order, got {list(self.milestones)}")
        if self.kind == "cosine" and self.t_max < 1:
            raise ValueError(f"cosine schedule: t_max must be at least 1, got {self.t_max}")
        if not 0 <= self.t_max_seconds < math.inf:
            raise ValueError(f"cosine schedule: t_max_seconds must be finite and >= 0, got {self.t_max_seconds}")

    @classmethod
    def from_train_config(cls, train, steps_per_epoch: int) -> LRSchedule:
        """From a run's [train] section (duck-typed: lr, lr_schedule, lr_decay_steps,
        lr_decay_epochs, lr_decay_factor, lr_cosine_steps, lr_min, warmup_steps, max_steps, max_minutes).

        A cosine schedule without `lr_cosine_steps` spans the run's budget: it reaches lr_min when
        max_steps or the max_minutes of training time runs out, whichever comes first."""
        milestones = tuple(train.lr_decay_steps) or tuple(e * steps_per_epoch for e in train.lr_decay_epochs)
        by_time = 0.0 if train.lr_cosine_steps else train.max_minutes * 60.0
        return cls(base_lr=train.lr, kind=train.lr_schedule, milestones=milestones, gamma=train.lr_decay_factor,
                   t_max=train.lr_cosine_steps or train.max_steps, t_max_seconds=by_time, eta_min=train.lr_min,
                   warmup_steps=train.warmup_steps)

    def scheduled(self, step: int, elapsed_seconds: float = 0.0) -> float:
        """The rate of optimizer step `step` (0-based) before warm-up: what the torch scheduler
        sets after `step` calls of scheduler.step(). A cosine with `t_max_seconds` is as far along
        as the larger of step / t_max and elapsed_seconds / t_max_seconds (training time so far)."""
        if self.kind == "step":
            lr = self.base_lr
            for _ in range(bisect_right(self.milestones, step)):
                lr = lr * self.gamma  # as MultiStepLR: one multiplication per milestone passed
            return lr
        if self.kind == "cosine":
            done = step / self.t_max
            if self.t_max_seconds:
                done = max(done, elapsed_seconds / self.t_max_seconds)
            return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * min(done, 1.0))) / 2
        return self.base_lr

    def warmup(self, step: int) -> float:
        """The linear warm-up factor of step `step`: min(1, (step + 1) / warmup_steps), 1 without."""
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0

    def rate(self, step: int, elapsed_seconds: float = 0.0) -> float:
        return self.scheduled(step, elapsed_seconds) * self.warmup(step)


__all__ = ["LRSchedule", "SCHEDULES"]
