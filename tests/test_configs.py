"""Every shipped config loads, validates, builds its model, and takes a training step."""

import pytest
import torch

from conftest import CONFIGS
from flowforge.data.registry import dataset_kind, image_shape
from flowforge.runs.config import dump_toml, load_config
from flowforge.runs.run_dir import build_model

ALL = sorted(CONFIGS.glob("*.toml"))


def test_configs_exist():
    assert {p.stem for p in ALL} >= {"demo-fashion-mnist", "glow-fashion-mnist", "glow-mnist", "glow-permutations",
                                     "tiny-mnist", "density-2d", "maf-digits", "maf-power", "maf-gas", "maf-hepmass",
                                     "maf-miniboone", "maf-bsds300", "realnvp4-fashion-mnist", "realnvp8-fashion-mnist"}


# the dimension of each flat data set after preprocessing (MAF paper table 1; digits 8x8)
FLAT_DIMS = {"power": 6, "gas": 8, "hepmass": 21, "miniboone": 43, "bsds300": 63, "digits": 64}


def _data_args_and_batch(cfg):
    kind = dataset_kind(cfg.data.dataset)
    if kind == "image":
        shape = image_shape(cfg.data.dataset)
        images = torch.randint(0, 256, (4, *shape), dtype=torch.uint8)
        return {"image_shape": shape, "n_bits": cfg.data.n_bits}, (images, torch.arange(4))
    dim = 2 if kind in ("toy2d", "energy") else FLAT_DIMS[cfg.data.dataset]
    return {"dim": dim}, (torch.randn(8, dim),)


# the papers' full-size colour Glows: over 10 s each to build and step on 2 CPU cores
FULL_SIZE = {"glow-cifar10", "glow-cifar10-additive", "glow-imagenet32"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem in FULL_SIZE else p for p in ALL],
                         ids=[p.stem for p in ALL])
def test_config_builds_and_steps(path, tmp_path):
    cfg = load_config(path)
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(dump_toml(cfg))
    assert load_config(resolved) == cfg
    data_args, batch = _data_args_and_batch(cfg)
    model = build_model(cfg, data_args)
    model.initialize(*batch)
    if cfg.train.objective == "reverse-kl":  # no examples: the loss is on the flow's own draws
        from flowforge.objectives.energies import energy_log_density
        from flowforge.objectives.reverse_kl import reverse_kl_loss

        out = {"loss": reverse_kl_loss(model, energy_log_density(cfg.data.dataset.removeprefix("energy-")), 8)}
    else:
        out = model.loss(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
