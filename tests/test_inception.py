"""The FID Inception v3 port against pytorch-fid's own module code: the state-dict keys and shapes of
pytorch-fid's weights file, and the pool-3 features of pytorch-fid's `InceptionV3([3])` on the same
synthetic weights and images (tests/fixtures/inception_reference.npz, written by
tests/fixtures/make_inception_reference.py in a venv with pytorch-fid); loading from a file, the
refusal of wrong files, and FID of a set against itself.

A forward pass of one 299 x 299 image costs about 0.5 s on a CPU: the features are computed once."""

from __future__ import annotations

import pytest
import torch

from flowforge.data.quantisation import to_model_space
from flowforge.errors import CheckpointError, ShapeError
from flowforge.evaluation.fid import fid_of_sampler, image_features
from flowforge.evaluation.fid_features import INCEPTION_WEIGHTS_ENV, inception_extractor, inception_weights_path
from flowforge.evaluation.inception import PYTORCH_FID_WEIGHTS, FIDInceptionV3, load_inception_state
from inception_reference import load_fixture, state_digest, synthetic_state

# pytorch-fid and this port run the same float32 ops: on one machine they agree bit for bit; the
# tolerance allows for another CPU's kernels (the features are of order 1, the largest about 6)
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(scope="module")
def reference() -> dict:
    return load_fixture()


@pytest.fixture(scope="module")
def state(reference) -> dict[str, torch.Tensor]:
    synthetic = synthetic_state(reference["manifest"])
    assert state_digest(synthetic) == reference["provenance"]["weights_sha256"], \
        "the synthetic weights differ from those the fixture was made with (another torch version's generator?)"
    return synthetic


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("inception") / PYTORCH_FID_WEIGHTS
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def extractor(weights_file):
    return inception_extractor(weights_file)


@pytest.fixture(scope="module")
def features(extractor, reference) -> dict[str, torch.Tensor]:
    return {kind: image_features(extractor, reference[kind]) for kind in ("grey", "rgb")}


def test_state_dict_keys_and_shapes_are_those_of_pytorch_fids_file(reference):
    ours = [(name, tuple(t.shape)) for name, t in FIDInceptionV3().state_dict().items()]
    assert ours == reference["manifest"]
    assert len(ours) == 94 * 6 + 2  # 94 conv + BN layers (weight, 4 BN entries, counter) and fc
    assert ("fc.weight", (1008, 2048)) in ours


def test_features_equal_pytorch_fids(reference, features):
    for kind in ("grey", "rgb"):
        assert features[kind].shape == (len(reference[kind]), 2048) and features[kind].dtype == torch.float32
        torch.testing.assert_close(features[kind], reference[f"features_{kind}"], **TOLERANCE)
    # the images are told apart far beyond the tolerance
    grey = reference["features_grey"]
    assert (grey[0] - grey[1]).abs().max() > 1000 * TOLERANCE["atol"]


def test_the_tf_pooling_quirks_matter(extractor, reference):
    """Mixed_7c max-pools in its pool branch (FIDInceptionE_2); average pooling there, as in
    torchvision's InceptionE, moves the features far outside the tolerance."""
    extractor.Mixed_7c.pool = "avg"
    try:
        changed = extractor.features(reference["grey"][:1])
    finally:
        extractor.Mixed_7c.pool = "max"
    assert (changed - reference["features_grey"][:1]).abs().max() > 100 * TOLERANCE["atol"]


def test_extractor_loaded_from_a_file_names_it(extractor, weights_file, state):
    assert extractor.description.startswith(f"Inception v3 pool3 (pytorch-fid weights {PYTORCH_FID_WEIGHTS}, sha256 ")
    assert not extractor.training and not any(p.requires_grad for p in extractor.parameters())
    loaded = extractor.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in state.items())


def test_fid_of_a_set_against_itself_is_zero(extractor, reference):
    """Through the whole FID path (samples -> uint8 -> features -> statistics); the 2048 x 2048
    eigen-decompositions take most of its time on a CPU."""
    grey = reference["grey"]
    result = fid_of_sampler(lambda n, gen: to_model_space(grey[:n]), extractor, grey, n=len(grey))
    assert result["fid"] == pytest.approx(0.0, abs=1e-6)
    assert result["extractor"] == extractor.description


def test_missing_or_unreadable_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match=f"no such file.*{PYTORCH_FID_WEIGHTS}"):
        inception_extractor(tmp_path / "absent.pth")
    (tmp_path / "garbage.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth: not a PyTorch weights file"):
        inception_extractor(tmp_path / "garbage.pth")
    torch.save({"branch1x1.conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    # 566 entries less the 94 BatchNorm counters, which BatchNorm fills in itself for a state dict
    # without them (as when pytorch-fid loads a file into torchvision's modules)
    with pytest.raises(CheckpointError, match=r"472 missing key\(s\): Conv2d_1a_3x3.conv.weight.*"
                                              r"1 unexpected key\(s\): branch1x1.conv.weight"):
        inception_extractor(tmp_path / "other.pth")


def test_wrong_state_dicts_are_refused(state):
    model = FIDInceptionV3()
    imagenet_head = {**state, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    with pytest.raises(CheckpointError, match="size mismatch for fc.weight"):
        load_inception_state(model, imagenet_head, "torchvision.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): AuxLogits.fc.weight"):
        load_inception_state(model, {**state, "AuxLogits.fc.weight": torch.zeros(1000, 768)}, "aux.pth")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_inception_state(model, [1, 2], "list.pth")


def test_inputs_must_be_uint8_with_one_or_three_channels():
    model = FIDInceptionV3()
    with pytest.raises(TypeError, match="uint8"):
        model.features(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"\(2, 2, 8, 8\)"):
        model.features(torch.zeros(2, 2, 8, 8, dtype=torch.uint8))


def test_weights_path_falls_back_to_the_environment(monkeypatch):
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    assert inception_weights_path() is None
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, "/data/pt_inception.pth")
    assert inception_weights_path() == "/data/pt_inception.pth"
    assert inception_weights_path("given.pth") == "given.pth"
