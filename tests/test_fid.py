"""FID: the Fréchet distance against closed forms, refusal of non-finite features, and the
feature network's save / load round trip (the Inception extractor: tests/test_inception.py)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from flowforge.errors import CheckpointError, NonFiniteError, ShapeError
from flowforge.evaluation.fid import feature_statistics, fid_from_features, fid_of_sampler, frechet_distance
from flowforge.evaluation.fid_features import FeatureClassifier, load_feature_network


def _random_cov(dim: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)


def test_identical_sets_give_zero():
    f = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert fid_from_features(f, f.clone()) == pytest.approx(0.0, abs=1e-8)


def test_diagonal_covariances_match_the_closed_form():
    gen = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(6, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)
    v1, v2 = torch.rand(6, generator=gen, dtype=torch.float64) + 0.1, torch.rand(6, generator=gen, dtype=torch.float64) + 0.1
    expected = float(((m1 - m2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum())
    assert frechet_distance(m1, torch.diag(v1), m2, torch.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_full_covariances_match_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    gen = torch.Generator().manual_seed(2)
    s1, s2 = _random_cov(8, gen), _random_cov(8, gen)
    m1, m2 = torch.randn(8, generator=gen, dtype=torch.float64), torch.randn(8, generator=gen, dtype=torch.float64)
    root = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = float(((m1 - m2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * root.trace())
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-9)


def test_gaussian_feature_sets_approach_the_closed_form():
    """Features drawn from two Gaussians: the FID of the samples tends to the Fréchet distance of
    the generating Gaussians (within the sampling error of 200k draws in 4-D)."""
    gen = torch.Generator().manual_seed(3)
    s1, s2 = _random_cov(4, gen), _random_cov(4, gen)
    m1, m2 = torch.zeros(4, dtype=torch.float64), torch.full((4,), 0.5, dtype=torch.float64)
    n = 200_000
    f1 = m1 + torch.randn(n, 4, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    f2 = m2 + torch.randn(n, 4, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    expected = frechet_distance(m1, s1, m2, s2)
    assert expected > 0.5
    assert fid_from_features(f1, f2) == pytest.approx(expected, rel=0.02)


def test_non_finite_features_are_counted_not_dropped():
    f = torch.randn(10, 3)
    f[2, 1] = float("nan")
    f[7, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="2 of 10"):
        feature_statistics(f)


def test_non_finite_samples_are_refused():
    extractor = FeatureClassifier().eval()
    test = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)

    def sampler(n, gen):
        x = torch.zeros(n, 1, 28, 28)
        x[0, 0, 0, 0] = float("nan")
        return x

    with pytest.raises(NonFiniteError, match="non-finite pixels"):
        fid_of_sampler(sampler, extractor, test, n=8)


def test_feature_network_round_trip_and_description(tmp_path):
    model = FeatureClassifier()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "features.safetensors"))
    (tmp_path / "features.json").write_text(json.dumps({"dataset": "fashion-mnist", "test_accuracy": 0.9,
                                                        "features": 128}))
    loaded = load_feature_network(tmp_path)
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(loaded.features(images), model.features(images))
    assert "90.00%" in loaded.description and "fashion-mnist" in loaded.description
    with pytest.raises(CheckpointError, match="fid-features train"):
        load_feature_network(tmp_path / "missing")


def test_precomputed_reference_statistics_give_the_same_fid():
    from flowforge.evaluation.fid import reference_statistics

    torch.manual_seed(0)
    extractor = FeatureClassifier().eval()
    test = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))

    def sampler(n, gen):
        return torch.rand(n, 1, 28, 28, generator=gen) - 0.5

    direct = fid_of_sampler(sampler, extractor, test, n=32, seed=1)
    reference = reference_statistics(extractor, test, n=32)
    assert fid_of_sampler(sampler, extractor, test, n=32, seed=1, reference=reference) == direct
    assert direct["fid"] > 0
    with pytest.raises(ShapeError, match="needs 41 test images"):
        reference_statistics(extractor, test, n=41)
