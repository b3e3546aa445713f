"""What the trainer, `eval` and `sample` need from a data set, for each kind of data:

- `ImageSource` (MNIST, Fashion-MNIST): uint8 images and labels; metric bits/dim; sample grids.
- `ArraySource` (2-D toys, UCI tables, digits): float32 rows; metric NLL in nats per example;
  for 2-D data a figure of the learned density beside the data.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flowforge.data.arrays import ArraySplits
from flowforge.data.images import CLASS_NAMES, ImageSplit, load_image_split
from flowforge.data.registry import dataset_kind, image_shape
from flowforge.evaluation.bits_per_dim import evaluate_bpd
from flowforge.evaluation.importance import evaluate_importance
from flowforge.evaluation.nll import evaluate_nll
from flowforge.runs.config import RunConfig
from flowforge.viz import save_image


class ImageSource:
    metric = "bpd"

    def __init__(self, cfg: RunConfig, data_dir: str | None = None):
        self.cfg, self.data_dir = cfg, data_dir or cfg.data.data_dir or None
        self._splits: dict[str, ImageSplit] = {}

    def model_args(self) -> dict:
        return {"image_shape": image_shape(self.cfg.data.dataset), "n_bits": self.cfg.data.n_bits}

    @property
    def num_classes(self) -> int:
        return len(CLASS_NAMES[self.cfg.data.dataset])

    def split(self, name: str) -> ImageSplit:
        if name not in self._splits:
            self._splits[name] = load_image_split(self.cfg.data.dataset, name, data_dir=self.data_dir,
                                                  n_valid=self.cfg.data.n_valid, seed=self.cfg.train.seed)
        return self._splits[name]

    def tensors(self, name: str, limit: int = 0) -> tuple[torch.Tensor, ...]:
        s = self.split(name)
        return (s.images[:limit], s.labels[:limit]) if limit else (s.images, s.labels)

    def evaluate(self, model, tensors, what: str, batch_size: int, device, samples: int = 1, seed: int = 0,
                 progress: bool = False) -> dict:
        if _trained_by_elbo(model):
            return _evaluate_by_importance(model, tensors[0], "bpd", what, batch_size, device, seed, progress)
        return evaluate_bpd(model, ImageSplit(*tensors), what=what, batch_size=batch_size, samples=samples,
                            seed=seed, device=device, progress=progress)

    @torch.no_grad()
    def write_samples(self, model, path: Path, temperature: float, generator: torch.Generator, n: int = 64) -> Path:
        device = next(model.parameters()).device
        context = torch.arange(n, device=device) % model.num_classes if getattr(model, "num_classes", 0) else None
        x = model.sample(n, temperature=temperature, context=context, generator=generator)
        from flowforge.viz.nonfinite import record, show  # non-finite samples: marked and counted

        images, bad = show(x, model.n_bits)
        out = save_image(images, path.with_suffix(".png"))
        record(out, bad, n)
        return out


class ArraySource:
    metric = "nll"

    def __init__(self, cfg: RunConfig, data_dir: str | None = None):
        self.cfg = cfg
        self.data: ArraySplits = _load_arrays(cfg, data_dir or cfg.data.data_dir or None)

    def model_args(self) -> dict:
        return {"dim": self.data.dim}

    num_classes = 0

    def split(self, name: str) -> torch.Tensor:
        return self.data.split(name)

    def tensors(self, name: str, limit: int = 0) -> tuple[torch.Tensor, ...]:
        x = self.split(name)
        return (x[:limit],) if limit else (x,)

    def evaluate(self, model, tensors, what: str, batch_size: int, device, samples: int = 1, seed: int = 0,
                 progress: bool = False) -> dict:
        if _trained_by_elbo(model):
            return _evaluate_by_importance(model, tensors[0], "nll", what, batch_size, device, seed, progress)
        return evaluate_nll(model, tensors[0], what=what, batch_size=batch_size, device=device, progress=progress)

    @torch.no_grad()
    def write_samples(self, model, path: Path, temperature: float, generator: torch.Generator, n: int = 0) -> Path | None:
        if self.data.dim != 2:
            return None
        from flowforge.viz.density2d import log_density_grid, save_density_figure

        model.eval()
        device = next(model.parameters()).device
        bounds = _bounds(self.data.test)
        xs, ys, logp = log_density_grid(lambda p: model.log_prob(p.to(device)).cpu(), bounds=bounds)
        return save_density_figure(path.with_suffix(".png"), self.data.test.numpy(),
                                   [(type(model).__name__, xs, ys, logp)], bounds=bounds)


def _trained_by_elbo(model) -> bool:
    """Localised flows: their figure is the importance-sampled estimate, with its own K per split."""
    return getattr(model, "log_prob_kind", "exact") == "importance-sampled"


def _evaluate_by_importance(model, data, metric: str, what: str, batch_size: int, device, seed: int,
                            progress: bool) -> dict:
    """Localised flows: the IS estimate with K = valid_samples for validation (one repeat) and
    K = test_samples with test_repeats repeats otherwise (evaluation/importance.py)."""
    validation = what == "validation"
    return evaluate_importance(model, data, metric, samples=model.valid_samples if validation else model.test_samples,
                               repeats=1 if validation else model.test_repeats, batch_size=batch_size, seed=seed,
                               device=device, what=what, progress=progress)


def _bounds(points: torch.Tensor, margin: float = 0.1) -> tuple[tuple[float, float], tuple[float, float]]:
    lo, hi = points.min(0).values, points.max(0).values
    pad = (hi - lo) * margin
    return ((float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1])))


def _load_arrays(cfg: RunConfig, data_dir: str | None) -> ArraySplits:
    kind, name = dataset_kind(cfg.data.dataset), cfg.data.dataset
    if kind == "toy2d":
        from flowforge.data.toy2d import load_toy_splits

        return load_toy_splits(name, seed=cfg.train.seed)
    if kind == "uci":
        from flowforge.data.uci import load_uci

        return load_uci(name, data_dir=data_dir)
    from flowforge.data.digits import load_digits_splits

    return load_digits_splits(seed=cfg.train.seed)


def make_source(cfg: RunConfig, data_dir: str | None = None):
    """The data source for the config's data set."""
    return ImageSource(cfg, data_dir) if dataset_kind(cfg.data.dataset) == "image" else ArraySource(cfg, data_dir)
