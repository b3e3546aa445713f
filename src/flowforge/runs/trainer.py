"""The training loop: warm-up, clipping, EMA, validation-based selection, checkpoints, resume.

Determinism: the batch order of epoch e is a permutation drawn from (seed, e) and the
dequantisation noise of step s from (seed, s), so a run resumed from its checkpoint at step s
continues exactly as the uninterrupted run would have (same weights, same metrics).

Non-finite handling: a step whose loss or gradient norm is not finite is skipped and moves past
its batch and noise (they are drawn from the draw index, step + draws_skipped, and draws_skipped
is part of the saved state, so resumed runs stay exact); after `nonfinite_patience` consecutive
skipped steps the run rolls back to its last checkpoint and multiplies the learning rate by
`lr_backoff`. After MAX_ROLLBACKS_WITHOUT_PROGRESS rollbacks to the same checkpoint the run stops
with a NonFiniteError. A non-finite weight is never saved.

Interrupts: SIGINT and SIGTERM take effect between steps (interrupts.py): the step under way
completes, a consistent checkpoint is written and TrainingInterrupted is raised. A run directory
is locked (run_lock.py) while a Trainer writes it.

Model selection: every `eval_every` steps the EMA weights are scored on the validation split
(bits/dim for images, NLL for flat data, accuracy for a classifier: runs/data_sources.py); the best
is saved as checkpoints/best. With
`patience` > 0 training stops after that many validations without improvement (early stopping).
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from flowforge.bijections.actnorm import is_initialized
from flowforge.data.augment import augment_batch
from flowforge.errors import CheckpointError, ConfigError, NonFiniteError
from flowforge.progress import progress_bar
from flowforge.runs.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from flowforge.runs.config import RunConfig, dump_toml
from flowforge.runs.data_sources import make_source
from flowforge.runs.report import write_report
from flowforge.runs.run_dir import RunPaths, build_model, load_trained, select_device
from flowforge.runs.run_lock import RunLock
from flowforge.training.ema import EMA
from flowforge.training.interrupts import StepBoundaryInterrupts, TrainingInterrupted
from flowforge.training.metrics import MetricsLog
from flowforge.training.optimizers import keep_fast_implementation, make_optimizer
from flowforge.training.schedules import LRSchedule
from flowforge.training.speed import SpeedOptions, apply_speed_options, begin_training_step, use_compile_cache
from flowforge.training.speed_auto import resolve_train_speed
from flowforge.training.sync_free import MaskedUpdate

VALIDATION_SEED = 1234
SAMPLE_SEED = 4321
MAX_ROLLBACKS_WITHOUT_PROGRESS = 8


@dataclass
class TrainState:
    step: int = 0
    elapsed_seconds: float = 0.0
    lr_scale: float = 1.0
    metric: str = "bpd"
    best_valid: float = math.inf
    best_step: int = -1
    last_valid: float = math.nan
    last_valid_step: int = -1
    validations_since_best: int = 0
    wall_seconds: float = 0.0
    rollbacks: int = 0
    skipped_steps: int = 0
    draws_skipped: int = 0  # batches (and noise draws) passed over by skipped steps: draw = step + draws_skipped
    rollback_step: int = -1  # the checkpoint step of the latest rollback
    rollback_streak: int = 0  # consecutive rollbacks to rollback_step (no checkpoint progress)


def _checked_state(saved: dict, path: Path) -> dict:
    """The TrainState fields of a checkpoint's state.json, each of the right type and range, else
    CheckpointError naming the file and the field."""
    out = {}
    for key, default in asdict(TrainState()).items():
        if key not in saved:
            continue
        value = saved[key]
        kind = type(default)
        ok = (isinstance(value, str) if kind is str else
              isinstance(value, int) and not isinstance(value, bool) if kind is int else
              isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok:
            raise CheckpointError(f"{path}/state.json: '{key}' must be {kind.__name__}, got {value!r}")
        low = -1 if key in ("best_step", "last_valid_step", "rollback_step") else 0
        if kind is int and value < low:
            raise CheckpointError(f"{path}/state.json: '{key}' must be >= {low}, got {value!r}")
        if key in ("elapsed_seconds", "wall_seconds") and not 0 <= value < math.inf:
            raise CheckpointError(f"{path}/state.json: '{key}' must be a finite number >= 0, got {value!r}")
        if key == "lr_scale" and not 0 < value < math.inf:
            raise CheckpointError(f"{path}/state.json: 'lr_scale' must be a finite number > 0, got {value!r}")
        out[key] = value
    return out


def _seeded(seed: int, *parts: int, device: torch.device) -> torch.Generator:
    value = seed
    for p in parts:
        value = (value * 1_000_003 + p) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(value)


def _optimizer(cfg: RunConfig, model: torch.nn.Module, device: torch.device | None = None) -> torch.optim.Optimizer:
    # sync_free_skip masks the optimizer state on the device: the step counters must live there
    capturable = bool(cfg.train.sync_free_skip and device is not None and device.type == "cuda")
    return make_optimizer(cfg.train.optimizer, model.parameters(), cfg.train.lr, cfg.train.weight_decay,
                          capturable=capturable)


class Trainer:
    """Trains the model a RunConfig describes, writing everything into `run_dir`."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, data_dir: str | None = None, progress: bool = True):
        self.cfg, self.paths, self.progress = cfg, RunPaths(Path(run_dir)), progress
        self.device = self.device_for(cfg)
        self.source = make_source(cfg, data_dir)
        # small data sets live on the device for the whole run
        self.train_data = tuple(t.to(self.device) for t in self.source.tensors("train"))
        self.valid_data = self.source.tensors("valid", cfg.train.valid_examples)
        self.batch_size = cfg.train.batch_size
        # reverse KL has no examples: each step draws batch_size points from the flow itself
        self.by_reverse_kl = cfg.train.objective == "reverse-kl"
        self.num_train = self.batch_size if self.by_reverse_kl else len(self.train_data[0])
        if self.num_train < self.batch_size:
            raise ConfigError(f"train.batch_size = {self.batch_size} exceeds the {self.num_train} training examples")
        self.steps_per_epoch = self.num_train // self.batch_size
        self.schedule = LRSchedule.from_train_config(cfg.train, self.steps_per_epoch)
        self.data_args = self.source.model_args()
        self.model = build_model(cfg, self.data_args).to(self.device)
        self.ema = EMA(self.model, cfg.train.ema_decay)
        choice = resolve_train_speed(cfg.train, self.model, self.device)  # speed = "auto" only
        if choice is not None:
            print(f"speed auto: {choice.describe()}", flush=True)
        self.speed = SpeedOptions.from_train_config(cfg.train)
        use_compile_cache(self.speed)  # a resumed job or a later run here compiles from cache
        apply_speed_options(self.model, self.speed)  # training copy only
        self.optimizer = _optimizer(cfg, self.model, self.device)
        self._masked = MaskedUpdate(self.model, self.optimizer, self.ema.shadow) if cfg.train.sync_free_skip else None
        self.state = TrainState(metric=self.source.metric, best_valid=self._worst())
        # a model whose loss depends on the step (e.g. a regulariser applied every n-th step) is told it
        self._loss_takes_step = "step" in inspect.signature(self.model.loss).parameters
        self._epoch_perm: tuple[int, torch.Tensor] | None = None
        self._wall_mark = time.perf_counter()

    @staticmethod
    def device_for(cfg: RunConfig) -> torch.device:
        return select_device(cfg.train.device)

    # ------------------------------------------------------------------------------ batches
    def _batch(self, step: int) -> tuple[torch.Tensor, ...]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if self._epoch_perm is None or self._epoch_perm[0] != epoch:
            gen = _seeded(self.cfg.train.seed, 1, epoch, device=torch.device("cpu"))
            self._epoch_perm = (epoch, torch.randperm(self.num_train, generator=gen).to(self.device))
        idx = self._epoch_perm[1][i * self.batch_size : (i + 1) * self.batch_size]
        return tuple(t[idx] for t in self.train_data)

    def _augmented(self, batch: tuple[torch.Tensor, ...], draw: int) -> tuple[torch.Tensor, ...]:
        """data.augment on a training batch, drawn from (seed, draw): resumed runs stay exact."""
        gen = _seeded(self.cfg.train.seed, 5, draw, device=torch.device("cpu"))
        return augment_batch(batch, self.cfg.data.augment, self.cfg.data.augment_pad, gen)

    def _initialize(self) -> None:
        if self.by_reverse_kl:  # no data: actnorms start near the identity on standard-normal points
            gen = _seeded(self.cfg.train.seed, 2, device=torch.device("cpu"))
            x = torch.randn(self.cfg.train.init_batch, self.data_args["dim"], generator=gen).to(self.device)
            self.model.initialize(x, generator=_seeded(self.cfg.train.seed, 3, device=self.device))
            self.ema.copy_from(self.model)
            return
        n = min(self.cfg.train.init_batch, self.num_train)
        gen = _seeded(self.cfg.train.seed, 2, device=torch.device("cpu"))
        idx = torch.randperm(self.num_train, generator=gen)[:n].to(self.device)
        init_gen = _seeded(self.cfg.train.seed, 3, device=self.device)
        self.model.initialize_from_runs(lambda run_dir: load_trained(run_dir, which="best")[1])
        self.model.initialize(*(t[idx] for t in self.train_data), generator=init_gen)
        self.ema.copy_from(self.model)

    # ------------------------------------------------------------------------------ checkpoints
    def _tick_wall(self) -> None:
        now = time.perf_counter()
        self.state.wall_seconds += now - self._wall_mark
        self._wall_mark = now

    def _save(self, path: Path) -> None:
        if self._masked is not None and not self._masked.settle():
            raise NonFiniteError("a non-finite step is pending its rollback")
        self._tick_wall()
        state = asdict(self.state)
        state["config"] = self.cfg.to_dict()
        state["model_data_args"] = self.data_args
        state["data_state"] = self.source.data_state()  # e.g. the standardisation of data of your own
        save_checkpoint(path, model=self.model, ema=self.ema.shadow, optimizer=self.optimizer, state=state)

    def _restore(self, path: Path) -> None:
        saved = load_checkpoint(path, model=self.model, ema=self.ema.shadow, optimizer=self.optimizer,
                                map_location=str(self.device))
        keep_fast_implementation(self.optimizer)  # a checkpoint of a per-tensor-loop optimiser says so
        if saved.get("data_state", {}) != self.source.data_state():
            raise CheckpointError(f"{path}: the data changed since this run was trained (standardisation, columns "
                                  "or file contents differ); start a new run")
        self.state = TrainState(**_checked_state(saved, path))
        if self._masked is not None:
            self._masked.reset()
        if not is_initialized(self.model):
            raise CheckpointError(f"{path}: checkpoint has uninitialised actnorm layers")

    def _rollback(self, log: MetricsLog) -> None:
        if not checkpoint_exists(self.paths.last):
            raise NonFiniteError(
                f"training diverged (non-finite loss for {self.cfg.train.nonfinite_patience} consecutive steps) "
                "before the first checkpoint; lower train.lr or raise train.warmup_steps"
            )
        lr_scale, rollbacks, skipped = self.state.lr_scale, self.state.rollbacks, self.state.skipped_steps
        draws_skipped, rollback_step, streak = self.state.draws_skipped, self.state.rollback_step, self.state.rollback_streak
        self._restore(self.paths.last)
        self.state.lr_scale = lr_scale * self.cfg.train.lr_backoff
        self.state.rollbacks, self.state.skipped_steps = rollbacks + 1, skipped
        self.state.draws_skipped = draws_skipped  # the rolled-back steps draw fresh batches and noise
        streak = streak + 1 if rollback_step == self.state.step else 1
        self.state.rollback_step, self.state.rollback_streak = self.state.step, streak
        if streak > MAX_ROLLBACKS_WITHOUT_PROGRESS:
            raise NonFiniteError(
                f"training makes no progress: rolled back {streak} times to the checkpoint at step "
                f"{self.state.step} and the loss is still non-finite (learning rate scale {lr_scale:g}); "
                f"the run in {self.paths.root} stops at that checkpoint: lower train.lr or check the data")
        tqdm.write(f"rolled back to step {self.state.step}; learning rate scale now {self.state.lr_scale:g}")
        log.log(self.state.step, "rollback", lr=self.cfg.train.lr * self.state.lr_scale)

    def _checkpoint(self, log: MetricsLog) -> None:
        try:
            self._save(self.paths.last)
        except NonFiniteError as err:
            tqdm.write(f"not saved: {err}")
            self._rollback(log)

    # ------------------------------------------------------------------------------ evaluation
    def _worst(self) -> float:
        return -math.inf if self.source.higher_is_better else math.inf

    def _improves(self, value: float) -> bool:
        best = self.state.best_valid
        return value > best if self.source.higher_is_better else value < best

    def _validate(self, log: MetricsLog) -> float:
        metric = self.state.metric
        result = self.source.evaluate(self.ema.shadow, self.valid_data, what="validation", device=self.device,
                                      batch_size=self.cfg.eval.batch_size, seed=VALIDATION_SEED)
        value = result[metric]
        self.state.last_valid, self.state.last_valid_step = value, self.state.step
        log.log(self.state.step, "valid", elapsed_s=self.state.elapsed_seconds, **{f"valid_{metric}": value})
        if self._improves(value):
            self.state.best_valid, self.state.best_step = value, self.state.step
            self.state.validations_since_best = 0
            self._save(self.paths.best)
        else:
            self.state.validations_since_best += 1
        return value

    def _diagnose(self, log: MetricsLog) -> None:
        """Stability numbers of the weights being trained on fixed validation examples
        (train.diagnose_every; what is measured depends on the kind of run: source.diagnose)."""
        row = self.source.diagnose(self.model, self.valid_data, self.cfg.eval.batch_size, self.device)
        log.log(self.state.step, "diagnose", elapsed_s=self.state.elapsed_seconds, **row)

    def _write_samples(self) -> Path | None:
        gen = torch.Generator(device=self.device).manual_seed(SAMPLE_SEED)
        return self.source.write_samples(self.ema.shadow, self.paths.samples / f"step-{self.state.step:07d}",
                                         self.cfg.train.sample_temperature, gen)

    # ------------------------------------------------------------------------------ the loop
    def _patience_exhausted(self) -> bool:
        patience = self.cfg.train.patience
        return patience > 0 and self.state.validations_since_best >= patience

    def _agreed_seconds(self, seconds: float) -> float:
        """The training time a step counts; the distributed trainer makes every rank count rank 0's,
        so that all stop at the same step of a time budget and schedule the same rate."""
        return seconds

    def _lr(self, step: int) -> float:
        # scheduled rate x warm-up (constant: train.lr itself; training/schedules.py) x rollback scale
        return self.schedule.rate(step, self.state.elapsed_seconds) * self.state.lr_scale

    def _at_boundary(self, steps_done: int) -> bool:
        """The host reads metrics, validates, samples or saves after this many steps."""
        t = self.cfg.train
        return steps_done == t.max_steps or any(
            steps_done % every == 0 for every in (t.log_every, t.eval_every, t.sample_every, t.checkpoint_every))

    def _masked_step(self, step: int, out: dict) -> dict | None:
        """sync_free_skip: update, undone on the device if not finite; flags read at boundaries."""
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        clip = self.cfg.train.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else math.inf)
        ok = torch.isfinite(out["loss"]) & torch.isfinite(norm)
        self._mid_update = True
        self._masked.apply(ok, lambda: (self.optimizer.step(), self.ema.update(self.model, step)))
        if self._at_boundary(step + 1) and not self._masked.settle():
            return None  # fit() then counts skipped steps up to nonfinite_patience and rolls back
        return out

    def _train_step(self, step: int) -> dict | None:
        if self._masked is not None and self._masked.failed:
            return None  # a failed step awaits the rollback (see sync_free.py)
        draw = step + self.state.draws_skipped  # a skipped step moves past its batch and noise
        gen = _seeded(self.cfg.train.seed, 4, draw, device=self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(step)
        self.model.train()
        begin_training_step(self.speed)
        if self.by_reverse_kl:
            out = self.source.loss(self.model, self.batch_size, step, gen)
        else:
            batch = self._augmented(self._batch(draw), draw)
            out = self.model.loss(batch, generator=gen, **({"step": step} if self._loss_takes_step else {}))
        if self._masked is not None and self._masked.ready():
            return self._masked_step(step, out)
        if not torch.isfinite(out["loss"]):
            return None
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        clip = self.cfg.train.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else math.inf)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self._mid_update = True  # until fit() counts the step: weights and step counter disagree
        self.optimizer.step()
        self.ema.update(self.model, step)
        return out

    def fit(self, resume: bool = False) -> TrainState:
        """Train until train.max_steps or the train.max_minutes budget (summed over resumes).

        Holds the run directory's lock throughout; SIGINT / SIGTERM stop it at a step boundary
        with a consistent checkpoint (TrainingInterrupted)."""
        with RunLock(self.paths.root), StepBoundaryInterrupts() as interrupts:
            return self._fit(resume, interrupts)

    def _stop_if_interrupted(self, interrupts: StepBoundaryInterrupts, log: MetricsLog) -> None:
        """Between steps: on a pending signal save a consistent checkpoint and raise TrainingInterrupted."""
        if not interrupts.requested:
            return
        self._checkpoint(log)
        log.close()
        write_report(self.paths.root)
        raise TrainingInterrupted(interrupts.signum, self.state.step, self.paths.root)

    def _fit(self, resume: bool, interrupts: StepBoundaryInterrupts) -> TrainState:
        cfg, paths = self.cfg, self.paths
        self._mid_update = False
        paths.root.mkdir(parents=True, exist_ok=True)
        if resume:
            if not checkpoint_exists(paths.last):
                raise CheckpointError(f"{paths.last}: nothing to resume (no checkpoint in {paths.root})")
            self._restore(paths.last)
            self._wall_mark = time.perf_counter()
        else:
            if checkpoint_exists(paths.last):
                raise CheckpointError(f"{paths.root} already holds a run; pass --resume or choose another --run-dir")
            self._initialize()
        paths.config.write_text(dump_toml(cfg))
        log = MetricsLog(paths.metrics, resume_step=self.state.step if resume else None)
        if cfg.train.diagnose_every and not resume:
            self._diagnose(log)  # step 0: the initialised model
        budget = cfg.train.max_minutes * 60 or math.inf
        # with a time budget the step count is open-ended: the bar shows minutes used instead
        timed = budget < math.inf
        bar = progress_bar(total=None if timed else cfg.train.max_steps, initial=self.state.step, disable=not self.progress,
                   desc=f"train ({cfg.train.max_minutes:g} min budget)" if timed else "train", unit="step",
                   dynamic_ncols=True)
        metric = self.state.metric
        window_loss = window_metric = window_penalty = 0.0
        window_n, window_penalty_n, window_start, bad = 0, 0, self.state.elapsed_seconds, 0
        clock = time.perf_counter()
        try:
            while (self.state.step < cfg.train.max_steps and self.state.elapsed_seconds < budget
                   and not self._patience_exhausted()):
                self._stop_if_interrupted(interrupts, log)
                out = self._train_step(self.state.step)
                now = time.perf_counter()
                self.state.elapsed_seconds += self._agreed_seconds(now - clock)
                clock = now
                if out is None:
                    bad += 1
                    self.state.skipped_steps += 1
                    self.state.draws_skipped += 1
                    self._mid_update = False
                    if bad >= cfg.train.nonfinite_patience:
                        self._rollback(log)
                        bad = 0
                        bar.n = self.state.step
                    continue
                bad = 0
                self.state.step += 1
                self._mid_update = False
                bar.update(1)
                window_loss = window_loss + out["loss"].detach()  # summed on the device: no per-step sync
                window_metric = window_metric + out[metric]
                window_n += 1
                if "penalty" in out:  # a regulariser on some steps only: averaged over those
                    window_penalty = window_penalty + out["penalty"]
                    window_penalty_n += 1
                step = self.state.step
                if step % cfg.train.log_every == 0 or step == cfg.train.max_steps:
                    # training time only: validation, sampling and saving are not counted
                    rate = window_n * self.batch_size / max(self.state.elapsed_seconds - window_start, 1e-9)
                    train_metric = float(window_metric) / window_n
                    log.log(step, "train", elapsed_s=self.state.elapsed_seconds, lr=self._lr(step - 1),
                            train_loss=float(window_loss) / window_n, examples_per_s=rate,
                            **{f"train_{metric}": train_metric},
                            **({"train_penalty": float(window_penalty) / window_penalty_n} if window_penalty_n else {}))
                    bar.set_postfix({metric: f"{train_metric:.3f}", "valid": f"{self.state.last_valid:.3f}",
                                     "minutes": f"{self.state.elapsed_seconds / 60:.1f}"})
                    window_loss = window_metric = window_penalty = 0.0
                    window_n, window_penalty_n, window_start = 0, 0, self.state.elapsed_seconds
                if step % cfg.train.eval_every == 0:
                    self._validate(log)
                if cfg.train.diagnose_every and step % cfg.train.diagnose_every == 0:
                    self._diagnose(log)
                if step % cfg.train.sample_every == 0:
                    self._write_samples()
                if step % cfg.train.checkpoint_every == 0:
                    self._checkpoint(log)
                clock = time.perf_counter()  # evaluation and saving are not training time
        except KeyboardInterrupt:
            bar.close()
            if self._mid_update:  # weights already hold a step the counter does not: keep the last checkpoint
                tqdm.write(f"interrupted inside step {self.state.step}: not saved; the last checkpoint stands")
            else:
                self._checkpoint(log)  # batches and noise follow from the step, so any step resumes exactly
            log.close()
            write_report(paths.root)
            raise
        finally:
            bar.close()
        self._stop_if_interrupted(interrupts, log)
        if self._masked is not None and not self._masked.settle():
            self._rollback(log)  # a failure in the last unchecked steps of a time budget: end at the checkpoint
        if self.state.last_valid_step != self.state.step:
            self._validate(log)
        self._write_samples()
        self._checkpoint(log)
        log.close()
        write_report(paths.root)
        return self.state
