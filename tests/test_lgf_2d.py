"""`flowforge reproduce lgf-2d` end to end at toy scale (few steps, small grids, small K): it
trains MAF and LGF-MAF, evaluates them (exact / IS), measures the support's stability over the
last epochs, writes the table and the figures, and a re-run reuses the finished runs."""

import json

import numpy as np

from conftest import CONFIGS
from flowforge.experiments import lgf_2d
from flowforge.experiments.variants import merged


def test_lgf_2d_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(lgf_2d, "FIGURE_RESOLUTION", 24)
    monkeypatch.setattr(lgf_2d, "STABILITY_RESOLUTION", 16)
    monkeypatch.setattr(lgf_2d, "GRID_SAMPLES", 2)
    small = {key: {label: merged(variant, {"model": {"valid_samples": 2}} if label.startswith("LGF") else {})
                   for label, variant in models.items()} for key, models in lgf_2d.MODELS.items()}
    monkeypatch.setattr(lgf_2d, "MODELS", small)
    kwargs = dict(config=CONFIGS / "lgf-2d.toml", steps=30, datasets=("two-uniforms",), last_epochs=2,
                  test_samples=4, test_repeats=2, progress=False)
    table = lgf_2d.reproduce(tmp_path, **kwargs)
    assert "| two-uniforms | MAF-10 | 80,080 |" in table and "| two-uniforms | LGF-MAF-5 | 80,810 |" in table
    assert "(IS, K=4, 2 repeats)" in table and "(exact)" in table
    lgf = json.loads((tmp_path / "two-uniforms" / "LGF-MAF-5" / "eval-test.json").read_text())
    assert lgf["importance_samples"] == 4 and lgf["examples"] == 5000 and lgf["elbo_gap"] >= 0
    assert lgf["steps"] == 30  # trained to 10 steps before the last 2 epochs, then one epoch at a time
    grids = np.load(tmp_path / "two-uniforms" / "LGF-MAF-5" / "last-epochs.npz")["grids"]
    assert grids.shape == (3, 16, 16)
    for name in ("two-uniforms.png", "two-uniforms-MAF-10-last-epochs.png", "two-uniforms-LGF-MAF-5-last-epochs.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert lgf_2d.reproduce(tmp_path, **kwargs) == table  # finished runs are reused
