"""Every shipped config loads, validates, builds its model, and takes a training step."""

import pytest
import torch

from conftest import CONFIGS
from flowforge.training.config import dump_toml, load_config
from flowforge.training.runs import build_model

ALL = sorted(CONFIGS.glob("*.toml"))


def test_configs_exist():
    assert {p.stem for p in ALL} >= {"demo-fashion-mnist", "glow-fashion-mnist", "glow-mnist", "glow-permutations",
                                     "tiny-mnist"}


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_config_builds_and_steps(path, tmp_path):
    cfg = load_config(path)
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(dump_toml(cfg))
    assert load_config(resolved) == cfg
    model = build_model(cfg, {"image_shape": (1, 28, 28), "n_bits": cfg.data.n_bits})
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    model.initialize(images)
    out = model.loss((images, torch.arange(4)))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
