"""benchmarks/peer_flows.py builds every (library, model) and matches parameter counts (skipped
where zuko or nflows is not installed; they are benchmark-only peers)."""

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("zuko")
pytest.importorskip("nflows")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peer_flows as pf  # noqa: E402


@pytest.mark.parametrize("model", pf.MODELS)
@pytest.mark.parametrize("ctx", [0, 1])
def test_every_library_builds_with_matched_parameters(model, ctx):
    _, ref = pf.build_flowforge(model, 2, ctx, 16, 2)
    target = pf.n_params(ref)
    x, c = torch.randn(5, 2), (torch.rand(5, 1) if ctx else None)
    for lib in pf.LIBS:
        h, count = (16, target) if lib == "flowforge" else pf.matched(lib, model, 2, ctx, target, 2)
        assert abs(count - target) / target < 0.05, (lib, model, count, target)
        log_prob, _ = pf.BUILDERS[lib](model, 2, ctx, h, 2)
        assert log_prob(x, c).shape == (5,) and torch.isfinite(log_prob(x, c)).all()


def test_rotated_moons_has_a_context_per_point():
    d = pf.rotated_moons(sizes=(50, 10, 20))
    assert d["train"].shape == (50, 2) and d["context"]["test"].shape == (20, 1)
    assert 0 <= float(d["context"]["train"].min()) and float(d["context"]["train"].max()) <= 1
