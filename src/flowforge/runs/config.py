"""Run configuration: typed sections read from TOML, overridden by `--set section.field=value`,
validated at the boundary (errors name the file, the field and what was expected) and saved
resolved in the run directory and inside every checkpoint."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from flowforge.data.registry import DATASET_KINDS
from flowforge.errors import ConfigError
from flowforge.models.registry import validate_options
from flowforge.runs.recipe_checks import check_recipe
from flowforge.runs.shipped_configs import config_path


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"
    n_bits: int = 8
    n_valid: int = 5000
    data_dir: str = ""
    # training batches only, seeded by the step (data/augment.py): any of "crop", "flip"
    augment: tuple[str, ...] = ()
    augment_pad: int = 4  # "crop": zero padding on each side before the random crop back to size
    # data of your own (dataset "array", "image-array", "image-folder"; data/user_arrays.py)
    path: str = ""
    columns: tuple = ()
    context_columns: tuple = ()
    context_path: str = ""  # image-array / image-folder: a .npy of context vectors, one row per image
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    standardise: bool = True

    CHOICES = {"dataset": tuple(DATASET_KINDS)}
    RANGES = {"n_bits": (1, 8), "n_valid": (1, 59999), "augment_pad": (0, 64), "valid_fraction": (0.0, 0.9),
              "test_fraction": (0.0, 0.9)}


@dataclass
class ModelConfig:
    """`name` picks a registered model; every other field of the [model] table is a keyword
    argument of its constructor, checked against the constructor's signature and defaults."""

    name: str = "glow"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    optimizer: str = "adamax"
    lr: float = 1e-3
    warmup_steps: int = 500
    batch_size: int = 64
    max_steps: int = 10000
    max_minutes: float = 0.0
    grad_clip: float = 50.0
    weight_decay: float = 0.0  # L2 penalty of torch's Adam / Adamax (the PyTorch reference code's); 0 = off
    ema_decay: float = 0.99
    init_batch: int = 256
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    eval_every: int = 1000
    valid_examples: int = 0
    checkpoint_every: int = 1000
    sample_every: int = 1000
    sample_temperature: float = 0.7
    patience: int = 0
    nonfinite_patience: int = 5
    lr_backoff: float = 0.5
    diagnose_every: int = 0  # stability numbers to metrics.csv every N steps (flowforge.diagnostics); 0 = off
    # speed switches (training/speed.py), off by default
    channels_last: bool = False
    coupling_dtype: str = "float32"
    compile: bool = False
    compile_flow: bool = False
    cuda_graphs: bool = False
    compile_regional: bool = True  # compile_flow as one step's graph reused by all steps of its shape
    sync_free_skip: bool = False
    # learning-rate schedule (training/schedules.py), times the warm-up
    lr_schedule: str = "constant"
    lr_decay_steps: tuple[int, ...] = ()  # "step": milestones in optimizer steps ...
    lr_decay_epochs: tuple[int, ...] = ()  # ... or in epochs (one of the two)
    lr_decay_factor: float = 0.1
    lr_cosine_steps: int = 0  # "cosine": steps from lr down to lr_min; 0 = the budget (max_steps / max_minutes)
    lr_min: float = 0.0

    # "auto": the switches above chosen from the hardware and the run's length (training/speed_auto.py),
    # the choice and its reason written to speed_choice (and so to config.toml) once, at the start
    speed: str = "manual"
    speed_choice: str = ""

    # "likelihood": maximum likelihood on the data's examples; "reverse-kl": fit the flow to an
    # unnormalised log-density (an energy data set) by KL(q || p) from batch_size draws per step,
    # with the annealed target beta_t log p~ over the first kl_anneal_steps steps (0 = beta 1 throughout)
    objective: str = "likelihood"
    kl_anneal_steps: int = 0

    CHOICES = {"objective": ("likelihood", "reverse-kl"), "optimizer": ("adamax", "adam"), "device": ("auto", "cpu", "cuda"),
               "coupling_dtype": ("float32", "bfloat16", "float16"), "lr_schedule": ("constant", "step", "cosine"),
               "speed": ("manual", "auto")}
    RANGES = {
        "lr": (0.0, 10.0), "warmup_steps": (0, 10**9), "batch_size": (1, 10**6), "max_steps": (1, 10**9),
        "max_minutes": (0.0, 10**6), "grad_clip": (0.0, 1e12), "weight_decay": (0.0, 1.0), "ema_decay": (0.0, 0.999999),
        "init_batch": (1, 10**6), "log_every": (1, 10**9), "eval_every": (1, 10**9),
        "valid_examples": (0, 10**9), "checkpoint_every": (1, 10**9), "sample_every": (1, 10**9),
        "sample_temperature": (0.0, 10.0), "patience": (0, 10**9), "nonfinite_patience": (1, 10**6), "lr_backoff": (0.0, 1.0),
        "diagnose_every": (0, 10**9), "kl_anneal_steps": (0, 10**9),
        "lr_decay_factor": (0.0, 1.0), "lr_cosine_steps": (0, 10**9), "lr_min": (0.0, 10.0),
    }


@dataclass
class EvalConfig:
    batch_size: int = 500
    samples: int = 1

    CHOICES = {}
    RANGES = {"batch_size": (1, 10**6), "samples": (1, 10**6)}


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out = {}
        for section in fields(self):
            sub = getattr(self, section.name)
            if isinstance(sub, ModelConfig):
                out[section.name] = {"name": sub.name, **sub.options}
            else:
                out[section.name] = {f.name: getattr(sub, f.name) for f in fields(type(sub))}
        return out


