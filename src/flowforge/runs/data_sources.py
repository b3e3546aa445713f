"""What the trainer, `eval` and `sample` need from a data set, for each kind of data:

- `ImageSource` (MNIST, Fashion-MNIST): uint8 images and labels; metric bits/dim; sample grids.
- `ArraySource` (2-D toys, UCI tables, digits): float32 rows; metric NLL in nats per example;
  for 2-D data a figure of the learned density beside the data.
- `UserArraySource` (data.dataset = "array": a .npy / .npz / .csv file of your own): standardised
  rows and, with context columns, `(x, context)` batches; the standardisation is fitted on the
  training split, saved with the run (`data_state`) and used again by `eval` and `sample`, whose
  points are written back in the file's units.
- `UserImageSource` ("image-array", "image-folder"): uint8 images of your own, no labels; with
  `data.context_path`, `(images, context)` batches for a context-conditioned Glow / RealNVP.
- `EnergySource` (runs/energy_source.py; "energy-u1" ... "energy-u4"): no examples, an unnormalised
  2-D density fitted by reverse KL; metric the negative ELBO on fresh draws.
- `ClassifierSource` (an image classifier such as the INN classifier): the image data; metric
  validation accuracy (higher is better); nothing to sample.

Each source also says what `train.diagnose_every` measures on its runs (`diagnose`): stability
numbers of the weights being trained.

`make_source(cfg, data_dir, saved)`: `saved` is the `data_state()` a run's checkpoint holds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flowforge.data.arrays import ArraySplits
from flowforge.data.images import CLASS_NAMES, ImageSplit, load_image_split
from flowforge.data.registry import dataset_kind, image_shape
from flowforge.data.user_arrays import load_user_arrays, write_csv
from flowforge.data.user_images import load_user_images
from flowforge.errors import ConfigError, DataError
from flowforge.evaluation.accuracy import classification_accuracy
from flowforge.evaluation.bits_per_dim import evaluate_bpd
from flowforge.evaluation.importance import evaluate_importance
from flowforge.evaluation.nll import evaluate_nll
from flowforge.models.registry import model_class
from flowforge.runs.config import RunConfig
from flowforge.runs.point_samples import PointSamples
from flowforge.viz import save_image

DIAGNOSE_SEED = 1234  # dequantisation of the fixed diagnose batch (the trainer's validation seed)


def _stability_row(model, tensors, batch_size: int, device) -> dict:
    """diagnostics/during_training.py on a fixed validation batch: round-trip error and condition numbers."""
    from flowforge.diagnostics.during_training import DIAGNOSE_EXAMPLES, model_inputs, training_diagnostics

    batch = tuple(t[:DIAGNOSE_EXAMPLES].to(device) for t in tensors)
    x = model_inputs(model, batch, torch.Generator(device=device).manual_seed(DIAGNOSE_SEED))
    return training_diagnostics(model, x)


class ImageSource:
    metric = "bpd"
    higher_is_better = False

    def __init__(self, cfg: RunConfig, data_dir: str | None = None):
        self.cfg, self.data_dir = cfg, data_dir or cfg.data.data_dir or None
        self._splits: dict[str, ImageSplit] = {}
        self._check_context_dim(cfg)

    def _check_context_dim(self, cfg: RunConfig) -> None:
        context_dim = cfg.model.options.get("context_dim", 0)
        if context_dim:  # the batches are (images, labels): a label is no context vector
            raise ConfigError(f"model.context_dim = {context_dim}: the {cfg.data.dataset} data give images and "
                              "labels, no context vectors; use model.num_classes for the labels, or images of "
                              'your own (data.dataset = "image-array" / "image-folder") with data.context_path')

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
    def sample_contexts(self, model, n: int, device) -> torch.Tensor | None:
        """The contexts of a sample grid: classes 0, 1, ... in turn for a class-conditional model."""
        return torch.arange(n, device=device) % model.num_classes if getattr(model, "num_classes", 0) else None

    def write_samples(self, model, path: Path, temperature: float, generator: torch.Generator, n: int = 64) -> Path:
        device = next(model.parameters()).device
        x = model.sample(n, temperature=temperature, context=self.sample_contexts(model, n, device), generator=generator)
        from flowforge.viz.nonfinite import record, show  # non-finite samples: marked and counted

        images, bad = show(x, model.n_bits)
        out = save_image(images, path.with_suffix(".png"))
        record(out, bad, n)
        return out

    def data_state(self) -> dict:
        return {}

    def diagnose(self, model, tensors, batch_size: int, device) -> dict:
        return _stability_row(model, tensors, batch_size, device)


class ArraySource(PointSamples):
    metric = "nll"
    higher_is_better = False

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

    def data_state(self) -> dict:
        return {}

    def diagnose(self, model, tensors, batch_size: int, device) -> dict:
        return _stability_row(model, tensors, batch_size, device)



class UserArraySource(ArraySource):
    """data.dataset = "array": the file at data.path (data/user_arrays.py), standardised."""

    def __init__(self, cfg: RunConfig, data_dir: str | None = None, saved: dict | None = None):
        self.cfg = cfg
        d = cfg.data
        if not d.path:
            raise ConfigError("data.path: required for data.dataset = 'array' (a .npy, .npz or .csv file)")
        self.user = load_user_arrays(d.path, d.columns, d.context_columns, d.valid_fraction, d.test_fraction,
                                     d.split_seed, d.standardise, saved=(saved or {}).get("user_arrays"))
        self.data = self.user.splits
        self._check_model()

    def _check_model(self) -> None:
        if self.user.context_dim and "context_dim" not in model_class(self.cfg.model.name).DATA_ARGS:
            raise ConfigError(f"data.context_columns {list(self.user.context_columns)}: model {self.cfg.model.name!r} "
                              "takes no context; use a conditional model (e.g. maf) or drop the context columns")

    def model_args(self) -> dict:
        return {"dim": self.data.dim, **({"context_dim": self.user.context_dim} if self.user.context_dim else {})}

    def tensors(self, name: str, limit: int = 0) -> tuple[torch.Tensor, ...]:
        out = (self.split(name),) + ((self.user.context[name],) if self.user.context else ())
        return tuple(t[:limit] for t in out) if limit else out

    def evaluate(self, model, tensors, what: str, batch_size: int, device, samples: int = 1, seed: int = 0,
                 progress: bool = False) -> dict:
        """NLL in nats per example of the standardised data (the model's space), and
        `nll_original_units`: the NLL of the file's values (-log p + sum log std)."""
        context = tensors[1] if len(tensors) > 1 else None
        r = evaluate_nll(model, tensors[0], what=what, batch_size=batch_size, device=device, progress=progress,
                         context=context)
        r["nll_original_units"] = r["nll"] + self.user.x_standardiser.log_scale
        return r

    def data_state(self) -> dict:
        return {"user_arrays": self.user.state()}

    samples_suffix = ".csv"

    def sample_contexts(self, n: int) -> torch.Tensor | None:
        """Standardised contexts for n samples: the test split's context rows, in order, repeated."""
        if not self.user.context:
            return None
        c = self.user.context["test"]
        return c[torch.arange(n) % len(c)]

    @torch.no_grad()
    def sample_points(self, model, n: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
        """n samples in the file's units, the context columns (test rows) first when there are any."""
        model.eval()
        device = next(model.parameters()).device
        c = self.sample_contexts(n)
        x = model.sample(n, temperature, context=None if c is None else c.to(device), generator=generator)
        x = self.user.x_standardiser.invert(x)
        return x if c is None else torch.cat([self.user.context_standardiser.invert(c), x], 1)

    def save_points(self, points: torch.Tensor, path: Path) -> Path:
        if path.suffix.lower() != ".csv":
            return super().save_points(points, path)
        return write_csv(path, self.user.context_columns + self.user.columns, points)

    @torch.no_grad()
    def write_samples(self, model, path: Path, temperature: float, generator: torch.Generator, n: int = 0) -> Path | None:
        if self.user.context:  # a density of x alone is not defined without a context
            return None
        return super().write_samples(model, path, temperature, generator, n)


class UserImageSource(ImageSource):
    """data.dataset = "image-array" or "image-folder": images of your own at data.path (no labels),
    and with data.context_path a context vector per image for a model with context_dim."""

    def _check_context_dim(self, cfg: RunConfig) -> None:
        pass  # checked against data.context_path once the images are read

    def __init__(self, cfg: RunConfig, data_dir: str | None = None, saved: dict | None = None):
        super().__init__(cfg, data_dir)
        d = cfg.data
        if not d.path:
            raise ConfigError(f"data.path: required for data.dataset = {d.dataset!r} "
                              f"({'a .npy file of uint8 images' if d.dataset == 'image-array' else 'a folder of PNG files'})")
        self._splits = load_user_images(d.dataset, d.path, d.valid_fraction, d.test_fraction, d.split_seed, d.n_bits,
                                        d.context_path)
        shape = tuple(self._splits["train"].images.shape[1:])
        if saved and tuple(saved.get("image_shape", shape)) != shape:
            raise DataError(f"{d.path}: images are {shape}, but the run was trained on {tuple(saved['image_shape'])}")
        self.shape = shape
        self.context_dim = self._splits["train"].labels.shape[1] if d.context_path else 0
        wanted = cfg.model.options.get("context_dim", 0)
        if self.context_dim and cfg.train.diagnose_every:
            raise ConfigError("train.diagnose_every does not take context vectors yet: set it to 0 for a "
                              "context-conditioned run")
        if wanted != self.context_dim:
            raise ConfigError(f"model.context_dim = {wanted}, but data.context_path "
                              + (f"{d.context_path} holds {self.context_dim} values per image" if d.context_path
                                 else "is not set (no contexts)"))

    def model_args(self) -> dict:
        return {"image_shape": self.shape, "n_bits": self.cfg.data.n_bits}

    num_classes = 0

    def split(self, name: str) -> ImageSplit:
        return self._splits[name]

    def data_state(self) -> dict:
        return {"image_shape": list(self.shape)}

    def sample_contexts(self, model, n: int, device) -> torch.Tensor | None:
        """The test split's context rows, in order, repeated (None without a context file)."""
        if not self.context_dim:
            return None
        c = self._splits["test"].labels
        return c[torch.arange(n) % len(c)].to(device)


class ClassifierSource(ImageSource):
    """An image classifier's run: selected on validation accuracy; `diagnose` logs sigma_max,
    sigma_min and the condition number of J_F and the accuracy (Behrmann et al. 2021, supplement G)."""

    metric = "accuracy"
    higher_is_better = True

    def evaluate(self, model, tensors, what: str, batch_size: int, device, samples: int = 1, seed: int = 0,
                 progress: bool = False) -> dict:
        return classification_accuracy(model, tensors[0], tensors[1], batch_size=batch_size, device=device,
                                       progress=progress)

    def write_samples(self, model, path: Path, temperature: float, generator: torch.Generator, n: int = 0) -> None:
        return None  # a classifier has nothing to sample

    def diagnose(self, model, tensors, batch_size: int, device) -> dict:
        from flowforge.diagnostics.inn_dynamics import training_dynamics

        return training_dynamics(model, tensors, batch_size, device)


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


def make_source(cfg: RunConfig, data_dir: str | None = None, saved: dict | None = None):
    """The data source for the config's data set (`saved`: a run's `data_state()`, for data of your own)."""
    kind = dataset_kind(cfg.data.dataset)
    if (kind == "energy") != (cfg.train.objective == "reverse-kl"):
        raise ConfigError('train.objective = "reverse-kl" goes with an energy data set (energy-u1 ... energy-u4) '
                          f'and only with one; got data.dataset = "{cfg.data.dataset}", '
                          f'train.objective = "{cfg.train.objective}"')
    if kind == "energy":
        from flowforge.runs.energy_source import EnergySource

        return EnergySource(cfg, data_dir)
    if getattr(model_class(cfg.model.name), "is_classifier", False):
        if kind != "image":
            raise ConfigError(f"model '{cfg.model.name}' is a classifier: it needs a labelled image data set, "
                              f"not '{cfg.data.dataset}'")
        return ClassifierSource(cfg, data_dir)
    if kind == "user-array":
        return UserArraySource(cfg, data_dir, saved)
    if kind == "user-image":
        return UserImageSource(cfg, data_dir, saved)
    return ImageSource(cfg, data_dir) if kind == "image" else ArraySource(cfg, data_dir)