_SECTION_CLASSES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}


def _coerce(value: Any, default: Any, where: str) -> Any:
    """`value` as the type of `default` (ints widen to floats; lists become tuples where the
    default is a tuple, element by element), else ConfigError naming `where`."""
    kind = type(default)
    if kind in (list, tuple):
        if isinstance(value, (list, tuple)):
            items = [_coerce(v, default[0], f"{where}[{i}]") if default else v for i, v in enumerate(value)]
            return kind(items)
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")


# sizes and counts of model constructors: 0 or less would build an empty or broken model
POSITIVE_MODEL_OPTIONS = frozenset({"levels", "depth", "hidden", "layers", "blocks", "channels", "latent_dim",
                                    "st_blocks", "st_hidden", "pq_blocks", "pq_hidden", "scales", "u_dim", "u_channels",
                                    "glow_hidden", "second_stage_width", "train_samples", "valid_samples",
                                    "test_samples", "test_repeats"})


def _build_model(values: dict, source: str) -> ModelConfig:
    values = dict(values)
    name = values.pop("name", ModelConfig.name)
    if not isinstance(name, str):
        raise ConfigError(f"{source}: model.name: expected str, got {name!r}")
    try:
        defaults, choices = validate_options(name, values)
    except ValueError as err:
        raise ConfigError(f"{source}: model.name: {err}") from None
    options = dict(defaults)  # resolved: every option, defaults included
    for key, value in values.items():
        where = f"{source}: model.{key}"
        if key not in defaults:
            raise ConfigError(f"{where}: not an option of model {name!r}; expected one of {sorted(defaults)}")
        value = _coerce(value, defaults[key], where)
        if key in choices and value not in choices[key]:
            raise ConfigError(f"{where}: expected one of {list(choices[key])}, got {value!r}")
        if key in POSITIVE_MODEL_OPTIONS and any(v < 1 for v in (value if isinstance(value, (list, tuple)) else [value])
                                                 if isinstance(v, (int, float))):
            raise ConfigError(f"{where}: expected a positive integer (a size or count), got {value!r}")
        options[key] = value
    return ModelConfig(name=name, options=options)


def _build_section(cls, values: dict, source: str, section: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: [{section}] must be a table, got {type(values).__name__}")
    if cls is ModelConfig:
        return _build_model(values, source)
    obj = cls()
    known = {f.name: f for f in fields(cls)}
    for key, value in values.items():
        where = f"{source}: {section}.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown field; expected one of {sorted(known)}")
        value = _coerce(value, getattr(obj, key), where)
        choices = cls.CHOICES.get(key)
        if choices and value not in choices:
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")
        lo_hi = cls.RANGES.get(key)
        if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
            raise ConfigError(f"{where}: expected a value in [{lo_hi[0]}, {lo_hi[1]}], got {value!r}")
        setattr(obj, key, value)
    return obj


def config_from_dict(raw: dict, source: str = "<config>") -> RunConfig:
    """Validate a nested dict (as read from TOML) into a RunConfig."""
    for section in raw:
        if section not in _SECTION_CLASSES:
            raise ConfigError(f"{source}: unknown section [{section}]; expected one of {sorted(_SECTION_CLASSES)}")
    cfg = RunConfig(**{name: _build_section(cls, raw.get(name, {}), source, name) for name, cls in _SECTION_CLASSES.items()})
    check_recipe(cfg, source)
    _check_user_data(cfg.data, source)
    return cfg


def _check_user_data(data: DataConfig, source: str) -> None:
    """data.path made absolute (the saved config then works from any directory); column names
    are strings or indices."""
    if data.path:
        data.path = str(Path(data.path).expanduser().absolute())
    for key in ("columns", "context_columns"):
        for i, v in enumerate(getattr(data, key)):
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise ConfigError(f"{source}: data.{key}[{i}]: expected a column name or index, got {v!r}")


def parse_override(text: str) -> tuple[str, str, Any]:
    """'section.field=value' -> (section, field, value); the value is read as TOML, else a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.field=value, e.g. train.lr=5e-4")
    key, raw_value = text.split("=", 1)
    section, name = key.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw_value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw_value.strip()
    return section, name, value


def load_config(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    """Read a TOML file or shipped config by name (or start from `base`, a resolved config dict) and
    apply overrides."""
    if path is not None:
        path = config_path(path)
        source = str(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{source}: invalid TOML: {err}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{source}: not UTF-8 text (byte {err.start}): a config is a UTF-8 TOML file") from None
        except OSError as err:
            raise ConfigError(f"{source}: cannot read: {err.strerror}") from None
    else:
        source = "<resolved config>"
        raw = {k: dict(v) for k, v in (base or {}).items()}
    for text in overrides:
        section, name, value = parse_override(text)
        raw.setdefault(section, {})[name] = value
    return config_from_dict(raw, source if not overrides else f"{source} with overrides {list(overrides)}")


def toml_value(value: Any) -> str:
    """`value` written as a TOML literal (the form `--set` and config files take)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def dump_toml(cfg: RunConfig) -> str:
    """The resolved config as TOML text (every field, defaults included)."""
    lines = []
    for section, values in cfg.to_dict().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


__all__ = ["RunConfig", "DataConfig", "ModelConfig", "TrainConfig", "EvalConfig", "load_config",
           "config_from_dict", "dump_toml", "parse_override"]
